"""Prompt sets (issue 9, part 1): the default set equals the reference's strings, character for character.

Every expected string below was typed from the reference's code, VisionXLab/RSCoVLM at commit c507282; the
comment above each names the file and function it comes from. The prompt files must reproduce them exactly.
"""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from rscovlm.protocol import DOTA_V1_0, PromptSetError, get_prompt_set, list_prompt_sets
from rscovlm.protocol.prompt_sets import render

REF = "rscovlm/training/data"  # the reference's training data package
SYS_HBB_PLAIN = ("As an AI assistant, you specialize in accurate image object detection, delivering coordinates in "
                 "plain text format 'x1,y1,x2,y2 object'.")
SYS_OBB_PLAIN = ("As an AI assistant, you specialize in accurate oriented object detection, delivering coordinates "
                 "in plain text format 'x,y,w,h,a object'.")
SYS_POLY_PLAIN = ("As an AI assistant, you specialize in accurate oriented object detection, delivering coordinates "
                  "of the polygon vertices in plain text format 'x1,y1,x2,y2,x3,y3,x4,y4 object'.")
SYS_OBB_JSON = ("You are an AI assistant specializing in oriented object detection. Represent objects with: center "
                "(x,y), width (w), height (h), and rotation angle.")
SYS_POLY_JSON = ("You are an AI assistant specializing in oriented object detection. Represent objects with quadrant "
                 "bbox: the corrdinates of each vertices of the oriented bounding boxes in clock-wise order.")
SYS_SEG = ("As an AI assistant, you specialize in segmentation, delivering segmentation results as Row-wise RLE "
           "format. Each row is represented as '<value>*<count>', and rows are separated by ';'. The last row ends "
           "with a semicolon. For example, '0*1,1*2;0*3;' represents the mask.")
DOTA_STR = ("baseball diamond, basketball court, bridge, ground track field, harbor, helicopter, large vehicle, "
            "plane, roundabout, ship, small vehicle, soccer ball field, storage tank, swimming pool, tennis court")

# dense_det_dataset.py: select_hbb_json_prompt_template (MAIN_HBB_TEMPLATE, PROXY_HBB_TEMPLATE with its missing
# comma: five entries, the first two literals joined)
DET_HBB_MAIN = ("Locate every item from the category list in the image and output the coordinates in JSON format. "
                "The category set includes {categories}.")
DET_HBB_PROXIES = [
    "Please output bbox coordinates and names of {categories} in JSON format."
    "Give me the bboxes and names of {categories} using JSON format",
    "Output the category names and bboxes of the {categories} in the image using JSON format.",
    "From this image, provide the bboxes and categories for {categories} using JSON format",
    "Please provide the bbox coordinates of the following objects: {categories}.",
    "Locate {categories} in the given image and provide the bboxes using JSON format",
]
# dense_det_dataset.py: select_obb_json_prompt_template (MAIN_OBB_TEMPLATE, PROXY_OBB_TEMPLATE)
DET_OBB_MAIN = ("Locate every item from the category list in the image and output the oriented bbox coordinates in "
                "JSON format. The category set includes {categories}.")
