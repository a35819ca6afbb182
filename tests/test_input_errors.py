"""Bad bytes and unknown classes in every text input: an error naming file and line (and byte offset), or with
--skip-invalid the line skipped and counted; ground-truth classes outside the chosen vocabulary are an error
naming file:line, class and vocabulary, or with --unknown-gt-classes ignore dropped and counted."""

import json

import pytest

from rscovlm.cli import main
from rscovlm.data.converters import ConvertConfig, convert
from rscovlm.data.records import RecordError, iter_jsonl, iter_records, validate_file
from rscovlm.dota.io import DotaFormatError, read_labeltxt, read_task1_dir
from rscovlm.eval.dota_map import eval_dota

EVAL_COMMANDS = ["dota", "dota-nc", "dota-sweep", "dota-f1"]


def eval_args(command, gt, det, *extra):
    if command == "dota-sweep":
        return ["eval", command, "--val-gt", str(gt), "--val-det", str(det), "--seeds", "1", "--iou-thrs", "0.5",
                *extra]
    more = ["--seeds", "1", "--iou-thrs", "0.5"] if command == "dota-nc" else []
    return ["eval", command, "--gt-dir", str(gt), "--det-dir", str(det), *more, *extra]


# ---- the decoding helpers ------------------------------------------------------------------------------------

def test_textio_lines_match_python_and_locate_bad_bytes(tmp_path):
    from rscovlm.data import textio

    p = tmp_path / "a.txt"
    good = "plain\r\nwindows\rold mac\n\u00e9t\u00e9\x0bvt\n\nlast".encode()
    p.write_bytes(good)
    with open(p, encoding="utf-8") as fh:
        assert [line for _, line in textio.iter_lines(p)] == list(fh)  # universal newlines, like open()
    assert textio.read_lines(p) == good.decode().splitlines()
    bad = b"\xef\xbb\xbfok\r\nline \xe4 two\n\xc3\xa9\rthree\xff\n"
    p.write_bytes(bad)
    got = textio.read_lines(p)
    assert got[0] == "ok" and got[2] == "\u00e9"
    assert (got[1].line_no, got[1].offset, got[1].byte) == (2, bad.index(b"\xe4"), 0xE4)
    assert (got[3].line_no, got[3].offset, got[3].byte) == (4, bad.index(b"\xff"), 0xFF)
    assert got[1].text == "line \ufffd two"
    streamed = dict(textio.iter_lines(p))
    assert (streamed[2].offset, streamed[4].offset) == (bad.index(b"\xe4"), bad.index(b"\xff"))
    at = bad.index(b"\xe4")
    with pytest.raises(textio.TextDecodeError, match=rf"a.txt:2: not UTF-8 text: byte 0xe4 at byte offset {at}"):
        textio.read_text(p)


# ---- DOTA labelTxt and Task1 ---------------------------------------------------------------------------------

def test_labeltxt_and_task1_bad_bytes_name_file_line_and_offset(tmp_path):
    lab = tmp_path / "P1.txt"
    data = b"gsd:0.1\n10 10 50 10 50 40 10 40 plane 0\n1 1 9 1 9 9 1 9 pl\xe4ne 0\n20 20 30 20 30 30 20 30 ship 0\n"
    lab.write_bytes(data)
    at = data.index(b"\xe4")
    with pytest.raises(DotaFormatError, match=rf"P1.txt:3: not UTF-8 text: byte 0xe4 at byte offset {at}"):
        read_labeltxt(lab)
    got = read_labeltxt(lab, skip_invalid=True)
    assert got.objects.labels == ["plane", "ship"] and [s.line_no for s in got.skipped] == [3]
    det = tmp_path / "det"
    det.mkdir()
    (det / "Task1_plane.txt").write_bytes(b"P1 0.9 1 1 2 1 2 2 1 2\nP\xe41 0.8 1 1 2 1 2 2 1 2\n"
                                          b"P1 0.7 1 1 2 1 2 2 1 2\n")
    with pytest.raises(DotaFormatError, match=r"Task1_plane.txt:2: not UTF-8 text: byte 0xe4 at byte offset 24"):
        read_task1_dir(det)
    got = read_task1_dir(det, skip_invalid=True)
    assert got["P1"].scores.tolist() == [0.9, 0.7] and [s.line_no for s in got.skipped] == [2]


