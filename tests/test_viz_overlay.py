import numpy as np
import pytest
from PIL import Image

from rscovlm.geometry import Boxes, ObjectSet
from rscovlm.protocol.categories import get_category_set
from rscovlm.viz.overlay import (TITLE_BACKGROUND, compare, contrast_ratio, draw_objects, font, font_size_for,
                                 label_color, label_style, side_by_side, titled)


def test_draw_objects_marks_polygon_outline_only():
    img = Image.new("RGB", (100, 80), "black")
    objs = ObjectSet(Boxes([[20, 20, 60, 40]], "hbb"), ["plane"])
    out = np.asarray(draw_objects(img, objs, show_labels=False))
    color = label_color("plane")
    assert tuple(out[20, 40]) == color  # top edge
    assert tuple(out[30, 40]) == (0, 0, 0)  # inside stays untouched
    assert np.asarray(img).sum() == 0  # the input is not modified
    assert label_color("small-vehicle") == label_color("small vehicle")


def test_side_by_side_size():
    a, b = Image.new("RGB", (10, 20)), Image.new("RGB", (30, 5))
    assert side_by_side(a, b, gap=4).size == (44, 20)


def test_label_text_contrasts_with_its_box_for_every_class():
    """Label boxes are solid and the text on them is black or white, whichever contrasts more: at least WCAG's
    4.5:1 for every DOTA class colour (the old overlay drew the class colour straight onto the image)."""
    for name in get_category_set("dota-v2.0").classes:
        fill, ink = label_style(label_color(name))
        assert contrast_ratio(fill, ink) >= 4.5, name
    assert contrast_ratio((0, 0, 0), (255, 255, 255)) == pytest.approx(21)


def _label_box(arr: np.ndarray, fill, below: int) -> tuple[slice, slice]:
    """Bounding rows/columns of the pixels of colour ``fill`` in the rows above ``below`` (the label box)."""
    rows, cols = np.nonzero((arr[:below] == fill).all(axis=2))
    return slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)


@pytest.mark.parametrize("background", ["same", "white", "black"])
def test_label_is_readable_on_any_background(background):
    """On a light, dark or same-coloured object the label is a solid box in the class colour carrying text in
    the contrasting ink: the box holds many ink pixels (the glyphs) and more fill pixels around them; it sits
    above the object's top edge, starting at its left side."""
    color = label_color("storage-tank")
    fill, ink = label_style(color)
    bg = {"same": color, "white": (255, 255, 255), "black": (0, 0, 0)}[background]
    img = Image.new("RGB", (336, 336), bg)
    arr = np.asarray(draw_objects(img, ObjectSet(Boxes([[100, 120, 200, 220]], "hbb"), ["storage-tank"])))
    if background == "same":  # the box has the image's colour here: find it by its ink
        rows, cols = np.nonzero((arr[:120] != bg).any(axis=2))
        rows, cols = slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)
        assert 100 <= cols.start <= 106
    else:
        rows, cols = _label_box(arr, fill, 120)
        assert rows.stop - rows.start >= 12 and cols.start == 100
    box = arr[rows, cols].astype(int)
    ink_px = (np.abs(box - ink).sum(axis=2) < 60).sum()
    fill_px = (box == fill).all(axis=2).sum()
    assert ink_px > 40 and fill_px > ink_px
    assert rows.stop <= 120
    outside = np.ones(arr.shape[:2], bool)
    outside[rows, cols] = False
    outside[118:, :] = False  # the polygon outline
    assert (arr[outside] == bg).all()  # nothing else drawn


def test_label_text_scales_with_the_image():
    assert font_size_for(336, 336) == 12 and font_size_for(1024, 1024) == 19 and font_size_for(4000, 3000) > 30
    for side in (336, 2000):
        img = Image.new("RGB", (side, side), "white")
        top = side // 2
        arr = np.asarray(draw_objects(img, ObjectSet(Boxes([[top, top, side * 0.7, side * 0.7]], "hbb"),
                                                     ["plane"])))
        rows, _ = _label_box(arr, label_style(label_color("plane"))[0], top)
        assert font_size_for(side, side) <= rows.stop - rows.start <= 2 * font_size_for(side, side)
    assert font(12).getbbox("ground truth")[2] > font(12).getbbox("plane")[2]
    assert font(12).path.endswith("DejaVuSans.ttf")  # the TrueType font matplotlib ships


def test_label_near_the_border_stays_inside_the_image():
    img = Image.new("RGB", (120, 80), "white")
    arr = np.asarray(draw_objects(img, ObjectSet(Boxes([[100, 0, 120, 30]], "hbb"), ["swimming-pool"])))
    rows, cols = _label_box(arr, label_style(label_color("swimming-pool"))[0], 80)
    assert rows.start == 0 and cols.stop == 120 and cols.stop - cols.start > 40  # shifted left, not cut off


def _text_columns(strip: np.ndarray) -> int:
    """How many columns of a title strip hold text pixels (anything lighter than the strip background)."""
    return int((np.abs(strip.astype(int) - TITLE_BACKGROUND).sum(axis=2) > 100).any(axis=0).sum())


def test_compare_titles_the_ground_truth_and_prediction_panels_with_counts():
    img = Image.new("RGB", (336, 336), (200, 190, 150))
    truth = ObjectSet(Boxes([[20, 40, 60, 80], [100, 100, 150, 160]], "hbb"), ["ship", "ship"])
    pred = ObjectSet(Boxes([[20, 40, 60, 80]], "hbb"), ["ship"])
    out = compare(img, truth, pred)
    strip = 2 * font_size_for(336, 336)
    assert out.size == (336 + 8 + 336, 336 + strip)
    arr = np.asarray(out)
    left, right = arr[:strip, :336], arr[:strip, 344:]
    for panel in (left, right):
        assert (panel == TITLE_BACKGROUND).all(axis=2).mean() > 0.6 and _text_columns(panel) > 60
    # the strips carry exactly the rendered titles, and the two differ
    for panel, title in ((left, "ground truth: 2 objects"), (right, "prediction: 1 object")):
        assert np.array_equal(panel, np.asarray(titled(img, title))[:strip])
    assert not np.array_equal(left, right)
    # below the strips: the image with the objects of each side drawn
    assert np.array_equal(arr[strip:, :336], np.asarray(draw_objects(img, truth)))
    assert np.array_equal(arr[strip:, 344:], np.asarray(draw_objects(img, pred)))