DET_OBB_PROXIES = [
    "Give me the oriented bboxes and names of {categories} using JSON format",
    "Output the category names and oriented bboxes of the {categories} in the image using JSON format.",
    "From this image, provide the oriented bboxes and categories for {categories} using JSON format",
    "Please provide the oriented bbox coordinates of the following objects: {categories}",
    "Locate {categories} in the given image and provide the oriented bboxes using JSON format",
]
# refgeo_dataset.py: select_hbb_json_prompt_template / select_obb_json_prompt_template ({prompt} -> {object})
REF_HBB_MAIN = "Locate the {object}, output the bbox coordinates using JSON format"
REF_HBB_PROXIES = [
    "Give me the bbox of {object} using JSON format",
    "Output the bbox of the {object} in the image using JSON format.",
    "From this image, provide the bbox for {object} using JSON format",
    "Please provide the bbox coordinate of the region this sentence describes: {object}",
    "Locate {object} in the given image and provide the bbox using JSON format",
]
REF_OBB_MAIN = "Locate the {object}, output the oriented bbox coordinates using JSON format"
REF_OBB_PROXIES = [
    "Give me the oriented bounding box of {object} using JSON format",
    "Output the oriented bounding box of the {object} in the image using JSON format.",
    "From this image, provide the oriented bounding box for {object} using JSON format",
    "Please provide the oriented bounding box coordinate of the region this sentence describes: {object}",
    "Locate {object} in the given image and provide the oriented bounding box using JSON format",
]
# refgeo_dataset.py: select_mask_prompt_template
SEG_MAIN = "Locate the {object}, output the segmentation mask"
SEG_PROXIES = [
    "Give me the segmentation mask of {object}",
    "Output the segmentation mask of the {object} in the image",
    "From this image, provide the segmentation mask for {object}",
    "Please provide the segmentation mask of the region this sentence describes: {object}",
    "Locate {object} in the given image and provide the segmentation mask",
    "Segment the {object} in the given image",
]
# visual_cot_dataset.py: SYSTEM_PROMPT (triple-quoted, no trailing newline)
ZOOM_SYSTEM = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function "
    "signatures within <tools></tools> XML tags:\n<tools>\n"
    '{"type": "function", "function": {"name": "image_zoom_in", "description": "Zoom in to the region of interest '
    "on the given image. Input the bounding box of the region of interest and return the zoomed-in image to help "
    'to focus and view more clearly.", "parameters": {"name": "bbox", "type": "list[int]", "description": "The '
    "bounding box of the region of interest as an array [x1, y1, x2, y2], where (x1, y1) and (x2, y2) indicate "
    "the positions' absolute coordinates of the left top and right down corners, respectively.\", "
    '"required": true}}}\n</tools>\n\nFor each function call, return a json object with function name and '
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>')


@pytest.fixture(scope="module")
def ps():
    return get_prompt_set()


def test_default_set_is_the_reference_and_v0_stays_available():
    assert get_prompt_set().name == get_prompt_set("default").name == "reference"
    assert {"reference", "rscovlm-v0"} <= set(list_prompt_sets())
    v0 = get_prompt_set("rscovlm-v0")
    assert v0.answer_style() == "rscovlm-v0" and get_prompt_set().answer_style() == "reference"
    assert v0.task("detection").get("plain", "quad").eval.startswith("Detect {categories} in the image.")
    # the legacy view the current builder reads still gives the rscovlm-v0 templates for "default"
    from rscovlm.protocol.prompts import load_prompt_set

    legacy = load_prompt_set("default")
    assert legacy.detection.get("plain", "quad") == v0.task("detection").get("plain", "quad").train.proxies
    assert legacy.detection.open_ended == ("all the visible objects", "every object you can see", "all objects")


# ---- training templates ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,system", [("hbb", SYS_HBB_PLAIN), ("obb", SYS_OBB_PLAIN), ("quad", SYS_POLY_PLAIN)])
def test_detection_plain_training_strings(ps, kind, system):
    # dense_det_dataset.py: get_hbb_messages / get_obb_messages / get_polygon_messages, plain branch
    fp = ps.task("detection").get("plain", kind)
    assert fp.system == system
    assert fp.train.main == "find the {categories}" and fp.train.proxies == ()
    assert fp.train.variants() == ["find the {categories}"]
    # evaluation (eval/data/dense_det.py::prepare_dense_det_messages) adds a final period; training has none
    assert fp.eval == "find the {categories}."


@pytest.mark.parametrize("kind,system,main,proxies,replaces", [
    ("hbb", None, DET_HBB_MAIN, DET_HBB_PROXIES, [("bbox", "bounding box")]),
    ("obb", SYS_OBB_JSON, DET_OBB_MAIN, DET_OBB_PROXIES, [("bbox", "bounding box"), ("oriented", "rotated")]),
    ("quad", SYS_POLY_JSON, DET_OBB_MAIN, DET_OBB_PROXIES, [("bbox", "bounding box"), ("oriented", "rotated")]),
])
def test_detection_json_training_strings(ps, kind, system, main, proxies, replaces):
    # dense_det_dataset.py: the JSON branch of get_*_messages and select_*_json_prompt_template
    fp = ps.task("detection").get("json", kind)
    assert fp.system == system
    assert fp.train.main == main and list(fp.train.proxies) == proxies
    assert len(fp.train.proxies) == 5 and fp.train.proxies[0].count("{categories}") == (2 if kind == "hbb" else 1)
    assert fp.train.proxy_prob == 0.5
    assert [(r.old, r.new, r.prob) for r in fp.train.replace] == [(a, b, 0.5) for a, b in replaces]
    assert fp.eval == main


