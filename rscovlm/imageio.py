"""Reading image files so that a damaged file is an error naming it, never a grey or partial picture.

Every image read of the project goes through here (sample builder, collator, preview, demo, DOTA split):

- :func:`open_rgb` decodes a whole file with Pillow into an RGB image. Pillow raises on truncated PNG and JPEG
  data (``image file is truncated``) as long as ``ImageFile.LOAD_TRUNCATED_IMAGES`` is off; :func:`open_rgb`
  refuses to run when some other library has switched it on, instead of returning half an image.
- :func:`image_size` reads only the header (for pre-flight checks and frames).
- :func:`check_complete` is a cheap structural check for decoders that only warn on truncation (OpenCV's
  ``imread`` fills the missing part of a truncated JPEG with grey and prints "Premature end of JPEG file"): a
  JPEG must hold an end-of-image marker after its last start-of-scan, a PNG an ``IEND`` chunk.

Errors are :class:`ImageReadError` (a ``ValueError``) whose message starts with the path.
"""

from __future__ import annotations

import os
from pathlib import Path

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8"
_TAIL_BYTES = 1 << 16


class ImageReadError(ValueError):
    """An image file that is missing, not an image, truncated or otherwise undecodable."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


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
    only be the real end. PNG: an ``IEND`` chunk type in the file's tail. Other formats are not checked here
    (their decoders report truncation themselves)."""
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
