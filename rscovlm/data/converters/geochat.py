"""GeoChat_Instruct -> conversation records.

Source format (mbzuai-oryx/GeoChat, LLaVA-v1.5 training data; see shared FORMAT.md "geochat_instruct")
-------------------------------------------------------------------------------------------------------
One JSON array (JSON Lines also accepted) of::

    {"id": "...", "image": "name.png",                      # relative to the image folder (--images)
     "conversations": [{"from": "human", "value": "<image>\\n[refer] Give me the location of <p>car</p>"},
                       {"from": "gpt",   "value": "{<12><40><20><47>|<35>}"}, ...]}

* Task descriptors at the start of a human turn (the first, and again in later questions of multi-turn
  records): ``[grounding]``, ``[refer]``, ``[identify]`` (and the MiniGPT-v2 family ``[vqa]``, ``[caption]``,
  ``[detection]``). They are removed from every human turn; the request stays, a sentence naming the answer's box
  kind is appended to that turn (table: ``rscovlm/protocol/templates/descriptors.yaml``); the record's task is the
  first descriptor's.
* Phrases are tagged ``<p>phrase</p>``; the tags are removed, the phrase kept.
* Box text: ``{<x1><y1><x2><y2>|<theta>}``, several boxes concatenated ``}{``. Integers on a **0-100 grid
  relative to the image width (x) and height (y)** (geochat_demo.py: ``left = x0 / 100 * W``). ``theta`` is in
  **degrees**, may be negative, and is missing (= 0) for horizontal boxes. The demo draws a box by rotating the
  corner rectangle about its centre with ``cv2.getRotationMatrix2D(centre, theta, 1)``, i.e. positive theta
  turns **counter-clockwise on screen**; our obb angle is clockwise on screen, so ``obb.theta = -radians(theta)``.

Conversion: every box becomes a structured box in original pixels - ``hbb`` when theta is 0, else ``obb``
(cx, cy, w, h) from the corner rectangle scaled per axis, le90-normalized; a rotated box with a zero side
becomes the degenerate ``quad`` it spans - and the text holds ``<box:N>``. A record keeps one box kind: when
angle-less and rotated boxes are mixed, the angle-less ones become obb with angle 0 (counted). A box value outside 0-100, an
inverted corner pair or any ``{<`` left unparsed is malformed input.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from rscovlm.data.converters.base import (
    Converter,
    descriptor_suffix,
    descriptor_table,
    join_sentence,
    register_converter,
    take_descriptor,
)
from rscovlm.data.records import Problem, RecordError
from rscovlm.geometry.boxes import Boxes, normalize_obb, obb_to_quad

_NUM = r"\s*(-?\d+(?:\.\d+)?)\s*"
GEOCHAT_BOX = re.compile(r"\{<" + _NUM + r"><" + _NUM + r"><" + _NUM + r"><" + _NUM + r">(?:\|<" + _NUM + r">)?\}")
_BOX_RUN = re.compile(r"(?:" + GEOCHAT_BOX.pattern + r")+")
_PHRASE = re.compile(r"<p>\s*(.*?)\s*</p>", re.DOTALL)


def geochat_box(values: list[float], angle: float, size: tuple[int, int]) -> dict:
    """One GeoChat box (0-100 grid + degrees counter-clockwise) -> structured box in original pixels."""
    w_img, h_img = size
    x1, y1, x2, y2 = (v / 100.0 * s for v, s in zip(values, (w_img, h_img, w_img, h_img)))
    if angle == 0:
        return {"kind": "hbb", "values": [x1, y1, x2, y2]}
    obb = np.array([[(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, -math.radians(angle)]])
    if obb[0, 2] <= 0 or obb[0, 3] <= 0:
        return {"kind": "quad", "values": obb_to_quad(obb)[0].tolist()}
    return {"kind": "obb", "values": normalize_obb(obb)[0].tolist()}


class GeoChatBoxes:
    """Replaces GeoChat box text in one record by ``<box:N>`` references, collecting the boxes."""

    def __init__(self, conv: Converter, line: int, image: str, angle_allowed: bool = True):
        self.conv, self.line, self.image = conv, line, image
        self.boxes: list[dict] = []
        self.size: tuple[int, int] | None = None

    def _box(self, m: re.Match, field: str) -> str:
        vals = [float(v) for v in m.groups()[:4]]
        angle = float(m.group(5)) if m.group(5) is not None else 0.0
        if any(v < 0 or v > 100 for v in vals):
            raise self.conv.problem(self.line, field, f"box {m.group(0)} has a value outside the 0-100 grid")
        if vals[0] > vals[2] or vals[1] > vals[3]:
            raise self.conv.problem(self.line, field, f"box {m.group(0)} needs x1 <= x2 and y1 <= y2")
        if self.size is None:
            self.size = self.conv.image_sizes(self.image, Problem(self.conv.path, self.line, "image", ""))
        box = geochat_box(vals, angle, self.size)
        box["image"] = 0
        self.conv.change(f"box:{box['kind']}")
        self.boxes.append(box)
        return f"<box:{len(self.boxes) - 1}>"

    def unify_kinds(self) -> str | None:
        """One box kind per record: GeoChat writes unrotated boxes without an angle next to rotated ones, so
        when both occur the horizontal ones become obb with angle 0 (quads when a box is degenerate, i.e. has a
        zero side, or a quad is present). Returns the record's kind (None without boxes)."""
        kinds = {b["kind"] for b in self.boxes}
        if len(kinds) <= 1:
            return next(iter(kinds), None)
        hbb = [b for b in self.boxes if b["kind"] == "hbb"]
        h = np.asarray([b["values"] for b in hbb], dtype=np.float64).reshape(-1, 4)
        flat = (h[:, 2] <= h[:, 0]) | (h[:, 3] <= h[:, 1])
        target = "quad" if "quad" in kinds or flat.any() else "obb"
        if target == "obb":  # the same rectangle, angle 0, in le90 form
            new = normalize_obb(np.stack([(h[:, 0] + h[:, 2]) / 2, (h[:, 1] + h[:, 3]) / 2, h[:, 2] - h[:, 0],
                                          h[:, 3] - h[:, 1], np.zeros(len(h))], axis=1))
            for b, v in zip(hbb, new.tolist()):
                b["kind"], b["values"] = "obb", v
            self.conv.change("box:hbb_as_obb", len(hbb))
            return target
        for b in self.boxes:
            if b["kind"] != "quad":
                self.conv.change(f"box:{b['kind']}_as_quad")
                b["values"] = Boxes(np.asarray(b["values"]), b["kind"]).to_quad().data[0].tolist()
                b["kind"] = "quad"
        return target

    def replace(self, text: str, field: str) -> str:
        def run(m: re.Match) -> str:
            return ", ".join(self._box(b, field) for b in GEOCHAT_BOX.finditer(m.group(0)))

        out = _BOX_RUN.sub(run, text)
        if "{<" in out:
            bad = out[out.index("{<"):][:40]
            raise self.conv.problem(self.line, field, f"malformed GeoChat box text {bad!r}")
        return out


