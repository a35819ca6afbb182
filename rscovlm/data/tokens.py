"""Expected tokens of a mixture's epoch (``rscovlm data mix-stats``): per unit, built samples are counted and the
mean is scaled by the samples the epoch draws from the unit.

Counting one sample. With a processor (a model folder that loads offline) the count is exact: the trainer's own
:meth:`rscovlm.model.collator.ConversationEncoder.length` (chat template, tokenizer, image tokens, truncation at
``max_length``, drops). Without one, :class:`ApproxTokenCounter` applies the rule the Qwen2-VL / Qwen2.5-VL
processor and tokenizer follow, with the text part approximated:

* image: resized as the builder resizes it (its ``resized_width`` x ``resized_height``; else the deterministic
  smart resize between the pixel bounds), ``(w / 14) * (h / 14) / 2**2`` ``<|image_pad|>`` tokens (patch 14,
  merge 2; a still image is one temporal patch) plus ``<|vision_start|>`` and ``<|vision_end|>``;
* chat template: 5 tokens per message (``<|im_start|>``, the role, a newline, ``<|im_end|>``, a newline) and, when
  the conversation has no system message, the default ``You are a helpful assistant.`` one (11 tokens);
* text: Qwen2's pre-tokenizer cuts text into pieces and its byte-level BPE joins a piece into few tokens. Counted
  here: every digit 1 token (Qwen2 splits numbers into single digits, so ``120,45`` is 6 tokens), a run of
  letters ``ceil(len / 6)`` tokens (common words are one token, long or rare ones several), a run of other
  symbols ``ceil(len / 2)``, a line break 1; spaces go with the following piece. Expect +-25 % on prose and close
  counts on coordinate answers, where digits dominate.

Samples over ``max_length`` count as ``max_length`` when only text is cut, and as dropped when an image would be
cut (the collator's rule).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

DEFAULT_SYSTEM_TOKENS = 11  # <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n
_PIECES = re.compile(r"\d|[^\W\d_]+|\n+|[^\w\s]+|_+|\s+")


def approx_text_tokens(text: str) -> int:
    """The module docstring's approximation of the tokens of ``text``."""
    n = 0
    for piece in _PIECES.findall(text):
        if piece.isspace():
            n += piece.count("\n") and 1
        elif piece.isdigit():
            n += 1
        elif piece[0].isalpha():
            n += math.ceil(len(piece) / 6)
        else:
            n += math.ceil(len(piece) / 2)
    return n


