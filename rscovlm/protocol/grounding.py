"""Grounding answers as text: one or a few boxes without category lines.

Plain form: boxes separated by ``; `` in the detection protocol's box syntax (hbb ``(x1,y1),(x2,y2)``).
JSON form: ``[{"bbox_2d": [x1, y1, x2, y2]}]`` fenced like detection output (a ``label`` key is allowed).
Coordinates are integers of the boxes' frame (the model frame for targets). Parsing never raises and runs in linear
time (:mod:`rscovlm.protocol.readers`: forms, limits; free text before a box is its caption, text after it is
reported); the first box is the prediction under the GeoGround Acc@0.5 protocol.
"""

from __future__ import annotations

import json

import numpy as np

from rscovlm.geometry.boxes import BOX_DIMS, BoxKind, Boxes, Frame
from rscovlm.geometry.objects import ObjectSet
from rscovlm.protocol.detection import OutputForm, canonical_order, plain_box
from rscovlm.protocol.readers import JSON_BOX_KEYS, read_answer

_KIND_TO_JSON_KEY = {kind: key for key, kind in JSON_BOX_KEYS.items()}


def format_grounding(boxes: Boxes, form: OutputForm = "plain") -> str:
    """Boxes in their own frame, rounded as in detection answers (obb angle in degrees), in the given order (a
    referring answer has no canonical order)."""
    values, _ = canonical_order(ObjectSet(boxes, [""] * len(boxes)))
    if form == "json":
        key = _KIND_TO_JSON_KEY[boxes.kind]
        rows = [json.dumps({key: [int(x) for x in v]}) for v in values]
        return "```json\n[\n  " + ",\n  ".join(rows) + "\n]\n```"
    return "; ".join(plain_box(v, boxes.kind) for v in values)


def parse_grounding(text: str, kind: BoxKind = "hbb", frame: Frame | None = None) -> tuple[Boxes, list[str]]:
    """All boxes of ``kind`` in ``text`` (either form, read by :func:`rscovlm.protocol.readers.read_answer` with
    captions allowed) and the fragments that were not such a box. Never raises; linear time; text beyond the
    readers' limits is among the fragments."""
    dims = BOX_DIMS[kind]
    found: list[tuple[float, ...]] = []
    unparsed: list[str] = []
    for cand in read_answer(text, captions=True).candidates:
        (found.append(cand.values) if cand.kind == kind else unparsed.append(cand.raw))
    data = np.asarray(found, dtype=np.float64).reshape(-1, dims)
    if kind == "obb":
        data[:, 4] = np.radians(data[:, 4])
    return Boxes(data, kind, frame), unparsed
