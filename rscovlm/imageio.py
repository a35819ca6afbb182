"""Reading image files so that a damaged file is an error naming it, never a grey or partial picture.

Every image read of the project goes through here (sample builder, collator, preview, demo, inference, zoom
crops, large-image detection, DOTA split):

- :class:`ImageSource` is the one reader of images as they are displayed, in 8-bit RGB: EXIF/TIFF orientation,
  modes, 16-bit and float data (documented stretch), multi-band GeoTIFF with nodata and georeferencing
  (rasterio), crops at native resolution by windows and the whole image resized to a model frame in bounded
  memory, so a 27k x 27k scene is never decoded whole. :func:`load_resized` / :func:`resize_to` /
  :func:`as_rgb` are the open-and-resize steps of training, inference and preview.
- :func:`open_rgb` decodes a whole file into an RGB image with :class:`ImageSource`'s rules (Pillow for 8-bit
  data). Pillow raises on truncated PNG and JPEG data (``image file is truncated``) as long as
  ``ImageFile.LOAD_TRUNCATED_IMAGES`` is off; :func:`open_rgb` refuses to run when some other library has
  switched it on, instead of returning half an image.
- :func:`image_size` reads only the header (for pre-flight checks and frames): the STORED size, as mmrotate's
  DOTA tools read it; :func:`display_size` the size after the orientation tag.
- :func:`check_complete` is a cheap structural check for decoders that only warn on truncation (OpenCV's
  ``imread`` fills the missing part of a truncated JPEG with grey and prints "Premature end of JPEG file"): a
  JPEG must hold an end-of-image marker after its last start-of-scan, a PNG an ``IEND`` chunk, a TIFF all the
  bytes its first image's strips or tiles point to (libvips and tifffile fill missing tiles of a cut TIFF with
  zeros, or with whatever lies past a bad offset, without an error).
- :func:`decode_rgb` decodes a whole file with OpenCV's pixels (``imread(IMREAD_COLOR)``, what mmrotate's DOTA
  tools see), after :func:`check_complete`.
- :class:`WindowReader` reads regions of huge images (libvips via pyvips, the ``geo`` extra) with the same
  pixels as :func:`decode_rgb`, without decoding the whole image: tiled or striped TIFF at random, PNG and JPEG
  top to bottom (:func:`window_access` says which, or why not).

Errors are :class:`ImageReadError` (a ``ValueError``) whose message starts with the path.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8"
_TAIL_BYTES = 1 << 16
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders


class ImageReadError(ValueError):
    """An image file that is missing, not an image, truncated or otherwise undecodable."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self):  # rebuilt from (path, reason) when it crosses a process pool
        return type(self), (self.path, self.reason)


