"""The reference's answer formats (VisionXLab/RSCoVLM at commit c507282): what its checkpoints were trained to write.

Sources: ``rscovlm/training/data/dense_det_dataset.py`` (detection), ``refgeo_dataset.py`` (grounding),
``xeochat_dataset.py`` (TEOChat grounding). Readers: :mod:`rscovlm.protocol.readers` (forms ``reference-plain``,
``reference-json``, ``bbox_2d-json``).

Detection answers
-----------------
One object per line in the plain form, the line ending in ``\\n`` (also the last)::

    x1,y1,x2,y2,x3,y3,x4,y4 label      quad ("polygon")
    x1,y1,x2,y2 label                  hbb
    cx,cy,w,h,a label                  obb

and in the JSON form a fenced list, one object per tab-indented line (``json.dumps`` with its default separators
and ASCII escapes; keys in this order)::

    ```json
    [
    \t{"quadrant bbox": [x1, y1, x2, y2, x3, y3, x4, y4], "label": "plane"},
    \t{"quadrant bbox": [...], "label": "ship"}
    ]
    ```

with ``"oriented bbox"`` (5 numbers) for obb and ``"bbox_2d"`` (4 numbers, Qwen2.5-VL's key) for hbb. An image
without objects answers exactly ``There are none.`` (both forms).

* Numbers are integers of the model frame (pixels of the resized image). The reference scales the original
  annotation values and TRUNCATES toward zero: ``int(v * resized / original)`` per value (x by width, y by
  height). :func:`scale_truncate` does exactly that (same operation order, float64); given boxes already in the
  model frame, the writers truncate them (``int(v)``).
* hbb: the enclosing box of the truncated quad (the reference takes the COCO ``bbox`` field, which for DOTA is the
  polygon's enclosing box; it truncates ``x1 + w`` once more in the original frame first, which can lower x2/y2
  by one when the original values are fractional).
* obb: ``cv2.minAreaRect`` of the truncated vertices, then ``w >= h`` (swap and add 90 degrees otherwise), the
  angle wrapped into [-90, 90), then ``int()`` of all five values (angle in DEGREES, truncated toward zero, so
  -0.5 -> 0). The angle follows OpenCV's RotatedRect: the ``w`` side points along (cos a, sin a) in image
  coordinates (y down), i.e. positive = clockwise on screen - rscovlm's obb convention, in degrees instead of
  radians. OpenCV versions return different angle ranges; after the swap and wrap they agree except for
  squares (w == h), where OpenCV 4.5.1-4.x gives angles in (0, 90) and 5.x in [-90, 0).
* quad: the truncated vertices ordered by :func:`normalize_polygon`: sorted by their angle from the centroid
  (``atan2``; ascending = clockwise on screen), starting at the vertex with the smallest y (then x). This is not
  :func:`rscovlm.geometry.boxes.normalize_quads` (shoelace orientation, cyclic order kept): the two agree on
  every strictly convex quad, and differ on concave and self-intersecting quads (``normalize_polygon`` re-sorts
  the vertices by angle, which changes the polygon) and on degenerate ones (zero area, repeated or collinear
  vertices: ties of equal angle keep the input order).
* Order: by category (the transformed label ``name.replace("-", " ").lower()``, which is the order of the
  reference's category rank), then hbb y1, then hbb x1 (the truncated values); full ties keep the input order
  (stable sort).
* Labels: ``name.replace("-", " ").lower()`` (only hyphens become spaces).

Grounding answers (refGeo)
--------------------------
The same line / object forms for one box whose label is the referring expression itself, but built by string
concatenation (the label is NOT JSON-escaped), with polygons COUNTER-clockwise (``normalize_polygon(..., False)``)
although the system prompt says clock-wise, and the original values truncated before scaling
(``int(int(v) * resized / original)``). TEOChat grounding answers use the detection layout (``json.dumps``,
escaped) with the boxes in the order given.
"""

from __future__ import annotations

import json
import math
from typing import Sequence

import numpy as np

from rscovlm.geometry.boxes import Frame

NONE_ANSWER = "There are none."
JSON_KEYS: dict[str, str] = {"hbb": "bbox_2d", "obb": "oriented bbox", "quad": "quadrant bbox"}
_DIMS = {"hbb": 4, "obb": 5, "quad": 8}


def reference_label(name: str) -> str:
    """``small-vehicle`` -> ``small vehicle`` (hyphens only, then lower case)."""
    return name.replace("-", " ").lower()


def _check_finite(data: np.ndarray) -> np.ndarray:
    if not np.isfinite(data).all():
        raise ValueError("box values must be finite to be written")
    return data


def truncate(data) -> np.ndarray:
    """``int(v)`` of every value (toward zero), as int64."""
    return np.trunc(_check_finite(np.asarray(data, dtype=np.float64))).astype(np.int64)