def write_eval_folders(tmp_path, gt_p2: bytes, ship_lines: bytes):
    gt, det = tmp_path / "gt", tmp_path / "det"
    gt.mkdir(exist_ok=True)
    det.mkdir(exist_ok=True)
    (gt / "P1.txt").write_bytes(b"imagesource:GoogleEarth\ngsd:0.1\n10 10 50 10 50 40 10 40 plane 0\n"
                                b"60 60 90 60 90 90 60 90 ship 0\n")
    (gt / "P2.txt").write_bytes(gt_p2)
    (det / "Task1_plane.txt").write_bytes(b"P1 0.9 10 10 50 10 50 40 10 40\nP2 0.8 10 10 50 10 50 40 10 40\n")
    (det / "Task1_ship.txt").write_bytes(ship_lines)
    return gt, det


GOOD_P2 = b"10 10 50 10 50 40 10 40 plane 0\n"
GOOD_SHIP = b"P1 0.9 60 60 90 60 90 90 60 90\n"


@pytest.mark.parametrize("command", EVAL_COMMANDS)
def test_eval_commands_name_undecodable_lines_and_skip_them(tmp_path, capsys, command):
    bad_gt = GOOD_P2 + b"1 1 9 1 9 9 1 9 pl\xe4ne 0\n"
    gt, det = write_eval_folders(tmp_path, bad_gt, GOOD_SHIP)
    assert main(eval_args(command, gt, det)) == 2
    err = capsys.readouterr().err
    at = bad_gt.index(b"\xe4")
    assert f"P2.txt:2: not UTF-8 text: byte 0xe4 at byte offset {at}" in err
    assert "Traceback" not in err and "codec" not in err
    write_eval_folders(tmp_path, GOOD_P2, GOOD_SHIP + b"P2 0.\xe48 1 1 2 2 3 3 4 4\n")
    assert main(eval_args(command, gt, det)) == 2
    assert "Task1_ship.txt:2: not UTF-8 text: byte 0xe4 at byte offset 36" in capsys.readouterr().err
    write_eval_folders(tmp_path, bad_gt, GOOD_SHIP + b"P2 0.\xe48 1 1 2 2 3 3 4 4\n")
    assert main(eval_args(command, gt, det, "--skip-invalid", "--json", str(tmp_path / "r.json"))) == 0
    assert "skipped 2 malformed line(s)" in capsys.readouterr().err
    res = json.loads((tmp_path / "r.json").read_text())
    res = res["detectors"]["det"]["val"] if command == "dota-sweep" else res
    assert res["skipped_lines"] == 2


# ---- ground-truth classes outside the vocabulary ------------------------------------------------------------

UNKNOWN_P2 = b"gsd:0.2\n10 10 50 10 50 40 10 40 plane 0\n1 1 9 1 9 9 1 9 spaceship 0\n"


@pytest.mark.parametrize("command", EVAL_COMMANDS)
def test_eval_commands_refuse_or_drop_unknown_ground_truth_classes(tmp_path, capsys, command):
    gt, det = write_eval_folders(tmp_path, UNKNOWN_P2, GOOD_SHIP)
    assert main(eval_args(command, gt, det)) == 2
    err = capsys.readouterr().err
    assert "P2.txt:3: ground-truth class 'spaceship' is not in the vocabulary (dota-v1.0)" in err
    assert "--unknown-gt-classes ignore" in err
    out = tmp_path / "r.json"
    assert main(eval_args(command, gt, det, "--unknown-gt-classes", "ignore", "--json", str(out))) == 0
    assert "dropped 1 ground-truth object(s) of classes outside the vocabulary: spaceship (1)" in \
        capsys.readouterr().err
    res = json.loads(out.read_text())
    val = res["detectors"]["det"]["val"] if command == "dota-sweep" else res
    assert val["dropped_unknown_gt_classes"] == {"spaceship": 1}
    if command == "dota":
        assert res["classes"] == ["plane", "ship"] and res["mAP"] == pytest.approx(1.0)
    # the vocabulary is the user's choice: a list of names, or 'any' for the old behaviour (a class of its own)
    assert main(eval_args(command, gt, det, "--categories", "plane,ship,spaceship", "--json", str(out))) == 0
    if command == "dota":
        assert json.loads(out.read_text())["mAP"] == pytest.approx(2 / 3)
        assert main(eval_args(command, gt, det, "--categories", "any")) == 0
        assert main(eval_args(command, gt, det, "--categories", "dota-v9")) == 2
        assert "--categories: unknown category set 'dota-v9'" in capsys.readouterr().err


