"""Deterministic synthetic aerial scenes with rotated objects and their exact DOTA labels.

A scene is fully determined by ``(width, height, seed, SceneConfig)``:

* background - crop parcels in rows (each row shifted, each parcel a colour from a palette of fields, bare soil
  and grass), smooth value noise (64 px lattice) and per-pixel grain, all computed from integer hashes of the
  global pixel position, plus a few straight roads with lane marks;
* objects - rotated top-down silhouettes of DOTA categories (plane, small-vehicle, large-vehicle, ship,
  storage-tank, tennis-court, swimming-pool) with a soft shadow, placed without overlap (their enclosing circles
  are disjoint) and fully inside the image. Each label quad is the object's rotated rectangle in original-image
  pixels, normalized (clockwise on screen, starting at the smallest-y vertex), difficult 0.

Every pixel depends only on its global position and the scene description, so a scene rendered tile by tile
or strip by strip equals the same scene rendered at once (:func:`generate_scene`). :func:`write_scene` and
:func:`generate_dataset` never hold a whole image: they render strips (PNG, compressed as the rows come) or
blocks of tiles (tiled BigTIFF), so memory is the scene plan (~100 bytes per object) plus one strip, whatever
the size. Images are RGB uint8 (``H x W x 3``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from rscovlm.geometry import Boxes, Frame, ObjectSet, obb_to_quad

CATEGORIES = ("plane", "small-vehicle", "large-vehicle", "ship", "storage-tank", "tennis-court", "swimming-pool")

_SUB = 16  # cv2 fixed-point sub-pixel factor (shift=4)
_SHADE = 0.12  # shadow offset as a share of the object width


# ---- object silhouettes: parts in a unit box (u, v in [-0.5, 0.5], u along the object's length) ------------

def _ellipse(cu, cv, ru, rv, n=28):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cu + ru * np.cos(t), cv + rv * np.sin(t)], axis=1)


def _rect(u0, v0, u1, v1):
    return np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]], dtype=np.float64)


def _plane(color):
    body = _ellipse(0.0, 0.0, 0.5, 0.07)
    wings = np.array([[0.08, -0.5], [0.18, -0.5], [0.02, 0.0], [0.18, 0.5], [0.08, 0.5], [-0.12, 0.0]])
    tail = np.array([[-0.36, -0.2], [-0.3, -0.2], [-0.4, 0.0], [-0.3, 0.2], [-0.36, 0.2], [-0.48, 0.0]])
    return [(wings, color * 0.92), (tail, color * 0.92), (body, color), (_ellipse(0.4, 0, 0.05, 0.035),
                                                                         np.array([60, 70, 90.0]))]


def _car(color):
    return [(_rect(-0.5, -0.5, 0.5, 0.5), color), (_rect(0.12, -0.38, 0.3, 0.38), np.array([35, 40, 50.0])),
            (_rect(-0.38, -0.36, -0.22, 0.36), np.array([45, 50, 60.0]))]


def _truck(color):
    return [(_rect(-0.5, -0.5, 0.28, 0.5), color), (_rect(0.31, -0.45, 0.5, 0.45), color * 0.7),
            (_rect(0.40, -0.4, 0.47, 0.4), np.array([40, 45, 55.0]))]


def _ship(color):
    hull = np.array([[-0.5, -0.5], [0.25, -0.5], [0.5, 0.0], [0.25, 0.5], [-0.5, 0.5]])
    return [(hull, color), (_rect(-0.4, -0.28, 0.0, 0.28), color * 0.8), (_rect(-0.35, -0.15, -0.1, 0.15),
                                                                           np.array([90, 90, 100.0]))]


def _tank(color):
    return [(_ellipse(0, 0, 0.5, 0.5, 40), color), (_ellipse(0, 0, 0.38, 0.38, 40), color * 0.86),
            (_ellipse(0.05, 0.05, 0.08, 0.08, 16), color * 0.7)]


def _court(color):
    white = np.array([235, 235, 235.0])
    lines = [(_rect(-0.5, -0.5, 0.5, 0.5), white), (_rect(-0.46, -0.42, 0.46, 0.42), color),
             (_rect(-0.01, -0.5, 0.01, 0.5), white), (_rect(-0.27, -0.42, -0.25, 0.42), white),
             (_rect(0.25, -0.42, 0.27, 0.42), white), (_rect(-0.26, -0.01, 0.26, 0.01), white)]
    return lines


def _pool(color):
    return [(_rect(-0.5, -0.5, 0.5, 0.5), np.array([225, 225, 215.0])), (_rect(-0.44, -0.4, 0.44, 0.4), color)]


@dataclass(frozen=True)
class CategoryStyle:
    """How a category looks: length/width range in pixels (at ``object_scale`` 1, about 0.3 m per pixel), the
    parts factory and the colours it picks from."""

    length: tuple[float, float]
    aspect: tuple[float, float]  # width / length
    parts: object
    colors: tuple[tuple[int, int, int], ...]
    weight: float


STYLES: dict[str, CategoryStyle] = {
    "plane": CategoryStyle((90, 180), (0.9, 1.05), _plane, ((235, 235, 240), (210, 215, 220), (240, 240, 230)), 1),
    "small-vehicle": CategoryStyle((14, 20), (0.42, 0.52), _car,
                                   ((200, 30, 30), (230, 230, 230), (30, 30, 35), (40, 70, 160), (170, 170, 175),
                                    (220, 200, 60)), 6),
    "large-vehicle": CategoryStyle((36, 60), (0.25, 0.33), _truck, ((225, 225, 225), (200, 120, 40),
                                                                    (60, 110, 60), (180, 180, 190)), 2),
    "ship": CategoryStyle((60, 200), (0.2, 0.3), _ship, ((240, 240, 240), (200, 60, 50), (70, 90, 120)), 1.5),
    "storage-tank": CategoryStyle((30, 90), (1.0, 1.0), _tank, ((225, 225, 220), (200, 205, 210)), 1.5),
    "tennis-court": CategoryStyle((70, 80), (0.5, 0.55), _court, ((60, 120, 70), (50, 90, 160), (170, 80, 60)), 1),
    "swimming-pool": CategoryStyle((30, 70), (0.4, 0.7), _pool, ((40, 150, 220), (60, 180, 230)), 1),
}


@dataclass
class SceneConfig:
    """What goes into a scene; the seed and size are passed separately."""

    categories: tuple[str, ...] = field(default=CATEGORIES, metadata={"help": "object categories to draw"})
    density: float = field(default=40.0, metadata={"help": "mean number of objects per megapixel"})
    num_objects: int | None = field(default=None, metadata={"help": "exact number of objects to try to place "
                                                                    "(overrides density)"})
    object_scale: float = field(default=1.0, metadata={"help": "multiplies every object size (2 = twice as "
                                                               "long); ~0.3 m/px at 1"})
    roads_per_megapixel: float = field(default=0.15, metadata={"help": "straight roads per megapixel"})
    parcel_size: int = field(default=420, metadata={"help": "typical field parcel side in pixels"})

    def __post_init__(self) -> None:
        unknown = [c for c in self.categories if c not in STYLES]
        if unknown:
            raise ValueError(f"unknown synthetic categories {unknown}; choose from {sorted(STYLES)}")
        if not self.categories:
            raise ValueError("categories must name at least one category")
        self.categories = tuple(self.categories)
        for name in ("density", "roads_per_megapixel"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if not (math.isfinite(self.object_scale) and self.object_scale > 0):
            raise ValueError(f"object_scale must be a finite number > 0, got {self.object_scale}")
        if self.num_objects is not None and self.num_objects < 0:
            raise ValueError(f"num_objects must be >= 0, got {self.num_objects}")
        if self.parcel_size < 1:
            raise ValueError(f"parcel_size must be >= 1, got {self.parcel_size}")


@dataclass
class Scene:
    """A placed scene: everything needed to render any region of it."""

    width: int
    height: int
    seed: int
    config: SceneConfig
    obb: np.ndarray          # (N, 5) cx, cy, length, width, theta (radians, clockwise on screen)
    labels: list[str]
    colors: np.ndarray       # (N, 3)
    roads: np.ndarray        # (R, 5) x0, y0, x1, y1, width

    @property
    def objects(self) -> ObjectSet:
        """Labels: normalized quads in original-image pixels, difficult 0."""
        quads = obb_to_quad(self.obb) if len(self.obb) else np.zeros((0, 8))
        return ObjectSet(Boxes(quads, "quad", Frame.original(self.width, self.height)), self.labels,
                         difficult=np.zeros(len(self.labels), dtype=np.int64))

    def render(self, x0: int = 0, y0: int = 0, width: int | None = None, height: int | None = None
               ) -> np.ndarray:
        """RGB uint8 pixels of the region ``[x0, x0+width) x [y0, y0+height)``."""
        return render_region(self, x0, y0, self.width - x0 if width is None else width,
                             self.height - y0 if height is None else height)


# ---- hashing noise (pure functions of the global pixel position) -----------------------------------------

def _hash(*ints, seed: int) -> np.ndarray:
    """uint32 hash of integer arrays (broadcast), a few multiply-xorshift rounds."""
    h = np.uint32(seed * 0x9E3779B1 & 0xFFFFFFFF) ^ np.uint32(0x85EBCA6B)
    with np.errstate(over="ignore"):
        for k, v in enumerate(ints):
            v = np.asarray(v).astype(np.uint32)
            h = (h ^ (v * np.uint32([0x27D4EB2F, 0x165667B1, 0xC2B2AE3D][k % 3]))).astype(np.uint32)
            h = (h ^ (h >> np.uint32(15))) * np.uint32(0x2C1B3C6D)
            h = (h ^ (h >> np.uint32(12))) * np.uint32(0x297A2D39)
            h = h ^ (h >> np.uint32(15))
    return h


def _unit(h: np.ndarray) -> np.ndarray:
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def _value_noise(xs: np.ndarray, ys: np.ndarray, cell: int, seed: int) -> np.ndarray:
    """Smooth noise in [0, 1) on a ``cell``-pixel lattice; ``xs`` (W,), ``ys`` (H,) global pixel centres."""
    gx, fx = np.divmod(xs, cell)
    gy, fy = np.divmod(ys, cell)
    tx = (fx + 0.5) / cell
    ty = (fy + 0.5) / cell
    tx = (tx * tx * (3 - 2 * tx)).astype(np.float32)[None, :]
    ty = (ty * ty * (3 - 2 * ty)).astype(np.float32)[:, None]
    X, Y = gx[None, :], gy[:, None]
    v00 = _unit(_hash(X, Y, seed=seed))
    v10 = _unit(_hash(X + 1, Y, seed=seed))
    v01 = _unit(_hash(X, Y + 1, seed=seed))
    v11 = _unit(_hash(X + 1, Y + 1, seed=seed))
    top = v00 + (v10 - v00) * tx
    bottom = v01 + (v11 - v01) * tx
    return top + (bottom - top) * ty


_PALETTE = np.array([[96, 120, 62], [120, 138, 74], [150, 140, 100], [130, 110, 80], [108, 128, 90],
                     [165, 160, 125], [84, 104, 60], [140, 130, 95]], dtype=np.float32)


def _background(scene: Scene, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    seed, p = scene.seed, scene.config.parcel_size
    xs = np.arange(x0, x0 + w, dtype=np.int64)
    ys = np.arange(y0, y0 + h, dtype=np.int64)
    row = ys // p
    shift = (_hash(row, seed=seed + 1) % np.uint32(p)).astype(np.int64)  # each parcel row shifted
    width_scale = 0.6 + 0.8 * _unit(_hash(row, seed=seed + 2))  # parcel width per row
    pw = np.maximum((p * width_scale).astype(np.int64), 64)
    col = (xs[None, :] + shift[:, None]) // pw[:, None]
    field_id = _hash(row[:, None], col, seed=seed + 3) % np.uint32(len(_PALETTE))
    img = _PALETTE[field_id]  # (h, w, 3) float32
    n = _value_noise(xs, ys, 64, seed + 4) - 0.5
    img += (n * 40)[..., None]
    grain = _unit(_hash(xs[None, :], ys[:, None], seed=seed + 5)) - 0.5
    img += (grain * 18)[..., None]
    # furrows: faint stripes whose direction depends on the parcel
    vertical = (field_id & np.uint32(1)).astype(bool)
    stripe = np.where(vertical, xs[None, :] % 9 < 2, ys[:, None] % 9 < 2)
    img -= (stripe * 6.0)[..., None]
    return img


def _fill(canvas: np.ndarray, poly: np.ndarray, color) -> None:
    import cv2

    cv2.fillPoly(canvas, [np.round(poly * _SUB).astype(np.int32)], color=tuple(float(c) for c in color),
                 lineType=cv2.LINE_8, shift=4)


def _draw_roads(scene: Scene, img: np.ndarray, x0: int, y0: int) -> None:
    """Roads are evaluated per pixel (signed distance to the centre line), so any tiling gives the same pixels.

    The distance across a road is ``u[x] + v[y]`` (affine, separable), so the rows and columns that can hold
    road pixels are found from 1-D arrays and the per-pixel test runs only on that rectangle (a large scene's
    region meets few roads, over a small part of it)."""
    h, w = img.shape[:2]
    px = np.arange(x0, x0 + w, dtype=np.float64) + 0.5
    py = np.arange(y0, y0 + h, dtype=np.float64) + 0.5
    for ax, ay, bx, by, width in scene.roads:
        length = math.hypot(bx - ax, by - ay)
        dx, dy = (bx - ax) / length, (by - ay) / length
        u, v = (px - ax) * -dy, (py - ay) * dx
        half = width / 2
        rows = np.flatnonzero((v + u.min() <= half) & (v + u.max() >= -half))
        cols = np.flatnonzero((u + v.min() <= half) & (u + v.max() >= -half))
        if not len(rows) or not len(cols):
            continue
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        across = u[None, c0:c1] + v[r0:r1, None]
        on_road = np.abs(across) <= half
        if not on_road.any():
            continue
        along = (px[None, c0:c1] - ax) * dx + (py[r0:r1, None] - ay) * dy
        sub = img[r0:r1, c0:c1]
        sub[on_road] = (92, 92, 96)
        dash = (np.abs(across) <= 0.9) & (np.mod(along, 36.0) < 18.0)
        sub[dash] = (205, 205, 195)


def _object_box(obb_row: np.ndarray) -> tuple[int, int, int, int]:
    """Integer global box that holds the object, its shadow and a pixel of rasterization slack."""
    r = 0.5 * math.hypot(obb_row[2], obb_row[3])
    shade = 1.5 * max(2.0, _SHADE * obb_row[3])
    return (math.floor(obb_row[0] - r - 2), math.floor(obb_row[1] - r - 2),
            math.ceil(obb_row[0] + r + shade + 2), math.ceil(obb_row[1] + r + shade + 2))


def _draw_object(img: np.ndarray, obb_row: np.ndarray, label: str, color, x0: int, y0: int) -> None:
    """Rasterize the object on its own canvas (aligned to the global grid, never clipped) and paste the part
    that falls in the region: the pixels do not depend on how the scene is tiled."""
    bx0, by0, bx1, by1 = _object_box(obb_row)
    cx, cy, length, width, theta = obb_row
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, s], [-s, c]]) * np.array([[length], [width]])  # local (u, v) -> screen offset
    origin = np.array([cx - bx0, cy - by0])
    canvas = np.zeros((by1 - by0, bx1 - bx0, 3), np.float32)
    mask = np.zeros((by1 - by0, bx1 - bx0), np.uint8)
    parts = STYLES[label].parts(np.asarray(color, dtype=np.float64))
    shade = max(2.0, _SHADE * width)
    layers = [(parts[0][0] @ rot + origin + shade, (45, 50, 40))] + [(p @ rot + origin, col) for p, col in parts]
    for poly, col in layers:
        _fill(canvas, poly, col)
        _fill(mask, poly, (1,))
    # overlap of the object canvas with the region
    ox0, oy0 = max(bx0, x0), max(by0, y0)
    ox1, oy1 = min(bx1, x0 + img.shape[1]), min(by1, y0 + img.shape[0])
    if ox0 >= ox1 or oy0 >= oy1:
        return
    src = (slice(oy0 - by0, oy1 - by0), slice(ox0 - bx0, ox1 - bx0))
    dst = (slice(oy0 - y0, oy1 - y0), slice(ox0 - x0, ox1 - x0))
    m = mask[src].astype(bool)
    img[dst][m] = canvas[src][m]


def render_region(scene: Scene, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """RGB uint8 ``(h, w, 3)`` pixels of the scene window starting at ``(x0, y0)``."""
    img = _background(scene, x0, y0, w, h)
    _draw_roads(scene, img, x0, y0)
    if len(scene.obb):
        r = 0.5 * np.hypot(scene.obb[:, 2], scene.obb[:, 3]) + 1.5 * np.maximum(2.0, _SHADE * scene.obb[:, 3]) + 4
        cx, cy = scene.obb[:, 0], scene.obb[:, 1]
        hit = np.flatnonzero((cx + r > x0) & (cx - r < x0 + w) & (cy + r > y0) & (cy - r < y0 + h))
        for i in hit:
            _draw_object(img, scene.obb[i], scene.labels[i], scene.colors[i], x0, y0)
    return np.clip(img, 0, 255).astype(np.uint8)


# ---- placement ---------------------------------------------------------------------------------------------

def plan_scene(width: int, height: int, seed: int, config: SceneConfig | None = None) -> Scene:
    """Place roads and objects (no pixels yet). Deterministic in ``(width, height, seed, config)``."""
    config = config or SceneConfig()
    if width < 1 or height < 1:
        raise ValueError(f"scene size must be positive, got {width} x {height}")
    rng = np.random.default_rng([seed, width, height])
    mpix = width * height / 1e6
    n_roads = rng.poisson(config.roads_per_megapixel * mpix)
    roads = []
    for _ in range(n_roads):
        if rng.random() < 0.5:  # roughly horizontal
            y_a, y_b = rng.uniform(0, height, 2)
            roads.append([-50.0, y_a, width + 50.0, y_b, rng.uniform(14, 26)])
        else:
            x_a, x_b = rng.uniform(0, width, 2)
            roads.append([x_a, -50.0, x_b, height + 50.0, rng.uniform(14, 26)])
    roads_arr = np.asarray(roads, dtype=np.float64).reshape(-1, 5)

    n_target = config.num_objects if config.num_objects is not None else rng.poisson(config.density * mpix)
    cats = list(config.categories)
    weights = np.array([STYLES[c].weight for c in cats], dtype=np.float64)
    weights /= weights.sum()
    cell = 64.0
    grid: dict[tuple[int, int], list[int]] = {}
    centres, radii, obbs, labels, colors = [], [], [], [], []
    tries = 0
    while len(obbs) < n_target and tries < 30 * max(n_target, 1):
        tries += 1
        cat = cats[rng.choice(len(cats), p=weights)]
        st = STYLES[cat]
        length = rng.uniform(*st.length) * config.object_scale
        wid = length * rng.uniform(*st.aspect)
        radius = 0.5 * math.hypot(length, wid)
        if 2 * radius + 4 > min(width, height):
            continue
        cx = rng.uniform(radius + 2, width - radius - 2)
        cy = rng.uniform(radius + 2, height - radius - 2)
        theta = 0.0 if cat == "storage-tank" else rng.uniform(-math.pi / 2, math.pi / 2)
        gx, gy = int(cx // cell), int(cy // cell)
        reach = int(math.ceil((radius + 0.5 * math.hypot(220, 66) * config.object_scale) / cell))
        clash = False
        for ix in range(gx - reach, gx + reach + 1):
            for iy in range(gy - reach, gy + reach + 1):
                for j in grid.get((ix, iy), ()):
                    if math.hypot(centres[j][0] - cx, centres[j][1] - cy) < radius + radii[j] + 2:
                        clash = True
                        break
                if clash:
                    break
            if clash:
                break
        if clash:
            continue
        grid.setdefault((gx, gy), []).append(len(obbs))
        centres.append((cx, cy))
        radii.append(radius)
        obbs.append([cx, cy, length, wid, theta])
        labels.append(cat)
        colors.append(st.colors[rng.integers(len(st.colors))])
    obb = np.asarray(obbs, dtype=np.float64).reshape(-1, 5)
    return Scene(width, height, seed, config, obb, labels, np.asarray(colors, np.float64).reshape(-1, 3),
                 roads_arr)


# ---- public entry points -----------------------------------------------------------------------------------

def generate_scene(width: int, height: int, seed: int = 0, config: SceneConfig | None = None, **overrides
                   ) -> tuple[np.ndarray, ObjectSet]:
    """``(RGB uint8 image (height, width, 3), ObjectSet of normalized quads in original pixels)``.

    Keyword ``overrides`` set :class:`SceneConfig` fields (e.g. ``num_objects=5, object_scale=2``), on top of
    ``config`` when both are given. Holds the whole image in memory: use :func:`write_scene` for very large
    scenes."""
    config = replace(config, **overrides) if config is not None else SceneConfig(**overrides)
    scene = plan_scene(width, height, seed, config)
    return scene.render(), scene.objects


STRIP_PIXELS = 1 << 21  # pixels rendered at once when streaming (~2 MP: ~100 MB of float32 work arrays)


def render_strips(scene: Scene, strip_pixels: int = STRIP_PIXELS):
    """Yield ``(y0, strip)``: the scene top to bottom in full-width strips of about ``strip_pixels`` pixels
    (at least one row), RGB uint8. Any strip height gives the same pixels (see :func:`render_region`)."""
    rows = max(1, min(scene.height, strip_pixels // scene.width))
    for y in range(0, scene.height, rows):
        yield y, render_region(scene, 0, y, scene.width, min(rows, scene.height - y))


def _write_png_streamed(path: Path, scene: Scene, strip_pixels: int, on_rows) -> None:
    """A PNG written strip by strip (pypng: rows go through zlib as they come), never the whole image."""
    import png

    def rows():
        for _, strip in render_strips(scene, strip_pixels):
            yield from strip.reshape(strip.shape[0], -1)
            on_rows(strip.shape[0])

    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        png.Writer(scene.width, scene.height, greyscale=False, bitdepth=8, compression=1).write(f, rows())
    os.replace(tmp, path)


def _progress_bar(progress: bool, total_mp: float, desc: str):
    from tqdm import tqdm

    return tqdm(total=total_mp, unit="MP", desc=desc, disable=not progress,
                bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} MP [{elapsed}<{remaining}]")


def write_scene(path: str | os.PathLike, width: int, height: int, seed: int = 0, config: SceneConfig | None = None,
                *, label_path: str | os.PathLike | None = None, tile: int = 512, block_tiles: int = 8,
                strip_pixels: int = STRIP_PIXELS, progress: bool = False, **overrides) -> ObjectSet:
    """Render a scene of any size to ``path`` and its labelTxt to ``label_path`` (default: ``path`` with
    ``.txt``), in bounded memory: ``.tif``/``.tiff`` a tiled (``tile`` px), deflate-compressed BigTIFF rendered
    block by block (``tile`` rows x ``block_tiles * tile`` columns; needs tifffile, the ``geo`` extra);
    ``.png`` a PNG rendered and compressed in strips of ``strip_pixels``. Memory: the scene plan (~100 bytes per
    object) plus one block or strip, whatever the size. ``progress``: a bar on stderr (megapixels). Returns the
    objects."""
    from rscovlm.dota.io import write_labeltxt

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".tif", ".tiff", ".png"):
        raise ValueError(f"{path}: write_scene writes .tif, .tiff or .png files")
    if suffix != ".png":
        from rscovlm._optional import require

        tifffile = require("tifffile", "geo", "writing a scene as a tiled TIFF")
    config = replace(config, **overrides) if config is not None else SceneConfig(**overrides)
    scene = plan_scene(width, height, seed, config)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _progress_bar(progress, width * height / 1e6, "synth") as bar:
        if suffix == ".png":
            _write_png_streamed(path, scene, strip_pixels, lambda rows: bar.update(rows * width / 1e6))
        else:
            block_cols = tile * max(1, block_tiles)

            def tiles():  # row-major tile order, as the TIFF stores them
                for ty in range(0, height, tile):
                    rows = min(tile, height - ty)
                    for bx in range(0, width, block_cols):
                        block = render_region(scene, bx, ty, min(block_cols, width - bx), rows)
                        for tx in range(0, block.shape[1], tile):
                            piece = block[:, tx:tx + tile]
                            if piece.shape[:2] != (tile, tile):  # edge tiles are padded to the full tile size
                                padded = np.zeros((tile, tile, 3), np.uint8)
                                padded[:piece.shape[0], :piece.shape[1]] = piece
                                piece = padded
                            yield piece
                        bar.update(rows * block.shape[1] / 1e6)

            tmp = path.with_name(path.name + ".part")
            tifffile.imwrite(tmp, tiles(), shape=(height, width, 3), dtype=np.uint8, tile=(tile, tile),
                             photometric="rgb", compression="zlib", compressionargs={"level": 1}, bigtiff=True)
            os.replace(tmp, path)
    objects = scene.objects
    write_labeltxt(label_path or path.with_suffix(".txt"), objects, imagesource="rscovlm-synthetic")
    return objects


def generate_dataset(out_dir: str | os.PathLike, n_images: int, size: int | tuple[int, int] = 1024, seed: int = 0,
                     config: SceneConfig | None = None, *, strip_pixels: int = STRIP_PIXELS, progress: bool = False,
                     **overrides) -> list[str]:
    """Write ``out_dir/images/syn_{i:05d}.png`` and ``out_dir/labelTxt/syn_{i:05d}.txt`` for ``n_images``
    scenes (image ``i`` uses seed ``seed * 1_000_003 + i``). Each PNG is rendered and compressed in strips of
    ``strip_pixels`` (bounded memory for any size). ``progress``: a bar on stderr (megapixels). Returns the
    image stems."""
    from rscovlm.dota.io import write_labeltxt

    config = replace(config, **overrides) if config is not None else SceneConfig(**overrides)
    w, h = (size, size) if isinstance(size, int) else size
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "labelTxt").mkdir(parents=True, exist_ok=True)
    stems = []
    with _progress_bar(progress, n_images * w * h / 1e6, "synth") as bar:
        for i in range(n_images):
            stem = f"syn_{i:05d}"
            scene = plan_scene(w, h, seed * 1_000_003 + i, config)
            _write_png_streamed(out_dir / "images" / f"{stem}.png", scene, strip_pixels,
                                lambda rows: bar.update(rows * w / 1e6))
            write_labeltxt(out_dir / "labelTxt" / f"{stem}.txt", scene.objects, imagesource="rscovlm-synthetic")
            stems.append(stem)
            bar.set_postfix(images=f"{i + 1}/{n_images}", refresh=False)
    return stems