@dataclass
class ApproxTokenCounter:
    """Tokens of a built sample by the approximate rule of the module docstring (no tokenizer needed)."""

    min_pixels: int = 224 * 224
    max_pixels: int = 1008 * 1008
    max_length: int = 6144
    patch_size: int = 14
    merge_size: int = 2
    exact: bool = field(default=False, init=False)

    def image_tokens(self, part: dict) -> int:
        from rscovlm.imageio import image_size
        from rscovlm.resolution import ResolutionPolicy

        if "resized_width" in part and "resized_height" in part:
            w, h = int(part["resized_width"]), int(part["resized_height"])
        else:
            value = part["image"]
            size = value.size if hasattr(value, "size") and not isinstance(value, str) else image_size(value)
            policy = ResolutionPolicy(self.min_pixels, self.max_pixels, self.patch_size * self.merge_size)
            w, h = policy.plan(*size).model_size
        return (w // self.patch_size) * (h // self.patch_size) // self.merge_size**2 + 2

    def __call__(self, sample: dict) -> int | str:
        messages = sample["messages"] if isinstance(sample, dict) else sample
        total = 0 if messages and messages[0]["role"] == "system" else DEFAULT_SYSTEM_TOKENS
        image_end = 0
        for message in messages:
            total += 5
            content = message["content"]
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
            for part in parts:
                if part.get("type") == "image":
                    total += self.image_tokens(part)
                    image_end = total
                else:
                    total += approx_text_tokens(part.get("text", ""))
        if total > self.max_length and image_end >= self.max_length:
            return "image_cut"
        return min(total, self.max_length)


def exact_counter(encoder) -> Callable[[dict], int | str]:
    """A counter from a :class:`rscovlm.model.collator.ConversationEncoder`: exact token counts, drop reasons."""
    from rscovlm.model.collator import SampleDropped

    def count(sample: dict) -> int | str:
        try:
            return encoder.length(sample)
        except SampleDropped as err:
            return err.reason

    count.exact = True
    return count


def estimate_tokens(mixture, counter: Callable[[dict], int | str], per_unit: int = 32, epoch: int = 0) -> dict:
    """Per unit of ``mixture`` (:class:`rscovlm.data.mixture.Mixture`): ``counted`` samples (the first
    ``per_unit`` of the unit in epoch ``epoch``'s order, built as in training without decoding images), their
    ``mean`` and ``max`` tokens among those kept, the ``dropped`` fraction, and ``tokens`` = the epoch's expected
    tokens from the unit (samples per epoch x kept fraction x mean). ``total`` sums the units."""
    from rscovlm.data.mixture import MixtureDataset

    dataset = MixtureDataset(mixture)
    units, _ = mixture.epoch_plan(epoch)
    stats = mixture.stats()
    out: dict[str, Any] = {"units": [], "per_unit": per_unit, "exact": bool(getattr(counter, "exact", False))}
    total = 0.0
    for u, unit in enumerate(mixture.units):
        row = {"name": unit.name, "counted": 0, "mean": 0.0, "max": 0, "dropped": 0.0, "tokens": 0.0}
        if unit.active:
            positions = [int(p) for p in (units == u).nonzero()[0][:per_unit]]
            counts = [counter(dataset.build((epoch, p), load_images=False)) for p in positions]
            kept = [c for c in counts if not isinstance(c, str)]
            row["counted"] = len(counts)
            row["dropped"] = 1 - len(kept) / len(counts) if counts else 0.0
            if kept:
                row["mean"] = sum(kept) / len(kept)
                row["max"] = max(kept)
            row["tokens"] = stats["units"][u]["per_epoch"] * (1 - row["dropped"]) * row["mean"]
            total += row["tokens"]
        out["units"].append(row)
    out["total"] = total
    return out


def format_tokens(estimate: dict, max_length: int, global_batch: int | None = None, note: str = "") -> str:
    """The token table of ``rscovlm data mix-stats``: per unit mean / max tokens of the counted samples, the
    dropped fraction, the expected tokens per epoch and their share; then the packed rows and steps they make."""
    how = "exact counts" if estimate["exact"] else "approximate counts (rule: rscovlm.data.tokens)"
    lines = ["", f"tokens per epoch ({how}, from up to {estimate['per_unit']} built samples per unit"
                 f"{'; ' + note if note else ''})",
             f"{'unit':28s} {'counted':>7s} {'mean':>8s} {'max':>7s} {'dropped':>8s} {'tokens/epoch':>14s} "
             f"{'share':>7s}"]
    total = estimate["total"] or 1.0
    for u in estimate["units"]:
        if not u["counted"]:
            continue
        lines.append(f"{u['name']:28s} {u['counted']:>7d} {u['mean']:>8.0f} {u['max']:>7d} "
                     f"{100 * u['dropped']:>7.1f}% {u['tokens']:>14,.0f} {100 * u['tokens'] / total:>6.2f}%")
    rows = estimate["total"] / max_length
    lines.append(f"total: {estimate['total']:,.0f} tokens per epoch = {rows:,.0f} full rows of {max_length} tokens "
                 "(train.packing: true fills rows to ~95%, benchmarks/bench_packing.py)")
    if global_batch:
        lines.append(f"optimizer steps per epoch with packing at a global batch of {global_batch} rows: "
                     f"~{math.ceil(rows / 0.95 / global_batch):,d}")
    return "\n".join(lines)
