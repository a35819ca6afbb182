"""The zoom-in tool call (issue 9, part 4): the reference's strings (VisionXLab/RSCoVLM c507282,
rscovlm/training/data/visual_cot_dataset.py: SYSTEM_PROMPT, TOOL_CALL_TEMPLATE, get_messages;
rscovlm/eval/inferencer.py::prepare_visual_cot_message), the writer and the never-raising reader."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rscovlm.protocol import format_zoom_call, get_prompt_set, parse_zoom_call, zoom_box_to_model, zoom_messages

CALL = '<tool_call>\n{"name": "image_zoom_in", "arguments": {"bbox": [10, 20, 300, 400]}}\n</tool_call>'


def test_writer_is_the_reference_template():
    assert format_zoom_call([10, 20, 300, 400]) == CALL
    assert format_zoom_call([10.9, 20.2, 300.7, 400.0]) == CALL  # int() as the template's callers do


def test_box_goes_to_the_downsampled_frame_as_the_reference_writes_it():
    # visual_cot_dataset.py: int(v * resized_width / image_ori_width), likewise y
    original, model = (5000, 3001), (1008, 756)
    box = [1234.5, 987.6, 4000.0, 2999.9]
    assert zoom_box_to_model(box, original, model) == [int(1234.5 * 1008 / 5000), int(987.6 * 756 / 3001),
                                                       int(4000.0 * 1008 / 5000), int(2999.9 * 756 / 3001)]


def test_conversation_layout():
    img, crop = {"type": "image", "image": "full"}, {"type": "image", "image": "crop"}
    msgs = zoom_messages(img, "What is the color of the car?", [1, 2, 3, 4], crop, "red")
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant"]
    z = get_prompt_set().zoom
    assert msgs[0]["content"][0]["text"] == z.system
    assert msgs[1]["content"] == [img, {"type": "text", "text": "What is the color of the car?\nZoom in to the "
                                                                "region of interest and answer the question."}]
    assert msgs[2]["content"][0]["text"] == format_zoom_call([1, 2, 3, 4])
    assert msgs[3]["content"] == [crop, {"type": "text", "text": "Here's the zoomed-in image. You can complete your "
                                                                 "task now."}]
    assert len(zoom_messages(img, "q", [1, 2, 3, 4], crop)) == 4
    with pytest.raises(KeyError, match="no zoom.yaml"):
        zoom_messages(img, "q", [1, 2, 3, 4], crop, prompt_set="rscovlm-v0")


@pytest.mark.parametrize("text,bbox", [
    (CALL, (10, 20, 300, 400)),
    ("Let me look closer.\n" + CALL + "\n", (10, 20, 300, 400)),
    ('<tool_call>{"name": "image_zoom_in", "arguments": {"bbox": [1.5, 2, 3, 4]}}</tool_call>', (1.5, 2, 3, 4)),
    ('<tool_call>\n{"name": "image_zoom_in", "arguments": {"bbox": [1, 2, 3, 4]}}', (1, 2, 3, 4)),  # no close tag
])
def test_reads_calls(text, bbox):
    call = parse_zoom_call(text)
    assert call.found and call.bbox == bbox and call.problem is None and call.name == "image_zoom_in"


@pytest.mark.parametrize("text,found,problem", [
    ("The answer is B.", False, "no <tool_call>"),
    ('<tool_call>{"name": "zoom_in", "arguments": {"bbox_2d": [1, 2, 3, 4]}}</tool_call>', True, "tool name"),
    ('<tool_call>{"name": "image_zoom_in", "arguments": {"bbox": [1, 2, 3]}}</tool_call>', True, "four numbers"),
    ('<tool_call>{"name": "image_zoom_in", "arguments": {"bbox": [1, 2, 3, true]}}</tool_call>', True,
     "four numbers"),
    ('<tool_call>{"name": "image_zoom_in", "arguments": {"bbox": [1e999, 2, 3, 4]}}</tool_call>', True, "non-finite"),
    ('<tool_call>\n{"name": "image_zoom_in", "arguments": {"bbox": [1, 2, 3', True, "not valid JSON (cut off)"),
    ("<tool_call></tool_call>", True, "no JSON object"),
    ("<tool_call>" + '{"a": ' * 100, True, "nested deeper"),
    ('<tool_call>{"name": "image_zoom_in", "arguments": {"bbox": [' + "9" * 5000 + ', 2, 3, 4]}}', True, "JSON"),
])
def test_reports_problems_instead_of_guessing(text, found, problem):
    call = parse_zoom_call(text)
    assert call.found == found and call.bbox is None and problem in call.problem


@settings(max_examples=300, deadline=None, derandomize=True)
@given(base=st.sampled_from([CALL, "Zoom: " + CALL]), pos=st.integers(0, 120), cut=st.integers(0, 30),
       insert=st.text(max_size=12))
def test_never_raises_on_mutated_calls(base, pos, cut, insert):
    call = parse_zoom_call(base[:pos] + insert + base[pos + cut:])
    assert call.bbox is None or (len(call.bbox) == 4 and np.isfinite(call.bbox).all())
    assert (call.bbox is None) == (call.problem is not None)
