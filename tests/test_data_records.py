"""Unified records: validation names file, line and field of every problem; CLI exit codes; cleaning rules."""

import json

import pytest

from rscovlm.cli import main
from rscovlm.data.cleaning import TextCleaner
from rscovlm.data.records import (
    iter_json_array,
    read_coco,
    validate_conversation,
    validate_file,
    write_coco,
    write_jsonl,
)


def conv(**over):
    rec = {"id": "a", "source": "geochat", "task": "referring",
           "messages": [{"role": "user", "content": [{"type": "image", "image": "x.png"},
                                                     {"type": "text", "text": "Where is it?"}]},
                        {"role": "assistant", "content": "Here: <box:0>"}],
           "image_sizes": [[100, 80]], "boxes": [{"kind": "hbb", "values": [1, 2, 30, 40], "image": 0}]}
    rec.update(over)
    return rec


GROUND = {"dataset": "DIOR_RSVG", "image_id": "00001.jpg", "question": "the tank", "question_id": 3,
          "bbox": [10, 10, 50, 60], "poly": [[10, 10], [50, 10], [50, 60], [10, 60]],
          "image_width": 800, "image_height": 800}


def test_valid_conversation_has_no_problems():
    assert validate_conversation(conv()) == []


@pytest.mark.parametrize("over, field", [
    ({"id": ""}, "id"),
    ({"boxes": [{"kind": "hbb", "values": [30, 2, 1, 40], "image": 0}]}, "boxes[0].values"),
    ({"boxes": [{"kind": "rbox", "values": [1, 2, 3, 4], "image": 0}]}, "boxes[0].kind"),
    ({"boxes": [{"kind": "hbb", "values": [1, 2, 3, float("nan")], "image": 0}]}, "boxes[0].values"),
    ({"boxes": [{"kind": "hbb", "values": [1, 2, 300, 40], "image": 0}]}, "boxes[0].values"),
    ({"boxes": [{"kind": "hbb", "values": [1, 2, 3, 4], "image": 1}]}, "boxes[0].image"),
    ({"boxes": []}, "messages"),                       # <box:0> without a box
    ({"image_sizes": None}, "image_sizes"),            # boxes need sizes
    ({"image_sizes": [[100, 80], [5, 5]]}, "image_sizes"),
])
def test_conversation_problems_name_the_field(over, field):
    rec = conv(**over)
    if over.get("image_sizes", 0) is None:
        del rec["image_sizes"]
    fields = [f for f, _ in validate_conversation(rec)]
    assert field in fields


def test_roles_must_alternate_and_end_with_assistant():
    rec = conv(messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], boxes=None)
    del rec["boxes"]
    assert ("messages" in [f for f, _ in validate_conversation(rec)])
    rec["messages"] = [{"role": "assistant", "content": [{"type": "image", "image": "x.png"}]}]
    fields = [f for f, _ in validate_conversation(rec)]
    assert "messages[0].content[0]" in fields and "messages" in fields


def test_validate_file_collects_every_problem_with_line_numbers(tmp_path):
    path = tmp_path / "c.jsonl"
    good = conv()
    bad1 = conv(id="b", boxes=[{"kind": "hbb", "values": [1, 2], "image": 0}])
    bad2 = conv(id="a")  # duplicate id of line 1
    bad3 = conv(id="c", task="")
    path.write_text("\n".join(json.dumps(r) for r in (good, bad1, bad2)) + "\n{not json\n" + json.dumps(bad3) + "\n")
    probs = validate_file(path)
    text = [str(p) for p in probs]
    assert any(t.startswith(f"{path}:2: boxes[0].values") for t in text)
    assert any(t.startswith(f"{path}:3: id: duplicate id") for t in text)
    assert any(t.startswith(f"{path}:4: not valid JSON") for t in text)
    assert any(t.startswith(f"{path}:5: task") for t in text)  # a broken line does not end the check


def test_grounding_validation(tmp_path):
    path = tmp_path / "g.jsonl"
    bad = dict(GROUND, bbox=[10, 10, 900, 60], poly=[[1, 2], [3, 4]])
    nowidth = {k: v for k, v in GROUND.items() if k != "image_width"}
    write_jsonl(path, [GROUND, bad, nowidth])
    probs = validate_file(path, "grounding")
    where = {(p.line, p.field) for p in probs}
    assert (2, "bbox") in where and (2, "poly") in where and (3, "image_width") in where
    assert not [p for p in probs if p.line == 1]


