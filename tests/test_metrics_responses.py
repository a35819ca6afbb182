"""Scoring model responses (jsonl) and the ``rscovlm eval`` commands end to end."""

import json

import numpy as np
import pytest

from rscovlm.cli import main
from rscovlm.eval.responses import ResponseFormatError, eval_responses
from rscovlm.eval.synthetic_dets import make_detection_set, write_detection_set
from rscovlm.geometry import Boxes, ObjectSet
from rscovlm.protocol.detection import format_detections
from rscovlm.resolution import ResizePlan

PLAN = {"original": [1000, 800], "model": [812, 644]}


def _write_gt(tmp_path):
    g = tmp_path / "gt"
    g.mkdir()
    (g / "A.txt").write_text("100 100 300 100 300 200 100 200 plane 0\n500 500 540 500 540 520 500 520 "
                             "small-vehicle 0\n")
    (g / "B.txt").write_text("10 10 90 10 90 60 10 60 ship 0\n")
    (g / "C.txt").write_text("")
    return g


def _response(quads, labels, form="plain"):
    plan = ResizePlan.from_dict(PLAN)
    objs = ObjectSet(Boxes(np.asarray(quads, float), "quad", plan.original), labels)
    return format_detections(objs.to_frame(plan.model), form)


def test_perfect_responses_score_one(tmp_path):
    g = _write_gt(tmp_path)
    lines = [
        {"image_id": "A", "response": _response([[100, 100, 300, 100, 300, 200, 100, 200],
                                                 [500, 500, 540, 500, 540, 520, 500, 520]],
                                                ["plane", "small-vehicle"]), "resize": PLAN},
        {"image_id": "B", "response": _response([[10, 10, 90, 10, 90, 60, 10, 60]], ["ship"], "json"),
         "resize": PLAN},
        {"image_id": "C", "response": "There is none.", "resize": PLAN},
    ]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    r = eval_responses(path, g, seeds=2)
    assert r["classes"] == ["plane", "ship", "small-vehicle"]
    assert r["metrics"]["AP_nc50"]["mean"] == pytest.approx(1.0)
    assert r["f1"]["mF1"] == pytest.approx(1.0)
    assert r["parsing"]["unparsed_fraction"] == 0.0 and r["parsing"]["n_none_answers"] == 1


def test_unparsed_fraction_missing_images_and_errors(tmp_path):
    g = _write_gt(tmp_path)
    good = _response([[100, 100, 300, 100, 300, 200, 100, 200]], ["plane"])
    lines = [{"image_id": "A", "response": good + "\nbanana: (1,2),(3\ncar: (1,1),(5,5)", "resize": PLAN}]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    r = eval_responses(path, g, seeds=1)
    p = r["parsing"]
    assert p["n_fragments"] == 3 and p["unparsed_fraction"] == pytest.approx(2 / 3)
    assert p["images_without_response"] == 2
    assert r["f1"]["per_class"]["plane"]["tp"] == 1 and r["f1"]["per_class"]["ship"]["recall"] == 0.0

    path.write_text(json.dumps(lines[0]) + "\n{not json\n")
    with pytest.raises(ResponseFormatError, match=r"r.jsonl:2"):
        eval_responses(path, g, seeds=1)
    assert eval_responses(path, g, seeds=1, skip_invalid=True)["parsing"]["skipped_lines"] == 1
    path.write_text(json.dumps({"image_id": "Z", "response": good, "resize": PLAN}) + "\n")
    with pytest.raises(ResponseFormatError, match=r"r.jsonl:1: image 'Z' has no ground-truth file"):
        eval_responses(path, g, seeds=1)
    path.write_text(json.dumps({"image_id": "A", "response": good}) + "\n")
    with pytest.raises(ResponseFormatError, match=r"r.jsonl:1: .*resize"):
        eval_responses(path, g, seeds=1)


