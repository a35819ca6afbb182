"""GeoChat_Instruct -> conversation records.

Source format (mbzuai-oryx/GeoChat @ 4850920, LLaVA-v1.5 training data; see shared FORMAT.md "geochat_instruct")
---------------------------------------------------------------------------------------------------------------
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
* Box text: ``{<x1><y1><x2><y2>|<theta>}``; several boxes follow each other as ``}{`` or separated by ``<delim>``
  (``{..}<delim>{..}``, as GeoChat's own parser ``geochat_demo.py`` splits them); the ``<delim>`` tokens are
  removed (counted). Integers on a **0-100 grid relative to the image width (x) and height (y)**
  (geochat_demo.py: ``left = x0 / 100 * W``); ``(x1, y1, x2, y2)`` is the box *before* rotation.
* ``theta`` is in **degrees**, may be negative, missing = 0. **Positive theta turns the box clockwise on screen**
  (y down): GeoChat's polygon code ``bbox_and_angle_to_polygon`` (geochat_demo.py, geochat/serve/cli.py) applies
  ``x' = cos(a) x - sin(a) y, y' = sin(a) x + cos(a) y`` to the corner offsets in image coordinates, which is a
  clockwise turn on screen; and the GeoChat-Bench referring record of GitHub issue mbzuai-oryx/GeoChat#41
  (question ``fast_6217``, answer ``{<89><47><97><55>|<58>}``, ground-truth polygon ``(584,337) (619,313)
  (601,282) (565,304)``) has its box sides at +60 / -34 degrees on screen: +58 read clockwise fits, read
  counter-clockwise it is 26 degrees off (tests/test_data_converters.py checks this record). The demo's drawing
  helper ``rotate_bbox`` (``cv2.getRotationMatrix2D``, counter-clockwise) disagrees with both and is not used.
  Our obb angle is clockwise on screen too, so ``obb.theta = +radians(theta)``.

Conversion: every box becomes a structured box in original pixels and the text holds ``<box:N>``:

* ``theta`` a multiple of 90 (0, 90, -90, 180) -> ``hbb`` (for odd multiples of 90 the rotated rectangle, i.e.
  width and height swapped about the centre); boxes keep their own kind, a record may mix hbb and obb.
* other angles -> ``obb`` (cx, cy, w, h scaled per axis, le90); a rotated box with a zero side -> the degenerate
  ``quad`` it spans.
* Values beyond the 0-100 grid (GeoChat writes e.g. ``<101>`` or ``<-1>`` for boxes at the border): an ``hbb`` is
  clipped to the image (counted ``box_clipped_to_image``); an ``obb`` keeps its values - the unrotated rectangle of
  an object turned near the border legitimately pokes out of the grid - and is counted ``obb_beyond_grid``; a box
  whose hbb lies wholly outside the image, or an obb whose centre does, is malformed input.
* An inverted corner pair or any ``{<`` left unparsed is malformed input.

The appended box-kind sentence names the kind of the boxes of the answer that follows the request (the most
general one when they are mixed: quad > obb > hbb).
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
from rscovlm.geometry.boxes import normalize_obb, obb_to_quad

_NUM = r"\s*(-?\d+(?:\.\d+)?)\s*"
GEOCHAT_BOX = re.compile(r"\{<" + _NUM + r"><" + _NUM + r"><" + _NUM + r"><" + _NUM + r">(?:\|<" + _NUM + r">)?\}")
_DELIM = r"\s*<delim>\s*"
_BOX_RUN = re.compile(GEOCHAT_BOX.pattern + r"(?:(?:" + _DELIM + r")?" + GEOCHAT_BOX.pattern + r")*")
_STRAY_DELIM = re.compile(_DELIM)
_PHRASE = re.compile(r"<p>\s*(.*?)\s*</p>", re.DOTALL)
KIND_ORDER = ("hbb", "obb", "quad")


def geochat_box(values: list[float], angle: float, size: tuple[int, int]) -> dict:
    """One GeoChat box (0-100 grid, angle in degrees clockwise on screen) -> structured box in original pixels
    (no clipping; see :class:`GeoChatBoxes` for the grid rule)."""
    w_img, h_img = size
    x1, y1, x2, y2 = (v / 100.0 * s for v, s in zip(values, (w_img, h_img, w_img, h_img)))
    turns = angle / 90.0
    if turns == round(turns):
        if round(turns) % 2:  # a quarter turn of the rectangle about its centre: sides swapped
            cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
            x1, y1, x2, y2 = cx - hh, cy - hw, cx + hh, cy + hw
        return {"kind": "hbb", "values": [x1, y1, x2, y2]}
    obb = np.array([[(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, math.radians(angle)]])
    if obb[0, 2] <= 0 or obb[0, 3] <= 0:
        return {"kind": "quad", "values": obb_to_quad(obb)[0].tolist()}
    return {"kind": "obb", "values": normalize_obb(obb)[0].tolist()}


class GeoChatBoxes:
    """Replaces GeoChat box text in one record by ``<box:N>`` references, collecting the boxes."""

    def __init__(self, conv: Converter, line: int, image: str):
        self.conv, self.line, self.image = conv, line, image
        self.boxes: list[dict] = []
        self.size: tuple[int, int] | None = None

    def _box(self, m: re.Match, field: str) -> str:
        vals = [float(v) for v in m.groups()[:4]]
        angle = float(m.group(5)) if m.group(5) is not None else 0.0
        if vals[0] > vals[2] or vals[1] > vals[3]:
            raise self.conv.problem(self.line, field, f"box {m.group(0)} needs x1 <= x2 and y1 <= y2")
        if self.size is None:
            self.size = self.conv.image_sizes(self.image, Problem(self.conv.path, self.line, "image", ""))
        box = geochat_box(vals, angle, self.size)
        beyond = any(v < 0 or v > 100 for v in vals)
        w, h = self.size
        if box["kind"] == "hbb":
            x1, y1, x2, y2 = box["values"]
            clipped = [min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h)]
            inside = clipped[2] > clipped[0] and clipped[3] > clipped[1]
            if clipped != box["values"] and not inside:
                raise self.conv.problem(self.line, field, f"box {m.group(0)} lies outside the image (0-100 grid)")
            if clipped != box["values"]:
                box["values"] = clipped
                self.conv.change("box_clipped_to_image")
        elif beyond:
            cx, cy = (vals[0] + vals[2]) / 2, (vals[1] + vals[3]) / 2
            if not (0 <= cx <= 100 and 0 <= cy <= 100):
                raise self.conv.problem(self.line, field, f"box {m.group(0)} has its centre outside the image")
            self.conv.change("obb_beyond_grid")
        box["image"] = 0
        self.conv.change(f"box:{box['kind']}")
        self.boxes.append(box)
        return f"<box:{len(self.boxes) - 1}>"

    def replace(self, text: str, field: str) -> tuple[str, list[str]]:
        """``text`` with its boxes replaced, and the kinds of the boxes found in it."""
        first = len(self.boxes)

        def run(m: re.Match) -> str:
            n_delim = len(_STRAY_DELIM.findall(m.group(0)))
            if n_delim:
                self.conv.change("delim_removed", n_delim)
            return ", ".join(self._box(b, field) for b in GEOCHAT_BOX.finditer(m.group(0)))

        out = _BOX_RUN.sub(run, text)
        if "<delim>" in out:
            out, n = _STRAY_DELIM.subn(" ", out)
            self.conv.change("delim_removed", n)
        if "{<" in out:
            bad = out[out.index("{<"):][:40]
            raise self.conv.problem(self.line, field, f"malformed GeoChat box text {bad!r}")
        return out, [b["kind"] for b in self.boxes[first:]]


def answer_kind(kinds: list[str]) -> str | None:
    """The box kind a request's sentence names: the most general of the answer's boxes (None without boxes)."""
    return max(kinds, key=KIND_ORDER.index) if kinds else None


def strip_phrase_tags(conv: Converter, text: str) -> str:
    out, n = _PHRASE.subn(r"\1", text)
    conv.change("phrase_tags_removed", n)
    return out


@register_converter("geochat")
class GeoChatConverter(Converter):
    """GeoChat_Instruct (LLaVA JSON, 0-100 ``{<x><y><x><y>|<deg>}`` boxes) -> conversations."""

    output_kind = "conversation"
    summary = "GeoChat_Instruct JSON (0-100 grid boxes with angle, <delim>) -> conversation jsonl"
    default_task = "chat"

    def images_of(self, raw: dict, line: int) -> list[str]:
        image = raw.get("image")
        if image is None:
            return []
        if isinstance(image, str) and image:
            return [image]
        raise self.problem(line, "image", f"expected an image file name, got {image!r}")

    def record_id(self, raw: dict, line: int) -> str:
        rid = raw.get("id")
        if not isinstance(rid, (str, int)) or isinstance(rid, bool) or rid == "":
            raise self.problem(line, "id", "required id")
        return str(rid)

    def convert_one(self, raw: Any, line: int) -> dict | None:
        if not isinstance(raw, dict):
            raise self.problem(line, "", "expected a JSON object")
        rid = self.record_id(raw, line)
        images = self.images_of(raw, line)
        turns = self.llava_turns(raw, line)
        return self.build(raw, line, rid, images, turns)

    def record_task(self, raw: dict, tagged: list[tuple[int, str]]) -> str:
        if tagged:  # the record's task is the one its first request names
            return descriptor_table()[tagged[0][1]]["task"]
        return self.config.task or self.default_task

    def build(self, raw: dict, line: int, rid: str, images: list[str], turns) -> dict:
        boxes = GeoChatBoxes(self, line, images[0] if images else "")
        new_turns = []
        kinds: list[list[str]] = []
        tagged: list[tuple[int, str]] = []  # (turn index, descriptor) of every user turn that carried one
        for i, (role, text, field) in enumerate(turns):
            if role == "user":
                found, text = take_descriptor(text)
                if found:
                    tagged.append((i, found))
                    self.change(f"descriptor_removed:{found}")
            text = strip_phrase_tags(self, text)
            text, found_kinds = boxes.replace(text, field)
            new_turns.append((role, text, field))
            kinds.append(found_kinds)
        for i, found in tagged:
            role, text, field = new_turns[i]
            reply = next((kinds[j] for j in range(i + 1, len(turns)) if turns[j][0] == "assistant"), [])
            new_turns[i] = (role, join_sentence(text, descriptor_suffix(found, answer_kind(reply))), field)
        task = self.record_task(raw, tagged)
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
