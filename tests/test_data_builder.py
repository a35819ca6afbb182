"""Sample builder: targets parse back (rscovlm.protocol) to the same boxes in both output forms after random
resize; There is none.; open-ended and synonym variants; deterministic evaluation prompts (snapshot)."""

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


def _rows(boxes: Boxes) -> np.ndarray:
    return boxes.data[np.lexsort(boxes.data.T[::-1])]


def assert_same_boxes(parsed: Boxes, expected: Boxes, kind: str):
    """Parsed integers vs the builder's float boxes in the model frame: equal up to the rounding of the text."""
    assert len(parsed) == len(expected)
    if kind == "obb":
        # compare as quads: integer centre/size (+-0.5 px) and integer degrees (+-0.5 deg) move corners <1.5 px
        p = np.sort(parsed.to_quad().data.reshape(-1, 4, 2).round(0), axis=None)
        e = np.sort(expected.to_quad().data.reshape(-1, 4, 2).round(0), axis=None)
        assert np.abs(p - e).max() <= 2.5
        return
    np.testing.assert_allclose(_rows(parsed.normalized()), _rows(expected.normalized().rounded()), atol=1e-9)


@pytest.mark.parametrize("kind", ["hbb", "obb", "quad"])
def test_detection_targets_parse_back_after_random_resize(kind):
    builder = SampleBuilder(BuildConfig(json_prob=0.5, subset_prob=0.3, open_ended_prob=0.2))
    rec = det_record()
    seen_forms, sizes = set(), set()
    for seed in range(24):
        s = builder.build(rec, unit(kind), np.random.default_rng(seed))
        meta = s["meta"]
        plan = ResizePlan.from_dict(meta["plans"][0])
        img = s["messages"][0]["content"][0]
        assert (img["resized_width"], img["resized_height"]) == plan.model_size
        assert img["image"] == "/imgs/p.png"
        assert 224 * 224 <= plan.model.width * plan.model.height <= 1008 * 1008
        target = s["messages"][1]["content"][0]["text"]
        parsed = parse_detections(target, kind=kind, frame=plan.model, categories=DOTA_V1_0)
        assert not parsed.unparsed and not parsed.unknown_labels
        dims = {"hbb": 4, "obb": 5, "quad": 8}[kind]
        expected = Boxes(np.asarray(meta["objects"]["boxes"]).reshape(-1, dims), kind, plan.model)
        labels = meta["objects"]["labels"]
        assert sorted(parsed.objects.labels) == sorted(labels)
        for label in set(labels):
            mine = np.array([i for i, lab in enumerate(labels) if lab == label])
            got = np.array([i for i, lab in enumerate(parsed.objects.labels) if lab == label])
            assert_same_boxes(parsed.objects.boxes[got], expected[mine], kind)
        # back in the original frame every box is one of the record's, up to the text's rounding scaled up
        if kind != "obb" and len(parsed.objects):
            back = plan.to_original(parsed.objects.boxes).normalized().data
            orig = Boxes(np.asarray(rec["quads"]), "quad", plan.original).to(kind).normalized().data
            scale = max(plan.original.width / plan.model.width, plan.original.height / plan.model.height)
            for row in back:
                assert np.abs(orig - row).max(axis=1).min() <= 0.5 * scale + 1e-6
        seen_forms.add(meta["form"])
        sizes.add(plan.model_size)
    assert seen_forms == {"plain", "json"} and len(sizes) > 10


