"""mF1 with one-to-one matching: hand cases, difficult objects, micro averaging."""

import numpy as np
import pytest

from rscovlm.eval.f1 import eval_dota_f1

from test_metrics_dota import BOX, dets_of, gt_of


def shift(q, dx, dy=0):
    return np.add(q, [dx, dy] * 4).tolist()


def test_hand_counts_and_duplicates():
    gt = gt_of([("plane", 0, BOX, 0), ("plane", 0, shift(BOX, 20), 0), ("plane", 0, shift(BOX, 40), 0)])
    dets = dets_of([("plane", 0, BOX, 0.9), ("plane", 0, BOX, 0.95), ("plane", 0, shift(BOX, 20.5), 0.5),
                    ("plane", 0, shift(BOX, 100), 0.8)])
    r = eval_dota_f1(gt, dets)
    pc = r["per_class"]["plane"]
    assert (pc["tp"], pc["fp"], pc["num_gt"]) == (2, 2, 3)
    assert pc["precision"] == pytest.approx(0.5) and pc["recall"] == pytest.approx(2 / 3)
    assert pc["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    # score threshold drops detections before matching
    r = eval_dota_f1(gt, dets, score_thr=0.85)
    assert (r["per_class"]["plane"]["tp"], r["per_class"]["plane"]["fp"]) == (1, 1)


def test_matching_is_by_iou_not_score():
    gt = gt_of([("ship", 0, BOX, 0)])
    near = shift(BOX, 1)  # IoU 7/9
    dets = dets_of([("ship", 0, near, 0.99), ("ship", 0, BOX, 0.1)])
    r = eval_dota_f1(gt, dets)["per_class"]["ship"]
    assert (r["tp"], r["fp"]) == (1, 1)
    # strict > under dota, >= under mmrotate at exactly the threshold
    half = [0, 0, 4, 0, 4, 2, 0, 2]
    d2 = dets_of([("ship", 0, half, 1.0)])
    assert eval_dota_f1(gt, d2, protocol="dota")["per_class"]["ship"]["tp"] == 0
    assert eval_dota_f1(gt, d2, protocol="mmrotate")["per_class"]["ship"]["tp"] == 1
    assert eval_dota_f1(gt, d2)["per_class"]["ship"]["tp"] == 1  # the default: mmrotate1x


def test_difficult_absorbs_and_micro():
    gt = gt_of([("plane", 0, BOX, 1), ("ship", 0, shift(BOX, 30), 0), ("ship", 0, shift(BOX, 60), 0)])
    dets = dets_of([("plane", 0, BOX, 0.9), ("plane", 0, BOX, 0.8), ("ship", 0, shift(BOX, 30), 0.9)])
    r = eval_dota_f1(gt, dets, protocol="dota")
    assert r["classes"] == ["ship"]  # plane has no positives: only difficult objects
    s = r["per_class"]["ship"]
    assert (s["tp"], s["fp"], s["f1"]) == (1, 0, pytest.approx(2 / 3))
    assert r["mF1"] == pytest.approx(2 / 3)
    assert r["micro"]["tp"] == 1 and r["micro"]["num_gt"] == 2
    m = eval_dota_f1(gt, dets, protocol="mmrotate")  # difficult objects are positives here
    assert m["classes"] == ["plane", "ship"]
    assert m["per_class"]["plane"]["tp"] == 1 and m["per_class"]["plane"]["fp"] == 1
    assert m["micro"]["tp"] == 2 and m["micro"]["fp"] == 1 and m["micro"]["num_gt"] == 3
