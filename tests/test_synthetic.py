import cv2
import numpy as np
import pytest

from rscovlm.cli import main
from rscovlm.dota.io import read_labeltxt, read_labeltxt_dir
from rscovlm.dota.synthetic import (
    CATEGORIES,
    SceneConfig,
    generate_dataset,
    generate_scene,
    plan_scene,
    render_region,
    write_scene,
)
from rscovlm.geometry import normalize_quads
from rscovlm.geometry.iou import poly_iou

cv2.setNumThreads(1)


def test_same_seed_same_scene_other_seed_other_scene():
    a_img, a_obj = generate_scene(500, 400, seed=4)
    b_img, b_obj = generate_scene(500, 400, seed=4)
    c_img, c_obj = generate_scene(500, 400, seed=5)
    assert a_img.shape == (400, 500, 3) and a_img.dtype == np.uint8
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_obj.boxes.data, b_obj.boxes.data)
    assert a_obj.labels == b_obj.labels
    assert not np.array_equal(a_img, c_img)


def test_objects_are_inside_disjoint_normalized_and_visible():
    img, objs = generate_scene(1000, 800, seed=1, density=60)
    assert len(objs) > 20 and set(objs.labels) <= set(CATEGORIES)
    q = objs.boxes.data
    assert q[:, 0::2].min() >= 0 and q[:, 0::2].max() <= 1000 and q[:, 1::2].min() >= 0 and q[:, 1::2].max() <= 800
    np.testing.assert_allclose(q, normalize_quads(q))
    iou = poly_iou(q, q)
    np.testing.assert_allclose(np.diag(iou), 1.0)
    assert (iou[~np.eye(len(q), dtype=bool)] == 0).all()
    assert (objs.difficult == 0).all()
    # every object changes the pixels under it: compare with the same scene planned without objects
    empty = plan_scene(1000, 800, seed=1, config=SceneConfig(density=60))
    empty.obb, empty.labels, empty.colors = empty.obb[:0], [], empty.colors[:0]
    background = empty.render()
    for quad in q:
        mask = np.zeros((800, 1000), np.uint8)
        cv2.fillPoly(mask, [np.round(quad.reshape(4, 2)).astype(np.int32)], 1)
        diff = np.abs(img.astype(int) - background.astype(int)).sum(-1)[mask.astype(bool)]
        assert (diff > 0).mean() > 0.3


def test_config_controls_count_scale_and_categories():
    _, objs = generate_scene(448, 448, seed=2, num_objects=5, object_scale=1.5,
                             categories=("small-vehicle", "storage-tank", "tennis-court"))
    assert len(objs) == 5 and set(objs.labels) <= {"small-vehicle", "storage-tank", "tennis-court"}
    # object_scale multiplies sizes: the same draws at scale 1 give the same first objects, 1.5x smaller
    _, small = generate_scene(448, 448, seed=2, num_objects=5, object_scale=1.0,
                              categories=("small-vehicle", "storage-tank", "tennis-court"))
    assert small.labels[:4] == objs.labels[:4]
    np.testing.assert_allclose(objs.boxes.areas()[:4], small.boxes.areas()[:4] * 1.5 ** 2)
    with pytest.raises(ValueError, match="unknown synthetic categories"):
        SceneConfig(categories=("submarine",))
    # overrides apply on top of a given config (they were silently ignored)
    _, two = generate_scene(448, 448, seed=2, config=SceneConfig(categories=("storage-tank",)), num_objects=2)
    assert len(two) == 2 and set(two.labels) == {"storage-tank"}


def test_tiles_render_exactly_the_whole_scene():
    scene = plan_scene(700, 500, seed=9, config=SceneConfig(density=80, roads_per_megapixel=4))
    whole = scene.render()
    rows = [np.concatenate([render_region(scene, x, y, min(173, 700 - x), min(131, 500 - y))
                            for x in range(0, 700, 173)], axis=1) for y in range(0, 500, 131)]
    np.testing.assert_array_equal(np.concatenate(rows, axis=0), whole)


