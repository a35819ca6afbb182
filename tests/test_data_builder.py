"""Sample builder: the reference prompt set by default (hand-typed reference conversations for every box kind and
form), the rscovlm-v0 set on request; targets parse back (rscovlm.protocol) to the same boxes in both output forms
after random resize; empty answers; open-ended and synonym variants; objects cut by the border keep their
coordinates unless clipping is asked for; per-unit options; the prompt set in every sample's meta; deterministic
evaluation prompts (snapshot)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from rscovlm.data.builder import BuildConfig, SampleBuilder
from rscovlm.data.mixture import UnitConfig
from rscovlm.geometry.boxes import Boxes, obb_to_quad
from rscovlm.protocol.categories import DOTA_V1_0
from rscovlm.protocol.detection import NONE_ANSWER, parse_detections
from rscovlm.protocol.grounding import parse_grounding
from rscovlm.resolution import ResizePlan

SNAPSHOT = Path(__file__).parent / "snapshots" / "data_eval_prompts.json"
CATS = list(DOTA_V1_0.classes)
V0 = {"prompt_set": "rscovlm-v0"}  # the earlier templates and answer format
SETS = ["reference", "rscovlm-v0"]


def det_record(n=12, seed=0, width=1000, height=700):
    rng = np.random.default_rng(seed)
    obb = np.stack([rng.uniform(80, width - 80, n), rng.uniform(80, height - 80, n), rng.uniform(20, 90, n),
                    rng.uniform(8, 40, n), rng.uniform(-np.pi / 2, np.pi / 2, n)], axis=1)
    quads = obb_to_quad(obb)
    labels = [CATS[i] for i in rng.integers(0, 5, n)]
    return {"id": 1, "image": "p.png", "width": width, "height": height, "labels": labels,
            "quads": quads.tolist(), "difficult": [0] * n, "categories": CATS}


def unit(kind, type_="detection", **kw):
    return UnitConfig(name=f"u_{kind}", path="x", type=type_, images="/imgs", box_kind=kind, **kw)


def user_parts(sample) -> list[dict]:
    return next(m for m in sample["messages"] if m["role"] == "user")["content"]


def prompt_of(sample) -> str:
    return user_parts(sample)[-1]["text"]


def target_of(sample) -> str:
    return sample["messages"][-1]["content"][0]["text"]


def _rows(boxes: Boxes) -> np.ndarray:
    return boxes.data[np.lexsort(boxes.data.T[::-1])]


def assert_same_boxes(parsed: Boxes, expected: Boxes, kind: str, truncated: bool = False):
    """Parsed integers vs the builder's float boxes in the model frame: equal up to the rounding of the text
    (rscovlm-v0) or its truncation toward zero (reference: within one unit, never above for positive values)."""
    assert len(parsed) == len(expected)
    if kind == "obb":
        # compare as quads: integer centre/size (+-1 px) and integer degrees (+-1 deg) move corners < 2.5 px
        p = np.sort(parsed.to_quad().data.reshape(-1, 4, 2).round(0), axis=None)
        e = np.sort(expected.to_quad().data.reshape(-1, 4, 2).round(0), axis=None)
        assert np.abs(p - e).max() <= (3.5 if truncated else 2.5)
        return
    if not truncated:
        np.testing.assert_allclose(_rows(parsed.normalized()), _rows(expected.normalized().rounded()), atol=1e-9)
        return
    # reference: every value is int() of the float one (grounding: of int(original) scaled, up to one unit lower);
    # compare the sorted vertices of each object with those of its nearest expected object
    p_pts = np.array([sorted(map(tuple, r.reshape(-1, 2))) for r in parsed.to_quad().data])
    e_pts = np.array([sorted(map(tuple, r.reshape(-1, 2))) for r in expected.to_quad().data])
    for p in p_pts:
        diff = (e_pts - p).reshape(len(e_pts), -1)
        assert (np.abs(diff).max(axis=1) < 2.0).any(), p  # int() of the scaled value, or of int(original) scaled


# ---- the reference set (default): hand-typed conversations ---------------------------------------------------

# A 1000 x 700 image is planned at 1008 x 700 (sides multiples of 28): x scales by 1.008, y by 1.
REF_RECORD = {
    "id": 7, "image": "p.png", "width": 1000, "height": 700,
    "labels": ["small-vehicle", "plane", "plane"],
    "quads": [[300, 200, 340, 210, 335, 230, 295, 220],              # a rotated rectangle
              [120.7, 45.2, 160.9, 45.2, 160.9, 80.3, 120.7, 80.3],  # fractional: scaled, then truncated
              [-10.5, 300, 40, 300, 40, 340, -10.5, 340]],            # cut by the left border of the patch
    "difficult": [0, 0, 2],
    "categories": ["plane", "small-vehicle", "ship", "storage-tank"],  # the file's classes in id order
}
REF_CATEGORIES = "plane, ship, small vehicle, storage tank"
# per box kind: the plain answer lines and the JSON key / numbers, typed from the reference's rules (scale, int()
# toward zero, order by label then hbb y1 then x1, quads clockwise from the top-most vertex, obb w >= h in degrees)
REF_ANSWERS = {
    "quad": ("quadrant bbox", [("121,45,162,45,162,80,121,80", "plane"), ("-10,300,40,300,40,340,-10,340", "plane"),
                               ("302,200,342,210,337,230,297,220", "small vehicle")]),
    "hbb": ("bbox_2d", [("121,45,162,80", "plane"), ("-10,300,40,340", "plane"), ("297,200,342,230", "small vehicle")]),
    # obb: int() of cv2.minAreaRect, whose float32 arithmetic gives 40.99999 x 34.99999 (centre y 62.49999) for
    # the 41 x 35 rectangle of the second object: the reference writes 40,34 and 62 (OpenCV 5.0 here)
    "obb": ("oriented bbox", [("141,62,40,34,0", "plane"), ("15,320,50,40,0", "plane"),
                              ("319,215,41,20,14", "small vehicle")]),
}
REF_SYSTEM = {
    ("plain", "hbb"): "As an AI assistant, you specialize in accurate image object detection, delivering coordinates "
                      "in plain text format 'x1,y1,x2,y2 object'.",
    ("plain", "obb"): "As an AI assistant, you specialize in accurate oriented object detection, delivering "
                      "coordinates in plain text format 'x,y,w,h,a object'.",
    ("plain", "quad"): "As an AI assistant, you specialize in accurate oriented object detection, delivering "
                       "coordinates of the polygon vertices in plain text format 'x1,y1,x2,y2,x3,y3,x4,y4 object'.",
    ("json", "hbb"): None,
    ("json", "obb"): "You are an AI assistant specializing in oriented object detection. Represent objects with: "
                     "center (x,y), width (w), height (h), and rotation angle.",
    ("json", "quad"): "You are an AI assistant specializing in oriented object detection. Represent objects with "
                      "quadrant bbox: the corrdinates of each vertices of the oriented bounding boxes in clock-wise "
                      "order.",
}
REF_JSON_MAIN = {
    "hbb": "Locate every item from the category list in the image and output the coordinates in JSON format. "
           "The category set includes plane, ship, small vehicle, storage tank.",
    "obb": "Locate every item from the category list in the image and output the oriented bbox coordinates in JSON "
           "format. The category set includes plane, ship, small vehicle, storage tank.",
}
REF_JSON_MAIN["quad"] = REF_JSON_MAIN["obb"]


def ref_target(kind: str, form: str) -> str:
    key, rows = REF_ANSWERS[kind]
    if form == "plain":
        return "".join(f"{values} {label}\n" for values, label in rows)
    return "```json\n[\n\t" + ",\n\t".join(
        '{"' + key + '": [' + values.replace(",", ", ") + '], "label": "' + label + '"}' for values, label in rows
    ) + "\n]\n```"


def ref_conversation(kind: str, form: str, user: str) -> list[dict]:
    system = REF_SYSTEM[(form, kind)]
    messages = [] if system is None else [{"role": "system", "content": [{"type": "text", "text": system}]}]
    return messages + [
        {"role": "user", "content": [{"type": "image", "image": "/imgs/p.png", "resized_width": 1008,
                                      "resized_height": 700}, {"type": "text", "text": user}]},
        {"role": "assistant", "content": [{"type": "text", "text": ref_target(kind, form)}]}]


@pytest.mark.parametrize("form", ["plain", "json"])
@pytest.mark.parametrize("kind", ["hbb", "obb", "quad"])
def test_reference_set_builds_the_reference_conversation_character_for_character(kind, form):
    """System prompt, user text and assistant text equal the reference's (typed from
    rscovlm/training/data/dense_det_dataset.py at c507282): training draws with a seeded generator (no random resize,
    the plain form with probability 1 - the reference's CLI default - or JSON with the main template), and the
    evaluation prompt (`rng=None`: plain, with the final period the reference's evaluation adds)."""
    options = {"random_resize_prob": 0.0, "plain_prob": 1.0 if form == "plain" else 0.0, "proxy_prob": 0.0}
    builder = SampleBuilder(BuildConfig(**options))
    user = f"find the {REF_CATEGORIES}" if form == "plain" else REF_JSON_MAIN[kind]
    for seed in range(3):
        s = builder.build(REF_RECORD, unit(kind), np.random.default_rng(seed))
        assert s["messages"] == ref_conversation(kind, form, user)
        assert s["meta"]["form"] == form and s["meta"]["box_kind"] == kind and s["meta"]["request"] == "all"
    if form == "plain":  # evaluation: the same answer, the prompt with its period
        s = SampleBuilder().build(REF_RECORD, unit(kind))
        assert s["messages"] == ref_conversation(kind, "plain", f"find the {REF_CATEGORIES}.")
    # the reference's default form draw: plain_prob 1.0, so JSON never comes without asking for it
    forms = {SampleBuilder(BuildConfig()).build(REF_RECORD, unit(kind), np.random.default_rng(i))["meta"]["form"]
             for i in range(20)}
    assert forms == {"plain"}


class ScriptedRng:
    """``random()`` returns the scripted values in order (the draws of one sample), nothing else is allowed."""

    def __init__(self, values):
        self.values = list(values)

    def random(self, size=None):
        assert size is None, "only single draws are scripted"
        return self.values.pop(0)


def test_reference_json_template_draws_in_the_reference_order():
    """Fixed draws: form (JSON: a draw >= plain_prob), proxy (0.1 < 0.5: a proxy), which proxy (0.45 * 5 -> the
    third), "bbox" -> "bounding box" (0.2 < 0.5: replaced), "oriented" -> "rotated" (0.7: kept)."""
    builder = SampleBuilder(BuildConfig(random_resize_prob=0.0, plain_prob=0.5))
    rng = ScriptedRng([0.6, 0.1, 0.45, 0.2, 0.7])
    s = builder.build(REF_RECORD, unit("obb"), rng)
    assert rng.values == []
    assert prompt_of(s) == ("From this image, provide the oriented bounding boxes and categories for plane, ship, "
                            "small vehicle, storage tank using JSON format")
    assert s["messages"][0]["content"][0]["text"] == REF_SYSTEM[("json", "obb")]
    assert target_of(s) == ref_target("obb", "json")
    # hbb: the merged first proxy of the reference (its missing comma), no "oriented" rule
    rng = ScriptedRng([0.6, 0.1, 0.0, 0.9])
    s = builder.build(REF_RECORD, unit("hbb"), rng)
    assert rng.values == [] and [m["role"] for m in s["messages"]] == ["user", "assistant"]
    assert prompt_of(s) == ("Please output bbox coordinates and names of plane, ship, small vehicle, storage tank in "
                            "JSON format.Give me the bboxes and names of plane, ship, small vehicle, storage tank "
                            "using JSON format")


def test_reference_empty_answer_and_grounding_conversations():
    empty = dict(REF_RECORD, labels=[], quads=[], difficult=[])
    b = SampleBuilder(BuildConfig(random_resize_prob=0.0))
    for kind in ("hbb", "obb", "quad"):
        assert target_of(b.build(empty, unit(kind), np.random.default_rng(0))) == "There are none."
    ground = {"dataset": "refgeo", "image_id": "a.png", "question": "storage tank on the left", "question_id": 1,
              "bbox": [10.7, 20.2, 300.9, 200.0], "poly": [[10.7, 20.2], [300.9, 20.2], [300.9, 200.0], [10.7, 200.0]],
              "image_width": 1000, "image_height": 700}
    expected = {  # refGeo: int() first, then int(v * 1008 / 1000); quads counter-clockwise; label = the question
        ("plain", "hbb"): "10,20,302,200 storage tank on the left\n",
        ("plain", "quad"): "10,20,10,200,302,200,302,20 storage tank on the left\n",
        ("json", "hbb"): '```json\n[\n\t{"bbox_2d": [10, 20, 302, 200], "label": "storage tank on the left"}\n]\n```',
    }
    users = {"plain": "find the storage tank on the left",
             "json": "Locate the storage tank on the left, output the bbox coordinates using JSON format"}
    for (form, kind), answer in expected.items():
        g = SampleBuilder(BuildConfig(random_resize_prob=0.0, plain_prob=float(form == "plain"), proxy_prob=0.0))
        s = g.build(ground, unit(kind, "grounding"), np.random.default_rng(0))
        system = [m["content"][0]["text"] for m in s["messages"] if m["role"] == "system"]
        assert system == ([] if form == "json" else [REF_SYSTEM[(form, kind)]])
        assert prompt_of(s) == users[form] and target_of(s) == answer
        parsed, _ = parse_grounding(answer, kind, ResizePlan.from_dict(s["meta"]["plans"][0]).model)
        assert len(parsed) == 1


@pytest.mark.parametrize("where", ["builder", "unit"])
def test_objects_cut_by_the_border_keep_their_coordinates_unless_clipping_is_asked(where):
    """The reference never clips (mmrotate's img_split translates the objects kept in a window without clipping
    them, and nothing clips later): the cut plane keeps x = -10; with clip_boxes (builder or unit option) it is
    clamped to 0 and an object wholly outside the image is dropped and counted."""
    outside = [-60, 400, -20, 400, -20, 440, -60, 440]
    rec = dict(REF_RECORD, labels=REF_RECORD["labels"] + ["ship"], quads=REF_RECORD["quads"] + [outside],
               difficult=[0, 0, 2, 2])
    plain = SampleBuilder(BuildConfig(random_resize_prob=0.0))
    s = plain.build(rec, unit("quad"), np.random.default_rng(0))
    assert "-10,300,40,300,40,340,-10,340 plane\n" in target_of(s)
    assert "-60,400,-20,400,-20,440,-60,440 ship\n" in target_of(s)  # int(-60.48), int(-20.16)
    assert s["meta"]["objects"]["clipped_away"] == 0 and len(s["meta"]["objects"]["labels"]) == 4
    if where == "builder":
        clip, u = SampleBuilder(BuildConfig(random_resize_prob=0.0, clip_boxes=True)), unit("quad")
    else:
        clip, u = plain, unit("quad", clip_boxes=True)
    s = clip.build(rec, u, np.random.default_rng(0))
    assert target_of(s) == ("121,45,162,45,162,80,121,80 plane\n0,300,40,300,40,340,0,340 plane\n"
                            "302,200,342,210,337,230,297,220 small vehicle\n")
    assert s["meta"]["objects"]["clipped_away"] == 1 and "ship" not in s["meta"]["objects"]["labels"]
    hbb = clip.build(rec, unit("hbb", clip_boxes=True), np.random.default_rng(0))
    assert "0,300,40,340 plane\n" in target_of(hbb)


def test_meta_records_the_prompt_set_and_rscovlm_v0_still_builds():
    from rscovlm.data.builder import prompt_set_digest, prompt_set_record
    from rscovlm.protocol.prompt_sets import get_prompt_set

    ref, v0 = get_prompt_set("reference"), get_prompt_set("rscovlm-v0")
    s = SampleBuilder(BuildConfig(random_resize_prob=0.0)).build(REF_RECORD, unit("quad"), np.random.default_rng(0))
    assert s["meta"]["prompt_set"] == {"name": "reference", "sha256": prompt_set_digest(ref)[:16]}
    assert SampleBuilder(BuildConfig(prompt_set="default")).build(REF_RECORD, unit("quad"))["meta"]["prompt_set"] \
        == s["meta"]["prompt_set"]  # "default" is the reference set
    old = SampleBuilder(BuildConfig(random_resize_prob=0.0, plain_prob=1.0, **V0)).build(REF_RECORD, unit("quad"),
                                                                                          np.random.default_rng(0))
    assert old["meta"]["prompt_set"] == {"name": "rscovlm-v0", "sha256": prompt_set_digest(v0)[:16]}
    assert prompt_set_digest(v0) != prompt_set_digest(ref) and len(prompt_set_digest(ref)) == 64
    assert [m["role"] for m in old["messages"]] == ["user", "assistant"]  # no system prompt in that set
    assert prompt_of(old).startswith("Detect plane, small vehicle, ship, storage tank in the image") or \
        prompt_of(old).split(" ")[0] in ("Find", "Locate")
    # its answer format: grouped by category, values rounded (not truncated)
    assert target_of(old) == ("plane: (122,45),(162,45),(162,80),(122,80); (-11,300),(40,300),(40,340),(-11,340)\n"
                              "small vehicle: (302,200),(343,210),(338,230),(297,220)")
    # a unit's prompt set wins over the builder's
    s = SampleBuilder(BuildConfig(random_resize_prob=0.0)).build(REF_RECORD, unit("quad", prompt_set="rscovlm-v0"))
    assert s["meta"]["prompt_set"]["name"] == "rscovlm-v0" and target_of(s).startswith("plane: (122,45)")
    record = prompt_set_record(ref)
    assert record["name"] == "reference" and record["sha256"] == prompt_set_digest(ref)
    assert record["answer_styles"]["detection"] == "reference" and Path(record["path"]).is_dir()
    conv = {"id": "c", "source": "s", "task": "vqa", "image_sizes": [[100, 100]],
            "messages": [{"role": "user", "content": [{"type": "image", "image": "a.png"},
                                                      {"type": "text", "text": "?"}]},
                         {"role": "assistant", "content": "a"}]}
    assert SampleBuilder().build(conv, UnitConfig(name="c", path="x", type="conversation"))["meta"]["prompt_set"] \
        is None


def test_unit_options_override_the_builders():
    b = SampleBuilder(BuildConfig(plain_prob=1.0, random_resize_prob=0.0))
    forms = {b.build(REF_RECORD, unit("quad", plain_prob=0.0), np.random.default_rng(i))["meta"]["form"]
             for i in range(8)}
    assert forms == {"json"}
    plans = {tuple(b.build(REF_RECORD, unit("quad", random_resize_prob=1.0), np.random.default_rng(i))["meta"]
                   ["plans"][0]["model"]) for i in range(8)}
    assert len(plans) > 4
    assert b.option(unit("quad", random_resize_dist="reference"), "random_resize_dist") == "reference"
    assert b.option(unit("quad"), "random_resize_dist") == "area_uniform"


def test_random_resize_probability():
    """random_resize_prob p: about p of the samples get a random size, the rest the deterministic plan."""
    b = SampleBuilder(BuildConfig(random_resize_prob=0.3))
    fixed = b.policy.plan(1000, 700).model_size
    sizes = [b.plan(1000, 700, np.random.default_rng([5, i])).model_size for i in range(2000)]
    share = np.mean([s != fixed for s in sizes])
    # a random draw can land on the fixed size too (a few %): the share of non-fixed sizes is a little below 0.3
    assert 0.25 < share < 0.32
    assert all(b.plan(1000, 700, None).model_size == fixed for _ in range(3))
    assert SampleBuilder(BuildConfig(random_resize_prob=0.0)).plan(1000, 700, np.random.default_rng(0)).model_size \
        == fixed


def test_build_config_rejects_replaced_and_bad_options():
    with pytest.raises(ValueError, match="json_prob was replaced by plain_prob"):
        BuildConfig.from_dict({"json_prob": 0.5})
    with pytest.raises(ValueError, match="random_resize was replaced by random_resize_prob"):
        BuildConfig.from_dict({"random_resize": True})
    with pytest.raises(ValueError, match="builder: random_resize_dist must be one of"):
        BuildConfig.from_dict({"random_resize_dist": "uniform"})
    with pytest.raises(ValueError, match="builder: prompt_set: unknown prompt set 'nope'"):
        BuildConfig.from_dict({"prompt_set": "nope"})
    assert BuildConfig.from_dict({"prompt_set": "rscovlm-v0", "plain_prob": 0.25}).plain_prob == 0.25


# ---- both sets: targets parse back ---------------------------------------------------------------------------

@pytest.mark.parametrize("prompt_set", SETS)
@pytest.mark.parametrize("kind", ["hbb", "obb", "quad"])
def test_detection_targets_parse_back_after_random_resize(kind, prompt_set):
    builder = SampleBuilder(BuildConfig(prompt_set=prompt_set, plain_prob=0.5, subset_prob=0.3, open_ended_prob=0.2))
    rec = det_record()
    seen_forms, sizes, requests = set(), set(), set()
    for seed in range(24):
        s = builder.build(rec, unit(kind), np.random.default_rng(seed))
        meta = s["meta"]
        plan = ResizePlan.from_dict(meta["plans"][0])
        img = user_parts(s)[0]
        assert (img["resized_width"], img["resized_height"]) == plan.model_size
        assert img["image"] == "/imgs/p.png"
        assert 224 * 224 <= plan.model.width * plan.model.height <= 1008 * 1008
        parsed = parse_detections(target_of(s), kind=kind, frame=plan.model, categories=DOTA_V1_0)
        assert not parsed.unparsed and not parsed.unknown_labels
        if prompt_set == "reference" and meta["form"] == "plain" and not parsed.none:
            assert parsed.form == "reference-plain"
        dims = {"hbb": 4, "obb": 5, "quad": 8}[kind]
        expected = Boxes(np.asarray(meta["objects"]["boxes"]).reshape(-1, dims), kind, plan.model)
        labels = meta["objects"]["labels"]
        assert sorted(parsed.objects.labels) == sorted(labels)
        for label in set(labels):
            mine = np.array([i for i, lab in enumerate(labels) if lab == label])
            got = np.array([i for i, lab in enumerate(parsed.objects.labels) if lab == label])
            assert_same_boxes(parsed.objects.boxes[got], expected[mine], kind, prompt_set == "reference")
        # back in the original frame every box is one of the record's, up to the text's integers scaled up
        if kind != "obb" and len(parsed.objects):
            back = plan.to_original(parsed.objects.boxes).normalized().data
            orig = Boxes(np.asarray(rec["quads"]), "quad", plan.original).to(kind).normalized().data
            scale = max(plan.original.width / plan.model.width, plan.original.height / plan.model.height)
            for row in back:
                assert np.abs(orig - row).max(axis=1).min() <= (1.0 if prompt_set == "reference" else 0.5) * scale \
                    + 1e-6
        seen_forms.add(meta["form"])
        sizes.add(plan.model_size)
        requests.add(meta["request"])
    assert seen_forms == {"plain", "json"} and len(sizes) > 10 and requests == {"all", "subset", "open"}


@pytest.mark.parametrize("prompt_set", SETS)
def test_empty_image_and_absent_categories_answer_none(prompt_set):
    none = "There are none." if prompt_set == "reference" else NONE_ANSWER
    builder = SampleBuilder(BuildConfig(prompt_set=prompt_set))
    rec = dict(det_record(n=0), quads=[], labels=[], difficult=[])
    for seed in range(6):
        assert target_of(builder.build(rec, unit("quad"), np.random.default_rng(seed))) == none
    assert target_of(builder.build(rec, unit("quad"))) == none
    # a subset request without any present category: none, although the image has objects
    one = dict(det_record(n=3), labels=["plane"] * 3)
    b = SampleBuilder(BuildConfig(prompt_set=prompt_set, subset_prob=1.0, open_ended_prob=0.0, synonym_prob=0.0,
                                  plain_prob=1.0))
    answers = {}
    for seed in range(40):
        s = b.build(one, unit("hbb"), np.random.default_rng(seed))
        asks_plane = "plane" in prompt_of(s).split(" in ")[0]
        answers[asks_plane] = target_of(s)
    assert answers[False] == none
    assert answers[True].startswith("plane: " if prompt_set == "rscovlm-v0" else "") and "plane" in answers[True]


def test_open_ended_variant_and_synonyms():
    rec = det_record()
    b = SampleBuilder(BuildConfig(open_ended_prob=1.0, subset_prob=0.0, plain_prob=1.0, **V0))
    s = b.build(rec, unit("quad"), np.random.default_rng(1))
    assert any(p in prompt_of(s) for p in ("all the visible objects", "every object you can see", "all objects"))
    assert len(parse_detections(target_of(s)).objects) == len(rec["labels"])
    b = SampleBuilder(BuildConfig(open_ended_prob=0.0, subset_prob=0.0, synonym_prob=1.0, plain_prob=1.0, **V0))
    s = b.build(rec, unit("quad"), np.random.default_rng(2))
    prompt = prompt_of(s)
    assert "small vehicle" not in prompt and "storage tank" not in prompt
    assert any(w in prompt for w in ("airplane", "aircraft", "aeroplane"))
    target = target_of(s)
    assert "small vehicle:" in target or "plane:" in target  # targets keep the canonical names
    # the reference set's open-ended request (its set_open_end_prompt_settings), labels kept canonical
    b = SampleBuilder(BuildConfig(open_ended_prob=1.0))
    s = b.build(rec, unit("quad"), np.random.default_rng(1))
    assert prompt_of(s) == "find all the visible remote sensing objects" and s["meta"]["request"] == "open"
    assert len(parse_detections(target_of(s), categories=DOTA_V1_0).objects) == len(rec["labels"])


@pytest.mark.parametrize("prompt_set", SETS)
@pytest.mark.parametrize("kind", ["hbb", "obb", "quad"])
def test_grounding_parses_back_in_both_forms(kind, prompt_set):
    rec = {"dataset": "DIOR_RSVG", "image_id": "00001.jpg", "question": "the storage tank near the ships",
           "question_id": 5, "bbox": [101.0, 230.5, 180.0, 301.0],
           "poly": [[101.0, 260.0], [150.0, 230.5], [180.0, 270.0], [131.0, 301.0]],
           "image_width": 800, "image_height": 800}
    b = SampleBuilder(BuildConfig(synonym_prob=1.0, prompt_set=prompt_set, plain_prob=0.5))
    forms = set()
    for seed in range(12):
        s = b.build(rec, unit(kind, "grounding"), np.random.default_rng(seed))
        plan = ResizePlan.from_dict(s["meta"]["plans"][0])
        prompt = prompt_of(s)
        assert "storage tank" not in prompt and "ship" not in prompt  # every category word got a synonym
        parsed, unparsed = parse_grounding(target_of(s), kind, plan.model)
        assert not unparsed
        expected = Boxes(np.asarray(s["meta"]["objects"]["boxes"]), kind, plan.model)
        assert_same_boxes(parsed, expected, kind, prompt_set == "reference")
        forms.add(s["meta"]["form"])
        assert user_parts(s)[0]["image"] == "/imgs/DIOR_RSVG/00001.jpg"
    assert forms == {"plain", "json"}


def test_conversation_boxes_rendered_in_the_model_frame(tmp_path):
    rec = {"id": "geochat/1", "source": "geochat", "task": "referring",
           "messages": [{"role": "user", "content": [{"type": "image", "image": "a.png"},
                                                     {"type": "text", "text": "Where is the car?"}]},
                        {"role": "assistant", "content": [{"type": "text", "text": "car <box:0>, <box:1>"}]}],
           "image_sizes": [[800, 600]],
           "boxes": [{"kind": "hbb", "values": [80, 120, 240, 240], "image": 0},
                     {"kind": "quad", "values": [400, 300, 480, 300, 480, 420, 400, 420], "image": 0}]}
    b = SampleBuilder(BuildConfig(system_prompt="You are RSCoVLM."))
    s = b.build(rec, UnitConfig(name="g", path="x", type="conversation", images=str(tmp_path)),
                np.random.default_rng(3))
    plan = ResizePlan.from_dict(s["meta"]["plans"][0])
    sx, sy = plan.model.width / 800, plan.model.height / 600
    text = s["messages"][2]["content"][0]["text"]
    h = np.rint([80 * sx, 120 * sy, 240 * sx, 240 * sy]).astype(int)
    assert text.startswith(f"car ({h[0]},{h[1]}),({h[2]},{h[3]}), (")
    assert s["messages"][0] == {"role": "system", "content": [{"type": "text", "text": "You are RSCoVLM."}]}
    assert s["messages"][1]["content"][0]["image"] == str(tmp_path / "a.png")
    # without image_sizes the builder reads the image header
    from PIL import Image
    Image.new("RGB", (300, 200)).save(tmp_path / "a.png")
    rec2 = {k: v for k, v in rec.items() if k not in ("image_sizes", "boxes")}
    rec2["messages"] = [rec["messages"][0], {"role": "assistant", "content": "A car."}]
    s2 = b.build(rec2, UnitConfig(name="g", path="x", type="conversation", images=str(tmp_path)))
    assert s2["meta"]["plans"][0]["original"] == [300, 200]


def eval_cases():
    det = det_record(n=6, seed=4)
    ground = {"dataset": "refgeo", "image_id": "a.png", "question": "the plane at the top", "question_id": 1,
              "bbox": [10, 20, 300, 200], "poly": [[10, 20], [300, 20], [300, 200], [10, 200]],
              "image_width": 640, "image_height": 480}
    cases = {}
    for kind in ("hbb", "obb", "quad"):
        cases[f"detection/{kind}"] = (det, unit(kind))
        cases[f"grounding/{kind}"] = (ground, unit(kind, "grounding"))
    cases["detection/empty"] = (dict(det, quads=[], labels=[], difficult=[]), unit("quad"))
    return cases


def build_eval_snapshot():
    out = {}
    for prompt_set in SETS:
        b = SampleBuilder(BuildConfig(prompt_set=prompt_set))
        for name, (rec, u) in eval_cases().items():
            s = b.build(rec, u, rng=None)
            system = [m["content"][0]["text"] for m in s["messages"] if m["role"] == "system"]
            out[f"{prompt_set}/{name}"] = {"system": system[0] if system else None, "prompt": prompt_of(s),
                                           "target": target_of(s), "plan": s["meta"]["plans"][0]}
    return out


def test_eval_prompts_match_snapshot():
    """Evaluation prompts come from the same prompt set as training, deterministically; any change to a template,
    the protocol or the resize policy shows up here. The rscovlm-v0 entries are those of the builder before prompt
    sets. Regenerate with RSCOVLM_UPDATE_SNAPSHOTS=1 after review."""
    current = build_eval_snapshot()
    assert current == build_eval_snapshot()  # deterministic
    if os.environ.get("RSCOVLM_UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=1) + "\n")
    assert json.loads(SNAPSHOT.read_text()) == json.loads(json.dumps(current))


def test_open_ended_phrases_read_as_sentences_in_every_template():
    """Every rscovlm-v0 detection template takes both a category list and an open-ended phrase: no "Detect all all
    the visible objects" / "Find every every object you can see"."""
    import re

    from rscovlm.protocol.prompts import load_prompt_set

    templates = load_prompt_set("default").detection
    quantifiers = re.compile(r"\b(all|every|each)\s+(all|every|each)\b", re.IGNORECASE)
    for form in ("plain", "json"):
        for kind in ("hbb", "obb", "quad"):
            for template in templates.get(form, kind):
                for phrase in templates.open_ended + ("plane, ship",):
                    prompt = template.format(categories=phrase)
                    assert not quantifiers.search(prompt), prompt


def test_several_templates_per_task_form_and_box_kind():
    """Paper 3.2.3: several prompts per task and box kind (rscovlm-v0), one drawn at random for every training
    sample."""
    from rscovlm.protocol.prompts import load_prompt_set

    prompts = load_prompt_set("default")
    for task in (prompts.detection, prompts.grounding):
        for form in ("plain", "json"):
            for kind in ("hbb", "obb", "quad"):
                assert len(set(task.get(form, kind))) >= 2, (task.task, form, kind)


# ---- families with a 0-1000 box frame (Qwen2-VL, Qwen3-VL) ------------------------------------------------

GRID = "norm1000"


def _back_matches(back: np.ndarray, orig: np.ndarray, tol: float):
    """Every row of ``back`` is one of ``orig`` within ``tol`` on every coordinate."""
    for row in back:
        assert np.abs(orig - row).max(axis=1).min() <= tol, row


@pytest.mark.parametrize("prompt_set", SETS)
@pytest.mark.parametrize("family,factor", [("qwen2_vl", 28), ("qwen3_vl", 32)])
@pytest.mark.parametrize("kind", ["hbb", "obb", "quad"])
def test_relative_family_detection_targets_are_on_the_1000_grid(family, factor, kind, prompt_set):
    """Targets of a 0-1000 family parse back with the 0-1000 frame (family.box_frame_for) and map to the record's
    boxes within the grid's rounding (truncation for the reference), in both output forms, after random resize to
    multiples of the family's side factor."""
    from rscovlm.model.families import family_for

    fam = family_for(family)
    truncated = prompt_set == "reference"
    builder = SampleBuilder(BuildConfig(family=family, plain_prob=0.5, prompt_set=prompt_set))
    rec = det_record(width=1000, height=700)
    forms, sizes = set(), set()
    for seed in range(16):
        s = builder.build(rec, unit(kind), np.random.default_rng(seed))
        meta = s["meta"]
        plan = ResizePlan.from_dict(meta["plans"][0])
        w, h = plan.model_size
        assert w % factor == 0 and h % factor == 0 and 224 * 224 <= w * h <= 1008 * 1008
        assert meta["family"] == family and meta["box_frames"] == [[1000, 1000]]
        frame = fam.box_frame_for(w, h)
        assert (frame.width, frame.height, frame.name) == (1000, 1000, GRID)
        parsed = parse_detections(target_of(s), kind=kind, frame=frame, categories=DOTA_V1_0)
        assert not parsed.unparsed and not parsed.unknown_labels
        assert sorted(parsed.objects.labels) == sorted(rec["labels"])
        dims = {"hbb": 4, "obb": 5, "quad": 8}[kind]
        expected = Boxes(np.asarray(meta["objects"]["boxes"]).reshape(-1, dims), kind, frame)
        for label in set(rec["labels"]):
            mine = [i for i, lab in enumerate(meta["objects"]["labels"]) if lab == label]
            got = [i for i, lab in enumerate(parsed.objects.labels) if lab == label]
            assert_same_boxes(parsed.objects.boxes[np.array(got)], expected[np.array(mine)], kind, truncated)
        if kind != "obb":  # obb under the grid's non-uniform scaling is re-fitted, not a pure rounding
            back = parsed.objects.boxes.to_frame(plan.original).normalized().data
            orig = Boxes(np.asarray(rec["quads"]), "quad", plan.original).to(kind).normalized().data
            step = 1.0 if truncated else 0.5
            _back_matches(back, orig, step * max(plan.original.width, plan.original.height) / 1000 + 1e-6)
        forms.add(meta["form"])
        sizes.add(plan.model_size)
    assert forms == {"plain", "json"} and len(sizes) > 5


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen3_vl"])
def test_relative_family_grounding_and_conversation_boxes(family):
    from rscovlm.geometry.boxes import Frame

    rec = {"dataset": "DIOR_RSVG", "image_id": "00001.jpg", "question": "the storage tank near the ships",
           "question_id": 5, "bbox": [101.0, 230.5, 180.0, 301.0],
           "poly": [[101.0, 260.0], [150.0, 230.5], [180.0, 270.0], [131.0, 301.0]],
           "image_width": 800, "image_height": 600}
    b = SampleBuilder(BuildConfig(family=family, plain_prob=0.5, **V0))
    grid = Frame(1000.0, 1000.0, GRID)
    forms = set()
    for kind in ("hbb", "quad"):
        for seed in range(8):
            s = b.build(rec, unit(kind, "grounding"), np.random.default_rng(seed))
            plan = ResizePlan.from_dict(s["meta"]["plans"][0])
            parsed, unparsed = parse_grounding(target_of(s), kind, grid)
            assert not unparsed and len(parsed) == 1
            back = parsed.to_frame(plan.original).normalized().data
            orig = (Boxes(np.asarray(rec["bbox"]), "hbb", plan.original) if kind == "hbb" else
                    Boxes(np.asarray(rec["poly"]).reshape(1, 8), "quad", plan.original).normalized()).data
            _back_matches(back, orig, 0.5 * 800 / 1000 + 1e-6)
            forms.add(s["meta"]["form"])
    assert forms == {"plain", "json"}
    # evaluation prompts (deterministic): the target on the grid, whatever the resize
    s = b.build(dict(rec, image_width=640, image_height=480, bbox=[10, 20, 300, 200]), unit("hbb", "grounding"))
    assert target_of(s) == "(16,42),(469,417)"  # 10/640, 20/480, 300/640, 200/480 rounded
    if family == "qwen3_vl":
        assert s["meta"]["plans"][0]["model"] == [640, 480]  # already multiples of 32
    s = SampleBuilder(BuildConfig(family=family)).build(dict(rec, image_width=640, image_height=480,
                                                             bbox=[10, 20, 300, 200]), unit("hbb", "grounding"))
    assert target_of(s) == "15,41,468,416 the storage tank near the ships\n"  # the reference truncates
    # conversations: <box:N> on the grid too
    conv = {"id": "geochat/1", "source": "geochat", "task": "referring", "image_sizes": [[800, 600]],
            "messages": [{"role": "user", "content": [{"type": "image", "image": "a.png"},
                                                      {"type": "text", "text": "Where is the car?"}]},
                         {"role": "assistant", "content": [{"type": "text", "text": "car <box:0>"}]}],
            "boxes": [{"kind": "hbb", "values": [80, 120, 240, 240], "image": 0}]}
    s = b.build(conv, UnitConfig(name="g", path="x", type="conversation", images="/i"), np.random.default_rng(1))
    assert s["messages"][1]["content"][0]["text"] == "car (100,200),(300,400)"
    assert s["meta"]["boxes"][0]["values"] == [100, 200, 300, 400] and s["meta"]["box_frames"] == [[1000, 1000]]


def test_build_config_family_errors_name_the_option():
    assert BuildConfig.from_dict({"family": "qwen3_vl"}).model_family().factor == 32
    assert BuildConfig.from_dict({"family": "qwen2_5_vl", "factor": 28}).factor == 28
    with pytest.raises(ValueError, match="family: 'qwen9_vl' is not a registered model family.*qwen2_5_vl"):
        BuildConfig.from_dict({"family": "qwen9_vl"})
    with pytest.raises(ValueError, match="factor 28 does not match family qwen3_vl"):
        BuildConfig.from_dict({"family": "qwen3_vl", "factor": 28})
    with pytest.raises(ValueError, match="factor 32 does not match family qwen2_5_vl"):
        SampleBuilder(BuildConfig(factor=32))


def _truncated_png(path, w=400, h=300):
    import io

    from PIL import Image

    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def test_truncated_image_is_an_error_naming_the_record_and_the_file(tmp_path):
    """With load_images (what training uses) a truncated file is decoded in full and refused, naming the unit file's
    line and the image; on main Pillow's bare 'image file is truncated' was all the message said."""
    from rscovlm.data.mixture import Mixture, MixtureConfig, MixtureDataset
    from rscovlm.data.records import write_coco

    images = tmp_path / "img"
    images.mkdir()
    _truncated_png(images / "p.png")
    write_coco(tmp_path / "d.json", {"images": [{"id": 1, "file_name": "p.png", "width": 400, "height": 300}],
                                     "categories": [{"id": 1, "name": "plane"}], "annotations": []})
    mixture = Mixture(MixtureConfig.from_dict({"units": [{"name": "det", "path": "d.json", "type": "detection",
                                                          "images": "img"}],
                                               "builder": {"load_images": True}}, base=tmp_path))
    with pytest.raises(ValueError) as err:
        MixtureDataset(mixture)[0]
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'd.json'}:")
    assert f"{images / 'p.png'}: damaged or unreadable image" in message and "truncated" in message
    # the size lookup of conversations without image_sizes reads the header and names a missing file
    builder = SampleBuilder(BuildConfig())
    with pytest.raises(ValueError, match="nope.png: image file not found"):
        builder._image_size(str(tmp_path / "nope.png"))
