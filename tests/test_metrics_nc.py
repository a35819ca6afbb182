"""AP_nc: randomization per seed, score thresholds, the vectorized sweep vs a plain loop, and the sweep/plot."""

import numpy as np
import pytest

from rscovlm.eval.ap_nc import ap_nc_table, class_uniform_scores, eval_dota_nc, parse_iou_spec
from rscovlm.eval.dota_data import ClassDets, Detections
from rscovlm.eval.dota_map import ap_from_matches, compute_overlaps, match_ranked
from rscovlm.eval.sweep import eval_dota_sweep, sweep_curve
from rscovlm.eval.synthetic_dets import make_detection_set


def _grid_as_before(ov, cls, seeds, iou_thrs, score_thrs, ap_mode):
    """The (T, n)-array implementation of ap_nc_grid before the one-pass curves: the numbers to keep, bit for bit."""
    from rscovlm.eval.ap import average_precision
    from rscovlm.eval.ap_nc import _blockers, _levels

    score_thrs = np.asarray(score_thrs, dtype=np.float64)
    n = ov.num_det
    out = np.zeros((len(score_thrs), len(seeds), len(iou_thrs)))
    if n == 0:
        return out
    level, first_kept = _levels(ov.scores, n, score_thrs)
    n_levels = int(level.max()) + 1
    ignore = ov.gt_ignore[np.maximum(ov.jmax, 0)] if ov.num_gt else np.zeros(n, bool)
    kept = level[None, :] >= first_kept[:, None]
    for s, seed in enumerate(seeds):
        perm = np.argsort(-class_uniform_scores(cls, seed, n), kind="stable")
        lv, jm, ovs, ign_all = level[perm], ov.jmax[perm], ov.ovmax[perm], ignore[perm]
        kept_p = kept[:, perm]
        for i, thr in enumerate(iou_thrs):
            q = ov.protocol.qualifies(ovs, thr)
            ign = q & ign_all
            cand = q & ~ign
            blk = _blockers(cand, jm, lv, n_levels)
            tp = kept_p & cand[None, :] & (blk[None, :] < first_kept[:, None])
            fp = kept_p & ~ign[None, :] & ~tp
            out[:, s, i] = average_precision(np.cumsum(tp, axis=1), np.cumsum(fp, axis=1), ov.num_pos, ap_mode,
                                             ov.protocol.dtype)
    return out


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("protocol, ap_mode", [("dota", "11point"), ("dota", "area"), ("mmrotate1x", "11point"),
                                                ("mmrotate1x", "area"), ("mmrotate", "11point")])
def test_one_pass_curves_give_the_same_bits_as_before(monkeypatch, compiled, protocol, ap_mode):
    """The sweep's AP (one pass over each random ranking for all score thresholds; compiled or numpy) equals the
    previous (T, n)-array computation exactly: 11-point from the TP points, area with numpy's pairwise sum."""
    from rscovlm.eval.ap_nc import DEFAULT_SCORE_THRS, ap_nc_grid, native

    if compiled and native() is None:
        pytest.skip("compiled kernels not built")
    if not compiled:
        monkeypatch.setenv("RSCOVLM_NO_NATIVE", "1")
    ds = make_detection_set(n_images=12, n_gt=900, n_det=4000, seed=8, score_decimals=2, invalid_rate=0.05)
    ov = compute_overlaps(ds.gt, ds.dets, protocol)
    iou_thrs = [0.0, 0.3, 0.5, 0.55, 0.75, 0.95]
    checked = 0
    for c, o in ov.items():
        if o.num_pos == 0:
            continue
        got = ap_nc_grid(o, c, [0, 3], iou_thrs, DEFAULT_SCORE_THRS, ap_mode)
        want = _grid_as_before(o, c, [0, 3], iou_thrs, DEFAULT_SCORE_THRS, ap_mode)
        assert np.array_equal(got, want), c
        checked += int((want > 0).sum())
    assert checked > 500


@pytest.fixture(scope="module")
def data():
    return make_detection_set(n_images=6, n_gt=200, n_det=700, seed=21, score_decimals=2)


def test_parse_iou_spec():
    spec = parse_iou_spec("0.5,0.75,0.5:0.95")
    assert list(spec) == ["AP_nc50", "AP_nc75", "AP_nc50:95"]
    assert spec["AP_nc50:95"] == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    assert parse_iou_spec("0.3:0.5:0.1")["AP_nc30:50"] == [0.3, 0.4, 0.5]
    for bad in ("x", "0.9:0.5", "1.5", "", "0.1:0.2:0.3:0.4"):
        with pytest.raises(ValueError):
            parse_iou_spec(bad)


