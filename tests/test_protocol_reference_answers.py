"""The reference's answer formats (issue 9, parts 2 and 3): written exactly as VisionXLab/RSCoVLM (c507282) writes
them, read back identically, and every answer form a user meets read by the one tolerant reader.

Expected strings are typed from the reference's code: rscovlm/training/data/dense_det_dataset.py (get_*_messages,
resize_coordinates_in_metadata, convert_segmentation_to_obb, normalize_polygon) and refgeo_dataset.py.
"""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from shapely.geometry import Polygon

from rscovlm.geometry import Boxes, Frame, ObjectSet
from rscovlm.geometry.boxes import normalize_quads, obb_to_quad
from rscovlm.protocol import (DOTA_V1_0, get_prompt_set, parse_detections, parse_grounding, read_grounding,
                              write_detections, write_grounding)
from rscovlm.protocol.reference import min_area_obb, normalize_polygon, scale_truncate

MODEL = Frame.model(1008, 756)
# input order: small vehicle, plane, plane, baseball diamond, plane (ties with the first plane), ship
QUADS = [[10.7, 20.2, 30.9, 20.8, 30.1, 40.5, 10.2, 40.9], [100, 50, 140, 50, 140, 70, 100, 70],
         [5, 60, 25, 60, 25, 80, 5, 80], [200, 200, 220, 200, 220, 210, 200, 210],
         [100, 50, 120, 50, 120, 90, 100, 90], [-3.7, 10, 5, 10, 5, 20, -3.7, 20]]
LABELS = ["small-vehicle", "plane", "plane", "baseball-diamond", "plane", "ship"]


def _objects(quads=QUADS, labels=LABELS, frame=MODEL):
    return ObjectSet(Boxes(np.asarray(quads, dtype=float), "quad", frame), list(labels))


def test_plain_quad_answer_is_the_reference_string():
    # category (label) order, then hbb y1, x1; the two planes at y1=50, x1=100 keep their input order; values
    # truncated toward zero (-3.7 -> -3); one line per object, the last one also ending in a newline
    assert write_detections(_objects(), "plain", kind="quad") == (
        "200,200,220,200,220,210,200,210 baseball diamond\n"
        "100,50,140,50,140,70,100,70 plane\n"
        "100,50,120,50,120,90,100,90 plane\n"
        "5,60,25,60,25,80,5,80 plane\n"
        "-3,10,5,10,5,20,-3,20 ship\n"
        "10,20,30,20,30,40,10,40 small vehicle\n")


def test_plain_hbb_and_obb_answers():
    assert write_detections(_objects(), "plain", kind="hbb") == (
        "200,200,220,210 baseball diamond\n100,50,140,70 plane\n100,50,120,90 plane\n5,60,25,80 plane\n"
        "-3,10,5,20 ship\n10,20,30,40 small vehicle\n")
    # cv2.minAreaRect, w >= h, angle in [-90, 90) degrees, int(): a 20 x 10 box lying flat is angle 0, a
    # 20 x 40 box standing up is w=40 along the vertical, angle -90
    lines = write_detections(_objects(), "plain", kind="obb").splitlines()
    assert lines[:3] == ["210,205,20,10,0 baseball diamond", "120,60,40,20,0 plane", "110,70,40,20,-90 plane"]


def test_json_answers_are_fenced_tab_indented_json_dumps():
    objs = _objects(QUADS[1:3], LABELS[1:3])
    assert write_detections(objs, "json", kind="quad") == (
        '```json\n[\n\t{"quadrant bbox": [100, 50, 140, 50, 140, 70, 100, 70], "label": "plane"},\n'
        '\t{"quadrant bbox": [5, 60, 25, 60, 25, 80, 5, 80], "label": "plane"}\n]\n```')
    assert write_detections(objs, "json", kind="hbb").splitlines()[2] == \
        '\t{"bbox_2d": [100, 50, 140, 70], "label": "plane"},'
    assert write_detections(objs, "json", kind="obb").splitlines()[2] == \
        '\t{"oriented bbox": [120, 60, 40, 20, 0], "label": "plane"},'


