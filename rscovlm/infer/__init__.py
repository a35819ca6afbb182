"""Inference: backends (transformers, vLLM, OpenAI-compatible HTTP) turning conversations into answers with
per-request pixel budgets, decoding options, token log-probs and the finish reason of every answer; task runners
(classify, vqa, caption, ground, detect, zoom-vqa) whose results are structures in the original image frame;
the Zoom-in Chain cropping the full-resolution original; large-image and GeoTIFF detection; per-object
confidence from token log-probs."""

from rscovlm.infer import openai_backend, vllm_backend  # noqa: F401  (register "openai", "vllm")
from rscovlm.infer.backends import (
    BACKENDS,
    DEFAULT_MAX_NEW_TOKENS,
    TASK_MAX_NEW_TOKENS,
    DecodingOptions,
    Generation,
    GenerationConfig,
    TransformersBackend,
    budget,
    count_truncated,
    get_backend,
    register_backend,
    resolve_images,
)

__all__ = ["BACKENDS", "DEFAULT_MAX_NEW_TOKENS", "TASK_MAX_NEW_TOKENS", "DecodingOptions", "Generation",
           "GenerationConfig", "TransformersBackend", "budget", "count_truncated", "get_backend",
           "register_backend", "resolve_images"]