def coco_doc():
    return {"images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 100},
                       {"id": 2, "file_name": "b.png", "width": 50, "height": 50}],
            "categories": [{"id": 1, "name": "plane"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[10, 10, 20, 10, 20, 30, 10, 30]],
                             "bbox": [10, 10, 10, 20], "area": 200, "iscrowd": 0, "difficult": 0}]}


def test_coco_problems_carry_the_line_of_the_element(tmp_path):
    doc = coco_doc()
    doc["annotations"].append({"id": 1, "image_id": 9, "category_id": 1, "segmentation": [[0, 0, 1, 1]],
                               "bbox": [0, 0, 5, 5], "area": 1})
    doc["annotations"].append({"id": 3, "image_id": 1, "category_id": 1,
                               "segmentation": [[10, 10, 20, 10, 20, 30, 10, 30]], "bbox": [0, 0, 5, 5], "area": 1})
    path = tmp_path / "d.json"
    write_coco(path, doc)
    lines = path.read_text().splitlines()
    probs = validate_file(path)
    assert {p.field for p in probs} >= {"annotations[1].id", "annotations[1].image_id",
                                        "annotations[1].segmentation[0]", "annotations[2].bbox"}
    for p in probs:
        idx = int(p.field.split("[")[1].split("]")[0])
        assert f'"id":{doc["annotations"][idx]["id"]}' in lines[p.line - 1]
    # the same document written on one line still validates with positions
    path.write_text(json.dumps(doc))
    coco, pos = read_coco(path)
    assert pos["annotations"] == [1, 1, 1]
    path.write_text(json.dumps(coco_doc(), indent=2))
    assert validate_file(path) == []


def test_json_array_elements_know_their_lines(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n {"a": 1},\n\n {"b":\n 2}, {"c": 3}\n]')
    assert [(line, obj) for line, obj in iter_json_array(path)] == [(2, {"a": 1}), (4, {"b": 2}), (5, {"c": 3})]


def test_cli_validate_exit_codes(tmp_path, capsys):
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    write_jsonl(good, [conv()])
    write_jsonl(bad, [conv(), conv(id="z", task=3)])
    assert main(["data", "validate", str(good)]) == 0
    assert main(["data", "validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:2: task:" in out
    # --images: missing image files are problems too
    assert main(["data", "validate", str(good), "--images", str(tmp_path)]) == 1
    assert "image not found" in capsys.readouterr().out


def test_cleaning_rules_and_counts():
    c = TextCleaner()
    out = c("  The  storagetank is near teh road ..  Wow!!! Really?? Groundtrackfield , ok... <box:0> .")
    assert out == "The storage tank is near the road. Wow! Really? Ground track field, ok... <box:0>."
    ch = c.changes()
    assert ch["clean:typo:storagetank"] == 1 and ch["clean:typo:teh"] == 1 and ch["clean:typo:groundtrackfield"] == 1
    assert ch["clean:repeated_punct"] == 3 and ch["clean:strip"] == 1
    assert ch["clean:space_runs"] == 2 and ch["clean:space_before_punct"] == 3


def test_cleaning_keeps_code_numbers_and_indentation():
    c = TextCleaner()
    text = "Run it:\n```\nx  =  1..2\n```\n    indented  line\n3.5 m"
    assert c(text) == "Run it:\n```\nx  =  1..2\n```\n    indented line\n3.5 m"
    assert c("UPPER TEH and Teh") == "UPPER THE and The"


def test_cleaning_leaves_code_tokens_alone():
    """General data (LLaVA-OneVision) holds code outside fences: inline code spans are untouched, and the
    punctuation rules do not break C++ scopes, Python slices or relative paths."""
    c = TextCleaner()
    assert c("Use `a[::2]` or `x  ,,  teh`!!") == "Use `a[::2]` or `x  ,,  teh`!"
    assert c("Call std::sort on it, then open ../data/teh.txt and ..\\win .") == \
        "Call std::sort on it, then open ../data/teh.txt and ..\\win."
    assert c("Done.. Next:: step") == "Done. Next:: step"