def test_empty_answer_and_styles():
    empty = ObjectSet.empty("quad", MODEL)
    for form in ("plain", "json"):
        assert write_detections(empty, form) == "There are none."
        assert write_detections(empty, form, style="rscovlm-v0") == "There is none."
    # the earlier format stays available by name
    assert write_detections(_objects(QUADS[1:2], ["plane"]), style="rscovlm-v0") == \
        "plane: (100,50),(140,50),(140,70),(100,70)"
    assert get_prompt_set().answer_style("detection") == "reference"
    with pytest.raises(ValueError, match="unknown answer style"):
        write_detections(empty, style="geochat")


def test_tilted_obb_truncates_float32_results():
    # a 50 x 25 rectangle along (4, 3): exact centre (12.5, 25), angle atan2(3, 4) = 36.87 degrees; OpenCV's
    # float32 results may lie just below an integer and truncate one lower, as they did in the reference
    cx, cy, w, h, a = min_area_obb([0, 0, 40, 30, 25, 50, -15, 20])
    assert cx == 12 and cy in (24, 25) and w in (49, 50) and h in (24, 25) and a == 36
    cx, cy, w, h, a = min_area_obb([0, 0, 40, -30, 55, -10, 15, 20])
    assert a == -36 and w in (49, 50)


def test_obb_angle_is_clockwise_like_rscovlm():
    # the written angle, read as rscovlm's obb (degrees -> radians, positive clockwise on screen), covers the
    # truncated polygon; read with the opposite sign it does not
    rng = np.random.default_rng(0)
    ious = {1: [], -1: []}
    for _ in range(200):
        obb = np.array([[*rng.uniform(200, 600, 2), *rng.uniform(60, 200, 2), rng.uniform(-np.pi, np.pi)]])
        quad = np.trunc(obb_to_quad(obb)[0]).astype(int)
        o = min_area_obb(quad.tolist())
        assert o[2] >= o[3] and -90 <= o[4] < 90
        for sign in (1, -1):
            back = obb_to_quad(np.array([[*o[:4], sign * math.radians(o[4])]]))[0]
            a, b = Polygon(quad.reshape(4, 2)), Polygon(back.reshape(4, 2))
            ious[sign].append(a.intersection(b).area / a.union(b).area)
    assert min(ious[1]) > 0.9 and np.mean(ious[-1]) < 0.8


def test_normalize_polygon_is_the_reference_order_and_differs_from_normalize_quads_only_off_convex():
    # clockwise on screen from the top-most (then left-most) vertex, whatever the input order
    assert normalize_polygon([30, 40, 10, 20, 10, 40, 30, 20]) == [10, 20, 30, 20, 30, 40, 10, 40]
    assert normalize_polygon([30, 40, 10, 20, 10, 40, 30, 20], clockwise=False) == [10, 20, 10, 40, 30, 40, 30, 20]
    rng = np.random.default_rng(1)
    n_convex = 0
    for _ in range(3000):
        q = rng.integers(0, 50, 8)
        p = Polygon(q.reshape(4, 2))
        if p.is_valid and p.area > 0 and abs(p.convex_hull.area - p.area) < 1e-9 and \
                len(p.convex_hull.exterior.coords) == 5:
            n_convex += 1
            assert normalize_polygon(q.tolist()) == normalize_quads(q[None].astype(float))[0].astype(int).tolist()
    assert n_convex > 300
    # a concave quad: the angle sort re-orders the vertices into another polygon, normalize_quads keeps it
    concave = [4, 1, 0, 1, 1, 5, 1, 4]
    assert normalize_polygon(concave) == [0, 1, 4, 1, 1, 5, 1, 4]
    assert normalize_quads(np.array([concave], float))[0].tolist() == [0, 1, 4, 1, 1, 4, 1, 5]


