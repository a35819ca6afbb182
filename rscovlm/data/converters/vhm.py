"""VHM (VersaD / VHM_SFT / VHM eval files) -> conversation records.

Source format (opendatalab/VHM, fitzpchao/RSEvalKit; see shared FORMAT.md "vhm")
---------------------------------------------------------------------------------
A JSON array (JSON Lines also accepted) of::

    {"image": "00001.jpg", "image_path": "DIOR/JPEGImages",   # optional dir, relative to --images or absolute
     "conversations": [{"value": "{VG}Please provide the bounding box of: the car on the left"},
                       {"value": "[120, 35, 178, 80]"}],
     "size": [800, 800]}                                      # optional, PIL (width, height)

* ``from`` is optional (eval files leave it out: turns alternate user / assistant); with it the LLaVA speakers
  ``human`` / ``gpt`` apply. ``id`` is optional (the record's position is used).
* A query starts with a task prefix ``{CLS}``, ``{VQA}``, ``{VG}``, ``{IDK}`` or ``{IT}``; it is removed (from
  every user turn) and, for ``{VG}``, a sentence naming the box kind is appended (descriptors.yaml). ``<image>``
  tokens are handled as in LLaVA.
* Box convention: visual-grounding answers hold ``[x1, y1, x2, y2]`` in **absolute pixels of the original
  image** (the eval takes the text from the first ``[`` to the last ``]``). Only answers to ``{VG}`` questions are
  searched for boxes; each 4-number list becomes an ``hbb`` ``<box:N>``. A ``{VG}`` answer without a box is
  malformed input.
"""

from __future__ import annotations

import os
import re
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
BOX_TAGS = {"{vg}"}


@register_converter("vhm")
class VHMConverter(Converter):
    """VHM JSON (``{VG}`` answers in absolute pixels) -> conversations."""

    output_kind = "conversation"
    summary = "VHM / VersaD JSON ({CLS}/{VQA}/{VG}/... prefixes, pixel boxes) -> conversation jsonl"

    def convert_one(self, raw: Any, line: int) -> dict | None:
        if not isinstance(raw, dict):
            raise self.problem(line, "", "expected a JSON object")
        image = raw.get("image")
        if not isinstance(image, str) or not image:
            raise self.problem(line, "image", "required image file name")
        if raw.get("image_path") is not None:
            if not isinstance(raw["image_path"], str):
                raise self.problem(line, "image_path", "expected a folder path")
            image = os.path.join(raw["image_path"], image)
        size = raw.get("size")
        if size is not None and not (isinstance(size, list) and len(size) == 2
                                     and all(isinstance(v, int) and v > 0 for v in size)):
            raise self.problem(line, "size", f"expected [width, height], got {size!r}")
        turns = self.llava_turns(raw, line)
        task, tag = self.config.task or "chat", None
        boxes: list[dict] = []
        new_turns = []
        tagged: list[tuple[int, str]] = []  # (turn index, prefix) of every user turn that carried one
        for i, (role, text, field) in enumerate(turns):
            if role == "user":
                tag, text = take_descriptor(text)  # the prefix of a question decides how its answer is read
                if tag:
                    tagged.append((i, tag))
                    self.change(f"descriptor_removed:{tag}")
            if role == "assistant" and tag in BOX_TAGS:
                text = self._boxes(text, boxes, line, field)
            new_turns.append((role, text, field))
        for i, found in tagged:
            role, text, field = new_turns[i]
            suffix = descriptor_suffix(found, "hbb" if found in BOX_TAGS else None)
            new_turns[i] = (role, join_sentence(text, suffix), field)
        if tagged:
            task = descriptor_table()[tagged[0][1]]["task"]
        messages = self.messages_from_turns(new_turns, [image], line)
        for msg in messages:
            msg["content"] = [dict(p, text=self.clean(p["text"])) if p["type"] == "text" else p
                              for p in msg["content"]]
            msg["content"] = [p for p in msg["content"] if p["type"] != "text" or p["text"]]
        rid = raw.get("id", raw.get("question_id", line))
        rec = {"id": f"{self.name}/{rid}", "source": self.name, "task": task, "messages": messages}
        if boxes:
            w, h = size if size is not None else self.image_sizes(image, Problem(self.path, line, "image", ""))
            for b in boxes:
                x1, y1, x2, y2 = b["values"]
                if x2 > w + BOUNDS_SLACK or y2 > h + BOUNDS_SLACK:
                    raise self.problem(line, "conversations", f"pixel box {b['values']} exceeds the {w}x{h} image")
            rec["image_sizes"] = [[w, h]]
            rec["boxes"] = boxes
        return rec

    def _boxes(self, text: str, boxes: list, line: int, field: str) -> str:
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