def test_empty_image_and_absent_categories_answer_there_is_none():
    builder = SampleBuilder()
    rec = dict(det_record(n=0), quads=[], labels=[], difficult=[])
    for seed in range(6):
        s = builder.build(rec, unit("quad"), np.random.default_rng(seed))
        assert s["messages"][1]["content"][0]["text"] == NONE_ANSWER
    assert builder.build(rec, unit("quad"))["messages"][1]["content"][0]["text"] == NONE_ANSWER
    # a subset request without any present category: none, although the image has objects
    one = dict(det_record(n=3), labels=["plane"] * 3)
    b = SampleBuilder(BuildConfig(subset_prob=1.0, open_ended_prob=0.0, synonym_prob=0.0, json_prob=0.0))
    answers = {}
    for seed in range(40):
        s = b.build(one, unit("hbb"), np.random.default_rng(seed))
        asks_plane = "plane" in s["messages"][0]["content"][1]["text"].split(" in ")[0]
        answers[asks_plane] = s["messages"][1]["content"][0]["text"]
    assert answers[False] == NONE_ANSWER and answers[True].startswith("plane: ")


def test_open_ended_variant_and_synonyms():
    rec = det_record()
    b = SampleBuilder(BuildConfig(open_ended_prob=1.0, subset_prob=0.0, json_prob=0.0))
    s = b.build(rec, unit("quad"), np.random.default_rng(1))
    prompt = s["messages"][0]["content"][1]["text"]
    assert any(p in prompt for p in ("all the visible objects", "every object you can see", "all objects"))
    assert len(parse_detections(s["messages"][1]["content"][0]["text"]).objects) == len(rec["labels"])
    b = SampleBuilder(BuildConfig(open_ended_prob=0.0, subset_prob=0.0, synonym_prob=1.0, json_prob=0.0))
    s = b.build(rec, unit("quad"), np.random.default_rng(2))
    prompt = s["messages"][0]["content"][1]["text"]
    assert "small vehicle" not in prompt and "storage tank" not in prompt
    assert any(w in prompt for w in ("airplane", "aircraft", "aeroplane"))
    target = s["messages"][1]["content"][0]["text"]
    assert "small vehicle:" in target or "plane:" in target  # targets keep the canonical names


@pytest.mark.parametrize("kind", ["hbb", "obb", "quad"])
def test_grounding_parses_back_in_both_forms(kind):
    rec = {"dataset": "DIOR_RSVG", "image_id": "00001.jpg", "question": "the storage tank near the ships",
           "question_id": 5, "bbox": [101.0, 230.5, 180.0, 301.0],
           "poly": [[101.0, 260.0], [150.0, 230.5], [180.0, 270.0], [131.0, 301.0]],
           "image_width": 800, "image_height": 800}
    b = SampleBuilder(BuildConfig(synonym_prob=1.0))
    forms = set()
    for seed in range(12):
        s = b.build(rec, unit(kind, "grounding"), np.random.default_rng(seed))
        plan = ResizePlan.from_dict(s["meta"]["plans"][0])
        prompt, target = s["messages"][0]["content"][1]["text"], s["messages"][1]["content"][0]["text"]
        assert "storage tank" not in prompt and "ship" not in prompt  # every category word got a synonym
        parsed, unparsed = parse_grounding(target, kind, plan.model)
        assert not unparsed
        expected = Boxes(np.asarray(s["meta"]["objects"]["boxes"]), kind, plan.model)
        assert_same_boxes(parsed, expected, kind)
        forms.add(s["meta"]["form"])
        assert s["messages"][0]["content"][0]["image"] == "/imgs/DIOR_RSVG/00001.jpg"
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
    b = SampleBuilder()
    out = {}
    for name, (rec, u) in eval_cases().items():
        s = b.build(rec, u, rng=None)
        out[name] = {"prompt": s["messages"][0]["content"][1]["text"], "target": s["messages"][1]["content"][0]["text"],
                     "plan": s["meta"]["plans"][0]}
    return out


