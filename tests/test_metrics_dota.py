"""DOTA mAP rules on hand-computed cases, file handling, and agreement with plain reference loops."""

import numpy as np
import pytest

from rscovlm.dota.io import DotaFormatError
from rscovlm.eval.dota_data import ClassDets, ClassGT, Detections, GroundTruth, load_gt_dir, load_task1_dir
from rscovlm.eval.dota_map import compute_overlaps, eval_dota, get_protocol, map_from_overlaps
from rscovlm.eval.synthetic_dets import make_detection_set, write_detection_set
from rscovlm.geometry.iou import poly_iou

BOX = [0, 0, 8, 0, 8, 2, 0, 2]  # 8 x 2
HALF = [0, 0, 4, 0, 4, 2, 0, 2]  # IoU with BOX exactly 0.5


def gt_of(objs, n_images=1):
    """objs: list of (class, image, quad, difficult)."""
    classes = {}
    for c in sorted({o[0] for o in objs}):
        sel = [o for o in objs if o[0] == c]
        classes[c] = ClassGT(np.array([o[2] for o in sel], float), np.array([o[1] for o in sel]),
                             np.array([o[3] for o in sel]))
    return GroundTruth([f"img{i}" for i in range(n_images)], classes)


def dets_of(dets):
    """dets: list of (class, image, quad, score)."""
    classes = {}
    for c in sorted({d[0] for d in dets}):
        sel = [d for d in dets if d[0] == c]
        classes[c] = ClassDets(np.array([d[2] for d in sel], float), np.array([d[1] for d in sel]),
                               np.array([d[3] for d in sel], float))
    return Detections(classes)


def ap_of(gt, dets, **kw):
    return eval_dota(gt, dets, **kw)


def test_strict_vs_ge_at_exactly_the_threshold():
    assert poly_iou([HALF], [BOX])[0, 0] == 0.5
    gt = gt_of([("plane", 0, BOX, 0)])
    dets = dets_of([("plane", 0, HALF, 0.9)])
    assert ap_of(gt, dets, protocol="dota", iou_thr=0.5).per_class["plane"].ap == 0.0  # IoU > thr
    assert ap_of(gt, dets, protocol="mmrotate", iou_thr=0.5).per_class["plane"].ap == pytest.approx(1.0)  # >=
    assert ap_of(gt, dets, protocol="dota", iou_thr=0.4999).per_class["plane"].ap == pytest.approx(1.0)


def test_difficult_match_is_ignored_under_dota_and_positive_under_mmrotate():
    other = np.add(BOX, [20, 0] * 4).tolist()
    gt = gt_of([("ship", 0, BOX, 1), ("ship", 0, other, 0)])
    dets = dets_of([("ship", 0, BOX, 0.9), ("ship", 0, other, 0.8)])
    r = ap_of(gt, dets, protocol="dota")
    # the first detection is neither TP nor FP: precision stays 1, one positive
    assert r.per_class["ship"].ap == pytest.approx(1.0) and r.per_class["ship"].num_gt == 1
    m = ap_of(gt, dets, protocol="mmrotate")
    assert m.per_class["ship"].num_gt == 2 and m.per_class["ship"].ap == pytest.approx(1.0)
    # difficult flag 2 (cut by a split window) is difficult too
    gt2 = gt_of([("ship", 0, BOX, 2)])
    assert "ship" not in ap_of(gt2, dets_of([("ship", 0, BOX, 0.9)])).classes


def test_duplicate_is_false_positive():
    b = np.add(BOX, [20, 0] * 4).tolist()
    gt = gt_of([("plane", 0, BOX, 0), ("plane", 0, b, 0)])
    dets = dets_of([("plane", 0, BOX, 0.9), ("plane", 0, BOX, 0.8), ("plane", 0, b, 0.7)])
    r = ap_of(gt, dets)
    # precision 1, .5, .667 at recall .5, .5, 1: 6 thresholds <= .5 see 1, the other 5 see 2/3
    assert r.per_class["plane"].ap == pytest.approx((6 + 5 * 2 / 3) / 11, abs=1e-12)
    assert r.per_class["plane"].num_tp == 2


