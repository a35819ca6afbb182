"""Image regions of the LRS-VQA-Zoom builder, in original pixels (x right, y down, floats ``x0, y0, x1, y1``).

* The 3 x 3 grid (paper 3.4.1): cell ``(row, col)`` spans ``[col * W / 3, (col + 1) * W / 3] x
  [row * H / 3, (row + 1) * H / 3]``; an object belongs to the cell holding the centre of its hbb,
  ``col = min(floor(3 * cx / W), 2)`` (a centre on a border goes to the right / lower cell), likewise ``row``.
  Cells are numbered row-major from the top-left (0..8).
* The coarse region around an object (paper 3.4.2): its hbb grown by ``padding`` times its longer side on each
  side, at least ``min_side`` wide and high, at most ``max_side`` (the side of the crop's pixel budget, so the
  region is seen at native resolution) unless the object itself is larger; centred on the object and shifted
  (not cut) to lie inside the image where it fits.
"""

from __future__ import annotations

import math

import numpy as np

GRID = 3


def grid_cells(width: float, height: float) -> list[tuple[float, float, float, float]]:
    """The nine cells, row-major from the top-left."""
    return [(c * width / GRID, r * height / GRID, (c + 1) * width / GRID, (r + 1) * height / GRID)
            for r in range(GRID) for c in range(GRID)]


def cell_index(hbbs: np.ndarray, width: float, height: float) -> np.ndarray:
    """Cell (0..8) of every hbb (N, 4) by its centre."""
    hbbs = np.asarray(hbbs, dtype=np.float64).reshape(-1, 4)
    cx = (hbbs[:, 0] + hbbs[:, 2]) / 2
    cy = (hbbs[:, 1] + hbbs[:, 3]) / 2
    col = np.clip(np.floor(GRID * cx / width), 0, GRID - 1).astype(int)
    row = np.clip(np.floor(GRID * cy / height), 0, GRID - 1).astype(int)
    return row * GRID + col


def _span(lo: float, hi: float, side: float, limit: float) -> tuple[float, float]:
    centre = (lo + hi) / 2
    if side >= limit:
        return 0.0, float(limit)
    a = min(max(centre - side / 2, 0.0), float(limit) - side)
    return float(a), float(a + side)


def coarse_region(hbb, size: tuple[int, int], padding: float, min_side: float, max_side: float
                  ) -> tuple[float, float, float, float]:
    """The coarse region around ``hbb`` in an image of ``size`` (module docstring)."""
    x0, y0, x1, y1 = (float(v) for v in hbb)
    w, h = x1 - x0, y1 - y0
    pad = padding * max(w, h)
    sw = min(max(w + 2 * pad, min_side), max(max_side, w))
    sh = min(max(h + 2 * pad, min_side), max(max_side, h))
    ax0, ax1 = _span(x0, x1, sw, size[0])
    ay0, ay1 = _span(y0, y1, sh, size[1])
    return ax0, ay0, ax1, ay1


def contains(region, hbbs: np.ndarray) -> np.ndarray:
    """Whether each hbb's centre lies inside ``region``."""
    hbbs = np.asarray(hbbs, dtype=np.float64).reshape(-1, 4)
    cx = (hbbs[:, 0] + hbbs[:, 2]) / 2
    cy = (hbbs[:, 1] + hbbs[:, 3]) / 2
    return (cx >= region[0]) & (cx < region[2]) & (cy >= region[1]) & (cy < region[3])


def budget_side(max_pixels: int) -> float:
    """Side of a square with ``max_pixels`` pixels."""
    return math.sqrt(max_pixels)
