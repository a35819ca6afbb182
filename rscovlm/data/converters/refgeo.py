"""refGeo (GeoGround) -> grounding records.

Source format (see shared FORMAT.md "refgeo"; fields as read by the RSCoVLM reference loader)
--------------------------------------------------------------------------------------------
JSON Lines (a JSON array is accepted too), one referring expression per line::

    {"dataset": "DIOR_RSVG", "image_id": "00001.jpg", "question": "the storage tank on the left",
     "question_id": 17, "bbox": [x1, y1, x2, y2], "poly": [[x, y], [x, y], [x, y], [x, y]],
     "image_width": 800, "image_height": 800, "mask_exists": true}

Images live at ``{images}/{dataset}/{image_id}``. Box convention: ``bbox`` and ``poly`` are in **absolute
pixels of the original image** (the reference loader scales x by resized_width / image_width). The output keeps
the same fields (it is the unified grounding schema): the question is cleaned and stripped of any task
descriptor, ``poly`` is normalized (clockwise on screen from the smallest-y vertex; counted when reordered),
``source`` = ``refgeo``. A bbox or poly outside the image, an inverted bbox or missing fields are malformed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rscovlm.data.converters.base import Converter, register_converter, take_descriptor
from rscovlm.data.records import validate_grounding
from rscovlm.geometry.boxes import normalize_quads

KEEP = ("dataset", "image_id", "question", "question_id", "bbox", "poly", "image_width", "image_height",
        "mask_exists", "image")


@register_converter("refgeo")
class RefGeoConverter(Converter):
    """refGeo jsonl (pixel bbox + poly) -> grounding jsonl."""

    output_kind = "grounding"
    summary = "refGeo jsonl (pixel bbox and poly) -> grounding jsonl"

    def convert_one(self, raw: Any, line: int) -> dict | None:
        errs = validate_grounding(raw)
        if errs:
            raise self.problem(line, errs[0][0], errs[0][1])
        rec = {k: raw[k] for k in KEEP if k in raw}
        tag, question = take_descriptor(raw["question"])
        if tag:
            self.change(f"descriptor_removed:{tag}")
        rec["question"] = self.clean(question)
        if not rec["question"]:
            raise self.problem(line, "question", "empty after cleaning")
        rec["bbox"] = [float(v) for v in raw["bbox"]]
        if raw.get("poly") is not None:
            quad = np.asarray(raw["poly"], dtype=np.float64).reshape(1, 8)
            norm = normalize_quads(quad)
            if not np.array_equal(norm, quad):
                self.change("poly_reordered")
            rec["poly"] = norm.reshape(4, 2).tolist()
        rec["source"] = raw.get("source", self.name)
        return rec
