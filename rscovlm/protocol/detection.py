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

Parsing never raises. It reads both forms (and ``There are none.``), tolerates truncated output, and reports
every fragment it could not read and every label outside the vocabulary.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from rscovlm.geometry.boxes import BOX_DIMS, BoxKind, Boxes, Frame, normalize_obb, normalize_quads
from rscovlm.geometry.objects import ObjectSet
from rscovlm.protocol.categories import CategorySet, display_name, spelling_key

OutputForm = Literal["plain", "json"]
NONE_ANSWER = "There is none."
_NONE_PATTERN = re.compile(r"^\s*there\s+(is|are)\s+none\s*\.?\s*$", re.I)
JSON_BOX_KEYS: dict[str, BoxKind] = {"bbox_2d": "hbb", "quad_2d": "quad", "rbox_2d": "obb"}
_KIND_TO_JSON_KEY = {kind: key for key, kind in JSON_BOX_KEYS.items()}
_KIND_BY_ARITY = {dims: kind for kind, dims in BOX_DIMS.items()}
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


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
    ``There is none.``; ``n_fragments`` counts every object-like fragment seen."""

    objects: ObjectSet
    none: bool = False
    unparsed: list[str] = field(default_factory=list)
    unknown_labels: list[str] = field(default_factory=list)
    n_fragments: int = 0

    @property
    def unparsed_fraction(self) -> float:
        """Share of fragments that yielded no object (unreadable or unknown label); 0 when there were none."""
        if self.n_fragments == 0:
            return 0.0
        return (len(self.unparsed) + len(self.unknown_labels)) / self.n_fragments


def finite_numbers(text: str) -> list[float] | None:
    try:
        nums = [float(m) for m in _NUMBER.findall(text)]
    except ValueError:
        return None
    return nums if all(math.isfinite(x) for x in nums) else None


class _Collector:
    def __init__(self, categories: CategorySet | None, kind: BoxKind | None):
        self.categories, self.kind = categories, kind
        self.boxes: list[tuple[str, list[float]]] = []  # (kind, values)
        self.labels: list[str] = []
        self.result = ParseResult(ObjectSet.empty())

    def add(self, label, values, fragment: str) -> None:
        self.result.n_fragments += 1
        if not isinstance(label, str) or not label.strip():
            self.result.unparsed.append(fragment)
            return
        if values is None or len(values) not in _KIND_BY_ARITY:
            self.result.unparsed.append(fragment)
            return
        kind = _KIND_BY_ARITY[len(values)]
        if self.kind is not None and kind != self.kind:
            self.result.unparsed.append(fragment)
            return
        if self.categories is not None:
            canonical = self.categories.canonical(label)
            if canonical is None:
                self.result.unknown_labels.append(label.strip())
                return
        else:
            canonical = spelling_key(label)
        self.boxes.append((kind, values))
        self.labels.append(canonical)

    def finish(self, frame: Frame | None) -> ParseResult:
        if not self.boxes:
            self.result.objects = ObjectSet.empty(self.kind or "quad", frame)
            return self.result
        kinds = {k for k, _ in self.boxes}
        target = self.kind or (kinds.pop() if len(kinds) == 1 else "quad")
        converted = []
        with np.errstate(all="ignore"):  # absurd magnitudes may overflow; such boxes stay non-finite
            for kind, values in self.boxes:
                v = np.asarray(values, dtype=np.float64)[None, :]
                if kind == "obb":
                    v[:, 4] = np.radians(v[:, 4])
                converted.append(Boxes(v, kind).to(target).data)
        boxes = Boxes(np.concatenate(converted), target, frame)
        self.result.objects = ObjectSet(boxes, self.labels)
        return self.result


_FENCE = re.compile(r"```(?:json)?\s*(.*?)(?:```|$)", re.S | re.I)
_JSON_OBJECT = re.compile(r"\{[^{}]*\}")


def json_items(text: str) -> list[tuple[object, str]] | None:
    """Objects of a JSON-form response as ``(decoded or None, raw fragment)``; None when it is not JSON."""
    body = text
    fence = _FENCE.search(text)
    if fence:
        body = fence.group(1)
    elif not text.lstrip().startswith(("[", "{")):
        return None
    try:
        data = json.loads(body)
        if isinstance(data, dict):
            data = [data]
        if isinstance(data, list):
            return [(item, json.dumps(item) if not isinstance(item, str) else item) for item in data]
    except (ValueError, RecursionError):
        pass
    # truncated or slightly broken: read every flat {...} on its own
    items = []
    for raw in _JSON_OBJECT.findall(body):
        try:
            items.append((json.loads(raw), raw))
        except ValueError:
            items.append((None, raw))
    tail = _JSON_OBJECT.sub("", body).strip(" \n\t[],")
    if tail:
        items.append((None, tail))
    return items


def _read_json_item(item, raw: str, out: _Collector) -> None:
    if not isinstance(item, dict):
        out.add(None, None, raw)
        return
    keys = [k for k in JSON_BOX_KEYS if k in item]
    values = None
    if len(keys) == 1 and isinstance(item[keys[0]], list):
        try:
            values = [float(x) for x in item[keys[0]]]
            if not all(math.isfinite(x) for x in values) or len(values) != BOX_DIMS[JSON_BOX_KEYS[keys[0]]]:
                values = None
        except (TypeError, ValueError):
            values = None
    out.add(item.get("label"), values, raw)


_PLAIN_LINE = re.compile(r"^\s*([^:()\[\]{}]+?)\s*:\s*(.*)$")


def parse_detections(
    text: str,
    kind: BoxKind | None = None,
    frame: Frame | None = None,
    categories: CategorySet | None = None,
) -> ParseResult:
    """Read a response in either form. ``kind`` keeps only boxes of that kind (others are reported unparsed);
    without it, the kind is read from each box's arity (4 hbb, 5 obb, 8 quad) and mixed kinds become quads.
    ``categories`` restricts labels to a vocabulary (canonical ids in ``objects.labels``); without it labels
    are kept as display names. Boxes get ``frame`` (normally the model frame of the resize used)."""
    out = _Collector(categories, kind)
    if not isinstance(text, str):
        out.result.unparsed.append(repr(text))
        return out.finish(frame)
    if _NONE_PATTERN.match(text):
        out.result.none = True
        return out.finish(frame)
    items = json_items(text)
    if items is not None:
        for item, raw in items:
            _read_json_item(item, raw, out)
        return out.finish(frame)
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _PLAIN_LINE.match(line)
        if not m:
            out.result.n_fragments += 1
            out.result.unparsed.append(line)
            continue
        label, rest = m.group(1), m.group(2)
        for fragment in rest.split(";"):
            if fragment.strip():
                out.add(label, finite_numbers(fragment), f"{label}: {fragment.strip()}")
    return out.finish(frame)
