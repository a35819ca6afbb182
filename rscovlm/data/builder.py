"""Online sample builder (paper 3.2.3 and 3.3.3): a unified record -> one conversation the collator can read.

One builder makes training samples (``rng`` given: random resize, random output form, template draws, and the
optional category subsets, open-ended requests and synonyms) and evaluation prompts (``rng=None``: the plain form,
the prompt set's evaluation prompt, the full category list, the deterministic resize of
:meth:`rscovlm.resolution.ResolutionPolicy.plan`). Training and evaluation read the same prompt set, so they cannot
drift apart.

Prompt sets and answer styles
-----------------------------
Every prompt string comes from a prompt set (:mod:`rscovlm.protocol.prompt_sets`, option ``prompt_set``): the
default ``reference`` set holds the strings the released RSCoVLM checkpoints were trained on (VisionXLab/RSCoVLM at
c507282), ``rscovlm-v0`` the templates rscovlm used before. The set gives, per task, output form (plain / JSON)
and box kind (hbb / obb / quad): the system prompt (a system message when the set has one), the training templates
and the evaluation prompt, the category string rule and the probability of the plain form; targets are written
in the set's answer style (:func:`rscovlm.protocol.write_detections`, :func:`rscovlm.protocol.write_grounding`).
With the reference set a detection sample is, for a 1024 x 1024 DOTA patch kept at 1024 x 1024 and quads::

    system:    As an AI assistant, you specialize in accurate oriented object detection, delivering coordinates
               of the polygon vertices in plain text format 'x1,y1,x2,y2,x3,y3,x4,y4 object'.
    user:      <image> find the baseball diamond, basketball court, bridge, ..., tennis court
    assistant: 120,45,160,45,160,80,120,80 plane\\n130,300,170,300,170,340,130,340 plane\\n

(the evaluation prompt ends with a period; the training one does not - the reference's own difference). Numbers
are the original coordinates scaled to the box frame and truncated toward zero, objects ordered by label, then
hbb y1, then x1; an image without requested objects answers ``There are none.`` (rscovlm-v0: ``There is none.``).

Random draws of one training sample, in this order: random resize (probability ``random_resize_prob``, size by
``random_resize_dist``), the request (open-ended with ``open_ended_prob``, else a category subset with
``subset_prob``, else all categories; reference set: always all), the output form (plain with ``plain_prob``;
reference: 1.0 as its CLI default, so JSON is never drawn unless asked for), the template (the set's proxies and
replace rules, ``proxy_prob`` overriding their probabilities) and synonyms of category words in the prompt
(``synonym_prob``; detection targets keep the canonical names; a grounding question gets its synonyms before the
template draw, and its answer repeats the question as asked). Options are set in ``BuildConfig`` (the mixture's
``builder:`` mapping); :data:`UNIT_OPTIONS` may also be set per mixture unit, which wins over the builder's.

Output (a plain dict, the "conversation dict" of the trainer's dataset)::

    {"messages": [
        {"role": "system", "content": [{"type": "text", "text": ...}]},          # when the set/config has one
        {"role": "user", "content": [
            {"type": "image", "image": "/abs/or/rel/path.png", "resized_width": w, "resized_height": h},
            {"type": "text", "text": "find the plane, ship"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "12,30,40,30,40,60,12,60 plane\\n"}]}],
     "meta": {"id", "unit", "type" (the unit's record kind), "source", "task", "form": "plain"|"json"|None,
              "box_kind", "request": "all"|"subset"|"open" (detection),
              "prompt_set": {"name", "sha256"} (None for conversations: their text is the record's),
              "family": "qwen2_5_vl",                                          # BuildConfig.family
              "plans": [{"original": [W, H], "model": [w, h]}, ...],          # one per image
              "box_frames": [[fw, fh], ...],                                  # one per image: the box frame
              "objects": {"kind", "labels", "boxes", "clipped_away"},        # box frame; detection/grounding
              "boxes": [{"kind", "values", "image"}] }}                       # box frame; conversations

``meta.objects.boxes`` are the target boxes in the box frame before the answer style makes integers of them
(reference: truncation; rscovlm-v0: rounding), in record order; ``sha256`` is the first 16 hex digits of
:func:`prompt_set_digest`.

``resized_width`` / ``resized_height`` are the qwen-vl-utils keys that fix the input size, so the processor
resizes the image to exactly the model frame of the plan, the image the target coordinates refer to. With
``load_images`` the part holds the image itself, already resized to that frame (``image``: PIL image, ``path``:
its file) - the form :mod:`rscovlm.model.collator` takes as is (its resolution policy leaves a valid model size
unchanged). The trainer's ``data.source: mixture`` turns it on.

Box frames follow the model family (``BuildConfig.family``, :mod:`rscovlm.model.families`): the resized sizes are
multiples of the family's ``patch_size * merge_size`` (28 px for Qwen2-VL / Qwen2.5-VL, 32 px for Qwen3-VL) and
target coordinates are written in ``family.box_frame_for(w, h)`` of the resize applied - pixels of the resized
image (``[w, h]``) for Qwen2.5-VL, the 0-1000 grid (``[1000, 1000]``) for Qwen2-VL and Qwen3-VL. ``box_frames``
in ``meta`` records that frame per image.

Objects cut by an image border (split patches)
----------------------------------------------
As the reference builds its targets (its DOTA patches come from mmrotate's ``img_split.py``, which translates the
objects kept in a window without clipping them, and nothing clips later): by default (``clip_boxes: false``) an
object keeps its full coordinates, which may lie outside the image (negative, or beyond the width / height). With
``clip_boxes: true`` every vertex is clamped into the image (vertex-wise, in the original frame) and objects left
without area are dropped, counted in ``meta.objects.clipped_away``. Detection targets keep difficult objects.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np

from rscovlm.data.records import BOX_REF, content_parts, grounding_image_path
from rscovlm.geometry.boxes import Boxes, Frame
from rscovlm.geometry.objects import ObjectSet
from rscovlm.imageio import ImageReadError, display_size, load_resized
from rscovlm.protocol.categories import display_name
from rscovlm.protocol.detection import write_detections
from rscovlm.protocol.grounding import format_grounding, write_grounding
from rscovlm.protocol.prompt_sets import PromptSet, PromptSetError, describe, get_prompt_set, render
from rscovlm.protocol.prompts import load_synonyms, replace_synonyms
from rscovlm.resolution import RESIZE_DISTRIBUTIONS, ResizePlan, ResolutionPolicy

#: options a mixture unit may set for itself (None there = the builder's)
UNIT_OPTIONS = ("prompt_set", "plain_prob", "proxy_prob", "random_resize_prob", "random_resize_dist", "clip_boxes")
_PROBABILITIES = ("plain_prob", "proxy_prob", "random_resize_prob", "synonym_prob", "open_ended_prob",
                  "subset_prob")
_REPLACED = {"json_prob": "plain_prob (the probability of the plain form, = 1 - json_prob)",
             "random_resize": "random_resize_prob (1 = always, 0 = never) and random_resize_dist"}


@dataclass
class BuildConfig:
    """Options of the sample builder (the ``builder:`` mapping of a mixture YAML; those of :data:`UNIT_OPTIONS`
    may be overridden per unit)."""

    prompt_set: str = field(default="reference", metadata={
        "help": "prompt set of detection / grounding samples: a packaged name (reference = the released "
                "checkpoints' strings, also called 'default'; rscovlm-v0) or a folder"})
    min_pixels: int = field(default=224 * 224, metadata={"help": "lower bound of the model input's pixel count"})
    max_pixels: int = field(default=1008 * 1008, metadata={"help": "upper bound of the model input's pixel count"})
    family: str = field(default="qwen2_5_vl", metadata={
        "help": "model family the samples are built for (rscovlm.model.families): sets the side multiple of the "
                "resized input and the box frame of the targets (qwen2_5_vl: resized pixels; qwen2_vl, qwen3_vl: "
                "0-1000 grid). `rscovlm train` sets it from the checkpoint"})
    factor: int | None = field(default=None, metadata={
        "help": "side multiple of the resized input (patch size x merge size); default and only valid value: the "
                "family's (28 for Qwen2-VL / Qwen2.5-VL, 32 for Qwen3-VL)"})
    random_resize_prob: float = field(default=1.0, metadata={
        "help": "training: probability of a random resize (paper 3.3.3); otherwise the deterministic resize. The "
                "reference's code default is 0.0"})
    random_resize_dist: str = field(default="area_uniform", metadata={
        "help": "training: size distribution of the random resize: area_uniform (pixel area uniform in "
                "[min_pixels, max_pixels]) or reference (the reference's side-scale draw; docs/data.md)"})
    plain_prob: float | None = field(default=None, metadata={
        "help": "training: probability of the plain output form, else JSON (default: the prompt set's; reference "
                "1.0 as its CLI default prob_plain_text_prompt, rscovlm-v0 0.5)"})
    proxy_prob: float | None = field(default=None, metadata={
        "help": "training: probability of every template draw of the JSON form (a proxy template, each replace "
                "rule), the reference's prob_proxy_prompt (default: the prompt set's, reference 0.5)"})
    clip_boxes: bool = field(default=False, metadata={
        "help": "clamp targets into the image and drop objects left without area; default false keeps the full "
                "coordinates of objects cut by the border, as the reference does"})
    synonym_prob: float = field(default=0.0, metadata={
        "help": "training: probability of replacing each category word of a prompt with a synonym (rscovlm-v0's "
                "builder used 0.3; the reference never does)"})
    open_ended_prob: float | None = field(default=None, metadata={
        "help": "training: probability that a detection prompt asks for every visible object (default: the "
                "prompt set's; reference 0.0, rscovlm-v0 0.2). Answer labels stay canonical"})
    subset_prob: float = field(default=0.0, metadata={
        "help": "training: probability that a detection prompt asks for a random subset of the categories "
                "(rscovlm-v0's builder used 0.3; the reference never does)"})
    system_prompt: str | None = field(default=None, metadata={
        "help": "system message replacing the prompt set's in detection / grounding samples and prepended to "
                "conversations that have none"})
    synonyms: str | None = field(default=None, metadata={"help": "synonym table YAML replacing the packaged one"})
    load_images: bool = field(default=False, metadata={
        "help": "put the image, opened and resized to the model frame, into the image part (a PIL image; what "
                "rscovlm.model.collator consumes) instead of only its path; the path stays under 'path'"})

    @classmethod
    def from_dict(cls, data: dict) -> "BuildConfig":
        known = {f.name for f in fields(cls)}
        for old, new in _REPLACED.items():
            if old in data:
                raise ValueError(f"builder: {old} was replaced by {new}")
        extra = set(data) - known
        if extra:
            raise ValueError(f"builder: unknown option(s) {sorted(extra)}; expected {sorted(known)}")
        cfg = cls(**data)
        check_options({f.name: getattr(cfg, f.name) for f in fields(cls)}, "builder")
        if cfg.prompt_set is None:
            raise ValueError("builder: prompt_set: expected a prompt set name or folder, got None")
        if (cfg.open_ended_prob or 0.0) + cfg.subset_prob > 1.0:
            raise ValueError("builder: open_ended_prob + subset_prob must not exceed 1")
        cfg.model_family()
        return cfg

    def model_family(self):
        """The :class:`~rscovlm.model.families.ModelFamily` of ``family``; checks ``factor`` against it."""
        from rscovlm.model.families import families, family_for

        try:
            family = family_for(self.family)
        except (KeyError, TypeError):
            raise ValueError(f"builder: family: {self.family!r} is not a registered model family; known: "
                             f"{sorted(families())}") from None
        if self.factor is not None and self.factor != family.factor:
            raise ValueError(f"builder: factor {self.factor} does not match family {family.name} (patch "
                             f"{family.patch_size} x merge {family.merge_size} = {family.factor}); the processor "
                             "would resize the image again and move the targets. Leave factor unset")
        return family


def check_options(options: dict, where: str) -> None:
    """Type and range checks of builder / unit options (None = not set); errors name ``where.option``."""
    for name in _PROBABILITIES:
        v = options.get(name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise ValueError(f"{where}: {name} must be a number in [0, 1], got {v!r}")
    dist = options.get("random_resize_dist")
    if dist is not None and dist not in RESIZE_DISTRIBUTIONS:
        raise ValueError(f"{where}: random_resize_dist must be one of {list(RESIZE_DISTRIBUTIONS)}, got {dist!r}")
    clip = options.get("clip_boxes")
    if clip is not None and not isinstance(clip, bool):
        raise ValueError(f"{where}: clip_boxes must be true or false, got {clip!r}")
    name = options.get("prompt_set")
    if name is not None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: prompt_set must be a prompt set name or folder, got {name!r}")
        try:
            get_prompt_set(name)
        except (FileNotFoundError, PromptSetError) as err:
            raise ValueError(f"{where}: prompt_set: {err}") from None


@lru_cache(maxsize=None)
def _digest(path: str) -> str:
    h = hashlib.sha256()
    for file in sorted(Path(path).glob("*.yaml")):
        h.update(file.name.encode() + b"\0" + file.read_bytes() + b"\0")
    return h.hexdigest()


def prompt_set_digest(ps: PromptSet) -> str:
    """SHA-256 (hex) of the prompt set's files (``*.yaml`` of its folder, by name): two runs with the same digest
    used the same strings."""
    return _digest(ps.path)


def prompt_set_record(ps: PromptSet) -> dict[str, Any]:
    """What a run records about a prompt set: :func:`rscovlm.protocol.prompt_sets.describe` (name, folder, answer
    style per task) plus ``sha256`` (:func:`prompt_set_digest`)."""
    return {**describe(ps), "sha256": prompt_set_digest(ps)}


class BuildError(ValueError):
    """A record the builder cannot turn into a sample (names the unit and record)."""


class SampleBuilder:
    """See module docstring. ``build(record, unit, rng, box_kind)`` dispatches on ``unit.type``."""

    def __init__(self, config: BuildConfig | None = None):
        self.config = config or BuildConfig()
        c = self.config
        self.family = c.model_family()
        self.policy = ResolutionPolicy(c.min_pixels, c.max_pixels, self.family.factor,
                                       uhr_min_pixels=max(4 * 1008 * 1008, c.max_pixels))
        self.synonyms = load_synonyms(c.synonyms)
        self._sizes: dict[str, tuple[int, int]] = {}
        self._builders: dict[str, Callable] = {"detection": self.build_detection,
                                               "grounding": self.build_grounding,
                                               "conversation": self.build_conversation}

    # ---- shared pieces ------------------------------------------------------------------------------------
    def build(self, record: dict, unit, rng: np.random.Generator | None = None, box_kind: str | None = None) -> dict:
        """The sample of ``record`` of ``unit``; ``box_kind``: the target box kind (default: the unit's first)."""
        if unit.type == "conversation":
            return self.build_conversation(record, unit, rng)
        return self._builders[unit.type](record, unit, rng, box_kind)

    def option(self, unit, name: str):
        """The value of option ``name`` for ``unit``: the unit's own when set, else the builder's."""
        value = getattr(unit, name, None) if unit is not None else None
        return getattr(self.config, name) if value is None else value

    def prompt_set(self, unit=None) -> PromptSet:
        """The prompt set ``unit`` builds with (``default`` = ``reference``)."""
        return get_prompt_set(self.option(unit, "prompt_set"))

    def plan(self, width: float, height: float, rng: np.random.Generator | None, unit=None) -> ResizePlan:
        """The resize of one image: with ``rng``, random with probability ``random_resize_prob`` (one draw when
        it is strictly between 0 and 1), by ``random_resize_dist``; otherwise the deterministic plan."""
        p = self.option(unit, "random_resize_prob")
        if rng is not None and p > 0 and (p >= 1 or rng.random() < p):
            return self.policy.random_plan(int(width), int(height), rng, self.option(unit, "random_resize_dist"))
        return self.policy.plan(int(width), int(height))

    @staticmethod
    def image_path(unit, rel: str) -> str:
        return rel if os.path.isabs(rel) or not unit.images else os.path.join(unit.images, rel)

    def _image_size(self, path: str) -> tuple[int, int]:
        size = self._sizes.get(path)
        if size is None:
            size = self._sizes[path] = display_size(path)
        return size

    def _image_part(self, path: str, plan: ResizePlan) -> dict:
        """The image part of ``path``; with ``load_images`` the decoded image (a missing, truncated or damaged file
        raises :class:`~rscovlm.imageio.ImageReadError` naming it) resized to the model frame."""
        w, h = plan.model_size
        if not self.config.load_images:
            return {"type": "image", "image": path, "resized_width": w, "resized_height": h}
        try:
            image = load_resized(path, (w, h), expect_size=(plan.original.width, plan.original.height))
        except ImageReadError as err:
            if "its record says" in err.reason:
                raise BuildError(f"image {err}") from None
            raise
        return {"type": "image", "image": image, "path": path, "resized_width": w, "resized_height": h}

    def _wrap(self, system: str | None, user: list[dict], target: str, meta: dict) -> dict:
        messages = []
        system = self.config.system_prompt or system
        if system:
            messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": target}]})
        return {"messages": messages, "meta": meta}

    def box_frame(self, plan: ResizePlan) -> Frame:
        """The frame target coordinates are written in for an image resized by ``plan`` (see module docstring)."""
        return self.family.box_frame_for(*plan.model_size)

    def _frames_meta(self, plans: list[ResizePlan]) -> dict:
        frames = [self.box_frame(p) for p in plans]
        return {"family": self.family.name, "plans": [p.as_dict() for p in plans],
                "box_frames": [[int(f.width), int(f.height)] for f in frames]}

    @staticmethod
    def _set_meta(ps: PromptSet) -> dict:
        return {"name": ps.name, "sha256": prompt_set_digest(ps)[:16]}

    def _form(self, ps: PromptSet, task: str, unit, rng) -> str:
        """The output form: drawn in training; the plain form (the set's evaluation default) otherwise."""
        t = ps.task(task)
        if rng is not None:
            return t.draw_form(rng, self.option(unit, "plain_prob"))
        return "plain" if "plain" in t.forms else next(iter(t.forms))

    def _prompt(self, ps: PromptSet, task: str, form: str, kind: str, unit, rng, open_end: bool = False,
                **values) -> tuple[str | None, str]:
        """``(system, user text)``: a drawn training template (``rng``) or the evaluation prompt."""
        if rng is not None:
            return ps.training_prompt(task, form, kind, rng, proxy_prob=self.option(unit, "proxy_prob"),
                                      open_end=open_end, **values)
        t = ps.task(task)
        fp = t.get(form, kind)
        return fp.system, render(fp.eval, **t.values(values))

    def _category_word(self, cid: str, rng: np.random.Generator | None) -> str:
        """``cid`` (the set's category rule writes it) or, with probability ``synonym_prob``, a synonym."""
        syns = self.synonyms.get(cid)
        if rng is not None and syns and self.config.synonym_prob > 0 and rng.random() < self.config.synonym_prob:
            return syns[int(rng.integers(len(syns)))]
        return cid

    def _clip(self, boxes: Boxes, kind: str, unit) -> tuple[Boxes, np.ndarray]:
        """With ``clip_boxes``: vertex-wise clamp into the original frame, and the mask of boxes that keep area as
        ``kind``; without: the boxes unchanged, all kept."""
        if not self.option(unit, "clip_boxes"):
            return boxes, np.ones(len(boxes), dtype=bool)
        clipped = boxes.clip()
        return clipped, clipped.to(kind).areas() > 0

    # ---- detection ----------------------------------------------------------------------------------------
    def build_detection(self, record: dict, unit, rng: np.random.Generator | None = None,
                        box_kind: str | None = None) -> dict:
        """A per-image detection record (:class:`rscovlm.data.mixture.CocoStore`) -> detection conversation."""
        kind = box_kind or unit.target_box_kind
        ps = self.prompt_set(unit)
        task = ps.task("detection")
        cats = list(record["categories"])
        labels = list(record["labels"])
        plan = self.plan(record["width"], record["height"], rng, unit)
        open_prob = self.config.open_ended_prob
        if open_prob is None:
            open_prob = task.open_end.prob if task.open_end is not None else 0.0
        mode, requested = "all", cats
        if rng is not None and (open_prob > 0 or self.config.subset_prob > 0):
            r = rng.random()
            if r < open_prob:
                mode = "open"
            elif r < open_prob + self.config.subset_prob and cats:
                mode = "subset"
                keep = rng.random(len(cats)) < 0.5
                if not keep.any():
                    keep[int(rng.integers(len(cats)))] = True
                requested = [c for c, k in zip(cats, keep) if k]
                requested = [requested[i] for i in rng.permutation(len(requested))]
        form = self._form(ps, "detection", unit, rng)
        if mode == "open":
            system, prompt = self._prompt(ps, "detection", form, kind, unit, rng, open_end=True, categories=[])
            selected = np.ones(len(labels), dtype=bool)
        else:
            words = [self._category_word(c, rng) for c in requested]
            system, prompt = self._prompt(ps, "detection", form, kind, unit, rng, categories=words)
            wanted = set(requested)
            selected = np.array([lab in wanted for lab in labels], dtype=bool)
        quads = np.asarray(record["quads"], dtype=np.float64).reshape(-1, 8)[selected]
        boxes, keep = self._clip(Boxes(quads, "quad", plan.original), kind, unit)
        objects = ObjectSet(boxes, [lab for lab, s in zip(labels, selected) if s]).select(keep)
        frame = self.box_frame(plan)
        target = write_detections(objects, form, ps.answer_style("detection"), kind=kind, frame=frame)
        path = self.image_path(unit, record["image"])
        meta = {"id": str(record["id"]), "unit": unit.name, "type": unit.type, "source": unit.source or unit.name,
                "task": unit.task or "detection", "form": form, "box_kind": kind, "request": mode,
                "prompt_set": self._set_meta(ps), **self._frames_meta([plan]),
                "objects": {"kind": kind, "labels": objects.labels,
                            "boxes": objects.boxes.to_frame(frame).to(kind).data.tolist(),
                            "clipped_away": int((~keep).sum())}}
        return self._wrap(system, [self._image_part(path, plan), {"type": "text", "text": prompt}], target, meta)

    # ---- grounding ----------------------------------------------------------------------------------------
    def build_grounding(self, record: dict, unit, rng: np.random.Generator | None = None,
                        box_kind: str | None = None) -> dict:
        """A refGeo-style grounding record -> referring conversation with one box (reference style: the box
        followed by the referring expression, ``x1,y1,x2,y2 the storage tank near the ships``)."""
        kind = box_kind or unit.target_box_kind
        ps = self.prompt_set(unit)
        plan = self.plan(record["image_width"], record["image_height"], rng, unit)
        form = self._form(ps, "grounding", unit, rng)
        question = record["question"].strip()
        if rng is not None and self.config.synonym_prob > 0:  # the answer's label is the question as asked
            question = replace_synonyms(question, self.synonyms, {c: display_name(c) for c in self.synonyms},
                                        rng, self.config.synonym_prob)
        system, prompt = self._prompt(ps, "grounding", form, kind, unit, rng, object=question)
        if kind == "hbb":
            boxes = Boxes(np.asarray(record["bbox"], dtype=np.float64), "hbb", plan.original)
        else:
            if record.get("poly") is None:
                raise BuildError(f"unit {unit.name}: record {record.get('question_id')!r} has no 'poly' for "
                                 f"{kind} targets")
            boxes = Boxes(np.asarray(record["poly"], dtype=np.float64).reshape(1, 8), "quad", plan.original)
        boxes, keep = self._clip(boxes, kind, unit)
        frame = self.box_frame(plan)
        style = ps.answer_style("grounding")
        target = write_grounding(boxes[keep], form, style, label=question, kind=kind, frame=frame)
        path = self.image_path(unit, grounding_image_path(record))
        meta = {"id": f"{record['dataset']}/{record.get('question_id', record['image_id'])}", "unit": unit.name,
                "type": unit.type, "source": unit.source or record.get("source") or record["dataset"],
                "task": unit.task or "grounding", "form": form, "box_kind": kind,
                "prompt_set": self._set_meta(ps), **self._frames_meta([plan]),
                "objects": {"kind": kind, "labels": [question] * int(keep.sum()),
                            "boxes": boxes[keep].to_frame(frame).to(kind).data.tolist(),
                            "clipped_away": int((~keep).sum())}}
        return self._wrap(system, [self._image_part(path, plan), {"type": "text", "text": prompt}], target, meta)

    # ---- conversations ------------------------------------------------------------------------------------
    def build_conversation(self, record: dict, unit, rng: np.random.Generator | None = None) -> dict:
        """A conversation record -> the same conversation with resized images and ``<box:N>`` rendered in the
        box frame of the image each box belongs to (rscovlm-v0 box syntax: ``(x1,y1),(x2,y2)``, rounded; clamped
        into the image only with ``clip_boxes``)."""
        paths = [self.image_path(unit, p["image"]) for m in record["messages"] for p in content_parts(m["content"])
                 if p.get("type") == "image"]
        sizes = record.get("image_sizes") or [self._image_size(p) for p in paths]
        plans = [self.plan(w, h, rng, unit) for w, h in sizes]
        clip = self.option(unit, "clip_boxes")
        rendered: list[str] = []
        model_boxes: list[dict] = []
        for box in record.get("boxes") or []:
            plan = plans[box.get("image", 0)]
            b = Boxes(np.asarray(box["values"], dtype=np.float64), box["kind"], plan.original)
            b = b.to_frame(self.box_frame(plan))
            b = b.clip() if clip else b
            rendered.append(format_grounding(b, "plain"))
            model_boxes.append({"kind": b.kind, "values": b.data[0].tolist(), "image": box.get("image", 0)})

        def render_refs(text: str) -> str:
            return BOX_REF.sub(lambda m: rendered[int(m.group(1))], text)

        messages: list[dict[str, Any]] = []
        if self.config.system_prompt and record["messages"][0]["role"] != "system":
            messages.append({"role": "system", "content": [{"type": "text", "text": self.config.system_prompt}]})
        k = 0
        for msg in record["messages"]:
            parts = []
            for p in content_parts(msg["content"]):
                if p.get("type") == "image":
                    parts.append(self._image_part(paths[k], plans[k]))
                    k += 1
                else:
                    parts.append({"type": "text", "text": render_refs(p["text"])})
            messages.append({"role": msg["role"], "content": parts})
        meta = {"id": record["id"], "unit": unit.name, "type": unit.type, "source": unit.source or record["source"],
                "task": unit.task or record["task"], "form": None,
                "box_kind": "+".join(sorted({b["kind"] for b in record.get("boxes") or []})) or None,
                "prompt_set": None, **self._frames_meta(plans), "boxes": model_boxes}
        return {"messages": messages, "meta": meta}
