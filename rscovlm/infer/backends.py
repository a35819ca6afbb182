"""Inference backends: conversations in, response texts out.

A request is an OpenAI-style message list whose image parts carry PIL images already resized to the model frame
by :mod:`rscovlm.resolution` (``{"type": "image", "image": PIL.Image}``), so every backend sees exactly the
pixels the boxes refer to. Backends are registered by name; ``get_backend("transformers", model=...)``.

Generation budgets
------------------
How many new tokens an answer may take depends on the task (:data:`TASK_MAX_NEW_TOKENS`): a dense detection
answer lists every object (about 35 tokens per quad line, so 1,024 tokens cut a DOTA patch after ~30 objects);
the reference (VisionXLab/RSCoVLM) allows 16,384 new tokens for every task, and so does rscovlm for detection.
The budget of a call is, in this order: the ``max_new_tokens`` argument, the backend config's
``max_new_tokens``, the config's per-task table for the call's ``task``, :data:`DEFAULT_MAX_NEW_TOKENS`.

An answer that ends because the budget ran out - not at the end-of-sequence token - is cut off; it comes back
with ``finish_reason == "length"`` (:class:`Generation`, from :meth:`Backend.generate_results`) so that reports
can count it (:func:`count_truncated`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

BACKENDS: dict[str, Callable[..., "Backend"]] = {}

# new-token budgets per task (the task names of rscovlm.data.builder metadata and records)
TASK_MAX_NEW_TOKENS: dict[str, int] = {
    "detection": 16384,  # the reference's budget; >= 8192 needed for dense patches
    "grounding": 1024,
    "segmentation": 4096,  # row-wise RLE of a patch grid
    "zoom": 1024,  # the tool call of the first pass, or a direct answer
    "vqa": 1024,
    "classification": 1024,
    "caption": 1024,
    "chat": 2048,
}
DEFAULT_MAX_NEW_TOKENS = 1024
FINISH_REASONS = ("stop", "length")


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


@dataclass(frozen=True)
class Generation:
    """One answer: its ``text``; ``finish_reason`` ``"stop"`` (the model ended it), ``"length"`` (the budget ran
    out: the answer is cut off) or None (the server did not say); ``n_new_tokens`` generated (None: unknown) and
    the ``max_new_tokens`` budget it had."""

    text: str
    finish_reason: str | None
    max_new_tokens: int
    n_new_tokens: int | None = None

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


def count_truncated(generations: list[Generation]) -> dict:
    """``{"n", "truncated", "unknown"}``: answers, answers cut off by the budget, answers without a finish
    reason - for run reports."""
    return {"n": len(generations), "truncated": sum(g.truncated for g in generations),
            "unknown": sum(g.finish_reason is None for g in generations)}


def budget(task: str | None = None, max_new_tokens: int | None = None, config_max: int | None = None,
           table: dict[str, int] | None = None) -> int:
    """The new-token budget of a call (order in the module docstring). An unknown ``task`` gets the default."""
    for value in (max_new_tokens, config_max):
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"max_new_tokens must be a positive integer, got {value!r}")
            return value
    table = TASK_MAX_NEW_TOKENS if table is None else table
    return table.get(task, DEFAULT_MAX_NEW_TOKENS) if task is not None else DEFAULT_MAX_NEW_TOKENS


class Backend(Protocol):
    def generate_results(self, conversations: list[list[dict]], max_new_tokens: int | None = None,
                         progress=None, task: str | None = None) -> list[Generation]:
        """One greedy answer per conversation (the conversation ends with a user turn) with its finish reason;
        ``task`` picks the budget (module docstring); ``progress`` (e.g. a tqdm bar) is advanced by one per
        answered conversation."""

    def generate(self, conversations: list[list[dict]], max_new_tokens: int | None = None,
                 progress=None, task: str | None = None) -> list[str]:
        """The texts of :meth:`generate_results`."""


@dataclass
class GenerationConfig:
    """Decoding options of :class:`TransformersBackend` (greedy decoding always)."""

    max_new_tokens: int | None = field(default=None, metadata={
        "help": "longest answer for every task; default: the per-task budget (task_budgets)"})
    task_budgets: dict = field(default_factory=lambda: dict(TASK_MAX_NEW_TOKENS), metadata={
        "help": "longest answer per task (detection 16384, as the reference; grounding, vqa, ... 1024)"})
    batch_size: int = field(default=8, metadata={"help": "conversations per forward pass"})


def _eos_ids(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    for value in (getattr(getattr(model, "generation_config", None), "eos_token_id", None),
                  getattr(tokenizer, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids


def finish_reasons(new_tokens, eos_ids: set[int], max_new_tokens: int) -> list[tuple[str, int]]:
    """``(finish_reason, n_new_tokens)`` per row of generated ids (``(B, T)``, right-padded after an end token):
    ``stop`` when the row holds an end-of-sequence id (counted up to and including the first), else ``length``
    when it used the whole budget."""
    out = []
    for row in new_tokens.tolist():
        n = next((i + 1 for i, tok in enumerate(row) if tok in eos_ids), None)
        if n is not None:
            out.append(("stop", n))
        else:
            out.append(("length" if len(row) >= max_new_tokens else "stop", len(row)))
    return out


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

    def generate_results(self, conversations: list[list[dict]], max_new_tokens: int | None = None,
                         progress=None, task: str | None = None) -> list[Generation]:
        import torch

        limit = budget(task, max_new_tokens, self.config.max_new_tokens, self.config.task_budgets)
        tokenizer = self.processor.tokenizer
        eos = _eos_ids(self.model, tokenizer)
        results: list[Generation] = []
        size = self.config.batch_size
        self.model.eval()
        for start in range(0, len(conversations), size):
            batch = conversations[start:start + size]
            inputs, _ = self.encoder.encode_prompts(batch)
            inputs = inputs.to(self.model.device)
            with torch.inference_mode():
                out = self.model.generate(**inputs, do_sample=False, max_new_tokens=limit,
                                          pad_token_id=tokenizer.pad_token_id)
            new_tokens = out[:, inputs["input_ids"].shape[1]:]
            texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            for text, (reason, n) in zip(texts, finish_reasons(new_tokens, eos, limit)):
                results.append(Generation(text, reason, limit, n))
            if progress is not None:
                progress.update(len(batch))
        return results

    def generate(self, conversations: list[list[dict]], max_new_tokens: int | None = None,
                 progress=None, task: str | None = None) -> list[str]:
        """The texts of :meth:`generate_results`."""
        return [g.text for g in self.generate_results(conversations, max_new_tokens, progress, task)]