def test_class_without_gt_is_reported_not_averaged():
    gt = gt_of([("plane", 0, BOX, 0)])
    dets = dets_of([("plane", 0, BOX, 0.9), ("ship", 0, BOX, 0.9)])
    r = ap_of(gt, dets)
    assert r.classes == ["plane"] and r.mAP == pytest.approx(1.0)
    assert r.classes_without_gt == {"ship": 1}
    assert r.to_dict()["classes_without_gt"] == {"ship": {"num_det": 1}}


def test_best_iou_candidate_and_first_gt_on_ties():
    # the detection overlaps two GTs; it goes to the better one even if that one is taken already
    a, b = [0, 0, 4, 0, 4, 4, 0, 4], [0, 0, 4, 0, 4, 3, 0, 3]
    gt = gt_of([("plane", 0, a, 0), ("plane", 0, b, 0)])
    dets = dets_of([("plane", 0, a, 0.9), ("plane", 0, a, 0.8)])
    r = ap_of(gt, dets)  # second detection: best is `a` (taken) -> FP, not re-assigned to `b`
    assert r.per_class["plane"].num_tp == 1


def test_score_ties_stable_and_reference_orders():
    far = np.add(BOX, [50, 50] * 4).tolist()
    gt = gt_of([("plane", 0, BOX, 0)])
    dets = dets_of([("plane", 0, far, 0.5), ("plane", 0, BOX, 0.5)])  # FP then TP, same score
    stable = ap_of(gt, dets, ties="stable").per_class["plane"].ap
    assert stable == pytest.approx(0.5)  # input order: FP first -> precision .5 at recall 1
    flipped = dets_of([("plane", 0, BOX, 0.5), ("plane", 0, far, 0.5)])
    assert ap_of(gt, flipped, ties="stable").per_class["plane"].ap == pytest.approx(1.0)
    # reference: numpy's default argsort of -scores, whatever it does with ties
    order = np.argsort(-np.array([0.5, 0.5]))
    expect = 1.0 if order[0] == 1 else 0.5
    assert ap_of(gt, dets, ties="reference").per_class["plane"].ap == pytest.approx(expect)
    with pytest.raises(ValueError, match="tie order"):
        ap_of(gt, dets, ties="random")


def test_devkit_nan_quirk_zero_area_pair_is_false_positive():
    line = [0, 0, 4, 0, 4, 0, 0, 0]  # zero area
    gt = gt_of([("bridge", 0, BOX, 0), ("bridge", 0, line, 0)])
    dets = dets_of([("bridge", 0, [0, 0, 8, 0, 8, 0, 0, 0], 0.9)])  # zero area, meets `line` -> 0/0
    ov = compute_overlaps(gt, dets, "dota")["bridge"]
    assert np.isnan(ov.ovmax[0])
    assert ap_of(gt, dets).per_class["bridge"].num_tp == 0


def test_mmrotate_drops_thin_boxes_for_gt_and_dets():
    thin = [0, 0, 10, 0, 10, 1.5, 0, 1.5]
    gt = gt_of([("harbor", 0, BOX, 0), ("harbor", 0, np.add(thin, [0, 10] * 4).tolist(), 0)])
    dets = dets_of([("harbor", 0, BOX, 0.9), ("harbor", 0, thin, 0.8)])
    r = ap_of(gt, dets, protocol="mmrotate")
    assert r.per_class["harbor"].num_gt == 1 and r.per_class["harbor"].num_det == 1
    assert r.per_class["harbor"].ap == pytest.approx(1.0)
    assert ap_of(gt, dets, protocol="dota").per_class["harbor"].num_det == 2


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_folders_missing_and_empty_task1_and_unknown_image(tmp_path):
    g = tmp_path / "gt"
    write(g / "a.txt", "imagesource:GoogleEarth\r\ngsd:0.5\r\n0 0 8 0 8 2 0 2 plane 0\r\n0 0 8 0 8 2 0 2 ship 0\r\n")
    write(g / "b.txt", "")
    d = tmp_path / "det"
    write(d / "Task1_plane.txt", "a 0.9 0 0 8 0 8 2 0 2\n")
    write(d / "Task1_harbor.txt", "")  # empty file, class without GT
    r = eval_dota(g, d)
    assert r.classes == ["plane", "ship"]
    assert r.per_class["plane"].ap == pytest.approx(1.0) and r.per_class["ship"].ap == 0.0
    assert r.mAP == pytest.approx(0.5) and r.missing_det_files == ["ship"]
    assert r.classes_without_gt == {"harbor": 0}
    write(d / "Task1_plane.txt", "a 0.9 0 0 8 0 8 2 0 2\nzz 0.8 0 0 8 0 8 2 0 2\n")
    with pytest.raises(DotaFormatError, match=r"Task1_plane.txt:2: image 'zz' has no ground-truth file"):
        eval_dota(g, d)
    r = eval_dota(g, d, unknown_images="ignore")
    assert r.dropped_unknown_image == 1 and r.per_class["plane"].ap == pytest.approx(1.0)


