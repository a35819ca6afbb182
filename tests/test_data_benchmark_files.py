"""Readers of benchmark annotation files that later steps read: DIOR-RSVG XML + split lists, VRSBench JSON.
Files are written by hand in the released layouts (RSVG-pytorch's RSVGD/Annotations/00001.xml; VRSBench's
prepare_eval_all.ipynb output); every box is checked against a hand computation."""

import json

import pytest

from rscovlm.data.dior_rsvg import DiorRsvgError, read_annotation, read_dior_rsvg, read_split
from rscovlm.data.records import RecordError
from rscovlm.data.vrsbench import read_vrsbench_annotation, read_vrsbench_eval, read_vrsbench_referring


def xml(filename, objects, size=(800, 800)):
    objs = "".join(
        f"  <object>\n    <name>{name}</name>\n    <pose>Unspecified</pose>\n    <bndbox>\n"
        f"      <xmin>{b[0]}</xmin>\n      <ymin>{b[1]}</ymin>\n      <xmax>{b[2]}</xmax>\n      <ymax>{b[3]}</ymax>\n"
        f"    </bndbox>\n    <description>{desc}</description>\n  </object>\n" for name, b, desc in objects)
    return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<annotation>\n  <filename>{filename}'
            f"</filename>\n  <source>\n    <database>DIOR</database>\n  </source>\n  <size>\n    <width>{size[0]}"
            f"</width>\n    <height>{size[1]}</height>\n    <depth>3</depth>\n  </size>\n  <segmented>0</segmented>\n"
            f"{objs}</annotation>")


@pytest.fixture
def dior_rsvg(tmp_path):
    root = tmp_path / "DIOR_RSVG"
    (root / "Annotations").mkdir(parents=True)
    # written out of name order: the global object index follows file names (00001, 00002, 00010)
    (root / "Annotations" / "00010.xml").write_text(xml("00010.jpg", [("ship", (5, 6, 7, 8), "the last ship")]))
    (root / "Annotations" / "00001.xml").write_text(xml("00001.jpg", [
        ("golffield", (133, 237, 684, 672), "A green and brown golf field")]))
    (root / "Annotations" / "00002.xml").write_text(xml("00002.jpg", [
        ("vehicle", (10, 20, 30, 40), "the car on the left"),
        ("groundtrackfield", (100, 110, 500, 520), "a huge ground track field")]))
    (root / "test.txt").write_text("0\n3\n")
    (root / "train.txt").write_text("2\n1\n")
    return root


def test_dior_rsvg_xml_global_indices_and_splits(dior_rsvg):
    objs = read_dior_rsvg(dior_rsvg)
    assert [(o.index, o.image, o.name) for o in objs] == [
        (0, "00001.jpg", "golffield"), (1, "00002.jpg", "vehicle"), (2, "00002.jpg", "groundtrackfield"),
        (3, "00010.jpg", "ship")]
    assert objs[0].bbox == (133.0, 237.0, 684.0, 672.0) and objs[0].size == (800, 800)
    assert objs[0].description == "A green and brown golf field"
    assert [o.description for o in read_dior_rsvg(dior_rsvg, "test")] == ["A green and brown golf field",
                                                                            "the last ship"]
    assert [o.index for o in read_dior_rsvg(dior_rsvg, "train")] == [2, 1]  # the split file's order
    assert [o.index for o in read_dior_rsvg(dior_rsvg, str(dior_rsvg / "test.txt"))] == [0, 3]


def test_dior_rsvg_errors_name_the_file(dior_rsvg):
    (dior_rsvg / "val.txt").write_text("1\n\n7\n")
    with pytest.raises(DiorRsvgError, match=r"val.txt: index 7 \(entry 2\) is outside the 4 objects"):
        read_dior_rsvg(dior_rsvg, "val")
    (dior_rsvg / "bad.txt").write_text("1\nx\n")
    with pytest.raises(DiorRsvgError, match=r"bad.txt:2: expected an object index, got 'x'"):
        read_split(dior_rsvg / "bad.txt")
    bad = dior_rsvg / "Annotations" / "00003.xml"
    bad.write_text(xml("00003.jpg", [("ship", (5, 6, 7, 8), "x")]).replace("<xmax>7</xmax>", ""))
    with pytest.raises(DiorRsvgError, match=r"00003.xml: object 1: <bndbox> needs xmin, ymin, xmax, ymax"):
        read_annotation(bad)
    bad.write_text("<annotation>\n<filename>a.jpg</filename>\n<object>\n</annotation>")
    with pytest.raises(DiorRsvgError, match=r"00003.xml:4: not valid XML"):
        read_dior_rsvg(dior_rsvg)


