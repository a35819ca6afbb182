"""Split large DOTA images (and their labelTxt files) into fixed-size patches.

The output is the same as mmrotate's ``tools/data/dota/split/img_split.py`` (single size, single gap) gives with
the same settings: the same windows, the same patch pixels, the same kept objects with the same coordinates text
and the same difficult marks. Only the PNG bytes differ (a faster encoder; the decoded pixels are identical).

Windows (per axis, ``step = size - gap``)::

    n = 1 if W <= size else ceil((W - size) / step + 1)
    starts = [step * i for i in range(n)];  if n > 1 and starts[-1] + size > W: starts[-1] = W - size

All (x, y) start pairs, x-major. A window's image rate is the share of it that lies inside the image; windows
with rate ``<= img_rate_thr`` are dropped unless no window passes, in which case those within 0.01 of the best
rate are kept. Windows are always ``size`` x ``size``: parts outside the image are padded with ``padding_value``.

Objects: a quad is kept in a window when its intersection-over-object ``iof >= iof_thr``; the intersection is
the exact polygon intersection with the window (computed only where the enclosing boxes overlap), the object
area is taken in float32 as mmrotate does, and a kept object with ``iof < 1`` (cut by the window) gets
difficult ``2``. Coordinates are handled as float32 and written with ``str(numpy.float32)`` (``1054.0``,
``-3.5``), one ``x1 y1 ... x4 y4 class difficult`` line per object, ``\\n`` line ends.

Output layout::

    OUT/images/{stem}__{size}__{x}___{y}.png
    OUT/annfiles/{stem}__{size}__{x}___{y}.txt     (written for every patch, empty when no object is kept)

Input images are the files of ``img_dir`` with the extensions mmrotate reads (``.png .jpg .JPG .tif .bmp``),
with the pixels of OpenCV's ``imread(IMREAD_COLOR)`` (3 channels, 8 bit); the image size is read from the file
header with Pillow, as mmrotate does. Before any work every image is checked (:func:`rscovlm.imageio.check_complete`:
a cut JPEG, PNG or TIFF, which OpenCV would turn into grey or black pixels) and its header read; a damaged image
stops the split with an error naming it, or with ``skip_invalid`` is left out (its patches removed) and listed in
the report.

Memory: an image of at most ``band_megapixels`` is decoded whole by the worker that splits it (the fastest way).
A larger one is read by windows (libvips, ``pip install 'rscovlm[geo]'``), band by band: a band is the windows
sharing a top row (cut into column groups of at most ``band_megapixels``), so a worker holds at most one band of
pixels. A tiled or striped TIFF is read at random: its bands are separate tasks that the workers share, each
decoding only the tiles it needs. A PNG or JPEG can only be decoded top to bottom: one worker streams it,
keeping ``size`` rows. Images that cannot be read by windows (16-bit, CMYK, rotated by EXIF, BMP; or without
pyvips) are decoded whole and listed in the report. The pixels are the same either way. With pyvips installed
TIFFs of any size are read through libvips, which refuses a tile or strip with corrupt compressed data (OpenCV
decodes it into wrong pixels and only logs an error).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import re
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import shapely

from rscovlm._optional import available
from rscovlm.dota.io import read_labeltxt_arrays
from rscovlm.imageio import ImageReadError, WindowReader, check_complete, decode_rgb, image_size, window_access

IMAGE_EXTENSIONS = (".jpg", ".JPG", ".png", ".tif", ".bmp")  # the set mmrotate's img_split accepts
PATCH_NAME_RE = re.compile(r"^(?P<stem>.+)__(?P<size>\d+)__(?P<x>\d+)___(?P<y>\d+)$")
_RATE_EPS = 0.01
_AREA_EPS = 1e-6


@dataclass
class SplitConfig:
    """Settings of :func:`split_dataset`; defaults are the DOTA single-scale setting (1024 / 200)."""

    size: int = field(default=1024, metadata={"help": "patch side in pixels"})
    gap: int = field(default=200, metadata={"help": "overlap of neighbouring patches in pixels (< size)"})
    iof_thr: float = field(default=0.7, metadata={"help": "keep an object in a patch when its "
                                                          "intersection-over-object is >= this, in [0, 1)"})
    img_rate_thr: float = field(default=0.6, metadata={"help": "drop windows whose share inside the image is "
                                                               "<= this (unless no window passes)"})
    padding_value: int = field(default=0, metadata={"help": "pixel value for patch parts outside the image"})
    workers: int = field(default=1, metadata={"help": "worker processes (one image, or one band of windows "
                                                       "of a huge TIFF, per task)"})
    missing_labels: Literal["error", "empty"] = field(
        default="error", metadata={"help": "an image without a label file: 'error', or 'empty' (no objects; "
                                           "counted in the report)"})
    skip_invalid: bool = field(default=False, metadata={"help": "skip malformed label lines and damaged "
                                                                "images (counted and listed in the report) "
                                                                "instead of stopping"})
    band_megapixels: float = field(
        default=32.0, metadata={"help": "images of more megapixels are read by windows, in bands of at most "
                                        "about this many pixels (bounded memory; needs pyvips, rscovlm[geo]); "
                                        "smaller ones are decoded whole"})
    png_encoder: Literal["auto", "fpng", "opencv"] = field(
        default="auto", metadata={"help": "PNG writer: 'fpng' (fast, pip install fpng), 'opencv', or 'auto' "
                                          "(fpng when installed)"})

    def __post_init__(self) -> None:
        if not (isinstance(self.size, int) and self.size > 0):
            raise ValueError(f"size must be a positive integer, got {self.size!r}")
        if not (0 <= self.gap < self.size):
            raise ValueError(f"gap must be in [0, size), got gap={self.gap} size={self.size}")
        if not (0 <= self.iof_thr < 1):
            raise ValueError(f"iof_thr must be in [0, 1), got {self.iof_thr}")
        _check_img_rate_thr(self.img_rate_thr)
        if not (isinstance(self.padding_value, (int, np.integer)) and 0 <= self.padding_value <= 255):
            raise ValueError(f"padding_value must be an integer in [0, 255] (8-bit pixels), got "
                             f"{self.padding_value!r}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.missing_labels not in ("error", "empty"):
            raise ValueError(f"missing_labels must be 'error' or 'empty', got {self.missing_labels!r}")
        if not (math.isfinite(self.band_megapixels) and self.band_megapixels > 0):
            raise ValueError(f"band_megapixels must be a finite number > 0, got {self.band_megapixels}")
        if self.png_encoder not in PNG_ENCODERS and self.png_encoder != "auto":
            raise ValueError(f"png_encoder must be one of auto, {', '.join(PNG_ENCODERS)}")


# ---- windows and objects -----------------------------------------------------------------------------------

def _check_img_rate_thr(value: float) -> None:
    if not math.isfinite(value):  # NaN would keep no window at all, silently
        raise ValueError(f"img_rate_thr must be a finite number, got {value}")


def _axis_starts(length: int, size: int, step: int) -> list[int]:
    n = 1 if length <= size else math.ceil((length - size) / step + 1)
    starts = [step * i for i in range(n)]
    if len(starts) > 1 and starts[-1] + size > length:
        starts[-1] = length - size
    return starts


def sliding_windows(width: int, height: int, size: int = 1024, gap: int = 200,
                    img_rate_thr: float = 0.6) -> np.ndarray:
    """``(M, 4)`` int64 windows ``x1, y1, x2, y2`` (x-major order) of a ``width`` x ``height`` image."""
    if not 0 <= gap < size:
        raise ValueError(f"gap must be in [0, size), got gap={gap} size={size}")
    _check_img_rate_thr(img_rate_thr)
    step = size - gap
    xs, ys = _axis_starts(width, size, step), _axis_starts(height, size, step)
    start = np.array([(x, y) for x in xs for y in ys], dtype=np.int64)
    windows = np.concatenate([start, start + size], axis=1)
    inside = windows.copy()
    inside[:, 0::2] = np.clip(inside[:, 0::2], 0, width)
    inside[:, 1::2] = np.clip(inside[:, 1::2], 0, height)
    rates = ((inside[:, 2] - inside[:, 0]) * (inside[:, 3] - inside[:, 1])) / (size * size)
    if not (rates > img_rate_thr).any():
        rates[np.abs(rates - rates.max()) < _RATE_EPS] = 1
    return windows[rates > img_rate_thr]


def window_iof(quads: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """``(N, M)`` intersection-over-object of ``N`` quads (float32 coordinates) with ``M`` integer windows.

    Polygon intersections are evaluated (vectorized, shapely 2 / GEOS) only for pairs whose enclosing boxes
    overlap with positive area; other pairs are 0. The object area is rounded to float32 and clipped at 1e-6,
    the way mmrotate computes it, so that ``iof < 1`` (the truncation mark) agrees with it bit for bit."""
    quads = np.asarray(quads, dtype=np.float32)
    windows = np.asarray(windows, dtype=np.int64)
    rows, cols = len(quads), len(windows)
    if rows * cols == 0:
        return np.zeros((rows, cols), dtype=np.float32)
    pts = quads.reshape(rows, 4, 2)
    hbb = np.concatenate([pts.min(axis=1), pts.max(axis=1)], axis=1)[:, None, :]
    lt = np.maximum(hbb[..., :2], windows[..., :2])
    rb = np.minimum(hbb[..., 2:], windows[..., 2:])
    wh = np.clip(rb - lt, 0, np.inf)
    ii, jj = np.nonzero(wh[..., 0] * wh[..., 1])
    overlaps = np.zeros((rows, cols))
    if len(ii):
        obj_polys = shapely.polygons(pts)
        l, t, r, b = (windows[:, k] for k in range(4))
        win_polys = shapely.polygons(np.stack([l, t, r, t, r, b, l, b], axis=-1).reshape(cols, 4, 2))
        overlaps[ii, jj] = _intersection_areas(obj_polys, win_polys, ii, jj)
        areas = shapely.area(obj_polys).astype(np.float32)[:, None]
    else:
        areas = np.ones((rows, 1), dtype=np.float32)
    return overlaps / np.clip(areas, _AREA_EPS, np.inf)


def _intersection_areas(obj_polys: np.ndarray, win_polys: np.ndarray, ii: np.ndarray, jj: np.ndarray
                        ) -> np.ndarray:
    """Areas of ``obj_polys[ii] & win_polys[jj]``. Valid polygons in one vectorized GEOS call. Invalid ones
    (self-intersecting quads occur in real labels) pair by pair: GEOS still answers most of them exactly as
    img_split's loop gets them; where it raises a TopologyException (img_split stops there) the polygon is
    repaired with ``shapely.make_valid`` for that pair."""
    areas = np.zeros(len(ii))
    bad = ~shapely.is_valid(obj_polys)[ii]
    good = ~bad
    if good.any():
        areas[good] = shapely.area(shapely.intersection(obj_polys[ii[good]], win_polys[jj[good]]))
    for k in np.flatnonzero(bad):
        obj, win = obj_polys[ii[k]], win_polys[jj[k]]
        try:
            areas[k] = obj.intersection(win).area
        except shapely.errors.GEOSException:
            areas[k] = shapely.make_valid(obj).intersection(win).area
    return areas


def patch_name(stem: str, size: int, x: int, y: int) -> str:
    """``{stem}__{size}__{x}___{y}`` (mmrotate / DOTA devkit patch id)."""
    return f"{stem}__{size}__{x}___{y}"


def parse_patch_name(name: str) -> tuple[str, int, int, int] | None:
    """``(stem, size, x, y)`` of a patch id, or ``None`` when ``name`` is not one."""
    m = PATCH_NAME_RE.match(name)
    if m is None:
        return None
    return m["stem"], int(m["size"]), int(m["x"]), int(m["y"])


def format_patch_objects(quads32: np.ndarray, labels: list[str], difficult: np.ndarray, truncated: np.ndarray,
                         x: int, y: int) -> str:
    """Annotation text of one patch: float32 quads shifted by ``(-x, -y)``, ``str(numpy.float32)`` numbers,
    difficult replaced by 2 for truncated objects."""
    shifted = quads32 + np.array([-x, -y] * 4, dtype=np.float32)
    out = []
    for row, label, diff, trunc in zip(shifted, labels, difficult, truncated):
        out.append(" ".join(map(str, row)) + f" {label} {2 if trunc else int(diff)}\n")
    return "".join(out)


# ---- pixels out (pixels identical to img_split's; PNG bytes differ) -----------------------------------------

def _encode_opencv(rgb: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("OpenCV failed to encode a PNG patch")
    return buf.tobytes()


def _encode_fpng(rgb: np.ndarray) -> bytes:
    import fpng

    return bytes(fpng.from_ndarray(rgb))


PNG_ENCODERS: dict[str, Callable[[np.ndarray], bytes]] = {"fpng": _encode_fpng, "opencv": _encode_opencv}


def resolve_png_encoder(name: str) -> str:
    """``auto`` -> ``fpng`` when installed, else ``opencv``; an explicit ``fpng`` must be installed."""
    if name == "opencv":
        return name
    try:
        import fpng  # noqa: F401
    except ImportError:
        if name == "fpng":
            raise ValueError("png_encoder 'fpng' needs the fpng package (pip install 'rscovlm[fast]'); "
                             "use 'opencv' or 'auto'") from None
        return "opencv"
    return "fpng"


# ---- one image, or one band of windows of a huge image -----------------------------------------------------

Read = Literal["whole", "sequential", "random"]


@dataclass
class ImageTask:
    """One unit of work: an image (its path, label file and header size) and how its pixels are read.

    ``read``: ``whole`` (decoded at once), ``sequential`` (streamed top to bottom by windows, one task per
    image) or ``random`` (read by windows; the planner cuts the image into band tasks, each with its
    ``windows`` and the ``objects`` that may fall in them, read by the planner)."""

    image_path: str
    label_path: str | None  # None: no labels for this split (or a missing file under missing_labels='empty')
    width: int
    height: int
    read: Read = "whole"
    windows: np.ndarray | None = None  # (M, 4) windows of this task; None: all windows of the image
    objects: tuple | None = None  # (quads32 (N, 8), labels, difficult) of a band task


@dataclass
class ImageResult:
    """What one task did: patches written, objects read, (object, patch) pairs kept; or why the image was
    skipped (``invalid``, under skip_invalid: a damaged image)."""

    image_path: str
    patches: int
    objects: int
    kept: int
    seconds: float
    skipped: list = field(default_factory=list)  # SkippedLine of the label file
    invalid: str | None = None


def window_bands(windows: np.ndarray, max_cols: int | None = None) -> list[np.ndarray]:
    """Group windows into bands: the windows sharing a top row, left to right, bands top to bottom; with
    ``max_cols`` a band is cut where its columns would span more than that (a band of one window at least)."""
    if len(windows) == 0:
        return []
    order = np.lexsort((windows[:, 0], windows[:, 1]))
    windows = windows[order]
    bands = []
    for row in np.split(windows, np.flatnonzero(np.diff(windows[:, 1])) + 1):
        start = 0
        for k in range(1, len(row) + 1):
            if k == len(row) or (max_cols is not None and row[k, 2] - row[start, 0] > max_cols):
                bands.append(row[start:k])
                start = k
    return bands


def _band_cols(cfg: SplitConfig) -> int:
    return max(cfg.size, int(cfg.band_megapixels * 1e6 / cfg.size))


def _objects_in(objects: tuple, band: np.ndarray, iof_thr: float) -> tuple:
    """The objects whose enclosing box overlaps the band with positive area: the others have iof 0 with all
    its windows, so they are kept nowhere (unless iof_thr is 0, which keeps every object everywhere)."""
    quads32, names, diffs = objects
    if iof_thr <= 0 or len(quads32) == 0:
        return objects
    xs, ys = quads32[:, 0::2], quads32[:, 1::2]
    sel = np.flatnonzero((xs.max(axis=1) > band[:, 0].min()) & (xs.min(axis=1) < band[:, 2].max())
                         & (ys.max(axis=1) > band[:, 1].min()) & (ys.min(axis=1) < band[:, 3].max()))
    return quads32[sel], [names[i] for i in sel], diffs[sel]


def _band_objects(objects: tuple, band: np.ndarray, cfg: SplitConfig) -> tuple:
    """``(quads32, labels, difficult, iofs)`` of the objects that may fall in ``band``, with their iof."""
    quads32, names, diffs = _objects_in(objects, band, cfg.iof_thr)
    return quads32, names, diffs, window_iof(quads32, band)


def _write_band(region: np.ndarray, rx0: int, ry0: int, band: np.ndarray, band_objects: tuple, stem: str,
                out_dir: Path, cfg: SplitConfig, encode: Callable[[np.ndarray], bytes]) -> int:
    """Write the patches and annotation files of ``band``, cut from ``region`` (the image pixels from
    ``(rx0, ry0)``, covering every window's part inside the image) with the objects of :func:`_band_objects`.
    Returns the kept (object, patch) pairs."""
    quads32, names, diffs, iofs = band_objects
    kept = 0
    for j, (x1, y1, x2, y2) in enumerate(band.tolist()):
        name = patch_name(stem, x2 - x1, x1, y1)
        patch = region[y1 - ry0:y2 - ry0, x1 - rx0:x2 - rx0]
        if patch.shape[0] < y2 - y1 or patch.shape[1] < x2 - x1:
            padded = np.full((y2 - y1, x2 - x1, region.shape[2]), cfg.padding_value, dtype=np.uint8)
            padded[:patch.shape[0], :patch.shape[1]] = patch
            patch = padded
        (out_dir / "images" / f"{name}.png").write_bytes(encode(patch))
        keep = np.flatnonzero(iofs[:, j] >= cfg.iof_thr)
        kept += len(keep)
        text = format_patch_objects(quads32[keep], [names[i] for i in keep], diffs[keep], iofs[keep, j] < 1,
                                    x1, y1)
        with open(out_dir / "annfiles" / f"{name}.txt", "w", encoding="utf-8", newline="") as f:
            f.write(text)
    return kept


def _read_objects(task: ImageTask, cfg: SplitConfig) -> tuple[tuple, list]:
    if task.label_path is None:
        return (np.zeros((0, 8), np.float32), [], np.zeros(0, np.int64)), []
    labels = read_labeltxt_arrays(task.label_path, skip_invalid=cfg.skip_invalid)
    # mmrotate keeps label coordinates in float32
    return (labels.quads.astype(np.float32), labels.labels, labels.difficult), labels.skipped


def _no_progress(_n: int) -> None:
    pass


def split_image(task: ImageTask, out_dir: str | os.PathLike, cfg: SplitConfig, encoder: str | None = None,
                progress: Callable[[int], None] | None = None) -> ImageResult:
    """Cut one image (or the band of windows of a band task) and its labels into patches under
    ``out_dir/images`` and ``out_dir/annfiles``; ``progress(n)`` is called as each band's ``n`` patches are
    written. A damaged image raises :class:`ImageReadError`, or under ``cfg.skip_invalid`` gives a result with
    ``invalid`` set (patches of earlier bands may already be written: :func:`split_dataset` removes them)."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    progress = progress or _worker_progress or _no_progress
    stem = Path(task.image_path).stem
    encode = PNG_ENCODERS[resolve_png_encoder(encoder or cfg.png_encoder)]
    if task.objects is None:
        objects, skipped = _read_objects(task, cfg)
    else:
        objects, skipped = task.objects, []
    windows = task.windows if task.windows is not None else sliding_windows(task.width, task.height, cfg.size,
                                                                            cfg.gap, cfg.img_rate_thr)
    kept = 0
    try:
        if task.read == "whole":
            bands = window_bands(windows)
            labels = [_band_objects(objects, band, cfg) for band in bands]  # before the pixels take memory
            img = decode_rgb(task.image_path)
            for band, band_objects in zip(bands, labels):
                kept += _write_band(img, 0, 0, band, band_objects, stem, out_dir, cfg, encode)
                progress(len(band))
        elif task.read == "sequential":
            kept = _split_streamed(task, windows, objects, stem, out_dir, cfg, encode, progress)
        else:
            with WindowReader(task.image_path, "random") as reader:
                for band in window_bands(windows, _band_cols(cfg)):
                    x0, y0 = int(band[:, 0].min()), int(band[:, 1].min())
                    x1, y1 = min(int(band[:, 2].max()), task.width), min(int(band[:, 3].max()), task.height)
                    band_objects = _band_objects(objects, band, cfg)
                    kept += _write_band(reader.read(x0, y0, x1, y1), x0, y0, band, band_objects, stem, out_dir,
                                        cfg, encode)
                    progress(len(band))
    except ImageReadError as err:
        if not cfg.skip_invalid:
            raise
        return ImageResult(task.image_path, 0, 0, 0, time.perf_counter() - t0, skipped, invalid=err.reason)
    n_objects = len(objects[0]) if task.objects is None else 0  # a band task's objects are counted by the planner
    return ImageResult(task.image_path, len(windows), n_objects, kept, time.perf_counter() - t0, skipped)


def _split_streamed(task: ImageTask, windows: np.ndarray, objects: tuple, stem: str, out_dir: Path,
                    cfg: SplitConfig, encode, progress) -> int:
    """Split an image that decodes only top to bottom: bands in order, keeping the rows of the current band
    (``size`` full-width rows) and decoding each row once."""
    kept, buf, buf_y0, buf_y1 = 0, None, 0, 0
    with WindowReader(task.image_path, "sequential") as reader:
        for band in window_bands(windows):
            band_objects = _band_objects(objects, band, cfg)
            y0, y1 = int(band[0, 1]), min(int(band[:, 3].max()), task.height)
            if buf is None:
                buf = np.empty((y1 - y0, task.width, 3), np.uint8)
            keep = max(0, buf_y1 - y0)  # rows shared with the previous band (the gap)
            if keep:
                buf[:keep] = buf[buf_y1 - buf_y0 - keep:buf_y1 - buf_y0]
            if y1 > y0 + keep:
                buf[keep:y1 - y0] = reader.read(0, y0 + keep, task.width, y1)
            buf_y0, buf_y1 = y0, y1
            kept += _write_band(buf[:y1 - y0], 0, y0, band, band_objects, stem, out_dir, cfg, encode)
            progress(len(band))
    return kept


# ---- a folder ------------------------------------------------------------------------------------------------

@dataclass
class SplitReport:
    """Totals of :func:`split_dataset` (``kept_objects`` counts (object, patch) pairs, so an object cut by two
    windows counts twice) and everything left out: missing label files, ignored files, skipped label lines,
    damaged images skipped under skip_invalid; and the large images that had to be decoded whole."""

    images: int = 0
    patches: int = 0
    objects: int = 0
    kept_objects: int = 0
    missing_label_files: list[str] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)
    skipped_lines: list = field(default_factory=list)  # SkippedLine, with skip_invalid
    invalid_images: list[str] = field(default_factory=list)  # "path: reason", with skip_invalid
    decoded_whole: list[str] = field(default_factory=list)  # "name (why)": over band_megapixels, not by windows
    read_by_windows: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [f"split {self.images} images into {self.patches} patches in {self.seconds:.1f} s "
                 f"({self.objects} objects -> {self.kept_objects} patch objects)"
                 + (f"; {self.read_by_windows} large images read by windows" if self.read_by_windows else "")]
        if self.invalid_images:
            lines.append(f"skipped {len(self.invalid_images)} damaged images (no patches written): "
                         + "; ".join(self.invalid_images[:5]) + (" ..." if len(self.invalid_images) > 5 else ""))
        if self.missing_label_files:
            lines.append(f"{len(self.missing_label_files)} images had no label file and were split without "
                         f"objects: {', '.join(self.missing_label_files[:5])}"
                         + (" ..." if len(self.missing_label_files) > 5 else ""))
        if self.skipped_lines:
            lines.append(f"skipped {len(self.skipped_lines)} malformed label lines, e.g. "
                         + "; ".join(str(x) for x in self.skipped_lines[:3]))
        if self.ignored_files:
            lines.append(f"{len(self.ignored_files)} files in the image folder are not images with the "
                         f"extensions {' '.join(IMAGE_EXTENSIONS)} and were not split: "
                         f"{', '.join(self.ignored_files[:5])}" + (" ..." if len(self.ignored_files) > 5 else ""))
        if self.decoded_whole:
            lines.append(f"{len(self.decoded_whole)} large images were decoded whole (memory for the whole image "
                         f"per worker): " + "; ".join(self.decoded_whole[:5])
                         + (" ..." if len(self.decoded_whole) > 5 else ""))
        return "\n".join(lines)


