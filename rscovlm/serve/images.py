"""Images of the web viewer: upload checks, the store of images a page may show, and map tiles.

Uploads (:meth:`ImageStore.add_upload`) are streamed into the server's temporary folder and checked before any
pixel is decoded: the byte size (``max_upload_mb``), the type from the file's first bytes (PNG, JPEG, TIFF /
GeoTIFF; the name's extension is not trusted) and the pixel count from the header (``max_megapixels``); then
the file is opened with :class:`rscovlm.imageio.ImageSource`, the one image reader, so an undecodable file is
refused with its reason. A refused upload is an :class:`UploadRejected` carrying the HTTP status and a message
that names the file and the limit; its bytes are deleted.

Tiles (:meth:`StoredImage.tile`): the viewer is Leaflet with ``CRS.Simple``. At the native zoom ``N`` =
:attr:`StoredImage.native_zoom` one screen pixel is one image pixel; zoom ``z`` shows the image at ``2^(z-N)``.
Tile ``(z, x, y)`` covers the image pixels ``[x*T*f, (x+1)*T*f) x [y*T*f, (y+1)*T*f)`` with ``f = 2^(N-z)`` and
``T`` = :data:`TILE` (256); a tile reaching past the image is transparent there. A tile is read by a window of
the original (never the whole image), or - when one tile pixel would cover more original pixels than the
overview's - from the overview, the whole image resized once to at most ``overview_side`` pixels (in bounded
memory by :meth:`ImageSource.resized`).
"""

from __future__ import annotations

import io
import math
import os
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

