"""Exact, vectorized overlaps of quadrilaterals, rotated rectangles and horizontal boxes.

The rule (the DOTA devkit's ``polyiou``)
-----------------------------------------
Both quads are oriented counter-clockwise in the mathematical sense (positive shoelace sum
``sum(x_i*y_{i+1} - x_{i+1}*y_i)``; on screen, with y down, that is clockwise) by reversing the vertex order
when the signed area is negative. The intersection is then the sum, over every edge pair (edge i of P, edge j
of Q), of the signed area of the intersection of the triangles (O, edge i) and (O, edge j), where the sign is
the product of the two triangles' orientations. That sum equals ``integral(w_P * w_Q)`` with ``w`` the
winding number, so it does not depend on the origin O (we put O at a corner of the pair's bounding box, which
keeps the arithmetic well conditioned) and it defines a value for every quad:

* simple quads (convex or not): the exact intersection area, identical to shapely's;
* degenerate quads (zero area, repeated or collinear vertices): whatever area they enclose (often 0);
* self-intersecting quads ("bow ties"): the winding-number integral, the lobe that sets the orientation
  counting +1 and the other lobe -1 (shapely either raises or gives a different number on these). When the
  two lobes are equal the orientation is decided by the rounding of the shoelace sum; we compute that sum from
  the absolute coordinates in the devkit's order, so even that case gives the devkit's number.

``union = |area P| + |area Q| - intersection`` with shoelace areas (for a bow tie the lobes cancel), and
``IoU = intersection / union``; where the union is zero (both quads have zero area) the IoU is defined as 0
(the devkit divides 0 by 0 there; :mod:`rscovlm.eval.dota_map` reproduces that case where it matters).

Exactly zero, and one result on every install
----------------------------------------------
The rule's terms cancel exactly for quads that enclose nothing (a spike such as ``(0,0),(-1,0),(0,0),(0,4)``,
collinear vertices), but in floating point they leave noise of about ``1e-16 * extent**2``; divided by a union
that is itself 0 (say such a spike against a bow tie with equal lobes) that noise became an IoU of -1, 0 or
anything, and which one depended on the order of the additions. So: an intersection within ``2**-40`` of the
squared extent of the pair is 0, and a union within ``2**-40`` of the squared largest coordinate is 0 (IoU 0).
That gives the rule's exact value on degenerate quads (checked against exact rational arithmetic in the
tests). The numpy and numba paths run the same floating-point operations in the same order (sums left to
right, a reversed ring keeps its vertex 0), so their results are bitwise identical, not merely close: with
unions near 0 any difference in the last bit would be amplified without bound.

Speed
-----
Candidate pairs are pre-filtered by the overlap of their enclosing horizontal boxes. Pairs of two strictly
convex quads (the vast majority: every rotated rectangle) are intersected by clipping one quad with the four
half-planes of the other (Sutherland-Hodgman), vectorized over all pairs at once; every other pair goes
through the 16 triangle intersections of the rule above, also vectorized. The same two paths also exist as one
compiled loop over the pairs, in C (``rscovlm._native``, built at install time when a C compiler is present;
about 30x faster than numpy, nothing to load) and in numba (the ``fast`` extra; as fast once loaded, but loading
it costs ~0.27 s, so it is used only from :data:`NUMBA_MIN_PAIRS` pairs on): :func:`iou_backend` chooses. All
three give bitwise identical areas (above).
"""

from __future__ import annotations

import os

import numpy as np

from rscovlm._compiled import native
from rscovlm.geometry import _iou_numba
from rscovlm.geometry.boxes import obb_to_quad

__all__ = [
    "hbb_iou", "hbb_overlap_pairs", "poly_areas", "poly_intersection_pairs", "poly_iof", "poly_iou",
    "poly_iou_pairs", "rbox_iou",
]

