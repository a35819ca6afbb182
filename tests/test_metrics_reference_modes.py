"""The reference's evaluation conventions: protocol mmrotate1x (MMRotate 1.x DOTAMetric), score modes ones /
random / random-per-image (RSCoVLM's all-ones scores, AP_nc, LMMRotate's per-image draws), LMMRotate's mF1, and
`eval responses` on reference-format answers. Hand-computed cases; the parity with the reference code itself is
benchmarks/parity_reference_metrics.py (needs the external checkouts)."""

import json

import numpy as np
import pytest

from rscovlm.cli import main
from rscovlm.eval.ap_nc import LMMROTATE_SEEDS, ap_nc_table, eval_dota_nc, resolve_seeds, torch_rand
from rscovlm.eval.dota_data import ClassDets, Detections
from rscovlm.eval.dota_map import compute_overlaps, eval_dota
from rscovlm.eval.f1 import eval_dota_f1, lmmrotate_f1
from rscovlm.eval.responses import ResponseFormatError, eval_responses
from rscovlm.geometry import Boxes, ObjectSet
from rscovlm.protocol import write_detections
from rscovlm.resolution import ResizePlan

from test_metrics_dota import BOX, HALF, dets_of, gt_of

THIN = [0, 0, 10, 0, 10, 1.5, 0, 1.5]  # 10 x 1.5: a side under 2 px


def shift(q, dx, dy=0):
    return np.add(q, [dx, dy] * 4).tolist()


def ap11(points) -> float:
    """mmdet's '11points' AP of the best precision at each of the 11 thresholds (float32, summed in order)."""
    ap = np.zeros(1, np.float32)
    for p in points:
        ap += np.float32(p)
    return float((ap / 11)[0])


TWO_THIRDS = np.float32(2) / np.float32(3)


# ---- mmrotate1x -------------------------------------------------------------------------------------------------

def test_mmrotate1x_takes_iou_equal_to_the_threshold():
    gt = gt_of([("plane", 0, BOX, 0)])
    dets = dets_of([("plane", 0, HALF, 0.9)])  # IoU exactly 0.5
    assert eval_dota(gt, dets, protocol="mmrotate1x").per_class["plane"].ap == pytest.approx(1.0)  # >=
    assert eval_dota(gt, dets, protocol="dota").per_class["plane"].ap == 0.0  # devkit: >
    assert eval_dota(gt, dets, protocol="mmrotate1x", iou_thr=0.5001).per_class["plane"].ap == 0.0


def test_mmrotate1x_counts_difficult_and_window_cut_objects_as_positives():
    far = shift(BOX, 30)
    gt = gt_of([("ship", 0, BOX, 1), ("ship", 0, far, 2), ("ship", 0, shift(BOX, 60), 0)])
    dets = dets_of([("ship", 0, BOX, 0.9), ("ship", 0, far, 0.8)])
    r = eval_dota(gt, dets, protocol="mmrotate1x").per_class["ship"]
    assert (r.num_gt, r.num_tp) == (3, 2)  # both difficult objects are positives and matched
    # precision 1, 1 at recall 1/3, 2/3: 11-point AP = 7 thresholds (0 .. 0.6000000000000001) of 1 / 11
    assert r.ap == ap11([1] * 7)
    d = eval_dota(gt, dets, protocol="dota").per_class["ship"]
    assert (d.num_gt, d.num_tp) == (1, 0)  # devkit: difficult ignored, one positive left unmatched


def test_mmrotate1x_keeps_boxes_thinner_than_2_px():
    gt = gt_of([("bridge", 0, THIN, 0)])
    dets = dets_of([("bridge", 0, THIN, 0.9)])
    assert eval_dota(gt, dets, protocol="mmrotate1x").per_class["bridge"].ap == pytest.approx(1.0)
    assert "bridge" not in eval_dota(gt, dets, protocol="mmrotate").classes  # 0.x: both dropped, no positives
    # a thin false positive ranked first costs AP in 1.x; the 0.x loader drops it
    gt2 = gt_of([("bridge", 0, BOX, 0)])
    d2 = dets_of([("bridge", 0, shift(THIN, 50), 0.95), ("bridge", 0, BOX, 0.9)])
    r = eval_dota(gt2, d2, protocol="mmrotate1x")
    assert r.per_class["bridge"].num_det == 2 and r.per_class["bridge"].ap == pytest.approx(0.5)
    r0 = eval_dota(gt2, d2, protocol="mmrotate")
    assert r0.per_class["bridge"].num_det == 1 and r0.per_class["bridge"].ap == pytest.approx(1.0)


