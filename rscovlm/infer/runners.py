"""Task runners: questions about images in, structures in the ORIGINAL image frame out, on any backend.

Tasks (:data:`TASKS`) and the prompt each gets from the prompt set (the default ``reference`` set: the strings
the released checkpoints were trained and evaluated with; :meth:`rscovlm.protocol.PromptSet.eval_prompt`):

==========  ======================  =========================================================================
task        benchmark entry         query fields -> prompt; what the result holds
==========  ======================  =========================================================================
chat        (none)                  ``text`` sent as it is after the image; ``answer``
classify    ``scene_cls``           ``classes`` (names) -> ``Classify the image within one of the given
                                    classes:a,b,c.``; ``answer``
vqa         ``geochat_vqa``         ``text`` (question) -> ``{question} Answer the question using a single
                                    word or a short phrase.``; ``answer``
caption     ``rs_caption``          ``text`` (default ``Describe the image``); ``answer``
ground      ``geoground`` (plain)   ``text`` (the object) -> hbb system prompt + ``find the {object}``;
                                    ``boxes`` (hbb, original pixels)
detect      ``dense_det`` (plain,   ``categories`` (names; default the runner's vocabulary) -> quad system
            quad)                   prompt + ``find the {categories}.``; ``objects`` (quads, original pixels,
                                    scores = per-object confidence, :mod:`rscovlm.infer.confidence`)
zoom-vqa    ``lrsvqa`` (visual_cot) ``text``, ``category`` -> the Zoom-in Chain (:mod:`rscovlm.infer.zoom`);
                                    ``answer`` and the chain's trace in ``zoom``
==========  ======================  =========================================================================

Coordinates in answers are read in the model family's box frame of the resized input that the backend
recorded (:attr:`rscovlm.infer.Generation.image_sizes`; pixels of the resized image for Qwen2.5-VL, a 0-1000
grid for Qwen2-VL / Qwen3-VL) and mapped per axis to the original image (the displayed image:
:class:`rscovlm.imageio.ImageSource`). Every result keeps the raw answer, its generation (finish reason, token
counts, model sizes) and what the protocol reader could not read. A leading ``<think>...</think>`` block is
removed from ``answer`` (as the reference's evaluation does), never from ``raw``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from rscovlm.infer.backends import Generation

TASKS = ("chat", "classify", "vqa", "caption", "ground", "detect", "zoom-vqa")
DEFAULT_BENCHMARKS = {"classify": "scene_cls", "vqa": "geochat_vqa", "caption": "rs_caption",
                      "ground": "geoground", "detect": "dense_det", "zoom-vqa": "lrsvqa"}
BACKEND_TASK = {"chat": "chat", "classify": "classification", "vqa": "vqa", "caption": "caption", "ground": "grounding",
                "detect": "detection", "zoom-vqa": "zoom"}
_THINK = re.compile(r"^\s*<think>(.*?)</think>", re.S)


@dataclass
class Query:
    """One question about one image. ``image``: a file path or a PIL image; ``text``: the question (vqa,
    zoom-vqa), the request (caption) or the object (ground); ``classes``: the class names (classify);
    ``categories``: class names to detect (detect; default: the runner's vocabulary); ``category``: the
    question's category (zoom-vqa: some categories skip the chain); ``id``: yours, kept in the result."""

    image: Any
    text: str = ""
    classes: Sequence[str] | None = None
    categories: Sequence[str] | None = None
    category: str | None = None
    id: str | None = None


@dataclass
class Result:
    """The answer to one :class:`Query`. ``size``: the original (displayed) image size; ``model_size``: the size
    of the first image the model saw; ``answer`` (text tasks), ``boxes`` (ground: hbb :class:`Boxes` in
    original pixels), ``objects`` (detect: :class:`ObjectSet` of quads in original pixels with scores);
    ``parse``: reader facts (``form``, ``unparsed``, ``unknown_labels``, ``none``); ``zoom``: the chain's trace
    (zoom-vqa)."""

    id: str | None
    task: str
    image: str
    raw: str
    generation: Generation
    size: tuple[int, int]
    model_size: tuple[int, int] | None
    answer: str | None = None
    boxes: Any = None
    objects: Any = None
    parse: dict = field(default_factory=dict)
    zoom: dict | None = None

    def to_json(self) -> dict:
        """A JSON-ready record (boxes as lists in original pixels)."""
        g = self.generation
        out = {"id": self.id, "task": self.task, "image": self.image, "size": list(self.size),
               "model_size": list(self.model_size) if self.model_size else None, "raw": self.raw,
               "answer": self.answer, "finish_reason": g.finish_reason, "n_new_tokens": g.n_new_tokens,
               "image_sizes": [list(s) for s in g.image_sizes], "visual_tokens": g.visual_tokens}
        if self.boxes is not None:
            out["boxes"] = np.round(self.boxes.data, 3).tolist()
        if self.objects is not None:
            scores = self.objects.scores if self.objects.scores is not None else [None] * len(self.objects)
            out["objects"] = [{"label": lab, "quad": np.round(q, 3).tolist(),
                               "score": None if s is None or not np.isfinite(s) else round(float(s), 6)}
                              for lab, q, s in zip(self.objects.labels, self.objects.boxes.data, scores)]
        if self.parse:
            out["parse"] = self.parse
        if self.zoom is not None:
            out["zoom"] = self.zoom
        return out


def strip_think(text: str) -> str:
    """``text`` without a leading ``<think>...</think>`` block, stripped."""
    return _THINK.sub("", text, count=1).strip()


@dataclass
class RunnerConfig:
    """Prompts, frames and budgets of the runners."""

    prompt_set: str = field(default="reference", metadata={"help": "prompt set (reference = the released "
                                                                    "checkpoints' strings)"})
    family: str = field(default="qwen2_5_vl", metadata={"help": "model family: the frame answers' coordinates "
                                                                "are in"})
    categories: str = field(default="dota-v1.0", metadata={
        "help": "detection vocabulary: a category set name (dota-v1.0, dota-v1.5, dota-v2.0) or comma-separated "
                "class names"})
    min_pixels: int | None = field(default=None, metadata={"help": "pixel budget of each image (default: the "
                                                                   "backend's)"})
    max_pixels: int | None = field(default=None, metadata={"help": "pixel budget of each image (default: the "
                                                                   "backend's)"})
    max_new_tokens: int | None = field(default=None, metadata={"help": "answer budget (default: per task)"})
    confidence: bool = field(default=True, metadata={"help": "detect: ask for token log-probs and score every "
                                                             "object (else scores are nan)"})
    benchmarks: dict = field(default_factory=lambda: dict(DEFAULT_BENCHMARKS), metadata={
        "help": "benchmark entry of the prompt set per task"})


def category_set(spec: str):
    """A :class:`~rscovlm.protocol.categories.CategorySet` from a set name or comma-separated class names."""
    from rscovlm.protocol.categories import CATEGORY_SETS, CategorySet

    if spec in CATEGORY_SETS:
        return CATEGORY_SETS[spec]
    names = tuple(n.strip() for n in spec.split(",") if n.strip())
    if not names:
        raise ValueError(f"categories {spec!r}: name a category set ({sorted(CATEGORY_SETS)}) or list class names")
    return CategorySet("custom", names)


def image_name(value) -> str:
    return str(value) if isinstance(value, (str, os.PathLike)) else f"<{type(value).__name__}>"


def original_size(value) -> tuple[int, int]:
    """Displayed size of a file (header only) or a PIL image."""
    from rscovlm.imageio import display_size

    if isinstance(value, (str, os.PathLike)):
        return display_size(value)
    return tuple(value.size)


class Runner:
    """Run :data:`TASKS` on a backend (any registered backend object); see the module docstring."""

    def __init__(self, backend, config: RunnerConfig | None = None, zoom=None):
        from rscovlm.model.families import family_for
        from rscovlm.protocol.prompt_sets import get_prompt_set

        self.backend = backend
        self.config = config or RunnerConfig()
        self.prompt_set = get_prompt_set(self.config.prompt_set)
        self.family = family_for(self.config.family)
        self.vocabulary = category_set(self.config.categories)
        self.zoom_config = zoom

    def image_part(self, image) -> dict:
        part = {"type": "image", "image": image}
        if self.config.min_pixels is not None:
            part["min_pixels"] = self.config.min_pixels
        if self.config.max_pixels is not None:
            part["max_pixels"] = self.config.max_pixels
        return part

    def conversation(self, task: str, query: Query) -> list[dict]:
        """The conversation of one query (everything but zoom-vqa's)."""
        if task == "chat":
            return [{"role": "user", "content": [self.image_part(query.image), {"type": "text", "text": query.text}]}]
        ps, bench = self.prompt_set, self.config.benchmarks[task]
        if task == "classify":
            if not query.classes:
                raise ValueError(f"classify query {query.id or ''}: needs classes")
            prompt = ps.eval_prompt(bench, classes=list(query.classes))
        elif task == "vqa":
            prompt = ps.eval_prompt(bench, question=query.text)
        elif task == "caption":
            prompt = ps.eval_prompt(bench, question=query.text or "Describe the image")
        elif task == "ground":
            prompt = ps.eval_prompt(bench, object=query.text)
        elif task == "detect":
            names = list(query.categories) if query.categories else list(self.vocabulary.classes)
            prompt = ps.eval_prompt(bench, categories=names)
        else:
            raise ValueError(f"unknown task {task!r}; tasks: {list(TASKS)}")
        return prompt.messages(self.image_part(query.image))

    def run(self, task: str, queries: Sequence[Query], progress=None) -> list[Result]:
        """Answer every query (one batched backend call; ``progress`` advances per answer)."""
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; tasks: {list(TASKS)}")
        if task == "zoom-vqa":
            from rscovlm.infer.zoom import ZoomChain, ZoomConfig

            budget = {k: v for k, v in (("min_pixels", self.config.min_pixels),
                                        ("max_pixels", self.config.max_pixels)) if v is not None}
            cfg = self.zoom_config or ZoomConfig(prompt_set=self.config.prompt_set, family=self.config.family,
                                                 benchmark=self.config.benchmarks["zoom-vqa"],
                                                 max_new_tokens=self.config.max_new_tokens, **budget)
            return ZoomChain(self.backend, cfg).run(queries, progress=progress)
        conversations = [self.conversation(task, q) for q in queries]
        logprobs = task == "detect" and self.config.confidence
        gens = self.backend.generate_results(conversations, self.config.max_new_tokens, progress,
                                             BACKEND_TASK[task], logprobs=logprobs)
        return [self.result(task, q, g) for q, g in zip(queries, gens)]

    def result(self, task: str, query: Query, gen: Generation) -> Result:
        """Parse one answer into its :class:`Result` (original frame)."""
        from rscovlm.geometry.boxes import Frame
        from rscovlm.protocol.grounding import parse_grounding

        size = original_size(query.image)
        model_size = gen.image_sizes[0] if gen.image_sizes else None
        out = Result(query.id, task, image_name(query.image), gen.text, gen, size, model_size)
        original = Frame.original(*size)
        if task in ("chat", "classify", "vqa", "caption"):
            out.answer = strip_think(gen.text)
        elif task == "ground":
            boxes, unparsed = parse_grounding(strip_think(gen.text), "hbb",
                                              self.family.box_frame_for(*model_size))
            out.boxes = boxes.to_frame(original)
            out.parse = {"unparsed": len(unparsed)}
        elif task == "detect":
            objects, parse = self.detections(gen, size, query.categories)
            out.objects, out.parse = objects, parse
        return out

    def detections(self, gen: Generation, size: tuple[int, int], categories=None):
        """``(ObjectSet of quads in the original frame with confidence scores, parse facts)`` of one answer."""
        from rscovlm.geometry.boxes import Frame
        from rscovlm.geometry.objects import ObjectSet
        from rscovlm.infer.confidence import detections_with_confidence
        from rscovlm.protocol.categories import CategorySet

        vocab = CategorySet("query", tuple(categories)) if categories else self.vocabulary
        model_size = gen.image_sizes[0]
        text, tokens = gen.text, gen.tokens
        think = _THINK.match(text)
        if think:  # offsets into the tokens would move: such answers get no confidence
            text, tokens = text[think.end():], None
        parsed, scores = detections_with_confidence(text, tokens, gen.token_logprobs,
                                                    frame=self.family.box_frame_for(*model_size), categories=vocab)
        quads = parsed.objects.boxes.to_quad().to_frame(Frame.original(*size))
        objects = ObjectSet(quads, parsed.objects.labels, scores=scores)
        facts = {"form": parsed.form, "none": parsed.none, "fragments": parsed.n_fragments,
                 "unparsed": len(parsed.unparsed), "unknown_labels": len(parsed.unknown_labels),
                 "unscored": int(np.isnan(scores).sum())}
        return objects, facts
