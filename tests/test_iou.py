"""Polygon IoU (devkit rule), hbb/rbox IoU and polygon NMS on hand-computed cases and against shapely."""

import os

import numpy as np
import pytest
import shapely

from rscovlm.geometry import iou as iou_mod
from rscovlm.geometry.boxes import obb_to_quad
from rscovlm.geometry.iou import (
    hbb_iou, hbb_overlap_pairs, poly_intersection_pairs, poly_iof, poly_iou, poly_iou_pairs, rbox_iou,
)
from rscovlm.geometry.nms import batched_poly_nms, poly_nms

SQ = [0, 0, 2, 0, 2, 2, 0, 2]  # 2x2 square


@pytest.fixture(params=["numba", "numpy"])
def backend(request, monkeypatch):
    if request.param == "numpy":
        monkeypatch.setenv("RSCOVLM_NO_NUMBA", "1")
    elif not iou_mod._iou_numba.available():
        pytest.skip("numba not installed")
    return request.param


def slow_devkit_rule(p, q):
    """The devkit's polyiou rule written plainly: orient both rings positively, sum over edge pairs the signed
    area of the intersection of triangles (O, edge) (shapely does the clipping here)."""
    def _signed(r):
        return 0.5 * sum(r[i, 0] * r[(i + 1) % 4, 1] - r[(i + 1) % 4, 0] * r[i, 1] for i in range(4))

    p, q = np.asarray(p, float).reshape(4, 2), np.asarray(q, float).reshape(4, 2)
    p = p[::-1] if _signed(p) < 0 else p
    q = q[::-1] if _signed(q) < 0 else q
    inter = 0.0
    for i in range(4):
        a, b = p[i], p[(i + 1) % 4]
        s1 = np.sign(a[0] * b[1] - a[1] * b[0])
        for j in range(4):
            c, d = q[j], q[(j + 1) % 4]
            s2 = np.sign(c[0] * d[1] - c[1] * d[0])
            if s1 == 0 or s2 == 0:
                continue
            t1 = shapely.Polygon([(0, 0), a, b])
            t2 = shapely.Polygon([(0, 0), c, d])
            inter += s1 * s2 * t1.intersection(t2).area
    union = abs(_signed(p)) + abs(_signed(q)) - inter
    return inter / union if union != 0 else 0.0


def test_disjoint_touching_identical_nested(backend):
    far = np.add(SQ, 10)
    touch = [2, 0, 4, 0, 4, 2, 2, 2]  # shares an edge
    corner = [2, 2, 3, 2, 3, 3, 2, 3]  # shares a vertex
    inner = [0.5, 0.5, 1.5, 0.5, 1.5, 1.5, 0.5, 1.5]
    m = poly_iou([SQ], [far, touch, corner, SQ, inner])
    np.testing.assert_allclose(m[0], [0, 0, 0, 1, 0.25], atol=1e-12)
    # orientation and start vertex do not matter
    flipped = [0, 2, 2, 2, 2, 0, 0, 0]
    assert poly_iou([SQ], [flipped])[0, 0] == pytest.approx(1.0, abs=1e-12)


def test_half_overlap_and_rotated_square(backend):
    shifted = [1, 0, 3, 0, 3, 2, 1, 2]
    assert poly_iou([SQ], [shifted])[0, 0] == pytest.approx(2 / 6, abs=1e-12)
    # the 2x2 square and itself turned by 45 degrees about its centre: a regular octagon in common
    rot = obb_to_quad(np.array([[1.0, 1.0, 2.0, 2.0, np.pi / 4]]))
    inter = 8 * (np.sqrt(2) - 1)  # octagon area for side 2
    assert poly_iou([SQ], rot)[0, 0] == pytest.approx(inter / (8 - inter), abs=1e-12)


