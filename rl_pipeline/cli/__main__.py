"""`python -m rl_pipeline.cli`: what the run processes of a backfill are started as."""

import sys

from rl_pipeline.cli.main import main

sys.exit(main())