def test_write_scene_streams_a_tiled_tiff(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    objs = write_scene(tmp_path / "big.tif", 700, 530, seed=3, tile=128, block_tiles=2)
    with tifffile.TiffFile(tmp_path / "big.tif") as tif:
        page = tif.pages[0]
        assert page.is_tiled and page.shape == (530, 700, 3)
        pixels = page.asarray()
    np.testing.assert_array_equal(pixels, plan_scene(700, 530, seed=3).render())
    labels = read_labeltxt(tmp_path / "big.txt")
    np.testing.assert_allclose(labels.objects.boxes.data, objs.boxes.data)
    assert labels.imagesource == "rscovlm-synthetic"


def test_cli_writes_a_dataset_of_images_and_labels(tmp_path, capsys):
    rc = main(["synth", "scenes", "--out", str(tmp_path), "--n", "2", "--size", "320", "240", "--seed", "1",
               "--num-objects", "4"])
    assert rc == 0
    labels = read_labeltxt_dir(tmp_path / "labelTxt")
    assert sorted(labels) == ["syn_00000", "syn_00001"]
    for stem, lab in labels.items():
        img = cv2.imread(str(tmp_path / "images" / f"{stem}.png"))
        assert img.shape == (240, 320, 3)
        assert 1 <= len(lab.objects) <= 4
    assert main(["synth", "scenes", "--out", str(tmp_path), "--size", "1", "2", "3"]) == 2


@pytest.mark.parametrize("kwargs, field", [({"density": float("nan")}, "density"), ({"density": -1.0}, "density"),
                                           ({"object_scale": 0.0}, "object_scale"),
                                           ({"object_scale": float("inf")}, "object_scale"),
                                           ({"num_objects": -2}, "num_objects"), ({"categories": ()}, "categories"),
                                           ({"roads_per_megapixel": -0.1}, "roads_per_megapixel"),
                                           ({"parcel_size": 0}, "parcel_size")])
def test_config_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SceneConfig(**kwargs)


@pytest.mark.parametrize("flag, value", [("--density", "nan"), ("--object-scale", "-1"), ("--num-objects", "-1")])
def test_cli_bad_config_is_a_clear_error(tmp_path, capsys, flag, value):
    assert main(["synth", "scenes", "--out", str(tmp_path / "o"), "--n", "1", "--size", "64", flag, value]) == 2
    assert flag.lstrip("-").replace("-", "_") in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ---- any size in bounded memory ------------------------------------------------------------------------------

def test_streamed_png_has_the_same_pixels_for_any_strip_size(tmp_path):
    scene = plan_scene(640, 410, seed=7, config=SceneConfig(density=200, roads_per_megapixel=8))
    whole = scene.render()
    for strip_pixels in (1, 640 * 37, 1 << 30):  # one row per strip, 37-row strips, all at once
        out = tmp_path / f"s{strip_pixels}"
        generate_dataset(out, 1, (640, 410), seed=0, strip_pixels=strip_pixels)
        write_scene(out / "big.png", 640, 410, seed=7, config=SceneConfig(density=200, roads_per_megapixel=8),
                    strip_pixels=strip_pixels)
        np.testing.assert_array_equal(cv2.imread(str(out / "big.png"))[..., ::-1], whole)
        first = cv2.imread(str(out / "images" / "syn_00000.png"))
        np.testing.assert_array_equal(first[..., ::-1], plan_scene(640, 410, seed=0).render())


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_generation_never_holds_the_whole_image(tmp_path, suffix):
    # main rendered the whole scene at once (float32 work arrays: ~4x the image), 9.7 GiB for 182 MP
    import tracemalloc

    if suffix == ".tif":
        pytest.importorskip("tifffile")
    write = {".png": lambda w, h: generate_dataset(tmp_path, 1, (w, h), seed=2, strip_pixels=1 << 14),
             ".tif": lambda w, h: write_scene(tmp_path / "big.tif", w, h, seed=2, tile=128, block_tiles=2)}[suffix]
    write(200, 100)  # imports and first-call allocations happen outside the measurement
    width, height = 2000, 2400
    raw = width * height * 3
    tracemalloc.start()
    try:
        write(width, height)
        _, peak = tracemalloc.get_traced_memory()  # numpy's buffers are traced
    finally:
        tracemalloc.stop()
    # measured: ~3.7 MiB (PNG) and ~5.9 MiB (TIFF) whatever the height; main: ~4x the image
    assert peak < raw / 2, f"peak {peak / 2**20:.1f} MiB for a {raw / 2**20:.1f} MiB image"


def test_cli_commands_show_progress_and_name_a_missing_extra(tmp_path, capsys, monkeypatch):
    import sys

    assert main(["synth", "scenes", "--out", str(tmp_path / "d"), "--n", "2", "--size", "300", "200"]) == 0
    err = capsys.readouterr().err
    assert "synth" in err and "0.1/0.1 MP" in err  # the bar on stderr: 2 x 0.06 MP
    assert main(["synth", "big", "--out", str(tmp_path / "b.png"), "--width", "500", "--height", "300"]) == 0
    assert "0.1/0.1 MP" in capsys.readouterr().err
    assert cv2.imread(str(tmp_path / "b.png")).shape == (300, 500, 3)
    assert main(["synth", "scenes", "--out", str(tmp_path / "q"), "--n", "1", "--size", "64", "--no-progress"]) == 0
    assert "MP" not in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "tifffile", None)  # as without the geo extra
    rc = main(["synth", "big", "--out", str(tmp_path / "b.tif"), "--width", "500", "--height", "300"])
    err = capsys.readouterr().err
    assert rc == 2 and "pip install 'rscovlm[geo]'" in err and "tifffile" in err and "Traceback" not in err