def test_scaling_truncates_like_the_reference():
    # resize_coordinates_in_metadata: int(v * resized / original), x by width, y by height
    rng = np.random.default_rng(2)
    original, model = Frame.original(4000, 2999), Frame.model(1008, 756)
    data = rng.uniform(-50, 4100, (300, 8))
    got = scale_truncate(data, original, model)
    expected = [[int(v * (1008 if i % 2 == 0 else 756) / (4000 if i % 2 == 0 else 2999)) for i, v in enumerate(row)]
                for row in data.tolist()]
    assert got.tolist() == expected
    # write_detections(frame=...) scales from the boxes' own frame that way
    objs = ObjectSet(Boxes(data[:3], "quad", original), ["plane"] * 3)
    lines = write_detections(objs, kind="quad", frame=model).splitlines()
    written = sorted(tuple(int(v) for v in line.split(" ")[0].split(",")) for line in lines)
    assert written == sorted(tuple(normalize_polygon(row)) for row in expected[:3])


@pytest.mark.parametrize("kind", ["hbb", "obb", "quad"])
@pytest.mark.parametrize("form", ["plain", "json"])
def test_round_trip_every_form_and_kind(kind, form):
    """write -> read gives back exactly the written integers, in the written order."""
    rng = np.random.default_rng(hash((kind, form)) % 2**32)
    classes = list(DOTA_V1_0.classes)
    for _ in range(30):
        n = int(rng.integers(1, 25))
        xy = rng.uniform(0, 900, (n, 2))
        obb = np.concatenate([xy, rng.uniform(8, 120, (n, 2)), rng.uniform(-np.pi, np.pi, (n, 1))], 1)
        objs = ObjectSet(Boxes(obb_to_quad(obb), "quad", MODEL), [classes[i] for i in rng.integers(0, 15, n)])
        text = write_detections(objs, form, kind=kind)
        parsed = parse_detections(text, kind=kind, frame=MODEL, categories=DOTA_V1_0)
        assert parsed.unparsed == [] and parsed.unknown_labels == [] and parsed.unparsed_fraction == 0
        assert parsed.form == ("reference-plain" if form == "plain" else
                               {"hbb": "bbox_2d-json", "obb": "reference-json", "quad": "reference-json"}[kind])
        got = parsed.objects.boxes.data.copy()
        if kind == "obb":
            got[:, 4] = np.degrees(got[:, 4])
        rows = [line.split(" ", 1) for line in text.splitlines()] if form == "plain" else \
            [(json.loads(line.strip().rstrip(","))) for line in text.splitlines()[2:-2]]
        if form == "plain":
            written = [[int(v) for v in r[0].split(",")] for r in rows]
        else:
            written = [next(v for k, v in r.items() if k != "label") for r in rows]
        assert np.allclose(got, np.asarray(written, float), rtol=0, atol=1e-9)  # (degrees <-> radians)
        # identity within the reference's truncation: the written values are those of the truncated quads
        trunc = np.trunc(objs.boxes.data).astype(int)
        expected = sorted(map(tuple, (normalize_polygon(q) if kind == "quad" else
                                      [q[0::2].min(), q[1::2].min(), q[0::2].max(), q[1::2].max()] if kind == "hbb"
                                      else min_area_obb(q.tolist()) for q in trunc)))
        assert sorted(map(tuple, np.asarray(written).tolist())) == expected
        # order: labels (display names) ascending, then hbb y1, then x1
        names = [DOTA_V1_0.canonical(lab).replace("-", " ") for lab in parsed.objects.labels]
        assert names == sorted(names)


def test_grounding_answers_are_the_refgeo_strings():
    # refgeo_dataset.py: int() of the original values, then int(v * resized / original); the label (the
    # question) concatenated without JSON escaping; polygons counter-clockwise
    original, model = Frame.original(800, 800), Frame.model(504, 504)
    hbb = Boxes([[100.9, 200.5, 300.2, 400.7]], "hbb", original)
    q = 'the "big" plane'
    assert write_grounding(hbb, "plain", label=q, frame=model) == f"63,126,189,252 {q}\n"
    assert write_grounding(hbb, "json", label=q, frame=model) == \
        '```json\n[\n\t{"bbox_2d": [63, 126, 189, 252], "label": "the "big" plane"}\n]\n```'
    quad = Boxes([[10, 20, 30, 20, 30, 40, 10, 40]], "quad", model)
    assert write_grounding(quad, "plain", label="x") == "10,20,10,40,30,40,30,20 x\n"
    assert write_grounding(quad, "json", label="x", escape=True) == \
        '```json\n[\n\t{"quadrant bbox": [10, 20, 10, 40, 30, 40, 30, 20], "label": "x"}\n]\n```'
    assert write_grounding(quad, "plain", label="x", kind="obb") == "20,30,20,20,-90 x\n"
    with pytest.raises(ValueError, match="needs its label"):
        write_grounding(quad)


