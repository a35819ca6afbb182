"""Detection as text (paper 3.5.1): objects -> the model's response, and any string -> objects.

Writers are chosen by answer style (:data:`ANSWER_STYLES`, the ``answer_style`` of a prompt set):
:func:`write_detections` with ``style="reference"`` (the default) writes the reference's format, documented in
:mod:`rscovlm.protocol.reference` (``x1,y1,...,x4,y4 label`` lines / fenced JSON with ``"quadrant bbox"``,
``There are none.``); ``style="rscovlm-v0"`` writes rscovlm's earlier format described below
(:func:`format_detections`). :func:`parse_detections` reads both, and the other forms of
:mod:`rscovlm.protocol.readers` (Qwen2.5-VL ``bbox_2d`` JSON, GeoChat).

rscovlm-v0 response layout
--------------------------
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
from typing import Literal, Mapping, Sequence

import numpy as np

from rscovlm.geometry.boxes import BOX_DIMS, BoxKind, Boxes, Frame, normalize_obb, normalize_quads
from rscovlm.geometry.objects import ObjectSet
from rscovlm.protocol import reference
from rscovlm.protocol.categories import CategorySet, display_name, spelling_key
from rscovlm.protocol.readers import GEOCHAT_GRID, is_none, read_answer

OutputForm = Literal["plain", "json"]
NONE_ANSWER = "There is none."  # the rscovlm-v0 empty answer; the reference writes reference.NONE_ANSWER
ANSWER_STYLES = ("reference", "rscovlm-v0")
DEFAULT_ANSWER_STYLE = "reference"
_KIND_TO_JSON_KEY = {"hbb": "bbox_2d", "quad": "quad_2d", "obb": "rbox_2d"}  # rscovlm-v0


def check_style(style: str) -> str:
    if style not in ANSWER_STYLES:
        raise ValueError(f"unknown answer style {style!r}; expected one of {list(ANSWER_STYLES)}")
    return style


def write_detections(objects: ObjectSet, form: OutputForm = "plain", style: str = DEFAULT_ANSWER_STYLE, *,
                     kind: BoxKind | None = None, frame: Frame | None = None) -> str:
    """The target text of ``objects`` in answer style ``style`` (module docstring), boxes written as ``kind``
    (default: their own kind).

    ``frame``: the frame the numbers are written in (the model frame). The boxes are mapped into it from their
    own frame - for the reference style exactly as the reference resizes annotations, ``int(v * target /
    source)`` per quad vertex (:func:`rscovlm.protocol.reference.scale_truncate`). Without ``frame`` the boxes
    are taken to be in the target frame already (reference: truncated toward zero; rscovlm-v0: rounded)."""
    check_style(style)
    kind = kind or objects.boxes.kind
    if style == "rscovlm-v0":
        objs = objects if frame is None else objects.to_frame(frame)
        return format_detections(objs.to(kind), form)
    quads = objects.boxes.to_quad()
    if frame is not None:
        if quads.frame is None:
            raise ValueError("these boxes carry no frame; give them one to write them into another")
        values = reference.scale_truncate(quads.data, quads.frame, frame)
    else:
        values = reference.truncate(quads.data)
    return reference.detection_answer(values, [reference.reference_label(lab) for lab in objects.labels], kind, form)


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
    ``There is none.`` / ``There are none.``; ``n_fragments`` counts every fragment seen, so that
    ``len(objects) + len(unparsed) + len(unknown_labels) == n_fragments``; ``form`` is the form the answer was
    written in (:class:`rscovlm.protocol.readers.Reading`: e.g. ``reference-plain``, ``bbox_2d-json``,
    ``geochat``, several joined by ``+``) and ``forms`` counts the objects read per form; ``synonym_labels`` lists
    ``(label, class)`` for the objects whose label was mapped through the synonym table (they are in
    ``objects``, counted apart); ``limits`` names the reading limits the answer hit (the text beyond them is in
    ``unparsed``); ``notes`` says what else a report should know (boxes left on GeoChat's grid)."""

    objects: ObjectSet
    none: bool = False
    unparsed: list[str] = field(default_factory=list)
    unknown_labels: list[str] = field(default_factory=list)
    n_fragments: int = 0
    form: str = "empty"
    limits: list[str] = field(default_factory=list)
    forms: dict[str, int] = field(default_factory=dict)
    synonym_labels: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def unparsed_fraction(self) -> float:
        """Share of fragments that yielded no object (unreadable or unknown label); 0 when there were none."""
        if self.n_fragments == 0:
            return 0.0
        return (len(self.unparsed) + len(self.unknown_labels)) / self.n_fragments


