"""Inference backends: conversations in, answers out.

A request is an OpenAI-style message list (``{"role": ..., "content": [parts]}``). An image part holds a file
path or a PIL image and optionally its pixel budget: ``resized_width``/``resized_height`` (an exact model size,
multiples of the family's factor) or ``min_pixels``/``max_pixels`` (this request's budget; the qwen-vl-utils
keys); without either the backend's budget applies. Every backend resolves the images the same way
(:func:`resolve_images`: the one reader :class:`rscovlm.imageio.ImageSource` - huge files in bounded memory -
and the ``smart_resize`` policy of :mod:`rscovlm.resolution`) and hands the already-resized pixels to its
engine, so the grid the vision tower sees is ours on every backend and the boxes of an answer refer to exactly
those pixels. The model size of every image is recorded with its answer (:attr:`Generation.image_sizes`).

Backends are registered by name: ``transformers`` here, ``openai`` (:mod:`rscovlm.infer.openai_backend`),
``vllm`` (:mod:`rscovlm.infer.vllm_backend`, optional extra); ``get_backend(name, **options)``. All answer
through ``generate_results(conversations, max_new_tokens=None, progress=None, task=None, logprobs=None)``.

Decoding (:class:`DecodingOptions`): greedy by default; ``do_sample`` with ``temperature``/``top_p``/``top_k``/
``seed`` when asked. ``logprobs=True`` returns the log-probability of every generated token
(:attr:`Generation.token_logprobs`) with the text each token adds (:attr:`Generation.tokens`), from which
:mod:`rscovlm.infer.confidence` scores each detected object.

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

import os
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
    the ``max_new_tokens`` budget it had.

    ``image_sizes``: the model size ``(width, height)`` of each image of the request, in pixels (the vision grid
    is ``height / patch`` x ``width / patch``); ``visual_tokens``: image placeholder tokens in the prompt (None:
    the engine did not say). With log-probs asked: ``token_logprobs`` (natural log, one per generated token, the
    end token included), ``tokens`` (the text each token adds to ``text``; empty for special tokens), so that
    ``"".join(tokens) == text``, and ``token_ids`` (the generated ids, where the engine gives them); None when not
    asked or not available."""

    text: str
    finish_reason: str | None
    max_new_tokens: int
    n_new_tokens: int | None = None
    image_sizes: tuple[tuple[int, int], ...] = ()
    visual_tokens: int | None = None
    token_logprobs: tuple[float, ...] | None = None
    tokens: tuple[str, ...] | None = None
    token_ids: tuple[int, ...] | None = None

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
                         progress=None, task: str | None = None, logprobs: bool | None = None) -> list[Generation]:
        """One answer per conversation (the conversation ends with a user turn) with its finish reason; ``task``
        picks the budget (module docstring); ``progress`` (e.g. a tqdm bar) is advanced by one per answered
        conversation; ``logprobs`` (default: the config's) asks for token log-probabilities."""

    def generate(self, conversations: list[list[dict]], max_new_tokens: int | None = None,
                 progress=None, task: str | None = None) -> list[str]:
        """The texts of :meth:`generate_results`."""


