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
decoded with OpenCV (``IMREAD_COLOR``: 3-channel BGR, 8 bit); the image size is read from the file header with
Pillow, as mmrotate does.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import re
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import shapely

from rscovlm.data.dota_io import read_labeltxt_arrays

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
    workers: int = field(default=1, metadata={"help": "worker processes (one image per task)"})
    missing_labels: Literal["error", "empty"] = field(
        default="error", metadata={"help": "an image without a label file: 'error', or 'empty' (no objects; "
                                           "counted in the report)"})
    skip_invalid: bool = field(default=False, metadata={"help": "skip malformed label lines (counted and "
                                                                "listed in the report) instead of stopping"})
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


# ---- pixels in and out (pixels identical to img_split's; PNG bytes differ) ----------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _is_rgb8_png(head: bytes) -> bool:
    """8-bit truecolour PNG (IHDR bit depth 8, colour type 2): decoders agree on these pixels exactly."""
    return len(head) >= 26 and head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR" and head[24] == 8 \
        and head[25] == 2


def decode_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an image to ``(H, W, 3)`` uint8 RGB with the pixels of OpenCV's ``imread(IMREAD_COLOR)``.

    8-bit RGB PNGs go through imagecodecs (libspng + zlib-ng, ~25% faster than OpenCV's libpng) when it is
    installed; everything else (grey, palette, 16 bit, alpha, JPEG, TIFF, BMP) through OpenCV, whose
    conversions (e.g. 16 -> 8 bit) img_split relies on."""
    import cv2

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
                    rgb = imagecodecs.spng_decode(head + f.read())
                except Exception:  # damaged file: OpenCV decides, as in img_split (imagecodecs' errors vary)
                    rgb = None
                # a tRNS chunk adds alpha: OpenCV then decodes it the way img_split sees it
                if rgb is not None and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8:
                    return rgb
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: OpenCV cannot decode this image (damaged or not an image)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


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
            raise ValueError("png_encoder 'fpng' needs the fpng package (pip install fpng, or rscovlm[fast]); "
                             "use 'opencv' or 'auto'") from None
        return "opencv"
    return "fpng"


# ---- one image -----------------------------------------------------------------------------------------------

@dataclass
class ImageTask:
    """One image to split: its path, its label file and its size in pixels (from the header)."""

    image_path: str
    label_path: str | None  # None: no labels for this split (or a missing file under missing_labels='empty')
    width: int
    height: int


@dataclass
class ImageResult:
    """What splitting one image did: patches written, objects read, (object, patch) pairs kept."""

    image_path: str
    patches: int
    objects: int
    kept: int
    seconds: float
    skipped: list = field(default_factory=list)  # SkippedLine of the label file


def read_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` from the image header (Pillow, as mmrotate does; pixels are not decoded)."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, SyntaxError) as err:  # UnidentifiedImageError is an OSError; broken headers raise either
        raise ValueError(f"{path}: cannot read the image header ({err})") from None


def split_image(task: ImageTask, out_dir: str | os.PathLike, cfg: SplitConfig, encoder: str | None = None
                ) -> ImageResult:
    """Cut one image (and its labels) into patches under ``out_dir/images`` and ``out_dir/annfiles``."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    stem = Path(task.image_path).stem
    encode = PNG_ENCODERS[resolve_png_encoder(encoder or cfg.png_encoder)]
    if task.label_path is not None:
        labels = read_labeltxt_arrays(task.label_path, skip_invalid=cfg.skip_invalid)
        quads32 = labels.quads.astype(np.float32)  # mmrotate keeps label coordinates in float32
        names, diffs = labels.labels, labels.difficult
    else:
        quads32, names, diffs = np.zeros((0, 8), np.float32), [], np.zeros(0, np.int64)
    windows = sliding_windows(task.width, task.height, cfg.size, cfg.gap, cfg.img_rate_thr)
    iofs = window_iof(quads32, windows)
    img = decode_rgb(task.image_path)
    kept_total = 0
    for j, (x1, y1, x2, y2) in enumerate(windows.tolist()):
        name = patch_name(stem, x2 - x1, x1, y1)
        patch = img[y1:y2, x1:x2]
        if patch.shape[0] < y2 - y1 or patch.shape[1] < x2 - x1:
            padded = np.full((y2 - y1, x2 - x1, img.shape[2]), cfg.padding_value, dtype=np.uint8)
            padded[:patch.shape[0], :patch.shape[1]] = patch
            patch = padded
        (out_dir / "images" / f"{name}.png").write_bytes(encode(patch))
        keep = np.flatnonzero(iofs[:, j] >= cfg.iof_thr)
        kept_total += len(keep)
        text = format_patch_objects(quads32[keep], [names[i] for i in keep], diffs[keep], iofs[keep, j] < 1,
                                    x1, y1)
        with open(out_dir / "annfiles" / f"{name}.txt", "w", encoding="utf-8", newline="") as f:
            f.write(text)
    return ImageResult(task.image_path, len(windows), len(quads32), kept_total, time.perf_counter() - t0,
                       labels.skipped if task.label_path is not None else [])


# ---- a folder ------------------------------------------------------------------------------------------------

@dataclass
class SplitReport:
    """Totals of :func:`split_dataset` (``kept_objects`` counts (object, patch) pairs, so an object cut by two
    windows counts twice) and everything left out: missing label files, ignored files, skipped label lines."""

    images: int = 0
    patches: int = 0
    objects: int = 0
    kept_objects: int = 0
    missing_label_files: list[str] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)
    skipped_lines: list = field(default_factory=list)  # SkippedLine, with skip_invalid
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [f"split {self.images} images into {self.patches} patches in {self.seconds:.1f} s "
                 f"({self.objects} objects -> {self.kept_objects} patch objects)"]
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
        return "\n".join(lines)


