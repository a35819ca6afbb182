"""Grounding answers as text: one or a few boxes without category lines.

Writing (:func:`write_grounding`) by answer style: ``reference`` (the default) writes the refGeo answer of the
reference, ``x1,y1,x2,y2 <referring expression>\\n`` or its fenced JSON object (see
:mod:`rscovlm.protocol.reference`); ``rscovlm-v0`` writes the earlier form (:func:`format_grounding`): boxes
separated by ``; `` in the detection box syntax (hbb ``(x1,y1),(x2,y2)``), or ``[{"bbox_2d": [x1, y1, x2, y2]}]``
fenced like detection output.

Reading (:func:`read_grounding`, :func:`parse_grounding`) by rule:

* ``reference`` - exactly as the reference scores grounding (``extract_qwen25vl_bbox_answer`` in
  ``rscovlm/eval/metric/metric.py``): a plain answer is read from its FIRST LINE, which must start with the box's
  numbers (non-negative integers joined by commas without spaces) followed by whitespace and a non-empty label
  (``12,34,56,78 the 2 storage tanks``); a JSON answer from the first ``[n, n, n, n]`` anywhere in the text (signed
  decimals). Nothing else in the answer matters, so numbers in the label or in prose never turn a hit into a
  miss. When all four values are <= 1 the box is taken as normalized: ``int(v * 1000)`` on a 0-1000 grid
  (``normalized``); the reference does so for JSON, and for plain answers multiplies the digit STRING (a bug:
  ``"1" * 1000``), which is not reproduced - plain answers get the JSON rule. The reference chooses the
  plain or the JSON rule by the prompt it sent; ``form`` does the same, and without it the plain rule is tried
  first, then the JSON rule (a plain answer never contains ``[``; a JSON answer never starts with a number).
  For obb (5 numbers) and quad (8) kinds the same rules apply with that many numbers (the reference grounds
  hbb only).
* ``boxes`` - the strict box-syntax reader: every box of the kind in any form of
  :mod:`rscovlm.protocol.readers` (captions allowed before a box); text it cannot read is reported.
* ``auto`` (default) - ``reference``; when that finds no box, ``boxes`` (so rscovlm-v0 answers are still read).

Coordinates are in the frame the model wrote them in (the model frame for Qwen2.5-VL); the first box is the
prediction under the GeoGround Acc@0.5 protocol. Parsing never raises and runs in linear time.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import numpy as np

from rscovlm.geometry.boxes import BOX_DIMS, BoxKind, Boxes, Frame
from rscovlm.geometry.objects import ObjectSet
from rscovlm.protocol import reference
from rscovlm.protocol.detection import DEFAULT_ANSWER_STYLE, OutputForm, canonical_order, check_style, plain_box
from rscovlm.protocol.readers import GEOCHAT_GRID, MAX_CHARS, read_answer

_KIND_TO_JSON_KEY = {"hbb": "bbox_2d", "quad": "quad_2d", "obb": "rbox_2d"}  # rscovlm-v0
GROUNDING_RULES = ("auto", "reference", "boxes")
NORMALIZED_GRID = 1000.0


def format_grounding(boxes: Boxes, form: OutputForm = "plain") -> str:
    """rscovlm-v0: boxes in their own frame, rounded as in detection answers (obb angle in degrees), in the given
    order (a referring answer has no canonical order)."""
    values, _ = canonical_order(ObjectSet(boxes, [""] * len(boxes)))
    if form == "json":
        key = _KIND_TO_JSON_KEY[boxes.kind]
        rows = [json.dumps({key: [int(x) for x in v]}) for v in values]
        return "```json\n[\n  " + ",\n  ".join(rows) + "\n]\n```"
    return "; ".join(plain_box(v, boxes.kind) for v in values)


def write_grounding(boxes: Boxes, form: OutputForm = "plain", style: str = DEFAULT_ANSWER_STYLE, *,
                    label: str | None = None, kind: BoxKind | None = None, frame: Frame | None = None,
                    pre_truncate: bool = True, clockwise: bool = False, escape: bool = False) -> str:
    """The target text of a grounding answer in answer style ``style``, boxes in the given order, written as
    ``kind`` (default: their own).

    Reference style (refGeo defaults): every box is followed by ``label`` (the referring expression; required);
    ``frame``: the model frame the numbers are written in, mapped from the boxes' own frame as the reference
    does (``int(int(v) * target / source)`` with ``pre_truncate``; without ``frame`` the values are truncated);
    quads ordered counter-clockwise (``clockwise=False``, as refGeo writes them); the JSON label inserted
    unescaped (``escape=False``, as refGeo; TEOChat answers use ``escape=True``, i.e. ``json.dumps``). No box:
    ``There are none.``"""
    check_style(style)
    kind = kind or boxes.kind
    if style == "rscovlm-v0":
        b = boxes if frame is None else boxes.to_frame(frame)
        return format_grounding(b.to(kind), form)
    if label is None:
        raise ValueError("a reference grounding answer needs its label (the referring expression)")
    if form not in ("plain", "json"):
        raise ValueError(f"unknown output form {form!r}; expected 'plain' or 'json'")
    quads = boxes.to_quad()
    if frame is not None:
        if quads.frame is None:
            raise ValueError("these boxes carry no frame; give them one to write them into another")
        values = reference.scale_truncate(quads.data, quads.frame, frame, pre_truncate=pre_truncate)
    else:
        values = reference.truncate(quads.data)
    rows = [(reference.box_values(q.tolist(), kind, clockwise), label) for q in values]
    if form == "plain":
        return reference.format_lines(rows)
    if escape or not rows:
        return reference.format_json(rows, kind)
    key = reference.JSON_KEYS[kind]
    return "```json\n[\n\t" + ",\n\t".join(
        '{"' + key + '": [' + ", ".join(str(v) for v in values) + '], "label": "' + label + '"}'
        for values, label in rows) + "\n]\n```"


# ---- reading --------------------------------------------------------------------------------------------------

@dataclass
class GroundingRead:
    """What :func:`read_grounding` found: ``values`` of each box in the text's numbers (obb angle in degrees;
    the reference rule yields at most one box), how (``rule``: ``reference-plain``, ``reference-json``,
    ``boxes`` or ``none``), ``normalized`` (values taken from a 0-1 answer onto the 0-1000 grid), ``grid`` per box
    (None: the model's frame; 1000 normalized, 100 GeoChat) and the fragments that were not read."""

    kind: BoxKind
    values: list[tuple[float, ...]] = field(default_factory=list)
    grids: list[float | None] = field(default_factory=list)
    rule: str = "none"
    normalized: bool = False
    unparsed: list[str] = field(default_factory=list)

    def boxes(self, frame: Frame | None = None) -> Boxes:
        """The boxes (obb angles in radians), mapped into ``frame`` from their grid when they are on one (without
        ``frame`` the values stay as read)."""
        rows = []
        for v, grid in zip(self.values, self.grids):
            arr = np.asarray([v], dtype=np.float64)
            if self.kind == "obb":
                arr[:, 4] = np.radians(arr[:, 4])
            if grid is not None and frame is not None:
                with np.errstate(all="ignore"):
                    arr = Boxes(arr, self.kind, Frame(grid, grid, "grid")).to_frame(frame).data
            rows.append(arr[0])
        data = np.asarray(rows, dtype=np.float64).reshape(-1, BOX_DIMS[self.kind])
        return Boxes(data, self.kind, frame)


_INT = r"[0-9]{1,20}+"
_DEC = r"-?+(?:[0-9]{1,20}+(?:\.[0-9]{1,20}+)?+|\.[0-9]{1,20}+)"  # the reference's -?\d*\.?\d+, linear


def _plain_rule(dims: int) -> re.Pattern:
    return re.compile(r"(" + _INT + r")" + (r",(" + _INT + r")") * (dims - 1) + r"\s++\S")


def _json_rule(dims: int) -> re.Pattern:
    num = r"(\s*+" + _DEC + r"\s*+)"
    return re.compile(r"\[" + num + (r",\s*+" + num) * (dims - 1) + r"\]")


_PLAIN_RULES = {kind: _plain_rule(d) for kind, d in BOX_DIMS.items()}
_JSON_RULES = {kind: _json_rule(d) for kind, d in BOX_DIMS.items()}


def _first_line(text: str) -> str:
    text = text.strip()
    nl = text.find("\n")
    return (text if nl < 0 else text[:nl]).strip()


def _reference_read(text: str, kind: BoxKind, form: str | None) -> GroundingRead:
    out = GroundingRead(kind)
    if form in (None, "plain"):
        m = _PLAIN_RULES[kind].match(_first_line(text))
        if m is not None:
            out.rule = "reference-plain"
            out.values.append(tuple(float(g) for g in m.groups()))
    if not out.values and form in (None, "json"):
        m = _JSON_RULES[kind].search(text)
        if m is not None:
            out.rule = "reference-json"
            out.values.append(tuple(float(g) for g in m.groups()))
    if out.values:
        v = out.values[0]
        if kind == "hbb" and all(x <= 1 for x in v):
            out.values[0] = tuple(float(int(x * 1000)) for x in v)
            out.normalized = True
        out.grids.append(NORMALIZED_GRID if out.normalized else None)
    return out


def read_grounding(text: str, kind: BoxKind = "hbb", rule: str = "auto", form: str | None = None) -> GroundingRead:
    """The boxes of a grounding answer under ``rule`` (module docstring; ``form``: the prompt's form, ``plain``
    or ``json``, for the reference rule). Never raises; linear time (the first :data:`MAX_CHARS` characters are
    read by the reference rule, like the box reader)."""
    if rule not in GROUNDING_RULES:
        raise ValueError(f"unknown grounding rule {rule!r}; expected one of {list(GROUNDING_RULES)}")
    if not isinstance(text, str):
        return GroundingRead(kind, unparsed=[repr(text)[:200]])
    if rule != "boxes":
        out = _reference_read(text[:MAX_CHARS], kind, form)
        if out.values or rule == "reference":
            if not out.values and text.strip():
                out.unparsed.append(text.strip()[:MAX_CHARS])
            return out
    out = GroundingRead(kind, rule="boxes")
    for cand in read_answer(text, captions=True).candidates:
        if cand.kind == kind:
            out.values.append(cand.values)
            out.grids.append(cand.grid)
        else:
            out.unparsed.append(cand.raw)
    if not out.values:
        out.rule = "none"
    return out


def parse_grounding(text: str, kind: BoxKind = "hbb", frame: Frame | None = None,
                    rule: str = "auto") -> tuple[Boxes, list[str]]:
    """The boxes of ``kind`` in ``text`` under ``rule`` (:func:`read_grounding`) as :class:`Boxes` with ``frame``
    (obb angles in radians; boxes on a grid - GeoChat, normalized answers - mapped into ``frame``) and the
    fragments that were not read. Never raises; linear time."""
    read = read_grounding(text, kind, rule)
    return read.boxes(frame), read.unparsed


__all__ = ["GROUNDING_RULES", "GroundingRead", "format_grounding", "parse_grounding", "read_grounding",
           "write_grounding", "GEOCHAT_GRID"]