def test_mmrotate1x_11_point_ap_and_float32_mean():
    gt = gt_of([("plane", 0, BOX, 0), ("plane", 0, shift(BOX, 20), 0), ("ship", 0, shift(BOX, 40), 0)])
    dets = dets_of([("plane", 0, BOX, 0.9), ("plane", 0, shift(BOX, 100), 0.8), ("plane", 0, shift(BOX, 20), 0.7),
                    ("ship", 0, shift(BOX, 40), 0.5)])
    r = eval_dota(gt, dets, protocol="mmrotate1x")
    # plane: precision 1, .5, .667 at recall .5, .5, 1: six thresholds up to 0.5 see 1, five see 2/3
    assert r.per_class["plane"].ap == ap11([1] * 6 + [TWO_THIRDS] * 5)
    assert r.mAP == float(np.float32([r.per_class["plane"].ap, 1.0]).mean())
    assert r.per_class["plane"].ap != pytest.approx(eval_dota(gt, dets, protocol="mmrotate1x",
                                                               ap_mode="area").per_class["plane"].ap)


# ---- score modes --------------------------------------------------------------------------------------------------

def _two_images():
    gt = gt_of([("plane", 0, BOX, 0), ("plane", 1, BOX, 0)], n_images=2)
    return gt


def test_ones_ranks_by_input_order_and_random_does_not_care():
    gt = gt_of([("plane", 0, BOX, 0)])
    far = shift(BOX, 50)
    fp_first = Detections({"plane": ClassDets(np.array([far, BOX], float), np.zeros(2, np.int64), None)})
    tp_first = Detections({"plane": ClassDets(np.array([BOX, far], float), np.zeros(2, np.int64), None)})
    a = eval_dota_nc(gt, fp_first, score_mode="ones", iou_thrs="0.5")
    b = eval_dota_nc(gt, tp_first, score_mode="ones", iou_thrs="0.5")
    assert list(a["metrics"]) == ["AP50"] and a["seeds"] is None and a["metrics"]["AP50"]["std"] == 0.0
    assert a["metrics"]["AP50"]["mean"] == pytest.approx(0.5)  # FP ranked first: precision .5 at recall 1
    assert b["metrics"]["AP50"]["mean"] == pytest.approx(1.0)
    ra = eval_dota_nc(gt, fp_first, seeds=20, iou_thrs="0.5")["metrics"]["AP_nc50"]
    assert 0.5 < ra["mean"] < 1.0 and ra["std"] > 0  # random scores: either order, per seed
    assert len(ra["per_seed"]) == 20
    # numpy's argsort returns the identity for all-equal keys on this numpy: reference == stable here
    if (np.argsort(-np.ones(100, np.float32)) == np.arange(100)).all():
        assert eval_dota_nc(gt, fp_first, score_mode="ones", ties="reference", iou_thrs="0.5")["metrics"] == \
            a["metrics"]


def test_ones_and_per_image_modes_keep_scores_above_the_threshold_strictly():
    gt = gt_of([("plane", 0, BOX, 0)])
    dets = dets_of([("plane", 0, BOX, 0.5)])
    assert eval_dota_nc(gt, dets, score_mode="ones", score_thr=0.5, iou_thrs="0.5")["metrics"]["AP50"]["mean"] == 0
    assert eval_dota_nc(gt, dets, score_mode="ones", score_thr=0.49, iou_thrs="0.5")["metrics"]["AP50"]["mean"] == 1
    rnd = eval_dota_nc(gt, dets, score_mode="random", score_thr=0.5, seeds=2, iou_thrs="0.5")  # score >= t kept
    assert rnd["metrics"]["AP_nc50"]["mean"] == pytest.approx(1.0)
    per_image = eval_dota_nc(gt, dets, score_mode="random-per-image", score_thr=0.5, seeds=[1], iou_thrs="0.5")
    assert per_image["metrics"]["AP_nc50"]["mean"] == 0.0


