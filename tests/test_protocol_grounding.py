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
    parsed, unparsed = parse_grounding(text, kind, frame)
    assert unparsed == [] and parsed.frame == frame
    expected = np.rint(boxes.normalized().data)
    if kind == "obb":
        expected[:, 4] = boxes.data[:, 4]
    assert np.allclose(parsed.data, expected, atol=1e-9)


def test_first_box_wins_and_junk_is_reported():
    boxes, unparsed = parse_grounding("the plane is at (10,20),(30,40); maybe (1,2)")
    assert boxes.data.tolist() == [[10, 20, 30, 40]] and unparsed == ["maybe (1,2)"]


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_never_raises(text):
    for kind in ("hbb", "quad", "obb"):
        boxes, unparsed = parse_grounding(text, kind)
        assert boxes.kind == kind