def synonym_lookup(table: Mapping[str, Sequence[str]], categories: CategorySet | None = None) -> dict[str, str]:
    """``{spelling key of a word: class}`` from a synonym table ``{class (any spelling): [word, ...]}`` (e.g.
    ``get_prompt_set().synonyms("dota")``). The class is the vocabulary's canonical id (a table class outside
    ``categories`` is skipped), or its display name without ``categories``. A word listed under two classes is
    left out (ambiguous)."""
    out: dict[str, str] = {}
    ambiguous: set[str] = set()
    for cls, words in table.items():
        target = categories.canonical(cls) if categories is not None else spelling_key(cls)
        if target is None:
            continue
        for word in (cls, *words):
            key = spelling_key(word)
            if out.get(key, target) != target:
                ambiguous.add(key)
            out[key] = target
    for key in ambiguous:
        del out[key]
    return out


def parse_detections(
    text: str,
    kind: BoxKind | None = None,
    frame: Frame | None = None,
    categories: CategorySet | None = None,
    synonyms: Mapping[str, Sequence[str]] | None = None,
) -> ParseResult:
    """Read a response in any form of :mod:`rscovlm.protocol.readers` (never raises, linear time, limits there).
    ``kind`` keeps only boxes of that kind (others are reported unparsed); without it, the kind is read from each
    box (hbb, obb, quad) and mixed kinds become quads. A box without a label is reported unparsed.
    ``categories`` restricts labels to a vocabulary (canonical ids in ``objects.labels``); without it labels
    are kept as display names. ``synonyms`` (a table ``{class: [word, ...]}``, see :func:`synonym_lookup`) maps
    a label that is no spelling of a class but a synonym of one onto it, listed in ``synonym_labels``; without
    it such labels are unknown. Boxes get ``frame`` (normally the model frame of the resize used); GeoChat
    boxes (0-100 grid) are mapped into it, or left on their grid (noted) without one."""
    reading = read_answer(text)
    result = ParseResult(None, none=is_none(reading), form=reading.form, limits=reading.limits,
                         n_fragments=len(reading.candidates))
    lookup = synonym_lookup(synonyms, categories) if synonyms else {}
    classes = set(lookup.values())
    kinds: list[str] = []
    values: list[tuple[float, ...]] = []
    labels: list[str] = []
    on_grid = 0
    for cand in reading.candidates:
        label = cand.label.strip() if cand.label is not None else ""
        if cand.kind is None or not label or (kind is not None and cand.kind != kind):
            result.unparsed.append(cand.raw)
            continue
        canonical = categories.canonical(label) if categories is not None else spelling_key(label)
        if canonical is None or (categories is None and lookup and canonical not in classes):
            mapped = lookup.get(spelling_key(label))
            if mapped is not None:
                result.synonym_labels.append((label, mapped))
                canonical = mapped
            elif categories is not None:
                result.unknown_labels.append(label)
                continue
        k, v = cand.kind, cand.values
        if cand.grid is not None:
            if frame is None:
                on_grid += 1
            else:
                k, v = _from_grid(k, v, cand.grid, frame)
        kinds.append(k)
        values.append(v)
        labels.append(canonical)
        if cand.form:
            result.forms[cand.form] = result.forms.get(cand.form, 0) + 1
    if on_grid:
        result.notes.append(f"{on_grid} GeoChat box(es) left on their 0-{GEOCHAT_GRID:g} grid: no frame was given")
    if labels:
        result.objects = ObjectSet(_boxes(kinds, values, kind, frame), labels)
    else:
        result.objects = ObjectSet.empty(kind or "quad", frame)
    return result


def _from_grid(kind: str, values: tuple[float, ...], grid: float, frame: Frame) -> tuple[str, tuple[float, ...]]:
    """Values on a ``grid`` x ``grid`` frame -> ``frame`` (obb angles in degrees on both sides)."""
    v = np.asarray([values], dtype=np.float64)
    if kind == "obb":
        v[:, 4] = np.radians(v[:, 4])
    with np.errstate(all="ignore"):
        out = Boxes(v, kind, Frame(grid, grid, "grid")).to_frame(frame).data[0]
    if kind == "obb":
        out[4] = np.degrees(out[4])
    return kind, tuple(out.tolist())


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
