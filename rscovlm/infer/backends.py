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
    def generate(self, conversations: list[list[dict]], max_new_tokens: int | None = None) -> list[str]:
        """One greedy response per conversation (the conversation ends with a user turn)."""


def conversation_images(messages: list[dict]) -> list:
    """The PIL images of a conversation in order of appearance."""
    images = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            images.extend(part["image"] for part in content if part.get("type") == "image")
    return images


@dataclass
class GenerationConfig:
    max_new_tokens: int = field(default=1024, metadata={"help": "longest response; dense detection needs ~4k"})
    batch_size: int = field(default=8, metadata={"help": "conversations per forward pass"})


@register_backend("transformers")
class TransformersBackend:
    """Greedy decoding with a loaded transformers model and processor (left padding for batches)."""

    def __init__(self, model, processor, config: GenerationConfig | None = None):
        self.model, self.processor = model, processor
        self.config = config or GenerationConfig()

    def generate(self, conversations: list[list[dict]], max_new_tokens: int | None = None) -> list[str]:
        import torch

        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "left"
        responses: list[str] = []
        size = self.config.batch_size
        for start in range(0, len(conversations), size):
            batch = conversations[start:start + size]
            texts = [self.processor.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in batch]
            images = [img for c in batch for img in conversation_images(c)]
            inputs = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt")
            inputs = inputs.to(self.model.device)
            with torch.inference_mode():
                out = self.model.generate(**inputs, do_sample=False,
                                          max_new_tokens=max_new_tokens or self.config.max_new_tokens,
                                          pad_token_id=tokenizer.pad_token_id)
            new_tokens = out[:, inputs["input_ids"].shape[1]:]
            responses.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
        return responses