# ---- reading answers in every real form ---------------------------------------------------------------------

def _read(text, **kw):
    return parse_detections(text, frame=MODEL, categories=DOTA_V1_0, **kw)


def test_issue_examples_read_with_nothing_unparsed():
    # main read 0 objects (unparsed fraction 1.0) from both
    r = _read("120,45,160,45,160,80,120,80 plane\n200,10,260,10,260,50,200,50 small vehicle\n")
    assert r.objects.labels == ["plane", "small-vehicle"] and r.unparsed_fraction == 0
    assert r.objects.boxes.kind == "quad" and r.objects.boxes.data[0].tolist() == [120, 45, 160, 45, 160, 80, 120, 80]
    r = _read('{"quadrant bbox": [120, 45, 160, 45, 160, 80, 120, 80], "label": "plane"}')
    assert r.objects.labels == ["plane"] and r.unparsed_fraction == 0 and r.form == "reference-json"


def test_reference_plain_kinds_and_tolerated_variants():
    r = _read("10,20,30,40 plane\n100,100,40,20,30 ship\n1,2,3,4,5,6,7,8 harbor")
    assert r.form == "reference-plain" and r.unparsed == [] and len(r.objects) == 3
    assert r.objects.boxes.kind == "quad"  # mixed kinds become quads
    r = _read("100,100,40,20,30 ship.", kind="obb")
    assert np.allclose(r.objects.boxes.data, [[100, 100, 40, 20, math.radians(30)]])
    r = _read("10, 20, 30.5, 40 plane", kind="hbb")  # spaces and decimals are read
    assert r.objects.boxes.data.tolist() == [[10, 20, 30.5, 40]]
    r = _read("10,20,30,40,50,60 plane\n10,20,30,40")  # 6 numbers: no box kind; no label: not a detection
    assert len(r.objects) == 0 and len(r.unparsed) == 2


def test_truncated_answers_keep_every_complete_object():
    # cut off by the generation budget in the middle of an object
    js = ('```json\n[\n\t{"quadrant bbox": [1, 2, 3, 2, 3, 4, 1, 4], "label": "plane"},\n'
          '\t{"quadrant bbox": [5, 6, 7, 6, 7, 8, 5, 8], "label": "ship"},\n\t{"quadrant bbox": [9, 10, 11')
    r = _read(js)
    assert r.objects.labels == ["plane", "ship"] and len(r.unparsed) == 1 and r.unparsed[0].startswith('{"quad')
    r = _read("1,2,3,2,3,4,1,4 plane\n5,6,7,6,7,8,5,8 sh")
    assert r.objects.labels == ["plane"] and r.unknown_labels == ["sh"]
    r = _read("1,2,3,2,3,4,1,4 plane\n5,6,7,6,7,8")
    assert r.objects.labels == ["plane"] and r.unparsed == ["5,6,7,6,7,8"]


@pytest.mark.parametrize("text", [
    '[{"bbox_2d": [10, 20, 30, 40], "label": "plane"}, {"bbox_2d": [50, 60, 70, 80], "label": "ship"}]',
    '```json\n[\n  {"bbox_2d": [10, 20, 30, 40], "label": "plane"},\n  {"bbox_2d": [50, 60, 70, 80], "label": "ship"}\n'
    ']\n```',
    'Sure! Here they are:\n```json\n[\n  {"bbox_2d": [10, 20, 30, 40], "label": "plane"},\n  {"bbox_2d": [50, 60, '
    '70, 80], "label": "ship"},\n  {"bbox_2d": [90, 1',
])
def test_qwen25vl_native_json(text):
    r = _read(text, kind="hbb")
    assert r.objects.labels == ["plane", "ship"] and r.form == "bbox_2d-json"
    assert r.objects.boxes.data.tolist() == [[10, 20, 30, 40], [50, 60, 70, 80]]


