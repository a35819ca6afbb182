import numpy as np
import pytest

from rscovlm.eval.answers import answer_accuracy
from rscovlm.eval.grounding import grounding_accuracy
from rscovlm.geometry import hbb_iou_pairs
from rscovlm.geometry import Boxes


def test_hbb_iou_continuous_no_plus_one():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], float)
    b = np.array([[5, 0, 15, 10], [10, 0, 20, 10], [0, 0, 10, 10]], float)
    assert np.allclose(hbb_iou_pairs(a, b), [50 / 150, 0.0, 1.0])  # touching boxes share no area


def test_grounding_accuracy_strict_threshold_first_box_and_misses():
    targets = Boxes([[0, 0, 10, 10]] * 4, "hbb")
    preds = [
        Boxes([[1, 1, 10, 10], [50, 50, 60, 60]], "hbb"),  # first box counts: IoU 0.81
        Boxes([[50, 50, 60, 60], [0, 0, 10, 10]], "hbb"),  # first box misses even though the second hits
        None,  # unparseable answer
        Boxes([[0, 0, 10, 5]], "hbb"),  # IoU exactly 0.5: not a hit (strict >)
    ]
    out = grounding_accuracy(preds, targets)
    assert out["hits"] == 1 and out["n"] == 4 and out["unparsed"] == 1
    assert out["ious"][3] == pytest.approx(0.5)
    assert out["acc"] == pytest.approx(0.25)


def test_answer_accuracy_rules():
    preds = ["Airport.", "dense_residential", "  river "]
    gts = ["airport", "Dense Residential", "River"]
    assert answer_accuracy(preds, gts, "lower")["correct"] == 2
    assert answer_accuracy(preds, gts, "label")["correct"] == 3
    assert answer_accuracy(preds, gts, "exact")["correct"] == 0
    with pytest.raises(KeyError, match="rule"):
        answer_accuracy(preds, gts, "fuzzy")
