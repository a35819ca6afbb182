"""TEOChatlas (TEOChat's training and evaluation data) -> conversation records with one or several images.

Source format (ermongroup/TEOChat @ 2ed7387: videollava/train/train.py ``LazySupervisedDataset``,
videollava/eval/inference.py and eval.py; the files of HF ``jirvin16/TEOChatlas`` as the RSCoVLM reference loads
them, VisionXLab/RSCoVLM @ c507282 ``rscovlm/eval/data/teochatlas_bench.py`` and ``training/data/config.py``:
``train/instruct_{fMoW,QFabric,S2Looking,xBD,GeoChat_modified}.json``, ``eval/{xBD_...,UCMerced,...}.json``;
see shared FORMAT.md "teochatlas")
---------------------------------------------------------------------------------------------------------------
A JSON array (JSON Lines accepted) of LLaVA-style records::

    {"id": "...", "task": "change_detection",               # the record's own task name (kept)
     "video": ["a/2017.png", "a/2018.png"],                 # image sequence; single-image records have one
                                                            # entry, or use "image" (a string or a list)
     "timestamp": ["2017-05-03", "2018-06-01"],             # optional, "%Y-%m-%d", one per image; may be []
     "metadata": [{"timestamp": "2017-05-03", ...}, ...],   # optional per-image layout (dates inside)
     "polygon": [...],                                      # optional (detection splits, since 2025-03-25)
     "conversations": [{"from": "human", "value": "This is a satellite image: <video> ..."}, ...]}

* Frame order: TEOChat sorts the frames by date when ``timestamp`` is a non-empty list (train.py, inference.py),
  or, in the per-image layout, by ``metadata[i]["timestamp"]``. The converter does the same (stable sort; counted
  ``frames_sorted_by_date``) and keeps the sorted dates in ``meta.timestamps`` (and the per-image ``metadata``,
  in frame order, in ``meta.metadata``). ``"timestamp": []`` or no dates at all: frames stay in the file's order,
  counted (``timestamps_empty`` / ``timestamps_missing``, for records of several images). A date that is not
  ``%Y-%m-%d`` or a count that differs from the images is malformed input.
* Task: the record's own ``task`` is kept. Without one: the first task descriptor's (``[identify]`` ...), else
  ``temporal`` for a sequence of several images and ``--task`` (default ``chat``) for a single image.
* The media token is ``<video>`` (all frames in its place) or one ``<image>`` per frame; without a token the
  frames go first in the first user turn. Turns without ``from`` alternate user / assistant (the released eval
  files have such turns; the reference patches them the same way).
* Box convention: boxes are on a **0-100 grid of the image width / height**. TEOChat's own tasks write them as
  ``[x1, y1, x2, y2]`` (videollava/eval/detection.py reads ``[..]`` lists and scales ``box / 100 * width``);
  GeoChat-derived records use GeoChat's ``{<x1><y1><x2><y2>|<deg>}`` (rules of :mod:`.geochat`). A bracketed list
  of four numbers is a box when it is one on the grid (``0 <= x1 <= x2 <= 100``, same for y); any other bracketed
  list of four numbers (``[2016, 2017, 2018, 2019]``) stays text and is counted (``bracket_list_kept_as_text``).
  The frames of a sequence are co-registered: boxes are attributed to the first frame, and every frame must have
  that frame's size.
* ``polygon`` is kept in ``meta.polygon`` as given.
* Image paths stay as written (the released eval files write ``TEOChatlas/eval/...``): ``--images`` is the folder
  they are relative to.
"""

from __future__ import annotations

import re
from datetime import datetime

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
    summary = "TEOChatlas JSON (image sequences with dates, record tasks, 0-100 grid boxes) -> conversation jsonl"

    def _dates(self, values, line: int, field: str) -> list[datetime]:
        try:
            return [datetime.strptime(v, "%Y-%m-%d") for v in values]
        except (TypeError, ValueError):
            raise self.problem(line, field, f"dates must be YYYY-MM-DD, got {values!r}") from None

    def images_of(self, raw: dict, line: int) -> list[str]:
        key = "video" if "video" in raw else "image"
        value = raw.get(key)
        images = [value] if isinstance(value, str) else value
        if not isinstance(images, list) or not images or not all(isinstance(p, str) and p for p in images):
            raise self.problem(line, key, f"expected an image path or a non-empty list of paths, got {value!r}")
        n = len(images)
        self._meta: dict = {}
        metadata = raw.get("metadata")
        if metadata is not None:
            if not isinstance(metadata, list) or len(metadata) != n or not all(isinstance(m, dict) for m in metadata):
                raise self.problem(line, "metadata", f"expected {n} objects (one per image)")
        stamps, field = raw.get("timestamp"), "timestamp"
        if stamps is None and metadata is not None and all("timestamp" in m for m in metadata):
            stamps, field = [m["timestamp"] for m in metadata], "metadata[].timestamp"
        order = list(range(n))
        if stamps is None or stamps == []:
            if n > 1:
                self.change("timestamps_missing" if stamps is None else "timestamps_empty")
        else:
            if not isinstance(stamps, list) or len(stamps) != n:
                raise self.problem(line, field, f"expected {n} dates (one per image), got {stamps!r}")
            days = self._dates(stamps, line, field)
            order = sorted(range(n), key=lambda i: days[i])
            if order != list(range(n)):
                self.change("frames_sorted_by_date")
            self._meta["timestamps"] = [stamps[i] for i in order]
        if metadata is not None:
            self._meta["metadata"] = [metadata[i] for i in order]
        if raw.get("polygon") is not None:
            self._meta["polygon"] = raw["polygon"]
        return [images[i] for i in order]

    def record_task(self, raw: dict, tagged: list[tuple[int, str]]) -> str:
        own = raw.get("task")
        if isinstance(own, str) and own.strip():
            return own.strip()
        if tagged:
            return super().record_task(raw, tagged)
        return "temporal" if self._n_images > 1 else (self.config.task or self.default_task)

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
        self._n_images = len(images)
        turns = [(role, self._bracket_boxes(text), field) for role, text, field in turns]
        rec = super().build(raw, line, rid, images, turns)
        if "boxes" in rec and len(images) > 1:
            first = rec["image_sizes"][0]
            sizes = [list(self.image_sizes(p, Problem(self.path, line, "video", ""))) for p in images]
            bad = [p for p, s in zip(images, sizes) if s != first]
            if bad:
                raise self.problem(line, "video", f"frames differ in size from the first frame {first}: {bad}")
            rec["image_sizes"] = sizes
        if self._meta:
            rec["meta"] = self._meta
        return rec