def test_eval_prompts_match_snapshot():
    """Evaluation prompts come from the same templates as training, deterministically; any change to a template,
    the protocol or the resize policy shows up here. Regenerate with RSCOVLM_UPDATE_SNAPSHOTS=1 after review."""
    current = build_eval_snapshot()
    assert current == build_eval_snapshot()  # deterministic
    if os.environ.get("RSCOVLM_UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=1) + "\n")
    assert json.loads(SNAPSHOT.read_text()) == json.loads(json.dumps(current))


def test_open_ended_phrases_read_as_sentences_in_every_template():
    """Every detection template takes both a category list and an open-ended phrase: no "Detect all all the
    visible objects" / "Find every every object you can see"."""
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
    """Paper 3.2.3: several prompts per task and box kind, one drawn at random for every training sample."""
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


@pytest.mark.parametrize("family,factor", [("qwen2_vl", 28), ("qwen3_vl", 32)])
@pytest.mark.parametrize("kind", ["hbb", "obb", "quad"])
def test_relative_family_detection_targets_are_on_the_1000_grid(family, factor, kind):
    """Targets of a 0-1000 family parse back with the 0-1000 frame (family.box_frame_for) and map to the record's
    boxes within the grid's rounding, in both output forms, after random resize to multiples of the family's
    side factor."""
    from rscovlm.geometry.boxes import Frame
    from rscovlm.model.families import family_for

    fam = family_for(family)
    builder = SampleBuilder(BuildConfig(family=family, json_prob=0.5, subset_prob=0.0, open_ended_prob=0.0))
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
        parsed = parse_detections(s["messages"][1]["content"][0]["text"], kind=kind, frame=frame,
                                  categories=DOTA_V1_0)
        assert not parsed.unparsed and not parsed.unknown_labels
        assert sorted(parsed.objects.labels) == sorted(rec["labels"])
        dims = {"hbb": 4, "obb": 5, "quad": 8}[kind]
        expected = Boxes(np.asarray(meta["objects"]["boxes"]).reshape(-1, dims), kind, frame)
        for label in set(rec["labels"]):
            mine = [i for i, lab in enumerate(meta["objects"]["labels"]) if lab == label]
            got = [i for i, lab in enumerate(parsed.objects.labels) if lab == label]
            assert_same_boxes(parsed.objects.boxes[np.array(got)], expected[np.array(mine)], kind)
        if kind != "obb":  # obb under the grid's non-uniform scaling is re-fitted, not a pure rounding
            back = parsed.objects.boxes.to_frame(plan.original).normalized().data
            orig = Boxes(np.asarray(rec["quads"]), "quad", plan.original).to(kind).normalized().data
            _back_matches(back, orig, 0.5 * max(plan.original.width, plan.original.height) / 1000 + 1e-6)
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
    b = SampleBuilder(BuildConfig(family=family))
    grid = Frame(1000.0, 1000.0, GRID)
    forms = set()
    for kind in ("hbb", "quad"):
        for seed in range(8):
            s = b.build(rec, unit(kind, "grounding"), np.random.default_rng(seed))
            plan = ResizePlan.from_dict(s["meta"]["plans"][0])
            parsed, unparsed = parse_grounding(s["messages"][1]["content"][0]["text"], kind, grid)
            assert not unparsed and len(parsed) == 1
            back = parsed.to_frame(plan.original).normalized().data
            orig = (Boxes(np.asarray(rec["bbox"]), "hbb", plan.original) if kind == "hbb" else
                    Boxes(np.asarray(rec["poly"]).reshape(1, 8), "quad", plan.original).normalized()).data
            _back_matches(back, orig, 0.5 * 800 / 1000 + 1e-6)
            forms.add(s["meta"]["form"])
    assert forms == {"plain", "json"}
    # evaluation prompts (deterministic): the target on the grid, whatever the resize
    s = b.build(dict(rec, image_width=640, image_height=480, bbox=[10, 20, 300, 200]), unit("hbb", "grounding"))
    assert s["messages"][1]["content"][0]["text"] == "(16,42),(469,417)"  # 10/640, 20/480, 300/640, 200/480
    if family == "qwen3_vl":
        assert s["meta"]["plans"][0]["model"] == [640, 480]  # already multiples of 32
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