def test_library_vocabulary_check_and_spelling_hint(tmp_path):
    gt, det = write_eval_folders(tmp_path, b"1 1 9 1 9 9 1 9 small_vehicle 0\n", GOOD_SHIP)
    assert "small_vehicle" in eval_dota(gt, det).classes  # no vocabulary given: every class counts
    with pytest.raises(DotaFormatError, match=r"P2.txt:1: .*'small_vehicle' .*did you mean 'small-vehicle'"):
        eval_dota(gt, det, categories="dota-v1.0")
    r = eval_dota(gt, det, categories="dota-v1.0", unknown_gt_classes="ignore")
    assert r.dropped_unknown_gt_classes == {"small_vehicle": 1} and "small_vehicle" not in r.classes


# ---- converters, data validate, the jsonl reader -------------------------------------------------------------

def _json_array(path, recs, bad_record: int):
    """A JSON array file (one key per line) whose record ``bad_record`` holds the byte 0xe4 in a string."""
    text = json.dumps(recs, indent=1).encode()
    marker = f"MARK{bad_record}".encode()
    path.write_bytes(text.replace(marker, b"caf\xe4"))
    return path


def _jsonl(path, recs):
    path.write_bytes(b"\n".join(json.dumps(r).encode().replace(b"MARK1", b"caf\xe4") for r in recs) + b"\n")
    return path


def _turns(text):
    return [{"from": "human", "value": f"<image>\nDescribe {text}."}, {"from": "gpt", "value": "Fields."}]


def converter_input(source, tmp_path):
    """(input path, --images, line of the bad byte) for a 2-record input whose 2nd record has a bad byte."""
    from PIL import Image

    img = tmp_path / "img"
    img.mkdir()
    Image.new("RGB", (64, 48)).save(img / "a.png")
    if source in ("geochat", "teochatlas", "llava_onevision"):
        recs = [{"id": f"r{i}", "image": "a.png", "conversations": _turns(f"MARK{i}")} for i in range(2)]
        path = _json_array(tmp_path / "in.json", recs, 1)
    elif source == "vhm":
        recs = [{"image": "a.png", "conversations": [{"value": "{CLS}Classify MARK%d." % i},
                                                     {"value": "Airport"}]} for i in range(2)]
        path = _json_array(tmp_path / "in.json", recs, 1)
    elif source == "refgeo":
        recs = [{"dataset": "ds", "image_id": "a.png", "question": f"the MARK{i}", "bbox": [1, 2, 3, 4],
                 "image_width": 64, "image_height": 48} for i in range(2)]
        return _jsonl(tmp_path / "in.jsonl", recs), None, 2
    else:  # dota: a labelTxt folder
        ann = tmp_path / "ann"
        ann.mkdir()
        (ann / "a.txt").write_bytes(b"1 1 9 1 9 9 1 9 plane 0\n1 1 9 1 9 9 1 9 pl\xe4ne 0\n")
        return ann, img, 2
    line = next(i for i, raw in enumerate(path.read_bytes().split(b"\n"), 1) if b"\xe4" in raw)
    return path, img, line