@pytest.mark.parametrize("protocol", ["dota", "mmrotate"])
def test_vectorized_grid_equals_plain_loop(data, protocol):
    ov = compute_overlaps(data.gt, data.dets, protocol)
    thrs = [0.0, 0.3, 0.6, 0.95]
    tab = ap_nc_table(ov, score_thrs=thrs, seeds=[0, 5], iou_spec="0.5,0.8", ap_mode="area")
    for ci, c in enumerate(tab.classes):
        o = ov[c]
        for ti, t in enumerate(thrs):
            for si, seed in enumerate(tab.seeds):
                u = class_uniform_scores(c, seed, o.num_det)
                keep = np.flatnonzero(o.scores >= t)
                order = keep[np.argsort(-u[keep], kind="stable")]
                for ii, it in enumerate(tab.iou_thrs):
                    tp, fp = match_ranked(o, order, it)
                    ap = ap_from_matches(tp, fp, o.num_pos, "area", o.protocol.dtype) if len(order) else 0.0
                    assert tab.ap[ti, si, ii, ci] == pytest.approx(ap, abs=1e-12)


def test_reproducible_and_seed_dependent(data):
    a = eval_dota_nc(data.gt, data.dets, seeds=3)
    b = eval_dota_nc(data.gt, data.dets, seeds=3)
    assert a == b
    per_seed = a["metrics"]["AP_nc50"]["per_seed"]
    assert len(set(per_seed)) > 1
    assert a["metrics"]["AP_nc50"]["mean"] == pytest.approx(np.mean(per_seed))
    assert a["metrics"]["AP_nc50"]["std"] == pytest.approx(np.std(per_seed))
    # a class's randomization does not depend on the other classes
    only = Detections({"plane": data.dets.classes["plane"]})
    c = eval_dota_nc(data.gt, only, seeds=3)
    assert c["per_class"]["plane"] == a["per_class"]["plane"]
    # AP_nc50:95 is the mean over the 10 IoU thresholds
    assert a["metrics"]["AP_nc50:95"]["mean"] <= a["metrics"]["AP_nc50"]["mean"]


def test_threshold_drops_low_scores_and_scorefree_output(data):
    hi = eval_dota_nc(data.gt, data.dets, score_thr=0.99, seeds=2)
    assert all(v == 0.0 for v in hi["metrics"]["AP_nc50"]["per_seed"]) or \
        max(np.max(d.scores) for d in data.dets.classes.values()) >= 0.99
    free = Detections({c: ClassDets(d.quads, d.image, None) for c, d in data.dets.classes.items()})
    f0 = eval_dota_nc(data.gt, free, seeds=2)
    f9 = eval_dota_nc(data.gt, free, score_thr=0.9, seeds=2)  # no scores: nothing to drop
    assert f0["metrics"] == f9["metrics"]
    with_scores = eval_dota_nc(data.gt, data.dets, seeds=2)  # threshold 0 keeps all: same randomization
    assert with_scores["metrics"] == f0["metrics"]


def test_sweep_picks_best_threshold_and_plots(data, tmp_path):
    curve = sweep_curve(data.gt, data.dets, seeds=2, thresholds=[0.0, 0.4, 0.8], iou_thrs="0.5")
    best = curve.thresholds[int(np.argmax(curve.mean["AP_nc50"]))]
    assert curve.best_threshold == best and len(curve.std["AP_nc50"]) == 3
    worse = make_detection_set(n_images=6, n_gt=200, n_det=700, seed=22)
    out = eval_dota_sweep(data.gt, {"a": data.dets, "b": worse.dets}, data.gt, {"a": data.dets, "b": worse.dets},
                          seeds=2, thresholds=[0.0, 0.4, 0.8], iou_thrs="0.5,0.75", plot=str(tmp_path / "s.png"))
    a = out["detectors"]["a"]
    assert a["test"]["score_thr"] == a["val"]["best_threshold"]
    i = a["val"]["thresholds"].index(a["val"]["best_threshold"])
    assert a["test"]["metrics"]["AP_nc50"]["mean"] == pytest.approx(a["val"]["mean"]["AP_nc50"][i])
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="selection metric"):
        sweep_curve(data.gt, data.dets, seeds=1, iou_thrs="0.5", select="AP_nc75")
