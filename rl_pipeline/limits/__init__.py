"""Rate limits as pure algorithms: what each grants, and the rule that decides several at once."""

from rl_pipeline.limits.algorithms import Algorithm, Limit

__all__ = ["Algorithm", "Limit"]
