import numpy as np
import pytest

from rscovlm.geometry import Boxes, Frame, normalize_quads, obb_to_quad, quad_to_obb, signed_area


def test_hbb_quad_round_trip():
    hbb = np.array([[10, 20, 50, 40], [0, 0, 1, 1]], float)
    quad = Boxes(hbb, "hbb").to("quad")
    assert quad.data.tolist()[0] == [10, 20, 50, 20, 50, 40, 10, 40]
    assert np.allclose(quad.to("hbb").data, hbb)


def test_normalize_quad_clockwise_from_smallest_y():
    # counter-clockwise on screen, starting elsewhere
    ccw = np.array([[10, 40, 50, 40, 50, 20, 10, 20]], float)
    out = normalize_quads(ccw)
    assert out.tolist() == [[10, 20, 50, 20, 50, 40, 10, 40]]
    assert signed_area(out)[0] > 0
    # rotated diamond: unique smallest-y vertex starts
    diamond = np.array([[0, 5, 5, 10, 10, 5, 5, 0]], float)
    assert normalize_quads(diamond).tolist() == [[5, 0, 10, 5, 5, 10, 0, 5]]


def test_normalize_tie_on_smallest_y_takes_smallest_x():
    q = np.array([[50, 20, 50, 40, 10, 40, 10, 20]], float)  # ccw from top-right
    assert normalize_quads(q).tolist() == [[10, 20, 50, 20, 50, 40, 10, 40]]


def test_normalize_is_idempotent_random():
    rng = np.random.default_rng(0)
    q = rng.uniform(0, 100, (200, 8))
    once = normalize_quads(q)
    assert np.array_equal(normalize_quads(once), once)


def test_obb_quad_round_trip_le90():
    rng = np.random.default_rng(1)
    n = 300
    obb = np.stack([rng.uniform(50, 500, n), rng.uniform(50, 500, n), rng.uniform(5, 80, n),
                    rng.uniform(5, 80, n), rng.uniform(-np.pi, np.pi, n)], 1)
    norm = Boxes(obb, "obb").normalized().data
    assert np.all(norm[:, 2] >= norm[:, 3])
    assert np.all((norm[:, 4] >= -np.pi / 2) & (norm[:, 4] < np.pi / 2))
    back = quad_to_obb(obb_to_quad(obb))
    # same rectangle: compare corner sets (angle can differ by pi for squares)
    assert np.allclose(normalize_quads(obb_to_quad(back)), normalize_quads(obb_to_quad(obb)), atol=1e-6)
    square = np.abs(norm[:, 2] - norm[:, 3]) > 1e-6
    assert np.allclose(back[square], norm[square], atol=1e-6)


def test_quad_to_obb_is_minimum_area_rectangle():
    # a parallelogram
    para = np.array([[0, 0, 10, 0, 14, 4, 4, 4]], float)
    # candidates: along x 14 x 4 = 56; along the slanted side 12.73 x 7.07 = 90
    obb = quad_to_obb(para)[0]
    assert np.allclose(obb, [7, 2, 14, 4, 0])


def test_frame_round_trip_within_rounding():
    original = Frame.original(1111, 1182)
    model = Frame.model(1008, 1092)
    rng = np.random.default_rng(2)
    q = rng.uniform(0, 1000, (100, 8))
    boxes = Boxes(q, "quad", original)
    there = boxes.to_frame(model)
    assert there.frame == model
    back = there.to_frame(original)
    assert np.allclose(back.data, q)
    # after integer rounding in the model frame the error is at most half a model pixel, in original pixels
    back_rounded = there.rounded().to_frame(original).data
    err = np.abs(back_rounded - q)
    assert np.all(err[:, 0::2] <= 0.5 * 1111 / 1008 + 1e-9)
    assert np.all(err[:, 1::2] <= 0.5 * 1182 / 1092 + 1e-9)


def test_obb_frame_mapping_uniform_and_not():
    obb = Boxes([[100, 100, 40, 20, 0.3]], "obb", Frame.original(200, 200))
    uni = obb.to_frame(Frame.model(100, 100))
    assert np.allclose(uni.data, [[50, 50, 20, 10, 0.3]])
    stretched = obb.to_frame(Frame.model(100, 200))
    assert stretched.kind == "obb" and stretched.data[0, 0] == pytest.approx(50)


def test_mapping_needs_a_frame():
    with pytest.raises(ValueError, match="frame"):
        Boxes([[0, 0, 1, 1]], "hbb").to_frame(Frame.model(28, 28))


def test_clip_to_image():
    frame = Frame.original(100, 50)
    q = Boxes([[-5, -5, 120, -5, 120, 60, -5, 60]], "quad", frame).clip()
    assert q.data.tolist() == [[0, 0, 100, 0, 100, 50, 0, 50]]
    h = Boxes([[-1, 10, 101, 60]], "hbb", frame).clip()
    assert h.data.tolist() == [[0, 10, 100, 50]]


def test_bad_shapes_and_kinds():
    with pytest.raises(ValueError, match="shape"):
        Boxes([[1, 2, 3]], "hbb")
    with pytest.raises(ValueError, match="kind"):
        Boxes([[1, 2, 3, 4]], "box")
    with pytest.raises(ValueError, match="positive"):
        Frame(0, 10)


def test_object_set_select():
    from rscovlm.geometry import ObjectSet

    s = ObjectSet(Boxes([[0, 0, 1, 1], [2, 2, 3, 3]], "hbb"), ["a", "b"], scores=[0.1, 0.2], difficult=[0, 1])
    assert len(s.select([])) == 0 and s.select([]).boxes.data.shape == (0, 4)
    picked = s.select(np.array([False, True]))
    assert picked.labels == ["b"] and picked.scores.tolist() == [0.2] and picked.difficult.tolist() == [1]
    with pytest.raises(ValueError, match="labels"):
        ObjectSet(Boxes([[0, 0, 1, 1]], "hbb"), [])
