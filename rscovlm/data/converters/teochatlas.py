"""TEOChatlas (TEOChat's training data) -> conversation records with several, time-ordered images.

Source format (ermongroup/TEOChat; see shared FORMAT.md "teochatlas")
--------------------------------------------------------------------
A JSON array (JSON Lines accepted) of LLaVA-style records::

    {"id": "...", "video": ["a/2017.png", "a/2018.png"],   # temporal sequence; single-image records use
                                                           # "image" (a string or a list) instead
     "timestamp": ["2017-05-03", "2018-06-01"],            # optional, "%Y-%m-%d", one per image
     "conversations": [{"from": "human", "value": "<video>\\nHas any building been destroyed?"}, ...]}

* TEOChat sorts the frames by date when ``timestamp`` is present; the converter does the same (stable sort) and
  keeps the sorted dates in ``meta.timestamps``. A malformed date or a count that differs from the images is
  malformed input.
* The media token is ``<video>`` (all frames in its place) or one ``<image>`` per frame; without a token the
  frames go first in the first user turn.
* Box convention: boxes are on a **0-100 grid of the image width / height**. TEOChat's own tasks write them as
  ``[x1, y1, x2, y2]`` (videollava/eval/detection.py reads ``[..]`` lists and scales ``box / 100 * width``);
  GeoChat-derived records use GeoChat's ``{<x1><y1><x2><y2>|<deg>}``. Both are parsed (GeoChat's rules: hbb, or
  obb with an angle). A bracketed list of four numbers is a box when it is one on the grid (``0 <= x1 <= x2 <=
  100``, same for y); any other bracketed list of four numbers (``[2016, 2017, 2018, 2019]``) stays text and is
  counted (``bracket_list_kept_as_text``). The frames of a sequence are co-registered: boxes are attributed to
  the first frame, and every frame must have that frame's size.
"""

from __future__ import annotations

import re
from datetime import date

from rscovlm.data.converters.base import register_converter
from rscovlm.data.converters.geochat import GeoChatConverter
from rscovlm.data.records import Problem

MEDIA_TOKEN = re.compile(r"\s*<(?:image|video)>\s*")
_N = r"\s*(\d+(?:\.\d+)?)\s*"
BRACKET_BOX = re.compile(r"\[" + _N + "," + _N + "," + _N + "," + _N + r"\]")


@register_converter("teochatlas")
class TEOChatlasConverter(GeoChatConverter):
    """TEOChatlas JSON (image sequences, dates, 0-100 boxes) -> multi-image conversations."""

    output_kind = "conversation"
    summary = "TEOChatlas JSON (temporal image lists, 0-100 grid boxes) -> conversation jsonl"
    default_task = "temporal"

    def images_of(self, raw: dict, line: int) -> list[str]:
        key = "video" if "video" in raw else "image"
        value = raw.get(key)
        images = [value] if isinstance(value, str) else value
        if not isinstance(images, list) or not images or not all(isinstance(p, str) and p for p in images):
            raise self.problem(line, key, f"expected an image path or a non-empty list of paths, got {value!r}")
        stamps = raw.get("timestamp")
        if stamps is None:
            self._stamps = None
            return images
        if not isinstance(stamps, list) or len(stamps) != len(images):
            raise self.problem(line, "timestamp", f"expected {len(images)} dates (one per image)")
        try:
            days = [date.fromisoformat(s) for s in stamps]
        except (TypeError, ValueError):
            raise self.problem(line, "timestamp", f"dates must be YYYY-MM-DD, got {stamps!r}")
        order = sorted(range(len(images)), key=lambda i: days[i])
        if order != list(range(len(images))):
            self.change("frames_sorted_by_date")
        self._stamps = [stamps[i] for i in order]
        return [images[i] for i in order]

    def messages_from_turns(self, turns, images, line, token=MEDIA_TOKEN):
        n_video = sum(t.count("<video>") for _, t, _ in turns)
        if n_video:
            if n_video != 1:
                raise self.problem(line, turns[0][2], "expected one <video> token")
            turns = [(r, t.replace("<video>", "<image>" * len(images)), f) for r, t, f in turns]
        return super().messages_from_turns(turns, images, line, token=re.compile(r"\s*<image>\s*"))

    def _bracket_boxes(self, text: str) -> str:
        """``[x1, y1, x2, y2]`` on the 0-100 grid -> GeoChat box text, which :meth:`build` then parses."""
        def sub(m: re.Match) -> str:
            x1, y1, x2, y2 = (float(v) for v in m.groups())
            if not (0 <= x1 <= x2 <= 100 and 0 <= y1 <= y2 <= 100):
                self.change("bracket_list_kept_as_text")
                return m.group(0)
            self.change("bracket_box")
            return "{<" + "><".join(m.groups()) + ">}"

        return BRACKET_BOX.sub(sub, text)

    def build(self, raw, line, rid, images, turns):
        turns = [(role, self._bracket_boxes(text), field) for role, text, field in turns]
        rec = super().build(raw, line, rid, images, turns)
        if "boxes" in rec and len(images) > 1:
            first = rec["image_sizes"][0]
            sizes = [list(self.image_sizes(p, Problem(self.path, line, "video", ""))) for p in images]
            bad = [p for p, s in zip(images, sizes) if s != first]
            if bad:
                raise self.problem(line, "video", f"frames differ in size from the first frame {first}: {bad}")
            rec["image_sizes"] = sizes
        if self._stamps is not None:
            rec["meta"] = {"timestamps": self._stamps}
        return rec
