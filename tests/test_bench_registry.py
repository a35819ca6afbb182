"""The benchmark registry on fake data in each benchmark's exact released layout: items, the exact prompts sent,
scoring with right and wrong answers, data errors naming file:line, run folders, and the CLI commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rscovlm.cli import main
from rscovlm.eval.benchmarks import AnswersError, BenchmarkDataError, get_benchmark, list_benchmarks
from rscovlm.eval.benchmarks.results import compare, read_answers, score_run

from _fake_bench import _json, _jsonl, make_fake_root

HBB_SYSTEM = ("As an AI assistant, you specialize in accurate image object detection, delivering coordinates in "
              "plain text format 'x1,y1,x2,y2 object'.")
QUAD_SYSTEM = ("As an AI assistant, you specialize in accurate oriented object detection, delivering coordinates "
               "of the polygon vertices in plain text format 'x1,y1,x2,y2,x3,y3,x4,y4 object'.")
VQA_SUFFIX = " Answer the question using a single word or a short phrase."
DOTA_CATS = ("baseball diamond, basketball court, bridge, ground track field, harbor, helicopter, large vehicle, "
             "plane, roundabout, ship, small vehicle, soccer ball field, storage tank, swimming pool, tennis court")


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    return make_fake_root(tmp_path_factory.mktemp("bench_data"))


# the user text (and system message) of the first item of each benchmark, as the reference writes them
EXPECTED = {
    "lrs_vqa": (None, "How many?\n Answer the question using a single word or phrase."),
    "geoground_dior_rsvg_val": (HBB_SYSTEM, "find the storage tank on the left"),
    "vrsbench_vg": (None, "find the small white car on the road, delivering coordinates in plain text format "
                          "'x1,y1,x2,y2 object'"),
    "vrsbench_vqa": (None, "Is there a car?" + VQA_SUFFIX),
    "dota_val": (QUAD_SYSTEM, f"find the {DOTA_CATS}."),
    "aid_vhm": (None, "Classify the image. Classes: airport, forest."),
    "aid_geochat": (None, "Classify the image within one of the given classes:airport, forest, mediumresidential"),
    "rsvqa_hr": (None, "Question presence?" + VQA_SUFFIX),
}


def _texts(msgs):
    system = next((m["content"][0]["text"] for m in msgs if m["role"] == "system"), None)
    user = msgs[-1]["content"]
    return system, next(p["text"] for p in user if p["type"] == "text"), next(p for p in user if p["type"] == "image")


def test_registry_has_every_benchmark_of_the_paper():
    names = set(list_benchmarks())
    assert {"lrs_vqa", "lrs_vqa_zoom", "vrsbench_vg", "vrsbench_vqa", "dota_val", "dota_test", "aid_vhm",
            "aid_geochat", "ucmerced", "nwpu_resisc45", "whu_rs19", "meter_ml", "rsvqa_hr", "rsvqa_lr",
            "synthetic"} <= names
    assert {f"geoground_{s}" for s in ("dior_rsvg_val", "dior_rsvg_test", "rsvg_val", "rsvg_test", "geochat_test",
                                       "vrsbench_test", "avvg_test")} <= names
    for n in names:
        d = get_benchmark(n).describe()
        assert d["layout"] and d["rules"] and d["default_rule"] in d["rules"]


@pytest.mark.parametrize("name", [n for n in list_benchmarks() if n != "synthetic"])
def test_items_and_prompts_from_the_released_layout(fake_root, name):
    bench = get_benchmark(name)
    items = bench.items(fake_root)
    assert items and len({it.id for it in items}) == len(items)
    system, text, image = _texts(bench.messages(items[0]))
    assert Path(image["image"]).is_file()
    if name in EXPECTED:
        assert (system, text) == EXPECTED[name]


def test_dota_items_are_split_windows(fake_root):
    test = get_benchmark("dota_test").items(fake_root)
    assert [it.id for it in test] == ["P0002__512__0___0", "P0002__512__188___0"]  # last window moved inside
    msgs = get_benchmark("dota_test").messages(test[1])
    assert _texts(msgs)[2]["window"] == [188, 0, 700, 512]


def test_zoom_prompts_skip_counting(fake_root):
    bench = get_benchmark("lrs_vqa_zoom")
    items = {it.id: it for it in bench.items(fake_root)}
    system, text, _ = _texts(bench.messages(items["FAIR_2"]))
    assert system.startswith("# Tools") and "image_zoom_in" in system
    assert text.endswith("phrase.\nZoom in to the region of interest and answer the question.")
    system, text, _ = _texts(bench.messages(items["FAIR_1"]))  # count: one pass, as the reference
    assert system is None and not text.endswith("question.")


def test_fixed_pixel_suffix(fake_root):
    bench = get_benchmark("geoground_rsvg_test_336")
    _, _, image = _texts(bench.messages(bench.items(fake_root)[0]))
    assert image["min_pixels"] == image["max_pixels"] == 336 * 336
    assert not get_benchmark("geoground_rsvg_test").pixels  # the base entry is untouched


def test_geochat_cls_and_rsvqa_conversions(fake_root):
    aid = get_benchmark("aid_geochat").items(fake_root)
    assert [it.target for it in aid] == ["airport", "medium residential"]
    assert aid[0].image.endswith("AID/Airport/airport_1.jpg")
    lr = get_benchmark("rsvqa_lr").items(fake_root)
    assert [it.meta["type"] for it in lr] == ["presence", "comp", "rural_urban"]  # count, area, inactive left out


def test_dior_rsvg_release_reads_the_xml_with_the_data_reader(fake_root):
    """dior_rsvg_test reads DIOR-RSVG's own files through rscovlm.data.dior_rsvg (global object indices in
    file-name order, bndbox corners as given) and asks exactly what geoground_dior_rsvg_test asks."""
    items = get_benchmark("dior_rsvg_test").items(fake_root)
    assert [(it.id, it.target, it.fields["object"], Path(it.image).name) for it in items] == [
        ("0", [4.0, 6.0, 30.0, 40.0], "storage tank on the left", "00001.jpg"),
        ("1", [20.5, 10.0, 60.0, 20.0], "the bridge", "00002.jpg")]
    assert [it.id for it in get_benchmark("dior_rsvg_val").items(fake_root)] == ["2"]
    refgeo = get_benchmark("geoground_dior_rsvg_test")
    (first, *_), (ref_first, *_) = items, refgeo.items(fake_root)
    assert _texts(get_benchmark("dior_rsvg_test").messages(first))[:2] == _texts(refgeo.messages(ref_first))[:2]


def test_vrsbench_referring_phrase_as_the_reference(fake_root):
    items = get_benchmark("vrsbench_vg").items(fake_root)
    assert items[0].fields["object"] == "small white car on the road"
    assert items[1].fields["object"] == "A large ship."  # no leading "the ": nothing stripped


# ---- scoring -----------------------------------------------------------------------------------------------------

def _answer(bench_name, it, right: bool) -> dict:
    size = it.meta.get("size")
    if bench_name.startswith(("geoground", "dior_rsvg")):
        x1, y1, x2, y2 = (int(round(v)) for v in it.target) if right else (0, 0, 2, 2)
        return {"id": it.id, "text": f"{x1},{y1},{x2},{y2} {it.fields['object']}\n",
                "resize": {"original": [64, 48], "model": [64, 48]}}
    if bench_name == "vrsbench_vg":
        w, h = size
        g = [int(t) for t in it.target.strip("{}<>").split("><")]
        box = [g[0] * w / 100, g[1] * h / 100, g[2] * w / 100, g[3] * h / 100] if right else [0, 0, 1, 1]
        return {"id": it.id, "text": ",".join(str(int(v)) for v in box) + " the object",
                "resize": {"original": size, "model": size}}
    return {"id": it.id, "text": it.target if right else "qqq"}


@pytest.mark.parametrize("name", ["lrs_vqa", "lrs_vqa_zoom", "geoground_avvg_test", "geoground_geochat_test",
                                  "dior_rsvg_test",
                                  "vrsbench_vg", "aid_vhm", "aid_geochat", "ucmerced", "nwpu_resisc45", "whu_rs19",
                                  "meter_ml", "rsvqa_hr", "rsvqa_lr"])
def test_right_answers_score_100_and_wrong_ones_0(fake_root, name):
    bench = get_benchmark(name)
    items = bench.items(fake_root)
    for right, expect in ((True, 100.0), (False, 0.0)):
        answers = {it.id: _answer(name, it, right) for it in items}
        for rule in bench.rules:
            metrics = bench.score(items, answers, rule)["metrics"]
            headline = [v for k, v in metrics.items() if v is not None and not k.endswith("/OA")
                        and k not in ("meanIoU", "cumIoU")]
            assert headline and all(v == pytest.approx(expect) for v in headline), (rule, metrics)


def test_vrsbench_vqa_official_counts_judge_needed(fake_root):
    bench = get_benchmark("vrsbench_vqa")
    items = bench.items(fake_root)
    res = bench.score(items, {it.id: {"id": it.id, "text": "a car park"} for it in items}, "official")
    assert res["metrics"]["judge_needed"] == 1  # "parking lot" vs "a car park": the judge decides
    assert res["metrics"]["accuracy"] is None and res["metrics"]["accuracy_rule_only"] == 0.0


def test_dota_val_oracle_and_test_export(fake_root, tmp_path):
    val = get_benchmark("dota_val")
    items = val.items(fake_root)
    text = "10,10,60,10,60,40,10,40 plane\n100,100,140,100,140,180,100,180 small vehicle\n"
    plan = {"original": [512, 512], "model": [504, 504]}
    scale = lambda t: ",".join(str(int(int(v) * 504 / 512)) for v in t.split(","))  # noqa: E731
    answer_text = "".join(f"{scale(line.split()[0])} {' '.join(line.split()[1:])}\n" for line in text.splitlines())
    res = val.score(items, {items[0].id: {"id": items[0].id, "text": answer_text, "resize": plan}},
                    data_root=fake_root)
    assert res["metrics"]["AP_nc50"] == pytest.approx(100.0) and res["metrics"]["mF1"] == pytest.approx(100.0)
    assert res["metrics"]["mAP50_ones"] == pytest.approx(100.0)
    empty = val.score(items, {items[0].id: {"id": items[0].id, "text": "There are none.", "resize": plan}},
                      data_root=fake_root)
    assert empty["metrics"]["AP_nc50"] == 0.0
    test = get_benchmark("dota_test")
    titems = test.items(fake_root)
    answers = {it.id: {"id": it.id, "text": "10,10,60,10,60,40,10,40 plane", "resize": {"original": [512, 512],
                                                                                          "model": [512, 512]}}
               for it in titems}
    out = test.score(titems, answers, out_dir=tmp_path)
    lines = (tmp_path / "Task1" / "Task1_plane.txt").read_text().split("\n")
    assert lines[0].split()[:2] == ["P0002", "1"] and len([x for x in lines if x]) == 2  # both windows, no overlap
    assert Path(out["details"]["zip"]).is_file()


def test_missing_answers_are_an_error_unless_partial(fake_root):
    bench = get_benchmark("rsvqa_hr")
    items = bench.items(fake_root)
    answers = {items[0].id: {"id": items[0].id, "text": items[0].target}}
    with pytest.raises(AnswersError, match="1 of 2 items have no answer"):
        bench.score(items, answers)
    res = bench.score(items, answers, partial=True)
    assert res["n"] == 1 and res["n_missing"] == 1 and res["metrics"]["overall"] == 100.0


def test_bad_data_names_file_line_and_field(tmp_path):
    (tmp_path / "metainfo").mkdir()
    (tmp_path / "metainfo" / "rsvg_test.jsonl").write_text('{"image_id": "a.jpg", "question": "x"}\n')
    with pytest.raises(BenchmarkDataError, match=r"rsvg_test.jsonl:1: bbox: required field is missing"):
        get_benchmark("geoground_rsvg_test").items(tmp_path)
    (tmp_path / "metainfo" / "rsvg_test.jsonl").write_text(
        '{"image_id": "a.jpg", "question": "x", "bbox": [1, 2, 3, 4]}\n')
    with pytest.raises(BenchmarkDataError, match=r"rsvg_test.jsonl:1: image .*a.jpg does not exist"):
        get_benchmark("geoground_rsvg_test").items(tmp_path)
    with pytest.raises(BenchmarkDataError, match="LRS_VQA_merged.jsonl"):
        get_benchmark("lrs_vqa").items(tmp_path)
    with pytest.raises(KeyError, match="unknown benchmark"):
        get_benchmark("no_such_bench")


# ---- run folders and the CLI -----------------------------------------------------------------------------------

def _run_folder(root: Path, data_root: Path, right: bool) -> Path:
    for name in ("lrs_vqa", "geoground_rsvg_val", "rsvqa_lr"):
        bench = get_benchmark(name)
        folder = root / name
        folder.mkdir(parents=True)
        _jsonl(folder / "answers.jsonl", [_answer(name, it, right) for it in bench.items(data_root)])
        _json(folder / "run.json", {"bench": name, "data_root": str(data_root), "prompt_set": "reference",
                                    "settings": {"model": "x"}})
    return root


def test_score_run_and_compare(fake_root, tmp_path, capsys):
    good = _run_folder(tmp_path / "good", fake_root, True)
    bad = _run_folder(tmp_path / "bad", fake_root, False)
    res = score_run(good)
    assert res["results"]["lrs_vqa"]["metrics"]["FAIR/AA"] == 100.0
    assert res["results"]["lrs_vqa"]["paper"]["FAIR/AA"]["table"] == "Table 1"
    assert main(["eval", "score", str(bad), "--json", str(tmp_path / "bad.json")]) == 0
    out = capsys.readouterr().out
    assert "| FAIR/AA | 0.00 | not typed (Table 1) |" in out and "| overall | 0.00 |" in out
    assert main(["eval", "compare", str(good), str(tmp_path / "bad.json")]) == 0
    out = capsys.readouterr().out
    assert "| lrs_vqa | FAIR/AA | 100.00 | 0.00 | -100.00 |" in out
    assert "geoground_rsvg_val | Acc@0.5 | 100.00 | 0.00 |" in out
    text = compare(res, res)
    assert "+0.00" in text


def test_answers_file_errors_name_the_line(tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n')
    with pytest.raises(AnswersError, match=r"answers.jsonl:2: a second answer"):
        read_answers(path)
    path.write_text('{"id": "a", "text": "x"}\n{"id": "b"}\n')
    with pytest.raises(AnswersError, match=r"answers.jsonl:2: .*string \"text\""):
        read_answers(path)


def test_cli_score_answers_lrs_vqa(tmp_path, capsys):
    path = tmp_path / "answers.jsonl"
    _jsonl(path, [
        {"question_id": "FAIR_1", "prompt": "q", "category": "count", "text": "two", "ground_truth": "2"},
        {"question_id": "FAIR_2", "prompt": "q", "category": "object color", "text": "White.", "ground_truth": "white"},
        {"question_id": "STAR_1", "prompt": "q", "category": "object shape", "text": "circular",
         "ground_truth": "round"}])
    assert main(["eval", "score-answers", "--bench", "lrs_vqa", "--answers", str(path), "--json",
                 str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "== FAIR ==" in out and "count" in out and "1/1" in out and "object color" in out and "0/1" in out
    assert "OA: 50.00%" in out and "AA: 50.00%" in out  # "White." fails the official rule (no strip)
    res = json.loads((tmp_path / "r.json").read_text())["results"]["lrs_vqa"]
    assert res["metrics"]["STAR/AA"] == 100.0 and res["details"]["synonym_matches"] == 2
    assert main(["eval", "score-answers", "--bench", "lrs_vqa", "--answers", str(path), "--rule", "reference"]) == 0
    assert "OA: 100.00%" in capsys.readouterr().out


def test_cli_score_answers_vrsbench(tmp_path, capsys):
    path = tmp_path / "rsbench_referring.jsonl"
    _jsonl(path, [{"image_id": "a.png", "ground_truth": "{<10><10><50><50>}", "answer": "{<10><10><50><50>}",
                   "is_unique": 1},
                  {"image_id": "b.png", "ground_truth": "{<10><10><50><50>}", "answer": "{<-10.5><10><50><50>}",
                   "is_unique": 0}])
    assert main(["eval", "score-answers", "--bench", "vrsbench_vg", "--answers", str(path)]) == 0
    out = capsys.readouterr().out
    assert "number of total/valid samples: 2 2" in out and "Acc@0.5: 50.00" in out
    assert main(["eval", "score-answers", "--bench", "vrsbench_vg", "--answers", str(path), "--rule", "strict"]) == 0
    assert "Acc@0.5: 100.00" in capsys.readouterr().out
    assert main(["eval", "score-answers", "--bench", "geoground_rsvg_val", "--answers", str(path)]) == 2
    assert "no released answer-file format" in capsys.readouterr().err


def test_cli_list_and_show_prompt(fake_root, capsys):
    assert main(["eval", "list"]) == 0
    out = capsys.readouterr().out
    assert "lrs_vqa: LRS-VQA, one pass" in out and "<root>/metainfo/avvg_test.jsonl" in out
    assert 'user:   "find the {object}"' in out and 'user:   "{question} Answer the question using a single' in out
    assert main(["eval", "show-prompt", "--bench", "geoground_avvg_test", "--data-root", str(fake_root),
                 "--item", "2"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["item"] == "2" and shown["messages"][1]["content"][1]["text"] == "find the the bridge"
    assert main(["eval", "show-prompt", "--bench", "lrs_vqa", "--data-root", str(fake_root / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_synthetic_benchmark_runs_without_data(tmp_path):
    bench = get_benchmark("synthetic").with_options(scenes=5, holdout=0, size=224)
    items = bench.items(tmp_path)
    assert len(items) == 20 and (tmp_path / "synthetic" / "scene_000.png").is_file()
    msgs = bench.messages(items[2])  # grounding of scene 0
    assert msgs[0]["content"][0]["text"] == HBB_SYSTEM
    answers = {it.id: {"id": it.id, "text": it.target["answer"]} for it in items}
    res = bench.score(items, answers)
    assert res["metrics"]["train/classification"] == 100.0 and res["metrics"]["train/Acc@0.5"] == 100.0
    assert res["metrics"]["train/AP_nc50"] > 99.0
