"""AP from ranked TP/FP: VOC07 11-point (the float quirk of its thresholds) and area mode, float32 mode."""

import numpy as np
import pytest

from rscovlm.eval.ap import ELEVEN_POINTS, average_precision, voc_ap


def test_eleven_thresholds_are_numpy_arange():
    assert ELEVEN_POINTS.tolist() == np.arange(0.0, 1.1, 0.1).tolist()
    assert ELEVEN_POINTS[3] > 0.3 and ELEVEN_POINTS[6] > 0.6 and ELEVEN_POINTS[7] > 0.7
    assert ELEVEN_POINTS[1] == 0.1 and ELEVEN_POINTS[5] == 0.5


def test_recall_exactly_point_three_misses_the_fourth_threshold():
    # 3 TPs of 10 positives, precision 1: recall 0.1, 0.2, 0.3 -> thresholds 0, .1, .2 reached, not 0.30000000000000004
    ap = average_precision([1, 2, 3], [0, 0, 0], 10, "11point")[0]
    assert ap == pytest.approx(3 / 11, abs=1e-15)
    # one more TP (recall 0.4) reaches 0.30000000000000004 and 0.4
    assert average_precision([1, 2, 3, 4], [0, 0, 0, 0], 10, "11point")[0] == pytest.approx(5 / 11, abs=1e-15)


def test_area_mode_hand_value_and_envelope():
    # TP, FP, TP of 4 positives: recall .25 .25 .5, precision 1 .5 .667 -> envelope 1, 2/3, 2/3
    tp, fp = np.cumsum([1, 0, 1]), np.cumsum([0, 1, 0])
    assert average_precision(tp, fp, 4, "area")[0] == pytest.approx(0.25 + 0.25 * 2 / 3, abs=1e-15)
    assert voc_ap(tp / 4, tp / (tp + fp), "area") == pytest.approx(0.25 + 0.25 * 2 / 3, abs=1e-15)


def test_batched_rows_and_float32():
    tp = np.array([[1, 1, 2], [0, 1, 1]])
    fp = np.array([[0, 1, 1], [1, 1, 2]])
    rows = average_precision(tp, fp, 2, "11point")
    assert rows.shape == (2,)
    assert rows[0] == pytest.approx(average_precision(tp[0], fp[0], 2, "11point")[0])
    f32 = average_precision(tp, fp, 2, "11point", np.float32)
    assert f32.dtype == np.float32 and np.allclose(f32, rows, atol=1e-6)
    assert average_precision(np.zeros((3, 0)), np.zeros((3, 0)), 5, "area").tolist() == [0, 0, 0]


def test_errors():
    with pytest.raises(ValueError, match="positive"):
        average_precision([1], [0], 0)
    with pytest.raises(ValueError, match="unknown AP mode"):
        average_precision([1], [0], 1, "101point")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode", ["11point", "area"])
def test_ap_of_flags_equals_ap_of_cumulative_counts_bit_for_bit(dtype, mode):
    """11-point AP from the TP points alone (no pass per threshold) gives average_precision's bits, on random
    flag rows with ignored detections (neither TP nor FP), recalls hitting 0.3/0.6/0.7 exactly, and rows
    without TPs."""
    from rscovlm.eval.ap import average_precision_of_flags

    rng = np.random.default_rng(11)
    for num_pos in (1, 3, 7, 10, 20, 33, 100):
        for _ in range(40):
            n = int(rng.integers(0, 250))
            kind = rng.integers(0, 3, (5, n))  # 0 FP, 1 TP, 2 ignored
            tp = kind == 1
            for row in tp:  # at most num_pos TPs per row (each is a distinct positive)
                row[np.flatnonzero(row)[num_pos:]] = False
            fp = kind == 0
            got = average_precision_of_flags(tp, fp, num_pos, mode, dtype)
            want = average_precision(np.cumsum(tp, axis=1), np.cumsum(fp, axis=1), num_pos, mode, dtype)
            assert got.dtype == want.dtype and np.array_equal(got, want)
