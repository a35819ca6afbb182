"""Dynamic resolution policy (paper 3.3): which size the model sees, and the frames that relate it to the file.

* Sizes come from Qwen2-VL's own ``smart_resize`` (sides multiples of ``patch_size * merge_size`` = 28, pixel
  count within ``[min_pixels, max_pixels]``, aspect ratio kept): the model frame here is exactly the grid the
  processor feeds the vision tower, so boxes written in it are the coordinates Qwen2.5-VL reads and writes.
* Images are ``small`` (fewer pixels than ``min_pixels``: enlarged), ``regular``, or ``uhr`` (more than
  ``uhr_min_pixels``: too large to downsample without losing small objects, handled by the Zoom-in Chain).
* Random resize (paper 3.3.3): :meth:`ResolutionPolicy.random_plan` draws a size by one of
  :data:`RESIZE_DISTRIBUTIONS` (``area_uniform``: the pixel AREA uniform between the bounds; ``reference``: the
  reference implementation's side-scale draw), then snaps it with ``smart_resize``; boxes follow the image through
  the returned :class:`ResizePlan`. The distributions they produce are tabulated in docs/data.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from rscovlm.geometry.boxes import Boxes, Frame

SizeClass = Literal["small", "regular", "uhr"]
ResizeDistribution = Literal["area_uniform", "reference"]
RESIZE_DISTRIBUTIONS: tuple[str, ...] = ("area_uniform", "reference")


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's resize rule, from transformers (imported lazily: it pulls in torch). Returns ``(h, w)``."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as _smart_resize

    return _smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)


@dataclass(frozen=True)
class ResizePlan:
    """The original frame of an image and the model frame it is resized to."""

    original: Frame
    model: Frame

    @property
    def model_size(self) -> tuple[int, int]:
        """``(width, height)`` of the model input in pixels."""
        return int(self.model.width), int(self.model.height)

    def to_model(self, boxes: Boxes) -> Boxes:
        """Boxes in original pixels (or frameless) -> pixels of the resized input, per-axis scaling."""
        return _with_frame(boxes, self.original).to_frame(self.model)

    def to_original(self, boxes: Boxes) -> Boxes:
        """Boxes in pixels of the resized input (or frameless) -> original pixels. Answers of a 0-1000 family
        (``ModelFamily.box_frame_for``) map with ``boxes.to_frame(plan.original)`` instead."""
        return _with_frame(boxes, self.model).to_frame(self.original)

    def as_dict(self) -> dict:
        """JSON form stored beside model responses: ``{"original": [W, H], "model": [w, h]}``."""
        return {"original": [self.original.width, self.original.height],
                "model": [int(self.model.width), int(self.model.height)]}

    @classmethod
    def from_dict(cls, data: dict) -> "ResizePlan":
        (ow, oh), (mw, mh) = data["original"], data["model"]
        return cls(Frame.original(ow, oh), Frame.model(mw, mh))


def _with_frame(boxes: Boxes, frame: Frame) -> Boxes:
    if boxes.frame is None:
        return Boxes(boxes.data, boxes.kind, frame)
    if (boxes.frame.width, boxes.frame.height) != (frame.width, frame.height):
        raise ValueError(f"boxes are in frame {boxes.frame}, expected {frame}")
    return boxes


@dataclass(frozen=True)
class ResolutionPolicy:
    """Pixel budget of the model input. Defaults are the paper's (224x224 .. 1008x1008, Qwen2.5-VL factor 28)."""

    min_pixels: int = field(default=224 * 224, metadata={"help": "fewer pixels than this: enlarge (small image)"})
    max_pixels: int = field(default=1008 * 1008, metadata={"help": "more pixels than this: downsample"})
    factor: int = field(default=28, metadata={"help": "patch_size * merge_size of the vision tower"})
    uhr_min_pixels: int = field(
        default=4 * 1008 * 1008,
        metadata={"help": "images with more pixels than this are UHR (Zoom-in Chain); set to max_pixels to call "
                          "every downsampled image UHR"})

    def __post_init__(self) -> None:
        if not 0 < self.min_pixels <= self.max_pixels <= self.uhr_min_pixels:
            raise ValueError("need 0 < min_pixels <= max_pixels <= uhr_min_pixels, got "
                             f"{self.min_pixels}, {self.max_pixels}, {self.uhr_min_pixels}")

    def classify(self, width: int, height: int) -> SizeClass:
        pixels = width * height
        if pixels < self.min_pixels:
            return "small"
        return "uhr" if pixels > self.uhr_min_pixels else "regular"

    def plan(self, width: int, height: int) -> ResizePlan:
        """The deterministic resize of an image of ``width`` x ``height`` (what inference uses)."""
        h, w = smart_resize(height, width, self.factor, self.min_pixels, self.max_pixels)
        return ResizePlan(Frame.original(width, height), Frame.model(w, h))

    def random_plan(self, width: int, height: int, rng: np.random.Generator,
                    distribution: ResizeDistribution = "area_uniform") -> ResizePlan:
        """Random resize augmentation of an image of ``width`` x ``height`` (``P = width * height`` pixels), then
        ``smart_resize`` into ``[min_pixels, max_pixels]`` at the side multiple ``factor``:

        * ``area_uniform``: a target pixel area ``A ~ U(min_pixels, max_pixels)``; both sides scaled by
          ``sqrt(A / P)`` and rounded.
        * ``reference``: the reference implementation's draw (VisionXLab/RSCoVLM, ``random_resize`` of its
          dense-detection and refGeo datasets): ``s ~ U(min_pixels / P, max_pixels / P)`` - a ratio of pixel
          counts - applied to the SIDES, ``int(side * s)`` (truncated; at least 1 here, where the reference would
          fail on 0). The pixel count before snapping is ``P * s**2``, so sizes below ``min_pixels`` (every
          ``s < sqrt(min_pixels / P)``) are lifted to the lower bound by ``smart_resize``.
        """
        if distribution == "area_uniform":
            area = rng.uniform(self.min_pixels, self.max_pixels)
            scale = math.sqrt(area / (width * height))
            h, w = max(1, round(height * scale)), max(1, round(width * scale))
        elif distribution == "reference":
            pixels = width * height
            scale = rng.uniform(self.min_pixels / pixels, self.max_pixels / pixels)
            h, w = max(1, int(height * scale)), max(1, int(width * scale))
        else:
            raise ValueError(f"unknown random resize distribution {distribution!r}; expected one of "
                             f"{list(RESIZE_DISTRIBUTIONS)}")
        h, w = smart_resize(h, w, self.factor, self.min_pixels, self.max_pixels)
        return ResizePlan(Frame.original(width, height), Frame.model(w, h))
