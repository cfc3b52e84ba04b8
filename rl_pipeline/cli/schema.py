"""`rl-pipeline schema`: the sources file's JSON schema, for an editor's completion and checks.

The shipped copy, `rl_pipeline/sources.schema.json`, is what the shipped
sources.yaml names on its first line; a test holds the two the same.
"""

from __future__ import annotations

import argparse
import json

from rl_pipeline.sources import SourcesFile


def schema_text() -> str:
    return json.dumps(SourcesFile.model_json_schema(), indent=2) + "\n"


def cmd_schema(args: argparse.Namespace) -> int:
    print(schema_text(), end="")
    return 0
