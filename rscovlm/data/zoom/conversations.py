"""Zoom-chain training conversations (paper 3.4; the reference's ``visual_cot_dataset.py``) as unified records.

A question with ONE evidence region (a grid cell, one object, a region-QA reference) becomes the two-pass chain,
in the prompt set's zoom strings (``zoom.yaml``; default ``reference``)::

    {"id": ..., "source": "dota", "task": "zoom_vqa",
     "messages": [
       {"role": "system", "content": "<the tool schema>"},
       {"role": "user", "content": [{"type": "image", "image": "<the original>"}, {"type": "text", "text":
           "<question>\\nZoom in to the region of interest and answer the question."}]},
       {"role": "assistant", "content": "<tool_call>\\n{\\"name\\": \\"image_zoom_in\\", \\"arguments\\":
           {\\"bbox\\": [<zoom:0.x1>, <zoom:0.y1>, <zoom:0.x2>, <zoom:0.y2>]}}\\n</tool_call>"},
       {"role": "user", "content": [{"type": "image", "image": "<the crop>"}, {"type": "text", "text":
           "Here's the zoomed-in image. You can complete your task now."}]},
       {"role": "assistant", "content": "<answer>"}],
     "image_sizes": [[W, H], [w, h]],
     "boxes": [{"kind": "hbb", "values": [RoI in original pixels], "image": 0}],
     "meta": {...}}

The sample builder (:mod:`rscovlm.data.builder`) resizes the original to the pass-1 budget and writes
``<zoom:0.*>`` as ``int(v * resized / original)`` of the RoI - the reference's training call - so the call always
matches the pixels the model saw. The crop is cut from the ORIGINAL where the Zoom-in Chain
(:meth:`rscovlm.infer.zoom.ZoomChain.original_crop`) reads for that call at the configured pass-1 budget (mapped
back, outward to whole pixels, snapped to sides that are multiples of 28 when that fits the crop budget) and
stored at the chain's pass-2 size (native resolution when the region fits ``crop_max_pixels``, else downsampled
into it), so a model that learned the call sees at inference the crop it was trained on. Set the mixture unit's
``random_resize_prob: 0`` (the reference never random-resizes these) and the same pixel budgets as here.

A question whose evidence spans several regions (a count over the whole image with several objects, a comparison)
is single-turn, as the reference writes records without exactly one crop box: no system message, user [original,
question], assistant answer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from rscovlm.protocol.prompt_sets import render

TASK = "zoom_vqa"
COORDS = ("x1", "y1", "x2", "y2")


@dataclass
class ChainConfig:
    """The chain the conversations are written for (match training's builder and inference's ZoomConfig)."""

    prompt_set: str = field(default="reference", metadata={"help": "prompt set whose zoom strings are written"})
    family: str = field(default="qwen2_5_vl", metadata={"help": "model family (box frame of the tool call)"})
    min_pixels: int = field(default=224 * 224, metadata={"help": "pass 1: pixel budget of the whole image"})
    max_pixels: int = field(default=1008 * 1008, metadata={"help": "pass 1: pixel budget of the whole image"})
    crop_min_pixels: int = field(default=224 * 224, metadata={"help": "pass 2: pixel budget of the crop"})
    crop_max_pixels: int = field(default=1008 * 1008, metadata={"help": "pass 2: pixel budget of the crop"})


class ChainGeometry:
    """Pass-1 sizes, tool-call boxes and pass-2 crops of :class:`ChainConfig` (the inference chain's rules)."""

    def __init__(self, cfg: ChainConfig):
        from rscovlm.infer.zoom import ZoomChain, ZoomConfig
        from rscovlm.model.families import family_for

        family = family_for(cfg.family)
        self.chain = ZoomChain(None, ZoomConfig(
            min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels, crop_min_pixels=cfg.crop_min_pixels,
            crop_max_pixels=cfg.crop_max_pixels, factor=family.factor, prompt_set=cfg.prompt_set,
            family=cfg.family))
        self.family = family
        self.zoom = self.chain.prompt_set.zoom
        if self.zoom is None:
            raise ValueError(f"chain.prompt_set: {cfg.prompt_set!r} has no zoom.yaml")

    def plan(self, roi, size: tuple[int, int]) -> dict | None:
        """For a RoI (original pixels) of an image of ``size``: ``{"pass1_size", "call" (model frame), "crop"
        (original pixels read), "crop_size" (pass-2 model size)}``; None when the call has no area."""
        from rscovlm.protocol.zoom import zoom_box_to_model

        pass1 = self.chain.whole_policy.plan(*size).model_size
        frame = self.family.box_frame_for(*pass1)
        call = zoom_box_to_model(roi, size, (int(frame.width), int(frame.height)))
        found = self.chain.original_crop(call, size, pass1)
        if found is None:
            return None
        crop, crop_size = found
        return {"pass1_size": list(pass1), "call": call, "crop": list(crop), "crop_size": list(crop_size)}

    def call_text(self, box_index: int = 0) -> str:
        """The assistant's tool call with ``<zoom:N.*>`` references for box ``box_index``."""
        return render(self.zoom.tool_call, **{c: f"<zoom:{box_index}.{c}>" for c in COORDS})


class CropWriter:
    """Writes pass-2 crops as PNG under ``folder/{source}/{image_id}__{x0}_{y0}_{x1}_{y1}.png`` (atomically; an
    existing file is reused: a resumed run does not cut it again)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.written = 0

    def write(self, source, image, crop: list[int], size: list[int]) -> str:
        from rscovlm.imageio import resize_to

        x0, y0, x1, y1 = crop
        path = self.folder / image.source / f"{image.image_id}__{x0}_{y0}_{x1}_{y1}.png"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            picture = resize_to(source.crop(x0, y0, x1, y1), tuple(size))
            tmp = path.with_name(path.name + ".part")
            picture.save(tmp, format="PNG", compress_level=1)  # lossless; fast to write, read once per epoch
            os.replace(tmp, path)
            self.written += 1
        return str(path.resolve())


def zoom_record(rec_id: str, source: str, image_path: str, size, question: str, answer: str, plan: dict,
                crop_path: str, roi, geometry: ChainGeometry, meta: dict) -> dict:
    """The two-pass record (module docstring); ``plan`` from :meth:`ChainGeometry.plan`."""
    z = geometry.zoom
    return {
        "id": rec_id, "source": source, "task": TASK,
        "messages": [
            {"role": "system", "content": z.system},
            {"role": "user", "content": [{"type": "image", "image": image_path},
                                         {"type": "text", "text": z.user_text(question)}]},
            {"role": "assistant", "content": geometry.call_text(0)},
            {"role": "user", "content": [{"type": "image", "image": crop_path},
                                         {"type": "text", "text": z.followup}]},
            {"role": "assistant", "content": answer}],
        "image_sizes": [list(size), list(plan["crop_size"])],
        "boxes": [{"kind": "hbb", "values": [float(v) for v in roi], "image": 0}],
        "meta": {**meta, "chain": "zoom", "roi": [round(float(v), 3) for v in roi], **plan}}


def single_record(rec_id: str, source: str, image_path: str, size, question: str, answer: str,
                  meta: dict) -> dict:
    """The single-turn record: user [original, question] -> answer, no system message."""
    return {"id": rec_id, "source": source, "task": TASK,
            "messages": [{"role": "user", "content": [{"type": "image", "image": image_path},
                                                      {"type": "text", "text": question}]},
                         {"role": "assistant", "content": answer}],
            "image_sizes": [list(size)], "meta": {**meta, "chain": "single"}}
