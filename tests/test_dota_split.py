import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from rscovlm.cli import main
from rscovlm.dota.split import (
    SplitConfig,
    parse_patch_name,
    patch_name,
    sliding_windows,
    split_dataset,
    window_iof,
)
from rscovlm.imageio import ImageReadError

cv2.setNumThreads(1)


# ---- windows ---------------------------------------------------------------------------------------------------

def test_image_smaller_than_a_patch_gives_one_padded_window():
    # the only window sticks out of the image; its image rate (500*300/1024^2) is below 0.6 but it is the best
    np.testing.assert_array_equal(sliding_windows(500, 300, 1024, 200, 0.6), [[0, 0, 1024, 1024]])


def test_exact_multiple_needs_no_clamp():
    # step 80: starts 0, 80, 160 and 160 + 100 == 260
    w = sliding_windows(260, 100, size=100, gap=20)
    np.testing.assert_array_equal(w[:, 0], [0, 80, 160])
    np.testing.assert_array_equal(w[:, 1], [0, 0, 0])
    assert (w[:, 2] - w[:, 0] == 100).all()


def test_last_window_is_clamped_and_order_is_x_major():
    # n = ceil((250 - 100) / 80 + 1) = 3 -> starts 0, 80, 160 -> last clamped to 250 - 100 = 150
    w = sliding_windows(250, 180, size=100, gap=20)
    starts = [tuple(r) for r in w[:, :2].tolist()]
    assert starts == [(0, 0), (0, 80), (80, 0), (80, 80), (150, 0), (150, 80)]


def test_img_rate_threshold_keeps_best_windows_when_none_pass():
    # a 250 x 50 strip: every window is half inside (rate 0.5 <= 0.6): all within 0.01 of the best are kept
    assert len(sliding_windows(250, 50, size=100, gap=20, img_rate_thr=0.6)) == 3
    # with a threshold below 0.5 they pass as they are
    assert len(sliding_windows(250, 50, size=100, gap=20, img_rate_thr=0.4)) == 3
    with pytest.raises(ValueError):
        sliding_windows(100, 100, size=100, gap=100)


def test_patch_names_round_trip():
    assert patch_name("P0001", 1024, 824, 0) == "P0001__1024__824___0"
    assert parse_patch_name("P00__01__1024__824___0") == ("P00__01", 1024, 824, 0)
    assert parse_patch_name("P0001") is None and parse_patch_name("P0001__1024__8a___0") is None


# ---- objects ---------------------------------------------------------------------------------------------------

def test_window_iof_is_polygon_area_not_box_area():
    windows = np.array([[0, 0, 100, 100], [80, 0, 180, 100], [300, 300, 400, 400]])
    square = [90, 10, 110, 10, 110, 30, 90, 30]          # half in window 0, all in window 1
    diamond = [84, 40, 94, 50, 84, 60, 74, 50]            # area 200; left tip 74..80 outside window 1: cap 36
    iof = window_iof(np.array([square, diamond], np.float32), windows)
    np.testing.assert_allclose(iof[0], [0.5, 1.0, 0.0])
    np.testing.assert_allclose(iof[1], [1.0, 164 / 200, 0.0])  # its enclosing box would give 0.7


def _write_case(root: Path, image: np.ndarray, label_text: str, stem: str = "P9") -> tuple[Path, Path]:
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "ann").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "img" / f"{stem}.png"), image)
    (root / "ann" / f"{stem}.txt").write_bytes(label_text.encode())
    return root / "img", root / "ann"


HAND_LABELS = (
    "imagesource:GoogleEarth\r\ngsd:0.5\r\n"
    "10 10 30 10 30 30 10 30 plane 1\r\n"           # window (0,0) only, whole: keeps difficult 1
    "72 10 102 10 102 30 72 30 ship 1\r\n"          # 28/30 in x0=0, 22/30 in x0=80: kept twice, cut -> 2
    "150.5 120 170 120 170 140 150.5 140 tennis-court 0\r\n"  # whole in (80,80) only
    "95 150 125 150 125 170 95 170 harbor 0\r\n"    # 5/30 in x0=0 -> dropped there; whole in (80,80)
)


