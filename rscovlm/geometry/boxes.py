"""The one box type of the project: values + kind + frame.

Frames
------
A :class:`Frame` is the pixel grid the numbers are measured in: ``width`` x ``height`` with x to the right, y
down, origin at the top-left corner of the top-left pixel. Two frames of the same image are related per axis by
``width_b / width_a`` and ``height_b / height_a``:

* ``Frame(W, H, "original")`` - pixels of the image file (floats allowed);
* ``Frame(w', h', "model")`` - pixels of the resized input the model saw (Qwen2.5-VL's absolute coordinates);
* ``Frame(1000, 1000, "norm1000")`` - Qwen2-VL's 0-1000 grid, whatever the image size.

Kinds
-----
* ``hbb``  - ``(x1, y1, x2, y2)``, x1 <= x2, y1 <= y2.
* ``obb``  - ``(cx, cy, w, h, theta)``: a w x h rectangle centred on (cx, cy) whose w side points along
  ``(cos theta, sin theta)``; theta in radians, positive = clockwise on screen (y is down). Normalized form is
  MMRotate's ``le90``: ``w >= h`` and ``theta`` in ``[-pi/2, pi/2)``.
* ``quad`` - ``(x1, y1, x2, y2, x3, y3, x4, y4)``. Normalized form (paper 3.5.1): vertices clockwise on screen
  (positive shoelace area in y-down coordinates), starting at the vertex with the smallest y (ties: smallest x).
  Degenerate quads (zero area) keep their vertex order and are only rotated to the start vertex;
  self-intersecting quads ("bow ties") are oriented by the sign of their shoelace sum, the same rule the DOTA
  devkit applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

BoxKind = Literal["hbb", "obb", "quad"]
BOX_DIMS: dict[str, int] = {"hbb": 4, "obb": 5, "quad": 8}


@dataclass(frozen=True)
class Frame:
    """A pixel grid of ``width`` x ``height`` in which box values are expressed (see module docstring)."""

    width: float
    height: float
    name: str = "original"

    def __post_init__(self) -> None:
        if not (self.width > 0 and self.height > 0):
            raise ValueError(f"frame {self.name!r} needs a positive size, got {self.width} x {self.height}")

    def scale_to(self, other: "Frame") -> tuple[float, float]:
        """Per-axis factors ``(sx, sy)`` that take coordinates of this frame to ``other``."""
        return other.width / self.width, other.height / self.height

    @classmethod
    def original(cls, width: float, height: float) -> "Frame":
        return cls(float(width), float(height), "original")

    @classmethod
    def model(cls, width: int, height: int) -> "Frame":
        return cls(float(width), float(height), "model")


def _as_array(values, kind: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    dims = BOX_DIMS[kind]
    if arr.size == 0:
        return np.zeros((0, dims), dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dims:
        raise ValueError(f"{kind} boxes need shape (N, {dims}), got {arr.shape}")
    return arr


@dataclass(frozen=True, eq=False)
class Boxes:
    """``N`` boxes of one kind in one frame; ``data`` is a float64 array of shape ``(N, BOX_DIMS[kind])``."""

    data: np.ndarray
    kind: BoxKind
    frame: Frame | None = None

    def __post_init__(self) -> None:
        if self.kind not in BOX_DIMS:
            raise ValueError(f"unknown box kind {self.kind!r}; expected one of {sorted(BOX_DIMS)}")
        object.__setattr__(self, "data", _as_array(self.data, self.kind))

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index) -> "Boxes":
        sel = self.data[index]
        return Boxes(sel if sel.ndim == 2 else sel[None, :], self.kind, self.frame)

    def __repr__(self) -> str:
        return f"Boxes(kind={self.kind!r}, n={len(self)}, frame={self.frame})"

    def with_data(self, data, kind: BoxKind | None = None) -> "Boxes":
        return Boxes(data, kind or self.kind, self.frame)

    # ---- kind conversions -------------------------------------------------------------------------------
    def to(self, kind: BoxKind) -> "Boxes":
        """Convert to ``kind``. hbb/obb -> quad is exact; quad -> hbb is the enclosing box; quad -> obb the
        minimum-area enclosing rectangle."""
        if kind == self.kind:
            return self
        if kind not in _FROM_QUAD:
            raise ValueError(f"unknown box kind {kind!r}; expected one of {sorted(BOX_DIMS)}")
        return self.with_data(_FROM_QUAD[kind](self.to_quad().data), kind)

    def to_quad(self) -> "Boxes":
        return self if self.kind == "quad" else self.with_data(_TO_QUAD[self.kind](self.data), "quad")

    def normalized(self) -> "Boxes":
        """Canonical form of each kind (see module docstring)."""
        if self.kind == "quad":
            return self.with_data(normalize_quads(self.data))
        if self.kind == "obb":
            return self.with_data(normalize_obb(self.data))
        d = self.data
        return self.with_data(np.stack([np.minimum(d[:, 0], d[:, 2]), np.minimum(d[:, 1], d[:, 3]),
                                        np.maximum(d[:, 0], d[:, 2]), np.maximum(d[:, 1], d[:, 3])], axis=1))

    # ---- frames ------------------------------------------------------------------------------------------
    def to_frame(self, frame: Frame) -> "Boxes":
        """Map the boxes into ``frame`` (per-axis scaling). An obb under non-uniform scaling is no longer a
        rectangle: it is mapped as a quad and re-fitted with the minimum-area rectangle."""
        if self.frame is None:
            raise ValueError("these boxes carry no frame; build them with frame=Frame(...) before mapping")
        sx, sy = self.frame.scale_to(frame)
        if self.kind == "obb":
            if np.isclose(sx, sy, rtol=1e-12, atol=0):
                d = self.data.copy()
                d[:, :4] *= sx
                return Boxes(d, "obb", frame)
            quads = Boxes(self.to_quad().data, "quad", self.frame).to_frame(frame)
            return Boxes(quad_to_obb(quads.data), "obb", frame)
        d = self.data.copy()
        d[:, 0::2] *= sx
        d[:, 1::2] *= sy
        return Boxes(d, self.kind, frame)

    def clip(self, frame: Frame | None = None) -> "Boxes":
        """Clamp every coordinate into ``[0, width] x [0, height]`` of ``frame`` (default: own frame).

        Quads are clamped vertex by vertex (what DOTA tooling does to labels); obbs are clamped as quads and
        re-fitted."""
        frame = frame or self.frame
        if frame is None:
            raise ValueError("clip needs a frame")
        if self.kind == "obb":
            return self.with_data(quad_to_obb(self.to_quad().clip(frame).data), "obb")
        d = self.data.copy()
        d[:, 0::2] = np.clip(d[:, 0::2], 0, frame.width)
        d[:, 1::2] = np.clip(d[:, 1::2], 0, frame.height)
        return self.with_data(d)

    def rounded(self) -> "Boxes":
        """Integer coordinates (round half to even, like ``numpy.rint``); obb angles are kept as they are."""
        d = self.data.copy()
        if self.kind == "obb":
            d[:, :4] = np.rint(d[:, :4])
        else:
            d = np.rint(d)
        return self.with_data(d)

    def areas(self) -> np.ndarray:
        if self.kind == "hbb":
            return (self.data[:, 2] - self.data[:, 0]) * (self.data[:, 3] - self.data[:, 1])
        if self.kind == "obb":
            return self.data[:, 2] * self.data[:, 3]
        return np.abs(signed_area(self.data))


# ---- array-level functions (vectorized over N) -----------------------------------------------------------

def hbb_to_quad(hbb: np.ndarray) -> np.ndarray:
    """``(N,4)`` x1,y1,x2,y2 -> ``(N,8)`` quads, clockwise on screen from the top-left corner."""
    x1, y1, x2, y2 = (hbb[:, i] for i in range(4))
    return np.stack([x1, y1, x2, y1, x2, y2, x1, y2], axis=1)


def quad_to_hbb(quads: np.ndarray) -> np.ndarray:
    """``(N,8)`` -> ``(N,4)`` enclosing horizontal boxes."""
    xs, ys = quads[:, 0::2], quads[:, 1::2]
    return np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], axis=1)


def obb_to_quad(obb: np.ndarray) -> np.ndarray:
    """``(N,5)`` cx,cy,w,h,theta -> ``(N,8)`` normalized quads."""
    cx, cy, w, h, t = (obb[:, i] for i in range(5))
    c, s = np.cos(t), np.sin(t)
    # half-extent vectors along the w side and the h side (y down, theta clockwise on screen)
    wx, wy = c * w / 2, s * w / 2
    hx, hy = -s * h / 2, c * h / 2
    pts = np.stack([cx - wx - hx, cy - wy - hy, cx + wx - hx, cy + wy - hy,
                    cx + wx + hx, cy + wy + hy, cx - wx + hx, cy - wy + hy], axis=1)
    return normalize_quads(pts)


def normalize_obb(obb: np.ndarray) -> np.ndarray:
    """le90 form: ``w >= h`` (swap and turn by pi/2 otherwise), theta wrapped into ``[-pi/2, pi/2)``."""
    out = np.array(obb, dtype=np.float64, copy=True)
    swap = out[:, 2] < out[:, 3]
    out[swap, 2], out[swap, 3] = obb[swap, 3], obb[swap, 2]
    out[swap, 4] += np.pi / 2
    out[:, 4] = np.mod(out[:, 4] + np.pi / 2, np.pi) - np.pi / 2
    return out


def quad_to_obb(quads: np.ndarray) -> np.ndarray:
    """``(N,8)`` -> ``(N,5)`` le90 minimum-area enclosing rectangles.

    One side of the minimum-area rectangle lies on an edge of the convex hull; every hull edge joins two of the
    four vertices, so trying the directions of all 6 vertex pairs (non-hull pairs still give enclosing
    rectangles, just not smaller ones) finds it without building hulls."""
    n = len(quads)
    if n == 0:
        return np.zeros((0, 5))
    pts = quads.reshape(n, 4, 2)
    pairs = [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (1, 3)]
    d = np.stack([pts[:, j] - pts[:, i] for i, j in pairs], axis=1)  # (n,6,2)
    norm = np.hypot(d[..., 0], d[..., 1])
    degenerate = norm == 0
    norm = np.where(degenerate, 1.0, norm)
    u = np.where(degenerate[..., None], np.array([1.0, 0.0]), d / norm[..., None])  # unit directions
    v = np.stack([-u[..., 1], u[..., 0]], axis=-1)
    pu = np.einsum("nkd,npd->nkp", u, pts)  # projections (n,6,4)
    pv = np.einsum("nkd,npd->nkp", v, pts)
    ext_u = pu.max(-1) - pu.min(-1)
    ext_v = pv.max(-1) - pv.min(-1)
    best = np.argmin(ext_u * ext_v + 1e-9 * np.arange(6), axis=1)  # earliest direction wins exact ties
    r = np.arange(n)
    ub, vb = u[r, best], v[r, best]
    mid_u = (pu[r, best].max(-1) + pu[r, best].min(-1)) / 2
    mid_v = (pv[r, best].max(-1) + pv[r, best].min(-1)) / 2
    centre = ub * mid_u[:, None] + vb * mid_v[:, None]
    theta = np.arctan2(ub[:, 1], ub[:, 0])
    out = np.stack([centre[:, 0], centre[:, 1], ext_u[r, best], ext_v[r, best], theta], axis=1)
    return normalize_obb(out)


def signed_area(quads: np.ndarray) -> np.ndarray:
    """Shoelace sum of ``(N, 2K)`` polygons; positive = clockwise on screen (y down)."""
    xs, ys = quads[:, 0::2], quads[:, 1::2]
    return 0.5 * np.sum(xs * np.roll(ys, -1, axis=1) - np.roll(xs, -1, axis=1) * ys, axis=1)


def normalize_quads(quads: np.ndarray) -> np.ndarray:
    """Clockwise on screen, starting at the smallest-y vertex (ties: smallest x). See module docstring."""
    quads = np.asarray(quads, dtype=np.float64)
    n = len(quads)
    if n == 0:
        return quads.reshape(0, 8)
    pts = quads.reshape(n, 4, 2).copy()
    ccw = signed_area(quads) < 0
    pts[ccw] = pts[ccw][:, ::-1]
    # start at the lexicographic (y, x) minimum; on exact duplicate vertices the first one
    ys, xs = pts[..., 1], pts[..., 0]
    miny = ys.min(1, keepdims=True)
    cand = ys == miny
    xs_masked = np.where(cand, xs, np.inf)
    start = np.argmin(xs_masked, axis=1)
    idx = (start[:, None] + np.arange(4)[None, :]) % 4
    out = np.take_along_axis(pts, idx[..., None], axis=1)
    return out.reshape(n, 8)


# every kind to quads and back (``Boxes.to``): the quad is the common form
_TO_QUAD = {"hbb": hbb_to_quad, "obb": obb_to_quad}
_FROM_QUAD = {"hbb": quad_to_hbb, "obb": quad_to_obb, "quad": lambda q: q}