def test_seed_lists_and_defaults():
    assert resolve_seeds("random") == list(range(10))
    assert resolve_seeds("random", 3) == [0, 1, 2]
    assert resolve_seeds("random", [42, 7]) == [42, 7]
    assert resolve_seeds("random-per-image") == list(LMMROTATE_SEEDS)
    assert resolve_seeds("ones", 5) is None
    for bad in (0, [], [-1], ["a"]):
        with pytest.raises(ValueError):
            resolve_seeds("random", bad)
    with pytest.raises(ValueError, match="score mode"):
        resolve_seeds("dice")


def test_torch_rand_equals_torch():
    torch = pytest.importorskip("torch")
    for seed in (0, 42, 666666, 2 ** 33 + 5):
        for n in (1, 16, 33):
            torch.manual_seed(seed)
            assert np.array_equal(torch.rand(n).numpy(), torch_rand(seed, n))


def test_lmmrotate_report_statistics_include_its_own_max_min_and_mean():
    from rscovlm.eval.ap_nc import lmmrotate_report

    m, s = lmmrotate_report([0.2, 0.4])  # map_nc_robustness_cal: mean/std of 0.2, 0.4, max 0.4, min 0.2, mean 0.3
    assert m == pytest.approx(0.3) and s == pytest.approx(np.std([0.2, 0.4, 0.4, 0.2, 0.3]))
    assert s != pytest.approx(np.std([0.2, 0.4]))
    gt = gt_of([("plane", 0, BOX, 0)])
    r = eval_dota_nc(gt, dets_of([("plane", 0, BOX, 0.9), ("plane", 0, BOX, 0.8)]), score_mode="random-per-image",
                     iou_thrs="0.5")["metrics"]["AP_nc50"]
    assert (r["lmmrotate_mean"], r["lmmrotate_std"]) == lmmrotate_report(r["per_seed"])
    assert "lmmrotate_mean" not in eval_dota_nc(gt, dets_of([("plane", 0, BOX, 0.9)]), seeds=2)["metrics"]["AP_nc50"]


def test_per_image_draws_restart_for_every_image_in_answer_order():
    """LMMRotate re-seeds per image: the k-th kept detection of every image gets the k-th number of the seed."""
    far = shift(BOX, 50)
    gt = _two_images()
    # image 0 answers [TP, FP], image 1 answers [FP, TP]; orders are answer positions
    dets = Detections({"plane": ClassDets(np.array([BOX, far, far, BOX], float), np.array([0, 0, 1, 1]), None,
                                          np.array([0, 1, 0, 1]))})
    ov = compute_overlaps(gt, dets, "mmrotate1x")
    for seed in (0, 42, 9968):
        u = torch_rand(seed, 2).astype(np.float64)
        scored = Detections({"plane": ClassDets(dets.classes["plane"].quads, dets.classes["plane"].image,
                                                np.array([u[0], u[1], u[0], u[1]]))})
        expect = eval_dota(gt, scored, protocol="mmrotate1x", ties="stable").per_class["plane"].ap
        tab = ap_nc_table(ov, score_mode="random-per-image", seeds=[seed], iou_spec="0.5",
                          positions={"plane": dets.classes["plane"].order})
        assert tab.ap[0, 0, 0, 0] == pytest.approx(expect)


# ---- LMMRotate's mF1 ---------------------------------------------------------------------------------------------

def test_lmmrotate_f1_confusion_matrix_by_hand():
    far = shift(BOX, 60)
    gt = gt_of([("plane", 0, BOX, 0), ("ship", 0, shift(BOX, 30), 0)])
    dets = dets_of([("plane", 0, BOX, 0.9), ("plane", 0, BOX, 0.8),  # a hit and its duplicate
                    ("ship", 0, BOX, 0.7),  # wrong class on the plane
                    ("plane", 0, far, 0.6)])  # overlaps nothing: background
    r = lmmrotate_f1(gt, dets, ["plane", "ship"])
    # rows: ground truth plane, ship, background; columns: detections plane, ship, background
    assert r["confusion_matrix"] == [[2, 1, 0], [0, 0, 1], [1, 0, 0]]
    assert r["num_classes"] == 2 and r["labels"] == ["plane", "ship", "background"]
    assert r["precision"] == pytest.approx(2 / 9) and r["recall"] == pytest.approx(2 / 9)  # means over C + 1 = 3
    assert r["mF1"] == pytest.approx(2 / 9)
    one = eval_dota_f1(gt, dets, f1_mode="one-to-one", categories="plane,ship")
    assert one["mF1"] == pytest.approx((0.5 + 0.0) / 2)  # plane P 1/3 R 1; ship 0


