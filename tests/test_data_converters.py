"""Converters on small fake files written in each source's real format (shared/data/formats/*/FORMAT.md),
malformed inputs included: clear errors naming file/line/field, or with --skip-invalid counted drops."""

import json

import cv2
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
    # one kind per record: the angle-less box next to a rotated one becomes an obb with angle 0 (le90: w >= h)
    assert b1["kind"] == "obb"
    np.testing.assert_allclose(Boxes(np.array(b1["values"]), "obb").to("hbb").data[0], [400, 300, 480, 420])
    assert recs[1]["boxes"] == [{"kind": "hbb", "values": [80.0, 120.0, 240.0, 240.0], "image": 0}]
    assert recs[0]["image_sizes"] == [[800, 600]]
    # the obb is the demo's rendering: cv2.getRotationMatrix2D(centre, +30 deg) of the pixel corner rectangle
    x1, y1, x2, y2 = 80, 120, 240, 240
    rect = np.array([[[x1, y1], [x2, y1], [x2, y2], [x1, y2]]], dtype=np.float64)
    m = cv2.getRotationMatrix2D(((x1 + x2) / 2, (y1 + y2) / 2), 30, 1)
    expected = normalize_quads(cv2.transform(rect, m)[0].reshape(1, 8))
    got = Boxes(np.array(b0["values"]), "obb").to_quad().data
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert b0["kind"] == "obb"
    assert rep.changes["geochat:descriptor_removed:[refer]"] == 1
    assert rep.changes["geochat:box:obb"] == 1 and rep.changes["geochat:box:hbb"] == 2
    assert rep.changes["geochat:box:hbb_as_obb"] == 1
    assert rep.changes["clean:typo:storagetank"] == 1
    saved = json.loads(report_path(tmp_path / "out.jsonl").read_text())
    assert saved["records_in"] == 3 and saved["records_out"] == 3 and saved["dropped"] == {}
    assert validate_file(tmp_path / "out.jsonl", image_root=tmp_path / "img") == []


@pytest.mark.parametrize("bad_value, message", [
    ("{<10><20><300><40>}", "outside the 0-100 grid"),
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
    assert second["task"] == "temporal" and rep.changes["teochatlas:frames_sorted_by_date"] == 1
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


def test_geochat_zero_width_box_next_to_rotated_box_makes_quads(tmp_path):
    image(tmp_path / "img", "P1.png", (100, 100))
    inp = write_json_array(tmp_path / "g.json", [{"id": "z", "image": "P1.png", "conversations": [
        {"from": "human", "value": "[grounding] describe"},
        {"from": "gpt", "value": "<p>poles</p> {<10><20><10><40>}{<50><20><70><40>|<45>}"}]}])
    rep = run("geochat", inp, tmp_path / "o.jsonl", tmp_path / "img")
    (rec,) = records(tmp_path / "o.jsonl")
    assert [b["kind"] for b in rec["boxes"]] == ["quad", "quad"]
    np.testing.assert_allclose(Boxes(np.array(rec["boxes"][0]["values"]), "quad").to("hbb").data[0], [10, 20, 10, 40])
    assert rep.changes["geochat:box:hbb_as_quad"] == 1 and rep.changes["geochat:box:obb_as_quad"] == 1
    assert rec["messages"][0]["content"][1]["text"].endswith("Give the quadrilateral box of each object you mention.")


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
