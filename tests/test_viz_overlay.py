import numpy as np
from PIL import Image

from rscovlm.geometry import Boxes, ObjectSet
from rscovlm.viz.overlay import draw_objects, label_color, side_by_side


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
