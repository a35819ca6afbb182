"""refGeo (GeoGround) -> grounding records (metainfo and ms-swift layouts) or conversations (LLaVA layout).

Checked against: the records of the released ``refGeo/sft/*.json`` files (``avvg_detection_hbb.json`` 61,600
records, ``dior_detection_hbb.json`` 184,050, ``dota_detection_hbb.json`` 184,835, ``fair1m_detection_hbb.json``
922,680, ``swift_hbb_dior_rsvg.json`` 135,665, ``swift_hbb_refGeo.json`` 808,460; HF ``erenzhou/refGeo``) printed
verbatim by the RSCoVLM reference's notebook ``playground/data_analysis/explore_refgeo.ipynb`` (VisionXLab/RSCoVLM
@ bfaf0c1), the metainfo files ``refGeo/metainfo/{avvg,dior_rsvg,geochat,rsvg,vrsbench}_train.jsonl`` as its
``playground/data_prepare/prepare_refgeo_for_qwen2_5_vl_{legacy,new}.py`` and ``training/data/refgeo_dataset.py``
(@ c507282) read them. The layout is decided by the file's first record; every record must have it.

**metainfo** (JSON Lines; a JSON array is accepted too; read by :mod:`rscovlm.data.refgeo`, the reader the GeoGround
benchmarks use), one referring expression per line::

    {"dataset": "dior_rsvg", "image_id": "00001.jpg", "question": "the storage tank on the left",
     "question_id": 17, "bbox": [x1, y1, x2, y2], "poly": [[x, y], [x, y], [x, y], [x, y]],
     "image_width": 800, "image_height": 800, "mask_exists": true}      # width/height/mask: metainfo_v2 only

  Images at ``{images}/{dataset}/{image_id}``; ``bbox`` and ``poly`` in **absolute pixels of the original image**
  (the reference scales x by resized_width / image_width). The first release lacks ``image_width`` /
  ``image_height`` (the reference's ``metainfo_v2`` adds them from the image files): they are read from the image
  header (cached; counted ``image_size_read_from_file``; needs ``--images``).

**ms-swift** (``swift_hbb_*.json``, a JSON array)::

    {"images": ["/mnt/.../refGeo/images/dior_rsvg/00531.jpg"],
     "messages": [{"role": "user", "content": "<image> give me the location of <ref-object>"},
                  {"role": "assistant", "content": "<bbox><bbox>"}],
     "objects": {"ref": "A dam in the middle", "bbox": [[252.0, 259.0, 614.0, 534.0]]}}

  ``objects.bbox`` in **absolute pixels**; the ``<bbox>`` placeholders do not count the boxes (two for one box).
  The image path is the author's absolute path: when it does not exist, the part after its last ``images/``
  folder (else its last two parts) is taken relative to ``--images`` (counted ``image_path_rerooted``), which is
  ``{dataset}/{image_id}``. ``question_id`` = ``<file stem>/<index>``. An expression with several boxes has no
  grounding record (one box each): dropped, counted.

**LLaVA** (``*_detection_hbb.json``, a JSON array)::

    {"id": "0", "image": "dior/00005.jpg",
     "conversations": [
        {"from": "human", "value": "<image>\\n[refer] give me the bounding box of <ref>vehicle</ref> is"},
        {"from": "gpt", "value": "[[23,30,25,33],[0,84,4,86]]"}]}

  Boxes ``[[x1,y1,x2,y2],...]`` on a **0-100 grid of the image width and height** that **overflows the range**
  (``[[85,47,102,52]]``, AVVG's ``[[104,-24,189,145]]``). Rule: values are clipped to 0-100 (counted
  ``grid_value_clipped``); a box with no area left inside the image is removed from the answer (counted
  ``box_outside_image_removed``); a record left without a box is dropped (counted). Output: a conversation
  whose answer is the ``<box:N>`` references (hbb, original pixels); the ``[refer]`` tag and the ``<ref>``
  tags are removed (the request already names the boxes: no sentence is appended). Ids ``refgeo/<file
  stem>/<id>`` (the six files all count from ``"0"``).

Questions are cleaned and stripped of any task descriptor; ``poly`` is normalized (clockwise on screen from the
smallest-y vertex; counted when reordered); ``source`` = ``refgeo``. A bbox or poly outside the image, an inverted
bbox or missing fields are malformed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from rscovlm.data.converters.base import Converter, descriptor_table, register_converter, take_descriptor
from rscovlm.data.records import Problem, iter_records_from, validate_grounding
from rscovlm.data.refgeo import check_metainfo
from rscovlm.geometry.boxes import normalize_quads

KEEP = ("dataset", "image_id", "question", "question_id", "bbox", "poly", "image_width", "image_height",
        "mask_exists", "image")
_N = r"\s*(-?\d+(?:\.\d+)?)\s*"
GRID_BOX = re.compile(r"\[" + _N + "," + _N + "," + _N + "," + _N + r"\]")
GRID_BOX_LIST = re.compile(r"\[\s*(?:\[[-\d.\s,]*\]\s*,?\s*)+\]")
REF_TAGS = re.compile(r"<ref>\s*(.*?)\s*</ref>", re.DOTALL)
LAYOUTS = {"metainfo": "grounding", "swift": "grounding", "llava": "conversation"}


def record_layout(raw: Any) -> str | None:
    if not isinstance(raw, dict):
        return None
    if "conversations" in raw:
        return "llava"
    if "objects" in raw and "messages" in raw:
        return "swift"
    if "bbox" in raw or "question" in raw:
        return "metainfo"
    return None


@register_converter("refgeo")
class RefGeoConverter(Converter):
    """refGeo metainfo jsonl / ms-swift JSON (pixel boxes) -> grounding; LLaVA JSON (0-100 grid) -> conversation."""

    output_kind = "grounding"
    summary = "refGeo metainfo jsonl / swift JSON (pixels) -> grounding; LLaVA sft JSON (0-100 grid) -> conversation"

    def prepare(self) -> None:
        self.stem = Path(self.path).stem
        self.layout = "metainfo"
        for _, raw, _ in iter_records_from(self.path, "yield"):
            self.layout = record_layout(raw) or "metainfo"  # an unknown first record fails as metainfo
            break
        self.output_kind = LAYOUTS[self.layout]

    def convert_one(self, raw: Any, line: int) -> dict | None:
        layout = record_layout(raw)
        if layout is not None and layout != self.layout:
            raise self.problem(line, "", f"a {layout}-layout record in a {self.layout}-layout file")
        return {"metainfo": self._metainfo, "swift": self._swift, "llava": self._llava}[self.layout](raw, line)

    # ---- metainfo -----------------------------------------------------------------------------------------
    def _size(self, rec: dict, rel: str, line: int, field: str) -> None:
        if rec.get("image_width") is None and rec.get("image_height") is None:
            w, h = self.image_sizes(rel, Problem(self.path, line, field, ""))
            rec["image_width"], rec["image_height"] = w, h
            self.change("image_size_read_from_file")

    def _metainfo(self, raw: Any, line: int) -> dict:
        check_metainfo(raw, self.path, line)  # the format's own fields (rscovlm.data.refgeo, shared with eval)
        rec = {k: raw[k] for k in KEEP if k in raw}
        if isinstance(raw.get("dataset"), str) and isinstance(raw.get("image_id"), str):
            self._size(rec, raw.get("image") or f"{raw['dataset']}/{raw['image_id']}", line, "image_id")
        errs = validate_grounding(rec)
        if errs:
            raise self.problem(line, errs[0][0], errs[0][1])
        return self._grounding(rec, raw["question"], line)

    def _grounding(self, rec: dict, question: str, line: int) -> dict:
        tag, question = take_descriptor(question)
        if tag:
            self.change(f"descriptor_removed:{tag}")
        rec["question"] = self.clean(question)
        if not rec["question"]:
            raise self.problem(line, "question", "empty after cleaning")
        rec["bbox"] = [float(v) for v in rec["bbox"]]
        if rec.get("poly") is not None:
            quad = np.asarray(rec["poly"], dtype=np.float64).reshape(1, 8)
            norm = normalize_quads(quad)
            if not np.array_equal(norm, quad):
                self.change("poly_reordered")
            rec["poly"] = norm.reshape(4, 2).tolist()
        rec["source"] = self.name
        return rec

    # ---- ms-swift -----------------------------------------------------------------------------------------
    def _image_path(self, path: str) -> tuple[str, bool]:
        """(path relative to --images or absolute, whether it was re-rooted)."""
        if not os.path.isabs(path) or os.path.exists(path):
            return path, False
        parts = Path(path).parts
        if "images" in parts[:-1]:
            last = len(parts) - 1 - parts[::-1].index("images")
            return "/".join(parts[last + 1:]), True
        return "/".join(parts[-2:]), True

    def _swift(self, raw: Any, line: int) -> dict | None:
        if not isinstance(raw, dict):
            raise self.problem(line, "", "expected a JSON object")
        images = raw.get("images")
        if not isinstance(images, list) or len(images) != 1 or not isinstance(images[0], str) or not images[0]:
            raise self.problem(line, "images", f"expected one image path, got {images!r}")
        objects = raw.get("objects")
        if not isinstance(objects, dict):
            raise self.problem(line, "objects", "expected {ref, bbox}")
        ref = objects.get("ref")
        if isinstance(ref, list) and len(ref) == 1:
            ref = ref[0]
        if not isinstance(ref, str) or not ref.strip():
            raise self.problem(line, "objects.ref", f"expected one referring expression, got {ref!r}")
        bbox = objects.get("bbox")
        if not isinstance(bbox, list) or not bbox or not all(isinstance(b, list) for b in bbox):
            raise self.problem(line, "objects.bbox", f"expected a list of [x1, y1, x2, y2], got {bbox!r}")
        if len(bbox) > 1:
            self.report.drop("unsupported: several boxes for one expression (grounding holds one)",
                             f"{self.path}:{line}")
            return None
        rel, moved = self._image_path(images[0])
        if moved:
            self.change("image_path_rerooted")
        parts = rel.split("/")
        nested = not os.path.isabs(rel) and len(parts) >= 2  # the refGeo layout {dataset}/{image_id}
        rec = {"dataset": parts[0] if nested else self.stem, "image_id": "/".join(parts[1:]) if nested else
               Path(rel).name, "question": ref, "question_id": f"{self.stem}/{self.index}", "bbox": bbox[0]}
        if not nested:
            rec["image"] = rel
        w, h = self.image_sizes(rel, Problem(self.path, line, "images[0]", ""))
        rec["image_width"], rec["image_height"] = w, h
        errs = validate_grounding(rec)
        if errs:
            field = errs[0][0].replace("bbox", "objects.bbox[0]").replace("question", "objects.ref")
            raise self.problem(line, field, errs[0][1])
        return self._grounding(rec, ref, line)

    # ---- LLaVA --------------------------------------------------------------------------------------------
    def _llava(self, raw: Any, line: int) -> dict | None:
        if not isinstance(raw, dict):
            raise self.problem(line, "", "expected a JSON object")
        image = raw.get("image")
        if not isinstance(image, str) or not image:
            raise self.problem(line, "image", "required image path")
        rid = raw.get("id")
        if rid is None or isinstance(rid, bool) or rid == "":
            rid = self.index
        turns = self.llava_turns(raw, line)
        boxes: list[dict] = []
        new_turns = []
        tag = None
        size = None
        for role, text, field in turns:
            if role == "user":
                found, text = take_descriptor(text)
                if found:
                    tag = tag or found
                    self.change(f"descriptor_removed:{found}")
                text, n = REF_TAGS.subn(r"\1", text)
                self.change("ref_tags_removed", n)
            else:
                if size is None:
                    size = self.image_sizes(image, Problem(self.path, line, "image", ""))
                text = self._grid_answer(text, boxes, size, line, field)
                if text is None:
                    self.report.drop("no box inside the image (0-100 grid)", f"{self.path}:{line}")
                    return None
            new_turns.append((role, text, field))
        messages = self.messages_from_turns(new_turns, [image], line)
        for msg in messages:
            msg["content"] = [dict(p, text=self.clean(p["text"])) if p["type"] == "text" else p
                              for p in msg["content"]]
            msg["content"] = [p for p in msg["content"] if p["type"] != "text" or p["text"]]
            if not msg["content"]:
                raise self.problem(line, "conversations", f"a {msg['role']} turn is empty after conversion")
        task = descriptor_table()[tag]["task"] if tag else (self.config.task or "referring")
        rec = {"id": f"{self.name}/{self.stem}/{rid}", "source": self.name, "task": task, "messages": messages}
        if boxes:
            rec["image_sizes"] = [list(size)]
            rec["boxes"] = boxes
        return rec

    def _grid_answer(self, text: str, boxes: list, size: tuple[int, int], line: int, field: str) -> str | None:
        """``[[x1,y1,x2,y2],...]`` on the 0-100 grid -> ``<box:N>`` references; None when no box is left."""
        w, h = size
        found = len(boxes)
        matched = False

        def run(m: re.Match) -> str:
            nonlocal matched
            matched = True
            refs = []
            for b in GRID_BOX.finditer(m.group(0)):
                v = [float(x) for x in b.groups()]
                if v[0] > v[2] or v[1] > v[3]:
                    raise self.problem(line, field, f"box {b.group(0)} needs x1 <= x2 and y1 <= y2")
                c = [min(max(x, 0.0), 100.0) for x in v]
                if c != v:
                    self.change("grid_value_clipped")
                if c[2] <= c[0] or c[3] <= c[1]:
                    if v[2] > v[0] and v[3] > v[1]:
                        self.change("box_outside_image_removed")
                        continue
                boxes.append({"kind": "hbb", "values": [c[0] / 100 * w, c[1] / 100 * h, c[2] / 100 * w,
                                                        c[3] / 100 * h], "image": 0})
                self.change("box:hbb")
                refs.append(f"<box:{len(boxes) - 1}>")
            return ", ".join(refs)

        out = GRID_BOX_LIST.sub(run, text)
        if not matched:
            raise self.problem(line, field, "expected [[x1,y1,x2,y2],...] on the 0-100 grid")
        if len(boxes) == found:
            return None
        return out