def test_lmmrotate_f1_counts_every_overlapping_object_and_divides_by_c_plus_1():
    gt = gt_of([("plane", 0, BOX, 0), ("plane", 0, BOX, 0)])  # two objects in the same place
    dets = dets_of([("plane", 0, BOX, 0.9)])
    r = lmmrotate_f1(gt, dets, ["plane"])
    assert r["confusion_matrix"] == [[2, 0], [0, 0]]  # one detection, counted twice
    assert r["precision"] == pytest.approx(0.5) and r["mF1"] == pytest.approx(0.5)  # background entry is 0
    # a perfect one-to-one answer scores below 1 (the background entry) and the score threshold is >=
    assert lmmrotate_f1(gt, dets, ["plane"], score_thr=0.9)["mF1"] == pytest.approx(0.5)
    assert lmmrotate_f1(gt, dets, ["plane"], score_thr=0.91)["confusion_matrix"] == [[0, 2], [0, 0]]


def test_lmmrotate_f1_quirks_are_explicit():
    gt = gt_of([("plane", 0, BOX, 0)])
    with pytest.raises(ValueError, match="IndexError"):  # label 2 > C = 1: the reference crashes
        lmmrotate_f1(gt, dets_of([("ship", 0, BOX, 0.9)]), ["plane", "bridge", "ship"])
    # label C = 1 is the background column: the hit counts there, and the plane, reached by no plane, once more
    r = lmmrotate_f1(gt, dets_of([("bridge", 0, BOX, 0.9)]), ["plane", "bridge"])
    assert r["confusion_matrix"] == [[0, 2], [0, 0]]
    miss = lmmrotate_f1(gt, dets_of([("plane", 0, shift(BOX, 50), 0.9)]), ["plane"])
    assert miss["mF1"] == 0.0 and miss["nan"]  # P + R = 0: NaN in the reference
    with pytest.raises(ValueError, match="outside the label list"):
        lmmrotate_f1(gt, dets_of([("car", 0, BOX, 0.9)]), ["plane"])


# ---- eval responses ---------------------------------------------------------------------------------------------

PLAN = {"original": [1000, 800], "model": [812, 644]}


def _gt_dir(tmp_path):
    g = tmp_path / "gt"
    g.mkdir()
    (g / "A.txt").write_text("100 100 300 100 300 200 100 200 plane 0\n500 500 540 500 540 520 500 520 "
                             "small-vehicle 2\n")
    (g / "B.txt").write_text("10 10 90 10 90 60 10 60 ship 1\n")
    return g


def _answer(quads, labels, form, kind):
    plan = ResizePlan.from_dict(PLAN)
    objs = ObjectSet(Boxes(np.asarray(quads, float), "quad", plan.original), labels)
    return write_detections(objs, form, kind=kind, frame=plan.model)


def _write(path, lines):
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


@pytest.mark.parametrize("kind", ["quad", "hbb", "obb"])
@pytest.mark.parametrize("form", ["plain", "json"])
def test_reference_answers_score_with_nothing_unparsed(tmp_path, form, kind):
    g = _gt_dir(tmp_path)
    a = _answer([[100, 100, 300, 100, 300, 200, 100, 200], [500, 500, 540, 500, 540, 520, 500, 520]],
                ["plane", "small-vehicle"], form, kind)
    b = _answer([[10, 10, 90, 10, 90, 60, 10, 60]], ["ship"], form, kind)
    path = _write(tmp_path / "r.jsonl", [{"image_id": "A", "response": a, "resize": PLAN},
                                         {"image_id": "B", "response": b, "resize": PLAN}])
    r = eval_responses(path, g, seeds=2)
    p = r["parsing"]
    assert p["unparsed_fraction"] == 0.0 and p["n_fragments"] == 3
    expect_form = "bbox_2d-json" if (form, kind) == ("json", "hbb") else f"reference-{form}"
    assert p["forms"] == {expect_form: 2} and p["object_forms"] == {expect_form: 3}
    # axis-aligned objects: truncation to integers in the model frame keeps IoU far above 0.5
    assert r["metrics"]["AP_nc50"]["mean"] == pytest.approx(1.0) and r["f1"]["mF1"] == pytest.approx(1.0)
    assert r["protocol"] == "mmrotate1x" and r["prompt_set"] == "reference"


