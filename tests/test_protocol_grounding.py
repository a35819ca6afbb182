import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rscovlm.geometry import Boxes, Frame
from rscovlm.protocol import format_grounding, parse_grounding


@pytest.mark.parametrize("form", ["plain", "json"])
@pytest.mark.parametrize("kind,data", [
    ("hbb", [[1.4, 2.6, 30, 40], [50, 60, 70, 80]]),
    ("quad", [[0, 0, 4, 0, 4, 4, 0, 4]]),
    ("obb", [[10, 10, 8, 4, np.radians(29)]]),
])
def test_round_trip_keeps_order_and_rounds(kind, data, form):
    frame = Frame.model(112, 112)
    boxes = Boxes(data, kind, frame)
    text = format_grounding(boxes, form)
    parsed, unparsed = parse_grounding(text, kind, frame, rule="boxes")  # every box (the reference rule: the first)
    assert unparsed == [] and parsed.frame == frame
    expected = np.rint(boxes.normalized().data)
    if kind == "obb":
        expected[:, 4] = boxes.data[:, 4]
    assert np.allclose(parsed.data, expected, atol=1e-9)


def test_first_box_wins_and_junk_is_reported():
    boxes, unparsed = parse_grounding("the plane is at (10,20),(30,40); maybe (1,2)")
    assert boxes.data.tolist() == [[10, 20, 30, 40]] and unparsed == ["maybe (1,2)"]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.text())
def test_never_raises(text):
    for kind in ("hbb", "quad", "obb"):
        boxes, unparsed = parse_grounding(text, kind)
        assert boxes.kind == kind


def test_caption_before_and_prose_after_a_box():
    boxes, unparsed = parse_grounding("the plane at (10,20),(30,40) next to the hangar 2")
    assert boxes.data.tolist() == [[10, 20, 30, 40]] and unparsed == ["next to the hangar 2"]
    boxes, unparsed = parse_grounding("target: (10,20),(30,40)\n(1,2,3,4,5)")
    assert boxes.data.tolist() == [[10, 20, 30, 40]] and unparsed == ["(1,2,3,4,5)"]
    boxes, unparsed = parse_grounding("(10,20),(30,40),(5", "hbb")  # cut off: not an hbb
    assert len(boxes) == 0 and unparsed == ["(10,20),(30,40),(5"]


def test_nested_json_and_huge_integers_are_unparsed_not_raised():
    # main: RecursionError / OverflowError
    deep = '[{"bbox_2d": ' + "[" * 20_000 + "]" * 20_000 + "}, {\"bbox_2d\": [1, 2, 3, 4]}]"
    boxes, unparsed = parse_grounding(deep, rule="boxes")
    assert boxes.data.tolist() == [[1, 2, 3, 4]] and len(unparsed) == 1
    boxes, unparsed = parse_grounding(deep)  # the reference rule: the first [n, n, n, n] anywhere
    assert boxes.data.tolist() == [[1, 2, 3, 4]] and unparsed == []
    for rule in ("auto", "boxes"):
        boxes, unparsed = parse_grounding('[{"bbox_2d": [' + "9" * 400 + ", 2, 3, 4]}]", rule=rule)
        assert len(boxes) == 0 and len(unparsed) == 1
    ambiguous = '[{"bbox_2d": [true, 2, 3, 4]}, {"bbox_2d": [1, 2, 3, 4], "quad_2d": []}]'
    boxes, unparsed = parse_grounding(ambiguous, rule="boxes")
    assert len(boxes) == 0 and len(unparsed) == 2
    boxes, unparsed = parse_grounding(ambiguous)  # the reference reads the first four-number list
    assert boxes.data.tolist() == [[1, 2, 3, 4]]