def plan_split(img_dir: str | os.PathLike, ann_dir: str | os.PathLike | None, cfg: SplitConfig
               ) -> tuple[list[ImageTask], SplitReport]:
    """List the images to split (largest first, for load balance) and check their label files."""
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
        width, height = read_image_size(path)
        tasks.append(ImageTask(str(path), label_path, width, height))
    tasks.sort(key=lambda t: -t.width * t.height)
    return tasks, report


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)  # one image per process already fills the cores


def split_dataset(img_dir: str | os.PathLike, out_dir: str | os.PathLike, cfg: SplitConfig | None = None,
                  ann_dir: str | os.PathLike | None = None, progress: bool = True) -> SplitReport:
    """Split every image of ``img_dir`` (with labels from ``ann_dir``) into ``out_dir`` (see module doc).

    ``out_dir/images`` and ``out_dir/annfiles`` are created and must not hold files yet."""
    from tqdm import tqdm

    cfg = cfg or SplitConfig()
    t0 = time.perf_counter()
    encoder = resolve_png_encoder(cfg.png_encoder)
    tasks, report = plan_split(img_dir, ann_dir, cfg)
    out_dir = Path(out_dir)
    for sub in ("images", "annfiles"):
        d = out_dir / sub
        if d.is_dir() and any(d.iterdir()):
            raise FileExistsError(f"{d} already holds files; split into a new or empty folder")
        d.mkdir(parents=True, exist_ok=True)
    work = partial(split_image, out_dir=str(out_dir), cfg=cfg, encoder=encoder)
    pool = None
    if cfg.workers > 1 and len(tasks) > 1:
        ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        pool = ctx.Pool(min(cfg.workers, len(tasks)), initializer=_worker_init)
    try:
        results = pool.imap_unordered(work, tasks, chunksize=1) if pool else map(work, tasks)
        with tqdm(total=len(tasks), unit="img", desc="split", disable=not progress) as bar:
            for res in results:
                report.images += 1
                report.patches += res.patches
                report.objects += res.objects
                report.kept_objects += res.kept
                report.skipped_lines += res.skipped
                bar.set_postfix(patches=report.patches, refresh=False)
                bar.update()
        if pool:
            pool.close()
            pool.join()
    finally:
        if pool:
            pool.terminate()
    report.seconds = time.perf_counter() - t0
    return report