def strip_phrase_tags(conv: Converter, text: str) -> str:
    out, n = _PHRASE.subn(r"\1", text)
    conv.change("phrase_tags_removed", n)
    return out


@register_converter("geochat")
class GeoChatConverter(Converter):
    """GeoChat_Instruct (LLaVA JSON, 0-100 ``{<x><y><x><y>|<deg>}`` boxes) -> conversations."""

    output_kind = "conversation"
    summary = "GeoChat_Instruct JSON (0-100 grid boxes with angle) -> conversation jsonl"
    default_task = "chat"

    def images_of(self, raw: dict, line: int) -> list[str]:
        image = raw.get("image")
        if image is None:
            return []
        if isinstance(image, str) and image:
            return [image]
        raise self.problem(line, "image", f"expected an image file name, got {image!r}")

    def convert_one(self, raw: Any, line: int) -> dict | None:
        if not isinstance(raw, dict):
            raise self.problem(line, "", "expected a JSON object")
        rid = raw.get("id")
        if not isinstance(rid, (str, int)) or rid == "":
            raise self.problem(line, "id", "required id")
        images = self.images_of(raw, line)
        turns = self.llava_turns(raw, line)
        return self.build(raw, line, str(rid), images, turns)

    def build(self, raw: dict, line: int, rid: str, images: list[str], turns) -> dict:
        boxes = GeoChatBoxes(self, line, images[0] if images else "")
        task = self.config.task or self.default_task
        new_turns = []
        tagged: list[tuple[int, str]] = []  # (turn index, descriptor) of every user turn that carried one
        for i, (role, text, field) in enumerate(turns):
            if role == "user":
                found, text = take_descriptor(text)
                if found:
                    tagged.append((i, found))
                    self.change(f"descriptor_removed:{found}")
            text = strip_phrase_tags(self, text)
            text = boxes.replace(text, field)
            new_turns.append((role, text, field))
        answer_kind = boxes.unify_kinds()
        for i, found in tagged:
            role, text, field = new_turns[i]
            new_turns[i] = (role, join_sentence(text, descriptor_suffix(found, answer_kind)), field)
        if tagged:  # the record's task is the one its first request names
            task = descriptor_table()[tagged[0][1]]["task"]
        messages = self.messages_from_turns(new_turns, images, line)
        for msg in messages:
            for part in msg["content"]:
                if part["type"] == "text":
                    part["text"] = self.clean(part["text"])
        for msg in messages:
            msg["content"] = [p for p in msg["content"] if p["type"] != "text" or p["text"]]
            if not msg["content"]:
                raise self.problem(line, "conversations", f"a {msg['role']} turn is empty after conversion")
        if tagged:
            self.change(f"task:{task}")
        rec = {"id": f"{self.name}/{rid}", "source": self.name, "task": task, "messages": messages}
        if boxes.boxes:
            if boxes.size is None:  # pragma: no cover - size is read with the first box
                raise RecordError(Problem(self.path, line, "image", "no image size"))
            rec["image_sizes"] = [list(boxes.size)] * len(images)
            rec["boxes"] = boxes.boxes
        return rec
