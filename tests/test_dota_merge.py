import numpy as np
import pytest

from rscovlm.cli import main
from rscovlm.dota.io import DotaFormatError, read_task1_dir, write_task1_dir
from rscovlm.dota.merge import MergeConfig, merge_patch_objects, merge_task1_dir
from rscovlm.dota.split import patch_name, sliding_windows, window_iof
from rscovlm.dota.synthetic import plan_scene, SceneConfig
from rscovlm.geometry import Boxes, ObjectSet


def _quad(x0, y0, x1, y1):
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def test_shift_and_per_class_nms_hand_case():
    patches = {
        "P1__100__0___0": ObjectSet(Boxes(np.array([_quad(80, 10, 100, 30), _quad(5, 5, 15, 15)]), "quad"),
                                    ["ship", "ship"], scores=np.array([0.6, 0.5])),
        # the same ship seen whole from the next patch (x + 80), better score; and a plane at the same place
        "P1__100__80___0": ObjectSet(Boxes(np.array([_quad(0, 10, 25, 30), _quad(0, 10, 25, 30)]), "quad"),
                                     ["ship", "plane"], scores=np.array([0.9, 0.3])),
        "P2__100__0___0": ObjectSet(Boxes(np.array([_quad(1, 1, 2, 2)]), "quad"), ["ship"], scores=[0.1]),
    }
    merged = merge_patch_objects(patches, iou_thr=0.1)
    assert sorted(merged) == ["P1", "P2"]
    p1 = merged["P1"]
    assert p1.labels == ["plane", "ship", "ship"]
    np.testing.assert_array_equal(p1.scores, [0.3, 0.9, 0.5])
    np.testing.assert_array_equal(p1.boxes.data[1], _quad(80, 10, 105, 30))  # the cut copy (IoU 0.8) is gone
    np.testing.assert_array_equal(p1.boxes.data[2], _quad(5, 5, 15, 15))
    with pytest.raises(ValueError, match="not a patch name"):
        merge_patch_objects({"P1": patches["P2__100__0___0"]})


def _simulated_patch_detections(scene, size, gap):
    """What a perfect detector would answer on every patch: objects wholly inside at a high score, objects cut
    by the window as their clipped quad at a low score. Coordinates in patch pixels."""
    objects = scene.objects
    quads = objects.boxes.data
    windows = sliding_windows(scene.width, scene.height, size, gap)
    iof = window_iof(quads.astype(np.float32), windows)
    rng = np.random.default_rng(0)
    full_scores = rng.uniform(0.5, 1.0, len(quads))
    out = {}
    for j, (x0, y0, x1, y1) in enumerate(windows.tolist()):
        whole = np.flatnonzero(iof[:, j] >= 1 - 1e-6)
        cut = np.flatnonzero((iof[:, j] > 0.3) & (iof[:, j] < 1 - 1e-6))
        sel = np.concatenate([whole, cut])
        q = quads[sel] - np.array([x0, y0] * 4, dtype=np.float64)
        q[len(whole):, 0::2] = np.clip(q[len(whole):, 0::2], 0, size)
        q[len(whole):, 1::2] = np.clip(q[len(whole):, 1::2], 0, size)
        scores = np.concatenate([full_scores[whole], rng.uniform(0.05, 0.45, len(cut))])
        out[patch_name("S7", size, x0, y0)] = ObjectSet(Boxes(q, "quad"), [objects.labels[i] for i in sel],
                                                        scores=scores)
    return objects, full_scores, out


def test_merge_on_a_generated_scene_restores_the_full_image_objects(tmp_path):
    # overlap (300) larger than every object (< 262 px), so each object lies whole in some patch
    scene = plan_scene(1400, 1100, seed=7, config=SceneConfig(density=60))
    objects, full_scores, patches = _simulated_patch_detections(scene, size=600, gap=300)
    assert len(objects) > 40 and sum(len(p) for p in patches.values()) > 2 * len(objects)
    det_dir = tmp_path / "patch_task1"
    write_task1_dir(det_dir, patches, classes=sorted(set(objects.labels)) + ["helicopter"])
    report = merge_task1_dir(det_dir, tmp_path / "full", MergeConfig(iou_thr=0.1, workers=1), progress=False)
    assert report.images == 1 and report.merged_detections == len(objects)
    merged = read_task1_dir(tmp_path / "full")["S7"]
    assert (tmp_path / "full" / "Task1_helicopter.txt").read_text() == ""
    # match every merged box to its original object: same class, same quad, the whole-object score
    order_m = np.lexsort((merged.boxes.data[:, 1], merged.boxes.data[:, 0]))
    order_o = np.lexsort((objects.boxes.data[:, 1], objects.boxes.data[:, 0]))
    np.testing.assert_allclose(merged.boxes.data[order_m], objects.boxes.data[order_o], atol=1e-9)
    assert [merged.labels[i] for i in order_m] == [objects.labels[i] for i in order_o]
    np.testing.assert_allclose(merged.scores[order_m], full_scores[order_o])


def test_merge_workers_and_cli(tmp_path, capsys):
    scene = plan_scene(900, 700, seed=3, config=SceneConfig(density=60))
    _, _, patches = _simulated_patch_detections(scene, size=500, gap=300)
    patches.update({k.replace("S7", "T8"): v for k, v in patches.items()})
    write_task1_dir(tmp_path / "in", patches)
    merge_task1_dir(tmp_path / "in", tmp_path / "one", MergeConfig(workers=1), progress=False)
    rc = main(["dota", "merge", "--det-dir", str(tmp_path / "in"), "--out-dir", str(tmp_path / "two"),
               "--workers", "2", "--no-progress"])
    assert rc == 0 and "merged" in capsys.readouterr().err
    for f in (tmp_path / "one").iterdir():
        assert f.read_text() == (tmp_path / "two" / f.name).read_text()


def test_non_patch_id_is_an_error_naming_file_and_line(tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    (d / "Task1_ship.txt").write_text("P1__100__0___0 0.9 0 0 1 0 1 1 0 1\nP1 0.8 0 0 1 0 1 1 0 1\n")
    with pytest.raises(DotaFormatError, match=r"Task1_ship.txt:2: image id 'P1' is not a patch name"):
        merge_task1_dir(d, tmp_path / "out", progress=False)
    rc = main(["dota", "merge", "--det-dir", str(d), "--out-dir", str(tmp_path / "out"), "--no-progress"])
    assert rc == 2 and "Task1_ship.txt:2" in capsys.readouterr().err
    report = merge_task1_dir(d, tmp_path / "out", MergeConfig(skip_invalid=True), progress=False)
    assert len(report.skipped) == 1 and report.merged_detections == 1 and "skipped 1" in report.summary()
