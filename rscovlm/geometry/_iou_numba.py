"""Compiled kernel of :func:`rscovlm.geometry.iou.poly_intersection_pairs` (optional: needs numba).

Same two paths as the numpy code: Sutherland-Hodgman clipping for pairs of strictly convex quads, the devkit's
signed 16-triangle rule for all others; per pair, coordinates are taken relative to the pair's lower-left
bounding corner. Every sum runs in the numpy code's order (left to right; a reversed ring keeps vertex 0), so
the two give bitwise identical results: keep them in step when changing either."""

from __future__ import annotations

import importlib.util

import numpy as np

_KERNEL = None  # compiled on first use: importing numba costs ~0.5 s, so not at import time


def available() -> bool:
    """numba (the optional ``fast`` extra) is installed."""
    return importlib.util.find_spec("numba") is not None


def loaded() -> bool:
    """The kernel is compiled (or loaded from numba's cache) in this process: using it costs nothing more."""
    return _KERNEL is not None


def _clip(px, py, n, ax, ay, bx, by, ox, oy):
    """Keep the part of ring (px, py)[:n] left of a -> b (points on the line kept); returns the new length."""
    ex = bx - ax
    ey = by - ay
    m = 0
    for i in range(n):
        j = i + 1 if i + 1 < n else 0
        di = ex * (py[i] - ay) - ey * (px[i] - ax)
        dj = ex * (py[j] - ay) - ey * (px[j] - ax)
        if di >= 0:
            ox[m] = px[i]
            oy[m] = py[i]
            m += 1
        if (di >= 0) != (dj >= 0):
            t = di / (di - dj)
            ox[m] = px[i] + t * (px[j] - px[i])
            oy[m] = py[i] + t * (py[j] - py[i])
            m += 1
    return m


def _ring_area(px, py, n):
    s = 0.0
    for i in range(n):
        j = i + 1 if i + 1 < n else 0
        s += px[i] * py[j] - px[j] * py[i]
    return 0.5 * s


def _reverse4(x, y):
    """Reverse a 4-ring in place (keep vertex 0, swap 1 and 3)."""
    x[1], x[3] = x[3], x[1]
    y[1], y[3] = y[3], y[1]


def _negative(q, r):
    """Signed area of row ``r`` of ``q`` < 0, summed in the devkit's order from absolute coordinates."""
    s = 0.0
    for i in range(4):
        j = (i + 1) % 4
        s = s + (q[r, 2 * i] * q[r, 2 * j + 1] - q[r, 2 * i + 1] * q[r, 2 * j])
    return s < 0


def _strictly_convex(x, y):
    for i in range(4):
        j = (i + 1) % 4
        k = (i + 2) % 4
        if (x[j] - x[i]) * (y[k] - y[j]) - (y[j] - y[i]) * (x[k] - x[j]) <= 0:
            return False
    return True


def _pairs(a, b, zero_rel):
    k = a.shape[0]
    out = np.empty(k)
    px = np.empty(4)
    py = np.empty(4)
    qx = np.empty(4)
    qy = np.empty(4)
    ux = np.empty(32)
    uy = np.empty(32)
    vx = np.empty(32)
    vy = np.empty(32)
    for r in range(k):
        x0 = a[r, 0]
        y0 = a[r, 1]
        for i in range(4):
            x0 = min(x0, a[r, 2 * i], b[r, 2 * i])
            y0 = min(y0, a[r, 2 * i + 1], b[r, 2 * i + 1])
        for i in range(4):
            px[i] = a[r, 2 * i] - x0
            py[i] = a[r, 2 * i + 1] - y0
            qx[i] = b[r, 2 * i] - x0
            qy[i] = b[r, 2 * i + 1] - y0
        ext = 0.0
        for i in range(4):
            ext = max(ext, px[i], py[i], qx[i], qy[i])
        tol = zero_rel * (ext * ext)
        if _negative(a, r):
            _reverse4(px, py)
        if _negative(b, r):
            _reverse4(qx, qy)
        if _strictly_convex(px, py) and _strictly_convex(qx, qy):
            for i in range(4):
                ux[i] = px[i]
                uy[i] = py[i]
            n = 4
            for j in range(4):
                jn = (j + 1) % 4
                n = _clip(ux, uy, n, qx[j], qy[j], qx[jn], qy[jn], vx, vy)
                for i in range(n):
                    ux[i] = vx[i]
                    uy[i] = vy[i]
                if n == 0:
                    break
            area = abs(_ring_area(ux, uy, n)) if n > 2 else 0.0
            out[r] = area if area > tol else 0.0
            continue
        total = 0.0
        for i in range(4):
            inn = (i + 1) % 4
            ax, ay, bx, by = px[i], py[i], px[inn], py[inn]
            c1 = ax * by - ay * bx
            if c1 == 0:
                continue
            if c1 < 0:
                ax, ay, bx, by = bx, by, ax, ay
            for j in range(4):
                jn = (j + 1) % 4
                cx, cy, dx, dy = qx[j], qy[j], qx[jn], qy[jn]
                c2 = cx * dy - cy * dx
                if c2 == 0:
                    continue
                if c2 < 0:
                    cx, cy, dx, dy = dx, dy, cx, cy
                ux[0] = 0.0
                uy[0] = 0.0
                ux[1] = ax
                uy[1] = ay
                ux[2] = bx
                uy[2] = by
                n = _clip(ux, uy, 3, 0.0, 0.0, cx, cy, vx, vy)
                n = _clip(vx, vy, n, cx, cy, dx, dy, ux, uy)
                n = _clip(ux, uy, n, dx, dy, 0.0, 0.0, vx, vy)
                area = abs(_ring_area(vx, vy, n)) if n > 2 else 0.0
                total += area if (c1 > 0) == (c2 > 0) else -area
        out[r] = total if abs(total) > tol else 0.0
    return out


def _compile():
    global _KERNEL, _clip, _ring_area, _reverse4, _negative, _strictly_convex
    import numba

    jit = numba.njit(cache=True, nogil=True)
    # helpers first: the kernel resolves these module globals when it is compiled
    _clip, _ring_area, _reverse4 = jit(_clip), jit(_ring_area), jit(_reverse4)
    _negative, _strictly_convex = jit(_negative), jit(_strictly_convex)
    _KERNEL = jit(_pairs)


def intersection_pairs(a: np.ndarray, b: np.ndarray, zero_rel: float) -> np.ndarray:
    """Aligned ``(K, 8)`` float64 quads -> ``(K,)`` intersection areas (the devkit rule); results within
    ``zero_rel * extent**2`` of 0 (rounding noise; extent: the larger side of the pair's bounding box) are 0."""
    if _KERNEL is None:
        _compile()
    return _KERNEL(np.ascontiguousarray(a, dtype=np.float64), np.ascontiguousarray(b, dtype=np.float64),
                   float(zero_rel))