def plan_split(img_dir: str | os.PathLike, ann_dir: str | os.PathLike | None, cfg: SplitConfig
               ) -> tuple[list[ImageTask], SplitReport]:
    """List the images to split (largest first, for load balance), check each image (complete file, readable
    header) and its label file, and choose how its pixels are read (see the module doc)."""
    img_dir = Path(img_dir)
    if not img_dir.is_dir():
        raise FileNotFoundError(f"image directory {img_dir} does not exist")
    if ann_dir is not None and not Path(ann_dir).is_dir():
        raise FileNotFoundError(f"annotation directory {ann_dir} does not exist")
    report = SplitReport()
    tasks = []
    for entry in sorted(os.listdir(img_dir)):
        path = img_dir / entry
        if not path.is_file():
            continue
        stem, ext = os.path.splitext(entry)
        if ext not in IMAGE_EXTENSIONS:
            report.ignored_files.append(entry)
            continue
        try:
            check_complete(path)
            width, height = image_size(path)
        except ImageReadError as err:
            if not cfg.skip_invalid:
                raise
            report.invalid_images.append(str(err))
            continue
        label_path = None
        if ann_dir is not None:
            candidate = Path(ann_dir) / f"{stem}.txt"
            if candidate.is_file():
                label_path = str(candidate)
            elif cfg.missing_labels == "error":
                raise FileNotFoundError(f"{candidate}: no label file for image {path} (use missing_labels="
                                        f"'empty' / --missing-labels empty to split it without objects)")
            else:
                report.missing_label_files.append(str(candidate))
        large = width * height > cfg.band_megapixels * 1e6
        read: Read = "whole"
        # TIFFs go through libvips whatever their size when it is installed: OpenCV decodes a tile with
        # corrupt compressed data into wrong pixels and only logs it, libvips (fail_on warning) refuses it
        if large or (ext == ".tif" and available("pyvips")):
            if not available("pyvips"):
                access, why = None, "pyvips is not installed: pip install 'rscovlm[geo]'"
            else:
                try:
                    access, why = window_access(path)
                except ImageReadError as err:
                    if not cfg.skip_invalid:
                        raise
                    report.invalid_images.append(str(err))
                    continue
            if access is not None and (large or access == "random"):
                read = access
                report.read_by_windows += large
            elif large:
                report.decoded_whole.append(f"{entry} ({width} x {height}: {why})")
        tasks.append(ImageTask(str(path), label_path, width, height, read))
    tasks.sort(key=lambda t: -t.width * t.height)
    return tasks, report


