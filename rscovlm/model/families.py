"""Per-family facts of the Qwen vision-language models the framework can train and run.

Everything that differs between Qwen2-VL, Qwen2.5-VL and Qwen3-VL and that the rest of the code must not guess
lives here: the frame the model writes box coordinates in, the vision patch geometry (``patch_size`` x
``merge_size`` is the side granularity of the resized input, 28 px for Qwen2/2.5-VL and 32 px for Qwen3-VL), the
placeholder tokens and where the vision tower, merger and language model sit in the ``transformers`` module tree
(used by the freeze flags and the per-module learning rates).

Box frames
----------
``"model_pixels"``
    Absolute integer pixels of the smart-resized image the model saw (Qwen2.5-VL). The frame is
    ``Frame.model(resized_width, resized_height)``.
``"relative_1000"``
    A 0-1000 grid on both axes whatever the image size (Qwen2-VL, Qwen3-VL):
    ``Frame(1000, 1000, "norm1000")``.

Look a family up with :func:`family_for` (by name, ``config.model_type`` or a config object) and register new
ones with :func:`register_family`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rscovlm.geometry.boxes import Frame

BoxFrameKind = Literal["model_pixels", "relative_1000"]


@dataclass(frozen=True)
class ModelFamily:
    """Facts of one model family (see the module docstring)."""

    name: str = field(metadata={"help": "registry key, e.g. 'qwen2_5_vl'"})
    model_types: tuple[str, ...] = field(metadata={"help": "config.model_type values that belong to the family"})
    box_frame: BoxFrameKind = field(metadata={"help": "frame of the coordinates the model reads and writes"})
    patch_size: int = field(metadata={"help": "vision patch side in pixels"})
    merge_size: int = field(default=2, metadata={"help": "patches merged per side into one LLM token"})
    temporal_patch_size: int = field(default=2, metadata={"help": "frames per temporal patch (images repeat)"})
    image_token: str = field(default="<|image_pad|>", metadata={"help": "placeholder expanded per image token"})
    video_token: str = field(default="<|video_pad|>", metadata={"help": "placeholder expanded per video token"})
    vision_start_token: str = field(default="<|vision_start|>", metadata={"help": "opens an image span"})
    vision_end_token: str = field(default="<|vision_end|>", metadata={"help": "closes an image span"})
    vision_module: str = field(default="model.visual", metadata={"help": "vision tower (merger included)"})
    merger_modules: tuple[str, ...] = field(
        default=("model.visual.merger",), metadata={"help": "vision-to-language projection modules"}
    )
    language_modules: tuple[str, ...] = field(
        default=("model.language_model", "lm_head"), metadata={"help": "decoder and output head"}
    )
    relative_grid: int = field(default=1000, metadata={"help": "grid size of 'relative_1000' frames"})

    @property
    def factor(self) -> int:
        """Side granularity of the resized input in pixels (``patch_size * merge_size``)."""
        return self.patch_size * self.merge_size

    def box_frame_for(self, resized_width: int, resized_height: int) -> Frame:
        """The frame model-written coordinates live in, for an input resized to ``resized_width x
        resized_height``."""
        if self.box_frame == "model_pixels":
            return Frame.model(resized_width, resized_height)
        return Frame(float(self.relative_grid), float(self.relative_grid), f"norm{self.relative_grid}")

    def image_tokens(self, grid_thw) -> int:
        """Number of placeholder tokens of one image with vision grid ``(t, h, w)``."""
        t, h, w = (int(v) for v in grid_thw)
        return t * h * w // (self.merge_size**2)


_FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Add ``family`` to the registry (its name and model types must be new)."""
    if family.name in _FAMILIES:
        raise ValueError(f"model family {family.name!r} is already registered")
    for other in _FAMILIES.values():
        clash = set(other.model_types) & set(family.model_types)
        if clash:
            raise ValueError(f"model types {sorted(clash)} already belong to family {other.name!r}")
    _FAMILIES[family.name] = family
    return family


def families() -> dict[str, ModelFamily]:
    """All registered families by name."""
    return dict(_FAMILIES)


def family_for(key: Any) -> ModelFamily:
    """Family of ``key``: a family name, a ``config.model_type`` string, or a ``transformers`` config object."""
    model_type = getattr(key, "model_type", key)
    if not isinstance(model_type, str):
        raise TypeError(f"cannot look up a model family from {type(key).__name__}")
    if model_type in _FAMILIES:
        return _FAMILIES[model_type]
    for family in _FAMILIES.values():
        if model_type in family.model_types:
            return family
    known = sorted(t for f in _FAMILIES.values() for t in f.model_types)
    raise KeyError(f"model type {model_type!r} belongs to no registered family; known model types: {known}")


QWEN2_VL = register_family(ModelFamily(
    name="qwen2_vl", model_types=("qwen2_vl",), box_frame="relative_1000", patch_size=14,
))
QWEN2_5_VL = register_family(ModelFamily(
    name="qwen2_5_vl", model_types=("qwen2_5_vl",), box_frame="model_pixels", patch_size=14,
))
# Qwen3-VL writes boxes on a 0-1000 relative grid (Qwen3-VL model card / cookbooks) and uses 16 px patches;
# its merger list also holds the DeepStack mergers.
QWEN3_VL = register_family(ModelFamily(
    name="qwen3_vl", model_types=("qwen3_vl", "qwen3_vl_moe"), box_frame="relative_1000", patch_size=16,
    merger_modules=("model.visual.merger", "model.visual.deepstack_merger_list"),
))