_PAIR_CHUNK = 1 << 18  # pairs intersected per vectorized pass (bounds the temporary arrays to ~100 MB)
# Results within this fraction of (pair extent)^2, resp. (largest coordinate)^2, of zero are rounding noise and
# count as 0. The largest rounding error measured (exact rational arithmetic as reference, random integer quads,
# degenerate ones included) is ~3e-16 of that scale; the smallest non-zero exact intersection there ~1e-7.
_ZERO_REL = 2.0 ** -40  # ~9.1e-13


# ---- small helpers -----------------------------------------------------------------------------------------

def _as_quads(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 8))
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 8:
        raise ValueError(f"{name}: quads need shape (N, 8), got {arr.shape}")
    return arr


def _shoelace_abs_coords(q: np.ndarray) -> np.ndarray:
    """Twice the signed area of ``(N, 8)`` quads, summed term by term in vertex order from absolute
    coordinates - the devkit's exact arithmetic. It decides the orientation, and for a bow tie whose lobes are
    equal the sign is float noise: only the same arithmetic gives the same sign (and so the same IoU)."""
    s = np.zeros(len(q))
    for i in range(4):
        j = (i + 1) % 4
        s = s + (q[:, 2 * i] * q[:, 2 * j + 1] - q[:, 2 * i + 1] * q[:, 2 * j])
    return s


def poly_areas(quads: np.ndarray) -> np.ndarray:
    """Absolute shoelace areas of ``(N, 8)`` quads (a bow tie's two lobes cancel, as in the devkit)."""
    return np.abs(_shoelace_abs_coords(_as_quads(quads, "quads")) / 2.0)


def _sum_columns(terms: np.ndarray) -> np.ndarray:
    """Row sums of ``(K, W)`` added left to right, one column at a time: the compiled kernel's order (``np.sum``
    adds in pairs from 8 columns on, which rounds differently)."""
    s = np.zeros(len(terms))
    for c in range(terms.shape[1]):
        s = s + terms[:, c]
    return s


def _shoelace(pts: np.ndarray) -> np.ndarray:
    """Signed (math-positive) area of ``(K, V, 2)`` rings."""
    x, y = pts[..., 0], pts[..., 1]
    return 0.5 * _sum_columns(x * np.roll(y, -1, axis=-1) - np.roll(x, -1, axis=-1) * y)