def test_split_hand_case_objects_difficult_and_pixels(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (170, 180, 3), dtype=np.uint8)
    img_dir, ann_dir = _write_case(tmp_path, image, HAND_LABELS)
    out = tmp_path / "out"
    report = split_dataset(img_dir, out, SplitConfig(size=100, gap=20), ann_dir=ann_dir, progress=False)
    names = sorted(p.stem for p in (out / "images").iterdir())
    assert names == ["P9__100__0___0", "P9__100__0___70", "P9__100__80___0", "P9__100__80___70"]
    assert sorted(p.stem for p in (out / "annfiles").iterdir()) == names
    assert report.images == 1 and report.patches == 4 and report.objects == 4

    def ann(name):
        return (out / "annfiles" / f"{name}.txt").read_text()

    assert ann("P9__100__0___0") == ("10.0 10.0 30.0 10.0 30.0 30.0 10.0 30.0 plane 1\n"
                                     "72.0 10.0 102.0 10.0 102.0 30.0 72.0 30.0 ship 2\n")
    assert ann("P9__100__80___0") == "-8.0 10.0 22.0 10.0 22.0 30.0 -8.0 30.0 ship 2\n"
    assert ann("P9__100__0___70") == ""
    assert ann("P9__100__80___70") == ("70.5 50.0 90.0 50.0 90.0 70.0 70.5 70.0 tennis-court 0\n"
                                       "15.0 80.0 45.0 80.0 45.0 100.0 15.0 100.0 harbor 0\n")
    for name in names:
        _, size, x, y = parse_patch_name(name)
        patch = cv2.imread(str(out / "images" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(patch, image[y:y + size, x:x + size])


def test_small_image_is_padded_and_workers_give_the_same_output(tmp_path):
    rng = np.random.default_rng(1)
    img_dir = tmp_path / "img"
    img_dir.mkdir()
    images = {"a": rng.integers(0, 256, (60, 90, 3), dtype=np.uint8),
              "b": rng.integers(0, 256, (130, 150, 3), dtype=np.uint8)}
    for stem, im in images.items():
        cv2.imwrite(str(img_dir / f"{stem}.png"), im)
    (img_dir / "notes.md").write_text("not an image")
    r1 = split_dataset(img_dir, tmp_path / "o1", SplitConfig(size=100, gap=20, padding_value=7), progress=False)
    r2 = split_dataset(img_dir, tmp_path / "o2", SplitConfig(size=100, gap=20, padding_value=7, workers=2),
                       progress=False)
    assert r1.ignored_files == ["notes.md"] and "notes.md" in r1.summary()
    files1 = sorted(os.listdir(tmp_path / "o1" / "images"))
    assert files1 == sorted(os.listdir(tmp_path / "o2" / "images"))
    assert r1.patches == r2.patches == len(files1) == 1 + 4
    a = cv2.imread(str(tmp_path / "o2" / "images" / "a__100__0___0.png"), cv2.IMREAD_UNCHANGED)
    assert a.shape == (100, 100, 3)
    np.testing.assert_array_equal(a[:60, :90], images["a"])
    assert (a[60:] == 7).all() and (a[:, 90:] == 7).all()
    # no labels: empty annotation files for every patch, as mmrotate writes them
    assert all((tmp_path / "o1" / "annfiles" / f.replace(".png", ".txt")).read_text() == "" for f in files1)


def test_opencv_and_fpng_writers_store_the_same_pixels(tmp_path):
    pytest.importorskip("fpng")
    image = np.random.default_rng(2).integers(0, 256, (120, 110, 3), dtype=np.uint8)
    img_dir, _ = _write_case(tmp_path, image, "")
    for enc in ("opencv", "fpng"):
        split_dataset(img_dir, tmp_path / enc, SplitConfig(size=100, gap=20, png_encoder=enc), progress=False)
    for name in os.listdir(tmp_path / "opencv" / "images"):
        a = cv2.imread(str(tmp_path / "opencv" / "images" / name), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(tmp_path / "fpng" / "images" / name), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(a, b)


def test_missing_label_file_is_an_error_or_counted(tmp_path, capsys):
    image = np.zeros((50, 50, 3), np.uint8)
    img_dir, ann_dir = _write_case(tmp_path, image, "")
    cv2.imwrite(str(img_dir / "Q1.png"), image)
    rc = main(["dota", "split", "--img-dir", str(img_dir), "--ann-dir", str(ann_dir), "--out-dir",
               str(tmp_path / "o"), "--size", "64", "--gap", "16", "--no-progress"])
    assert rc == 2 and "Q1.txt" in capsys.readouterr().err
    rc = main(["dota", "split", "--img-dir", str(img_dir), "--ann-dir", str(ann_dir), "--out-dir",
               str(tmp_path / "o2"), "--size", "64", "--gap", "16", "--no-progress", "--missing-labels", "empty"])
    err = capsys.readouterr().err
    assert rc == 0 and "1 images had no label file" in err
    assert sorted(os.listdir(tmp_path / "o2" / "images")) == ["P9__64__0___0.png", "Q1__64__0___0.png"]
    # splitting into a folder that already holds patches is refused
    rc = main(["dota", "split", "--img-dir", str(img_dir), "--out-dir", str(tmp_path / "o2"), "--size", "64",
               "--gap", "16", "--no-progress"])
    assert rc == 2 and "already holds files" in capsys.readouterr().err


def test_malformed_label_line_stops_the_split_naming_file_and_line(tmp_path, capsys):
    labels = "1 2 11 2 11 12 1 12 plane 0\n1 2 3\n"
    img_dir, ann_dir = _write_case(tmp_path, np.zeros((50, 50, 3), np.uint8), labels)
    cv2.imwrite(str(img_dir / "Q1.png"), np.zeros((50, 50, 3), np.uint8))
    (ann_dir / "Q1.txt").write_text("")
    for workers in ("1", "2"):  # the error also crosses the worker pool intact
        rc = main(["dota", "split", "--img-dir", str(img_dir), "--ann-dir", str(ann_dir), "--out-dir",
                   str(tmp_path / f"o{workers}"), "--size", "64", "--gap", "16", "--no-progress",
                   "--workers", workers])
        assert rc == 2 and f"{ann_dir / 'P9.txt'}:2" in capsys.readouterr().err
    rc = main(["dota", "split", "--img-dir", str(img_dir), "--ann-dir", str(ann_dir), "--out-dir",
               str(tmp_path / "o3"), "--size", "64", "--gap", "16", "--no-progress", "--skip-invalid"])
    err = capsys.readouterr().err
    assert rc == 0 and "skipped 1 malformed label lines" in err and "P9.txt:2" in err
    kept = (tmp_path / "o3" / "annfiles" / "P9__64__0___0.txt").read_text()
    assert kept == "1.0 2.0 11.0 2.0 11.0 12.0 1.0 12.0 plane 0\n"


def _png_with_chunk(png: bytes, ctype: bytes, payload: bytes) -> bytes:
    """Insert an ancillary chunk right after IHDR (8-byte signature + 25-byte IHDR chunk)."""
    import struct
    import zlib

    chunk = struct.pack(">I", len(payload)) + ctype + payload
    chunk += struct.pack(">I", zlib.crc32(ctype + payload) & 0xFFFFFFFF)
    return png[:33] + chunk + png[33:]


@pytest.mark.parametrize("variant", ["rgb", "gamma", "trns", "gray", "rgb16", "rgba", "palette", "jpg"])
def test_decoder_gives_opencv_imread_pixels(tmp_path, variant):
    from PIL import Image

    from rscovlm.dota.split import decode_rgb

    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    path = tmp_path / ("x.jpg" if variant == "jpg" else "x.png")
    if variant in ("rgb", "gamma", "trns", "jpg"):
        cv2.imwrite(str(path), rgb[..., ::-1])
        if variant == "gamma":
            path.write_bytes(_png_with_chunk(path.read_bytes(), b"gAMA", (45455).to_bytes(4, "big")))
        if variant == "trns":
            path.write_bytes(_png_with_chunk(path.read_bytes(), b"tRNS", bytes([0, 10, 0, 20, 0, 30])))
    elif variant == "gray":
        cv2.imwrite(str(path), rgb[..., 0])
    elif variant == "rgb16":
        cv2.imwrite(str(path), rgb.astype(np.uint16) * 257 + 3)
    elif variant == "rgba":
        cv2.imwrite(str(path), np.dstack([rgb, rgb[..., :1]]))
    else:
        Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(path)
    expected = cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1]
    np.testing.assert_array_equal(decode_rgb(path), expected)


def _iof_pair_loop(quads32, windows):
    """The definition, one pair at a time (as img_split evaluates it): polygon intersection area with the window
    where the enclosing boxes overlap, over the float32 object area clipped at 1e-6."""
    import shapely
    import shapely.geometry as sg

    out = np.zeros((len(quads32), len(windows)))
    for i, q in enumerate(quads32):
        poly = sg.Polygon(q.reshape(4, 2))
        xs, ys = q[0::2], q[1::2]
        for j, (x1, y1, x2, y2) in enumerate(windows):
            w = max(0.0, min(float(xs.max()), x2) - max(float(xs.min()), x1))
            h = max(0.0, min(float(ys.max()), y2) - max(float(ys.min()), y1))
            if w * h:
                win = sg.Polygon([(x1, y1), (x2, y1), (x2, y2), (x1, y2)])
                try:
                    out[i, j] = poly.intersection(win).area
                except shapely.errors.GEOSException:  # where img_split stops: the repaired polygon
                    out[i, j] = shapely.make_valid(poly).intersection(win).area
        out[i] /= max(np.float32(poly.area), np.float32(1e-6))
    return out


def test_vectorized_iof_equals_the_pair_loop_bit_for_bit():
    rng = np.random.default_rng(5)
    windows = sliding_windows(700, 500, size=256, gap=64)
    quads = []
    for _ in range(300):
        c = rng.uniform(0, [700, 500])
        quads.append((c + rng.normal(0, 25, (4, 2))).ravel())  # random quads: convex, concave, bow ties
    quads.append([10, 10, 10, 10, 10, 10, 10, 10])  # degenerate
    quads32 = np.round(np.array(quads), 1).astype(np.float32)
    got = window_iof(quads32, windows)
    want = _iof_pair_loop(quads32, windows)
    np.testing.assert_array_equal(got, want)
    assert ((got > 0) & (got < 1)).sum() > 50


@pytest.mark.skipif(not Path("/work/shared/data/dota_examples/labelTxt").is_dir(),
                    reason="public DOTA sample labels not present")
def test_real_dota_labels_iof_matches_the_pair_loop():
    from rscovlm.dota.io import read_labeltxt_dir

    for stem, lab in read_labeltxt_dir("/work/shared/data/dota_examples/labelTxt").items():
        quads32 = lab.objects.boxes.data.astype(np.float32)
        span = quads32.max(axis=0)
        windows = sliding_windows(int(span[0::2].max()) + 1, int(span[1::2].max()) + 1, 512, 100)
        np.testing.assert_array_equal(window_iof(quads32, windows), _iof_pair_loop(quads32, windows), err_msg=stem)


def test_explicit_fpng_without_the_package_is_a_clear_error(monkeypatch):
    import sys

    from rscovlm.dota.split import resolve_png_encoder

    monkeypatch.setitem(sys.modules, "fpng", None)  # import fpng -> ImportError
    assert resolve_png_encoder("auto") == "opencv"
    with pytest.raises(ValueError, match="needs the fpng package"):
        resolve_png_encoder("fpng")


@pytest.mark.parametrize("kwargs, field", [({"img_rate_thr": float("nan")}, "img_rate_thr"),
                                           ({"img_rate_thr": float("inf")}, "img_rate_thr"),
                                           ({"iof_thr": float("nan")}, "iof_thr"),
                                           ({"padding_value": 256}, "padding_value"),
                                           ({"padding_value": -1}, "padding_value")])
def test_config_rejects_values_that_would_split_nothing_or_crash(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SplitConfig(**kwargs)
    if "img_rate_thr" in kwargs:  # the window function alone as well (a NaN threshold kept no window)
        with pytest.raises(ValueError, match="img_rate_thr"):
            sliding_windows(500, 500, 100, 20, kwargs["img_rate_thr"])


@pytest.mark.parametrize("damage", ["header", "truncated"])
def test_unreadable_image_is_an_error_naming_the_file(tmp_path, capsys, damage):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)  # noise: the PNG has many data bytes to cut
    img_dir, ann_dir = _write_case(tmp_path, image, "")
    png = (img_dir / "P9.png").read_bytes()
    (img_dir / "P9.png").write_bytes(b"not an image" if damage == "header" else png[:len(png) // 2])
    cv2.imwrite(str(img_dir / "Q1.png"), image)  # a good image too, so that two workers really split in parallel
    for workers in ("1", "2"):
        rc = main(["dota", "split", "--img-dir", str(img_dir), "--out-dir", str(tmp_path / f"o{workers}"),
                   "--size", "64", "--gap", "16", "--no-progress", "--workers", workers])
        assert rc == 2 and "P9.png" in capsys.readouterr().err


# ---- damaged images ----------------------------------------------------------------------------------------------

def _scene_images(root: Path, formats: dict[str, str], size=(520, 400), seed=5, density=400.0):
    """Write one synthetic scene as ``{stem}.{ext}`` for each entry of ``formats`` (stem -> ext), with labels."""
    from PIL import Image

    from rscovlm.dota.io import write_labeltxt
    from rscovlm.dota.synthetic import generate_scene

    img, objects = generate_scene(*size, seed=seed, density=density)
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "ann").mkdir(parents=True, exist_ok=True)
    for stem, ext in formats.items():
        path = root / "img" / f"{stem}.{ext}"
        if ext == "tif":
            Image.fromarray(img).save(path)  # a striped TIFF, header first
        elif ext == "grey.png":
            path = root / "img" / f"{stem}.png"
            cv2.imwrite(str(path), img[..., 1])
        else:
            cv2.imwrite(str(path), img[..., ::-1])
        write_labeltxt(root / "ann" / f"{stem}.txt", objects)
    return img, objects


def _cut(path: Path, share: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * share)])


@pytest.mark.parametrize("ext", ["jpg", "png", "tif"])
def test_truncated_image_is_an_error_naming_it_or_skipped_and_counted(tmp_path, capsys, ext):
    # OpenCV decodes a cut JPEG into grey patches (and only prints "Premature end of JPEG file"): main split it
    # with exit 0 and label files full of objects over grey pixels
    _scene_images(tmp_path, {"P9": ext, "Q1": "png"})
    _cut(tmp_path / "img" / f"P9.{ext}")
    args = ["dota", "split", "--img-dir", str(tmp_path / "img"), "--ann-dir", str(tmp_path / "ann"), "--size",
            "256", "--gap", "56", "--no-progress"]
    for workers in ("1", "2"):
        rc = main(args + ["--out-dir", str(tmp_path / f"o{workers}"), "--workers", workers])
        err = capsys.readouterr().err
        assert rc == 2 and f"P9.{ext}" in err and "truncated" in err and "Traceback" not in err
        assert not (tmp_path / f"o{workers}" / "images").exists() or not any(
            p.name.startswith("P9") for p in (tmp_path / f"o{workers}" / "images").iterdir())
        rc = main(args + ["--out-dir", str(tmp_path / f"s{workers}"), "--workers", workers, "--skip-invalid"])
        err = capsys.readouterr().err
        assert rc == 0 and "skipped 1 damaged images" in err and f"P9.{ext}" in err
        assert "split 1 images into 6 patches" in err
        names = sorted(p.name for p in (tmp_path / f"s{workers}" / "images").iterdir())
        assert names and all(n.startswith("Q1__") for n in names)


def test_corrupt_tile_of_a_tiff_is_an_error_and_its_patches_are_removed_when_skipped(tmp_path, capsys):
    # a tile whose deflate data is damaged: OpenCV decodes it into wrong pixels and only logs an error
    pytest.importorskip("pyvips")
    tifffile = pytest.importorskip("tifffile")
    img, _ = _scene_images(tmp_path, {"Q1": "png"})
    path = tmp_path / "img" / "P9.tif"
    tifffile.imwrite(path, img, tile=(128, 128), photometric="rgb", compression="zlib")
    (tmp_path / "ann" / "P9.txt").write_text("")
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[0].dataoffsets[10], tif.pages[0].databytecounts[10]  # tile row 2
    data = bytearray(path.read_bytes())
    data[offset + 10:offset + count - 10] = bytes(count - 20)
    path.write_bytes(bytes(data))
    cfg = dict(size=256, gap=56, band_megapixels=0.05)  # P9 in three bands of windows: the first ones get written
    with pytest.raises(ImageReadError, match="P9.tif: damaged image data"):
        split_dataset(tmp_path / "img", tmp_path / "o", SplitConfig(size=256, gap=56), progress=False)
    for workers in (1, 2):
        out = tmp_path / f"s{workers}"
        report = split_dataset(tmp_path / "img", out, SplitConfig(**cfg, workers=workers, skip_invalid=True),
                               progress=False)
        assert report.images == 1 and len(report.invalid_images) == 1 and "P9.tif" in report.invalid_images[0]
        assert all(n.name.startswith("Q1__") for sub in ("images", "annfiles") for n in (out / sub).iterdir())
        assert report.patches == len(os.listdir(out / "images")) == 6


# ---- huge images: windowed reads -------------------------------------------------------------------------------

def _same_output(a: Path, b: Path) -> int:
    for sub in ("images", "annfiles"):
        assert sorted(os.listdir(a / sub)) == sorted(os.listdir(b / sub))
    for name in os.listdir(a / "annfiles"):
        assert (a / "annfiles" / name).read_bytes() == (b / "annfiles" / name).read_bytes(), name
    for name in os.listdir(a / "images"):
        np.testing.assert_array_equal(cv2.imread(str(a / "images" / name), cv2.IMREAD_UNCHANGED),
                                      cv2.imread(str(b / "images" / name), cv2.IMREAD_UNCHANGED), err_msg=name)
    return len(os.listdir(a / "images"))


def test_split_by_windows_equals_split_of_the_fully_decoded_image(tmp_path, monkeypatch):
    pytest.importorskip("pyvips")
    tifffile = pytest.importorskip("tifffile")
    img, objects = _scene_images(tmp_path, {"png": "png", "grey": "grey.png", "jpg": "jpg", "striped": "tif"},
                                 size=(1100, 900))
    tifffile.imwrite(tmp_path / "img" / "tiled.tif", img, tile=(128, 128), photometric="rgb", compression="zlib",
                     bigtiff=True)
    (tmp_path / "ann" / "tiled.txt").write_bytes((tmp_path / "ann" / "png.txt").read_bytes())
    cfg = dict(size=256, gap=56)
    # the reference: every image decoded whole by OpenCV (libvips made unavailable)
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "pyvips", None)
        ref = split_dataset(tmp_path / "img", tmp_path / "ref", SplitConfig(**cfg), ann_dir=tmp_path / "ann",
                            progress=False)
        # large images without pyvips: decoded whole, and the report says so and names the extra
        small_bands = split_dataset(tmp_path / "img", tmp_path / "nopyvips", SplitConfig(**cfg, band_megapixels=0.1),
                                    ann_dir=tmp_path / "ann", progress=False)
    assert ref.read_by_windows == 0 and not ref.decoded_whole
    assert len(small_bands.decoded_whole) == 5 and "pip install 'rscovlm[geo]'" in small_bands.summary()
    for workers in (1, 2):
        # 0.2 MP bands: a row of 6 windows is cut into column groups of <= 781 px: 2 bands of 3 windows
        got = split_dataset(tmp_path / "img", tmp_path / f"win{workers}",
                            SplitConfig(**cfg, band_megapixels=0.2, workers=workers), ann_dir=tmp_path / "ann",
                            progress=False)
        assert got.read_by_windows == 5 and not got.decoded_whole
        assert (got.patches, got.objects, got.kept_objects) == (ref.patches, ref.objects, ref.kept_objects)
        assert _same_output(tmp_path / "ref", tmp_path / f"win{workers}") == ref.patches == 5 * 30
    assert ref.kept_objects > ref.objects > 5 * 100


