"""Argument and input checks of the metric functions: NaN or out-of-range thresholds are errors naming the
argument, not a silent score of 0; an empty label folder is an error; the sweep passes ``unknown_images``."""

import math

import pytest

from rscovlm.eval.ap_nc import eval_dota_nc, parse_iou_spec
from rscovlm.eval.dota_map import eval_dota
from rscovlm.eval.f1 import eval_dota_f1
from rscovlm.eval.sweep import eval_dota_sweep

from test_metrics_dota import BOX, dets_of, gt_of

GT = gt_of([("plane", 0, BOX, 0)])
DETS = dets_of([("plane", 0, BOX, 0.9)])


@pytest.mark.parametrize("bad", [math.nan, -0.1, 1.5, math.inf])
def test_iou_thr_must_be_a_number_in_0_1(bad):
    for fn in (eval_dota, eval_dota_f1):
        with pytest.raises(ValueError, match="iou_thr"):
            fn(GT, DETS, iou_thr=bad)


def test_score_thr_nan_is_an_error():
    with pytest.raises(ValueError, match="score_thr"):
        eval_dota_nc(GT, DETS, score_thr=math.nan, seeds=1)
    with pytest.raises(ValueError, match="score_thr"):
        eval_dota_f1(GT, DETS, score_thr=math.nan)
    assert eval_dota_nc(GT, DETS, score_thr=0.5, seeds=1)["metrics"]["AP_nc50"]["mean"] == pytest.approx(1.0)


@pytest.mark.parametrize("bad", ["nan", "0.5,nan", "nan:0.9", "0.5:inf", "0.5:0.9:nan"])
def test_iou_spec_rejects_non_finite_values(bad):
    with pytest.raises(ValueError, match="IoU"):
        parse_iou_spec(bad)


def test_sweep_passes_unknown_images(tmp_path):
    gt = tmp_path / "gt"
    gt.mkdir()
    (gt / "img0.txt").write_text("0 0 8 0 8 2 0 2 plane 0\n")
    det = tmp_path / "det"
    det.mkdir()
    (det / "Task1_plane.txt").write_text("img0 0.9 0 0 8 0 8 2 0 2\nother 0.8 0 0 8 0 8 2 0 2\n")
    with pytest.raises(ValueError, match="other"):
        eval_dota_sweep(gt, {"a": det}, thresholds=[0.0], seeds=1, iou_thrs="0.5")
    out = eval_dota_sweep(gt, {"a": det}, gt, {"a": det}, thresholds=[0.0], seeds=1, iou_thrs="0.5",
                          unknown_images="ignore")
    assert out["detectors"]["a"]["val"]["mean"]["AP_nc50"] == [pytest.approx(1.0)]
    assert out["detectors"]["a"]["test"]["dropped_unknown_image"] == 1
    assert out["detectors"]["a"]["val"]["dropped_unknown_image"] == 1  # what was left out of val is reported too
    (det / "Task1_plane.txt").write_text("img0 0.9 0 0 8 0 8 2 0 2\nimg0 0.8 0 0 8 0 8 2 0\n")
    out = eval_dota_sweep(gt, {"a": det}, thresholds=[0.0], seeds=1, iou_thrs="0.5", skip_invalid=True)
    assert out["detectors"]["a"]["val"]["skipped_lines"] == 1


def test_label_folder_without_label_files_is_an_error(tmp_path):
    (tmp_path / "gt").mkdir()
    (tmp_path / "det").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no .txt label files"):
        eval_dota(tmp_path / "gt", tmp_path / "det")
