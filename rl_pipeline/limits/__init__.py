"""Rate limits: pure algorithms, and a limiter that applies them through a shared store."""

from rl_pipeline.limits.algorithms import Algorithm, Limit
from rl_pipeline.limits.limiter import RateLimiter, RateLimitTimeout

__all__ = ["Algorithm", "Limit", "RateLimitTimeout", "RateLimiter"]