def test_qwen_bbox_2d_answers_fenced_or_cut_are_read(tmp_path):
    g = _gt_dir(tmp_path)
    sx, sy = 812 / 1000, 644 / 800
    box = [round(100 * sx), round(100 * sy), round(300 * sx), round(200 * sy)]
    fenced = '```json\n[\n  {"bbox_2d": ' + json.dumps(box) + ', "label": "plane"}\n]\n```'
    cut = '[{"bbox_2d": [8, 8, 73, 48], "label": "ship"}, {"bbox_2d": [1, 2, 3'
    path = _write(tmp_path / "r.jsonl", [{"image_id": "A", "response": fenced, "resize": PLAN},
                                         {"image_id": "B", "response": cut, "resize": PLAN, "finish_reason": "length"}])
    r = eval_responses(path, g, seeds=1)
    p = r["parsing"]
    assert p["forms"] == {"bbox_2d-json": 2} and p["n_unparsed"] == 1 and p["n_truncated"] == 1
    assert r["f1"]["per_class"]["plane"]["tp"] == 1 and r["f1"]["per_class"]["ship"]["tp"] == 1


def test_finish_reason_and_synonyms_are_reported(tmp_path):
    g = _gt_dir(tmp_path)
    a = "81,80,243,80,243,161,81,161 aircraft\n"
    lines = [{"image_id": "A", "response": a, "resize": PLAN, "finish_reason": "stop"},
             {"image_id": "B", "response": "There are none.", "resize": PLAN}]
    path = _write(tmp_path / "r.jsonl", lines)
    plain = eval_responses(path, g, seeds=1)
    assert plain["parsing"]["n_unknown_labels"] == 1 and plain["f1"]["per_class"]["plane"]["tp"] == 0
    assert plain["parsing"]["n_truncated"] == 0 and plain["parsing"]["n_finish_unknown"] == 1
    mapped = eval_responses(path, g, seeds=1, map_synonyms=True)
    assert mapped["parsing"]["n_synonym_labels"] == 1
    assert mapped["parsing"]["synonym_labels"] == {"aircraft -> plane": 1}
    assert mapped["parsing"]["n_unknown_labels"] == 0 and mapped["f1"]["per_class"]["plane"]["tp"] == 1
    assert mapped["map_synonyms"] is True
    _write(path, [{**lines[0], "finish_reason": 3}])
    with pytest.raises(ResponseFormatError, match=r"r.jsonl:1: \"finish_reason\""):
        eval_responses(path, g, seeds=1)


def test_ones_follows_the_order_of_the_responses_file(tmp_path):
    """All scores 1.0: the ranking is the file's image order, then answer order (ties kept stable)."""
    g = tmp_path / "gt"
    g.mkdir()
    (g / "A.txt").write_text("100 100 300 100 300 200 100 200 plane 0\n")
    (g / "B.txt").write_text("100 100 300 100 300 200 100 200 plane 0\n")
    hit = _answer([[100, 100, 300, 100, 300, 200, 100, 200]], ["plane"], "plain", "quad")
    miss = _answer([[600, 600, 700, 600, 700, 700, 600, 700]], ["plane"], "plain", "quad")
    both = hit + miss  # A answers a hit, then a miss
    a_first = _write(tmp_path / "a.jsonl", [{"image_id": "A", "response": both, "resize": PLAN},
                                            {"image_id": "B", "response": hit, "resize": PLAN}])
    b_first = _write(tmp_path / "b.jsonl", [{"image_id": "B", "response": hit, "resize": PLAN},
                                            {"image_id": "A", "response": both, "resize": PLAN}])
    # ranked hit, miss, hit: precision 1, .5, .667 at recall .5, .5, 1
    ra = eval_responses(a_first, g, score_mode="ones", iou_thrs="0.5")
    assert ra["metrics"]["AP50"]["mean"] == ap11([1] * 6 + [TWO_THIRDS] * 5)
    rb = eval_responses(b_first, g, score_mode="ones", iou_thrs="0.5")  # hit, hit, miss
    assert rb["metrics"]["AP50"]["mean"] == pytest.approx(1.0)
    assert ra["score_mode"] == "ones" and ra["seeds"] is None and ra["ties"] == "stable"