def _pillow():
    from PIL import Image, ImageFile

    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True (set by some imported library or "
                           "user code): truncated images would decode as partly grey pictures; set it to False")
    Image.MAX_IMAGE_PIXELS = None  # remote-sensing scenes are legitimately huge; size limits are ours to set
    return Image


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` from the file header; pixels are not decoded."""
    Image = _pillow()
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "image file not found")
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, SyntaxError, ValueError) as err:  # UnidentifiedImageError is an OSError
        raise ImageReadError(path, f"cannot read the image header ({err})") from None


def open_rgb(path: str | os.PathLike, options: "ReadOptions | None" = None):
    """The whole image decoded into an RGB ``PIL.Image`` as it is displayed (:class:`ImageSource`'s rules:
    EXIF/TIFF orientation applied, grey replicated, palette and CMYK converted, alpha dropped, more than 8 bits
    stretched). Any size: this is the whole decode that :class:`ImageSource` avoids for huge files."""
    options = options or ReadOptions()
    options = ReadOptions(**{**{f: getattr(options, f) for f in options.__dataclass_fields__},
                             "max_decode_megapixels": math.inf})
    with ImageSource(path, options) as src:
        return src.whole()


def check_complete(path: str | os.PathLike) -> None:
    """Raise :class:`ImageReadError` when a JPEG or PNG file ends before its image data does.

    JPEG: the last start-of-scan marker (``FF DA``) must be followed by an end-of-image marker (``FF D9``);
    inside entropy-coded data a ``FF`` byte is always stuffed (``FF 00``) or a restart marker, so ``FF D9`` can
    only be the real end. PNG: an ``IEND`` chunk type in the file's tail. TIFF (first image): every strip or
    tile ends inside the file. Other formats are not checked here (OpenCV reports a cut BMP itself)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if head.startswith(_JPEG_SOI):
                data = f.read() if size <= 64 * _TAIL_BYTES else None
                if data is None:  # large file: the last scan starts somewhere; read backwards in blocks
                    data = _tail_from_last_sos(f, size)
                else:
                    data = head + data
                sos = data.rfind(b"\xff\xda")
                if sos < 0 or data.find(b"\xff\xd9", sos) < 0:
                    raise ImageReadError(path, "truncated JPEG (no end-of-image marker after the last scan)")
            elif head == _PNG_SIGNATURE:
                f.seek(max(0, size - _TAIL_BYTES))
                if b"IEND" not in f.read():
                    raise ImageReadError(path, "truncated PNG (no IEND chunk)")
            elif head[:4] in _TIFF_MAGIC:
                _check_tiff_segments(path, size)
    except FileNotFoundError:
        raise ImageReadError(path, "image file not found") from None


def _tail_from_last_sos(f, size: int) -> bytes:
    """Bytes from (at least) the last ``FF DA`` marker to the end of a large JPEG file, read backwards."""
    tail, pos = b"", size
    while pos > 0 and b"\xff\xda" not in tail:
        start = max(0, pos - 64 * _TAIL_BYTES)
        f.seek(start)
        tail = f.read(pos - start) + tail
        pos = start
    return tail


def _check_tiff_segments(path: Path, size: int) -> None:
    """The strips or tiles of the first TIFF image (offset + byte count, from the header via Pillow, or tifffile
    for the layouts Pillow does not open: multi-band, 16-bit RGB, ...) end inside the file."""
    Image = _pillow()
    try:
        with Image.open(path) as im:
            tags = im.tag_v2
            offsets = tags.get(324) or tags.get(273) or ()  # TileOffsets, else StripOffsets
            counts = tags.get(325) or tags.get(279) or ()
    except (OSError, SyntaxError, ValueError) as err:
        from rscovlm._optional import available

        if not available("tifffile"):
            raise ImageReadError(path, f"cannot read the TIFF header ({err})") from None
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                offsets, counts = tif.pages[0].dataoffsets, tif.pages[0].databytecounts
        except Exception as err2:  # tifffile's errors vary (TiffFileError, ValueError, struct.error)
            raise ImageReadError(path, f"cannot read the TIFF header ({err2})") from None
    offsets = (offsets,) if isinstance(offsets, int) else offsets
    counts = (counts,) if isinstance(counts, int) else counts
    end = max((o + c for o, c in zip(offsets, counts)), default=0)
    if end > size:
        raise ImageReadError(path, f"truncated TIFF (its image data reaches byte {end}, the file has {size} bytes)")


# ---- OpenCV's pixels, whole or by windows ---------------------------------------------------------------------

def _is_rgb8_png(head: bytes) -> bool:
    """8-bit truecolour PNG (IHDR bit depth 8, colour type 2): decoders agree on these pixels exactly."""
    return len(head) >= 26 and head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR" and head[24] == 8 \
        and head[25] == 2


def decode_rgb(path: str | os.PathLike):
    """Decode a whole image to ``(H, W, 3)`` uint8 RGB with the pixels of OpenCV's ``imread(IMREAD_COLOR)``.

    :func:`check_complete` first (OpenCV would turn a cut JPEG into grey pixels). 8-bit RGB PNGs go through
    imagecodecs (libspng + zlib-ng, ~25% faster than OpenCV's libpng) when it is installed; everything else
    (grey, palette, 16 bit, alpha, JPEG, TIFF, BMP) through OpenCV, whose conversions (e.g. 16 -> 8 bit) DOTA
    tools rely on."""
    import cv2
    import numpy as np

    check_complete(path)
    path = str(path)
    with open(path, "rb") as f:
        head = f.read(26)
        if _is_rgb8_png(head):
            try:
                import imagecodecs
            except ImportError:
                imagecodecs = None
            if imagecodecs is not None:
                try:
                    f.seek(0)
                    rgb = imagecodecs.spng_decode(f.read())
                except Exception:  # damaged file: OpenCV decides (imagecodecs' errors vary)
                    rgb = None
                # a tRNS chunk adds alpha: OpenCV then decodes it the way DOTA tools see it
                if rgb is not None and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8:
                    return rgb
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageReadError(path, "OpenCV cannot decode this image (damaged, or not an image)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


_WINDOW_ACCESS = {"TIFF": "random", "PNG": "sequential", "JPEG": "sequential"}


def _pyvips():
    from rscovlm._optional import require

    pyvips = require("pyvips", "geo", "reading huge images by windows")
    pyvips.cache_set_max(0)  # no operation cache: every region is read once, memory stays that of the region
    return pyvips


def window_access(path: str | os.PathLike) -> tuple[str | None, str]:
    """How :class:`WindowReader` can read ``path``: ``("random", "")`` (tiled or striped TIFF),
    ``("sequential", "")`` (PNG, JPEG: top to bottom only), or ``(None, reason)`` when windows would not give
    :func:`decode_rgb`'s pixels: not 8-bit grey/RGB (palette, 16 bit, CMYK, YCbCr or min-is-white TIFF, whose
    conversions differ between libraries), an orientation tag (OpenCV applies it), another format.

    Reads the header with Pillow, so that a process that forks workers afterwards has not started libvips."""
    Image = _pillow()
    try:
        with Image.open(path) as im:
            fmt, mode = im.format, im.mode
            if fmt == "TIFF":
                tags = im.tag_v2
                bits, photometric, orientation = tags.get(258, (1,)), tags.get(262), tags.get(274, 1)
            else:  # Pillow's getexif() decodes a whole PNG to look for an eXIf chunk after the pixels; OpenCV
                # applies only one before them, which Pillow has already read into info at open
                exif = im.getexif() if fmt != "PNG" or "exif" in im.info else {}
                bits, photometric, orientation = (8,), None, exif.get(0x0112, 1)
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(path, f"cannot read the image header ({err})") from None
    if fmt == "PNG":
        with open(path, "rb") as f:
            bits = (f.read(25)[24],)  # IHDR bit depth (Pillow's mode hides 16 bits)
    access = _WINDOW_ACCESS.get(fmt)
    bits = (bits,) if isinstance(bits, int) else bits
    if access is None:
        return None, f"its format ({fmt}) is not read by windows"
    if mode not in ("L", "LA", "RGB", "RGBA") or any(b != 8 for b in bits) or photometric not in (None, 1, 2):
        return None, f"it is not 8-bit grey or RGB (mode {mode}, {bits[0]} bits" + (
            f", photometric {photometric})" if photometric is not None else ")")
    if orientation not in (None, 1):
        return None, f"it has orientation {orientation}, which OpenCV applies"
    return access, ""


def _vips_reason(err) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return "; ".join(lines[1:] or lines)[:300]


class WindowReader:
    """Regions of one image, decoded by libvips with the pixels of :func:`decode_rgb` (8-bit layouts that
    :func:`window_access` accepts): ``read(x0, y0, x1, y1)`` -> ``(y1-y0, x1-x0, 3)`` uint8 RGB (read-only for
    RGB images), inside the image. ``access="random"`` (tiled/striped TIFF): any region; only the tiles or
    strips it needs are decoded. ``access="sequential"`` (PNG, JPEG): regions must move down the image (each
    call's ``y0`` at or below the previous call's); the decoder streams and keeps only a few rows.

    Damaged data raises :class:`ImageReadError` (libvips ``fail_on``: any libtiff warning for TIFF, as OpenCV
    refuses such files; errors for PNG/JPEG). Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | os.PathLike, access: str):
        if access not in ("random", "sequential"):
            raise ValueError(f"access must be 'random' or 'sequential', got {access!r}")
        self.path, self.access = str(path), access
        self._vips = _pyvips()
        fail_on = "warning" if Path(path).suffix.lower() in (".tif", ".tiff") else "error"
        try:
            self._img = self._vips.Image.new_from_file(self.path, access=access, fail_on=fail_on)
            # one Region for every read: separate crop pipelines of a sequential PNG read out of order
            self._region = self._vips.Region.new(self._img)
        except self._vips.Error as err:
            raise ImageReadError(path, f"cannot open the image ({_vips_reason(err)})") from None
        self.width, self.height, self._bands = self._img.width, self._img.height, self._img.bands

    def read(self, x0: int, y0: int, x1: int, y1: int):
        import numpy as np

        if not (0 <= x0 < x1 <= self.width and 0 <= y0 < y1 <= self.height):
            raise ValueError(f"region {x0, y0, x1, y1} is not inside the {self.width} x {self.height} image")
        if self._img.format != "uchar" or self._bands > 4:
            raise ImageReadError(self.path, f"not read by windows: libvips gives {self._bands} bands of "
                                            f"{self._img.format} (8-bit grey or RGB expected)")
        try:
            data = self._region.fetch(x0, y0, x1 - x0, y1 - y0)
        except self._vips.Error as err:
            raise ImageReadError(self.path, f"damaged image data ({_vips_reason(err)})") from None
        a = np.frombuffer(data, np.uint8).reshape(y1 - y0, x1 - x0, self._bands)
        if self._bands <= 2:  # grey (+ alpha): OpenCV's IMREAD_COLOR replicates grey, drops alpha
            return np.repeat(a[..., :1], 3, axis=2)
        return a if self._bands == 3 else np.ascontiguousarray(a[..., :3])

    def close(self) -> None:
        self._img = self._region = None

    def __enter__(self) -> "WindowReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---- the one reader: any image, whole or by windows, as it is displayed, in 8-bit RGB --------------------------
#
# ImageSource is what inference (runners, zoom crops, large-image detection), training (builder, collator) and
# preview open images with. See its docstring for the rules (orientation, modes, bit depths, bands, nodata).

STRETCHES = ("percentile", "minmax", "bitdepth")

# EXIF orientation -> the array transform that turns the stored pixels into the displayed ones (what Pillow's
# ImageOps.exif_transpose does; checked against it in the tests)
_ORIENT_ARRAY = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np_rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np_rot90(a, 1),
}


def np_rot90(a, k: int):
    import numpy as np

    return np.rot90(a, k, axes=(0, 1))


def _display_to_stored(x: float, y: float, orientation: int, w: int, h: int) -> tuple[float, float]:
    """A point of the displayed image (edge coordinates, origin top-left) -> the stored image's (``w`` x ``h``)."""
    return {1: (x, y), 2: (w - x, y), 3: (w - x, h - y), 4: (x, h - y), 5: (y, x), 6: (y, h - x),
            7: (w - y, h - x), 8: (w - y, x)}[orientation]


@dataclass(frozen=True)
class ReadOptions:
    """How :class:`ImageSource` turns a file into 8-bit RGB."""

    stretch: str = field(default="percentile", metadata={
        "help": "data of more than 8 bits (16-bit, 32-bit, float) to 8 bits, per band: percentile (the "
                "percentiles of the valid pixels -> 0..255, clipped; QGIS' default view), minmax, or bitdepth "
                "(0..2**bits-1 -> 0..255). 8-bit data is used as stored"})
    percentiles: tuple[float, float] = field(default=(2.0, 98.0), metadata={
        "help": "low and high percentile of the percentile stretch"})
    bands: tuple[int, ...] | None = field(default=None, metadata={
        "help": "bands (1-based) shown as red, green, blue, or one band shown as grey; default: the bands whose "
                "colour interpretation is red, green, blue, else bands 1, 2, 3 (1 for one- or two-band files)"})
    exif_orientation: bool = field(default=True, metadata={
        "help": "apply the file's EXIF/TIFF orientation tag (the picture as a viewer shows it)"})
    max_decode_megapixels: float = field(default=64.0, metadata={
        "help": "images with more pixels are read by windows (never decoded whole: bounded memory); smaller "
                "ones are decoded whole with Pillow"})
    band_megabytes: float = field(default=32.0, metadata={
        "help": "memory of one band of rows when a windowed image is downsampled or scanned"})
    stats_pixels: int = field(default=1_000_000, metadata={
        "help": "about this many pixels (a regular grid of the stored image) give the stretch statistics"})

    def __post_init__(self) -> None:
        if self.stretch not in STRETCHES:
            raise ValueError(f"stretch must be one of {list(STRETCHES)}, got {self.stretch!r}")
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles}")
        if self.bands is not None and (len(self.bands) not in (1, 3) or min(self.bands) < 1):
            raise ValueError(f"bands must be one or three 1-based band numbers, got {self.bands}")
        if not self.max_decode_megapixels > 0 or not self.band_megabytes > 0 or self.stats_pixels < 1:
            raise ValueError("max_decode_megapixels, band_megabytes and stats_pixels must be positive")


@dataclass(frozen=True)
class GeoRef:
    """Georeferencing of a raster: ``crs`` (WKT), ``epsg`` (or None) and the affine ``transform``
    ``(a, b, c, d, e, f)``: for a point at column ``x``, row ``y`` of the STORED image (edge coordinates: (0, 0)
    is the top-left corner of the top-left pixel, as in GDAL and DOTA), ``X = a*x + b*y + c``,
    ``Y = d*x + e*y + f`` in the CRS."""

    crs: str
    epsg: int | None
    transform: tuple[float, float, float, float, float, float]

    def apply(self, xy):
        """``(N, 2)`` stored-image pixel points -> ``(N, 2)`` CRS coordinates."""
        import numpy as np

        a, b, c, d, e, f = self.transform
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        return np.stack([a * xy[:, 0] + b * xy[:, 1] + c, d * xy[:, 0] + e * xy[:, 1] + f], axis=1)


@dataclass(frozen=True)
class _Header:
    format: str
    size: tuple[int, int]  # stored width, height
    mode: str | None
    bits: int
    orientation: int


def _tiff_header(path: Path) -> _Header | None:
    """TIFF facts with tifffile (any sample format, BigTIFF), or None when tifffile is missing."""
    from rscovlm._optional import available

    if not available("tifffile"):
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            bits = page.bitspersample
            orientation = page.tags.get(274)
            return _Header("TIFF", (int(page.imagewidth), int(page.imagelength)), None,
                           int(bits[0] if isinstance(bits, tuple) else bits),
                           int(orientation.value) if orientation is not None else 1)
    except Exception as err:  # tifffile raises TiffFileError, ValueError, struct errors ...
        raise ImageReadError(path, f"cannot read the TIFF header ({err})") from None


def _read_header(path: Path) -> _Header:
    """Format, stored size, Pillow mode, bits per sample and orientation, from the header only (a PNG's pixels
    are not decoded: Pillow's getexif() would decode the whole image to look for a late eXIf chunk)."""
    if not path.is_file():
        raise ImageReadError(path, "image file not found")
    with open(path, "rb") as f:
        head = f.read(26)
    if head[:4] in _TIFF_MAGIC:
        header = _tiff_header(path)
        if header is not None:
            return header
    Image = _pillow()
    try:
        with Image.open(path) as im:
            fmt, mode, size = im.format, im.mode, im.size
            if fmt == "TIFF":
                bits = im.tag_v2.get(258, (8,))
                bits = bits[0] if isinstance(bits, tuple) else bits
                orientation = im.tag_v2.get(274, 1)
            else:
                exif = im.getexif() if fmt != "PNG" or "exif" in im.info else {}
                orientation = exif.get(0x0112, 1)
                bits = head[24] if fmt == "PNG" else {"I;16": 16, "I;16B": 16, "I;16L": 16, "I": 32,
                                                      "F": 32}.get(mode, 8)
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(path, f"cannot read the image header ({err})") from None
    orientation = int(orientation) if orientation in range(1, 9) else 1
    return _Header(fmt, size, mode, int(bits), orientation)


def _to_hwc(a):
    return a[..., None] if a.ndim == 2 else a


class _Whole:
    """Engine: the whole file decoded once (Pillow; OpenCV for more than 8 bits), then sliced."""

    access = "memory"
    georef = None

    def __init__(self, path: Path, header: _Header):
        self.path, self.header = path, header
        self.size = header.size
        self._array = None
        self.bits = header.bits

    def _decode(self):
        import numpy as np

        if self._array is not None:
            return self._array
        Image = _pillow()
        if self.header.bits > 8 or self.header.mode in ("I", "F") or (self.header.mode or "").startswith("I;16"):
            import cv2

            check_complete(self.path)
            a = cv2.imread(str(self.path), cv2.IMREAD_UNCHANGED)
            if a is None:
                raise ImageReadError(self.path, "OpenCV cannot decode this image (damaged, or not an image)")
            if a.ndim == 3:  # OpenCV gives BGR(A); alpha is dropped
                a = a[..., [2, 1, 0]] if a.shape[2] >= 3 else a[..., :1]
            self._array = _to_hwc(a)
            return self._array
        try:
            with Image.open(self.path) as im:
                im.load()
                if im.mode not in ("RGB", "L"):
                    im = im.convert("L" if im.mode in ("1", "LA") else "RGB")
                self._array = _to_hwc(np.asarray(im))
        except (OSError, SyntaxError, ValueError) as err:
            raise ImageReadError(self.path, f"damaged or unreadable image ({err})") from None
        return self._array

    def read(self, x0: int, y0: int, x1: int, y1: int):
        return self._decode()[y0:y1, x0:x1], None

    def close(self) -> None:
        self._array = None


class _Vips:
    """Engine: 8-bit PNG / JPEG (top to bottom) or TIFF (any order) by windows (:class:`WindowReader`)."""

    georef = None
    bits = 8

    def __init__(self, path: Path, header: _Header, access: str):
        self.path, self.access = path, access
        self.size = header.size
        self._reader = WindowReader(path, access)
        self._last_y0 = -1

    def read(self, x0: int, y0: int, x1: int, y1: int):
        if self.access == "sequential" and y0 < self._last_y0:  # a sequential decoder cannot go back: restart
            self._reader.close()
            self._reader = WindowReader(self.path, self.access)
        self._last_y0 = y0
        return self._reader.read(x0, y0, x1, y1), None

    def close(self) -> None:
        self._reader.close()


class _Rasterio:
    """Engine: TIFF / GeoTIFF through rasterio (GDAL), any bit depth and band count, by windows."""

    access = "random"

    def __init__(self, path: Path, header: _Header, options: ReadOptions):
        import warnings

        from rscovlm._optional import require

        rasterio = require("rasterio", "geo", "reading GeoTIFF and multi-band images")
        check_complete(path)  # GDAL reads the missing tiles of a cut TIFF as zeros
        self.path = path
        self._rasterio = rasterio
        # GDAL's block cache defaults to 5% of RAM and keeps every tile it decoded: bound it, or a scan of a huge
        # file keeps the whole image in memory after all
        self._cache_mb = max(8, int(options.band_megabytes // 2))
        with warnings.catch_warnings(), rasterio.Env(GDAL_CACHEMAX=self._cache_mb):
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            try:
                self._src = rasterio.open(path)
            except rasterio.errors.RasterioError as err:
                raise ImageReadError(path, f"cannot open the raster ({err})") from None
        src = self._src
        self.size = (src.width, src.height)
        self.indexes = self._bands(src, options.bands)
        dtype = src.dtypes[self.indexes[0] - 1]
        nbits = src.tags(ns="IMAGE_STRUCTURE").get("NBITS")
        import numpy as np

        self.bits = int(nbits) if nbits else np.dtype(dtype).itemsize * 8
        self.is_float = np.dtype(dtype).kind == "f"
        self.has_mask = any(flag != rasterio.enums.MaskFlags.all_valid for flag in
                            (src.mask_flag_enums[i - 1][0] for i in self.indexes))
        self.nodata = src.nodata
        self.georef = None
        if src.crs is not None:
            t = src.transform
            self.georef = GeoRef(src.crs.to_wkt(), src.crs.to_epsg(), (t.a, t.b, t.c, t.d, t.e, t.f))

    def _bands(self, src, bands):
        from rasterio.enums import ColorInterp

        if bands is not None:
            if max(bands) > src.count:
                raise ImageReadError(self.path, f"bands {list(bands)} asked, the raster has {src.count}")
            return tuple(bands)
        interp = list(src.colorinterp)
        if all(c in interp for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)):
            return tuple(interp.index(c) + 1 for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue))
        return (1, 2, 3) if src.count >= 3 else (1,)

    def read(self, x0: int, y0: int, x1: int, y1: int):
        from rasterio.errors import RasterioError
        from rasterio.windows import Window

        window = Window(x0, y0, x1 - x0, y1 - y0)
        try:
            with self._rasterio.Env(GDAL_CACHEMAX=self._cache_mb):
                data = self._src.read(self.indexes, window=window)
                mask = None
                if self.has_mask:
                    mask = self._src.read_masks(self.indexes[0], window=window) > 0
                    for i in self.indexes[1:]:
                        mask &= self._src.read_masks(i, window=window) > 0
        except RasterioError as err:
            raise ImageReadError(self.path, f"damaged image data ({err})") from None
        return data.transpose(1, 2, 0), mask

    def close(self) -> None:
        self._src.close()


class ImageSource:
    """One image file, read as it is displayed, in 8-bit RGB, whole or by windows.

    Engines (chosen from the header): a TIFF goes through rasterio/GDAL when the ``geo`` extra is installed
    (tiled or striped, BigTIFF, any bit depth and band count, georeferencing, nodata masks; read by windows at
    random); any other image up to ``max_decode_megapixels`` is decoded whole (Pillow; OpenCV's
    ``IMREAD_UNCHANGED`` for more than 8 bits); a larger 8-bit PNG or JPEG is read by windows with libvips
    (:class:`WindowReader`, top to bottom; a read above the previous one restarts the decoder). A larger image
    that none of these reads is an :class:`ImageReadError` saying why - never a whole decode.

    Pixels:

    * orientation: the EXIF (JPEG, PNG eXIf before the pixels) or TIFF orientation tag is applied
      (``exif_orientation``); :attr:`size` is the displayed size, coordinates of :meth:`read` are displayed
      pixels. (:func:`image_size` keeps the stored size, as mmrotate's DOTA tools read it.)
    * modes: grey is replicated to RGB, palette and CMYK/YCbCr converted by Pillow, alpha dropped.
    * more than 8 bits (16-bit, 32-bit, float): per band ``stretch`` to 0..255 (:class:`ReadOptions`); the
      statistics come from a regular grid of about ``stats_pixels`` stored pixels, the same grid whichever engine
      reads the file, computed once per source, so a crop and the whole image share one stretch.
    * bands: ``bands`` (1-based) or the red/green/blue colour interpretation, else bands 1-3; one band is grey.
    * nodata: pixels that the raster's nodata value or mask marks invalid are left out of the statistics and
      come out black (0, 0, 0).

    :meth:`resized` gives the whole image at a model size with Pillow's bicubic filter (what training uses); a
    windowed image is resized band by band in bounded memory with the same filter weights (each band reads the
    filter's support around it), so the result equals a whole decode + resize. Use as a context manager or call
    :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike, options: ReadOptions | None = None):
        from rscovlm._optional import available

        self.path = Path(path)
        self.options = options or ReadOptions()
        header = _read_header(self.path)
        self.format = header.format
        self.orientation = header.orientation if self.options.exif_orientation else 1
        w, h = header.size
        if header.format == "TIFF" and available("rasterio"):
            self._engine = _Rasterio(self.path, header, self.options)
        elif w * h <= self.options.max_decode_megapixels * 1e6:
            self._engine = _Whole(self.path, header)
        else:
            access, why = window_access(self.path)
            if access is not None and self.orientation in ((1, 2) if access == "sequential" else range(1, 9)) \
                    and available("pyvips"):
                self._engine = _Vips(self.path, header, access)
            else:
                why = why or ("pyvips is not installed: pip install 'rscovlm[geo]'" if not available("pyvips")
                              else f"orientation {self.orientation} needs reading rows out of order")
                raise ImageReadError(self.path, f"{w} x {h} px is more than max_decode_megapixels "
                                                f"({self.options.max_decode_megapixels:g}) and it cannot be read "
                                                f"by windows: {why}")
        self.stored_size = self._engine.size
        sw, sh = self.stored_size
        self.size = (sh, sw) if self.orientation >= 5 else (sw, sh)
        self._stretch = None

    # ---- facts ----------------------------------------------------------------------------------------------
    @property
    def access(self) -> str:
        """``memory`` (decoded whole), ``random`` or ``sequential`` (windows)."""
        return self._engine.access

    @property
    def georef(self) -> GeoRef | None:
        return self._engine.georef

    def to_geo(self, xy):
        """``(N, 2)`` displayed pixel points -> CRS coordinates (None when the image is not georeferenced)."""
        import numpy as np

        if self.georef is None:
            return None
        sw, sh = self.stored_size
        pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        stored = np.array([_display_to_stored(x, y, self.orientation, sw, sh) for x, y in pts]).reshape(-1, 2)
        return self.georef.apply(stored)

    # ---- pixels ---------------------------------------------------------------------------------------------
    def read(self, x0: int, y0: int, x1: int, y1: int):
        """``(y1-y0, x1-x0, 3)`` uint8 RGB of the displayed region ``[x0, x1) x [y0, y1)`` (inside the image)."""
        import numpy as np

        w, h = self.size
        if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
            raise ValueError(f"{self.path}: region {x0, y0, x1, y1} is not inside the {w} x {h} image")
        sw, sh = self.stored_size
        corners = [_display_to_stored(x, y, self.orientation, sw, sh) for x, y in ((x0, y0), (x1, y1))]
        sx0, sx1 = sorted(int(round(c[0])) for c in corners)
        sy0, sy1 = sorted(int(round(c[1])) for c in corners)
        data, mask = self._engine.read(sx0, sy0, sx1, sy1)
        rgb = self._to_rgb8(data, mask)
        return np.ascontiguousarray(_ORIENT_ARRAY[self.orientation](rgb))

    def read_padded(self, x0: int, y0: int, x1: int, y1: int, fill: int = 0):
        """Like :meth:`read` for a region that may reach outside the image; the outside is ``fill``."""
        import numpy as np

        w, h = self.size
        out = np.full((y1 - y0, x1 - x0, 3), fill, dtype=np.uint8)
        ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if ix0 < ix1 and iy0 < iy1:
            out[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = self.read(ix0, iy0, ix1, iy1)
        return out

    def crop(self, x0: int, y0: int, x1: int, y1: int):
        """:meth:`read` as a PIL image."""
        from PIL import Image

        return Image.fromarray(self.read(x0, y0, x1, y1))

    def whole(self):
        """The whole displayed image as a PIL RGB image (refused beyond ``max_decode_megapixels``)."""
        w, h = self.size
        if self.access != "memory" and w * h > self.options.max_decode_megapixels * 1e6:
            raise ImageReadError(self.path, f"{w} x {h} px is more than max_decode_megapixels "
                                            f"({self.options.max_decode_megapixels:g}); read windows or resized()")
        return self.crop(0, 0, w, h)

    def resized(self, size: tuple[int, int]):
        """The whole image resized to ``size`` = ``(width, height)`` (Pillow bicubic; no-op at its own size)."""
        from PIL import Image

        tw, th = int(size[0]), int(size[1])
        w, h = self.size
        if self.access == "memory" or (tw >= w and th >= h) or w * h <= self.options.max_decode_megapixels * 1e6:
            return resize_to(self.whole(), (tw, th))
        scale = h / th
        margin = int(math.ceil(2 * max(scale, 1.0))) + 2  # bicubic support (2) scaled when shrinking, + slack
        rows = max(1, int(self.options.band_megabytes * 1e6 / (w * 3 * scale)))
        out = Image.new("RGB", (tw, th))
        for r0 in range(0, th, rows):
            r1 = min(th, r0 + rows)
            ys0, ys1 = r0 * scale, r1 * scale
            a, b = max(0, int(math.floor(ys0)) - margin), min(h, int(math.ceil(ys1)) + margin)
            band = Image.fromarray(self.read(0, a, w, b))
            out.paste(band.resize((tw, r1 - r0), Image.Resampling.BICUBIC, box=(0, ys0 - a, w, ys1 - a)), (0, r0))
        return out

    # ---- 8-bit conversion -------------------------------------------------------------------------------------
    def _to_rgb8(self, data, mask):
        import numpy as np

        data = _to_hwc(data)
        if data.dtype != np.uint8:
            lo, hi = self._stretch_params()
            span = np.where(hi > lo, hi - lo, 1.0)
            scaled = (data.astype(np.float64) - lo) * (255.0 / span)
            scaled = np.where(np.isfinite(scaled), scaled, 0.0)
            data = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        if mask is not None:
            data = np.where(mask[..., None], data, np.uint8(0))
        if data.shape[2] == 1:
            data = np.repeat(data, 3, axis=2)
        elif data.shape[2] == 2:  # grey + alpha
            data = np.repeat(data[..., :1], 3, axis=2)
        elif data.shape[2] > 3:
            data = data[..., :3]
        return data

    def _stretch_params(self):
        """Per-band ``(lo, hi)`` of the stretch (see the class docstring), computed once."""
        import numpy as np

        if self._stretch is not None:
            return self._stretch
        opt = self.options
        if opt.stretch == "bitdepth":
            if getattr(self._engine, "is_float", False):
                raise ImageReadError(self.path, "floating-point pixels have no bit depth: use stretch "
                                                "percentile or minmax")
            self._stretch = (np.float64(0.0), np.float64(2.0 ** self._engine.bits - 1))
            return self._stretch
        sw, sh = self.stored_size
        step = max(1, int(math.ceil(math.sqrt(sw * sh / opt.stats_pixels))))
        rows = max(step, int(opt.band_megabytes * 1e6 / (sw * 8)) // step * step)
        samples = []
        for y in range(0, sh, rows):
            data, mask = self._engine.read(0, y, sw, min(sh, y + rows))
            data = _to_hwc(data)[::step, ::step].astype(np.float64)
            valid = np.isfinite(data).all(axis=2)
            if mask is not None:
                valid &= mask[::step, ::step]
            samples.append(data[valid])
        values = np.concatenate(samples) if samples else np.zeros((0, 1))
        if len(values) == 0:
            lo, hi = np.zeros(values.shape[1]), np.ones(values.shape[1])
        elif opt.stretch == "minmax":
            lo, hi = values.min(axis=0), values.max(axis=0)
        else:
            lo, hi = np.percentile(values, opt.percentiles, axis=0)
        self._stretch = (lo, hi)
        return self._stretch

    def close(self) -> None:
        self._engine.close()

    def __enter__(self) -> "ImageSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def resize_to(image, size: tuple[int, int]):
    """``image`` (PIL) at ``size`` = ``(width, height)``: the model-frame resize of training and inference
    (Pillow bicubic); the image itself when it already has that size."""
    from PIL import Image

    size = (int(size[0]), int(size[1]))
    return image if image.size == size else image.resize(size, Image.Resampling.BICUBIC)


def as_rgb(value):
    """An RGB PIL image from a PIL image (any mode: 16-bit and float stretched as :class:`ImageSource` does,
    with statistics of that image) or a file (:class:`ImageSource`)."""
    from PIL import Image

    if isinstance(value, (str, os.PathLike)):
        return open_rgb(value)
    if not isinstance(value, Image.Image):
        raise TypeError(f"an image must be a path or a PIL image, got {type(value).__name__}")
    if value.mode == "RGB":
        return value
    if value.mode in ("I", "F") or value.mode.startswith("I;16"):
        import numpy as np

        a = np.asarray(value)
        lo, hi = np.percentile(a[np.isfinite(a)], ReadOptions().percentiles) if a.size else (0.0, 1.0)
        a = np.clip(np.rint((a.astype(np.float64) - lo) * (255.0 / (hi - lo if hi > lo else 1.0))), 0, 255)
        return Image.fromarray(a.astype(np.uint8)).convert("RGB")
    return value.convert("RGB")


def load_resized(value, size: tuple[int, int], expect_size: tuple[int, int] | None = None):
    """The image of ``value`` (a path or a PIL image) at ``size`` (model frame); ``expect_size`` (displayed
    width, height) is checked first: an :class:`ImageReadError` naming the file when it differs."""
    if isinstance(value, (str, os.PathLike)):
        with ImageSource(value) as src:
            if expect_size is not None and tuple(src.size) != tuple(int(v) for v in expect_size):
                raise ImageReadError(value, f"the image is {src.size[0]}x{src.size[1]}, but its record says "
                                            f"{expect_size[0]:g}x{expect_size[1]:g}")
            return src.resized(size)
    return resize_to(as_rgb(value), size)


def display_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` as displayed (EXIF/TIFF orientation applied), from the header."""
    header = _read_header(Path(path))
    w, h = header.size
    return (h, w) if header.orientation >= 5 else (w, h)