@pytest.mark.parametrize("bad, reason", [
    ("a 0.9 0 0 8 0 8 2 0", "10 fields"),
    ("a 0.9 0 0 8 0 8 2 0 nan", "not a finite number"),
    ("a inf 0 0 8 0 8 2 0 2", "not a finite number"),
    ("a 0.9 0 0 8 0 eight 2 0 2", "not a number"),
])
def test_malformed_task1_lines_name_file_and_line(tmp_path, bad, reason):
    g = tmp_path / "gt"
    write(g / "a.txt", "0 0 8 0 8 2 0 2 plane 0\n")
    d = tmp_path / "det"
    write(d / "Task1_plane.txt", f"a 0.9 0 0 8 0 8 2 0 2\n{bad}\n")
    with pytest.raises(DotaFormatError, match=rf"Task1_plane.txt:2: .*{reason}"):
        eval_dota(g, d)
    r = eval_dota(g, d, skip_invalid=True)
    assert r.skipped_lines == 1 and r.per_class["plane"].ap == pytest.approx(1.0)


@pytest.mark.parametrize("bad", ["0 0 8 0 8 2 0 plane 0", "0 0 8 0 8 2 0 nan plane 0", "0 0 8 0 8 2 0 2 plane x",
                                 "0 0 8 0 8 2 0 inf plane 1"])
def test_malformed_label_lines_name_file_and_line(tmp_path, bad):
    g = tmp_path / "gt"
    write(g / "a.txt", f"gsd:0.3\n0 0 8 0 8 2 0 2 plane 0\n{bad}\n")
    d = tmp_path / "det"
    write(d / "Task1_plane.txt", "a 0.9 0 0 8 0 8 2 0 2\n")
    with pytest.raises(DotaFormatError, match=r"a.txt:3"):
        eval_dota(g, d)
    assert eval_dota(g, d, skip_invalid=True).skipped_lines == 1


def test_fast_readers_equal_the_careful_ones(tmp_path, monkeypatch):
    from rscovlm.dota import io as dota_io
    from rscovlm.eval import dota_data

    ds = make_detection_set(n_images=5, n_gt=120, n_det=300, seed=7)
    write_detection_set(ds, tmp_path / "gt", tmp_path / "det")
    gt = load_gt_dir(tmp_path / "gt")
    dets = load_task1_dir(tmp_path / "det", gt)
    monkeypatch.setattr(dota_data, "_load_gt_fast", lambda paths: None)
    monkeypatch.setattr(dota_data, "_read_task1_fast", lambda path: None)
    gt2 = load_gt_dir(tmp_path / "gt")
    dets2 = load_task1_dir(tmp_path / "det", gt2)
    for c in ds.gt.classes:
        for a, b in zip((gt.classes[c].quads, gt.classes[c].image, gt.classes[c].difficult),
                        (gt2.classes[c].quads, gt2.classes[c].image, gt2.classes[c].difficult)):
            assert np.array_equal(a, b)
        assert np.array_equal(gt.classes[c].quads, ds.gt.classes[c].quads)
    for c in ds.dets.classes:
        assert np.array_equal(dets.classes[c].quads, dets2.classes[c].quads)
        assert np.array_equal(dets.classes[c].scores, dets2.classes[c].scores)
        assert np.array_equal(dets.classes[c].image, dets2.classes[c].image)
    assert dota_io  # the careful path is dota_io's reader


# ---- plain reference loops (the devkit's voc_eval and MMRotate's tpfp_default, written out) -----------------