def _band_tasks(task: ImageTask, cfg: SplitConfig, report: SplitReport) -> tuple[list[ImageTask], int]:
    """The band tasks of a random-access image and its number of objects; its labels are read here, once, and
    each band carries the objects that may fall in it."""
    objects, skipped = _read_objects(task, cfg)
    report.skipped_lines += skipped
    windows = sliding_windows(task.width, task.height, cfg.size, cfg.gap, cfg.img_rate_thr)
    return [ImageTask(task.image_path, task.label_path, task.width, task.height, "random", band,
                      _objects_in(objects, band, cfg.iof_thr))
            for band in window_bands(windows, _band_cols(cfg))], len(objects[0])


_worker_progress: Callable[[int], None] | None = None


class SplitWorkerDied(RuntimeError):
    """A worker process ended abruptly (killed, e.g. by the kernel for memory)."""


def _worker_init(progress_queue, vips_threads: int) -> None:
    import cv2

    global _worker_progress
    cv2.setNumThreads(1)  # one image (or band) per process already fills the cores
    os.environ.setdefault("VIPS_CONCURRENCY", str(vips_threads))  # read when pyvips starts libvips
    _worker_progress = progress_queue.put if progress_queue is not None else None


def _remove_patches(task: ImageTask, out_dir: Path, cfg: SplitConfig) -> None:
    stem = Path(task.image_path).stem
    for x1, y1, x2, _ in sliding_windows(task.width, task.height, cfg.size, cfg.gap, cfg.img_rate_thr).tolist():
        name = patch_name(stem, x2 - x1, x1, y1)
        (out_dir / "images" / f"{name}.png").unlink(missing_ok=True)
        (out_dir / "annfiles" / f"{name}.txt").unlink(missing_ok=True)


