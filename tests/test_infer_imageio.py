"""The one image reader (rscovlm.imageio.ImageSource): orientation, modes, 16-bit and float data, multi-band
GeoTIFF with nodata and georeferencing, windowed reads equal to whole decodes, bounded-memory resizing, and the
training / preview paths that open images through it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from rscovlm.imageio import ImageReadError, ImageSource, ReadOptions, as_rgb, display_size, load_resized, open_rgb


@pytest.fixture(scope="module")
def rgb():
    from rscovlm.dota.synthetic import generate_scene

    return generate_scene(300, 260, seed=3, density=300)[0]


def _exif(orientation: int):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_and_tiff_orientation_give_the_displayed_picture(tmp_path, rgb, orientation):
    """On main open_rgb ignored the orientation tag: a camera JPEG tagged 'rotate 90' was read on its side."""
    png = tmp_path / "o.png"
    Image.fromarray(rgb).save(png, exif=_exif(orientation))
    with Image.open(png) as im:
        want = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert display_size(png) == want.shape[1::-1]
    np.testing.assert_array_equal(np.asarray(open_rgb(png)), want)
    with ImageSource(png) as src:
        assert src.size == want.shape[1::-1] and src.access == "memory"
        np.testing.assert_array_equal(src.read(10, 20, 110, 70), want[20:70, 10:110])
    tifffile = pytest.importorskip("tifffile")
    pytest.importorskip("rasterio")
    tif = tmp_path / "o.tif"  # the TIFF orientation tag, read by windows (rasterio) and mapped back
    tifffile.imwrite(tif, rgb, tile=(64, 64), photometric="rgb", extratags=[(274, 3, 1, orientation, True)])
    with ImageSource(tif) as src:
        assert src.access == "random" and src.size == want.shape[1::-1]
        np.testing.assert_array_equal(src.read(10, 20, 110, 70), want[20:70, 10:110])
        size = (140, 112) if orientation < 5 else (112, 140)
        expected = np.asarray(Image.fromarray(want).resize(size, Image.Resampling.BICUBIC))
        np.testing.assert_array_equal(np.asarray(src.resized(size)), expected)
    with ImageSource(png, ReadOptions(exif_orientation=False)) as src:  # the stored pixels, on request
        np.testing.assert_array_equal(np.asarray(src.whole()), rgb)


@pytest.mark.parametrize("kind", ["png", "jpg", "tif"])
def test_windowed_reads_and_banded_resize_equal_a_whole_decode(tmp_path, kind):
    """A file above max_decode_megapixels is read by windows (PNG/JPEG top to bottom with libvips, TIFF at
    random with rasterio); crops in any order and the whole image resized band by band (the bicubic filter's
    support read around each band) give the pixels of a whole decode + Pillow resize."""
    pytest.importorskip("pyvips")
    tifffile = pytest.importorskip("tifffile")
    pytest.importorskip("rasterio")
    from rscovlm.dota.synthetic import generate_scene

    big = generate_scene(1500, 1300, seed=1, density=100)[0]
    path = tmp_path / f"big.{kind}"
    if kind == "tif":
        tifffile.imwrite(path, big, tile=(256, 256), photometric="rgb", compression="zlib")
    else:
        Image.fromarray(big).save(path, **({"quality": 95} if kind == "jpg" else {}))
    whole = np.asarray(open_rgb(path)).astype(int)
    tolerance = 2 if kind == "jpg" else 0  # libvips' and Pillow's JPEG decoders may differ by a level
    with ImageSource(path, ReadOptions(max_decode_megapixels=0.5, band_megabytes=0.3)) as src:
        assert src.access == ("random" if kind == "tif" else "sequential")
        for x0, y0, x1, y1 in ((700, 900, 900, 1000), (100, 100, 200, 200), (0, 0, 1500, 7), (1499, 1299, 1500, 1300)):
            got = src.read(x0, y0, x1, y1).astype(int)  # the second region lies above the first: a restart
            assert np.abs(got - whole[y0:y1, x0:x1]).max() <= tolerance, (x0, y0)
        small = np.asarray(src.resized((336, 280))).astype(int)
        expected = np.asarray(Image.fromarray(whole.astype(np.uint8)).resize((336, 280), Image.Resampling.BICUBIC))
        assert np.abs(small - expected).max() <= tolerance
        padded = src.read_padded(-10, 1290, 20, 1310, fill=7)
        assert (padded[:, :10] == 7).all() and (padded[10:] == 7).all()
        assert np.abs(padded[:10, 10:].astype(int) - whole[1290:1300, :20]).max() <= tolerance
        with pytest.raises(ImageReadError, match="max_decode_megapixels"):
            src.whole()
        with pytest.raises(ValueError, match="not inside"):
            src.read(0, 0, 1501, 10)


def test_16_bit_and_float_data_are_stretched_not_clipped(tmp_path):
    """On main a 16-bit grey PNG opened almost white: Pillow's convert('RGB') clips values above 255."""
    import cv2

    grey = (np.arange(260 * 300).reshape(260, 300) % 4001).astype(np.uint16)  # values 0..4000
    path = tmp_path / "g16.png"
    cv2.imwrite(str(path), grey)
    lo, hi = np.percentile(grey, (2, 98))
    want = np.clip(np.rint((grey - lo) * 255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    got = np.asarray(open_rgb(path))
    np.testing.assert_array_equal(got[..., 0], want)
    assert (got[..., 0] == got[..., 2]).all() and 0.3 < (got[..., 0] > 127).mean() < 0.7
    bitdepth = np.asarray(open_rgb(path, ReadOptions(stretch="bitdepth")))[..., 0]
    np.testing.assert_array_equal(bitdepth, np.rint(grey * 255.0 / 65535).astype(np.uint8))
    minmax = np.asarray(open_rgb(path, ReadOptions(stretch="minmax")))[..., 0]
    assert minmax.min() == 0 and minmax.max() == 255
    # a PIL image of mode I;16 (what Pillow gives for such files) through the collator's opener
    pil16 = Image.fromarray(grey)
    assert pil16.mode.startswith("I;16")
    np.testing.assert_array_equal(np.asarray(as_rgb(pil16))[..., 1], want)
    from rscovlm.model.collator import _open_image

    np.testing.assert_array_equal(np.asarray(_open_image(pil16))[..., 1], want)


def test_geotiff_bands_nodata_and_georeferencing(tmp_path):
    """A 4-band 16-bit GeoTIFF whose colour interpretation puts blue first: the red, green, blue bands are shown;
    nodata pixels are left out of the stretch and come out black; a window and the whole share one stretch; the
    affine transform and projected CRS are reported and applied to displayed pixel points."""
    rasterio = pytest.importorskip("rasterio")
    from rasterio.enums import ColorInterp
    from rasterio.transform import Affine

    rng = np.random.default_rng(0)
    data = rng.integers(100, 3000, (4, 200, 300)).astype(np.uint16)
    data[:, :10, :10] = 0  # nodata corner
    data[:, 150:, 250:] = 65000  # bright outliers above the 98th percentile: clipped to 255
    transform = Affine(0.5, 0.1, 500000.0, 0.05, -0.5, 4200000.0)
    path = tmp_path / "g.tif"
    with rasterio.open(path, "w", driver="GTiff", width=300, height=200, count=4, dtype="uint16", crs="EPSG:32633",
                       transform=transform, nodata=0, tiled=True, blockxsize=64, blockysize=64) as dst:
        dst.write(data)
        dst.colorinterp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined]
    with ImageSource(path) as src:
        assert src.size == (300, 200) and src.georef.epsg == 32633
        assert src.georef.transform == tuple(transform)[:6]
        whole = src.read(0, 0, 300, 200)
        crop = src.read(100, 50, 160, 90)
        np.testing.assert_array_equal(crop, whole[50:90, 100:160])  # one stretch for all reads
        assert (whole[:10, :10] == 0).all() and (whole[150:, 250:] == 255).all()
        red = data[2].astype(float)
        lo, hi = np.percentile(red[data[0] != 0], (2, 98))
        want = np.clip(np.rint((red - lo) * 255.0 / (hi - lo)), 0, 255).astype(np.uint8)
        want[:10, :10] = 0
        np.testing.assert_array_equal(whole[..., 0], want)  # channel 0 is band 3 (red)
        corners = src.to_geo([[0, 0], [300, 200]])
        a, b, c, d, e, f = 0.5, 0.1, 500000.0, 0.05, -0.5, 4200000.0
        np.testing.assert_allclose(corners, [[c, f], [a * 300 + b * 200 + c, d * 300 + e * 200 + f]])
    with ImageSource(path, ReadOptions(bands=(4,))) as src:
        grey = src.read(20, 20, 30, 30)
        assert (grey[..., 0] == grey[..., 1]).all()


def test_huge_files_that_windows_cannot_read_are_refused_not_decoded(tmp_path):
    """Above max_decode_megapixels a file is never decoded whole: a 16-bit PNG or a BMP (no windowed reader) is
    an error naming the file and the reason."""
    import cv2

    path = tmp_path / "big16.png"
    cv2.imwrite(str(path), np.zeros((400, 500), np.uint16))
    with pytest.raises(ImageReadError, match=r"big16\.png: 500 x 400 px is more than max_decode_megapixels.*16 bits"):
        ImageSource(path, ReadOptions(max_decode_megapixels=0.1))
    bmp = tmp_path / "big.bmp"
    cv2.imwrite(str(bmp), np.zeros((400, 500, 3), np.uint8))
    with pytest.raises(ImageReadError, match=r"big\.bmp: .*format \(BMP\)"):
        ImageSource(bmp, ReadOptions(max_decode_megapixels=0.1))
    with pytest.raises(ImageReadError, match="image file not found"):
        ImageSource(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="stretch"):
        ReadOptions(stretch="gamma")


def test_training_and_preview_open_images_through_the_reader(tmp_path, rgb):
    """The builder (load_images), the collator and preview give the same model-frame pixels for an
    EXIF-rotated image: the displayed picture resized with Pillow's bicubic filter."""
    from rscovlm.data.builder import BuildConfig, SampleBuilder
    from rscovlm.data.mixture import UnitConfig
    from rscovlm.data.preview import _load_resized

    path = tmp_path / "rot.png"
    Image.fromarray(rgb).save(path, exif=_exif(6))  # displayed 260 x 300
    with Image.open(path) as im:
        shown = ImageOps.exif_transpose(im).convert("RGB")
    expected = np.asarray(shown.resize((224, 252), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(np.asarray(load_resized(path, (224, 252))), expected)
    np.testing.assert_array_equal(np.asarray(_load_resized({"image": str(path), "resized_width": 224,
                                                            "resized_height": 252})), expected)
    builder = SampleBuilder(BuildConfig(load_images=True, random_resize_prob=0.0))
    unit = UnitConfig(name="u", path="(test)", type="conversation", images=str(tmp_path))
    record = {"id": "r", "source": "t", "task": "vqa", "messages": [
        {"role": "user", "content": [{"type": "image", "image": "rot.png"}, {"type": "text", "text": "q"}]},
        {"role": "assistant", "content": "a"}]}
    built = builder.build(record, unit)
    part = built["messages"][0]["content"][0]
    assert (part["resized_width"], part["resized_height"]) == (252, 308)  # the displayed 260 x 300, resized
    with Image.open(path) as im:
        np.testing.assert_array_equal(
            np.asarray(part["image"]),
            np.asarray(ImageOps.exif_transpose(im).convert("RGB").resize((252, 308), Image.Resampling.BICUBIC)))
    with pytest.raises(ImageReadError, match="its record says"):
        load_resized(path, (224, 224), expect_size=(300, 260))  # the stored size is not the displayed one


def test_converters_read_sizes_with_the_one_reader_huge_headers_included(tmp_path):
    """``rscovlm data convert`` takes image sizes from the header through rscovlm.imageio: a 30000 x 30000 PNG
    (only its header exists here) has its size instead of Pillow's decompression-bomb refusal, and an unreadable
    file is a RecordError naming it."""
    import struct
    import zlib

    from rscovlm.data.converters.base import ImageSizes
    from rscovlm.data.records import Problem, RecordError

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    (tmp_path / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000,
                                                                                          8, 2, 0, 0, 0))
                                        + chunk(b"IEND", b""))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    sizes = ImageSizes(str(tmp_path))
    where = Problem("recs.json", 3, "image", "")
    assert sizes("huge.png", where) == (30000, 30000)
    with pytest.raises(RecordError, match="cannot read image") as err:
        sizes("bad.png", where)
    assert "bad.png" in err.value.problem.message and "cannot read the image header" in err.value.problem.message
    with pytest.raises(RecordError, match="image not found"):
        sizes("missing.png", where)