def vrs_ref(**kw):
    rec = {"image_id": "P0003_0002.png", "question": "The large ship at the bottom of the image.",
           "ground_truth": "{<12><34><56><78>}", "dataset": "RSBench", "question_id": 0, "type": "ref",
           "unique": True, "obj_corner": [0.125, 0.345, 0.567, 0.345, 0.567, 0.789, 0.125, 0.789],
           "obj_cls": "ship", "obj_ids": [0], "size_group": "large"}
    rec.update(kw)
    return rec


def test_vrsbench_referring_boxes_in_pixels(tmp_path):
    path = tmp_path / "VRSBench_EVAL_referring.json"
    second = vrs_ref(question_id=1, obj_corner=[[0.1, 0.2], [0.3, 0.2], [0.3, 0.4], [0.1, 0.4]],
                     ground_truth="{<10><20><30><40>}")
    del second["unique"]
    second["is_unique"] = False
    path.write_text(json.dumps([vrs_ref(), second], indent=4))
    a, b = read_vrsbench_referring(path)
    assert a.gt_grid == (12, 34, 56, 78) and a.unique is True and b.unique is False
    # 0-100 grid on a 512 x 512 patch: 12/100*512 = 61.44, 34 -> 174.08, 56 -> 286.72, 78 -> 399.36
    assert a.gt_pixels(512, 512) == pytest.approx((61.44, 174.08, 286.72, 399.36))
    # the exact corners: 0.125*512 = 64, 0.345*512 = 176.64, 0.567*512 = 290.304, 0.789*512 = 403.968
    assert a.corner_box_pixels(512, 512) == pytest.approx((64.0, 176.64, 290.304, 403.968))
    # the file's grid box is the truncation of the corner box: int(0.125*100) = 12, ..., int(0.789*100) = 78
    assert a.gt_grid == tuple(int(v / 512 * 100) for v in a.corner_box_pixels(512, 512))
    assert b.corners_pixels(100, 200) == pytest.approx([10, 40, 30, 40, 30, 80, 10, 80])


def test_vrsbench_malformed_records_name_line_and_field(tmp_path):
    path = tmp_path / "ref.json"
    path.write_text(json.dumps([vrs_ref(), vrs_ref(ground_truth="{<12><34><56>}")], indent=4))
    with pytest.raises(RecordError) as err:
        read_vrsbench_referring(path)
    starts = [i for i, text in enumerate(path.read_text().splitlines(), 1) if text == "    {"]
    assert (err.value.problem.line, err.value.problem.field) == (starts[1], "ground_truth")
    path.write_text(json.dumps([vrs_ref(obj_corner=[0.1, 0.2])], indent=1))
    with pytest.raises(RecordError, match="obj_corner: expected 4 corners"):
        read_vrsbench_referring(path)
    vqa = tmp_path / "vqa.json"
    vqa.write_text(json.dumps([{"image_id": "a.png", "question": "How many ships?", "ground_truth": "2",
                                "question_id": 3, "type": "object quantity"},
                               {"image_id": "a.png", "question": "Describe the image in detail",
                                "ground_truth": ["A harbor."], "type": "caption"},
                               {"image_id": "a.png", "question": "?", "ground_truth": 2}]))
    with pytest.raises(RecordError, match=r"vqa.json:1: ground_truth"):
        read_vrsbench_eval(vqa)


def test_vrsbench_per_image_annotation(tmp_path):
    path = tmp_path / "P0003_0002.json"
    path.write_text(json.dumps({"image": "P0003_0002.png", "caption": "A harbor with ships.", "objects": [
        {"obj_id": 1, "obj_cls": "ship", "obj_corner": [[0.1, 0.2], [0.3, 0.2], [0.3, 0.4], [0.1, 0.4]],
         "obj_coord": [0.1, 0.2, 0.3, 0.4], "is_unique": True, "referring_sentence": "the ship"}],
        "qa_pairs": [{"ques_id": 1, "question": "How many ships?", "type": "object quantity", "answer": "1"}]}))
    rec = read_vrsbench_annotation(path)
    assert rec["objects"][0]["obj_corner"] == [0.1, 0.2, 0.3, 0.2, 0.3, 0.4, 0.1, 0.4]
    path.write_text('{"image": "a.png",\n "objects": [}')
    with pytest.raises(RecordError, match=r"P0003_0002.json:2: not valid JSON"):
        read_vrsbench_annotation(path)


# ---- one reader per file format: the benchmark registry reads these files through the readers above -------------