@pytest.mark.parametrize("kind,system", [("hbb", SYS_HBB_PLAIN), ("obb", SYS_OBB_PLAIN), ("quad", SYS_POLY_PLAIN)])
def test_grounding_training_strings(ps, kind, system):
    # refgeo_dataset.py: get_hbb_messages / get_obb_messages / get_polygon_messages
    t = ps.task("grounding")
    plain = t.get("plain", kind)
    assert plain.system == system and plain.train.main == plain.eval == "find the {object}"
    js = t.get("json", kind)
    main, proxies = (REF_HBB_MAIN, REF_HBB_PROXIES) if kind == "hbb" else (REF_OBB_MAIN, REF_OBB_PROXIES)
    assert js.system == {"hbb": None, "obb": SYS_OBB_JSON, "quad": SYS_POLY_JSON}[kind]
    assert js.train.main == js.eval == main and list(js.train.proxies) == proxies
    rules = [(r.old, r.new) for r in js.train.replace]
    assert rules == ([("bbox", "bounding box")] if kind == "hbb" else [("bbox", "bounding box"),
                                                                        ("oriented", "rotated")])


def test_segmentation_and_zoom_strings(ps):
    # refgeo_dataset.py: get_seg_messages, select_mask_prompt_template (no replace rules)
    fp = ps.task("segmentation").get("rle", "mask")
    assert fp.system == SYS_SEG and fp.train.main == fp.eval == SEG_MAIN and list(fp.train.proxies) == SEG_PROXIES
    assert fp.train.replace == ()
    # visual_cot_dataset.py: SYSTEM_PROMPT, TOOL_CALL_TEMPLATE, get_messages; eval/inferencer.py: the follow-up
    z = ps.zoom
    assert z.system == ZOOM_SYSTEM and z.tool_name == "image_zoom_in"
    assert z.user_text("Q?") == "Q?\nZoom in to the region of interest and answer the question."
    assert render(z.tool_call, x1=1, y1=2, x2=3, y2=4) == \
        '<tool_call>\n{"name": "image_zoom_in", "arguments": {"bbox": [1, 2, 3, 4]}}\n</tool_call>'
    assert z.followup == "Here's the zoomed-in image. You can complete your task now."
    # visual_cot_dataset.py: multiple-choice questions, with the character-set rstrip of training kept
    mcq = z.mcq_question("What is it? Answer the question using a single word or phrase.", ["(A) a", "(B) b"])
    assert mcq == ("What is it? The choices are listed below: \n(A) a\n(B) b\nSelect the best answer to the above "
                   "multiple-choice question based on the image. Respond with only the letter (A, B, C, D, or E) "
                   "of the correct option.\nThe best answer is:")
    # the character-set strip eats the end of a question made of letters of that set (training only)
    assert z.mcq_question("Which class is this", [], training=True).startswith("Which c The choices")
    assert z.mcq_question("Which class is this", [], training=False).startswith("Which class is this The choices")


def test_category_string_and_open_end(ps):
    # dense_det_dataset.py::preprocess_coco_format_metadata (categories_str); eval/data/dense_det.py the same
    assert ps.category_string(DOTA_V1_0.classes) == DOTA_STR
    assert ps.category_label("small-vehicle") == "small vehicle" and ps.category_label("A_B-C") == "a_b c"
    # dense_det_dataset.py::set_open_end_prompt_settings: "(the )?{categories}" -> the open-end phrase
    t = ps.task("detection")
    assert t.open_end.apply("find the {categories}") == "find all the visible remote sensing objects"
    assert t.open_end.apply(DET_HBB_PROXIES[0]) == (
        "Please output bbox coordinates and names of all the visible remote sensing objects in JSON format.Give me "
        "the bboxes and names of all the visible remote sensing objects using JSON format")
    assert t.open_end.prob == 0.0  # unreachable in the reference (no CLI field)


