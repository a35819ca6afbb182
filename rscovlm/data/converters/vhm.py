"""VHM (VHM_dataset_sft ``list_sft.json`` and its siblings; VHM eval files) -> conversation records.

Checked against: the records of ``VHM_dataset_sft/list_sft.json`` (178,827 records, HF ``FitzPC/VHM_dataset_sft``)
printed verbatim by the RSCoVLM reference's notebook ``playground/data_analysis/explore_vhm.ipynb``
(VisionXLab/RSCoVLM @ 86c69c8) and its ``playground/data_prepare/prepare_vhm_sft_for_qwen2_5_vl*.py``; the eval
schema of opendatalab/VHM @ f5dfb88 docs/Data.md and fitzpchao/RSEvalKit @ 5516fcd ``model_eval_mp.py``.

Two layouts, told apart per record by ``source_dataset``:

**SFT** (``list_sft.json``: a JSON array of 178,827 records; JSON Lines also accepted)::

    {"image": "7_13646.jpg", "source_dataset": "DOIR-RSVG",
     "conversations": [{"from": "human", "value": "<image>\\n{VG} the windmill at the bottom"},
                       {"from": "gpt", "value": "[[463,767,496,807]]"}]}

* Images live at ``<--images>/<source_dataset>/<image>`` (the reference joins them the same way).
* No ``id``: the record gets the stable id ``vhm/<input file stem>/<index>`` (index = 0-based position of the
  record in the input file), so a re-run or a resumed run names it the same.
* ``{VG}`` answers are ``[[x1,y1,x2,y2]]`` (several: ``[[..],[..]]``) on a **0-1000 grid of the image width and
  height, zero-padded to three digits** (``[[137,018,796,951]]``): ``x_px = v / 1000 * W``. Read as pixels they
  would be wrong (a 0-1000 grid value on an 800 px DIOR image).
* Other turns (``{IT}`` and unprefixed ones): a bracketed ``[x1,y1,x2,y2]`` on the same grid is a box when it is
  one (``0 <= x1 <= x2 <= 1000``, same for y) and is lifted to a structured box (e.g. ``{IT} Please output the
  outlines of buildings in the vicinity of [100,623,326,730].``); counted ``box_lifted_from_text``. A record whose
  text holds grid *points* that are no box (the building outlines ``[(100,726),(100,650),...]``) is dropped and
  counted (``unsupported: point coordinates``): there is no structured form for them and as text they would keep
  the 0-1000 grid instead of the model's frame.
* Answers that end with a stray double quote (``... in the image.\\"`` - an unmatched ``"``: the record holds an
  odd number of them) lose it, counted ``stray_quote_removed``; leading spaces of answers (``' no'``) go with the
  cleaning's ``strip``.

**Eval** (RSEvalKit files such as ``VG_DOIR_RSVG_test.json``)::

    {"image": "00001.jpg", "image_path": "DIOR/JPEGImages",   # dir relative to --images, or absolute
     "conversations": [{"value": "{VG}Please provide the bounding box of: the car on the left"},
                       {"value": "[120, 35, 178, 80]"}],
     "size": [800, 800]}                                      # optional, PIL (width, height)

* ``from`` is optional (turns alternate user / assistant); ``id`` (or ``question_id``) optional, as above.
* ``{VG}`` answers hold ``[x1, y1, x2, y2]`` in **absolute pixels of the original image** (the eval takes the text
  from the first ``[`` to the last ``]``).

Both: the task prefix ``{CLS}``, ``{VQA}``, ``{VG}``, ``{IDK}`` or ``{IT}`` is removed from every user turn; for
``{VG}`` a sentence naming the box kind is appended (descriptors.yaml); the record's task is the first prefix's
(none: ``--task``, default ``chat``). A ``{VG}`` answer without a box is malformed input.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from rscovlm.data.converters.base import (
    Converter,
    descriptor_suffix,
    descriptor_table,
    join_sentence,
    register_converter,
    take_descriptor,
)
from rscovlm.data.records import BOUNDS_SLACK, Problem

_N = r"\s*(-?\d+(?:\.\d+)?)\s*"
PIXEL_BOX = re.compile(r"\[" + _N + "," + _N + "," + _N + "," + _N + r"\]")
_G = r"\s*(\d+)\s*"
GRID_BOX = re.compile(r"\[" + _G + "," + _G + "," + _G + "," + _G + r"\]")
GRID_BOX_LIST = re.compile(r"\[\s*(?:\[[\d\s,]*\]\s*,?\s*)+\]")
POINT_LIST = re.compile(r"\[\s*\(\s*\d+\s*,\s*\d+\s*\)")
BOX_TAGS = {"{vg}"}
GRID = 1000.0


@register_converter("vhm")
class VHMConverter(Converter):
    """VHM JSON ({VG} answers on a 0-1000 grid in the SFT files, pixels in the eval files) -> conversations."""

    output_kind = "conversation"
    summary = "VHM list_sft.json (0-1000 grid boxes) and eval JSON ({CLS}/{VQA}/{VG}/..., pixel boxes) -> jsonl"

    def prepare(self) -> None:
        self.stem = Path(self.path).stem

    def convert_one(self, raw: Any, line: int) -> dict | None:
        if not isinstance(raw, dict):
            raise self.problem(line, "", "expected a JSON object")
        image = raw.get("image")
        if not isinstance(image, str) or not image:
            raise self.problem(line, "image", "required image file name")
        sft = "source_dataset" in raw
        if sft:
            if not isinstance(raw["source_dataset"], str) or not raw["source_dataset"]:
                raise self.problem(line, "source_dataset", "expected the folder name of the source dataset")
            image = f"{raw['source_dataset']}/{image}"
        elif raw.get("image_path") is not None:
            if not isinstance(raw["image_path"], str):
                raise self.problem(line, "image_path", "expected a folder path")
            image = os.path.join(raw["image_path"], image)
        size = raw.get("size")
        if size is not None and not (isinstance(size, list) and len(size) == 2
                                     and all(isinstance(v, int) and v > 0 for v in size)):
            raise self.problem(line, "size", f"expected [width, height], got {size!r}")
        turns = self.llava_turns(raw, line)
        if sft and any(POINT_LIST.search(text) for _, text, _ in turns):
            self.report.drop("unsupported: point coordinates (0-1000 grid) that are no box",
                             f"{self.path}:{line}")
            return None
        quotes = sum(text.count('"') for role, text, _ in turns if role == "assistant")
        boxes: list[dict] = []
        new_turns = []
        tag = None
        tagged: list[tuple[int, str]] = []  # (turn index, prefix) of every user turn that carried one
        for i, (role, text, field) in enumerate(turns):
            if role == "user":
                tag, text = take_descriptor(text)  # the prefix of a question decides how its answer is read
                if tag:
                    tagged.append((i, tag))
                    self.change(f"descriptor_removed:{tag}")
            if role == "assistant" and quotes % 2 and text.rstrip().endswith('"'):
                text = text.rstrip()[:-1]
                quotes -= 1
                self.change("stray_quote_removed")
            if role == "assistant" and tag in BOX_TAGS:
                text = self._grid_answer(text, boxes, line, field) if sft else self._pixel_answer(
                    text, boxes, line, field)
            elif sft:
                text = self._lift_grid_boxes(text, boxes)
            new_turns.append((role, text, field))
        for i, found in tagged:
            role, text, field = new_turns[i]
            suffix = descriptor_suffix(found, "hbb" if found in BOX_TAGS else None)
            new_turns[i] = (role, join_sentence(text, suffix), field)
        task = descriptor_table()[tagged[0][1]]["task"] if tagged else (self.config.task or "chat")
        messages = self.messages_from_turns(new_turns, [image], line)
        for msg in messages:
            msg["content"] = [dict(p, text=self.clean(p["text"])) if p["type"] == "text" else p
                              for p in msg["content"]]
            msg["content"] = [p for p in msg["content"] if p["type"] != "text" or p["text"]]
            if not msg["content"]:
                raise self.problem(line, "conversations", f"a {msg['role']} turn is empty after conversion")
        rid = raw.get("id", raw.get("question_id"))
        if rid is None or isinstance(rid, bool) or rid == "":
            rid = f"{self.stem}/{self.index}"
        rec = {"id": f"{self.name}/{rid}", "source": self.name, "task": task, "messages": messages}
        if boxes:
            w, h = size if size is not None else self.image_sizes(image, Problem(self.path, line, "image", ""))
            for b in boxes:
                if b.pop("grid", False):
                    b["values"] = [v / GRID * s for v, s in zip(b["values"], (w, h, w, h))]
                elif b["values"][2] > w + BOUNDS_SLACK or b["values"][3] > h + BOUNDS_SLACK:
                    raise self.problem(line, "conversations", f"pixel box {b['values']} exceeds the {w}x{h} image")
            rec["image_sizes"] = [[w, h]]
            rec["boxes"] = boxes
        return rec

    def _grid_box(self, m: re.Match, boxes: list) -> str | None:
        v = [float(x) for x in m.groups()]
        if not (0 <= v[0] <= v[2] <= GRID and 0 <= v[1] <= v[3] <= GRID):
            return None
        boxes.append({"kind": "hbb", "values": v, "image": 0, "grid": True})
        self.change("box:hbb")
        return f"<box:{len(boxes) - 1}>"

    def _grid_answer(self, text: str, boxes: list, line: int, field: str) -> str:
        """A ``{VG}`` answer of the SFT files: ``[[x1,y1,x2,y2], ...]`` on the 0-1000 grid."""
        found = len(boxes)

        def run(m: re.Match) -> str:
            refs = []
            for b in GRID_BOX.finditer(m.group(0)):
                ref = self._grid_box(b, boxes)
                if ref is None:
                    raise self.problem(line, field, f"{b.group(0)} is no box on the 0-1000 grid "
                                                    f"(needs 0 <= x1 <= x2 <= 1000, same for y)")
                refs.append(ref)
            return ", ".join(refs)

        out = GRID_BOX_LIST.sub(run, text)
        if len(boxes) == found:  # a single box without the outer brackets
            out = GRID_BOX.sub(run, text)
        if len(boxes) == found:
            raise self.problem(line, field, "a {VG} answer needs [[x1,y1,x2,y2]] on the 0-1000 grid")
        return out

    def _lift_grid_boxes(self, text: str, boxes: list) -> str:
        def sub(m: re.Match) -> str:
            ref = self._grid_box(m, boxes)
            if ref is None:
                return m.group(0)
            self.change("box_lifted_from_text")
            return ref

        return GRID_BOX.sub(sub, text)

    def _pixel_answer(self, text: str, boxes: list, line: int, field: str) -> str:
        found = len(boxes)

        def sub(m: re.Match) -> str:
            v = [float(x) for x in m.groups()]
            if v[0] > v[2] or v[1] > v[3] or min(v) < 0:
                raise self.problem(line, field, f"pixel box {m.group(0)} needs 0 <= x1 <= x2 and 0 <= y1 <= y2")
            boxes.append({"kind": "hbb", "values": v, "image": 0})
            self.change("box:hbb")
            return f"<box:{len(boxes) - 1}>"

        out = PIXEL_BOX.sub(sub, text)
        if len(boxes) == found:
            raise self.problem(line, field, "a {VG} answer needs a [x1, y1, x2, y2] pixel box")
        return out
