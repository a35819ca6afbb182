"""Converters on small fake files written in each source's real format (shared/data/formats/*/FORMAT.md),
malformed inputs included: clear errors naming file/line/field, or with --skip-invalid counted drops."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from rscovlm.cli import main
from rscovlm.data.converters import CONVERTERS, ConvertConfig, convert, report_path
from rscovlm.data.records import RecordError, iter_jsonl, read_coco, validate_file
from rscovlm.geometry.boxes import Boxes, normalize_quads


def image(root, name, size):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 90, 90)).save(path)
    return name


def run(source, inp, out, images=None, **kw):
    return convert(source, ConvertConfig(input=str(inp), output=str(out), images=images and str(images), **kw))


def records(path):
    return [r for _, r in iter_jsonl(path)]


def test_registry_lists_every_source():
    assert {"geochat", "vhm", "refgeo", "dota", "teochatlas", "llava_onevision"} <= set(CONVERTERS)


# ---- GeoChat -------------------------------------------------------------------------------------------------

GEOCHAT = [
    {"id": "g1", "image": "P1.png", "conversations": [
        {"from": "human", "value": "<image>\n[refer] Give me the location of <p> white  car </p>"},
        {"from": "gpt", "value": "<p>white car</p> {<10><20><30><40>|<30>}{<50><50><60><70>}"}]},
    {"id": "g2", "image": "P1.png", "conversations": [
        {"from": "human", "value": "[identify] What is the object present at {<10><20><30><40>}"},
        {"from": "gpt", "value": "It is a storagetank !!"}]},
    {"id": "g3", "image": "P1.png", "conversations": [
        {"from": "human", "value": "What is in the image?\n<image>"}, {"from": "gpt", "value": "Houses."},
        {"from": "human", "value": "And?"}, {"from": "gpt", "value": "Roads ."}]},
]


def write_json_array(path, recs):
    # one key per line, like the released files: malformed-record errors must point into the right record
    path.write_text(json.dumps(recs, indent=1))
    return path


def test_geochat_converts_boxes_descriptors_and_cleans(tmp_path):
    image(tmp_path / "img", "P1.png", (800, 600))
    inp = write_json_array(tmp_path / "geochat.json", GEOCHAT)
    rep = run("geochat", inp, tmp_path / "out.jsonl", tmp_path / "img")
    recs = records(tmp_path / "out.jsonl")
    assert [r["task"] for r in recs] == ["referring", "region_identify", "chat"]
    user = recs[0]["messages"][0]["content"]
    assert user[0] == {"type": "image", "image": "P1.png"}
    assert user[1]["text"] == "Give me the location of white car. Answer with its oriented bounding box."
    assert recs[0]["messages"][1]["content"][0]["text"] == "white car <box:0>, <box:1>"
    assert recs[1]["messages"][0]["content"][1]["text"] == "What is the object present at <box:0>"
    assert recs[1]["messages"][1]["content"][0]["text"] == "It is a storage tank!"
    # image token after the text: the image part follows the text part
    assert [p["type"] for p in recs[2]["messages"][0]["content"]] == ["text", "image"]
    assert recs[2]["messages"][3]["content"][0]["text"] == "Roads."
    b0, b1 = recs[0]["boxes"]
    # boxes keep their own kind: the angle-less box stays horizontal next to the rotated one
    assert b1 == {"kind": "hbb", "values": [400.0, 300.0, 480.0, 420.0], "image": 0}
    assert recs[1]["boxes"] == [{"kind": "hbb", "values": [80.0, 120.0, 240.0, 240.0], "image": 0}]
    assert recs[0]["image_sizes"] == [[800, 600]]
    # the obb is GeoChat's bbox_and_angle_to_polygon of the pixel rectangle (80,120)-(240,240) turned by +30 deg:
    # x' = cx + dx cos a - dy sin a, y' = cy + dx sin a + dy cos a (clockwise on screen, y down)
    a = math.radians(30)
    expected = [[160 + dx * math.cos(a) - dy * math.sin(a), 180 + dx * math.sin(a) + dy * math.cos(a)]
                for dx, dy in ((-80, -60), (80, -60), (80, 60), (-80, 60))]
    got = Boxes(np.array(b0["values"]), "obb").to_quad().data
    np.testing.assert_allclose(got, normalize_quads(np.array(expected).reshape(1, 8)), atol=1e-6)
    assert b0["kind"] == "obb"
    assert rep.changes["geochat:descriptor_removed:[refer]"] == 1
    assert rep.changes["geochat:box:obb"] == 1 and rep.changes["geochat:box:hbb"] == 2
    assert rep.changes["clean:typo:storagetank"] == 1
    saved = json.loads(report_path(tmp_path / "out.jsonl").read_text())
    assert saved["records_in"] == 3 and saved["records_out"] == 3 and saved["dropped"] == {}
    assert validate_file(tmp_path / "out.jsonl", image_root=tmp_path / "img") == []


@pytest.mark.parametrize("bad_value, message", [
    ("{<105><20><300><40>}", "lies outside the image"),
    ("{<30><20><10><40>}", "x1 <= x2"),
    ("{<10><20><30>}", "malformed GeoChat box"),
])
def test_geochat_malformed_boxes_name_file_line_field(tmp_path, bad_value, message):
    image(tmp_path / "img", "P1.png", (100, 100))
    recs = [GEOCHAT[2], {"id": "bad", "image": "P1.png", "conversations": [
        {"from": "human", "value": "[refer] where?"}, {"from": "gpt", "value": bad_value}]}]
    inp = write_json_array(tmp_path / "g.json", recs)
    with pytest.raises(RecordError) as err:
        run("geochat", inp, tmp_path / "o.jsonl", tmp_path / "img")
    prob = err.value.problem
    text = inp.read_text().splitlines()
    assert prob.file == str(inp) and prob.field == "conversations[1].value" and message in prob.message
    assert '"id": "bad"' in "\n".join(text[prob.line - 1: prob.line + 2])
    assert not (tmp_path / "o.jsonl").exists()  # no half-written output
    rep = run("geochat", inp, tmp_path / "o.jsonl", tmp_path / "img", skip_invalid=True)
    assert rep.records_out == 1 and rep.dropped == {"malformed: conversations[1].value": 1}
    assert message in rep.examples[0]


def test_geochat_missing_image_and_missing_images_dir(tmp_path):
    inp = write_json_array(tmp_path / "g.json", GEOCHAT[:1])
    with pytest.raises(RecordError, match="pass --images"):
        run("geochat", inp, tmp_path / "o.jsonl")
    with pytest.raises(RecordError, match="image not found"):
        run("geochat", inp, tmp_path / "o.jsonl", tmp_path)


# ---- VHM ------------------------------------------------------------------------------------------------------

def test_vhm_eval_schema_pixel_boxes_and_prefixes(tmp_path):
    recs = [{"image": "00001.jpg", "image_path": "DIOR", "size": [800, 800], "conversations": [
                {"value": "{VG}Please provide the bounding box of: the car on the left"},
                {"value": "[120, 35, 178, 80]"}]},
            {"image": "a.png", "conversations": [{"from": "human", "value": "<image>\n{CLS}Classify the scene."},
                                                 {"from": "gpt", "value": "Airport"}]},
            {"image": "b.png", "size": [100, 100], "conversations": [
                {"value": "{VG}the tank"}, {"value": "[10, 10, 500, 20]"}]}]
    inp = write_json_array(tmp_path / "vhm.json", recs)
    with pytest.raises(RecordError, match="exceeds the 100x100 image") as err:
        run("vhm", inp, tmp_path / "o.jsonl")
    assert err.value.problem.line > 10
    rep = run("vhm", inp, tmp_path / "o.jsonl", skip_invalid=True)
    out = records(tmp_path / "o.jsonl")
    assert rep.records_out == 2 and sum(rep.dropped.values()) == 1
    assert out[0]["task"] == "grounding" and out[1]["task"] == "classification"
    assert out[0]["messages"][0]["content"][0] == {"type": "image", "image": "DIOR/00001.jpg"}
    assert out[0]["messages"][0]["content"][1]["text"] == (
        "Please provide the bounding box of: the car on the left. Answer with its horizontal bounding box.")
    assert out[0]["boxes"] == [{"kind": "hbb", "values": [120.0, 35.0, 178.0, 80.0], "image": 0}]
    assert out[0]["messages"][1]["content"][0]["text"] == "<box:0>"
    assert out[1]["messages"][0]["content"][1]["text"] == "Classify the scene."


def test_vhm_grounding_answer_without_box_is_malformed(tmp_path):
    inp = write_json_array(tmp_path / "v.json", [{"image": "a.png", "size": [9, 9], "conversations": [
        {"value": "{VG}the tank"}, {"value": "no idea"}]}])
    with pytest.raises(RecordError, match=r"conversations\[1\].value: a \{VG\} answer needs"):
        run("vhm", inp, tmp_path / "o.jsonl")


# ---- refGeo ---------------------------------------------------------------------------------------------------

def test_refgeo_keeps_schema_normalizes_poly_and_rejects_bad_lines(tmp_path):
    good = {"dataset": "DIOR_RSVG", "image_id": "00001.jpg", "question": "the  storagetank on the left",
            "question_id": 17, "bbox": [10, 20, 60, 70], "poly": [[10, 70], [60, 70], [60, 20], [10, 20]],
            "image_width": 800, "image_height": 800, "mask_exists": True}
    bad = dict(good, question_id=18, bbox=[10, 20, 900, 70])
    inp = tmp_path / "refgeo.jsonl"
    inp.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(RecordError) as err:
        run("refgeo", inp, tmp_path / "o.jsonl")
    assert (err.value.problem.line, err.value.problem.field) == (2, "bbox")
    rep = run("refgeo", inp, tmp_path / "o.jsonl", skip_invalid=True)
    (out,) = records(tmp_path / "o.jsonl")
    assert out["question"] == "the storage tank on the left" and out["source"] == "refgeo"
    assert out["poly"] == [[10, 20], [60, 20], [60, 70], [10, 70]]
    assert rep.changes["refgeo:poly_reordered"] == 1 and rep.dropped == {"malformed: bbox": 1}
    assert validate_file(tmp_path / "o.jsonl", "grounding") == []


# ---- TEOChatlas -----------------------------------------------------------------------------------------------

def test_teochatlas_sorts_frames_by_date_and_checks_sizes(tmp_path):
    root = tmp_path / "img"
    for name in ("s/t1.png", "s/t2.png", "s/t3.png"):
        image(root, name, (200, 100))
    image(root, "s/odd.png", (50, 50))
    rec = {"id": "q1", "video": ["s/t2.png", "s/t1.png"], "timestamp": ["2019-06-01", "2017-01-20"],
           "conversations": [{"from": "human", "value": "<video>\n[identify] What changed at {<10><10><50><50>}?"},
                             {"from": "gpt", "value": "A building was destroyed."}]}
    single = {"id": "q2", "image": "s/t3.png", "conversations": [
        {"from": "human", "value": "<image>\nDescribe."}, {"from": "gpt", "value": "Fields."}]}
    inp = write_json_array(tmp_path / "teo.json", [rec, single])
    rep = run("teochatlas", inp, tmp_path / "o.jsonl", root)
    first, second = records(tmp_path / "o.jsonl")
    parts = first["messages"][0]["content"]
    assert [p.get("image") for p in parts[:2]] == ["s/t1.png", "s/t2.png"]
    assert first["meta"]["timestamps"] == ["2017-01-20", "2019-06-01"]
    assert first["task"] == "region_identify" and first["image_sizes"] == [[200, 100], [200, 100]]
    assert first["boxes"] == [{"kind": "hbb", "values": [20.0, 10.0, 100.0, 50.0], "image": 0}]
    # a single image without a task of its own is no temporal record
    assert second["task"] == "chat" and rep.changes["teochatlas:frames_sorted_by_date"] == 1
    bad_date = dict(rec, timestamp=["2019-13-01", "2017-01-20"])
    odd = dict(rec, video=["s/t1.png", "s/odd.png"], timestamp=None)
    del odd["timestamp"]
    for broken, field in ((bad_date, "timestamp"), (odd, "video")):
        inp = write_json_array(tmp_path / "bad.json", [single, broken])
        with pytest.raises(RecordError) as err:
            run("teochatlas", inp, tmp_path / "b.jsonl", root)
        assert err.value.problem.field == field and err.value.problem.line > 5


# ---- LLaVA-OneVision ------------------------------------------------------------------------------------------

def test_llava_onevision_multi_image_text_only_and_video_counted(tmp_path):
    recs = [{"id": "m", "image": ["a.jpg", "b.jpg"], "conversations": [
                {"from": "human", "value": "<image>\n<image>\nWhich chart is larger?"},
                {"from": "gpt", "value": "```python\nx  =  1\n```\nThe first  one."}]},
            {"id": "t", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
            {"id": "v", "video": "clip.mp4", "conversations": [{"from": "human", "value": "<video>"},
                                                                {"from": "gpt", "value": "x"}]},
            {"id": "bad", "image": "a.jpg", "conversations": [{"from": "robot", "value": "?"}]}]
    inp = tmp_path / "ov.jsonl"
    inp.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    with pytest.raises(RecordError) as err:
        run("llava_onevision", inp, tmp_path / "o.jsonl")
    assert (err.value.problem.line, err.value.problem.field) == (4, "conversations[0].from")
    rep = run("llava_onevision", inp, tmp_path / "o.jsonl", skip_invalid=True)
    m, t = records(tmp_path / "o.jsonl")
    assert [p["type"] for p in m["messages"][0]["content"]] == ["image", "image", "text"]
    assert m["messages"][1]["content"][0]["text"] == "```python\nx  =  1\n```\nThe first one."
    assert t["messages"][0]["content"] == [{"type": "text", "text": "Hi"}] and t["task"] == "general"
    assert rep.dropped == {"unsupported: video": 1, "malformed: conversations[0].from": 1}
    assert rep.records_in == 4 and rep.records_out == 2


def test_image_token_count_must_match(tmp_path):
    inp = tmp_path / "ov.jsonl"
    inp.write_text(json.dumps({"id": 1, "image": ["a", "b"], "conversations": [
        {"from": "human", "value": "<image> what?"}, {"from": "gpt", "value": "x"}]}) + "\n")
    with pytest.raises(RecordError, match="1 image token"):
        run("llava_onevision", inp, tmp_path / "o.jsonl")


# ---- DOTA -----------------------------------------------------------------------------------------------------

def dota_split(tmp_path):
    ann, img = tmp_path / "annfiles", tmp_path / "images"
    ann.mkdir()
    image(img, "P0001__512__0___0.png", (512, 512))
    image(img, "P0001__512__412___0.png", (512, 512))
    (ann / "P0001__512__0___0.txt").write_bytes(
        b"imagesource:GoogleEarth\r\ngsd:0.13\r\n"
        b"10 10 50 10 50 40 10 40 plane 0\r\n"
        b"100 140 100 100 160 100 160 140 small-vehicle 1\r\n"
        b"500 500 530 500 530 520 500 520 ship 2\r\n")
    (ann / "P0001__512__412___0.txt").write_text("")  # a patch without objects
    return ann, img


def test_dota_split_folder_to_coco(tmp_path):
    ann, img = dota_split(tmp_path)
    out = tmp_path / "dota.json"
    rep = run("dota", ann, out, img)
    coco, _ = read_coco(out)
    assert [i["file_name"] for i in coco["images"]] == ["P0001__512__0___0.png", "P0001__512__412___0.png"]
    assert len(coco["categories"]) == 15 and coco["categories"][0] == {"id": 1, "name": "plane"}
    a = coco["annotations"]
    assert len(a) == 3 and {x["image_id"] for x in a} == {1}
    assert a[1]["segmentation"] == [[100.0, 100.0, 160.0, 100.0, 160.0, 140.0, 100.0, 140.0]]
    assert a[1]["bbox"] == [100.0, 100.0, 60.0, 40.0] and a[1]["area"] == 2400.0 and a[1]["difficult"] == 1
    assert a[2]["difficult"] == 2
    assert rep.changes["dota:images_without_objects"] == 1 and rep.changes["dota:quads_reordered"] == 1
    assert rep.changes["dota:objects_extending_outside_image"] == 1
    assert validate_file(out, image_root=img) == []


def test_dota_malformed_line_and_unknown_class(tmp_path):
    ann, img = dota_split(tmp_path)
    (ann / "P0001__512__0___0.txt").write_text("10 10 50 10 50 40 10 plane 0\n")
    with pytest.raises(RecordError) as err:
        run("dota", ann, tmp_path / "d.json", img)
    assert err.value.problem.file.endswith("P0001__512__0___0.txt") and err.value.problem.line == 1
    rep = run("dota", ann, tmp_path / "d.json", img, skip_invalid=True)
    assert rep.dropped == {"malformed: label line": 1} and rep.records_out == 2
    (ann / "P0001__512__0___0.txt").write_text("10 10 50 10 50 40 10 40 plane 0\n10 10 50 10 50 40 10 40 spaceship 0\n"
                                                 "1 1 9 1 9 9 1 9 Small_Vehicle 0\n")
    with pytest.raises(RecordError, match="unknown class 'spaceship'") as err:
        run("dota", ann, tmp_path / "d.json", img)
    assert err.value.problem.line == 2
    # skipping drops the bad line only; the image keeps its other objects (spelling variants are unified)
    rep = run("dota", ann, tmp_path / "d.json", img, skip_invalid=True)
    assert rep.dropped == {"malformed: label line": 1} and rep.records_out == 2
    coco, _ = read_coco(tmp_path / "d.json")
    assert sorted(a["category_id"] for a in coco["annotations"] if a["image_id"] == 1) == [1, 5]
    (ann / "P0001__512__0___0.txt").unlink()
    with pytest.raises(RecordError, match="no label file"):
        run("dota", ann, tmp_path / "d.json", img)


def test_cli_convert_prints_counts_and_errors(tmp_path, capsys):
    image(tmp_path / "img", "P1.png", (800, 600))
    inp = write_json_array(tmp_path / "geochat.json", GEOCHAT)
    out = tmp_path / "o.jsonl"
    assert main(["data", "convert", "--source", "geochat", "--in", str(inp), "--images", str(tmp_path / "img"),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().err  # a status line (stderr); stdout is for results
    assert "3 records read, 3 written" in printed and "geochat:box:obb" in printed
    assert main(["data", "convert", "--source", "nope", "--in", str(inp), "--out", str(out)]) == 2
    assert main(["data", "convert", "--source", "geochat", "--in", str(inp), "--out", str(out)]) == 2
    assert "pass --images" in capsys.readouterr().err


def test_geochat_zero_width_box_next_to_rotated_box_keeps_both_kinds(tmp_path):
    image(tmp_path / "img", "P1.png", (100, 100))
    inp = write_json_array(tmp_path / "g.json", [{"id": "z", "image": "P1.png", "conversations": [
        {"from": "human", "value": "[grounding] describe"},
        {"from": "gpt", "value": "<p>poles</p> {<10><20><10><40>}{<50><20><70><40>|<45>}"}]}])
    run("geochat", inp, tmp_path / "o.jsonl", tmp_path / "img")
    (rec,) = records(tmp_path / "o.jsonl")
    assert [b["kind"] for b in rec["boxes"]] == ["hbb", "obb"]
    assert rec["boxes"][0]["values"] == [10.0, 20.0, 10.0, 40.0]
    # the sentence names the most general kind of the answer's boxes
    assert rec["messages"][0]["content"][-1]["text"].endswith(
        "Give the oriented bounding box of each object you mention.")


def test_descriptors_removed_in_every_user_turn(tmp_path):
    """GeoChat multi-turn records repeat the tag in later questions; a system turn may come first. Every tag goes,
    and the box-kind sentence is appended to the turn that carried it (never to the system message)."""
    image(tmp_path / "img", "P1.png", (800, 600))
    recs = [{"id": "m1", "image": "P1.png", "conversations": [
        {"from": "human", "value": "<image>\nHow many cars are there?"}, {"from": "gpt", "value": "Two."},
        {"from": "human", "value": "[refer] Where is <p>the red car</p>?"},
        {"from": "gpt", "value": "{<10><20><30><40>}"}]},
        {"id": "m2", "image": "P1.png", "conversations": [
            {"from": "system", "value": "You are a helpful assistant."},
            {"from": "human", "value": "<image>\n[refer] Where is <p>the car</p>?"},
            {"from": "gpt", "value": "{<10><20><30><40>|<20>}"},
            {"from": "human", "value": "[identify] What is at {<50><50><60><70>}"},
            {"from": "gpt", "value": "A house."}]}]
    inp = write_json_array(tmp_path / "g.json", recs)
    rep = run("geochat", inp, tmp_path / "out.jsonl", tmp_path / "img")
    out = records(tmp_path / "out.jsonl")
    texts = [[p["text"] for p in m["content"] if p["type"] == "text"] for r in out for m in r["messages"]]
    assert not any("[" in t for ts in texts for t in ts), texts
    assert out[0]["task"] == "referring"
    assert out[0]["messages"][2]["content"][0]["text"] == (
        "Where is the red car? Answer with its horizontal bounding box.")
    assert out[1]["messages"][0]["content"][0]["text"] == "You are a helpful assistant."
    assert out[1]["messages"][1]["content"][1]["text"] == "Where is the car? Answer with its oriented bounding box."
    assert out[1]["messages"][3]["content"][0]["text"] == "What is at <box:1>"
    assert rep.changes["geochat:descriptor_removed:[refer]"] == 2
    assert rep.changes["geochat:descriptor_removed:[identify]"] == 1
    # VHM: the prefix of each question decides how its answer is read
    vhm = write_json_array(tmp_path / "v.json", [{"image": "a.png", "size": [90, 90], "conversations": [
        {"value": "{VQA}How many tanks?"}, {"value": "2 [sic]"}, {"value": "{VG}the left tank"},
        {"value": "[1, 2, 30, 40]"}]}])
    run("vhm", vhm, tmp_path / "v.jsonl")
    (v,) = records(tmp_path / "v.jsonl")
    assert [m["content"][-1]["text"] for m in v["messages"]] == [
        "How many tanks?", "2 [sic]", "the left tank. Answer with its horizontal bounding box.", "<box:0>"]
    assert v["task"] == "vqa" and v["boxes"][0]["values"] == [1.0, 2.0, 30.0, 40.0]


def test_duplicate_source_ids_stay_unique_and_are_counted(tmp_path):
    """GeoChat holds several conversations per image under one id; the output must still pass validation."""
    image(tmp_path / "img", "P1.png", (800, 600))
    recs = [dict(GEOCHAT[2], id="same"), dict(GEOCHAT[2], id="same"), dict(GEOCHAT[2], id="same")]
    inp = write_json_array(tmp_path / "g.json", recs)
    rep = run("geochat", inp, tmp_path / "out.jsonl", tmp_path / "img")
    ids = [r["id"] for r in records(tmp_path / "out.jsonl")]
    assert ids == ["geochat/same", "geochat/same#2", "geochat/same#3"]
    assert rep.changes["geochat:duplicate_id_renamed"] == 2
    assert validate_file(tmp_path / "out.jsonl") == []


def test_skip_invalid_drops_and_counts_lines_that_are_not_json(tmp_path):
    """JSON Lines input: a broken line is a malformed record like any other - an error naming file:line, or
    with --skip-invalid dropped and counted while the following lines are still converted."""
    good = {"dataset": "ds", "image_id": "a.png", "question": "the car", "bbox": [1, 2, 3, 4],
            "image_width": 10, "image_height": 10}
    inp = tmp_path / "r.jsonl"
    inp.write_text(json.dumps(good) + "\n{\"dataset\": \"ds\", \n" + json.dumps(good) + "\n")
    with pytest.raises(RecordError, match="not valid JSON") as err:
        run("refgeo", inp, tmp_path / "o.jsonl")
    assert err.value.problem.line == 2
    rep = run("refgeo", inp, tmp_path / "o.jsonl", skip_invalid=True)
    assert rep.records_in == 3 and rep.records_out == 2
    assert rep.dropped == {"malformed: record": 1} and rep.examples[0].startswith(f"{inp}:2:")


def test_teochatlas_bracket_boxes_on_the_0_100_grid(tmp_path):
    """TEOChat's own tasks write boxes as ``[x1, y1, x2, y2]`` on a 0-100 grid (videollava/eval/detection.py
    scales ``box / 100 * width``): they become structured boxes; other bracketed lists stay text, counted."""
    root = tmp_path / "img"
    for name in ("a/1.png", "a/2.png"):
        image(root, name, (200, 100))
    rec = {"id": "xbd_loc", "video": ["a/1.png", "a/2.png"], "conversations": [
        {"from": "human", "value": "<video>\nClassify the damage of the building at [10, 20, 30, 40]."},
        {"from": "gpt", "value": "Destroyed. Also damaged: [50.5, 50, 60, 70], [0, 0, 5, 5]."},
        {"from": "human", "value": "Which years were imaged? [2016, 2017, 2018, 2019]"},
        {"from": "gpt", "value": "Both."}]}
    rep = run("teochatlas", write_json_array(tmp_path / "t.json", [rec]), tmp_path / "o.jsonl", root)
    (out,) = records(tmp_path / "o.jsonl")
    assert out["boxes"] == [{"kind": "hbb", "values": [20.0, 20.0, 60.0, 40.0], "image": 0},
                            {"kind": "hbb", "values": [101.0, 50.0, 120.0, 70.0], "image": 0},
                            {"kind": "hbb", "values": [0.0, 0.0, 10.0, 5.0], "image": 0}]
    assert out["messages"][0]["content"][-1]["text"] == "Classify the damage of the building at <box:0>."
    assert out["messages"][1]["content"][0]["text"] == "Destroyed. Also damaged: <box:1>, <box:2>."
    assert out["messages"][2]["content"][0]["text"] == "Which years were imaged? [2016, 2017, 2018, 2019]"
    assert rep.changes["teochatlas:bracket_box"] == 3
    assert rep.changes["teochatlas:bracket_list_kept_as_text"] == 1
    assert validate_file(tmp_path / "o.jsonl", image_root=root) == []


def test_broken_json_array_element_stops_even_when_skipping(tmp_path, capsys):
    """In a JSON array nothing after a broken element can be located: the run stops there, naming the line,
    and does not suggest --skip-invalid when it is already given."""
    inp = tmp_path / "g.json"
    inp.write_text('[\n {"id": "a", "conversations": []},\n {"id": "b", "conversations": [}\n]\n')
    assert main(["data", "convert", "--source", "llava_onevision", "--in", str(inp), "--out",
                 str(tmp_path / "o.jsonl"), "--skip-invalid"]) == 2
    err = capsys.readouterr().err
    assert f"{inp}:3: not valid JSON" in err and "use --skip-invalid" not in err
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "o.jsonl.partial").exists()


# ==== records in the layouts of the released files (hand-written after the real records; see each converter) ====

def angle_gap(a: float, b: float, period: float = 90.0) -> float:
    """Distance of two directions modulo ``period`` degrees (a rectangle's sides repeat every 90)."""
    d = (a - b) % period
    return min(d, period - d)


def test_geochat_angle_sign_from_a_record_with_a_known_polygon(tmp_path):
    """GeoChat-Bench referring record of mbzuai-oryx/GeoChat#41 (question fast_6217): the answer's first box
    ``{<89><47><97><55>|<58>}`` lies on the first ground-truth polygon, whose sides run at +60.1 and -34.4 degrees
    on screen. Read clockwise (our convention) +58 deg matches within 3 deg; read counter-clockwise it is 26 off."""
    gt = np.array([[584.0, 337.0], [619.0, 313.0], [601.0, 282.0], [565.0, 304.0]])
    sides = [math.degrees(math.atan2(*(gt[(i + 1) % 4] - gt[i])[::-1])) for i in range(2)]
    assert sides == pytest.approx([-34.44, -120.14], abs=0.01)  # hand: atan2(-24, 35), atan2(-31, -18)
    image(tmp_path / "img", "train_5007_0017.png", (640, 640))  # the line does not give the size: square assumed
    inp = write_json_array(tmp_path / "g.json", [{"id": "fast_6217", "image": "train_5007_0017.png",
                                                  "conversations": [
        {"from": "human", "value": "<image>\n[refer] Give me the location of <p> 3 airplanes at the right </p>"},
        {"from": "gpt", "value": "{<89><47><97><55>|<58>}{<50><24><54><28>|<58>}{<48><16><52><20>|<58>}"}]}])
    run("geochat", inp, tmp_path / "o.jsonl", tmp_path / "img")
    (rec,) = records(tmp_path / "o.jsonl")
    theta = math.degrees(rec["boxes"][0]["values"][4])
    assert angle_gap(theta, sides[0]) < 3 and angle_gap(theta, sides[1]) < 3
    assert angle_gap(-58, sides[0]) > 20  # the other sign would be off by 26 degrees
    np.testing.assert_allclose(rec["boxes"][0]["values"][:4], [595.2, 326.4, 51.2, 51.2], atol=1e-9)


def test_geochat_known_rectangle_round_trip_delim_right_angles_and_grid_overflow(tmp_path):
    """A rectangle of centre (400, 300), sides 160 x 60, turned 30 deg clockwise on an 800 x 600 image, written
    the GeoChat way: the unturned corners on the 0-100 grid + the angle. Boxes separated by <delim>; an angle of
    90 is the rectangle with its sides swapped (hbb); values beyond 0-100 follow the documented rule."""
    image(tmp_path / "img", "a.png", (800, 600))
    recs = [{"id": "r", "image": "a.png", "conversations": [
        {"from": "human", "value": "<image>\n[grounding] Describe the image."},
        {"from": "gpt", "value": "<p>a ship</p> {<40><45><60><55>|<30>}<delim>{<10><20><30><40>|<90>} and "
                                 "<p>a pier</p> {<-2><20><101><40>|<0>}{<90><20><110><40>|<30>}"}]},
            {"id": "out", "image": "a.png", "conversations": [
                {"from": "human", "value": "[refer] Where is <p>the car</p>?"},
                {"from": "gpt", "value": "{<105><20><110><40>}"}]}]
    inp = write_json_array(tmp_path / "g.json", recs)
    with pytest.raises(RecordError, match="lies outside the image"):
        run("geochat", inp, tmp_path / "o.jsonl", tmp_path / "img")
    rep = run("geochat", inp, tmp_path / "o.jsonl", tmp_path / "img", skip_invalid=True)
    (rec,) = records(tmp_path / "o.jsonl")
    a = math.radians(30)
    corners = [[400 + dx * math.cos(a) - dy * math.sin(a), 300 + dx * math.sin(a) + dy * math.cos(a)]
               for dx, dy in ((-80, -30), (80, -30), (80, 30), (-80, 30))]
    assert corners[0] == pytest.approx([345.7180, 234.0192], abs=1e-4)  # hand: 400-69.282+15, 300-40-25.981
    b = rec["boxes"]
    np.testing.assert_allclose(Boxes(np.array(b[0]["values"]), "obb").to_quad().data,
                               normalize_quads(np.array(corners).reshape(1, 8)), atol=1e-9)
    # {<10><20><30><40>|<90>}: pixels (80,120)-(240,240), centre (160,180), 160 x 120 -> turned: 120 x 160
    assert b[1] == {"kind": "hbb", "values": [100.0, 100.0, 220.0, 260.0], "image": 0}
    # {<-2><20><101><40>}: clipped to the image
    assert b[2] == {"kind": "hbb", "values": [0.0, 120.0, 800.0, 240.0], "image": 0}
    # the turned rectangle of an object at the border pokes out of the grid: kept as it is
    assert b[3]["kind"] == "obb" and b[3]["values"][:2] == pytest.approx([800.0, 180.0])
    assert rec["messages"][1]["content"][0]["text"] == "a ship <box:0>, <box:1> and a pier <box:2>, <box:3>"
    assert rep.changes["geochat:delim_removed"] == 1 and rep.changes["geochat:box_clipped_to_image"] == 1
    assert rep.changes["geochat:obb_beyond_grid"] == 1
    assert rep.dropped == {"malformed: conversations[1].value": 1}


def test_vhm_sft_layout_grid_boxes_image_folders_ids_quotes(tmp_path):
    """Records as list_sft.json holds them (explore_vhm.ipynb prints them verbatim): no id, images under
    <root>/<source_dataset>/, {VG} answers on the zero-padded 0-1000 grid, stray quotes at answer ends, {IT}
    boxes in questions, building outlines (grid points) that are no boxes."""
    root = tmp_path / "VHM_dataset_sft"
    image(root, "DOIR-RSVG/7_13646.jpg", (800, 800))
    image(root, "DOIR-RSVG/5_03997.jpg", (800, 800))
    image(root, "dior/1_03121.jpg", (800, 800))
    image(root, "corwdAI/5_000000070318.jpg", (300, 300))
    image(root, "NWPU-RESISC45/10_wetland_213.jpg", (256, 256))
    image(root, "BANDON/1_L81_00679_784263.jpg", (512, 512))
    recs = [
        {"image": "7_13646.jpg", "source_dataset": "DOIR-RSVG", "conversations": [
            {"from": "human", "value": "<image>\n{VG} the windmill at the bottom"},
            {"from": "gpt", "value": "[[463,767,496,807]]"}]},
        {"image": "5_03997.jpg", "source_dataset": "DOIR-RSVG", "conversations": [
            {"from": "human", "value": "<image>\n{VG} a gray stadium in the middle"},
            {"from": "gpt", "value": "[[137,018,796,951]]"}]},
        {"image": "10_wetland_213.jpg", "source_dataset": "NWPU-RESISC45", "conversations": [
            {"from": "human", "value": "<image>\n{CLS} Classify the image within one of the given classes:airplane,"
                                       "wetland. Answer with one word or short phrase."},
            {"from": "gpt", "value": "wetland"}]},
        {"image": "1_03121.jpg", "source_dataset": "dior", "conversations": [
            {"from": "human", "value": "<image>\n How many windmills are there in this area?"},
            {"from": "gpt", "value": " There are three windmills in the image."},
            {"from": "human", "value": " What color are the windmills?"},
            {"from": "gpt", "value": " The windmills are white.\""}]},
        {"image": "5_000000070318.jpg", "source_dataset": "corwdAI", "conversations": [
            {"from": "human", "value": "<image>\n{IT} Please output the outlines of buildings in the vicinity of "
                                       "[100,623,326,730]."},
            {"from": "gpt", "value": "The vectorized key points of the outline of this building are <08> in number, "
                                     "with specific point coordinates at [(100,726),(100,650),(166,650),(100,726)]."}]},
        {"image": "5_000000070318.jpg", "source_dataset": "corwdAI", "conversations": [
            {"from": "human", "value": "<image>\n{IT} What is the object at [100,623,326,730]?"},
            {"from": "gpt", "value": "A building."}]},
        {"image": "1_L81_00679_784263.jpg", "source_dataset": "BANDON", "conversations": [
            {"from": "human", "value": "<image>\n{IT} What type of image is this?\nA.Color image\nB.False color "
                                       "image\nPealse select the correct answer from the above options."},
            {"from": "gpt", "value": "A.  Color image"}]},
    ]
    inp = write_json_array(tmp_path / "list_sft.json", recs)
    rep = run("vhm", inp, tmp_path / "vhm.jsonl", root)
    out = records(tmp_path / "vhm.jsonl")
    assert [r["id"] for r in out] == ["vhm/list_sft/0", "vhm/list_sft/1", "vhm/list_sft/2", "vhm/list_sft/3",
                                      "vhm/list_sft/5", "vhm/list_sft/6"]
    assert out[0]["messages"][0]["content"][0] == {"type": "image", "image": "DOIR-RSVG/7_13646.jpg"}
    # 0-1000 grid of the 800 px image: 463/1000*800 = 370.4, 767 -> 613.6, 496 -> 396.8, 807 -> 645.6
    np.testing.assert_allclose(out[0]["boxes"][0]["values"], [370.4, 613.6, 396.8, 645.6])
    np.testing.assert_allclose(out[1]["boxes"][0]["values"], [109.6, 14.4, 636.8, 760.8])  # "018" -> 14.4
    assert out[0]["messages"][1]["content"][0]["text"] == "<box:0>" and out[0]["task"] == "grounding"
    assert out[0]["messages"][0]["content"][1]["text"] == (
        "the windmill at the bottom. Answer with its horizontal bounding box.")
    assert out[2]["task"] == "classification" and out[3]["task"] == "chat"
    assert [m["content"][-1]["text"] for m in out[3]["messages"]][1:] == [
        "There are three windmills in the image.", "What color are the windmills?", "The windmills are white."]
    # {IT} box in the question, 300 px image: 100 -> 30, 623 -> 186.9, 326 -> 97.8, 730 -> 219
    np.testing.assert_allclose(out[4]["boxes"][0]["values"], [30.0, 186.9, 97.8, 219.0])
    assert out[4]["messages"][0]["content"][1]["text"] == "What is the object at <box:0>?"
    assert out[5]["messages"][0]["content"][1]["text"].endswith("Please select the correct answer from the above "
                                                                "options.")
    assert out[5]["messages"][1]["content"][0]["text"] == "A. Color image"
    assert rep.changes["vhm:stray_quote_removed"] == 1 and rep.changes["vhm:box_lifted_from_text"] == 1
    assert rep.changes["clean:typo:pealse"] == 1
    assert rep.dropped == {"unsupported: point coordinates (0-1000 grid) that are no box": 1}
    assert validate_file(tmp_path / "vhm.jsonl", image_root=root) == []
    # main's failure: the image looked up at <root>/<image> - now a missing file names the folder it expected
    (root / "dior" / "1_03121.jpg").unlink()
    bad = write_json_array(tmp_path / "v2.json", [recs[0], dict(recs[3], conversations=[
        {"from": "human", "value": "<image>\n{VG} x"}, {"from": "gpt", "value": "[[1,2,3,4]]"}])])
    with pytest.raises(RecordError, match=r"image not found: .*dior/1_03121.jpg") as err:
        run("vhm", bad, tmp_path / "v2.jsonl", root)
    assert err.value.problem.line > 5


def test_refgeo_llava_layout_grid_boxes_clipped_and_outside_dropped(tmp_path):
    """refGeo/sft/*_detection_hbb.json records (explore_refgeo.ipynb): 0-100 grid boxes that overflow."""
    root = tmp_path / "images"
    image(root, "dior/00005.jpg", (800, 800))
    image(root, "dota/P0620__512__0___1321.jpg", (512, 512))
    image(root, "avvg/0be3ceba-DJI_0001.JPG", (400, 300))
    recs = [{"id": "0", "image": "dior/00005.jpg", "conversations": [
                {"from": "human", "value": "<image>\n[refer] give me the bounding box of <ref>storagetank</ref> is"},
                {"from": "gpt", "value": "[[47,40,62,54]]"}]},
            {"id": "1", "image": "dior/00005.jpg", "conversations": [
                {"from": "human", "value": "<image>\n[refer] give me the bounding box of <ref>vehicle</ref> is"},
                {"from": "gpt", "value": "[[23,30,25,33],[0,84,4,86]]"}]},
            {"id": "2", "image": "dota/P0620__512__0___1321.jpg", "conversations": [
                {"from": "human", "value": "<image>\n[refer] give me the bounding boxes of all <ref>harbor</ref>"},
                {"from": "gpt", "value": "[[75,49,103,62],[78,32,99,43]]"}]},
            {"id": "3", "image": "avvg/0be3ceba-DJI_0001.JPG", "conversations": [
                {"from": "human", "value": "<image>\n[refer] give me the bounding boxes of all <ref>brown car</ref>"},
                {"from": "gpt", "value": "[[104,-24,189,145]]"}]}]
    inp = write_json_array(tmp_path / "dior_detection_hbb.json", recs)
    rep = run("refgeo", inp, tmp_path / "r.jsonl", root)
    out = records(tmp_path / "r.jsonl")
    assert rep.kind == "conversation" and [r["id"] for r in out] == [
        "refgeo/dior_detection_hbb/0", "refgeo/dior_detection_hbb/1", "refgeo/dior_detection_hbb/2"]
    assert out[0]["boxes"] == [{"kind": "hbb", "values": [376.0, 320.0, 496.0, 432.0], "image": 0}]  # x8
    assert [b["values"] for b in out[1]["boxes"]] == [[184.0, 240.0, 200.0, 264.0], [0.0, 672.0, 32.0, 688.0]]
    # 103 -> 100 (clipped), x 5.12 px per grid unit
    np.testing.assert_allclose([b["values"] for b in out[2]["boxes"]],
                               [[384.0, 250.88, 512.0, 317.44], [399.36, 163.84, 506.88, 220.16]])
    assert out[0]["messages"][0]["content"][1]["text"] == "give me the bounding box of storage tank is"
    assert out[1]["messages"][1]["content"][0]["text"] == "<box:0>, <box:1>" and out[0]["task"] == "referring"
    assert rep.changes["refgeo:grid_value_clipped"] == 2 and rep.changes["refgeo:box_outside_image_removed"] == 1
    assert rep.dropped == {"no box inside the image (0-100 grid)": 1}
    assert validate_file(tmp_path / "r.jsonl", image_root=root) == []


def test_refgeo_swift_layout_and_metainfo_without_sizes(tmp_path):
    """swift_hbb_*.json records (pixel boxes, the author's absolute image paths) and metainfo lines of the first
    release (no image_width / image_height: read from the image header)."""
    root = tmp_path / "refGeo" / "images"
    image(root, "dior_rsvg/00531.jpg", (800, 800))
    image(root, "rsvg/483816_4952275_1024_32615_sport_swimming.jpg", (1024, 1024))
    swift = [{"images": ["/mnt/petrelfs/liqingyun/share_data/data/refGeo/images/dior_rsvg/00531.jpg"],
              "messages": [{"role": "user", "content": "<image> give me the location of <ref-object>"},
                           {"role": "assistant", "content": "<bbox><bbox>"}],
              "objects": {"ref": "A dam in the middle", "bbox": [[252.0, 259.0, 614.0, 534.0]]}},
             {"images": ["/mnt/petrelfs/liqingyun/share_data/data/refGeo/images/rsvg/483816_4952275_1024_32615_"
                         "sport_swimming.jpg"],
              "messages": [{"role": "user", "content": "<image> give me the location of <ref-object>"},
                           {"role": "assistant", "content": "<bbox><bbox>"}],
              "objects": {"ref": "a swimming pool that is about 451 square meters on the eastmost side.",
                          "bbox": [[740.5, 222.5, 776.69, 258.06]]}}]
    inp = write_json_array(tmp_path / "swift_hbb_refGeo.json", swift)
    rep = run("refgeo", inp, tmp_path / "s.jsonl", root)
    a, b = records(tmp_path / "s.jsonl")
    assert rep.kind == "grounding" and rep.changes["refgeo:image_path_rerooted"] == 2
    assert (a["dataset"], a["image_id"], a["bbox"], a["image_width"], a["image_height"]) == (
        "dior_rsvg", "00531.jpg", [252.0, 259.0, 614.0, 534.0], 800, 800)
    assert a["question"] == "A dam in the middle" and a["question_id"] == "swift_hbb_refGeo/0"
    assert b["bbox"] == [740.5, 222.5, 776.69, 258.06] and b["image_width"] == 1024
    assert validate_file(tmp_path / "s.jsonl", "grounding", image_root=root) == []
    meta = {"dataset": "dior_rsvg", "image_id": "00531.jpg", "question": "A dam in the middle",
            "question_id": 7, "bbox": [252, 259, 614, 534], "poly": [[252, 259], [614, 259], [614, 534], [252, 534]]}
    inp = tmp_path / "dior_rsvg_train.jsonl"
    inp.write_text(json.dumps(meta) + "\n")
    with pytest.raises(RecordError, match="pass --images"):
        run("refgeo", inp, tmp_path / "m.jsonl")
    rep = run("refgeo", inp, tmp_path / "m.jsonl", root)
    (m,) = records(tmp_path / "m.jsonl")
    assert (m["image_width"], m["image_height"]) == (800, 800) and rep.changes["refgeo:image_size_read_from_file"] == 1


def test_teochatlas_empty_timestamps_metadata_layout_and_record_task(tmp_path):
    root = tmp_path / "TEOChatlas"
    for name in ("xbd/pre.png", "xbd/post.png", "s2/a.png", "s2/b.png", "ucm/c.png"):
        image(root, name, (100, 100))
    recs = [{"id": "1", "task": "xBD_change_detection_classification", "video": ["xbd/post.png", "xbd/pre.png"],
             "timestamp": [], "conversations": [
                 {"from": "human", "value": "These are satellite images: <video> Classify the damage."},
                 {"from": "gpt", "value": "Destroyed."}]},
            {"id": "2", "video": ["s2/b.png", "s2/a.png"],
             "metadata": [{"timestamp": "2019-06-01", "sensor": "S2"}, {"timestamp": "2017-01-20", "sensor": "S2"}],
             "conversations": [{"value": "<video> What changed?"}, {"value": "A new road."}]},
            {"id": "3", "video": ["ucm/c.png"], "timestamp": [], "conversations": [
                {"from": "human", "value": "This is a satellite image: <video> Classify the scene."},
                {"from": "gpt", "value": "Harbor"}]},
            {"id": "4", "video": ["s2/a.png", "s2/b.png"], "conversations": [
                {"from": "human", "value": "<video> Anything?"}, {"from": "gpt", "value": "No."}]}]
    inp = write_json_array(tmp_path / "instruct_xBD.json", recs)
    rep = run("teochatlas", inp, tmp_path / "t.jsonl", root)
    out = records(tmp_path / "t.jsonl")
    assert [r["task"] for r in out] == ["xBD_change_detection_classification", "temporal", "chat", "temporal"]
    assert [p["image"] for p in out[0]["messages"][0]["content"] if p["type"] == "image"] == [
        "xbd/post.png", "xbd/pre.png"]  # no dates: the file's order
    assert [p["image"] for p in out[1]["messages"][0]["content"] if p["type"] == "image"] == ["s2/a.png", "s2/b.png"]
    assert out[1]["meta"] == {"timestamps": ["2017-01-20", "2019-06-01"], "metadata": [
        {"timestamp": "2017-01-20", "sensor": "S2"}, {"timestamp": "2019-06-01", "sensor": "S2"}]}
    assert rep.changes["teochatlas:timestamps_empty"] == 1 and rep.changes["teochatlas:timestamps_missing"] == 1
    assert rep.changes["teochatlas:frames_sorted_by_date"] == 1
    assert validate_file(tmp_path / "t.jsonl", image_root=root) == []


def dota_labels(ann, name, text):
    ann.mkdir(exist_ok=True)
    (ann / name).write_text(text)


def test_dota_versions_and_self_intersecting_quads(tmp_path):
    ann, img = tmp_path / "labelTxt", tmp_path / "images"
    image(img, "P0001.png", (200, 200))
    dota_labels(ann, "P0001.txt", "imagesource:GoogleEarth\ngsd:0.13\n"
                                  "10 10 50 40 50 10 10 40 plane 0\n"      # edges 1-2 and 3-4 cross
                                  "60 60 90 60 90 90 60 90 container-crane 0\n"
                                  "100 100 150 100 150 150 100 150 helipad 1\n")
    with pytest.raises(RecordError, match="unknown class 'container-crane'") as err:
        run("dota", ann, tmp_path / "d.json", img)
    assert err.value.problem.line == 4
    with pytest.raises(RecordError, match="unknown class 'helipad'"):
        run("dota", ann, tmp_path / "d.json", img, categories="dota-v1.5")
    rep = run("dota", ann, tmp_path / "d.json", img, categories="dota-v2.0")
    coco, _ = read_coco(tmp_path / "d.json")
    assert [c["name"] for c in coco["categories"]][15:] == ["container-crane", "airport", "helipad"]
    assert [a["category_id"] for a in coco["annotations"]] == [1, 16, 18]
    assert rep.changes["dota:self_intersecting_quads"] == 1
    assert rep.notes == [f"{ann / 'P0001.txt'}:3: self-intersecting quad 10 10 50 40 50 10 10 40 (kept)"]
    assert validate_file(tmp_path / "d.json", image_root=img) == []


def test_cli_categories_and_sources(tmp_path, capsys):
    assert main(["data", "sources"]) == 0
    listed = capsys.readouterr().out
    assert "parquet" in listed and "dota-v2.0" in listed
    assert main(["data", "convert", "--source", "geochat", "--in", "x.json", "--out", str(tmp_path / "o.jsonl"),
                 "--categories", "dota-v1.5"]) == 2
    assert "--categories is for --source dota" in capsys.readouterr().err


# ---- LLaVA-OneVision parquet -------------------------------------------------------------------------------------

def png_bytes(size, color):
    import io

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def write_onevision_shard(path, rows):
    """A shard with the schema of lmms-lab/LLaVA-OneVision-Data (HF Image feature = struct{bytes, path})."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    schema = pa.schema([("id", pa.string()),
                        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                        ("conversations", pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())]))),
                        ("data_source", pa.string())])
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=2)
    return path


def onevision_rows():
    red, blue = png_bytes((8, 6), (255, 0, 0)), png_bytes((5, 5), (0, 0, 255))
    conv = [{"from": "human", "value": "<image>\nWhat color?"}, {"from": "gpt", "value": "Red."}]
    return red, blue, [
        {"id": "a", "image": {"bytes": red, "path": "x.png"}, "conversations": conv, "data_source": "chart"},
        {"id": None, "image": {"bytes": red, "path": None}, "conversations": [
            {"from": "human", "value": "Describe."}, {"from": "gpt", "value": "A red  square."}],
         "data_source": "chart"},
        {"id": "t", "image": None, "conversations": [{"from": "human", "value": "Hi"},
                                                     {"from": "gpt", "value": "Hello"}], "data_source": "text"},
        {"id": "b", "image": {"bytes": blue, "path": "b.png"}, "conversations": conv, "data_source": "ocr"},
        {"id": "bad", "image": {"bytes": b"not an image", "path": "c.png"}, "conversations": conv,
         "data_source": "ocr"}]


def test_llava_onevision_parquet_writes_each_image_once(tmp_path):
    import hashlib

    red, blue, rows = onevision_rows()
    shard = write_onevision_shard(tmp_path / "OV" / "CLEVR-Math(MathV360K)" / "train-00000-of-00001.parquet", rows)
    images = tmp_path / "ov_images"
    with pytest.raises(RecordError) as err:
        run("llava_onevision", tmp_path / "OV", tmp_path / "ov.jsonl", images)
    assert (err.value.problem.file, err.value.problem.line, err.value.problem.field) == (str(shard), 5, "image.bytes")
    rep = run("llava_onevision", tmp_path / "OV", tmp_path / "ov.jsonl", images, skip_invalid=True)
    out = records(tmp_path / "ov.jsonl")
    h_red, h_blue = hashlib.sha256(red).hexdigest(), hashlib.sha256(blue).hexdigest()
    assert [r["id"] for r in out] == ["llava_onevision/a", "llava_onevision/train-00000-of-00001/1",
                                      "llava_onevision/t", "llava_onevision/b"]
    assert out[0]["messages"][0]["content"][0] == {"type": "image", "image": f"{h_red[:2]}/{h_red}.png"}
    assert out[1]["messages"][0]["content"][0]["image"] == f"{h_red[:2]}/{h_red}.png"  # no token: image first
    assert (images / h_red[:2] / f"{h_red}.png").read_bytes() == red
    assert (images / h_blue[:2] / f"{h_blue}.png").read_bytes() == blue
    assert sorted(p.name for p in images.rglob("*") if p.is_file()) == sorted([f"{h_red}.png", f"{h_blue}.png"])
    assert [r["task"] for r in out] == ["chart", "chart", "text", "ocr"]
    assert out[2]["messages"][0]["content"] == [{"type": "text", "text": "Hi"}]
    assert rep.changes["llava_onevision:images_distinct"] == 2
    assert rep.changes["llava_onevision:id_from_position"] == 1
    assert rep.dropped == {"malformed: image.bytes": 1}
    assert validate_file(tmp_path / "ov.jsonl", image_root=images) == []
    # a second run finds the images there: nothing is rewritten, the output is the same
    stamp = (images / h_red[:2] / f"{h_red}.png").stat().st_mtime_ns
    first = (tmp_path / "ov.jsonl").read_bytes()
    run("llava_onevision", shard, tmp_path / "ov.jsonl", images, skip_invalid=True)
    assert (tmp_path / "ov.jsonl").read_bytes() == first
    assert (images / h_red[:2] / f"{h_red}.png").stat().st_mtime_ns == stamp


def test_llava_onevision_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch, capsys):
    _, _, rows = onevision_rows()
    shard = write_onevision_shard(tmp_path / "s.parquet", rows[:1])
    for mod in [m for m in list(__import__("sys").modules) if m == "pyarrow" or m.startswith("pyarrow.")]:
        monkeypatch.delitem(__import__("sys").modules, mod)
    monkeypatch.setitem(__import__("sys").modules, "pyarrow", None)
    monkeypatch.setitem(__import__("sys").modules, "pyarrow.parquet", None)
    assert main(["data", "convert", "--source", "llava_onevision", "--in", str(shard), "--images",
                 str(tmp_path / "img"), "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "pyarrow" in err and "pip install 'rscovlm[data]'" in err and "Traceback" not in err


# ---- every layout end to end through the CLI, then `data validate` ------------------------------------------------

def layouts(tmp_path):
    """(source, input, images root, extra args) for one small file of every supported layout."""
    root = tmp_path / "img"
    image(root, "P1.png", (800, 600))
    image(root, "DOIR-RSVG/7_13646.jpg", (800, 800))
    image(root, "dior/00005.jpg", (800, 800))
    image(root, "dior_rsvg/00531.jpg", (800, 800))
    image(root, "s/t1.png", (200, 100))
    image(root, "s/t2.png", (200, 100))
    out = {}
    out["geochat"] = ("geochat", write_json_array(tmp_path / "geochat.json", GEOCHAT), root)
    out["vhm_sft"] = ("vhm", write_json_array(tmp_path / "list_sft.json", [
        {"image": "7_13646.jpg", "source_dataset": "DOIR-RSVG", "conversations": [
            {"from": "human", "value": "<image>\n{VG} the windmill at the bottom"},
            {"from": "gpt", "value": "[[463,767,496,807]]"}]}]), root)
    out["vhm_eval"] = ("vhm", write_json_array(tmp_path / "VG_DOIR_RSVG_test.json", [
        {"image": "00005.jpg", "image_path": "dior", "conversations": [
            {"value": "{VG}Please provide the bounding box of: the dam"}, {"value": "[252, 259, 614, 534]"}]}]), root)
    out["refgeo_llava"] = ("refgeo", write_json_array(tmp_path / "dior_detection_hbb.json", [
        {"id": "0", "image": "dior/00005.jpg", "conversations": [
            {"from": "human", "value": "<image>\n[refer] give me the bounding box of <ref>vehicle</ref> is"},
            {"from": "gpt", "value": "[[23,30,25,33],[0,84,4,86]]"}]}]), root)
    out["refgeo_swift"] = ("refgeo", write_json_array(tmp_path / "swift_hbb_dior_rsvg.json", [
        {"images": ["/mnt/x/refGeo/images/dior_rsvg/00531.jpg"], "messages": [
            {"role": "user", "content": "<image> give me the location of <ref-object>"},
            {"role": "assistant", "content": "<bbox><bbox>"}],
         "objects": {"ref": "A dam in the middle", "bbox": [[252.0, 259.0, 614.0, 534.0]]}}]), root)
    meta = tmp_path / "dior_rsvg_train.jsonl"
    meta.write_text(json.dumps({"dataset": "dior_rsvg", "image_id": "00531.jpg", "question": "the dam",
                                "question_id": 1, "bbox": [252, 259, 614, 534]}) + "\n")
    out["refgeo_metainfo"] = ("refgeo", meta, root)
    out["teochatlas"] = ("teochatlas", write_json_array(tmp_path / "teo.json", [
        {"id": "q", "video": ["s/t2.png", "s/t1.png"], "timestamp": [], "conversations": [
            {"from": "human", "value": "<video> Where is the new building? [10, 20, 30, 40]"},
            {"from": "gpt", "value": "There."}]}]), root)
    ann, img = dota_split(tmp_path)
    out["dota"] = ("dota", ann, img)
    ov = tmp_path / "ov.jsonl"
    ov.write_text(json.dumps({"image": "P1.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A scene."}]}) + "\n")
    out["llava_json"] = ("llava_onevision", ov, root)
    _, _, rows = onevision_rows()
    out["llava_parquet"] = ("llava_onevision", write_onevision_shard(tmp_path / "ov" / "s.parquet", rows[:4]),
                            tmp_path / "ov_images")
    return out


@pytest.mark.parametrize("layout", ["geochat", "vhm_sft", "vhm_eval", "refgeo_llava", "refgeo_swift",
                                    "refgeo_metainfo", "teochatlas", "dota", "llava_json", "llava_parquet"])
def test_every_layout_converts_end_to_end_and_validates(tmp_path, capsys, layout):
    source, inp, root = layouts(tmp_path)[layout]
    out = tmp_path / ("out.json" if source == "dota" else "out.jsonl")
    assert main(["data", "convert", "--source", source, "--in", str(inp), "--images", str(root),
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    report = json.loads(report_path(out).read_text())
    assert report["records_out"] >= 1 and report["records_in"] == report["records_out"] + sum(
        report["dropped"].values()) and f"{report['records_in']} records read" in err
    assert main(["data", "validate", str(out), "--images", str(root)]) == 0
    assert "ok" in capsys.readouterr().err