@dataclass
class DecodingOptions:
    """How tokens are chosen (every backend takes these)."""

    do_sample: bool = field(default=False, metadata={"help": "sample instead of greedy decoding"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (with do_sample)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass (with do_sample; 1 = off)"})
    top_k: int = field(default=0, metadata={"help": "sample among the k most likely tokens (with do_sample; "
                                                    "0 = off)"})
    seed: int | None = field(default=None, metadata={"help": "seed of sampling (reproducible answers)"})
    logprobs: bool = field(default=False, metadata={"help": "return token log-probabilities (per-object "
                                                            "confidence of detections)"})

    def check_decoding(self) -> None:
        if not (self.temperature > 0 and 0 < self.top_p <= 1 and self.top_k >= 0):
            raise ValueError(f"need temperature > 0, 0 < top_p <= 1 and top_k >= 0; got {self.temperature}, "
                             f"{self.top_p}, {self.top_k}")


@dataclass
class GenerationConfig(DecodingOptions):
    """Options of :class:`TransformersBackend` (greedy decoding unless ``do_sample``)."""

    max_new_tokens: int | None = field(default=None, metadata={
        "help": "longest answer for every task; default: the per-task budget (task_budgets)"})
    task_budgets: dict = field(default_factory=lambda: dict(TASK_MAX_NEW_TOKENS), metadata={
        "help": "longest answer per task (detection 16384, as the reference; grounding, vqa, ... 1024)"})
    batch_size: int = field(default=8, metadata={"help": "conversations per forward pass"})


def resolve_images(conversations: list[list[dict]], policy, read_options=None
                   ) -> tuple[list[list[dict]], list[list[tuple[int, int]]]]:
    """Every image part opened and resized to its model size (see the module docstring): the part's
    ``resized_width``/``resized_height``, else the plan of its own ``min_pixels``/``max_pixels``, else of
    ``policy`` (:class:`~rscovlm.resolution.ResolutionPolicy`; its ``factor`` is the side multiple). Files are
    read with :class:`~rscovlm.imageio.ImageSource` (bounded memory for huge ones). Returns the conversations
    with image parts ``{"type": "image", "image": PIL RGB at the model size, "resized_width": w,
    "resized_height": h}`` and the model sizes ``(w, h)`` of each conversation's images in order."""
    from PIL import Image

    from rscovlm.imageio import ImageSource, as_rgb, resize_to
    from rscovlm.resolution import ResolutionPolicy

    out, sizes = [], []
    for messages in conversations:
        conv_sizes: list[tuple[int, int]] = []
        new_messages = []
        for message in messages:
            content = message.get("content")
            if not isinstance(content, list):
                new_messages.append(message)
                continue
            parts = []
            for part in content:
                if not (isinstance(part, dict) and part.get("type") == "image"):
                    parts.append(part)
                    continue
                value = part.get("image")
                if isinstance(value, Image.Image):
                    source, size = None, value.size
                elif isinstance(value, (str, os.PathLike)):
                    source = ImageSource(value, read_options)
                    size = source.size
                else:
                    raise TypeError(f"an image part holds a path or a PIL image, got {type(value).__name__}")
                try:
                    if "resized_width" in part or "resized_height" in part:
                        w, h = int(part["resized_width"]), int(part["resized_height"])
                        if w <= 0 or h <= 0 or w % policy.factor or h % policy.factor:
                            raise ValueError(f"image part {value!r:.80}: resized size {w}x{h} is not a positive "
                                             f"multiple of {policy.factor}")
                    elif "min_pixels" in part or "max_pixels" in part:
                        lo = int(part.get("min_pixels", policy.min_pixels))
                        hi = int(part.get("max_pixels", policy.max_pixels))
                        own = ResolutionPolicy(min_pixels=lo, max_pixels=hi, factor=policy.factor,
                                               uhr_min_pixels=max(hi, policy.uhr_min_pixels))
                        w, h = own.plan(*size).model_size
                    else:
                        w, h = policy.plan(*size).model_size
                    image = source.resized((w, h)) if source is not None else resize_to(as_rgb(value), (w, h))
                finally:
                    if source is not None:
                        source.close()
                parts.append({"type": "image", "image": image, "resized_width": w, "resized_height": h})
                conv_sizes.append((w, h))
            new_messages.append({**message, "content": parts})
        out.append(new_messages)
        sizes.append(conv_sizes)
    return out, sizes


def token_texts(tokenizer, ids: list[int], text: str) -> tuple[str, ...]:
    """The text each of ``ids`` adds to ``text`` (their decoding with special tokens skipped): decoded one at a
    time when that adds up to ``text`` (always for ASCII answers), else from growing prefixes (a token that ends
    inside a multi-byte character adds nothing; the token that completes it carries the character)."""
    kwargs = {"skip_special_tokens": True, "clean_up_tokenization_spaces": False}
    pieces = [tokenizer.decode([i], **kwargs) for i in ids]
    if "".join(pieces) == text:
        return tuple(pieces)
    out, done = [], ""
    for k in range(1, len(ids) + 1):
        prefix = tokenizer.decode(ids[:k], **kwargs)
        if prefix.endswith("\ufffd") or not prefix.startswith(done):
            out.append("")
            continue
        out.append(prefix[len(done):])
        done = prefix
    return tuple(out)


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


class _ChosenLogprobs:
    """A logits processor (placed last, so it sees the distribution tokens are drawn from) that records the
    log-probability of each chosen token while holding one step's log-softmax at a time: step ``t`` learns the
    token chosen at ``t - 1`` from the ids it is called with; :meth:`finish` adds the last one."""

    def __init__(self):
        self.previous = None
        self.steps = []

    def __call__(self, input_ids, scores):
        import torch

        if self.previous is not None:
            self.steps.append(self.previous.gather(1, input_ids[:, -1:]).squeeze(1))
        self.previous = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, last_ids):
        """``(B, T)`` log-probabilities of the generated tokens (``last_ids``: the final token of each row)."""
        import torch

        if self.previous is not None:
            self.steps.append(self.previous.gather(1, last_ids[:, None]).squeeze(1))
            self.previous = None
        return torch.stack(self.steps, dim=1) if self.steps else None


@register_backend("transformers")
class TransformersBackend:
    """A loaded transformers model and processor, batched with left padding; greedy unless ``do_sample``; stops
    at the end-of-sequence tokens of the model's generation config and the tokenizer.

    Images are resolved by :func:`resolve_images` (the part's budget, else ``policy``, else the processor's own
    pixel bounds with the family's side factor) and prompts go through the training collator's encoder
    (:class:`rscovlm.model.collator.ConversationEncoder`): the same chat template and the same resize as
    training, so answers are written in the frame the model was trained in."""

    def __init__(self, model, processor, config: GenerationConfig | None = None, policy=None):
        from rscovlm.model.collator import ConversationEncoder

        self.model, self.processor = model, processor
        self.encoder = ConversationEncoder(processor, policy)
        self.policy = self.encoder.policy
        self.config = config or GenerationConfig()
        self.config.check_decoding()

    def generate_results(self, conversations: list[list[dict]], max_new_tokens: int | None = None,
                         progress=None, task: str | None = None, logprobs: bool | None = None) -> list[Generation]:
        import torch

        limit = budget(task, max_new_tokens, self.config.max_new_tokens, self.config.task_budgets)
        want_logprobs = self.config.logprobs if logprobs is None else logprobs
        tokenizer = self.processor.tokenizer
        eos = _eos_ids(self.model, tokenizer)
        cfg = self.config
        sampling = {"do_sample": False}
        if cfg.do_sample:
            sampling = {"do_sample": True, "temperature": cfg.temperature, "top_p": cfg.top_p, "top_k": cfg.top_k}
        results: list[Generation] = []
        size = cfg.batch_size
        merge = self.encoder.merge_size
        self.model.eval()
        for start in range(0, len(conversations), size):
            batch, sizes = resolve_images(conversations[start:start + size], self.policy)
            inputs, _ = self.encoder.encode_prompts(batch)
            inputs = inputs.to(self.model.device)
            grid = inputs.get("image_grid_thw")
            tokens_per_image = [] if grid is None else [int(t * h * w) // merge**2 for t, h, w in grid.tolist()]
            recorder = _ChosenLogprobs() if want_logprobs else None
            extra = {"logits_processor": [recorder]} if recorder is not None else {}
            if cfg.do_sample and cfg.seed is not None:
                torch.manual_seed(cfg.seed + start)
            with torch.inference_mode():
                out = self.model.generate(**inputs, max_new_tokens=limit, pad_token_id=tokenizer.pad_token_id,
                                          **sampling, **extra)
            new_tokens = out[:, inputs["input_ids"].shape[1]:]
            lps = recorder.finish(out[:, -1]) if recorder is not None else None
            texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
            image_index = 0
            for row, (text, (reason, n)) in enumerate(zip(texts, finish_reasons(new_tokens, eos, limit))):
                conv_sizes = tuple(sizes[row])
                visual = sum(tokens_per_image[image_index:image_index + len(conv_sizes)])
                image_index += len(conv_sizes)
                token_lp = toks = ids = None
                if lps is not None:
                    ids = tuple(new_tokens[row, :n].tolist())
                    token_lp = tuple(float(v) for v in lps[row, :n].tolist())
                    toks = token_texts(tokenizer, list(ids), text)
                results.append(Generation(text, reason, limit, n, conv_sizes, visual, token_lp, toks, ids))
            if progress is not None:
                progress.update(len(batch))
        return results

    def generate(self, conversations: list[list[dict]], max_new_tokens: int | None = None,
                 progress=None, task: str | None = None) -> list[str]:
        """The texts of :meth:`generate_results`."""
        return [g.text for g in self.generate_results(conversations, max_new_tokens, progress, task)]
