"""Inference backends: conversations in, response texts out.

A request is an OpenAI-style message list whose image parts carry PIL images already resized to the model frame
by :mod:`rscovlm.resolution` (``{"type": "image", "image": PIL.Image}``), so every backend sees exactly the
pixels the boxes refer to. Backends are registered by name; ``get_backend("transformers", model=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

BACKENDS: dict[str, Callable[..., "Backend"]] = {}


def register_backend(name: str):
    def wrap(factory):
        BACKENDS[name] = factory
        return factory

    return wrap


def get_backend(name: str, **kwargs) -> "Backend":
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise KeyError(f"unknown backend {name!r}; known: {sorted(BACKENDS)}") from None
    return factory(**kwargs)


class Backend(Protocol):
    def generate(self, conversations: list[list[dict]], max_new_tokens: int | None = None,
                 progress=None) -> list[str]:
        """One greedy response per conversation (the conversation ends with a user turn); ``progress`` (e.g. a
        tqdm bar) is advanced by one per answered conversation."""


@dataclass
class GenerationConfig:
    """Decoding options of :class:`TransformersBackend` (greedy decoding always)."""

    max_new_tokens: int = field(default=1024, metadata={"help": "longest response; dense detection needs ~4k"})
    batch_size: int = field(default=8, metadata={"help": "conversations per forward pass"})


@register_backend("transformers")
class TransformersBackend:
    """Greedy decoding with a loaded transformers model and processor, batched with left padding.

    Prompts go through the training collator's encoder (:class:`rscovlm.model.collator.ConversationEncoder`):
    the same chat template and the same image resize (the part's ``resized_width``/``resized_height`` when
    given, else the resolution policy), so answers are written in the frame the model was trained in."""

    def __init__(self, model, processor, config: GenerationConfig | None = None, policy=None):
        from rscovlm.model.collator import ConversationEncoder

        self.model, self.processor = model, processor
        self.encoder = ConversationEncoder(processor, policy)
        self.config = config or GenerationConfig()

    def generate(self, conversations: list[list[dict]], max_new_tokens: int | None = None,
                 progress=None) -> list[str]:
        """``progress`` (e.g. a tqdm bar) is advanced by one per answered conversation."""
        import torch

        tokenizer = self.processor.tokenizer
        responses: list[str] = []
        size = self.config.batch_size
        self.model.eval()
        for start in range(0, len(conversations), size):
            batch = conversations[start:start + size]
            inputs, _ = self.encoder.encode_prompts(batch)
            inputs = inputs.to(self.model.device)
            with torch.inference_mode():
                out = self.model.generate(**inputs, do_sample=False,
                                          max_new_tokens=max_new_tokens or self.config.max_new_tokens,
                                          pad_token_id=tokenizer.pad_token_id)
            new_tokens = out[:, inputs["input_ids"].shape[1]:]
            responses.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
            if progress is not None:
                progress.update(len(batch))
        return responses
