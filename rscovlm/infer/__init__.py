"""Inference: backends (transformers, OpenAI-compatible HTTP) turning conversations into response texts."""

from rscovlm.infer import openai_backend  # noqa: F401  (registers "openai")
from rscovlm.infer.backends import BACKENDS, GenerationConfig, TransformersBackend, get_backend, register_backend

__all__ = ["BACKENDS", "GenerationConfig", "TransformersBackend", "get_backend", "register_backend"]
