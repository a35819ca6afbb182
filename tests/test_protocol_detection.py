import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rscovlm.geometry import Boxes, Frame, ObjectSet, normalize_quads
from rscovlm.protocol import (DOTA_V1_0, NONE_ANSWER, canonical_label, format_detections, parse_detections,
                              parse_grounding)
from rscovlm.protocol.detection import canonical_order
from rscovlm.protocol.readers import (MAX_CHARS, MAX_JSON_DEPTH, MAX_PIECES, _json_objects, _json_objects_small,
                                      read_answer)

CLASSES = list(DOTA_V1_0.classes)


def _random_objects(rng, kind, n):
    labels = [CLASSES[i] for i in rng.integers(0, len(CLASSES), n)]
    if kind == "hbb":
        xy = rng.integers(0, 900, (n, 2))
        wh = rng.integers(1, 100, (n, 2))
        data = np.concatenate([xy, xy + wh], 1)
    elif kind == "quad":
        data = rng.integers(0, 1000, (n, 8))
    else:
        data = np.stack([rng.integers(50, 900, n), rng.integers(50, 900, n), rng.integers(10, 90, n),
                         rng.integers(5, 90, n), np.radians(rng.integers(-90, 90, n))], 1)
    return ObjectSet(Boxes(data.astype(float), kind, Frame.model(1008, 1008)), labels)


@pytest.mark.parametrize("kind", ["hbb", "obb", "quad"])
@pytest.mark.parametrize("form", ["plain", "json"])
def test_format_parse_identity(kind, form):
    rng = np.random.default_rng(hash((kind, form)) % 2**32)
    for _ in range(20):
        objs = _random_objects(rng, kind, int(rng.integers(1, 30)))
        text = format_detections(objs, form)
        parsed = parse_detections(text, kind=kind, frame=objs.boxes.frame, categories=DOTA_V1_0)
        assert parsed.unparsed == [] and parsed.unknown_labels == []
        values, order = canonical_order(objs)
        got = parsed.objects.boxes.data.copy()
        if kind == "obb":
            got[:, 4] = np.degrees(got[:, 4])
        assert parsed.objects.labels == [objs.labels[i] for i in order]
        assert np.allclose(got, values[order], atol=1e-9)
        assert parsed.objects.boxes.frame == objs.boxes.frame
        # the text is a fixed point
        assert format_detections(parsed.objects, form) == text


def test_layout_grouped_sorted_by_category_and_start_vertex():
    objs = ObjectSet(Boxes([[10, 50, 20, 50, 20, 60, 10, 60], [30, 5, 40, 5, 40, 15, 30, 15],
                            [1, 1, 5, 1, 5, 5, 1, 5]], "quad"), ["small-vehicle", "plane", "plane"])
    text = format_detections(objs)
    assert text == ("plane: (1,1),(5,1),(5,5),(1,5); (30,5),(40,5),(40,15),(30,15)\n"
                    "small vehicle: (10,50),(20,50),(20,60),(10,60)")
    js = format_detections(objs, "json")
    assert js.startswith("```json\n[") and js.endswith("]\n```")
    rows = json.loads(js[len("```json\n"):-len("```")])
    assert [r["label"] for r in rows] == ["plane", "plane", "small vehicle"]
    assert rows[0]["quad_2d"] == [1, 1, 5, 1, 5, 5, 1, 5]


def test_none_answer_both_ways():
    empty = ObjectSet.empty("quad")
    assert format_detections(empty) == NONE_ANSWER == format_detections(empty, "json")
    for text in ["There is none.", "There are none.", "  there is none  "]:
        r = parse_detections(text)
        assert r.none and len(r.objects) == 0 and r.unparsed == []


def test_label_spellings_and_unknown_labels():
    assert canonical_label("small vehicle") == canonical_label("Small_Vehicle") == "small-vehicle"
    assert canonical_label("car") is None
    r = parse_detections("car: (1,2),(3,4)\nplane: (1,1),(2,1),(2,2),(1,2)", categories=DOTA_V1_0)
    assert r.unknown_labels == ["car"] and r.objects.labels == ["plane"]
    assert r.unparsed_fraction == pytest.approx(0.5)


def test_truncated_json_keeps_complete_objects():
    text = '```json\n[\n  {"bbox_2d": [1, 2, 3, 4], "label": "plane"},\n  {"bbox_2d": [5, 6, 7'
    r = parse_detections(text, categories=DOTA_V1_0)
    assert r.objects.labels == ["plane"] and len(r.unparsed) == 1


def test_wrong_kind_and_arity_reported():
    r = parse_detections("plane: (1,2),(3,4); (1,2,3)", kind="quad")
    assert len(r.objects) == 0 and len(r.unparsed) == 2


def test_mixed_kinds_become_quads():
    r = parse_detections("plane: (0,0),(4,2); (0,0),(4,0),(4,4),(0,4)")
    assert r.objects.boxes.kind == "quad"
    assert r.objects.boxes.data[0].tolist() == [0, 0, 4, 0, 4, 2, 0, 2]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text())