def test_degenerate_quads(backend):
    line = [0, 1, 2, 1, 2, 1, 0, 1]  # zero area
    point = [1, 1, 1, 1, 1, 1, 1, 1]
    assert poly_iou([SQ], [line, point]).tolist() == [[0.0, 0.0]]
    assert poly_iou([line], [line])[0, 0] == 0.0  # 0/0 is defined as 0
    tri = [0, 0, 2, 0, 2, 0, 0, 2]  # repeated vertex: a triangle of area 2
    assert poly_iou([SQ], [tri])[0, 0] == pytest.approx(0.5, abs=1e-12)
    spike = [0, 0, 2, 0, 1, 0, 1, 1]  # edge folds back on itself: triangle (0,0),(1,0),(1,1)
    assert poly_iou([SQ], [spike])[0, 0] == pytest.approx(0.5 / 4, abs=1e-12)


def test_self_intersecting_hand_values(backend):
    bowtie = [0, 0, 2, 2, 2, 0, 0, 2]  # two lobes of area 1, signed area 0: left lobe +1, right lobe -1
    left = [0, 0, 1, 0, 1, 2, 0, 2]
    right = [1, 0, 2, 0, 2, 2, 1, 2]
    m = poly_iou([bowtie], [left, right])
    np.testing.assert_allclose(m[0], [1 / (0 + 2 - 1), -1 / (0 + 2 + 1)], atol=1e-12)


def test_self_intersecting_and_degenerate_match_slow_rule(backend):
    rng = np.random.default_rng(3)
    a = rng.uniform(0, 10, (60, 8))
    b = a + rng.normal(0, 3, a.shape)
    b[:10, 2:4] = b[:10, 0:2]  # repeated vertices
    got = poly_iou_pairs(a, b)
    ref = np.array([slow_devkit_rule(p, q) for p, q in zip(a, b)])
    np.testing.assert_allclose(got, ref, atol=1e-9, rtol=1e-9)


def test_random_valid_quads_match_shapely(backend):
    rng = np.random.default_rng(4)
    obb = np.stack([rng.uniform(0, 300, 200), rng.uniform(0, 300, 200), rng.uniform(4, 80, 200),
                    rng.uniform(4, 80, 200), rng.uniform(-4, 4, 200)], 1)
    a = obb_to_quad(obb)
    b = obb_to_quad(obb[rng.permutation(200)] + rng.normal(0, 8, obb.shape) * [1, 1, 1, 1, 0.1])
    a[:50] += rng.normal(0, 1.5, (50, 8))  # general (possibly non-convex) quads
    pa, pb = shapely.polygons(a.reshape(-1, 4, 2)), shapely.polygons(b.reshape(-1, 4, 2))
    ok = shapely.is_valid(pa)[:, None] & shapely.is_valid(pb)[None]
    inter = shapely.area(shapely.intersection(pa[:, None], pb[None]))
    ref = inter / (shapely.area(pa)[:, None] + shapely.area(pb)[None] - inter)
    got = poly_iou(a, b)
    assert ok.mean() > 0.9 and (got > 0).sum() > 50
    np.testing.assert_allclose(got[ok], ref[ok], atol=1e-9)
    np.testing.assert_allclose(poly_iou_pairs(a, b), np.diag(got), atol=1e-12)


def test_numba_and_numpy_paths_agree():
    if not iou_mod._iou_numba.available():
        pytest.skip("numba not installed")
    rng = np.random.default_rng(5)
    a = rng.uniform(0, 20, (500, 8)) + 3000
    b = a + rng.normal(0, 4, a.shape)
    fast = poly_intersection_pairs(a, b)
    os.environ["RSCOVLM_NO_NUMBA"] = "1"
    try:
        slow = poly_intersection_pairs(a, b)
    finally:
        del os.environ["RSCOVLM_NO_NUMBA"]
    np.testing.assert_allclose(fast, slow, atol=1e-8)