def test_progress_is_reported_band_by_band(tmp_path):
    pytest.importorskip("pyvips")
    from rscovlm.dota.split import ImageTask, split_image

    _scene_images(tmp_path, {"a": "png", "b": "tif"}, size=(1100, 900))
    cfg = SplitConfig(size=256, gap=56, band_megapixels=0.2)  # 6 x 5 windows; random: 2 bands per row
    for sub in ("images", "annfiles"):
        (tmp_path / "o" / sub).mkdir(parents=True)
    for stem, read in (("a", "sequential"), ("b", "random"), ("a", "whole")):
        calls = []
        path = tmp_path / "img" / f"{stem}.{'png' if stem == 'a' else 'tif'}"
        res = split_image(ImageTask(str(path), str(tmp_path / "ann" / f"{stem}.txt"), 1100, 900, read),
                          tmp_path / "o", cfg, progress=calls.append)
        assert sum(calls) == res.patches == 30
        assert len(calls) == (10 if read == "random" else 5), read


def test_window_bands_group_rows_and_respect_the_column_budget():
    from rscovlm.dota.split import window_bands

    windows = sliding_windows(1100, 900, 256, 56)  # x starts 0 200 400 600 800 844, y starts 0 200 400 600 644
    bands = window_bands(windows)
    assert [len(b) for b in bands] == [6] * 5 and [int(b[0, 1]) for b in bands] == [0, 200, 400, 600, 644]
    assert all((np.diff(b[:, 0]) > 0).all() for b in bands)
    cut = window_bands(windows, max_cols=500)
    assert all(b[-1, 2] - b[0, 0] <= 500 or len(b) == 1 for b in cut)
    assert sorted(map(tuple, np.concatenate(cut).tolist())) == sorted(map(tuple, windows.tolist()))


def _die(task, **_kwargs):
    os._exit(3)  # as a worker killed by the kernel for memory


def test_a_worker_that_dies_is_an_error_not_a_hang(tmp_path, capsys, monkeypatch):
    import rscovlm.dota.split as ds

    _scene_images(tmp_path, {"a": "png", "b": "png"})
    monkeypatch.setattr(ds, "split_image", _die)
    rc = main(["dota", "split", "--img-dir", str(tmp_path / "img"), "--out-dir", str(tmp_path / "o"), "--size",
               "256", "--gap", "56", "--no-progress", "--workers", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "worker process died" in err and "--band-megapixels" in err