def test_every_training_prompt_renders_to_a_reference_string(ps):
    # the set of rendered training prompts equals the one the reference's draw functions can produce
    expected = {"find the x"}
    for main, proxies, rules in [(DET_HBB_MAIN, DET_HBB_PROXIES, [("bbox", "bounding box")]),
                                 (DET_OBB_MAIN, DET_OBB_PROXIES, [("bbox", "bounding box"), ("oriented", "rotated")])]:
        pool = [main, *proxies]
        for old, new in rules:
            pool += [p.replace(old, new) for p in pool]
        expected |= {p.replace("{categories}", "x") for p in pool}
    got = {render(v, categories="x") for form in ("plain", "json") for kind in ("hbb", "obb", "quad")
           for v in ps.task("detection").get(form, kind).train.variants()}
    assert got == expected


def test_draws_follow_the_reference_probabilities(ps):
    rng = np.random.default_rng(0)
    t = ps.task("detection")
    n = 20_000
    draws = Counter(t.get("json", "obb").train.draw(rng) for _ in range(n))
    proxy = sum(c for s, c in draws.items() if not s.startswith("Locate every item")) / n
    bounding = sum(c for s, c in draws.items() if "bounding box" in s) / n
    rotated = sum(c for s, c in draws.items() if "rotated" in s) / n
    both = sum(c for s, c in draws.items() if "rotated bounding box" in s or
               ("rotated" in s and "bounding box" in s)) / n
    for share, p in [(proxy, 0.5), (bounding, 0.5), (rotated, 0.5), (both, 0.25)]:
        assert abs(share - p) < 0.02, (share, p)
    # each proxy equally likely (0.1 each)
    first = sum(c for s, c in draws.items() if s.startswith(("Give me the oriented", "Give me the rotated"))) / n
    assert abs(first - 0.1) < 0.01
    # the form: the reference's default prob_plain_text_prompt = 1.0 never draws JSON; 0.5 overrides
    assert {t.draw_form(rng) for _ in range(1000)} == {"plain"}
    share = sum(t.draw_form(rng, plain_prob=0.5) == "json" for _ in range(n)) / n
    assert abs(share - 0.5) < 0.02
    # proxy_prob overrides every draw (the reference's one knob prob_proxy_prompt); python's random works too
    assert {t.get("json", "obb").train.draw(random.Random(1), proxy_prob=0.0) for _ in range(50)} == {DET_OBB_MAIN}
    system, user = ps.training_prompt("detection", "plain", "quad", rng, categories=["plane", "small-vehicle"])
    assert (system, user) == (SYS_POLY_PLAIN, "find the plane, small vehicle")


# ---- evaluation prompts per benchmark ---------------------------------------------------------------------------

GEOCHAT_REF_JSON = ("Represent all {q} with quadrant bbox coordinates in a JSON format, represent objects with "
                    "quadrant bbox: the corrdinates of each")
MME_SUFFIX = ("Select the best answer to the above multiple-choice question based on the image. Respond with only "
              "the letter (A, B, C, D, or E) of the correct option.\nThe best answer is:")