def test_geochat_boxes_on_the_0_100_grid_with_counter_clockwise_angles():
    frame = Frame.model(500, 500)
    r = parse_detections("<p>plane</p> {<10><20><30><40>|<30>}{<50><50><70><60>}\n<p>ship</p> {<1><2><3><4>|<0>}",
                         frame=frame, categories=DOTA_V1_0)
    assert r.objects.labels == ["plane", "plane", "ship"] and r.form == "geochat" and r.unparsed == []
    quads = r.objects.boxes.to_quad().data
    # GeoChat's demo draws {<x1><y1><x2><y2>|<a>} by rotating the box with cv2.getRotationMatrix2D(centre, a)
    # (positive a = counter-clockwise on screen); on a uniform 5x grid the parsed box is that rectangle
    centre = (20 * 5, 30 * 5)
    m = cv2.getRotationMatrix2D(centre, 30, 1)
    corners = np.array([[50, 100], [150, 100], [150, 200], [50, 200]], np.float64)
    drawn = cv2.transform(corners[None], m)[0]
    assert Polygon(drawn).symmetric_difference(Polygon(quads[0].reshape(4, 2))).area < 1e-6
    assert np.allclose(quads[1], [250, 250, 350, 250, 350, 300, 250, 300])
    assert np.allclose(r.objects.boxes.to("hbb").data[2], [5, 10, 15, 20])
    # without a frame the grid values stay, and the report says so
    r = parse_detections("<p>plane</p> {<10><20><30><40>}")
    assert r.objects.boxes.data.tolist() == [[10, 20, 30, 40]] and "0-100 grid" in r.notes[0]


def test_mixed_forms_and_prose_around_boxes():
    text = ("Here are the objects I found:\n"
            "120,45,160,45,160,80,120,80 plane\n"
            "storage tank: (1,1),(5,1),(5,5),(1,5)\n"
            '```json\n[{"bbox_2d": [1, 2, 3, 4], "label": "ship"}]\n```\n'
            "<p>harbor</p> {<1><2><3><4>}\n"
            "Hope this helps.")
    r = parse_detections(text, frame=Frame.model(100, 100), categories=DOTA_V1_0)
    assert r.objects.labels == ["plane", "storage-tank", "ship", "harbor"]
    assert r.unparsed == ["Here are the objects I found:", "Hope this helps"]
    assert r.form == "reference-plain+rscovlm-plain+bbox_2d-json+geochat"
    assert r.forms == {"reference-plain": 1, "rscovlm-plain": 1, "bbox_2d-json": 1, "geochat": 1}


def test_geochat_boxes_among_other_lines_of_one_block():
    text = "Objects:\n1,2,3,2,3,4,1,4 plane\n<p>harbor</p> {<1><2><3><4>}\nship: (1,1),(2,2)\nbye."
    r = parse_detections(text, frame=Frame.model(100, 100), categories=DOTA_V1_0)
    assert r.objects.labels == ["plane", "harbor", "ship"] and r.unparsed == ["Objects:", "bye"]
    assert r.form == "reference-plain+geochat+rscovlm-plain"


def test_eval_responses_read_reference_answers_with_nothing_unparsed():
    from rscovlm.eval.responses import read_response
    from rscovlm.model.families import family_for
    from rscovlm.resolution import ResizePlan

    plan = ResizePlan.from_dict({"original": [2000, 1000], "model": [1008, 504]})
    family = family_for("qwen2_5_vl")
    quads = [[100, 50, 140, 50, 140, 70, 100, 70], [5, 60, 25, 60, 25, 80, 5, 80]]
    objs = ObjectSet(Boxes(np.asarray(quads, float), "quad", Frame.model(1008, 504)), ["plane", "small-vehicle"])
    for kind in ("quad", "hbb", "obb"):
        for form in ("plain", "json"):
            parsed, mapped = read_response(write_detections(objs, form, kind=kind), plan, family, DOTA_V1_0)
            assert parsed.unparsed_fraction == 0 and parsed.objects.labels == ["plane", "small-vehicle"]
            assert np.allclose(Boxes(mapped, "quad").to("hbb").data[0], [100 * 2000 / 1008, 50 * 1000 / 504,
                                                                          140 * 2000 / 1008, 70 * 1000 / 504])
    parsed, _ = read_response('[{"bbox_2d": [10, 20, 30, 40], "label": "ship"}]', plan, family, DOTA_V1_0)
    assert parsed.objects.labels == ["ship"] and parsed.unparsed_fraction == 0


