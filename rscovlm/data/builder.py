"""Online sample builder (paper 3.2.3 and 3.3.3): a unified record -> one conversation the collator can read.

One builder makes training samples (``rng`` given: random template, random plain/JSON form, synonym
replacement, random resize, random category subsets and open-ended requests) and evaluation prompts
(``rng=None``: first plain template, full category list, no synonyms, the deterministic resize of
:meth:`rscovlm.resolution.ResolutionPolicy.plan`). Training and evaluation therefore read the same template
files and cannot drift apart.

Output (a plain dict, the "conversation dict" of the trainer's dataset)::

    {"messages": [
        {"role": "system", "content": [{"type": "text", "text": ...}]},          # only with system_prompt
        {"role": "user", "content": [
            {"type": "image", "image": "/abs/or/rel/path.png", "resized_width": w, "resized_height": h},
            {"type": "text", "text": "Detect plane, ship in the image. ..."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "plane: (12,30),(40,30),..."}]}],
     "meta": {"id", "unit", "type" (the unit's record kind), "source", "task", "form": "plain"|"json"|None,
              "box_kind",
              "family": "qwen2_5_vl",                                          # BuildConfig.family
              "plans": [{"original": [W, H], "model": [w, h]}, ...],          # one per image
              "box_frames": [[fw, fh], ...],                                  # one per image: the box frame
              "objects": {"kind", "labels", "boxes"},                        # box frame; detection/grounding
              "boxes": [{"kind", "values", "image"}] }}                       # box frame; conversations

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

Boxes travel one way: original pixels (records) -> box kind of the unit (``Boxes.to``) -> box frame of the
family for the resize (``Boxes.to_frame``) -> clipped to the frame -> text (``rscovlm.protocol``). Objects that
extend beyond the image (split patches) are clipped vertex-wise; objects with no area left are dropped (counted in
``meta.objects.clipped_away``). Detection targets keep difficult objects. An image whose requested objects are
absent answers ``There is none.``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, Callable

import numpy as np

from rscovlm.data.records import BOX_REF, content_parts, grounding_image_path
from rscovlm.geometry.boxes import Boxes, Frame
from rscovlm.geometry.objects import ObjectSet
from rscovlm.imageio import image_size, open_rgb
from rscovlm.protocol.categories import display_name
from rscovlm.protocol.detection import format_detections
from rscovlm.protocol.grounding import format_grounding
from rscovlm.protocol.prompts import (
    category_phrase,
    choose,
    load_prompt_set,
    load_synonyms,
    replace_synonyms,
)
from rscovlm.resolution import ResizePlan, ResolutionPolicy


@dataclass
class BuildConfig:
    """Options of the sample builder (the ``builder:`` mapping of a mixture YAML)."""

    min_pixels: int = field(default=224 * 224, metadata={"help": "lower bound of the model input's pixel count"})
    max_pixels: int = field(default=1008 * 1008, metadata={"help": "upper bound of the model input's pixel count"})
    family: str = field(default="qwen2_5_vl", metadata={
        "help": "model family the samples are built for (rscovlm.model.families): sets the side multiple of the "
                "resized input and the box frame of the targets (qwen2_5_vl: resized pixels; qwen2_vl, qwen3_vl: "
                "0-1000 grid). `rscovlm train` sets it from the checkpoint"})
    factor: int | None = field(default=None, metadata={
        "help": "side multiple of the resized input (patch size x merge size); default and only valid value: the "
                "family's (28 for Qwen2-VL / Qwen2.5-VL, 32 for Qwen3-VL)"})
    random_resize: bool = field(default=True, metadata={
        "help": "training: draw the input pixel area uniformly in [min_pixels, max_pixels] (paper 3.3.3)"})
    json_prob: float = field(default=0.5, metadata={"help": "training: probability of the JSON output form"})
    synonym_prob: float = field(default=0.3, metadata={
        "help": "training: probability of replacing each category word of a prompt with a synonym"})
    open_ended_prob: float = field(default=0.2, metadata={
        "help": "training: probability that a detection prompt asks for 'all the visible objects'"})
    subset_prob: float = field(default=0.3, metadata={
        "help": "training: probability that a detection prompt asks for a random subset of the categories"})
    system_prompt: str | None = field(default=None, metadata={"help": "system message prepended to every sample"})
    synonyms: str | None = field(default=None, metadata={"help": "synonym table YAML replacing the packaged one"})
    load_images: bool = field(default=False, metadata={
        "help": "put the image, opened and resized to the model frame, into the image part (a PIL image; what "
                "rscovlm.model.collator consumes) instead of only its path; the path stays under 'path'"})

    @classmethod
    def from_dict(cls, data: dict) -> "BuildConfig":
        known = {f.name for f in fields(cls)}
        extra = set(data) - known
        if extra:
            raise ValueError(f"builder: unknown option(s) {sorted(extra)}; expected {sorted(known)}")
        cfg = cls(**data)
        for name in ("json_prob", "synonym_prob", "open_ended_prob", "subset_prob"):
            if not 0.0 <= getattr(cfg, name) <= 1.0:
                raise ValueError(f"builder: {name} must be in [0, 1], got {getattr(cfg, name)}")
        if cfg.open_ended_prob + cfg.subset_prob > 1.0:
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


class BuildError(ValueError):
    """A record the builder cannot turn into a sample (names the unit and record)."""


class SampleBuilder:
    """See module docstring. ``build(record, unit, rng)`` dispatches on ``unit.type``."""

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
    def build(self, record: dict, unit, rng: np.random.Generator | None = None) -> dict:
        return self._builders[unit.type](record, unit, rng)

    def plan(self, width: float, height: float, rng: np.random.Generator | None) -> ResizePlan:
        if rng is not None and self.config.random_resize:
            return self.policy.random_plan(int(width), int(height), rng)
        return self.policy.plan(int(width), int(height))

    def form(self, rng: np.random.Generator | None) -> str:
        return "json" if rng is not None and rng.random() < self.config.json_prob else "plain"

    @staticmethod
    def image_path(unit, rel: str) -> str:
        return rel if os.path.isabs(rel) or not unit.images else os.path.join(unit.images, rel)

    def _image_size(self, path: str) -> tuple[int, int]:
        size = self._sizes.get(path)
        if size is None:
            size = self._sizes[path] = image_size(path)
        return size

    def _image_part(self, path: str, plan: ResizePlan) -> dict:
        """The image part of ``path``; with ``load_images`` the decoded image (a missing, truncated or damaged file
        raises :class:`~rscovlm.imageio.ImageReadError` naming it) resized to the model frame."""
        w, h = plan.model_size
        if not self.config.load_images:
            return {"type": "image", "image": path, "resized_width": w, "resized_height": h}
        from PIL import Image

        with open_rgb(path) as im:
            if im.size != (int(plan.original.width), int(plan.original.height)):
                raise BuildError(f"image {path} is {im.size[0]}x{im.size[1]}, but its record says "
                                 f"{plan.original.width:g}x{plan.original.height:g}")
            image = im.resize((w, h), Image.Resampling.BICUBIC)
        return {"type": "image", "image": image, "path": path, "resized_width": w, "resized_height": h}

    def _wrap(self, user: list[dict], target: str, meta: dict) -> dict:
        messages = []
        if self.config.system_prompt:
            messages.append({"role": "system", "content": [{"type": "text", "text": self.config.system_prompt}]})
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": target}]})
        return {"messages": messages, "meta": meta}

    def box_frame(self, plan: ResizePlan) -> Frame:
        """The frame target coordinates are written in for an image resized by ``plan`` (see module docstring)."""
        return self.family.box_frame_for(*plan.model_size)

    def _to_target(self, boxes: Boxes, plan: ResizePlan) -> Boxes:
        """Boxes of the original frame -> box frame of the family for ``plan``, clipped to it."""
        if boxes.frame != plan.original:
            raise ValueError(f"boxes are in frame {boxes.frame}, expected the original frame {plan.original}")
        return boxes.to_frame(self.box_frame(plan)).clip()

    def _to_model(self, boxes: Boxes, plan: ResizePlan) -> tuple[Boxes, np.ndarray]:
        """Boxes of the original frame -> target frame, clipped; also the mask of boxes that keep some area."""
        model = self._to_target(boxes, plan)
        keep = model.areas() > 0
        return model, keep

    def _frames_meta(self, plans: list[ResizePlan]) -> dict:
        frames = [self.box_frame(p) for p in plans]
        return {"family": self.family.name, "plans": [p.as_dict() for p in plans],
                "box_frames": [[int(f.width), int(f.height)] for f in frames]}

    def _category_word(self, cid: str, rng: np.random.Generator | None) -> str:
        word = display_name(cid)
        syns = self.synonyms.get(cid)
        if rng is not None and syns and rng.random() < self.config.synonym_prob:
            return syns[int(rng.integers(len(syns)))]
        return word

    # ---- detection ----------------------------------------------------------------------------------------
    def build_detection(self, record: dict, unit, rng: np.random.Generator | None = None) -> dict:
        """A per-image detection record (:class:`rscovlm.data.mixture.CocoStore`) -> detection conversation."""
        kind = unit.target_box_kind
        templates = load_prompt_set(unit.prompt_set).detection
        cats = list(record["categories"])
        labels = list(record["labels"])
        mode = "all"
        requested = cats
        if rng is not None:
            r = rng.random()
            if r < self.config.open_ended_prob:
                mode = "open"
            elif r < self.config.open_ended_prob + self.config.subset_prob:
                mode = "subset"
                keep = rng.random(len(cats)) < 0.5
                if not keep.any():
                    keep[int(rng.integers(len(cats)))] = True
                requested = [c for c, k in zip(cats, keep) if k]
                requested = [requested[i] for i in rng.permutation(len(requested))]
        if mode == "open":
            phrase = choose(templates.open_ended, rng)
            selected = np.ones(len(labels), dtype=bool)
        else:
            phrase = category_phrase([self._category_word(c, rng) for c in requested])
            wanted = set(requested)
            selected = np.array([lab in wanted for lab in labels], dtype=bool)
        form = self.form(rng)
        prompt = choose(templates.get(form, kind), rng).format(categories=phrase)
        plan = self.plan(record["width"], record["height"], rng)
        quads = np.asarray(record["quads"], dtype=np.float64).reshape(-1, 8)[selected]
        boxes = Boxes(quads, "quad", plan.original).to(kind)
        model, keep = self._to_model(boxes, plan)
        chosen = [lab for lab, s in zip(labels, selected) if s]
        objects = ObjectSet(model, chosen).select(keep)
        target = format_detections(objects, form)
        path = self.image_path(unit, record["image"])
        meta = {"id": str(record["id"]), "unit": unit.name, "type": unit.type, "source": unit.source or unit.name,
                "task": unit.task or "detection", "form": form, "box_kind": kind, "request": mode,
                **self._frames_meta([plan]),
                "objects": {"kind": kind, "labels": objects.labels, "boxes": objects.boxes.data.tolist(),
                            "clipped_away": int((~keep).sum())}}
        return self._wrap([self._image_part(path, plan), {"type": "text", "text": prompt}], target, meta)

    # ---- grounding ----------------------------------------------------------------------------------------
    def build_grounding(self, record: dict, unit, rng: np.random.Generator | None = None) -> dict:
        """A refGeo-style grounding record -> referring conversation with one box."""
        kind = unit.target_box_kind
        templates = load_prompt_set(unit.prompt_set).grounding
        form = self.form(rng)
        question = record["question"].strip()
        if rng is not None and self.config.synonym_prob > 0:
            question = replace_synonyms(question, self.synonyms, {c: display_name(c) for c in self.synonyms},
                                        rng, self.config.synonym_prob)
        prompt = choose(templates.get(form, kind), rng).format(object=question)
        plan = self.plan(record["image_width"], record["image_height"], rng)
        if kind == "hbb":
            boxes = Boxes(np.asarray(record["bbox"], dtype=np.float64), "hbb", plan.original)
        else:
            if record.get("poly") is None:
                raise BuildError(f"unit {unit.name}: record {record.get('question_id')!r} has no 'poly' for "
                                 f"{kind} targets")
            boxes = Boxes(np.asarray(record["poly"], dtype=np.float64).reshape(1, 8), "quad",
                          plan.original).to(kind)
        model = self._to_target(boxes, plan)
        target = format_grounding(model, form)
        path = self.image_path(unit, grounding_image_path(record))
        meta = {"id": f"{record['dataset']}/{record.get('question_id', record['image_id'])}", "unit": unit.name,
                "type": unit.type, "source": unit.source or record.get("source") or record["dataset"],
                "task": unit.task or "grounding",
                "form": form, "box_kind": kind, **self._frames_meta([plan]),
                "objects": {"kind": kind, "labels": [question], "boxes": model.data.tolist(), "clipped_away": 0}}
        return self._wrap([self._image_part(path, plan), {"type": "text", "text": prompt}], target, meta)

    # ---- conversations ------------------------------------------------------------------------------------
    def build_conversation(self, record: dict, unit, rng: np.random.Generator | None = None) -> dict:
        """A conversation record -> the same conversation with resized images and ``<box:N>`` rendered in the
        box frame of the image each box belongs to (plain box syntax of rscovlm.protocol)."""
        paths = [self.image_path(unit, p["image"]) for m in record["messages"] for p in content_parts(m["content"])
                 if p.get("type") == "image"]
        sizes = record.get("image_sizes") or [self._image_size(p) for p in paths]
        plans = [self.plan(w, h, rng) for w, h in sizes]
        rendered: list[str] = []
        model_boxes: list[dict] = []
        for box in record.get("boxes") or []:
            plan = plans[box.get("image", 0)]
            b = self._to_target(Boxes(np.asarray(box["values"], dtype=np.float64), box["kind"], plan.original), plan)
            rendered.append(format_grounding(b, "plain"))
            model_boxes.append({"kind": b.kind, "values": b.data[0].tolist(), "image": box.get("image", 0)})

        def render(text: str) -> str:
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
                    parts.append({"type": "text", "text": render(p["text"])})
            messages.append({"role": msg["role"], "content": parts})
        meta = {"id": record["id"], "unit": unit.name, "type": unit.type, "source": unit.source or record["source"],
                "task": unit.task or record["task"], "form": None,
                "box_kind": "+".join(sorted({b["kind"] for b in record.get("boxes") or []})) or None,
                **self._frames_meta(plans), "boxes": model_boxes}
        return {"messages": messages, "meta": meta}