def test_parser_never_raises_on_any_text(text):
    r = parse_detections(text, categories=DOTA_V1_0)
    assert 0.0 <= r.unparsed_fraction <= 1.0
    parse_detections(text, kind="quad")


_valid = format_detections(ObjectSet(Boxes([[1, 1, 5, 1, 5, 5, 1, 5], [9, 9, 19, 9, 19, 19, 9, 19]], "quad"),
                                     ["plane", "ship"]), "plain")
_valid_json = format_detections(ObjectSet(Boxes([[1, 1, 5, 5]], "hbb"), ["plane"]), "json")


@settings(max_examples=300, deadline=None, derandomize=True)
@given(base=st.sampled_from([_valid, _valid_json]), pos=st.integers(0, 200), cut=st.integers(0, 20),
       insert=st.text(max_size=10))
def test_parser_never_raises_on_mutated_responses(base, pos, cut, insert):
    pos = min(pos, len(base))
    mutated = base[:pos] + insert + base[pos + cut:]
    r = parse_detections(mutated, categories=DOTA_V1_0)
    # every fragment is accounted for exactly once: an object, an unreadable fragment or an unknown label
    assert len(r.objects) + len(r.unparsed) + len(r.unknown_labels) == r.n_fragments


def test_parsed_boxes_map_back_to_original_frame():
    original, model = Frame.original(2000, 1000), Frame.model(1008, 504)
    gt = ObjectSet(Boxes([[100, 100, 300, 100, 300, 200, 100, 200]], "quad", original), ["plane"])
    text = format_detections(gt.to_frame(model))
    parsed = parse_detections(text, kind="quad", frame=model, categories=DOTA_V1_0)
    back = parsed.objects.to_frame(original).boxes.data
    assert np.abs(back - gt.boxes.data).max() <= 0.5 * 2000 / 1008 + 1e-9
    assert np.array_equal(normalize_quads(back), back)


QUAD_A, QUAD_B = "(1,1),(5,1),(5,5),(1,5)", "(9,9),(19,9),(19,19),(9,19)"


def test_several_categories_on_one_line_keep_their_labels():
    # the README's layout on one line: each `label:` starts a new category (main read two planes, 0 unparsed)
    for text in [f"plane: {QUAD_A}; ship: {QUAD_B}", f"plane: {QUAD_A} ship: {QUAD_B}",
                 f"plane: {QUAD_A}, ship: {QUAD_B}", f"plane: {QUAD_A}; {QUAD_A}; ship: {QUAD_B}; {QUAD_B}"]:
        r = parse_detections(text, categories=DOTA_V1_0)
        n = text.count("(") // 8
        assert r.objects.labels == ["plane"] * n + ["ship"] * n and r.unparsed == [], text
    # a label holds for the rest of its line only
    r = parse_detections(f"plane: {QUAD_A}\n{QUAD_B}", categories=DOTA_V1_0)
    assert r.objects.labels == ["plane"] and r.unparsed == [QUAD_B]
    # a box after a bad label is not given the previous label
    r = parse_detections(f"plane: {QUAD_A}; [x]: {QUAD_B}; {QUAD_B}", categories=DOTA_V1_0)
    assert r.objects.labels == ["plane"] and len(r.unparsed) == 2


def test_prose_after_a_box_is_reported_never_an_angle():
    # main read the 3 of "3 o'clock" as an obb angle
    r = parse_detections("plane: (10,10),(20,20) at 3 o'clock", categories=DOTA_V1_0)
    assert r.objects.boxes.kind == "hbb" and r.objects.boxes.data.tolist() == [[10, 10, 20, 20]]
    assert r.unparsed == ["at 3 o'clock"] and r.n_fragments == 2
    # numbers outside the box groups never become coordinates
    for text in ["plane: (10,10),(20,20) 5", "plane: 7 (10,10),(20,20)", "plane: (10,10),(20,20) at (3,4)",
                 "plane: (10,10) and (20,20)"]:
        r = parse_detections(text)
        assert all(v in (10, 20) for v in r.objects.boxes.data.ravel().tolist()), text
        assert r.unparsed, text
    # obb: one (cx,cy,w,h,angle) group, trailing text reported
    r = parse_detections("plane: (10,10,8,4,30) rotated", kind="obb")
    assert np.allclose(r.objects.boxes.data, [[10, 10, 8, 4, np.radians(30)]]) and r.unparsed == ["rotated"]


def test_cut_off_or_run_on_boxes_are_reported_whole():
    # main read "(1,1),(2,2),(3" as a five-number obb
    for text in ["plane: (1,1),(2,2),(3", "plane: (1,1),(2,2),(3,3)", "plane: (1,1),(2,2) (3,3),(4,4)",
                 "plane: (1,2,3,4,5), (6,7,8,9,10)", "plane: (1,1),(2,2),(3,3),(4,4),(5,5)", "plane: (1,2,3)"]:
        r = parse_detections(text)
        assert len(r.objects) == 0 and r.unparsed == [text] and r.n_fragments == 1, text