def test_cli_commands(tmp_path, capsys):
    ds = make_detection_set(n_images=4, n_gt=100, n_det=300, seed=31)
    write_detection_set(ds, tmp_path / "gt", tmp_path / "det")
    gt, det = str(tmp_path / "gt"), str(tmp_path / "det")
    out = tmp_path / "map.json"
    assert main(["eval", "dota", "--gt-dir", gt, "--det-dir", det, "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res) >= {"mAP", "classes", "per_class"}
    assert all(set(v) >= {"ap", "num_gt", "num_det"} for v in res["per_class"].values())
    assert res["mAP"] == pytest.approx(np.mean([res["per_class"][c]["ap"] for c in res["classes"]]))
    assert "mAP" in capsys.readouterr().out
    assert main(["eval", "dota", "--gt-dir", gt, "--det-dir", det, "--protocol", "mmrotate", "--ap-mode", "area",
                 "--iou-thr", "0.7"]) == 0
    assert main(["eval", "dota-nc", "--gt-dir", gt, "--det-dir", det, "--score-thr", "0.3", "--seeds", "2",
                 "--iou-thrs", "0.5,0.5:0.95", "--json", str(tmp_path / "nc.json")]) == 0
    nc = json.loads((tmp_path / "nc.json").read_text())
    assert list(nc["metrics"]) == ["AP_nc50", "AP_nc50:95"] and len(nc["metrics"]["AP_nc50"]["per_seed"]) == 2
    assert main(["eval", "dota-f1", "--gt-dir", gt, "--det-dir", det, "--json", str(tmp_path / "f1.json")]) == 0
    assert "mF1" in json.loads((tmp_path / "f1.json").read_text())
    with pytest.raises(SystemExit):  # mF1 has no AP mode: the flag is refused, not silently ignored
        main(["eval", "dota-f1", "--gt-dir", gt, "--det-dir", det, "--ap-mode", "area"])
    assert main(["eval", "dota-sweep", "--val-gt", gt, "--val-det", det, "--test-gt", gt, "--test-det", det,
                 "--seeds", "1", "--iou-thrs", "0.5", "--plot", str(tmp_path / "p.png"),
                 "--json", str(tmp_path / "s.json")]) == 0
    s = json.loads((tmp_path / "s.json").read_text())
    assert len(s["detectors"]["det"]["val"]["thresholds"]) == 20 and (tmp_path / "p.png").exists()
    (tmp_path / "det" / "Task1_plane.txt").write_text("P0000 0.5 1 2 3\n")
    assert main(["eval", "dota", "--gt-dir", gt, "--det-dir", det]) == 2
    assert "Task1_plane.txt:1" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # an unknown vocabulary is a usage error, not a KeyError traceback
        main(["eval", "responses", "--responses", str(out), "--gt-dir", gt, "--categories", "dota-v9"])
    assert "invalid choice: 'dota-v9'" in capsys.readouterr().err


@pytest.mark.parametrize("resize", [{"original": [1000, "a"], "model": [812, 644]},
                                    {"original": [1000, 800], "model": [812]}])
def test_bad_resize_values_name_the_field(tmp_path, resize):
    g = _write_gt(tmp_path)
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"image_id": "A", "response": "There is none.", "resize": resize}) + "\n")
    with pytest.raises(ResponseFormatError, match=r"r.jsonl:1: bad \"resize\""):
        eval_responses(path, g, seeds=1)


def test_skipped_label_lines_are_counted(tmp_path, capsys):
    g = _write_gt(tmp_path)
    (g / "C.txt").write_text("1 2 3 nan 5 6 7 8 plane 0\n")
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"image_id": "A", "response": "There is none.", "resize": PLAN}) + "\n{bad\n")
    r = eval_responses(path, g, seeds=1, skip_invalid=True)
    assert r["skipped_lines"] == 2 and r["parsing"]["skipped_lines"] == 1  # one label line, one jsonl line
    assert main(["eval", "responses", "--responses", str(path), "--gt-dir", str(g), "--seeds", "1",
                 "--skip-invalid"]) == 0
    assert "skipped 2 malformed line(s)" in capsys.readouterr().err


