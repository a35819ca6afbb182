"""Draw objects on images for human checks (predictions, previews, demo reports)."""

from __future__ import annotations

import colorsys
import hashlib

from PIL import Image, ImageDraw

from rscovlm.geometry.objects import ObjectSet
from rscovlm.protocol.categories import display_name


def label_color(label: str) -> tuple[int, int, int]:
    """A stable, saturated colour per label (same label, same colour in every picture)."""
    hue = int(hashlib.md5(display_name(label).encode()).hexdigest()[:6], 16) / 0xFFFFFF
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_objects(image: Image.Image, objects: ObjectSet, width: int = 2, show_labels: bool = True,
                 color: tuple[int, int, int] | None = None) -> Image.Image:
    """A copy of ``image`` with every object's polygon (and label) drawn. Boxes must be in the image's frame:
    map them with ``objects.to_frame(...)`` first."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    quads = objects.boxes.to_quad().data
    for quad, label in zip(quads, objects.labels):
        c = color or label_color(label)
        pts = [(float(quad[i]), float(quad[i + 1])) for i in range(0, 8, 2)]
        draw.polygon(pts, outline=c, width=width)
        if show_labels:
            x, y = pts[0]
            draw.text((x + 2, max(0.0, y - 11)), display_name(label), fill=c)
    return out


def side_by_side(left: Image.Image, right: Image.Image, gap: int = 8) -> Image.Image:
    """Two images next to each other on a white canvas (e.g. ground truth | prediction)."""
    h = max(left.height, right.height)
    canvas = Image.new("RGB", (left.width + gap + right.width, h), "white")
    canvas.paste(left.convert("RGB"), (0, 0))
    canvas.paste(right.convert("RGB"), (left.width + gap, 0))
    return canvas