EVAL_CASES = [
    # eval/data/dense_det.py::prepare_dense_det_messages (defaults --dense_det_prompt_type plain, qbox)
    ("dota_trainval512", {}, {"categories": list(DOTA_V1_0.classes)}, SYS_POLY_PLAIN, f"find the {DOTA_STR}."),
    ("dota_test1024", {"form": "plain", "kind": "obb"}, {"categories": DOTA_STR}, SYS_OBB_PLAIN,
     f"find the {DOTA_STR}."),
    ("dota_trainval1024", {"form": "plain", "kind": "hbb"}, {"categories": DOTA_STR}, SYS_HBB_PLAIN,
     f"find the {DOTA_STR}."),
    ("dota_trainval512", {"form": "json", "kind": "quad"}, {"categories": DOTA_STR}, SYS_POLY_JSON,
     DET_OBB_MAIN.format(categories=DOTA_STR)),
    ("dota_trainval512", {"form": "json", "kind": "obb"}, {"categories": DOTA_STR}, SYS_OBB_JSON,
     DET_OBB_MAIN.format(categories=DOTA_STR)),
    ("dota_trainval512", {"form": "json", "kind": "hbb"}, {"categories": DOTA_STR}, None,
     DET_HBB_MAIN.format(categories=DOTA_STR)),
    # eval/data/geoground.py::_prepare_geoground_eval (default --grounding_prompt_type plain)
    ("geoground", {}, {"object": "red car"}, SYS_HBB_PLAIN, "find the red car"),
    ("geoground_rsvg_test", {"form": "json"}, {"object": "red car"}, None,
     "Locate the red car, output the bbox coordinates using JSON format"),
    # eval/data/data.py::prepare_vlm_r1_rec
    ("refcoco_val", {}, {"object": "man"}, SYS_HBB_PLAIN, "find the man"),
    ("dior_rsvg_val", {"form": "json"}, {"object": "man"}, None,
     "Locate the man, output the bbox coordinates using JSON format"),
    # eval/data/data.py::prepare_rs_caption, prepare_rrsisd_res
    ("cap_rsicd", {}, {"question": "Describe the image"}, None, "Describe the image"),
    ("res_rrsisd_refer", {}, {"object": "the lake"}, SYS_SEG, "Locate the the lake, output the segmentation mask"),
    # eval/data/geochat_bench.py::prepare_geochat
    ("geochat_hrben", {}, {"question": "Is it?"}, None,
     "Is it? Answer the question using a single word or a short phrase."),
    ("geochat_grounding_description", {}, {"question": "Describe"}, None, "Describe"),
    ("geochat_region_captioning", {}, {"question": "[1, 2, 3, 4]"}, None,
     "[identify] What is the object present at [1, 2, 3, 4]"),
    ("geochat_referring", {"form": "json"}, {"question": "ships"}, None, GEOCHAT_REF_JSON.format(q="ships")),
    ("geochat_referring", {}, {"question": "ships"}, None,
     "Find all ships, delivering each oriented coordinates in plain text format 'x1,y1,x2,y2,x3,y3,x4,y4 object'"),
    ("geochat_aid", {}, {"classes": "a, b"}, None, "Classify the image within one of the given classes:a, b"),
    # eval/data/vrsbench.py::prepare_vrsbench
    ("vrsbench_vqa", {}, {"question": "Q?"}, None, "Q? Answer the question using a single word or a short phrase."),
    ("vrsbench_caption", {}, {"question": "Describe"}, None, "Describe"),
    ("vrsbench_referring", {}, {"object": "car"}, None,
     "find the car, delivering coordinates in plain text format 'x1,y1,x2,y2 object'"),
    ("vrsbench_referring", {"form": "json"}, {"object": "car"}, None,
     "Locate the car, output the bbox coordinates using JSON format"),
    # eval/data/scene_cls.py::prepare_scene_cls, prepare_scene_cls_local
    ("cls_resisc_timm", {}, {"classes": ["airplane", "beach"]}, None,
     "Classify the image within one of the given classes:airplane,beach."),
    ("cls_aid", {}, {"classes": "Airport, Beach"}, None, "Classify the image within one of the given "
     "classes:Airport, Beach"),
    # eval/data/vhm_bench.py::_prepare_vhm_eval
    ("vhm_rsvqa", {}, {"question": "  Is there a road? \n"}, None, "Is there a road?"),
    ("vhm_scene_cls", {}, {"question": "Which scene? Answer with one word or short phrase."}, None, "Which scene?"),
    # eval/data/large_image_bench.py::prepare_lrsvqa, prepare_mme_realworld_remote_sensing, get_qa_message
    ("lrsvqa", {}, {"question": "What color?"}, None, "What color?"),
    ("lrsvqa_visual_cot", {}, {"question": "What color?"}, ZOOM_SYSTEM,
     "What color?\nZoom in to the region of interest and answer the question."),
    ("mme_realworld_remote_sensing", {}, {"text": "Q?\n", "choices": ["(A) x", "(B) y"]}, None,
     "Q?\n The choices are listed below: \n(A) x\n(B) y\n" + MME_SUFFIX),
    ("mme_realworld_remote_sensing_visual_cot", {}, {"text": "Q?", "choices": ["(A) x"]}, ZOOM_SYSTEM,
     "Q? The choices are listed below: \n(A) x\n" + MME_SUFFIX
     + "\nZoom in to the region of interest and answer the question."),
    # eval/data/teochatlas_bench.py (the literal "<image>" stays: a reference bug kept)
    ("teochatlas_geochat", {}, {"question": "This is a satellite image: <video> Classify it. "}, None,
     "<image>Classify it."),
    ("teochatlas_xbd_sre_qa_rqa", {}, {"question": " Is it damaged. ? Yes.. no "}, None, "Is it damaged. Yes.no"),
]