def test_responses_of_a_relative_grid_family_are_read_on_its_grid(tmp_path, capsys):
    """Qwen2-VL writes boxes on a 0-1000 grid: with --family qwen2_vl (or a line's "family") a hand-written grid
    answer maps back to the ground truth through that frame; read as resized pixels (the default) it misses."""
    g = _write_gt(tmp_path)
    # original 1000 x 800: x stays, y * 1000 / 800
    lines = [{"image_id": "A", "resize": PLAN,
              "response": "plane: (100,125),(300,125),(300,250),(100,250)\n"
                          "small vehicle: (500,625),(540,625),(540,650),(500,650)"},
             {"image_id": "B", "resize": PLAN,
              "response": '[{"quad_2d": [10, 13, 90, 13, 90, 75, 10, 75], "label": "ship"}]'},
             {"image_id": "C", "resize": PLAN, "response": "There is none."}]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    r = eval_responses(path, g, seeds=2, family="qwen2_vl")
    assert r["f1"]["mF1"] == pytest.approx(1.0) and r["metrics"]["AP_nc50"]["mean"] == pytest.approx(1.0)
    assert r["parsing"]["unparsed_fraction"] == 0.0 and r["family"] == "qwen2_vl"
    assert eval_responses(path, g, seeds=2)["f1"]["mF1"] == 0.0  # the same numbers read as resized pixels
    path.write_text("\n".join(json.dumps({**x, "family": "qwen3_vl"}) for x in lines) + "\n")
    assert eval_responses(path, g, seeds=2)["f1"]["mF1"] == pytest.approx(1.0)  # the line's family wins
    out = tmp_path / "r.json"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    assert main(["eval", "responses", "--responses", str(path), "--gt-dir", str(g), "--seeds", "1",
                 "--family", "qwen2_vl", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["f1"]["mF1"] == pytest.approx(1.0)
    capsys.readouterr()
    assert main(["eval", "responses", "--responses", str(path), "--gt-dir", str(g), "--family", "qwen9_vl"]) == 2
    assert "family 'qwen9_vl' is not a registered model family" in capsys.readouterr().err
    path.write_text(json.dumps({**lines[0], "family": "qwen9_vl"}) + "\n")
    with pytest.raises(ResponseFormatError, match=r"r.jsonl:1: family 'qwen9_vl'"):
        eval_responses(path, g, seeds=1)


def test_oriented_answers_map_to_the_exact_quad_of_the_original_frame():
    """An obb answer becomes its quad before the per-axis scaling back to the original frame: the mapped shape is
    the exact (sheared) image of the box, not a re-fitted rectangle."""
    from rscovlm.eval.responses import read_response
    from rscovlm.model.families import family_for
    from rscovlm.protocol import DOTA_V1_0

    plan = ResizePlan.from_dict({"original": [1000, 500], "model": [812, 644]})
    parsed, quads = read_response("plane: (400,300,200,50,30)", plan, family_for("qwen2_5_vl"), DOTA_V1_0)
    model_quad = Boxes(np.array([[400, 300, 200, 50, np.radians(30)]]), "obb").to_quad().data
    expected = model_quad * np.tile([1000 / 812, 500 / 644], 4)
    assert parsed.objects.labels == ["plane"] and np.allclose(quads, expected, atol=1e-9)


def test_degenerate_responses_are_scored_not_raised(tmp_path, capsys):
    """main: a nested JSON answer raised RecursionError, a 400-digit coordinate OverflowError (a traceback from
    the command), and the one-line layout `plane: ..; ship: ..` scored the ship as a second plane."""
    g = _write_gt(tmp_path)
    one_line = (_response([[100, 100, 300, 100, 300, 200, 100, 200]], ["plane"]) + "; "
                + _response([[500, 500, 540, 500, 540, 520, 500, 520]], ["small-vehicle"]))
    lines = [{"image_id": "A", "response": one_line, "resize": PLAN},
             {"image_id": "B", "response": '[{"label": "ship", "bbox_2d": ' + "[" * 5000 + "]" * 5000 + "}]",
              "resize": PLAN},
             {"image_id": "C", "response": '[{"label": "ship", "bbox_2d": [' + "9" * 400 + ", 1, 2, 3]}]",
              "resize": PLAN}]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    r = eval_responses(path, g, seeds=1)
    assert r["f1"]["per_class"]["small-vehicle"]["tp"] == 1 and r["f1"]["per_class"]["plane"]["fp"] == 0
    assert r["parsing"]["n_fragments"] == 4 and r["parsing"]["n_unparsed"] == 2
    assert r["parsing"]["n_over_limits"] == 1  # the nested one: JSON deeper than the depth limit
    assert main(["eval", "responses", "--responses", str(path), "--gt-dir", str(g), "--seeds", "1"]) == 0
    assert "hit the reading limits" in capsys.readouterr().err


def test_unknown_ground_truth_classes_are_refused_or_dropped_and_counted(tmp_path, capsys):
    g = _write_gt(tmp_path)
    (g / "B.txt").write_text("10 10 90 10 90 60 10 60 ship 0\n1 1 9 1 9 9 1 9 spaceship 0\n")
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"image_id": "B", "response": _response([[10, 10, 90, 10, 90, 60, 10, 60]], ["ship"]),
                                "resize": PLAN}) + "\n")
    with pytest.raises(ValueError, match=r"B\.txt:2: ground-truth class 'spaceship'"):
        eval_responses(path, g, seeds=1)
    r = eval_responses(path, g, seeds=1, unknown_gt_classes="ignore")
    assert r["dropped_unknown_gt_classes"] == {"spaceship": 1} and "spaceship" not in r["classes"]
    args = ["eval", "responses", "--responses", str(path), "--gt-dir", str(g), "--seeds", "1"]
    assert main(args) == 2 and "spaceship" in capsys.readouterr().err
    assert main(args + ["--unknown-gt-classes", "ignore"]) == 0
    assert "dropped 1 ground-truth object(s)" in capsys.readouterr().err
