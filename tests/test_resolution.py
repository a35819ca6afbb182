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


def _reference_cdf(x, pixels, lo, hi):
    """P(model area <= x) under the reference draw: s ~ U(lo/P, hi/P) scales the sides, the area P*s^2 is clamped
    into [lo, hi] (docs/data.md)."""
    a, b = lo / pixels, hi / pixels
    return float(np.clip((np.sqrt(x / pixels) - a) / (b - a), 0.0, 1.0)) if x < hi else 1.0


@pytest.mark.parametrize("width,height", [(1024, 1024), (800, 600), (512, 512)])
def test_random_plan_distributions_match_their_formulas(width, height):
    """Many draws with a fixed seed: the empirical CDF of the model pixel count follows the documented formula of
    each distribution (area_uniform: (x - min) / (max - min); reference: (sqrt(x / P) - min / P) / ((max - min) / P),
    with the mass below the lower bound lifted onto it and, for P < max_pixels, the mass above the upper bound
    brought down to it), within the 28-px snapping of the sides."""
    p = ResolutionPolicy()
    lo, hi, pixels = p.min_pixels, p.max_pixels, width * height
    draws = {dist: np.array([np.prod(p.random_plan(width, height, rng, dist).model_size) for rng in
                             [np.random.default_rng([11, i]) for i in range(3000)]], float)
             for dist in ("area_uniform", "reference")}
    for dist, areas in draws.items():
        assert areas.min() >= lo and areas.max() <= hi
    for x in np.linspace(lo, hi, 9)[1:-1] + 7000:
        assert np.mean(draws["area_uniform"] <= x) == pytest.approx((x - lo) / (hi - lo), abs=0.03)
        assert np.mean(draws["reference"] <= x) == pytest.approx(_reference_cdf(x, pixels, lo, hi), abs=0.03)
    # the atoms of the reference draw at the bounds, e.g. for 1024^2: 18.5 % at the smallest size, none at the
    # largest; for 512^2: 6.7 % at the smallest, 51.8 % at the largest
    near_lo = np.mean(draws["reference"] <= 1.15 * lo)
    assert near_lo == pytest.approx(_reference_cdf(1.15 * lo, pixels, lo, hi), abs=0.03)
    at_hi = np.mean(draws["reference"] >= 0.93 * hi)
    assert at_hi == pytest.approx(1 - _reference_cdf(0.93 * hi, pixels, lo, hi), abs=0.03)
    if (width, height) == (512, 512):
        assert at_hi > 0.5 and np.mean(draws["area_uniform"] >= 0.93 * hi) < 0.1
    # the side scale of the reference draw is uniform between the bounds: w / W spreads evenly
    sides = np.array([p.random_plan(width, height, np.random.default_rng([12, i]), "reference").model_size[0]
                      for i in range(1500)], float) / width
    s_lo, s_hi = np.sqrt(lo / pixels), min(np.sqrt(hi / pixels), hi / pixels)
    d = 0.1  # away from the bounds: snapping, and smart_resize's floor(1008 - eps) = 980 for clamped squares
    inner = sides[(sides > s_lo + d) & (sides < s_hi - d)]
    q = (np.quantile(inner, [0.25, 0.5, 0.75]) - s_lo - d) / (s_hi - s_lo - 2 * d)
    assert np.allclose(q, [0.25, 0.5, 0.75], atol=0.05)


def test_random_plan_reference_draw_is_the_reference_formula():
    """One draw, recomputed by hand: s = U(min/P, max/P) from the same generator state, int(side * s), smart_resize."""
    from rscovlm.resolution import smart_resize

    p = ResolutionPolicy()
    rng = np.random.default_rng(3)
    s = np.random.default_rng(3).uniform(p.min_pixels / (1000 * 700), p.max_pixels / (1000 * 700))
    h, w = smart_resize(int(700 * s), int(1000 * s), 28, p.min_pixels, p.max_pixels)
    assert p.random_plan(1000, 700, rng, "reference").model_size == (w, h)
    with pytest.raises(ValueError, match="unknown random resize distribution 'gauss'"):
        p.random_plan(1000, 700, rng, "gauss")