TILE = 256
CHUNK = 1 << 20
KINDS = {"PNG": (b"\x89PNG\r\n\x1a\n",), "JPEG": (b"\xff\xd8\xff",),
         "TIFF": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")}
SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif"}


class UploadRejected(Exception):
    """An upload refused by a limit or by the reader: ``status`` (HTTP) and a message for the user."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Limits:
    """What an upload may be."""

    max_upload_mb: float = field(default=512.0, metadata={"help": "largest upload in MiB"})
    max_megapixels: float = field(default=1000.0, metadata={"help": "largest image in megapixels (width x "
                                                                    "height / 1e6)"})

    def __post_init__(self) -> None:
        if not (self.max_upload_mb > 0 and self.max_megapixels > 0):
            raise ValueError(f"upload limits must be positive, got {self.max_upload_mb} MiB and "
                             f"{self.max_megapixels} megapixels")


def sniff(head: bytes) -> str | None:
    """``PNG``, ``JPEG`` or ``TIFF`` from a file's first bytes, else None."""
    for kind, magics in KINDS.items():
        if any(head.startswith(m) for m in magics):
            return kind
    return None


def _display(name: str) -> str:
    return os.path.basename(name or "upload")[:120] or "upload"


class StoredImage:
    """One image the pages may show: a file (an upload in the temporary folder or a file the server was pointed
    at), its size, an :class:`~rscovlm.imageio.ImageSource` and the overview for low zooms. Reads are serialized
    per image (a source is not thread-safe). :meth:`release` frees the decoded pixels (the store keeps only the
    most recently used images open); the next read opens the file again. ``on_use`` is called before each read
    (outside this image's lock)."""

    def __init__(self, image_id: str, path: Path, name: str, overview_side: int = 2048, on_use=None):
        from rscovlm.imageio import ImageSource

        self.id, self.path, self.name = image_id, Path(path), name
        self._source = ImageSource(self.path)  # opened now: an unreadable file is refused at once
        self.size = self._source.size
        self.access = self._source.access
        self.georeferenced = self._source.georef is not None
        self.overview_side = overview_side
        self._overview = None
        self.on_use = on_use
        self.lock = threading.Lock()

    @property
    def source(self):
        """The open source (opened again after :meth:`release`); call under :attr:`lock`."""
        from rscovlm.imageio import ImageSource

        if self._source is None:
            self._source = ImageSource(self.path)
        return self._source

    @property
    def is_open(self) -> bool:
        return self._source is not None or self._overview is not None

    def release(self) -> None:
        with self.lock:
            if self._source is not None:
                self._source.close()
            self._source, self._overview = None, None

    @property
    def native_zoom(self) -> int:
        """The zoom at which one screen pixel is one image pixel (zoom 0 fits the image in one tile)."""
        return max(0, math.ceil(math.log2(max(self.size) / TILE))) if max(self.size) > TILE else 0

    def info(self) -> dict:
        w, h = self.size
        return {"id": self.id, "name": self.name, "width": w, "height": h, "tile": TILE,
                "native_zoom": self.native_zoom, "access": self.access, "georeferenced": self.georeferenced}

    def overview(self):
        """The whole image resized to at most ``overview_side`` on its long side (made once)."""
        if self._overview is None:
            w, h = self.size
            s = min(1.0, self.overview_side / max(w, h))
            self._overview = self.source.resized((max(1, round(w * s)), max(1, round(h * s))))
        return self._overview

    def region(self, x0: float, y0: float, x1: float, y1: float, out_w: int, out_h: int):
        """The image region ``[x0, x1) x [y0, y1)`` (original pixels, inside the image) as a PIL image of
        ``out_w`` x ``out_h``: from a window of the original, or from the overview when the output is coarser."""
        from PIL import Image

        w, h = self.size
        per_px = max((x1 - x0) / out_w, (y1 - y0) / out_h)  # original pixels per output pixel
        if self.on_use is not None:
            self.on_use(self)
        with self.lock:
            if per_px > max(w, h) / self.overview_side and max(w, h) > self.overview_side:
                ov = self.overview()
                sx, sy = ov.size[0] / w, ov.size[1] / h
                return ov.resize((out_w, out_h), Image.Resampling.BILINEAR,
                                 box=(x0 * sx, y0 * sy, x1 * sx, y1 * sy))
            ix0, iy0 = int(math.floor(x0)), int(math.floor(y0))
            ix1, iy1 = min(w, int(math.ceil(x1))), min(h, int(math.ceil(y1)))
            crop = Image.fromarray(self.source.read(ix0, iy0, ix1, iy1))
            return crop.resize((out_w, out_h), Image.Resampling.BILINEAR,
                               box=(x0 - ix0, y0 - iy0, x1 - ix0, y1 - iy0))

    def tile(self, z: int, x: int, y: int) -> bytes | None:
        """PNG bytes of tile ``(z, x, y)`` (module docstring), or None when it lies outside the image."""
        from PIL import Image

        if z < 0 or z > self.native_zoom or x < 0 or y < 0:
            return None
        f = 2 ** (self.native_zoom - z)
        w, h = self.size
        x0, y0 = x * TILE * f, y * TILE * f
        if x0 >= w or y0 >= h:
            return None
        x1, y1 = min(w, x0 + TILE * f), min(h, y0 + TILE * f)
        tw, th = max(1, math.ceil((x1 - x0) / f)), max(1, math.ceil((y1 - y0) / f))
        part = self.region(x0, y0, x1, y1, tw, th)  # an edge tile: at most a pixel of stretch
        out = Image.new("RGBA", (TILE, TILE), (0, 0, 0, 0))
        out.paste(part.convert("RGBA"), (0, 0))
        buf = io.BytesIO()
        out.save(buf, "PNG", compress_level=1)
        return buf.getvalue()

    def close(self) -> None:
        self.release()


class ImageStore:
    """The images known to a server: uploads (written under ``folder``) and files it was pointed at."""

    def __init__(self, folder: Path, limits: Limits, overview_side: int = 2048, max_open: int = 4):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.limits, self.overview_side, self.max_open = limits, overview_side, max_open
        self.images: dict[str, StoredImage] = {}
        self._by_path: dict[str, str] = {}
        self._lock = threading.Lock()
        self._recent: OrderedDict[str, StoredImage] = OrderedDict()

    def _use(self, image: StoredImage) -> None:
        """Mark ``image`` as just used; release the least recently used beyond ``max_open`` (so memory holds at
        most ``max_open`` decoded images and overviews however many are uploaded)."""
        with self._lock:
            self._recent[image.id] = image
            self._recent.move_to_end(image.id)
            evict = []
            while len(self._recent) > self.max_open:
                evict.append(self._recent.popitem(last=False)[1])
        for old in evict:
            old.release()

    def _new(self, image_id: str, path: Path, name: str) -> StoredImage:
        image = StoredImage(image_id, path, name, self.overview_side, on_use=self._use)
        self._use(image)
        return image

    def get(self, image_id: str) -> StoredImage:
        try:
            return self.images[image_id]
        except KeyError:
            raise KeyError(f"no image {image_id!r} on this server (upload it again: uploads last as long as the "
                           "server runs)") from None

    def add_file(self, path: str | os.PathLike, name: str | None = None) -> StoredImage:
        """A file on this machine (a benchmark image, a file of the ``--images`` folder); one entry per path."""
        from rscovlm.imageio import ImageReadError

        key = str(Path(path).resolve())
        with self._lock:
            if key in self._by_path:
                return self.images[self._by_path[key]]
        try:
            image = self._new(uuid.uuid4().hex[:12], Path(key), name or Path(key).name)
        except ImageReadError as err:
            raise UploadRejected(422, str(err)) from None
        with self._lock:
            self.images[image.id] = image
            self._by_path[key] = image.id
        return image

    def begin_upload(self, name: str, declared_bytes: int | None = None) -> "Upload":
        """A new upload (refused at once when its declared size is over the limit); feed it with
        :meth:`Upload.write`, then :meth:`Upload.finish` checks it and adds it to the store."""
        shown = _display(name)
        limit = int(self.limits.max_upload_mb * (1 << 20))
        if declared_bytes is not None and declared_bytes > limit:
            raise UploadRejected(413, f"{shown}: the upload is {declared_bytes / (1 << 20):.1f} MiB, more than the "
                                      f"limit of {self.limits.max_upload_mb:g} MiB (rscovlm serve --max-upload-mb)")
        return Upload(self, shown, limit, self.limits.max_upload_mb)

    def add_upload(self, name: str, stream, declared_bytes: int | None = None) -> StoredImage:
        """An upload read from a binary file object (:meth:`begin_upload`, write, finish)."""
        upload = self.begin_upload(name, declared_bytes)
        try:
            while chunk := stream.read(CHUNK):
                upload.write(chunk)
        except BaseException:
            upload.discard()
            raise
        return upload.finish()

    def _add(self, image: StoredImage) -> StoredImage:
        with self._lock:
            self.images[image.id] = image
        return image

    def close(self) -> None:
        for image in list(self.images.values()):
            image.close()


class Upload:
    """An upload being written under the store's folder (module docstring); refused uploads leave nothing."""

    def __init__(self, store: ImageStore, name: str, limit: int, limit_mb: float):
        self.store, self.name, self.limit, self.limit_mb = store, name, limit, limit_mb
        self.id = uuid.uuid4().hex[:12]
        self.tmp = store.folder / f"{self.id}.part"
        self.file = open(self.tmp, "wb")
        self.total, self.head = 0, b""

    def write(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if self.total > self.limit:
            self.discard()
            raise UploadRejected(413, f"{self.name}: the upload is more than the limit of {self.limit_mb:g} MiB "
                                      "(rscovlm serve --max-upload-mb)")
        if len(self.head) < 16:
            self.head += chunk[:16 - len(self.head)]
        self.file.write(chunk)

    def discard(self) -> None:
        self.file.close()
        for p in (self.tmp, *self.store.folder.glob(f"{self.id}.*")):
            p.unlink(missing_ok=True)

    def finish(self) -> StoredImage:
        """Check type and pixel count, open it with the image reader, add it to the store."""
        from rscovlm.imageio import ImageReadError, display_size

        self.file.close()
        limits = self.store.limits
        try:
            if self.total == 0:
                raise UploadRejected(400, f"{self.name}: the upload is empty")
            kind = sniff(self.head)
            if kind is None:
                raise UploadRejected(415, f"{self.name}: not a PNG, JPEG or TIFF/GeoTIFF image (its first bytes are "
                                          f"{self.head[:8].hex(' ')}); upload one of those")
            path = self.store.folder / f"{self.id}{SUFFIX[kind]}"
            os.replace(self.tmp, path)
            try:
                w, h = display_size(path)
                mp = w * h / 1e6
                if mp > limits.max_megapixels:
                    raise UploadRejected(413, f"{self.name}: {w} x {h} px is {mp:.1f} megapixels, more than the "
                                              f"limit of {limits.max_megapixels:g} (rscovlm serve --max-megapixels)")
                image = self.store._new(self.id, path, self.name)
            except ImageReadError as err:
                raise UploadRejected(422, f"{self.name}: cannot be read as an image: {err.reason}") from None
        except BaseException:
            self.discard()
            raise
        return self.store._add(image)