def split_dataset(img_dir: str | os.PathLike, out_dir: str | os.PathLike, cfg: SplitConfig | None = None,
                  ann_dir: str | os.PathLike | None = None, progress: bool = True) -> SplitReport:
    """Split every image of ``img_dir`` (with labels from ``ann_dir``) into ``out_dir`` (see module doc).

    ``out_dir/images`` and ``out_dir/annfiles`` are created and must not hold files yet. The progress bar
    (stderr) counts patches, band by band."""
    from tqdm import tqdm

    cfg = cfg or SplitConfig()
    t0 = time.perf_counter()
    encoder = resolve_png_encoder(cfg.png_encoder)
    images, report = plan_split(img_dir, ann_dir, cfg)
    out_dir = Path(out_dir)
    for sub in ("images", "annfiles"):
        d = out_dir / sub
        if d.is_dir() and any(d.iterdir()):
            raise FileExistsError(f"{d} already holds files; split into a new or empty folder")
        d.mkdir(parents=True, exist_ok=True)
    per_image = {t.image_path: [0, 0, 0] for t in images}  # patches, objects, kept
    tasks = []
    for t in images:
        if t.read == "random" and t.width * t.height > cfg.band_megapixels * 1e6:
            bands, n_objects = _band_tasks(t, cfg, report)
            per_image[t.image_path][1] += n_objects
            tasks += bands
        else:
            tasks.append(t)
    total = sum(len(t.windows) if t.windows is not None else
                len(sliding_windows(t.width, t.height, cfg.size, cfg.gap, cfg.img_rate_thr)) for t in tasks)
    tasks_left = {t.image_path: 0 for t in images}
    for t in tasks:
        tasks_left[t.image_path] += 1
    invalid: dict[str, str] = {}
    workers = min(cfg.workers, len(tasks))
    bar = tqdm(total=total, unit="patch", desc="split", disable=not progress)
    pool = queue = drain = None
    try:
        if workers > 1:
            # libvips does not survive a fork: a caller that started it gets spawned workers
            method = "fork" if os.name == "posix" and "pyvips" not in sys.modules else "spawn"
            ctx = multiprocessing.get_context(method)
            queue = ctx.SimpleQueue()
            drain = threading.Thread(target=lambda: [bar.update(n) for n in iter(queue.get, None)], daemon=True)
            drain.start()
            # an executor, not a Pool: a worker killed (e.g. for memory) is an error, not a hang
            pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(queue, 1))
            work = partial(split_image, out_dir=str(out_dir), cfg=cfg, encoder=encoder)
            results = (f.result() for f in as_completed([pool.submit(work, t) for t in tasks]))
        else:
            work = partial(split_image, out_dir=str(out_dir), cfg=cfg, encoder=encoder, progress=bar.update)
            results = map(work, tasks)
        for res in results:
            tasks_left[res.image_path] -= 1
            bar.set_postfix(images=f"{sum(n == 0 for n in tasks_left.values())}/{len(images)}", refresh=False)
            report.skipped_lines += res.skipped
            if res.invalid is not None:
                invalid.setdefault(res.image_path, res.invalid)
                continue
            counts = per_image[res.image_path]
            counts[0] += res.patches
            counts[1] += res.objects
            counts[2] += res.kept
    except BrokenProcessPool as err:
        raise SplitWorkerDied(f"a split worker process died ({err}); if it ran out of memory, lower "
                              f"band_megapixels (--band-megapixels) or workers") from None
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
        if queue is not None:
            queue.put(None)
            drain.join(timeout=10)
        bar.close()
    for t in images:
        if t.image_path in invalid:
            _remove_patches(t, out_dir, cfg)
            report.invalid_images.append(f"{t.image_path}: {invalid[t.image_path]}")
            continue
        patches, objects, kept = per_image[t.image_path]
        report.images += 1
        report.patches += patches
        report.objects += objects
        report.kept_objects += kept
    report.seconds = time.perf_counter() - t0
    return report
