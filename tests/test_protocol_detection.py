import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rscovlm.geometry import Boxes, Frame, ObjectSet, normalize_quads
from rscovlm.protocol import DOTA_V1_0, NONE_ANSWER, canonical_label, format_detections, parse_detections
from rscovlm.protocol.detection import canonical_order

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


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parser_never_raises_on_any_text(text):
    r = parse_detections(text, categories=DOTA_V1_0)
    assert 0.0 <= r.unparsed_fraction <= 1.0
    parse_detections(text, kind="quad")


_valid = format_detections(ObjectSet(Boxes([[1, 1, 5, 1, 5, 5, 1, 5], [9, 9, 19, 9, 19, 19, 9, 19]], "quad"),
                                     ["plane", "ship"]), "plain")
_valid_json = format_detections(ObjectSet(Boxes([[1, 1, 5, 5]], "hbb"), ["plane"]), "json")


@settings(max_examples=300, deadline=None)
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