@pytest.mark.parametrize("source", ["geochat", "teochatlas", "vhm", "llava_onevision", "refgeo", "dota"])
def test_every_converter_input_names_undecodable_bytes_and_skips_them(tmp_path, capsys, source):
    path, img, line = converter_input(source, tmp_path)
    out = tmp_path / ("o.json" if source == "dota" else "o.jsonl")
    cfg = dict(input=str(path), output=str(out), images=img and str(img))
    with pytest.raises(RecordError, match=r"not UTF-8 text: byte 0xe4 at byte offset \d+") as err:
        convert(source, ConvertConfig(**cfg))
    assert err.value.problem.line == line and err.value.problem.file.endswith(("in.json", "in.jsonl", "a.txt"))
    rep = convert(source, ConvertConfig(**cfg, skip_invalid=True))
    assert sum(rep.dropped.values()) == 1 and f":{line}: " in rep.examples[0]
    if source != "dota":
        assert rep.records_out == 1
    cli = ["data", "convert", "--source", source, "--in", str(path), "--out", str(out)] + (
        ["--images", str(img)] if img else [])
    assert main(cli) == 2
    err = capsys.readouterr().err
    assert f":{line}: " in err and "not UTF-8 text" in err and "Traceback" not in err
    assert main(cli + ["--skip-invalid"]) == 0


def test_json_array_byte_outside_strings_is_a_decoding_error(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(b'[\n {"a": 1},\n \xe4{"b": 2}\n]\n')
    with pytest.raises(RecordError, match=r"a.json:3: not UTF-8 text: byte 0xe4 at byte offset 14"):
        list(iter_records(path, errors="yield"))  # the array's structure is broken: no skipping


def test_typo_table_not_utf8_is_an_error_naming_the_line(tmp_path, capsys):
    path, img, _ = converter_input("refgeo", tmp_path)
    table = tmp_path / "typos.yaml"
    table.write_bytes(b"teh: the\ncaf\xe4: cafe\n")
    assert main(["data", "convert", "--source", "refgeo", "--in", str(path), "--out", str(tmp_path / "o.jsonl"),
                 "--typo-table", str(table)]) == 2
    assert "typos.yaml:2: not UTF-8 text: byte 0xe4 at byte offset 12" in capsys.readouterr().err


def test_data_validate_lists_undecodable_lines(tmp_path, capsys):
    conv = {"id": "a", "source": "s", "task": "t", "messages": [
        {"role": "user", "content": "hi MARK1"}, {"role": "assistant", "content": "ok"}]}
    clean = dict(conv, id="z", task="", messages=[{"role": "user", "content": "hi"}, conv["messages"][1]])
    path = _jsonl(tmp_path / "c.jsonl", [dict(conv, id="x"), dict(conv, id="y"), clean])
    probs = validate_file(path)
    assert [(p.line, p.field) for p in probs] == [(1, ""), (2, ""), (3, "task")]
    assert "not UTF-8 text: byte 0xe4" in probs[0].message
    assert main(["data", "validate", str(path)]) == 1
    assert f"{path}:1: not UTF-8 text: byte 0xe4 at byte offset" in capsys.readouterr().out
    ground = {"dataset": "ds", "image_id": "a.png", "question": "MARK1", "bbox": [1, 2, 3, 4], "image_width": 9,
              "image_height": 9}
    path = _jsonl(tmp_path / "g.jsonl", [dict(ground, question="fine"), ground])
    assert [p.line for p in validate_file(path, "grounding")] == [2]
    coco = tmp_path / "d.json"
    coco.write_bytes(b'{\n"images": [\n  {"id": 1, "file_name": "caf\xe4.png", "width": 9, "height": 9}\n],\n'
                     b'"categories": [], "annotations": []\n}\n')
    (prob,) = validate_file(coco, "detection")
    assert prob.line == 3 and "byte 0xe4 at byte offset 43" in prob.message
    assert main(["data", "validate", str(coco)]) == 1


def test_iter_jsonl_names_undecodable_line_and_goes_on_when_asked(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"a": 1}\r\n{"b": "caf\xe4"}\r\n{"c": 3}\n')
    with pytest.raises(RecordError, match=r"t.jsonl:2: not UTF-8 text: byte 0xe4 at byte offset 20"):
        list(iter_jsonl(path))
    got = list(iter_jsonl(path, errors="yield"))
    assert got[0] == (1, {"a": 1}) and got[2] == (3, {"c": 3}) and isinstance(got[1][1], RecordError)
