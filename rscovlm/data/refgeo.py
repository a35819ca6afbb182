"""refGeo (GeoGround) metainfo files: one referring expression per line, read by ``data convert --source refgeo``
and by the GeoGround benchmarks (:mod:`rscovlm.eval.benchmarks.geoground`) alike.

Checked against the RSCoVLM reference (VisionXLab/RSCoVLM @ c507282 ``training/data/refgeo_dataset.py``,
``playground/data_prepare/prepare_refgeo_for_qwen2_5_vl_{legacy,new}.py``; see
:mod:`rscovlm.data.converters.refgeo` for the release it describes). A JSON Lines file (a JSON array is accepted
too) of::

    {"dataset": "dior_rsvg", "image_id": "00001.jpg", "question": "the storage tank on the left",
     "question_id": 17, "bbox": [x1, y1, x2, y2], "poly": [[x, y], [x, y], [x, y], [x, y]],
     "image_width": 800, "image_height": 800, "mask_exists": true}

* ``image_id`` (the file name under ``images/{dataset}/``) and ``question`` (the expression): required non-empty
  strings. ``dataset`` is optional here (the benchmarks' test files name the folder by their subset); the
  converter requires it.
* ``bbox``: required, four numbers ``x1 <= x2``, ``y1 <= y2`` in **absolute pixels of the original image**.
* ``poly`` (4 ``[x, y]`` points, pixels), ``question_id`` (string or integer), ``image_width`` /
  ``image_height`` (positive numbers; the first release lacks them) are optional and checked when present.

Every other field is kept as it is. A problem raises :class:`~rscovlm.data.records.RecordError` naming file, line
and field.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

from rscovlm.data.records import Problem, RecordError, iter_records


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_metainfo(raw: Any, path: str, line: int | None) -> dict:
    """``raw`` when it is a metainfo record as documented above, else :class:`RecordError` for its first
    problem."""
    def fail(field: str, message: str) -> RecordError:
        return RecordError(Problem(str(path), line, field, message))

    if not isinstance(raw, dict):
        raise fail("", f"expected a JSON object, got {type(raw).__name__}")
    for key in ("image_id", "question"):
        if key not in raw:
            raise fail(key, "required field is missing")
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise fail(key, f"required non-empty string, got {raw[key]!r}")
    if "dataset" in raw and (not isinstance(raw["dataset"], str) or not raw["dataset"].strip()):
        raise fail("dataset", f"expected a non-empty string, got {raw['dataset']!r}")
    if "bbox" not in raw:
        raise fail("bbox", "required field is missing")
    bbox = raw["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_num(v) for v in bbox):
        raise fail("bbox", f"expected [x1, y1, x2, y2] (4 numbers, pixels), got {bbox!r}")
    if bbox[0] > bbox[2] or bbox[1] > bbox[3]:
        raise fail("bbox", f"needs x1 <= x2 and y1 <= y2, got {bbox!r}")
    poly = raw.get("poly")
    if poly is not None and not (isinstance(poly, list) and len(poly) == 4 and all(
            isinstance(p, list) and len(p) == 2 and all(_num(c) for c in p) for p in poly)):
        raise fail("poly", f"expected 4 [x, y] points, got {poly!r}")
    if "question_id" in raw and (isinstance(raw["question_id"], bool)
                                 or not isinstance(raw["question_id"], (str, int))):
        raise fail("question_id", f"expected a string or an integer, got {raw['question_id']!r}")
    for key in ("image_width", "image_height"):
        if raw.get(key) is not None and (not _num(raw[key]) or raw[key] <= 0):
            raise fail(key, f"expected a positive number, got {raw[key]!r}")
    return raw


def iter_refgeo_metainfo(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """``(line, record)`` of a metainfo file, each checked by :func:`check_metainfo` (streamed)."""
    for line, raw in iter_records(path):
        yield line, check_metainfo(raw, str(path), line)