@pytest.mark.parametrize("benchmark,options,fields,system,user", EVAL_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(EVAL_CASES)])
def test_every_benchmark_evaluation_prompt(ps, benchmark, options, fields, system, user):
    prompt = ps.eval_prompt(benchmark, **options, **fields)
    assert (prompt.system, prompt.user) == (system, user)
    messages = prompt.messages({"type": "image", "image": "file:///x.png"})
    assert messages[-1]["content"][-1] == {"type": "text", "text": user}
    assert (messages[0]["role"] == "system") == (system is not None)


def test_every_benchmark_entry_is_covered_by_a_case(ps):
    covered = {ps.benchmark(c[0])[0].name for c in EVAL_CASES}
    assert covered == set(ps.benchmarks)


def test_geoground_pixel_suffixes_and_zoom_skips(ps):
    # eval/data/geoground.py::prepare_geoground_eval: "_224/_336/_448/_1008" set min = max pixels = N * N
    for side in (224, 336, 448, 1008):
        p = ps.eval_prompt(f"geoground_{side}", object="x")
        assert p.image == {"min_pixels": side * side, "max_pixels": side * side} and p.user == "find the x"
        msg = p.messages({"type": "image", "image": "file:///a.png"})
        assert msg[1]["content"][0] == {"type": "image", "image": "file:///a.png", "min_pixels": side * side,
                                        "max_pixels": side * side}
    assert ps.eval_prompt("geoground_avvg_test", object="x").image == {}
    # large_image_bench.py: counting questions (and MME positions) are asked without zooming
    p = ps.eval_prompt("lrsvqa_visual_cot", question="How many?", category="count")
    assert (p.system, p.user, p.form) == (None, "How many?", "plain")
    p = ps.eval_prompt("mme_realworld_remote_sensing_visual_cot", text="Q", choices=[], category="position")
    assert p.system is None
    with pytest.raises(KeyError, match="no evaluation prompt for benchmark 'nope'"):
        ps.eval_prompt("nope")
    with pytest.raises(KeyError, match="box kinds"):
        ps.eval_prompt("geoground", kind="obb", object="x")


# ---- validation -----------------------------------------------------------------------------------------------

def _copy_set(tmp_path):
    import shutil

    src = get_prompt_set().path
    dst = tmp_path / "myset"
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("file,old,new,message", [
    ("detection.yaml", 'main: "find the {categories}"', 'main: "find the {category}"',
     r"detection\.yaml: forms\.plain\.hbb\.train\.main: placeholders must be exactly \['categories'\]"),
    ("detection.yaml", "proxy_prob: 0.5", "proxy_prob: 1.5", r"forms\.json\.hbb\.train\.proxy_prob: expected a prob"),
    ("grounding.yaml", '      eval: "find the {object}"\n', "", r"grounding\.yaml: forms\.plain\.hbb\.eval: missing"),
    ("zoom.yaml", "[{x1}, {y1}, {x2}, {y2}]", "[{x1}, {y1}, {x2}]", r"zoom\.yaml: tool_call: placeholders"),
    ("benchmarks.yaml", 'user: "{question} Answer the question using a single word or a short phrase."',
     'user: "{questio} Answer"', r"benchmarks\.yaml: geochat_vqa\.forms\.plain\.user: placeholders"),
    ("benchmarks.yaml", "task: detection", "task: detect", r"benchmarks\.yaml: dense_det\.task: no task file"),
    ("detection.yaml", 'system: "As an AI assistant, you specialize in accurate image',
     'system: "{x} As an AI assistant, you specialize in accurate image',
     r"forms\.plain\.hbb\.system: a system prompt takes no placeholders"),
])
def test_broken_files_name_file_and_key(tmp_path, file, old, new, message):
    folder = _copy_set(tmp_path)
    path = folder / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(PromptSetError, match=message):
        get_prompt_set(str(folder))


def test_a_folder_path_is_a_prompt_set_and_unknown_names_are_clear(tmp_path):
    folder = _copy_set(tmp_path)
    assert get_prompt_set(str(folder)).task("detection").get("plain", "quad").eval == "find the {categories}."
    with pytest.raises(FileNotFoundError, match="unknown prompt set 'nosuchset'"):
        get_prompt_set("nosuchset")