def test_iof_hbb_rbox():
    big = [0, 0, 4, 0, 4, 4, 0, 4]
    assert poly_iof([SQ], [big])[0, 0] == pytest.approx(1.0)
    assert poly_iof([big], [SQ])[0, 0] == pytest.approx(0.25)
    np.testing.assert_allclose(hbb_iou([[0, 0, 2, 2]], [[1, 0, 3, 2], [5, 5, 6, 6]]), [[2 / 6, 0]])
    # rotated rectangles: a 4x2 box and the same box turned by 90 degrees about its centre -> 2x2 / (8+8-4)
    r = rbox_iou([[5, 5, 4, 2, 0.0]], [[5, 5, 4, 2, np.pi / 2], [5, 5, 2, 4, 0.0]])
    np.testing.assert_allclose(r, [[4 / 12, 4 / 12]], atol=1e-12)


def test_hbb_overlap_pairs_groups_and_margin():
    a = np.array([[0, 0, 2, 2], [10, 10, 12, 12]], float)
    b = np.array([[2.5, 0, 3, 2], [1, 1, 3, 3], [1, 1, 3, 3]], float)
    i, j = hbb_overlap_pairs(a, b)
    assert list(zip(i, j)) == [(0, 1), (0, 2)]
    i, j = hbb_overlap_pairs(a, b, margin=1.0)  # the devkit's +1 pre-filter also admits the 0.5 px gap
    assert list(zip(i, j)) == [(0, 0), (0, 1), (0, 2)]
    i, j = hbb_overlap_pairs(a, b, groups_a=[0, 0], groups_b=[0, 1, 0])
    assert list(zip(i, j)) == [(0, 2)]


def test_poly_nms_greedy_and_ties():
    boxes = np.array([SQ, np.add(SQ, [0.2, 0] * 4), np.add(SQ, [5, 5] * 4), np.add(SQ, [1.9, 0] * 4)], float)
    scores = np.array([0.9, 0.8, 0.7, 0.85])
    # 1 overlaps 0 heavily (IoU .82) -> suppressed; 3 overlaps 0 weakly (IoU ~.026) -> kept at thr .1
    assert poly_nms(boxes, scores, 0.1).tolist() == [0, 3, 2]
    assert poly_nms(boxes, scores, 0.9).tolist() == [0, 3, 1, 2]
    # equal scores: input order decides who survives
    same = np.array([SQ, SQ], float)
    assert poly_nms(same, [0.5, 0.5], 0.5).tolist() == [0]
    assert poly_nms(same[::-1], [0.5, 0.5], 0.5).tolist() == [0]
    # exactly at the threshold is not suppressed (strict >)
    half = np.array([[0, 0, 4, 0, 4, 1, 0, 1], [0, 0, 2, 0, 2, 1, 0, 1]], float)  # IoU 0.5
    assert poly_nms(half, [1, 0.5], 0.5).tolist() == [0, 1]
    assert poly_nms(half, [1, 0.5], 0.49).tolist() == [0]
    kept = batched_poly_nms(np.concatenate([same, same]), [0.5, 0.4, 0.6, 0.3], ["a", "a", "b", "b"], 0.5)
    assert kept.tolist() == [2, 0]


def test_property_symmetric_bounded_and_translation_invariant():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    coord = st.floats(-50, 50, allow_nan=False, allow_infinity=False).map(lambda v: round(v, 2))
    quad = st.lists(coord, min_size=8, max_size=8)

    @settings(max_examples=150, deadline=None)
    @given(quad, quad, st.floats(-1000, 1000).map(lambda v: round(v, 1)))
    def check(p, q, shift):
        m = poly_iou([p], [q])[0, 0]
        assert m == pytest.approx(poly_iou([q], [p])[0, 0], abs=1e-9)
        moved = poly_iou([np.add(p, shift)], [np.add(q, shift)])[0, 0]
        assert np.isfinite(m) and np.isfinite(moved)
        pa, pb = shapely.Polygon(np.reshape(p, (4, 2))), shapely.Polygon(np.reshape(q, (4, 2)))
        if pa.is_valid and pb.is_valid and pa.area > 1e-3 and pb.area > 1e-3:
            assert -1e-12 <= m <= 1 + 1e-12
            assert moved == pytest.approx(m, abs=1e-9)

    check()