def ref_voc_eval(gt, dets, cls, thr, mode):
    g, d = gt.get(cls), dets.get(cls)
    npos = int((g.difficult == 0).sum())
    order = np.argsort(-d.scores)
    taken = np.zeros(len(g.quads), bool)
    tp, fp = np.zeros(len(order)), np.zeros(len(order))
    for k, i in enumerate(order):
        cand = [j for j in np.flatnonzero(g.image == d.image[i])
                if min(g.quads[j, 0::2].max(), d.quads[i, 0::2].max()) - max(g.quads[j, 0::2].min(),
                                                                            d.quads[i, 0::2].min()) + 1 > 0
                and min(g.quads[j, 1::2].max(), d.quads[i, 1::2].max()) - max(g.quads[j, 1::2].min(),
                                                                            d.quads[i, 1::2].min()) + 1 > 0]
        best, jb = -np.inf, -1
        if cand:
            ious = poly_iou(d.quads[i:i + 1], g.quads[cand])[0]
            best, jb = ious.max(), cand[int(np.argmax(ious))]
        if best > thr:
            if g.difficult[jb] == 0:
                if not taken[jb]:
                    tp[k], taken[jb] = 1, True
                else:
                    fp[k] = 1
        else:
            fp[k] = 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec, prec = tp / npos, tp / np.maximum(tp + fp, np.finfo(float).eps)
    if mode == "11point":
        return sum((prec[rec >= t].max() if (rec >= t).any() else 0) / 11 for t in np.arange(0, 1.1, 0.1))
    mrec, mpre = np.r_[0, rec, 1], np.r_[0, prec, 0]
    for i in range(len(mpre) - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


@pytest.mark.parametrize("thr, mode", [(0.5, "11point"), (0.7, "area")])
def test_agrees_with_plain_devkit_loop(thr, mode):
    ds = make_detection_set(n_images=6, n_gt=150, n_det=450, seed=11, invalid_rate=0.1)
    r = eval_dota(ds.gt, ds.dets, iou_thr=thr, ap_mode=mode)
    for c in r.classes:
        assert r.per_class[c].ap == pytest.approx(ref_voc_eval(ds.gt, ds.dets, c, thr, mode), abs=1e-12)


def test_mmrotate_protocol_agrees_with_plain_loop():
    ds = make_detection_set(n_images=6, n_gt=150, n_det=450, seed=12)
    proto = get_protocol("mmrotate")
    r = eval_dota(ds.gt, ds.dets, protocol="mmrotate", ties="stable")
    for c in r.classes:
        g, d = ds.gt.get(c), ds.dets.get(c)
        gq, gk = proto.prepare(g.quads)
        dq, dk = proto.prepare(d.quads)
        gi, di, ds_ = g.image[gk], d.image[dk], d.scores[dk]
        tp, fp = np.zeros(len(dk)), np.zeros(len(dk))
        for im in np.unique(di):
            idx = np.flatnonzero(di == im)
            gidx = np.flatnonzero(gi == im)
            if not len(gidx):
                fp[idx] = 1
                continue
            ious = poly_iou(dq[idx], gq[gidx])
            covered = np.zeros(len(gidx), bool)
            for k in idx[np.argsort(-ds_[idx], kind="stable")]:
                row = ious[list(idx).index(k)]
                if row.max() >= 0.5:
                    j = int(np.argmax(row))
                    if not covered[j]:
                        covered[j], tp[k] = True, 1
                    else:
                        fp[k] = 1
                else:
                    fp[k] = 1
        o = np.argsort(-ds_, kind="stable")
        tpc, fpc = np.cumsum(tp[o]), np.cumsum(fp[o])
        rec = tpc / len(gk)
        prec = (tpc.astype(np.float32) / np.maximum((tpc + fpc).astype(np.float32), np.finfo(np.float32).eps))
        ap = np.float32(0)
        for t in np.arange(0, 1 + 1e-3, 0.1):
            p = prec[rec >= t]
            ap += p.max() if p.size else np.float32(0)
        assert r.per_class[c].ap == pytest.approx(float(ap / np.float32(11)), abs=1e-7)
        assert r.per_class[c].num_gt == len(gk)


def test_overlaps_are_reusable_across_thresholds():
    ds = make_detection_set(n_images=4, n_gt=80, n_det=200, seed=13)
    ov = compute_overlaps(ds.gt, ds.dets)
    for thr in (0.3, 0.5, 0.75):
        assert map_from_overlaps(ov, thr).mAP == pytest.approx(eval_dota(ds.gt, ds.dets, iou_thr=thr).mAP)


def test_same_numbers_without_compiled_kernels_numba_and_opencv(monkeypatch):
    import sys

    ds = make_detection_set(n_images=4, n_gt=100, n_det=300, seed=14, invalid_rate=0.0)
    ref = {p: eval_dota(ds.gt, ds.dets, protocol=p).to_dict()["per_class"] for p in ("dota", "mmrotate")}
    monkeypatch.setenv("RSCOVLM_NO_NUMBA", "1")
    monkeypatch.setenv("RSCOVLM_NO_NATIVE", "1")
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 -> ImportError: min-area rects from our geometry
    for p in ("dota", "mmrotate"):
        got = eval_dota(ds.gt, ds.dets, protocol=p).to_dict()["per_class"]
        for c in ref[p]:
            assert got[c]["ap"] == pytest.approx(ref[p][c]["ap"], abs=1e-6)
            assert got[c]["num_det"] == ref[p][c]["num_det"]


@pytest.mark.parametrize("brk", ["\r", "\x0b", "\x0c"])
def test_line_breaks_inside_a_line_are_errors_on_the_fast_path_too(tmp_path, brk):
    # str.splitlines() (the careful reader) breaks lines at these; the byte-level fast path used to read them as
    # spaces and accept the line whole, so the same file was valid or not depending on the path taken
    (tmp_path / "gt").mkdir()
    (tmp_path / "det").mkdir()
    (tmp_path / "gt" / "img0.txt").write_bytes(f"0 0 8 0 8 2 0 2 plane 0\r\n0 0 8 0 8 2{brk} 0 2 ship 0\n".encode())
    (tmp_path / "det" / "Task1_plane.txt").write_bytes(b"img0 0.9 0 0 8 0 8 2 0 2\n")
    with pytest.raises(DotaFormatError, match=r"img0.txt:2:"):
        eval_dota(tmp_path / "gt", tmp_path / "det")
    (tmp_path / "gt" / "img0.txt").write_bytes(b"0 0 8 0 8 2 0 2 plane 0\r\n")
    (tmp_path / "det" / "Task1_plane.txt").write_bytes(f"img0 0.9 0 0 8 0 8 2 0 2\r\nimg0 0.8 0 0{brk} 8 0 8 2 0 2\n"
                                                       .encode())
    with pytest.raises(DotaFormatError, match=r"Task1_plane.txt:2:"):
        eval_dota(tmp_path / "gt", tmp_path / "det")


@pytest.mark.parametrize("protocol", ["dota", "mmrotate1x", "mmrotate"])
def test_compiled_overlaps_equal_the_numpy_path_bit_for_bit(monkeypatch, protocol):
    """Candidate pairs, IoUs (0/0 = NaN included), best matches: the compiled class_overlaps and the numpy path
    give the same arrays, on a dense set with ~10% degenerate and self-intersecting quads."""
    from rscovlm.eval.dota_map import native

    if native() is None:
        pytest.skip("compiled kernels not built")
    ds = make_detection_set(n_images=40, n_gt=3000, n_det=9000, seed=3, invalid_rate=0.1, image_size=300.0)
    got = compute_overlaps(ds.gt, ds.dets, protocol)
    monkeypatch.setenv("RSCOVLM_NO_NATIVE", "1")
    want = compute_overlaps(ds.gt, ds.dets, protocol)
    fields = ("pair_det", "pair_gt", "pair_iou", "ovmax", "jmax", "gt_ignore", "det_index")
    for c in want:
        for f in fields:
            assert np.array_equal(getattr(got[c], f), getattr(want[c], f), equal_nan=True), (c, f)
    assert sum(len(o.pair_det) for o in want.values()) > 10_000
    if protocol == "dota":
        assert any(np.isnan(o.ovmax).any() for o in want.values())  # the devkit's 0/0 case is exercised