def test_deep_json_and_huge_integers_never_raise():
    deep = '[{"label": "plane", "bbox_2d": ' + "[" * 50_000 + "]" * 50_000 + "}]"
    huge = '[{"label": "plane", "bbox_2d": [' + "9" * 400 + ', 1, 2, 3]}, {"label": "ship", "bbox_2d": [1, 2, 3, 4]}]'
    for text in [deep, huge, huge.replace("9" * 400, "9" * 5000), huge.replace("9" * 400, "1e999")]:
        r = parse_detections(text, categories=DOTA_V1_0)  # main: RecursionError / OverflowError
        assert len(r.objects) + len(r.unparsed) == r.n_fragments >= 1
        boxes, unparsed = parse_grounding(text)
        assert len(boxes) + len(unparsed) >= 1
    r = parse_detections(huge, categories=DOTA_V1_0)
    assert r.objects.labels == ["ship"] and len(r.unparsed) == 1
    r = parse_detections(deep)
    assert r.limits == [f"JSON nested deeper than {MAX_JSON_DEPTH}"] and len(r.unparsed) == 1


def test_limits_are_reported_not_dropped():
    r = parse_detections(f"plane: {QUAD_A}\n" + " " * MAX_CHARS + f"ship: {QUAD_B}", categories=DOTA_V1_0)
    assert r.limits == [f"answer longer than {MAX_CHARS} characters"] and r.objects.labels == ["plane"]
    assert r.n_fragments == 2 and r.unparsed[-1].endswith(f"ship: {QUAD_B}")
    line = f"plane: {QUAD_A}\n"
    r = parse_detections(line * (MAX_PIECES + 5), categories=DOTA_V1_0)
    assert len(r.objects) < MAX_PIECES and r.limits == [f"more than {MAX_PIECES} pieces"]
    assert r.unparsed[-1].count("\n") >= 4  # the unread rest, in one piece
    js = "[" + ",".join(['{"bbox_2d": [1, 2, 3, 4], "label": "plane"}'] * (MAX_PIECES + 5)) + "]"
    r = parse_detections(js)
    assert 0 < len(r.objects) < MAX_PIECES and r.limits and r.unparsed[-1].count("{") >= 5


def test_text_around_fences_is_reported_and_each_block_read():
    text = ('Here they are:\n```json\n[{"bbox_2d": [1, 2, 3, 4], "label": "plane"}]\n```\nand\n'
            f"```\nship: {QUAD_B}\n```")
    r = parse_detections(text, categories=DOTA_V1_0)
    assert r.objects.labels == ["plane", "ship"] and r.unparsed == ["Here they are:", "and"]
    assert r.form == "bbox_2d-json+rscovlm-plain" and r.forms == {"bbox_2d-json": 1, "rscovlm-plain": 1}
    assert parse_detections("```json\nThere are none.\n```").none
    assert parse_detections("There is none. plane: (1,1),(2,2)").none is False


def _objects_reference(text):
    """Top-level {...} spans by a character loop: a quote after an odd run of backslashes is not a delimiter,
    brackets inside strings do not count, stray closers are ignored."""
    spans, depth, start, in_str, backslashes, nest, base, deepest = [], 0, 0, False, 0, 0, 0, 0
    for i, ch in enumerate(text):
        run, backslashes = backslashes, (backslashes + 1 if ch == "\\" else 0)
        if ch == '"' and run % 2 == 0:
            in_str = not in_str
        elif in_str:
            continue
        elif ch in "{[":
            if ch == "{" and depth == 0:
                start, base, deepest = i, nest, nest + 1
            depth += ch == "{"
            nest += 1
            deepest = max(deepest, nest)
        elif ch in "}]":
            if nest:
                nest -= 1
            if ch == "}" and depth:
                depth -= 1
                if depth == 0:
                    spans.append((start, i + 1, deepest - base))
    if depth:
        spans.append((start, len(text), deepest - base))
    return spans


def test_json_object_scanner_matches_a_character_loop():
    rng = np.random.default_rng(7)
    alphabet = np.array(list('{}[]"\\ a,:'))
    for _ in range(3000):
        text = "".join(rng.choice(alphabet, int(rng.integers(0, 40))))
        expected = _objects_reference(text)
        assert list(zip(*(a.tolist() for a in _json_objects(text, 10**6)))) == expected, text
        assert list(zip(*_json_objects_small(text, 10**6))) == expected, text
        assert list(zip(*_json_objects_small(text, 2))) == expected[:2], text
        assert list(zip(*(a.tolist() for a in _json_objects(text, 2)))) == expected[:2], text


def test_reading_reports_the_form():
    assert read_answer("There are none.").form == "none"
    assert read_answer(f"plane: {QUAD_A}").form == "rscovlm-plain"
    assert read_answer('[{"bbox_2d": [1, 2, 3, 4], "label": "plane"}]').form == "bbox_2d-json"
    assert read_answer('[{"quad_2d": [1, 2, 3, 4, 5, 6, 7, 8], "label": "plane"}]').form == "rscovlm-json"
    assert read_answer("   ").form == "empty"
    assert read_answer("I cannot tell.").form == read_answer('[{"bbox_2d": [1, 2]}]').form == "unreadable"
