"""``rscovlm data preview``: built samples rendered for a human check.

For the first ``n`` positions of a mixture epoch (rank 0 of 1) the sample is built exactly as training (or,
with ``eval_mode``, evaluation) builds it; the image is resized to the model frame the target was written in,
and the boxes drawn are **parsed back from the target text** with :mod:`rscovlm.protocol` (conversations: the
rendered ``<box:N>`` boxes). A box drawn in the wrong place therefore shows a real disagreement between text and
pixels. Writes ``sample_XXX.png`` per sample and one ``index.html`` with image, prompt and target.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np


def _load_resized(part: dict):
    """The image of a built part in its model frame (already loaded and resized with ``load_images``); a missing,
    truncated or damaged file raises :class:`~rscovlm.imageio.ImageReadError` naming it."""
    from PIL import Image

    from rscovlm.imageio import as_rgb, load_resized

    if isinstance(part["image"], Image.Image):
        return as_rgb(part["image"])
    return load_resized(part["image"], (part["resized_width"], part["resized_height"]))


def render_sample(sample: dict):
    """The images of one built sample (model frame) with the target's boxes drawn, side by side."""
    from PIL import Image

    from rscovlm.geometry.boxes import Boxes, Frame
    from rscovlm.geometry.objects import ObjectSet
    from rscovlm.protocol.detection import parse_detections
    from rscovlm.protocol.grounding import parse_grounding
    from rscovlm.viz.overlay import draw_objects

    meta = sample["meta"]
    parts = [p for m in sample["messages"] for p in m["content"] if p["type"] == "image"]
    target = sample["messages"][-1]["content"][0]["text"]
    images = [_load_resized(p) for p in parts]
    # targets are written in the model family's box frame (resized pixels, or a 0-1000 grid): read them there,
    # draw them in the pixels of the resized image
    box_frames = [Frame(w, h, "box") for w, h in meta.get("box_frames", [im.size for im in images])]
    pixels = [Frame.model(*im.size) for im in images]
    if meta["type"] == "detection" and images:
        parsed = parse_detections(target, kind=meta["box_kind"], frame=box_frames[0])
        images[0] = draw_objects(images[0], parsed.objects.to_frame(pixels[0]))
    elif meta["type"] == "grounding" and images:
        boxes, _ = parse_grounding(target, kind=meta["box_kind"], frame=box_frames[0])
        images[0] = draw_objects(images[0], ObjectSet(boxes.to_frame(pixels[0]), ["target"] * len(boxes)),
                                 color=(255, 40, 40))
    else:
        for i, img in enumerate(images):
            mine = [b for b in meta.get("boxes", []) if b["image"] == i]
            for b in mine:
                boxes = Boxes(np.asarray(b["values"])[None], b["kind"], box_frames[i]).to_frame(pixels[i])
                img = draw_objects(img, ObjectSet(boxes, ["box"]), color=(255, 40, 40), show_labels=False)
            images[i] = img
    if not images:
        return Image.new("RGB", (320, 40), "white")
    gap = 8
    canvas = Image.new("RGB", (sum(im.width for im in images) + gap * (len(images) - 1),
                               max(im.height for im in images)), "white")
    x = 0
    for im in images:
        canvas.paste(im, (x, 0))
        x += im.width + gap
    return canvas


def render_preview(config: str | os.PathLike, out: str | os.PathLike, n: int = 8, epoch: int = 0,
                   eval_mode: bool = False, prompt_set: str | None = None) -> Path:
    """Build and render ``n`` samples of ``config``; returns the path of ``index.html``. ``prompt_set`` (a name or
    folder) replaces the mixture's prompt sets (builder and units)."""
    from rscovlm.data.builder import BuildError
    from rscovlm.data.mixture import MixtureDataset
    from rscovlm.imageio import ImageReadError

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = MixtureDataset.from_yaml(config, prompt_set, mode="eval" if eval_mode else "train", epoch=epoch)
    rows = []
    for pos in range(min(n, len(ds))):
        sample = ds[pos]
        name = f"sample_{pos:03d}.png"
        try:
            render_sample(sample).save(out / name)
        except ImageReadError as err:
            u, _ = ds.mixture.locate(ds.epoch, pos)
            raise BuildError(f"{ds.where(pos)}: unit {ds.mixture.units[u].name}: sample {pos}: {err}") from None
        prompt = "\n\n".join(p["text"] for m in sample["messages"][:-1] for p in m["content"] if p["type"] == "text")
        target = "\n\n".join(p["text"] for p in sample["messages"][-1]["content"])
        meta = sample["meta"]
        ps = meta.get("prompt_set")
        info = (f"#{pos} unit {meta['unit']} | {meta['source']} | {meta['task']} | form {meta.get('form')} | "
                f"boxes {meta.get('box_kind')} | prompt set {ps['name'] if ps else '-'} | " + ", ".join(
                    f"{p['original'][0]:g}x{p['original'][1]:g} -> {p['model'][0]}x{p['model'][1]}"
                    for p in meta["plans"]))
        rows.append(f"<tr><td><img src='{name}' style='max-width:560px'></td><td><p><b>{html.escape(info)}</b></p>"
                    f"<p><b>prompt</b></p><pre>{html.escape(prompt)}</pre><p><b>target</b></p>"
                    f"<pre>{html.escape(target)}</pre></td></tr>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>rscovlm data preview</title><style>"
            "body{font-family:sans-serif} td{vertical-align:top;padding:8px;border-bottom:1px solid #ccc}"
            "pre{white-space:pre-wrap;max-width:640px}</style></head><body>"
            f"<h1>{html.escape(str(config))} - epoch {epoch} ({'eval' if eval_mode else 'train'} mode)</h1>"
            f"<table>{''.join(rows)}</table></body></html>")
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
