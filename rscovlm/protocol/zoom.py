"""The zoom-in tool call (paper 3.4): strings, writer and reader.

The strings are those of a prompt set's ``zoom.yaml`` (the ``reference`` set: VisionXLab/RSCoVLM at c507282,
``rscovlm/training/data/visual_cot_dataset.py`` and ``rscovlm/eval/inferencer.py``). The model asks for a crop with

    <tool_call>
    {"name": "image_zoom_in", "arguments": {"bbox": [x1, y1, x2, y2]}}
    </tool_call>

(:func:`format_zoom_call`), the box given in the MODEL frame of the full image as the model saw it (pixels of the
downsampled image, integers): the reference writes training calls as ``int(v * resized / original)`` of the crop
box in original pixels (:func:`zoom_box_to_model`). The follow-up user turn carries the crop and the text
``Here's the zoomed-in image. You can complete your task now.``.

:func:`parse_zoom_call` reads a call from a model answer: never raises, linear time; it accepts the call with or
without the newlines, a missing closing tag (cut-off answer), integer or decimal coordinates, and reports every
problem (no call, broken JSON, another tool name, a box that is not four finite numbers) instead of guessing.
The reference's evaluation parses with character-set ``lstrip``/``rstrip`` of the tags and ``json.loads`` and, on
any failure, answers with the whole image; a caller that wants that behaviour uses the whole image when
``call.bbox`` is None.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Sequence

from rscovlm.protocol.prompt_sets import PromptSet, ZoomPrompts, get_prompt_set, render
from rscovlm.protocol.readers import _SMALL_JSON, MAX_CHARS, MAX_JSON_DEPTH, _json_objects, _json_objects_small

OPEN_TAG = "<tool_call>"
CLOSE_TAG = "</tool_call>"


def zoom_prompts(prompt_set: PromptSet | str | None = None) -> ZoomPrompts:
    """The zoom strings of ``prompt_set`` (default: the default set)."""
    ps = prompt_set if isinstance(prompt_set, PromptSet) else get_prompt_set(prompt_set)
    if ps.zoom is None:
        raise KeyError(f"prompt set {ps.name!r} ({ps.path}) has no zoom.yaml")
    return ps.zoom


def zoom_box_to_model(bbox: Sequence[float], original: tuple[float, float],
                      model: tuple[int, int]) -> list[int]:
    """A crop box in original pixels -> the model frame of the downsampled image, as the reference writes it:
    ``int(v * model_w / original_w)`` for x, likewise y (``original``/``model`` are ``(width, height)``)."""
    (ow, oh), (mw, mh) = original, model
    x1, y1, x2, y2 = bbox
    return [int(x1 * mw / ow), int(y1 * mh / oh), int(x2 * mw / ow), int(y2 * mh / oh)]


def format_zoom_call(bbox: Sequence[int], prompt_set: PromptSet | str | None = None) -> str:
    """The assistant's tool call for ``bbox`` (model frame; values written with ``int()``)."""
    x1, y1, x2, y2 = (int(v) for v in bbox)
    return render(zoom_prompts(prompt_set).tool_call, x1=x1, y1=y1, x2=x2, y2=y2)


def zoom_messages(image_part: dict, question: str, bbox: Sequence[int], crop_part: dict, answer: str | None = None,
                  prompt_set: PromptSet | str | None = None) -> list[dict]:
    """The reference's zoom conversation: system (tool schema), user [image, question + zoom request], assistant
    tool call (``bbox`` in the model frame), user [crop, follow-up text] and, when given, the assistant's answer.
    Contents are part lists; the assistant turns are text parts."""
    z = zoom_prompts(prompt_set)
    messages = [
        {"role": "system", "content": [{"type": "text", "text": z.system}]},
        {"role": "user", "content": [image_part, {"type": "text", "text": z.user_text(question)}]},
        {"role": "assistant", "content": [{"type": "text", "text": format_zoom_call(bbox, prompt_set)}]},
        {"role": "user", "content": [crop_part, {"type": "text", "text": z.followup}]},
    ]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


@dataclass(frozen=True)
class ZoomCall:
    """A tool call read from an answer: ``bbox`` (four finite floats, model frame) or None with ``problem``
    saying why; ``found`` is True when the answer contains ``<tool_call>``; ``name`` the tool name as written;
    ``span`` the (start, end) of the call in the answer."""

    found: bool
    bbox: tuple[float, float, float, float] | None = None
    name: str | None = None
    problem: str | None = None
    span: tuple[int, int] | None = None


def parse_zoom_call(text, tool_name: str = "image_zoom_in") -> ZoomCall:
    """The first tool call of ``text`` (see module docstring). Never raises."""
    if not isinstance(text, str):
        return ZoomCall(False, problem="not text")
    start = text.find(OPEN_TAG, 0, MAX_CHARS)
    if start < 0:
        return ZoomCall(False, problem="no <tool_call>")
    body_start = start + len(OPEN_TAG)
    end = text.find(CLOSE_TAG, body_start, MAX_CHARS)
    body_end = end if end >= 0 else min(len(text), MAX_CHARS)
    span = (start, end + len(CLOSE_TAG) if end >= 0 else body_end)
    body = text[body_start:body_end]
    if len(body) < _SMALL_JSON:
        starts, ends, depths = _json_objects_small(body, 1)
    else:
        starts, ends, depths = (a.tolist() for a in _json_objects(body, 1))
    if not starts:
        return ZoomCall(True, problem="no JSON object in the tool call", span=span)
    if depths[0] > MAX_JSON_DEPTH:
        return ZoomCall(True, problem=f"JSON nested deeper than {MAX_JSON_DEPTH}", span=span)
    try:
        call = json.loads(body[starts[0]:ends[0]])
    except (ValueError, RecursionError):
        return ZoomCall(True, problem="the tool call is not valid JSON" + ("" if end >= 0 else " (cut off)"),
                        span=span)
    name = call.get("name") if isinstance(call, dict) else None
    name = name if isinstance(name, str) else None
    if name != tool_name:
        return ZoomCall(True, name=name, problem=f"tool name {name!r}, expected {tool_name!r}", span=span)
    args = call.get("arguments")
    bbox = args.get("bbox") if isinstance(args, dict) else None
    if (type(bbox) is not list or len(bbox) != 4 or not all(type(v) in (int, float) for v in bbox)):
        return ZoomCall(True, name=name, problem="arguments.bbox is not a list of four numbers", span=span)
    try:
        values = tuple(float(v) for v in bbox)
    except OverflowError:
        values = (math.inf,)
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        return ZoomCall(True, name=name, problem="arguments.bbox has a non-finite value", span=span)
    return ZoomCall(True, values, name, None, span)