def test_cli_flags(tmp_path, capsys):
    g = _gt_dir(tmp_path)
    a = _answer([[100, 100, 300, 100, 300, 200, 100, 200]], ["plane"], "plain", "quad")
    path = _write(tmp_path / "r.jsonl", [{"image_id": "A", "response": a, "resize": PLAN, "finish_reason": "length"}])
    out = tmp_path / "o.json"
    args = ["eval", "responses", "--responses", str(path), "--gt-dir", str(g), "--json", str(out)]
    assert main(args + ["--score-mode", "ones", "--f1-mode", "lmmrotate", "--prompt-set", "rscovlm-v0"]) == 0
    res = json.loads(out.read_text())
    assert res["score_mode"] == "ones" and res["f1"]["f1_mode"] == "lmmrotate" and res["prompt_set"] == "rscovlm-v0"
    assert res["protocol"] == "mmrotate1x" and list(res["metrics"])[0] == "AP50"
    err = capsys.readouterr().err
    assert "1 answer(s) cut off by the generation budget" in err
    assert main(args + ["--seed-list", "42,666"]) == 0
    assert json.loads(out.read_text())["seeds"] == [42, 666]
    assert main(args + ["--seeds", "3", "--score-mode", "random-per-image", "--ties", "reference"]) == 0
    res = json.loads(out.read_text())
    assert res["seeds"] == [0, 1, 2] and res["score_mode"] == "random-per-image" and res["ties"] == "reference"
    assert main(args + ["--score-mode", "random-per-image"]) == 0
    assert json.loads(out.read_text())["seeds"] == list(LMMROTATE_SEEDS)
    with pytest.raises(SystemExit):
        main(args + ["--seeds", "3", "--seed-list", "1,2"])  # one or the other
    assert main(args + ["--seed-list", "1,x"]) == 2 and "--seed-list" in capsys.readouterr().err
    assert main(args + ["--prompt-set", "nope"]) == 2 and "unknown prompt set" in capsys.readouterr().err
    assert main(args + ["--map-synonyms"]) == 0 and json.loads(out.read_text())["map_synonyms"] is True


def test_cli_defaults_per_command(tmp_path):
    from rscovlm.eval.synthetic_dets import make_detection_set, write_detection_set

    ds = make_detection_set(n_images=3, n_gt=60, n_det=150, seed=5)
    write_detection_set(ds, tmp_path / "gt", tmp_path / "det")
    common = ["--gt-dir", str(tmp_path / "gt"), "--det-dir", str(tmp_path / "det"), "--json", str(tmp_path / "o")]
    assert main(["eval", "dota"] + common) == 0
    assert json.loads((tmp_path / "o").read_text())["protocol"] == "dota"  # conventional detectors: the devkit
    assert main(["eval", "dota-nc", "--seeds", "2"] + common) == 0
    assert json.loads((tmp_path / "o").read_text())["protocol"] == "mmrotate1x"
    assert main(["eval", "dota-f1", "--f1-mode", "lmmrotate"] + common) == 0
    res = json.loads((tmp_path / "o").read_text())
    assert res["f1_mode"] == "lmmrotate" and res["protocol"] == "mmrotate1x" and "confusion_matrix" in res
    assert main(["eval", "dota-nc", "--score-mode", "ones", "--protocol", "mmrotate"] + common) == 0
    res = json.loads((tmp_path / "o").read_text())
    assert res["seeds"] is None and res["protocol"] == "mmrotate"
    assert main(["eval", "dota-sweep", "--val-gt", str(tmp_path / "gt"), "--val-det", str(tmp_path / "det"),
                 "--score-mode", "ones", "--iou-thrs", "0.5", "--json", str(tmp_path / "s")]) == 0
    s = json.loads((tmp_path / "s").read_text())
    assert s["select"] == "AP50" and s["protocol"] == "mmrotate1x" and s["score_mode"] == "ones"


def test_parity_harness_needs_the_external_checkouts():
    """benchmarks/parity_reference_metrics.py runs only with the reference checkouts given (none is vendored)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "parity_reference_metrics.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert out.returncode == 2 and "--mmrotate" in out.stderr
