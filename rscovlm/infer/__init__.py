"""Inference: backends (transformers, OpenAI-compatible HTTP) turning conversations into response texts, with
per-task generation budgets and the finish reason of every answer."""

from rscovlm.infer import openai_backend  # noqa: F401  (registers "openai")
from rscovlm.infer.backends import (
    BACKENDS,
    DEFAULT_MAX_NEW_TOKENS,
    TASK_MAX_NEW_TOKENS,
    Generation,
    GenerationConfig,
    TransformersBackend,
    budget,
    count_truncated,
    get_backend,
    register_backend,
)

__all__ = ["BACKENDS", "DEFAULT_MAX_NEW_TOKENS", "TASK_MAX_NEW_TOKENS", "Generation", "GenerationConfig",
           "TransformersBackend", "budget", "count_truncated", "get_backend", "register_backend"]
