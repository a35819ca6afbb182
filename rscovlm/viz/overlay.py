"""Draw objects on images for human checks (predictions, previews, demo reports).

Text is drawn with DejaVu Sans (the TrueType font matplotlib ships, so no extra dependency) at a size that grows
with the image (:func:`font_size_for`). A label sits on a solid box of its object's colour with black or white
text, whichever contrasts more (:func:`label_style`), so it stays readable on light, dark or same-coloured
objects. :func:`compare` puts ground truth and prediction side by side under title strips that name each panel.
"""

from __future__ import annotations

import colorsys
import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from rscovlm.geometry.objects import ObjectSet
from rscovlm.protocol.categories import display_name

BLACK, WHITE = (0, 0, 0), (255, 255, 255)
TITLE_BACKGROUND = (32, 32, 32)


def label_color(label: str) -> tuple[int, int, int]:
    """A stable, saturated colour per label (same label, same colour in every picture)."""
    hue = int(hashlib.md5(display_name(label).encode()).hexdigest()[:6], 16) / 0xFFFFFF
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def relative_luminance(rgb: tuple[int, int, int]) -> float:
    """WCAG 2 relative luminance of an sRGB colour, in [0, 1]."""
    def lin(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """WCAG 2 contrast ratio of two colours, 1 (same) to 21 (black on white); 4.5 is its bar for body text."""
    la, lb = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def label_style(color: tuple[int, int, int]) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """``(box fill, text colour)`` of a label drawn for an object of ``color``: the box is the object's colour,
    the text black or white, whichever contrasts more with it (a ratio of at least 4.58 for any colour)."""
    text = BLACK if contrast_ratio(color, BLACK) >= contrast_ratio(color, WHITE) else WHITE
    return color, text


def font_size_for(width: int, height: int) -> int:
    """Label text height in pixels for an image of this size: 12 px up to 400 px sides, growing with the square
    root of the shorter side beyond (19 px at 1024, 38 px at 4000)."""
    return round(12 * max(1.0, min(width, height) / 400) ** 0.5)


@lru_cache(maxsize=32)
def font(size: int) -> ImageFont.ImageFont:
    """DejaVu Sans at ``size`` px from matplotlib's bundled fonts (Pillow's own scalable default if absent)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.origin:
        path = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def draw_label(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, color: tuple[int, int, int],
               size: int, bounds: tuple[int, int]) -> tuple[int, int, int, int]:
    """Draw ``text`` on a solid box (:func:`label_style` of ``color``) whose bottom-left corner is at ``xy``,
    moved inside an image of size ``bounds``; returns the box (x0, y0, x1, y1)."""
    fill, ink = label_style(color)
    f = font(size)
    pad = max(1, size // 6)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=f)
    w, h = right - left + 2 * pad, bottom - top + 2 * pad
    x0 = int(min(max(0.0, xy[0]), max(0, bounds[0] - w)))
    y0 = int(min(max(0.0, xy[1] - h), max(0, bounds[1] - h)))
    draw.rectangle((x0, y0, x0 + w - 1, y0 + h - 1), fill=fill)
    draw.text((x0 + pad - left, y0 + pad - top), text, fill=ink, font=f)
    return x0, y0, x0 + w - 1, y0 + h - 1


def draw_objects(image: Image.Image, objects: ObjectSet, width: int | None = None, show_labels: bool = True,
                 color: tuple[int, int, int] | None = None, font_size: int | None = None) -> Image.Image:
    """A copy of ``image`` with every object's polygon (and label) drawn. Boxes must be in the image's frame:
    map them with ``objects.to_frame(...)`` first. A label sits above its polygon's top-left corner (inside the
    image); ``width`` (outline px) and ``font_size`` default to values that grow with the image."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    size = font_size or font_size_for(*out.size)
    width = width or max(2, size // 6)
    quads = objects.boxes.to_quad().data
    for quad, label in zip(quads, objects.labels):
        pts = [(float(quad[i]), float(quad[i + 1])) for i in range(0, 8, 2)]
        draw.polygon(pts, outline=color or label_color(label), width=width)
    if show_labels:  # after every outline, so no outline crosses a label
        for quad, label in zip(quads, objects.labels):
            xs, ys = quad[0::2], quad[1::2]
            draw_label(draw, (float(xs.min()), float(ys.min())), display_name(label), color or label_color(label),
                       size, out.size)
    return out


def titled(image: Image.Image, title: str, font_size: int | None = None) -> Image.Image:
    """``image`` under a dark strip holding ``title`` in white (strip height about twice the text size)."""
    size = font_size or font_size_for(*image.size)
    strip = 2 * size
    canvas = Image.new("RGB", (image.width, image.height + strip), TITLE_BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    f = font(size)
    left, top, right, bottom = draw.textbbox((0, 0), title, font=f)
    draw.text((max(2, (image.width - (right - left)) // 2) - left, (strip - (bottom - top)) // 2 - top), title,
              fill=WHITE, font=f)
    canvas.paste(image.convert("RGB"), (0, strip))
    return canvas


def side_by_side(left: Image.Image, right: Image.Image, gap: int = 8) -> Image.Image:
    """Two images next to each other on a white canvas (e.g. ground truth | prediction)."""
    h = max(left.height, right.height)
    canvas = Image.new("RGB", (left.width + gap + right.width, h), "white")
    canvas.paste(left.convert("RGB"), (0, 0))
    canvas.paste(right.convert("RGB"), (left.width + gap, 0))
    return canvas


def _count(n: int) -> str:
    return f"{n} object" if n == 1 else f"{n} objects"


def compare(image: Image.Image, truth: ObjectSet, prediction: ObjectSet, gap: int = 8) -> Image.Image:
    """The review picture: ``image`` with ``truth`` drawn (left panel, titled "ground truth: N objects") next to
    ``image`` with ``prediction`` drawn (right panel, "prediction: M objects"). Both sets in the image's frame."""
    size = font_size_for(*image.size)
    return side_by_side(titled(draw_objects(image, truth), f"ground truth: {_count(len(truth))}", size),
                        titled(draw_objects(image, prediction), f"prediction: {_count(len(prediction))}", size),
                        gap)
