"""rscovlm.imageio for huge images: TIFF completeness, which files can be read by windows, and windows that give
exactly the pixels of a whole OpenCV decode."""

import struct
import sys
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from rscovlm._optional import MissingDependencyError
from rscovlm.imageio import ImageReadError, WindowReader, check_complete, decode_rgb, window_access

cv2.setNumThreads(1)


@pytest.fixture(scope="module")
def rgb():
    from rscovlm.dota.synthetic import generate_scene

    return generate_scene(300, 260, seed=3, density=300)[0]


@pytest.mark.parametrize("layout", ["pillow-striped", "tifffile-tiled", "tifffile-bigtiff"])
def test_cut_tiff_is_reported_truncated(tmp_path, rgb, layout):
    # libvips (fail_on below 'warning') and tifffile fill a cut TIFF's missing tiles without an error
    path = tmp_path / "a.tif"
    if layout == "pillow-striped":
        Image.fromarray(rgb).save(path)
    else:
        tifffile = pytest.importorskip("tifffile")
        tifffile.imwrite(path, rgb, tile=(64, 64), photometric="rgb", compression="zlib",
                         bigtiff=layout.endswith("bigtiff"))
    check_complete(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 100])
    with pytest.raises(ImageReadError, match=r"a\.tif: truncated TIFF"):
        check_complete(path)


def _png_with_chunk(png: bytes, ctype: bytes, payload: bytes) -> bytes:
    chunk = struct.pack(">I", len(payload)) + ctype + payload
    chunk += struct.pack(">I", zlib.crc32(ctype + payload) & 0xFFFFFFFF)
    return png[:33] + chunk + png[33:]


def _write(path, rgb, variant):
    if variant == "tiled.tif":
        tifffile = pytest.importorskip("tifffile")
        tifffile.imwrite(path, rgb, tile=(64, 64), photometric="rgb", compression="zlib")
    elif variant == "grey-tiled.tif":
        tifffile = pytest.importorskip("tifffile")
        tifffile.imwrite(path, rgb[..., 0], tile=(64, 64), compression="zlib")
    elif variant == "striped.tif":
        Image.fromarray(rgb).save(path)
    elif variant == "rgba.png":
        cv2.imwrite(str(path), np.dstack([rgb[..., ::-1], rgb[..., :1]]))
    elif variant == "grey-alpha.png":
        Image.fromarray(np.dstack([rgb[..., 0], rgb[..., 1]]), "LA").save(path)
    elif variant == "trns.png":
        cv2.imwrite(str(path), rgb[..., ::-1])
        path.write_bytes(_png_with_chunk(path.read_bytes(), b"tRNS", bytes([0, 10, 0, 20, 0, 30])))
    elif variant == "grey.jpg":
        cv2.imwrite(str(path), rgb[..., 0])
    elif variant == "progressive.jpg":
        cv2.imwrite(str(path), rgb[..., ::-1], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    else:
        cv2.imwrite(str(path), rgb[..., ::-1])


VARIANTS = ["rgb.png", "rgba.png", "grey-alpha.png", "trns.png", "rgb.jpg", "grey.jpg", "progressive.jpg",
            "tiled.tif", "grey-tiled.tif", "striped.tif"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_windows_give_the_pixels_of_a_whole_opencv_decode(tmp_path, rgb, variant):
    pytest.importorskip("pyvips")
    path = tmp_path / f"x.{variant.rsplit('.', 1)[1]}"
    _write(path, rgb, variant)
    whole = decode_rgb(path)
    access, why = window_access(path)
    assert access == ("random" if variant.endswith(".tif") else "sequential"), why
    with WindowReader(path, access) as reader:
        assert (reader.width, reader.height) == (300, 260)
        # bands top to bottom, overlapping (as split reads them); random access also out of order
        regions = [(0, 0, 300, 90), (40, 90, 300, 200), (0, 200, 120, 260)]
        if access == "random":
            regions += [(250, 10, 300, 30), (0, 0, 7, 5)]
        for x0, y0, x1, y1 in regions:
            got = reader.read(x0, y0, x1, y1)
            assert got.dtype == np.uint8 and got.shape == (y1 - y0, x1 - x0, 3)
            np.testing.assert_array_equal(got, whole[y0:y1, x0:x1], err_msg=str((x0, y0, x1, y1)))
        with pytest.raises(ValueError, match="not inside"):
            reader.read(0, 0, 301, 10)


@pytest.mark.parametrize("variant, reason", [("rgb16.png", "16 bits"), ("palette.png", "mode P"),
                                              ("cmyk.jpg", "mode CMYK"), ("rotated.jpg", "orientation 6"),
                                              ("x.bmp", "format (BMP)")])
def test_files_windows_would_decode_differently_are_refused(tmp_path, rgb, variant, reason):
    path = tmp_path / variant
    if variant == "rgb16.png":
        cv2.imwrite(str(path), rgb.astype(np.uint16) * 257)
    elif variant == "palette.png":
        Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(path)
    elif variant == "cmyk.jpg":
        Image.fromarray(rgb).convert("CMYK").save(path)
    elif variant == "rotated.jpg":
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(rgb).save(path, exif=exif)
    else:
        cv2.imwrite(str(path), rgb)
    access, why = window_access(path)
    assert access is None and reason in why


def test_damaged_window_is_an_error_naming_the_file(tmp_path, rgb):
    pytest.importorskip("pyvips")
    path = tmp_path / "cut.png"
    cv2.imwrite(str(path), rgb[..., ::-1])
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with WindowReader(path, "sequential") as reader:
        with pytest.raises(ImageReadError, match=r"cut\.png: damaged image data"):
            reader.read(0, 0, 300, 260)


def test_window_reader_without_pyvips_names_the_extra(tmp_path, rgb, monkeypatch):
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), rgb)
    monkeypatch.setitem(sys.modules, "pyvips", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'rscovlm\[geo\]'"):
        WindowReader(path, "sequential")


def test_image_read_error_survives_a_process_pool():
    import pickle

    err = pickle.loads(pickle.dumps(ImageReadError("/x/a.png", "truncated PNG")))
    assert isinstance(err, ImageReadError) and (err.path, err.reason) == ("/x/a.png", "truncated PNG")
    assert str(err) == "/x/a.png: truncated PNG"


def test_probing_a_png_does_not_decode_its_pixels(tmp_path, rgb, monkeypatch):
    # Pillow's getexif() on a PNG decodes the whole image (an eXIf chunk may follow the pixels): 3.4 GiB in a
    # split of a 30000^2 PNG before any window was read
    from PIL import ImageFile

    plain, rotated = tmp_path / "plain.png", tmp_path / "rotated.png"
    cv2.imwrite(str(plain), rgb)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(rotated, exif=exif)  # eXIf before the pixels: OpenCV applies it

    def no_decoding(self):
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert window_access(plain) == ("sequential", "")
    access, why = window_access(rotated)
    assert access is None and "orientation 6" in why
