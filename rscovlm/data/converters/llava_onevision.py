"""LLaVA / LLaVA-OneVision-style general data (charts, OCR, ...) -> conversation records.

Source format (haotian-liu/LLaVA docs, LLaVA-OneVision recipe; see shared FORMAT.md "llava_format")
-------------------------------------------------------------------------------------------------
A JSON array or JSON Lines of::

    {"id": "...", "image": "part-000001/x.jpg" | ["a.jpg", "b.jpg"],   # optional (text-only samples)
     "conversations": [{"from": "human", "value": "<image>\\nWhat does the chart show?"},
                       {"from": "gpt", "value": "..."}]}

One ``<image>`` token per image marks where each image goes (none: images first). ``video`` samples are not
supported by this framework and are dropped, counted as ``unsupported: video``. There is no box convention in
this format (each dataset writes its own box text), so no text is interpreted as boxes. Cleaning keeps
indentation and fenced code untouched (see rscovlm.data.cleaning).
"""

from __future__ import annotations

from typing import Any

from rscovlm.data.converters.base import Converter, register_converter


@register_converter("llava_onevision")
class LlavaOneVisionConverter(Converter):
    """LLaVA(-OneVision) JSON -> conversations (no box parsing)."""

    output_kind = "conversation"
    summary = "LLaVA / LLaVA-OneVision JSON or jsonl (general subset) -> conversation jsonl"

    def convert_one(self, raw: Any, line: int) -> dict | None:
        if not isinstance(raw, dict):
            raise self.problem(line, "", "expected a JSON object")
        if "video" in raw:
            self.report.drop("unsupported: video", f"{self.path}:{line}")
            return None
        rid = raw.get("id")
        if not isinstance(rid, (str, int)) or rid == "":
            raise self.problem(line, "id", "required id")
        image = raw.get("image")
        images = [] if image is None else [image] if isinstance(image, str) else image
        if not isinstance(images, list) or not all(isinstance(p, str) and p for p in images):
            raise self.problem(line, "image", f"expected an image path or a list of paths, got {image!r}")
        turns = self.llava_turns(raw, line)
        messages = self.messages_from_turns(turns, images, line)
        for msg in messages:
            msg["content"] = [dict(p, text=self.clean(p["text"])) if p["type"] == "text" else p
                              for p in msg["content"]]
            msg["content"] = [p for p in msg["content"] if p["type"] != "text" or p["text"]]
            if not msg["content"]:
                raise self.problem(line, "conversations", f"a {msg['role']} turn is empty")
        task = self.config.task or str(raw.get("data_source") or raw.get("task") or "general")
        return {"id": f"{self.name}/{rid}", "source": self.name, "task": task, "messages": messages}