def test_labels_outside_the_vocabulary_map_through_synonyms_only_when_asked():
    text = "1,2,3,2,3,4,1,4 aircraft\n1,2,3,2,3,4,1,4 baseball-diamond\n1,2,3,2,3,4,1,4 Vessel\n1,2,3,2,3,4,1,4 ufo"
    r = _read(text)
    assert r.objects.labels == ["baseball-diamond"] and r.unknown_labels == ["aircraft", "Vessel", "ufo"]
    assert r.synonym_labels == []
    syn = get_prompt_set().synonyms("dota")
    r = _read(text, synonyms=syn)
    assert r.objects.labels == ["plane", "baseball-diamond", "ship"] and r.unknown_labels == ["ufo"]
    assert r.synonym_labels == [("aircraft", "plane"), ("Vessel", "ship")]  # counted apart from exact labels
    assert len(r.objects) + len(r.unparsed) + len(r.unknown_labels) == r.n_fragments


def test_none_answers_of_the_reference_and_the_paper():
    for text in ["There are none.", "There is none.", "there are none", "```json\nThere are none.\n```"]:
        r = _read(text)
        assert r.none and len(r.objects) == 0 and r.unparsed == [] and r.form == "none"


# ---- grounding: the reference rule ------------------------------------------------------------------------------

def test_grounding_reads_the_leading_numbers_of_the_first_line():
    # metric.py::extract_qwen25vl_bbox_answer, plain: only the first line, numbers first, then a label
    for text in ["12,34,56,78 the 2 storage tanks\n", "12,34,56,78 the 2 storage tanks next to 3 ships",
                 "12,34,56,78 tank 2\n90,91,92,93 tank 3"]:
        read = read_grounding(text)
        assert read.rule == "reference-plain" and read.values == [(12, 34, 56, 78)], text
    # JSON: the first [n, n, n, n] anywhere
    read = read_grounding('```json\n[\n\t{"bbox_2d": [12, 34, 56, 78], "label": "the 2 storage tanks"}\n]\n```')
    assert read.rule == "reference-json" and read.values == [(12, 34, 56, 78)]
    boxes, unparsed = parse_grounding("12,34,56,78 the 2 storage tanks", frame=MODEL)
    assert boxes.data.tolist() == [[12, 34, 56, 78]] and unparsed == [] and boxes.frame == MODEL


def test_grounding_rules_differ_where_the_reference_reads_nothing():
    # the reference needs a label after the numbers and no spaces after the commas
    for text in ["12,34,56,78\nplane", "12, 34, 56, 78 plane", "the plane (12,34),(56,78)"]:
        assert read_grounding(text, rule="reference").values == [], text
        assert read_grounding(text).values == [(12, 34, 56, 78)], text  # auto: then the box reader
        assert read_grounding(text).rule == "boxes"
    # the prompt's form selects the rule as in the reference
    assert read_grounding("12,34,56,78 plane", form="json", rule="reference").values == []
    assert read_grounding("[12, 34, 56, 78]", form="plain", rule="reference").values == []
    # strict box reader: every box; the reference rule: the first only
    text = "12,34,56,78 plane\n1,2,3,4 ship"
    assert len(parse_grounding(text, rule="boxes")[0]) == 2 and len(parse_grounding(text)[0]) == 1


def test_normalized_grounding_answers_go_through_the_1000_grid():
    read = read_grounding('[{"bbox_2d": [0.1, 0.2, 0.5, 0.6]}]')
    assert read.normalized and read.values == [(100, 200, 500, 600)]
    boxes, _ = parse_grounding('[{"bbox_2d": [0.1, 0.2, 0.5, 0.6]}]', frame=Frame.model(1000, 500))
    assert np.allclose(boxes.data, [[100, 100, 500, 300]])
