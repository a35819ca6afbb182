"""Detection as text (paper 3.5.1): objects -> the model's response, and any string -> objects.

Response layout
---------------
Objects are grouped by category, categories in alphabetical order of their display names
(``small vehicle``), and inside a category sorted by their starting vertex (y, then x; for hbb the top-left
corner, for obb the start vertex of its normalized quad). Coordinates are integers of the frame the boxes are in
- the model frame when building targets. An image without objects answers exactly ``There is none.``.

Plain form, one line per category, objects separated by ``; ``::

    plane: (12,30),(40,30),(40,60),(12,60); (100,20),(130,20),(130,50),(100,50)
    small vehicle: (5,5),(9,5),(9,9),(5,9)

  quad: four ``(x,y)`` vertices (normalized: clockwise on screen from the smallest-y vertex);
  hbb: ``(x1,y1),(x2,y2)``; obb: ``(cx,cy,w,h,angle)`` with integer ``angle`` in degrees, le90 (``w >= h``,
  angle in [-90, 90), positive = clockwise on screen).

JSON form (Qwen2.5-VL style), a fenced list with one object per line::

    ```json
    [
      {"bbox_2d": [12, 30, 40, 60], "label": "plane"}
    ]
    ```

  box keys: ``bbox_2d`` (hbb), ``quad_2d`` (quad, 8 numbers), ``rbox_2d`` (obb, 5 numbers, angle in degrees).

Parsing (:func:`parse_detections`) never raises and runs in linear time: it reads both forms (and ``There are
none.``) through :mod:`rscovlm.protocol.readers`, which documents exactly what is read (several categories on one
line, text after a box, truncated output) and the size and depth limits. Every fragment it could not read, every
label outside the vocabulary and every limit hit is reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from rscovlm.geometry.boxes import BOX_DIMS, BoxKind, Boxes, Frame, normalize_obb, normalize_quads
from rscovlm.geometry.objects import ObjectSet
from rscovlm.protocol.categories import CategorySet, display_name, spelling_key
from rscovlm.protocol.readers import JSON_BOX_KEYS, is_none, read_answer

OutputForm = Literal["plain", "json"]
NONE_ANSWER = "There is none."
_KIND_TO_JSON_KEY = {kind: key for key, kind in JSON_BOX_KEYS.items()}


# ---- formatting ---------------------------------------------------------------------------------------------

def canonical_order(objects: ObjectSet) -> tuple[np.ndarray, np.ndarray]:
    """Integer box values (normalized, rounded) and the response order of ``objects``.

    Returns ``(values, order)``: ``values[i]`` is the text form of object ``i`` (obb angle in degrees);
    ``order`` lists indices by (display name, start y, start x)."""
    kind = objects.boxes.kind
    data = objects.boxes.data
    if kind == "quad":
        values = normalize_quads(np.rint(data))
        start = values[:, :2]
    elif kind == "hbb":
        values = np.rint(objects.boxes.normalized().data)
        start = values[:, :2]
    else:
        obb = normalize_obb(data)
        values = np.rint(np.concatenate([obb[:, :4], np.degrees(obb[:, 4:5])], axis=1))
        values[:, 4] = np.where(values[:, 4] >= 90, values[:, 4] - 180, values[:, 4])
        start = Boxes(obb, "obb").to_quad().data[:, :2]
    names = [display_name(label) for label in objects.labels]
    order = sorted(range(len(names)), key=lambda i: (names[i], start[i, 1], start[i, 0], i))
    return values.astype(np.int64), np.asarray(order, dtype=np.int64)


def plain_box(v: np.ndarray, kind: str) -> str:
    if kind == "obb":
        return "(" + ",".join(str(int(x)) for x in v) + ")"
    return ",".join(f"({int(v[i])},{int(v[i + 1])})" for i in range(0, len(v), 2))


def format_detections(objects: ObjectSet, form: OutputForm = "plain") -> str:
    """The response text for ``objects`` (see module docstring). Box values are rounded in their own frame:
    map the boxes to the model frame first."""
    if len(objects) == 0:
        return NONE_ANSWER
    kind = objects.boxes.kind
    values, order = canonical_order(objects)
    if form == "json":
        key = _KIND_TO_JSON_KEY[kind]
        rows = [json.dumps({key: [int(x) for x in values[i]], "label": display_name(objects.labels[i])})
                for i in order]
        return "```json\n[\n  " + ",\n  ".join(rows) + "\n]\n```"
    if form != "plain":
        raise ValueError(f"unknown output form {form!r}; expected 'plain' or 'json'")
    lines: list[str] = []
    current = None
    for i in order:
        name = display_name(objects.labels[i])
        if name != current:
            lines.append(f"{name}: ")
            current = name
        else:
            lines[-1] += "; "
        lines[-1] += plain_box(values[i], kind)
    return "\n".join(lines)


# ---- parsing ------------------------------------------------------------------------------------------------

@dataclass
class ParseResult:
    """What :func:`parse_detections` read. ``objects`` holds only readable objects with known labels, boxes in
    the frame passed to the parser; ``unparsed`` the fragments it could not read; ``unknown_labels`` the labels
    outside the vocabulary (their objects are not in ``objects``); ``none`` is True for an explicit
    ``There is none.``; ``n_fragments`` counts every fragment seen, so that
    ``len(objects) + len(unparsed) + len(unknown_labels) == n_fragments``; ``form`` is the form the answer was
    written in (:class:`rscovlm.protocol.readers.Reading`); ``limits`` names the reading limits the answer hit
    (the text beyond them is in ``unparsed``)."""

    objects: ObjectSet
    none: bool = False
    unparsed: list[str] = field(default_factory=list)
    unknown_labels: list[str] = field(default_factory=list)
    n_fragments: int = 0
    form: str = "empty"
    limits: list[str] = field(default_factory=list)

    @property
    def unparsed_fraction(self) -> float:
        """Share of fragments that yielded no object (unreadable or unknown label); 0 when there were none."""
        if self.n_fragments == 0:
            return 0.0
        return (len(self.unparsed) + len(self.unknown_labels)) / self.n_fragments


def parse_detections(
    text: str,
    kind: BoxKind | None = None,
    frame: Frame | None = None,
    categories: CategorySet | None = None,
) -> ParseResult:
    """Read a response in any form of :mod:`rscovlm.protocol.readers` (never raises, linear time, limits there).
    ``kind`` keeps only boxes of that kind (others are reported unparsed); without it, the kind is read from each
    box (hbb, obb, quad) and mixed kinds become quads. A box without a label is reported unparsed.
    ``categories`` restricts labels to a vocabulary (canonical ids in ``objects.labels``); without it labels
    are kept as display names. Boxes get ``frame`` (normally the model frame of the resize used)."""
    reading = read_answer(text)
    result = ParseResult(None, none=is_none(reading), form=reading.form, limits=reading.limits,
                         n_fragments=len(reading.candidates))
    kinds: list[str] = []
    values: list[tuple[float, ...]] = []
    labels: list[str] = []
    for cand in reading.candidates:
        label = cand.label.strip() if cand.label is not None else ""
        if cand.kind is None or not label or (kind is not None and cand.kind != kind):
            result.unparsed.append(cand.raw)
            continue
        if categories is not None:
            canonical = categories.canonical(label)
            if canonical is None:
                result.unknown_labels.append(label)
                continue
        else:
            canonical = spelling_key(label)
        kinds.append(cand.kind)
        values.append(cand.values)
        labels.append(canonical)
    if labels:
        result.objects = ObjectSet(_boxes(kinds, values, kind, frame), labels)
    else:
        result.objects = ObjectSet.empty(kind or "quad", frame)
    return result


def _boxes(kinds: list[str], values: list[tuple[float, ...]], kind: BoxKind | None, frame: Frame | None) -> Boxes:
    """One :class:`Boxes` of ``kind`` (or of the one kind present, quads when mixed), in input order."""
    present = set(kinds)
    target = kind or (next(iter(present)) if len(present) == 1 else "quad")
    out = np.zeros((len(kinds), BOX_DIMS[target]))
    kinds_arr = np.asarray(kinds)
    with np.errstate(all="ignore"):  # absurd magnitudes may overflow; such boxes stay non-finite
        for k in present:
            rows = np.flatnonzero(kinds_arr == k)
            v = np.asarray([values[i] for i in rows], dtype=np.float64)
            if k == "obb":
                v[:, 4] = np.radians(v[:, 4])
            out[rows] = Boxes(v, k).to(target).data
    return Boxes(out, target, frame)