def scale_truncate(data, source: Frame, target: Frame, pre_truncate: bool = False) -> np.ndarray:
    """``(N, 2K)`` x,y values of ``source`` -> ``int(v * target / source)`` per axis (int64), the reference's
    resize of annotations. ``pre_truncate``: ``int()`` the source values first (the refGeo datasets do)."""
    v = _check_finite(np.asarray(data, dtype=np.float64)).copy()
    if pre_truncate:
        v = np.trunc(v)
    v[:, 0::2] = v[:, 0::2] * target.width / source.width
    v[:, 1::2] = v[:, 1::2] * target.height / source.height
    return np.trunc(v).astype(np.int64)


def normalize_polygon(polygon: Sequence[int], clockwise: bool = True) -> list[int]:
    """The reference's vertex order of one quad (its first four vertices): sorted by ``atan2`` from the centroid
    (ascending = clockwise on screen; ``clockwise=False`` reverses), then rotated to start at the vertex with the
    smallest (y, x). Python's stable sort and ``min`` (first of equal vertices) as in the reference."""
    points = [(polygon[i], polygon[i + 1]) for i in range(0, 8, 2)]
    cx = sum(x for x, _ in points) / 4
    cy = sum(y for _, y in points) / 4
    points.sort(key=lambda p: math.atan2(p[1] - cy, p[0] - cx), reverse=not clockwise)
    start = points.index(min(points, key=lambda p: (p[1], p[0])))
    ordered = points[start:] + points[:start]
    return [int(v) for p in ordered for v in p]


def min_area_obb(polygon: Sequence[int]) -> list[int]:
    """The reference's ``convert_segmentation_to_obb`` of one polygon with integer vertices: ``[cx, cy, w, h, a]``
    truncated to integers, ``w >= h``, ``a`` in degrees in [-90, 90) before truncation (see module docstring)."""
    import cv2

    (x, y), (w, h), a = cv2.minAreaRect(np.asarray(polygon, dtype=np.int64).reshape(-1, 2))
    if w < h:
        w, h = h, w
        a += 90
    while not 90 > a >= -90:
        a = a - 180 if a >= 90 else a + 180
    return [int(x), int(y), int(w), int(h), int(a)]


def box_values(quad: Sequence[int], kind: str, clockwise: bool = True) -> list[int]:
    """The numbers the reference writes for one truncated quad as ``kind``."""
    if kind == "quad":
        return normalize_polygon(quad, clockwise)
    if kind == "hbb":
        xs, ys = quad[0::2], quad[1::2]
        return [int(min(xs)), int(min(ys)), int(max(xs)), int(max(ys))]
    if kind == "obb":
        return min_area_obb(quad)
    raise ValueError(f"unknown box kind {kind!r}; expected hbb, obb or quad")


def order(quads: np.ndarray, labels: Sequence[str]) -> list[int]:
    """Indices in answer order: (label, hbb y1, hbb x1) of the truncated quads, ties in input order."""
    y1 = quads[:, 1::2].min(axis=1) if len(quads) else []
    x1 = quads[:, 0::2].min(axis=1) if len(quads) else []
    return sorted(range(len(labels)), key=lambda i: (labels[i], int(y1[i]), int(x1[i])))


def format_lines(rows: Sequence[tuple[Sequence[int], str]]) -> str:
    """Plain form: ``"v,v,... label"`` lines, each ending in a newline; ``There are none.`` when empty."""
    if not rows:
        return NONE_ANSWER
    return "\n".join(",".join(str(v) for v in values) + f" {label}" for values, label in rows) + "\n"


def format_json(rows: Sequence[tuple[Sequence[int], str]], kind: str) -> str:
    """JSON form (``json.dumps`` per object, tab-indented, fenced); ``There are none.`` when empty."""
    if not rows:
        return NONE_ANSWER
    key = JSON_KEYS[kind]
    return "```json\n[\n\t" + ",\n\t".join(json.dumps({key: [int(v) for v in values], "label": label})
                                          for values, label in rows) + "\n]\n```"


def format_json_unescaped(values: Sequence[int], label: str, kind: str) -> str:
    """The refGeo JSON answer of one box, built by concatenation: the label is inserted as is."""
    numbers = ", ".join(str(int(v)) for v in values)
    return '```json\n[\n\t{"' + JSON_KEYS[kind] + '": [' + numbers + '], "label": "' + label + '"}\n]\n```'


def detection_answer(quads: np.ndarray, labels: Sequence[str], kind: str, form: str, clockwise: bool = True) -> str:
    """The reference detection answer for truncated integer ``quads`` ``(N, 8)`` with labels already written as
    the reference writes them (:func:`reference_label`)."""
    if form not in ("plain", "json"):
        raise ValueError(f"unknown output form {form!r}; expected 'plain' or 'json'")
    if kind not in _DIMS:
        raise ValueError(f"unknown box kind {kind!r}; expected hbb, obb or quad")
    quads = np.asarray(quads, dtype=np.int64).reshape(-1, 8)
    rows = [(box_values(quads[i].tolist(), kind, clockwise), labels[i]) for i in order(quads, labels)]
    return format_lines(rows) if form == "plain" else format_json(rows, kind)
