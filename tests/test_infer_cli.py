"""``rscovlm predict`` / ``zoom`` / ``detect`` run as commands on the offline tiny model: results on stdout (or in
the output folder), a progress bar and the summary line (images, answers, truncated answers, time) on stderr,
clear errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from rscovlm.cli import main


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from rscovlm.dota.synthetic import write_scene

    d = tmp_path_factory.mktemp("cli")
    write_scene(d / "scene.png", 1100, 700, seed=2)
    return d / "scene.png"


def test_predict_prints_one_json_line_per_image(tiny_model_dir, scene, capfd):
    folder = scene.parent
    Image.fromarray(np.zeros((300, 300, 3), np.uint8)).save(folder / "b.png")
    assert main(["predict", str(scene), str(folder / "b.png"), "Describe the image", "--model", str(tiny_model_dir),
                 "--max-new-tokens", "5", "--task", "caption"]) == 0
    out, err = capfd.readouterr()
    lines = [json.loads(x) for x in out.strip().splitlines()]
    assert [x["image"] for x in lines] == [str(scene), str(folder / "b.png")]
    assert lines[0]["size"] == [1100, 700] and lines[0]["model_size"] == [1092, 700]
    assert all(x["n_new_tokens"] <= 5 and x["task"] == "caption" for x in lines)
    assert "predict" in err and "2 images, 2 answers, " in err and "truncated answers" in err
    assert main(["predict", str(scene), "plane,ship", "--model", str(tiny_model_dir), "--task", "detect",
                 "--max-new-tokens", "4", "--max-pixels", str(448 * 448), "--no-progress"]) == 0
    out, _ = capfd.readouterr()
    (line,) = [json.loads(x) for x in out.strip().splitlines()]
    assert line["model_size"] == [560, 336] and "objects" in line and "parse" in line


def test_zoom_command_runs_the_chain(tiny_model_dir, scene, capfd):
    assert main(["zoom", str(scene), "what is at the top?", "--model", str(tiny_model_dir), "--max-new-tokens", "6",
                 "--max-pixels", str(448 * 448), "--crop-source", "downsampled"]) == 0
    out, err = capfd.readouterr()
    (line,) = [json.loads(x) for x in out.strip().splitlines()]
    assert line["task"] == "zoom-vqa" and line["zoom"]["status"] in ("direct", "invalid_call", "zoomed")
    assert "1 questions: " in err and "1 images, " in err


def test_detect_command_writes_its_folder(tiny_model_dir, scene, tmp_path, capfd):
    out_dir = tmp_path / "det"
    assert main(["detect", str(scene), "--model", str(tiny_model_dir), "--out", str(out_dir), "--geojson",
                 "--max-new-tokens", "4", "--categories", "plane,ship"]) == 0
    _, err = capfd.readouterr()
    assert "1 images, 6 patches answered" in err and "objects after merging" in err
    assert (out_dir / "labelTxt" / "scene.txt").is_file() and (out_dir / "geojson" / "scene.geojson").is_file()
    assert sorted(p.name for p in (out_dir / "Task1").iterdir()) == ["Task1_plane.txt", "Task1_ship.txt"]
    assert (out_dir / "overlays" / "scene.png").is_file()


def test_bad_input_is_a_clear_error(tiny_model_dir, tmp_path, capfd):
    assert main(["predict", str(tmp_path / "missing.png"), "hi", "--model", str(tiny_model_dir)]) == 2
    assert "missing.png: no such image file or folder" in capfd.readouterr().err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert main(["predict", str(bad), "hi", "--model", str(tiny_model_dir), "--no-progress"]) == 2
    assert "bad.png: cannot read the image header" in capfd.readouterr().err
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(good)
    assert main(["predict", str(good), "hi", "--model", "tiny", "--backend", "openai", "--base-url",
                 "http://127.0.0.1:9/v1", "--no-progress"]) == 2
    assert "http://127.0.0.1:9/v1/chat/completions: failed after" in capfd.readouterr().err


def test_detect_reads_a_16_bit_multiband_geotiff_with_the_bands_and_stretch_asked(tiny_model_dir, tmp_path, capfd):
    """--bands picks the raster bands shown as RGB and --stretch maps 16-bit data to 8 bits: the overlay shows
    band 4 as red (the only band with a bright square) under a min-max stretch; GeoJSON is in the raster's CRS; a
    band the raster lacks is an error naming the file."""
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import from_origin

    tif = tmp_path / "ms.tif"
    data = np.full((4, 600, 600), 1000, np.uint16)
    data[3, 200:400, 200:400] = 60000  # band 4 bright in the middle
    with rasterio.open(tif, "w", driver="GTiff", width=600, height=600, count=4, dtype="uint16",
                       crs="EPSG:32633", transform=from_origin(500000, 4200000, 0.5, 0.5)) as dst:
        dst.write(data)
    out_dir = tmp_path / "det"
    assert main(["detect", str(tif), "--model", str(tiny_model_dir), "--out", str(out_dir), "--geojson",
                 "--max-new-tokens", "2", "--categories", "plane", "--bands", "4,1,2", "--stretch", "minmax",
                 "--no-progress"]) == 0
    capfd.readouterr()
    overlay = np.asarray(Image.open(out_dir / "overlays" / "ms.png").convert("RGB")).astype(int)
    h, w, _ = overlay.shape
    centre, corner = overlay[h // 2, w // 2], overlay[5, 5]
    assert centre[0] == 255 and centre[1] == 0 and corner[0] == 0  # band 4 -> red, stretched to 0..255
    assert "32633" in json.dumps(json.loads((out_dir / "geojson" / "ms.geojson").read_text()).get("crs"))
    assert main(["detect", str(tif), "--model", str(tiny_model_dir), "--out", str(out_dir), "--bands", "5,1,2",
                 "--no-progress"]) == 2
    assert "ms.tif: " in capfd.readouterr().err