def _orient_positive(pts: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Reverse the 4-rings flagged ``neg`` (negative signed area: the devkit's ``if(area(ps)<0) reverse``),
    keeping vertex 0 first as the compiled kernel does (the start vertex sets the order of the sums)."""
    if neg.any():
        pts = pts.copy()
        pts[neg] = pts[neg][:, [0, 3, 2, 1]]
    return pts


def _strictly_convex(pts: np.ndarray) -> np.ndarray:
    """``(K, 4, 2)`` positively oriented quads -> mask of those whose four turns are all strict left turns."""
    e = np.roll(pts, -1, axis=1) - pts
    en = np.roll(e, -1, axis=1)
    turns = e[..., 0] * en[..., 1] - e[..., 1] * en[..., 0]
    return np.all(turns > 0, axis=1)


def _clip(ring: np.ndarray, n: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clip convex rings by the half-plane left of the directed line ``a -> b`` (one line per ring).

    ``ring`` is ``(K, W, 2)``; its first ``n[k]`` vertices are the ring and the rest repeat vertex 0, so that
    ``roll(-1)`` gives every vertex's successor and padding adds nothing to a shoelace sum. Points on the line
    count as inside. A zero-length ``a -> b`` keeps everything (it constrains nothing)."""
    k, w, _ = ring.shape
    valid = np.arange(w)[None, :] < n[:, None]
    ex = (b[:, 0] - a[:, 0])[:, None]
    ey = (b[:, 1] - a[:, 1])[:, None]
    d = ex * (ring[..., 1] - a[:, 1:2]) - ey * (ring[..., 0] - a[:, 0:1])
    d_next = np.roll(d, -1, axis=1)
    inside = d >= 0
    crossing = valid & (inside != (d_next >= 0))
    keep = valid & inside
    denom = np.where(crossing, d - d_next, 1.0)
    t = np.where(crossing, d / denom, 0.0)
    nxt = np.roll(ring, -1, axis=1)
    cut = ring + t[..., None] * (nxt - ring)
    cand = np.stack([ring, cut], axis=2).reshape(k, 2 * w, 2)
    emit = np.stack([keep, crossing], axis=2).reshape(k, 2 * w)
    n_new = emit.sum(axis=1)
    w_new = max(int(n_new.max(initial=0)), 1)
    order = np.argsort(~emit, axis=1, kind="stable")[:, :w_new]
    out = np.take_along_axis(cand, order[..., None], axis=1)
    pad = np.arange(w_new)[None, :] >= n_new[:, None]
    out = np.where(pad[..., None], out[:, :1], out)
    return out, n_new


def _convex_inter(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Intersection areas of aligned, positively oriented, strictly convex quads ``(K, 4, 2)``."""
    ring, n = p, np.full(len(p), 4)
    for j in range(4):
        ring, n = _clip(ring, n, q[:, j], q[:, (j + 1) % 4])
    return np.abs(_shoelace(ring))


def _rule_inter(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The devkit's signed sum of the 16 triangle intersections, for aligned positively oriented quads whose
    coordinates are already relative to the origin O of the triangles."""
    k = len(p)
    a, b = p, np.roll(p, -1, axis=1)  # edges of P: a[i] -> b[i]
    c, d = q, np.roll(q, -1, axis=1)
    s1 = np.sign(a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0])  # orientation of triangle (O, a, b): (K, 4)
    s2 = np.sign(c[..., 0] * d[..., 1] - c[..., 1] * d[..., 0])
    # orient every triangle positively (swap its edge ends), then pair all 4 x 4
    a2 = np.where((s1 < 0)[..., None], b, a)
    b2 = np.where((s1 < 0)[..., None], a, b)
    c2 = np.where((s2 < 0)[..., None], d, c)
    d2 = np.where((s2 < 0)[..., None], c, d)
    sign = (s1[:, :, None] * s2[:, None, :]).reshape(-1)  # (K*16,)
    live = sign != 0
    if not live.any():
        return np.zeros(k)
    ta = np.broadcast_to(a2[:, :, None], (k, 4, 4, 2)).reshape(-1, 2)[live]
    tb = np.broadcast_to(b2[:, :, None], (k, 4, 4, 2)).reshape(-1, 2)[live]
    tc = np.broadcast_to(c2[:, None, :], (k, 4, 4, 2)).reshape(-1, 2)[live]
    td = np.broadcast_to(d2[:, None, :], (k, 4, 4, 2)).reshape(-1, 2)[live]
    origin = np.zeros_like(ta)
    ring = np.stack([origin, ta, tb], axis=1)
    n = np.full(len(ring), 3)
    for u, v in ((origin, tc), (tc, td), (td, origin)):
        ring, n = _clip(ring, n, u, v)
    tri = np.zeros(k * 16)
    tri[live] = np.abs(_shoelace(ring)) * sign[live]
    return _sum_columns(tri.reshape(k, 16))


#: without the compiled kernel, numba is loaded only from this many pairs on (or once loaded): importing numba and
#: loading its cached kernel cost 0.27 s of CPU, then 0.11 us per pair against numpy's 4.0 us, so the two break
#: even at ~65k pairs, about one DOTA-val mAP (measured; docs/metrics.md "Speed")
NUMBA_MIN_PAIRS = 65_000
BACKENDS = ("native", "numba", "numpy")


def iou_backend(n_pairs: int = 0) -> str:
    """The code that intersects ``n_pairs`` pairs: ``native`` (the compiled kernel, when built), else ``numba``
    (the ``fast`` extra) for at least :data:`NUMBA_MIN_PAIRS` pairs or once it is loaded, else ``numpy``.
    ``RSCOVLM_IOU_BACKEND=native|numba|numpy`` forces one (an error if it is not installed);
    ``RSCOVLM_NO_NATIVE=1`` / ``RSCOVLM_NO_NUMBA=1`` rule one out. All three give bitwise identical results."""
    forced = os.environ.get("RSCOVLM_IOU_BACKEND")
    if forced:
        if forced not in BACKENDS:
            raise ValueError(f"RSCOVLM_IOU_BACKEND={forced!r}: expected one of {BACKENDS}")
        if forced == "native" and native() is None:
            raise RuntimeError("RSCOVLM_IOU_BACKEND=native: the compiled kernels are not built (rscovlm._native)")
        if forced == "numba" and not _iou_numba.available():
            raise RuntimeError("RSCOVLM_IOU_BACKEND=numba: numba is not installed (pip install 'rscovlm[fast]')")
        return forced
    if native() is not None:
        return "native"
    if not os.environ.get("RSCOVLM_NO_NUMBA") and _iou_numba.available() and (
            n_pairs >= NUMBA_MIN_PAIRS or _iou_numba.loaded()):
        return "numba"
    return "numpy"


def poly_intersection_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection areas (the devkit rule, see module docstring) of aligned quads ``a[k]``, ``b[k]``.

    No bounding-box pre-filter here: callers pass only candidate pairs."""
    a = _as_quads(a, "a")
    b = _as_quads(b, "b")
    if len(a) != len(b):
        raise ValueError(f"aligned pairs need the same length, got {len(a)} and {len(b)}")
    backend = iou_backend(len(a))
    if backend == "native":
        out = np.empty(len(a))
        native().poly_inter_pairs(np.ascontiguousarray(a), np.ascontiguousarray(b), _ZERO_REL, out)
        return out
    if backend == "numba":
        return _iou_numba.intersection_pairs(a, b, _ZERO_REL)
    return _numpy_intersection_pairs(a, b)


def _numpy_intersection_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The numpy path of :func:`poly_intersection_pairs`."""
    out = np.empty(len(a))
    for s in range(0, len(a), _PAIR_CHUNK):
        qa, qb = a[s:s + _PAIR_CHUNK], b[s:s + _PAIR_CHUNK]
        pa, pb = qa.reshape(-1, 4, 2), qb.reshape(-1, 4, 2)
        # translate each pair so that O sits at the pair's lower-left bounding corner (origin-free rule);
        # orientation is decided before, on the absolute coordinates
        o = np.minimum(pa.min(axis=1), pb.min(axis=1))[:, None, :]
        pa = _orient_positive(pa - o, _shoelace_abs_coords(qa) < 0)
        pb = _orient_positive(pb - o, _shoelace_abs_coords(qb) < 0)
        fast = _strictly_convex(pa) & _strictly_convex(pb)
        res = np.empty(len(pa))
        if fast.any():
            res[fast] = _convex_inter(pa[fast], pb[fast])
        if (~fast).any():
            res[~fast] = _rule_inter(pa[~fast], pb[~fast])
        # rounding noise of an exact 0 -> 0; the pair's extent from the relative coordinates, as in the kernel
        ext = np.maximum(np.maximum(pa, pb).max(axis=1).max(axis=1), 0.0)
        res[np.abs(res) <= _ZERO_REL * (ext * ext)] = 0.0
        out[s:s + _PAIR_CHUNK] = res
    return out


def _abs_scale(q: np.ndarray) -> np.ndarray:
    """Largest absolute coordinate of each quad: the scale of the rounding error of its shoelace area (computed
    from absolute coordinates)."""
    return np.max(np.abs(q), axis=1)


def _hbb_of(q: np.ndarray) -> np.ndarray:
    # element-wise over the 4 vertices: much faster than a reduction along a length-4 strided axis
    return np.stack([np.minimum(np.minimum(q[:, 0], q[:, 2]), np.minimum(q[:, 4], q[:, 6])),
                     np.minimum(np.minimum(q[:, 1], q[:, 3]), np.minimum(q[:, 5], q[:, 7])),
                     np.maximum(np.maximum(q[:, 0], q[:, 2]), np.maximum(q[:, 4], q[:, 6])),
                     np.maximum(np.maximum(q[:, 1], q[:, 3]), np.maximum(q[:, 5], q[:, 7]))], axis=1)


def hbb_overlap_pairs(hbb_a: np.ndarray, hbb_b: np.ndarray, margin: float = 0.0,
                      groups_a: np.ndarray | None = None,
                      groups_b: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs ``(i, j)`` with ``min(x2) - max(x1) > -margin`` and the same for y (strict), i.e. boxes
    whose overlap is positive (``margin=0``), or that come closer than ``margin`` (the devkit's ``+1`` pre-filter
    is ``margin=1``; the test is computed on the coordinates as given, as the devkit computes it). With
    ``groups_a``/``groups_b`` (e.g. image indices) only pairs of the same group count.

    Sort-and-sweep on x (groups laid side by side), so the cost follows the number of x-overlapping pairs, not
    ``N * M``. Pairs come out sorted by ``i``, then ``j``."""
    hbb_a = np.asarray(hbb_a, dtype=np.float64).reshape(-1, 4)
    hbb_b = np.asarray(hbb_b, dtype=np.float64).reshape(-1, 4)
    if len(hbb_a) == 0 or len(hbb_b) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    xa1, xa2 = hbb_a[:, 0].copy(), hbb_a[:, 2].copy()
    xb1, xb2 = hbb_b[:, 0].copy(), hbb_b[:, 2].copy()
    grouped = groups_a is not None or groups_b is not None
    slack = 0.0
    if grouped:
        ga = np.zeros(len(hbb_a), np.int64) if groups_a is None else np.asarray(groups_a, np.int64)
        gb = np.zeros(len(hbb_b), np.int64) if groups_b is None else np.asarray(groups_b, np.int64)
        lo = min(xa1.min(), xb1.min())
        stride = max(xa2.max(), xb2.max()) - lo + 2 * margin + 16.0
        xa1 += ga * stride - lo
        xa2 += ga * stride - lo
        xb1 += gb * stride - lo
        xb2 += gb * stride - lo
        # the shift rounds: widen the sweep so that it keeps every pair the exact test below accepts
        slack = 1e-9 * max(float(np.abs(xa2).max()), float(np.abs(xb2).max()), 1.0)
    order = np.argsort(xb1, kind="stable")
    sx1 = xb1[order]
    max_w = float(np.max(xb2 - xb1))
    start = np.searchsorted(sx1, xa1 - margin - max_w - slack, side="left")
    stop = np.searchsorted(sx1, xa2 + margin + slack, side="left")
    counts = np.maximum(stop - start, 0)
    out_i, out_j = [], []
    bounds = np.concatenate([[0], np.cumsum(counts)])
    budget = 1 << 22
    i0 = 0
    while i0 < len(hbb_a):
        i1 = int(np.searchsorted(bounds, bounds[i0] + budget, side="right")) - 1
        i1 = min(max(i1, i0 + 1), len(hbb_a))
        cnt = counts[i0:i1]
        total = int(cnt.sum())
        if total:
            ii = np.repeat(np.arange(i0, i1), cnt)
            offs = np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            jj = order[np.repeat(start[i0:i1], cnt) + offs]
            ok = (np.minimum(hbb_a[ii, 2], hbb_b[jj, 2]) - np.maximum(hbb_a[ii, 0], hbb_b[jj, 0]) > -margin) & (
                np.minimum(hbb_a[ii, 3], hbb_b[jj, 3]) - np.maximum(hbb_a[ii, 1], hbb_b[jj, 1]) > -margin)
            if grouped:
                ok &= ga[ii] == gb[jj]
            ii, jj = ii[ok], jj[ok]
            srt = np.lexsort((jj, ii))
            out_i.append(ii[srt])
            out_j.append(jj[srt])
        i0 = i1
    if not out_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(out_i).astype(np.int64), np.concatenate(out_j).astype(np.int64)


def _ratio(num: np.ndarray, den: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``num / den``, and 0 where ``den`` is zero to rounding (``|den| <= _ZERO_REL * scale**2``): a union of
    self-intersecting quads can be 0 exactly while the intersection is not, and dividing by the noise would give
    any number."""
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=np.abs(den) > _ZERO_REL * scale ** 2)
    return out


# ---- public API --------------------------------------------------------------------------------------------

def poly_iou(a, b) -> np.ndarray:
    """``(N, 8)`` x ``(M, 8)`` quads -> ``(N, M)`` IoU under the devkit rule (module docstring)."""
    a = _as_quads(a, "a")
    b = _as_quads(b, "b")
    out = np.zeros((len(a), len(b)))
    i, j = hbb_overlap_pairs(_hbb_of(a), _hbb_of(b))
    if len(i):
        inter = poly_intersection_pairs(a[i], b[j])
        scale = np.maximum(_abs_scale(a)[i], _abs_scale(b)[j])
        out[i, j] = _ratio(inter, poly_areas(a)[i] + poly_areas(b)[j] - inter, scale)
    return out


def poly_iof(a, b) -> np.ndarray:
    """``(N, M)`` intersection over the area of ``a[i]`` (the "foreground"; DOTA split's object-kept test)."""
    a = _as_quads(a, "a")
    b = _as_quads(b, "b")
    out = np.zeros((len(a), len(b)))
    i, j = hbb_overlap_pairs(_hbb_of(a), _hbb_of(b))
    if len(i):
        out[i, j] = _ratio(poly_intersection_pairs(a[i], b[j]), poly_areas(a)[i], _abs_scale(a)[i])
    return out


def poly_iou_pairs(a, b) -> np.ndarray:
    """IoU of aligned pairs ``a[k]``, ``b[k]`` (``(N, 8)`` each) -> ``(N,)``."""
    a = _as_quads(a, "a")
    b = _as_quads(b, "b")
    if len(a) != len(b):
        raise ValueError(f"aligned pairs need the same length, got {len(a)} and {len(b)}")
    ha, hb = _hbb_of(a), _hbb_of(b)
    live = (np.minimum(ha[:, 2], hb[:, 2]) > np.maximum(ha[:, 0], hb[:, 0])) & (
        np.minimum(ha[:, 3], hb[:, 3]) > np.maximum(ha[:, 1], hb[:, 1]))
    out = np.zeros(len(a))
    if live.any():
        a, b = a[live], b[live]
        inter = poly_intersection_pairs(a, b)
        out[live] = _ratio(inter, poly_areas(a) + poly_areas(b) - inter, np.maximum(_abs_scale(a), _abs_scale(b)))
    return out


def _hbb_inter_union(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intersection and union areas of broadcast-compatible ``(..., 4)`` boxes, continuous coordinates."""
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter, area_a + area_b - inter


def hbb_iou(a, b) -> np.ndarray:
    """``(N, 4)`` x ``(M, 4)`` horizontal boxes ``x1, y1, x2, y2`` -> ``(N, M)`` IoU in continuous coordinates
    (no ``+1`` pixel terms)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    inter, union = _hbb_inter_union(a[:, None], b[None, :])
    return _ratio(inter, union, 0.0)


def hbb_iou_pairs(a, b) -> np.ndarray:
    """IoU of aligned pairs ``a[k]``, ``b[k]`` of horizontal boxes (``(N, 4)`` each) -> ``(N,)``, continuous
    coordinates (no ``+1`` pixel terms); 0 where the union is empty."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if len(a) != len(b):
        raise ValueError(f"aligned pairs need the same length, got {len(a)} and {len(b)}")
    inter, union = _hbb_inter_union(a, b)
    return _ratio(inter, union, 0.0)


def rbox_iou(obb_a, obb_b) -> np.ndarray:
    """``(N, 5)`` x ``(M, 5)`` rotated rectangles ``cx, cy, w, h, theta`` (radians; any angle convention, the
    rectangle is what counts) -> ``(N, M)`` exact area IoU (MMRotate's ``box_iou_rotated`` in float64)."""
    a = np.asarray(obb_a, dtype=np.float64).reshape(-1, 5)
    b = np.asarray(obb_b, dtype=np.float64).reshape(-1, 5)
    return poly_iou(obb_to_quad(a), obb_to_quad(b))
