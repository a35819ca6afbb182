"""Reading image files so that a damaged file is an error naming it, never a grey or partial picture.

Every image read of the project goes through here (sample builder, collator, preview, demo, DOTA split):

- :func:`open_rgb` decodes a whole file with Pillow into an RGB image. Pillow raises on truncated PNG and JPEG
  data (``image file is truncated``) as long as ``ImageFile.LOAD_TRUNCATED_IMAGES`` is off; :func:`open_rgb`
  refuses to run when some other library has switched it on, instead of returning half an image.
- :func:`image_size` reads only the header (for pre-flight checks and frames).
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

import os
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


def open_rgb(path: str | os.PathLike):
    """The whole image decoded into an RGB ``PIL.Image`` (alpha dropped, grey/palette expanded)."""
    Image = _pillow()
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "image file not found")
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB") if im.mode != "RGB" else im.copy()
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(path, f"damaged or unreadable image ({err})") from None


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
    """The strips or tiles of the first TIFF image (offset + byte count, from the header via Pillow) end inside
    the file."""
    Image = _pillow()
    try:
        with Image.open(path) as im:
            tags = im.tag_v2
            offsets = tags.get(324) or tags.get(273) or ()  # TileOffsets, else StripOffsets
            counts = tags.get(325) or tags.get(279) or ()
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(path, f"cannot read the TIFF header ({err})") from None
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
