"""Where shared state lives: limiter budgets, page checkpoints, learned rates.

A store is named by a URL, as the `limits` library does:
`memory://`, `sqlite:///data/state.sqlite`, `redis://127.0.0.1:6379/0`.
"""

from rl_pipeline.state.base import StateStore, open_store

__all__ = ["StateStore", "open_store"]
