import numpy as np
import pytest

from rscovlm.geometry import Boxes
from rscovlm.resolution import ResizePlan, ResolutionPolicy


def test_classify_small_regular_uhr():
    p = ResolutionPolicy()
    assert p.classify(200, 200) == "small"
    assert p.classify(800, 800) == "regular"
    assert p.classify(1024, 1024) == "regular"
    assert p.classify(7099, 6329) == "uhr"
    assert ResolutionPolicy(uhr_min_pixels=1008 * 1008).classify(1024, 1024) == "uhr"


def test_plan_is_smart_resize_within_bounds():
    p = ResolutionPolicy()
    for w, h in [(256, 256), (800, 800), (1024, 1024), (4000, 3000), (100, 37)]:
        plan = p.plan(w, h)
        mw, mh = plan.model_size
        assert mw % 28 == 0 and mh % 28 == 0
        assert p.min_pixels <= mw * mh <= p.max_pixels
    assert p.plan(800, 800).model_size == (812, 812)
    assert p.plan(100, 100).model_size == (224, 224)  # small images are enlarged


def test_random_plan_area_uniform_and_boxes_follow():
    p = ResolutionPolicy()
    rng = np.random.default_rng(0)
    areas = []
    for _ in range(400):
        plan = p.random_plan(800, 600, rng)
        mw, mh = plan.model_size
        assert p.min_pixels <= mw * mh <= p.max_pixels
        areas.append(mw * mh)
    areas = np.asarray(areas, float)
    # uniform in area: the quartiles sit near a quarter, half and three quarters of the range
    q = (np.quantile(areas, [0.25, 0.5, 0.75]) - p.min_pixels) / (p.max_pixels - p.min_pixels)
    assert np.allclose(q, [0.25, 0.5, 0.75], atol=0.08)
    plan = p.random_plan(800, 600, np.random.default_rng(3))
    box = Boxes([[80, 60, 400, 300]], "hbb")
    m = plan.to_model(box)
    sx, sy = plan.model.width / 800, plan.model.height / 600
    assert np.allclose(m.data, [[80 * sx, 60 * sy, 400 * sx, 300 * sy]])
    assert np.allclose(plan.to_original(m).data, box.data)


def test_plan_json_round_trip_and_frame_check():
    plan = ResolutionPolicy().plan(1111, 1182)
    again = ResizePlan.from_dict(plan.as_dict())
    assert again == plan
    with pytest.raises(ValueError, match="frame"):
        plan.to_model(Boxes([[0, 0, 1, 1]], "hbb", plan.model))


def test_policy_rejects_inconsistent_bounds():
    with pytest.raises(ValueError):
        ResolutionPolicy(min_pixels=10, max_pixels=5)