def test_geoground_benchmark_and_refgeo_converter_read_metainfo_with_one_reader(tmp_path):
    """refGeo metainfo: the GeoGround loader and `data convert --source refgeo` stop at the same record with the
    same file:line: field: message (rscovlm.data.refgeo); an inverted bbox, once let through by the loader, is
    refused by both."""
    from PIL import Image

    from rscovlm.data.converters import ConvertConfig, convert
    from rscovlm.eval.benchmarks import BenchmarkDataError, get_benchmark

    (tmp_path / "images" / "dior_rsvg").mkdir(parents=True)
    Image.new("RGB", (80, 60)).save(tmp_path / "images" / "dior_rsvg" / "00001.jpg")
    path = tmp_path / "metainfo" / "dior_rsvg_test.jsonl"
    path.parent.mkdir()
    good = {"dataset": "dior_rsvg", "image_id": "00001.jpg", "question": "the dam", "question_id": 3,
            "bbox": [4, 6, 30, 40]}
    path.write_text(json.dumps(good) + "\n")
    bench = get_benchmark("geoground_dior_rsvg_test")
    (item,) = bench.items(tmp_path)
    assert (item.id, item.target, item.fields, item.meta) == (
        "1", [4.0, 6.0, 30.0, 40.0], {"object": "the dam"}, {"question_id": 3, "image_id": "00001.jpg"})
    path.write_text(json.dumps(good) + "\n" + json.dumps(dict(good, bbox=[30, 6, 4, 40])) + "\n")
    with pytest.raises(BenchmarkDataError) as bench_err:
        bench.items(tmp_path)
    with pytest.raises(RecordError) as conv_err:
        convert("refgeo", ConvertConfig(input=str(path), output=str(tmp_path / "o.jsonl"),
                                        images=str(tmp_path / "images")))
    assert (conv_err.value.problem.line, conv_err.value.problem.field) == (2, "bbox")
    assert str(bench_err.value) == f"geoground_dior_rsvg_test: {conv_err.value}"
    assert "needs x1 <= x2 and y1 <= y2" in str(conv_err.value)


def test_vrsbench_benchmarks_read_through_the_data_readers(tmp_path):
    """vrsbench_vg / vrsbench_vqa items come from read_vrsbench_referring / read_vrsbench_eval: the same checks
    (a ground_truth beyond the 0-100 grid, once let through by the loader, is refused) and errors naming the
    benchmark, file, line and field."""
    from PIL import Image

    from rscovlm.eval.benchmarks import BenchmarkDataError, get_benchmark

    (tmp_path / "Images").mkdir()
    Image.new("RGB", (200, 100)).save(tmp_path / "Images" / "P0003_0002.png")
    ref = tmp_path / "VRSBench_EVAL_referring.json"
    second = vrs_ref(question_id=1, question="A ship.", ground_truth="{<10><20><30><40>}")
    del second["unique"]
    second["is_unique"] = False
    ref.write_text(json.dumps([vrs_ref(), second], indent=1))
    a, b = get_benchmark("vrsbench_vg").items(tmp_path)
    assert (a.id, a.target, a.fields["object"], a.meta) == (
        "0", "{<12><34><56><78>}", "large ship at the bottom of the image", {"is_unique": True, "size": [200, 100],
                                                                             "obj_cls": "ship"})
    assert (b.id, b.meta["is_unique"]) == ("1", False)
    ref.write_text(json.dumps([vrs_ref(), dict(second, ground_truth="{<10><20><30><140>}")], indent=1))
    starts = [i for i, text in enumerate(ref.read_text().splitlines(), 1) if text == " {"]
    with pytest.raises(BenchmarkDataError, match=rf"^vrsbench_vg: .*VRSBench_EVAL_referring.json:{starts[1]}: "
                                                 r"ground_truth: .* is no box on the 0-100 grid"):
        get_benchmark("vrsbench_vg").items(tmp_path)
    vqa = tmp_path / "VRSBench_EVAL_vqa.json"
    vqa.write_text(json.dumps([{"image_id": "P0003_0002.png", "question": "How many ships?", "ground_truth": "2",
                                "question_id": 3, "type": "object quantity"}]))
    assert read_vrsbench_eval(vqa)[0][0] == 1
    (item,) = get_benchmark("vrsbench_vqa").items(tmp_path)
    assert (item.id, item.target, item.fields, item.meta["type"]) == ("3", "2", {"question": "How many ships?"},
                                                                     "object quantity")
    vqa.write_text(json.dumps([{"image_id": "P0003_0002.png", "question": "  ", "ground_truth": "2"}]))
    with pytest.raises(BenchmarkDataError, match=r"^vrsbench_vqa: .*VRSBench_EVAL_vqa.json:1: question: required"):
        get_benchmark("vrsbench_vqa").items(tmp_path)
