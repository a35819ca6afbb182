"""The benchmark harness end to end with the offline tiny model: ``rscovlm eval run`` over fake data of every
benchmark, a run killed with SIGKILL and resumed, two shards as two processes merged, settings checked on resume,
torn and broken answer files, merging errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rscovlm.cli import main
from rscovlm.eval.benchmarks import AnswersError, get_benchmark, list_benchmarks
from rscovlm.eval.benchmarks.runner import merge_shards, read_answer_lines

from _fake_bench import _json, _jsonl, make_fake_root

ROOT = Path(__file__).resolve().parents[1]
RSCOVLM = [sys.executable, "-m", "rscovlm"]
# 8 synthetic scenes (6 + 2 unseen) of 280 px: 32 items, answered two per batch
SYNTH = ["--bench", "synthetic", "--option", "scenes=6", "--option", "holdout=2", "--option", "size=280",
         "--batch-size", "2", "--max-new-tokens", "40", "--no-progress"]
N_SYNTH = 32


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _scores(out: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["eval", "score", str(out), "--json", str(out / "scores.json")]) == 0
    return {b: r["metrics"] for b, r in json.loads((out / "scores.json").read_text())["results"].items()}


@pytest.fixture(scope="module")
def synth_reference(tiny_model_dir, tmp_path_factory):
    """An uninterrupted, unsharded synthetic run (data root, run folder)."""
    base = tmp_path_factory.mktemp("harness")
    data, out = base / "data", base / "reference"
    assert main(["eval", "run", *SYNTH, "--model", str(tiny_model_dir), "--data-root", str(data),
                 "--out", str(out)]) == 0
    return data, out


def test_every_benchmark_runs_and_scores_on_fake_data(tiny_model_dir, tmp_path, capsys):
    data = make_fake_root(tmp_path / "data")
    out = tmp_path / "run"
    assert main(["eval", "run", "--bench", "all", "--model", str(tiny_model_dir), "--data-root", str(data),
                 "--out", str(out), "--limit", "2", "--max-new-tokens", "8", "--batch-size", "3"]) == 0
    assert main(["eval", "run", "--bench", "geoground_rsvg_test_336", "--model", str(tiny_model_dir),
                 "--data-root", str(data), "--out", str(out), "--limit", "2", "--max-new-tokens", "8"]) == 0
    err = capsys.readouterr().err
    assert "rsvqa_lr: 2 answered, 0 already there, of 2 items" in err
    assert "rsvqa_lr: 100%|" in err  # the progress bar goes to stderr
    names = [*list_benchmarks(), "geoground_rsvg_test_336"]
    for name in names:
        bench = get_benchmark(name)
        lines = _lines(out / name / "answers.jsonl")
        expected = [it.id for it in bench.items(data, 2)]
        assert [x["id"] for x in lines] == expected, name
        assert all(isinstance(x["text"], str) and x["finish_reason"] in ("stop", "length") for x in lines)
        assert all(len(x["resize"]["original"]) == 2 and len(x["resize"]["model"]) == 2 for x in lines), name
        run = json.loads((out / name / "run.json").read_text())
        s = run["settings"]
        assert s["model"] == str(Path(tiny_model_dir).resolve()) and s["backend"] == "transformers"
        assert s["family"] == "qwen2_5_vl" and s["max_new_tokens"] == 8 and s["decoding"]["do_sample"] is False
        assert s["code"]["rscovlm"] and run["limit"] == 2 and run["prompt_set"] == "reference"
    # the fixed pixel count of the _336 subset reached the backend (64 x 48 images: smart_resize with min = max =
    # 336^2); the plain subset used the processor's range
    from rscovlm.resolution import smart_resize

    h, w = smart_resize(48, 64, 28, 336 * 336, 336 * 336)
    assert all(x["resize"]["model"] == [w, h] for x in _lines(out / "geoground_rsvg_test_336/answers.jsonl"))
    assert all(x["resize"]["model"] != [w, h] for x in _lines(out / "geoground_rsvg_test/answers.jsonl"))
    assert json.loads((out / "geoground_rsvg_test_336/run.json").read_text())["settings"]["pixels"] == {
        "min_pixels": 336 * 336, "max_pixels": 336 * 336}
    # DOTA windows: 512 x 512 patches (padded past the 700 px edge) at the Detector's 504 x 504, with confidences
    for x in _lines(out / "dota_test/answers.jsonl"):
        assert x["resize"] == {"original": [512, 512], "model": [504, 504]} and isinstance(x["scores"], list)
    assert json.loads((out / "dota_test/run.json").read_text())["settings"]["detect"]["patch_size"] == 512
    # the Zoom-in Chain: a count question is answered in one pass (as the reference), the other went through pass 1
    zoom = {x["id"]: x for x in _lines(out / "lrs_vqa_zoom/answers.jsonl")}
    assert zoom["FAIR_1"]["zoom"]["status"] == "skipped"
    assert zoom["FAIR_2"]["zoom"]["status"] in ("direct", "zoomed", "invalid_call")
    # scoring: one result per benchmark, the DOTA test export written
    scores = _scores(out, capsys)
    assert set(scores) == set(names)
    assert "FAIR/AA" in scores["lrs_vqa"] and "Acc@0.5" in scores["geoground_rsvg_test_336"]
    assert "AP_nc50" in scores["dota_val"] and (out / "dota_test" / "Task1.zip").is_file()
    # every answer is already there: a second run answers nothing
    assert main(["eval", "run", "--bench", "rsvqa_hr,dota_val", "--model", str(tiny_model_dir), "--data-root",
                 str(data), "--out", str(out), "--limit", "2", "--max-new-tokens", "8"]) == 0
    err = capsys.readouterr().err
    assert "rsvqa_hr: 0 answered, 2 already there" in err and "dota_val: 0 answered, 1 already there" in err


def test_killed_run_resumes_without_lost_or_repeated_answers(tiny_model_dir, synth_reference, tmp_path, capsys):
    data, reference = synth_reference
    out = tmp_path / "killed"
    answers = out / "synthetic" / "answers.jsonl"
    proc = subprocess.Popen([*RSCOVLM, "eval", "run", *SYNTH, "--model", str(tiny_model_dir), "--data-root",
                             str(data), "--out", str(out)], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if answers.is_file() and answers.read_bytes().count(b"\n") >= 4:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    before = _lines(answers)
    assert 4 <= len(before) < N_SYNTH, "the run finished before the kill: make it longer"
    # a kill inside a write leaves a torn last line; it is dropped (and said so), never read as an answer
    with open(answers, "ab") as fh:
        fh.write(b'{"id": "detection/7", "text": "12,3')
    capsys.readouterr()
    assert main(["eval", "run", *SYNTH, "--model", str(tiny_model_dir), "--data-root", str(data),
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "dropped a torn last line" in err and f"{N_SYNTH - len(before)} answered, {len(before)} already there" in err
    after = _lines(answers)
    ids = [x["id"] for x in after]
    assert len(ids) == len(set(ids)) == N_SYNTH  # nothing lost, nothing twice
    assert after[:len(before)] == before  # answers written before the kill were kept as they were
    ref = {x["id"]: x for x in _lines(reference / "synthetic" / "answers.jsonl")}
    assert {x["id"]: x for x in after} == ref  # the same answers as an uninterrupted run
    assert _scores(out, capsys) == _scores(reference, capsys)


def test_two_shards_as_two_processes_merge_to_the_unsharded_run(tiny_model_dir, synth_reference, tmp_path, capsys):
    data, reference = synth_reference
    out = tmp_path / "sharded"
    base = [*RSCOVLM, "eval", "run", *SYNTH, "--model", str(tiny_model_dir), "--data-root", str(data),
            "--out", str(out)]
    # two processes at once: shard 1 started as torchrun starts it (RANK / WORLD_SIZE), shard 0 by --shard in this
    # one (both render the scenes and write into the same folder)
    proc = subprocess.Popen(base, env={**_env(), "RANK": "1", "WORLD_SIZE": "2"}, stderr=subprocess.PIPE)
    assert main(base[3:] + ["--shard", "0/2"]) == 0
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]
    folder = out / "synthetic"
    shard0, shard1 = _lines(folder / "answers.rank0.jsonl"), _lines(folder / "answers.rank1.jsonl")
    items = get_benchmark("synthetic").with_options(scenes=6, holdout=2, size=280).items(data)
    assert [x["id"] for x in shard0] == [it.id for it in items[0::2]]
    assert [x["id"] for x in shard1] == [it.id for it in items[1::2]]
    assert not (folder / "answers.jsonl").exists()
    capsys.readouterr()
    assert main(["eval", "merge", str(out)]) == 0
    assert "synthetic: 32 answers from answers.rank0.jsonl, answers.rank1.jsonl" in capsys.readouterr().out
    assert not list(folder.glob("answers.rank*"))
    assert (folder / "answers.jsonl").read_bytes() == (reference / "synthetic" / "answers.jsonl").read_bytes()
    assert _scores(out, capsys) == _scores(reference, capsys)


def test_resume_with_other_settings_is_refused_unless_forced(tiny_model_dir, synth_reference, tmp_path, capsys):
    data, reference = synth_reference
    out = tmp_path / "changed"
    shutil.copytree(reference, out)
    lines = (out / "synthetic" / "answers.jsonl").read_text().splitlines(keepends=True)
    (out / "synthetic" / "answers.jsonl").write_text("".join(lines[:10]))
    argv = ["eval", "run", *SYNTH, "--model", str(tiny_model_dir), "--data-root", str(data), "--out", str(out),
            "--max-new-tokens", "12"]  # the last --max-new-tokens wins
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "settings differ" in err and "settings.max_new_tokens: saved 40, now 12" in err
    assert len(_lines(out / "synthetic" / "answers.jsonl")) == 10  # nothing was written
    assert main([*argv, "--force"]) == 0
    run = json.loads((out / "synthetic" / "run.json").read_text())
    assert run["settings"]["max_new_tokens"] == 12 and run["superseded"][0]["max_new_tokens"] == 40
    assert len(_lines(out / "synthetic" / "answers.jsonl")) == N_SYNTH


def test_torn_and_broken_answer_files(tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_bytes(b'{"id": "a", "text": "x"}\n{"id": "b", "text": "y"}\n{"id": "c", "te')
    notes = []
    lines = read_answer_lines(path, repair=True, note=notes.append)
    assert [x["id"] for x in lines] == ["a", "b"] and "torn last line (15 bytes" in notes[0]
    assert path.read_bytes() == b'{"id": "a", "text": "x"}\n{"id": "b", "text": "y"}\n'  # cut back
    path.write_bytes(b'{"id": "a", "text": "x"}\n{"id": "b", "te\n{"id": "c", "text": "z"}\n')
    with pytest.raises(AnswersError, match=r"answers.jsonl:2: not a JSON line"):
        read_answer_lines(path)
    path.write_bytes(b'{"id": "a", "text": "x"}\n{"id": 3, "text": "z"}\n')
    with pytest.raises(AnswersError, match=r"answers.jsonl:2: an answer line needs a string \"id\""):
        read_answer_lines(path)


def test_merge_checks_duplicates_and_missing_answers(tmp_path, capsys):
    data = make_fake_root(tmp_path / "data")
    folder = tmp_path / "run" / "rsvqa_hr"
    items = get_benchmark("rsvqa_hr").items(data)
    assert len(items) == 2
    _json(folder / "run.json", {"bench": "rsvqa_hr", "data_root": str(data), "limit": None,
                                "prompt_set": "reference", "settings": {}})
    a, b = ({"id": it.id, "text": it.target} for it in items)
    _jsonl(folder / "answers.rank0.jsonl", [a])
    _jsonl(folder / "answers.rank1.jsonl", [a])
    with pytest.raises(AnswersError, match=r"answers.rank1.jsonl:1: a second answer .*answers.rank0.jsonl:1"):
        merge_shards(folder, items)
    _jsonl(folder / "answers.rank1.jsonl", [])
    assert main(["eval", "merge", str(tmp_path / "run")]) == 2
    assert "1 of 2 items have no answer" in capsys.readouterr().err
    assert main(["eval", "score", str(tmp_path / "run"), "--partial"]) == 0  # merges what is there
    assert "| overall | 100.00 |" in capsys.readouterr().out
    _jsonl(folder / "answers.rank1.jsonl", [b])
    assert main(["eval", "score", str(tmp_path / "run")]) == 0  # the late shard merged into answers.jsonl
    assert [x["id"] for x in _lines(folder / "answers.jsonl")] == [a["id"], b["id"]]
    _jsonl(folder / "answers.rank0.jsonl", [{"id": "nope", "text": "x"}])
    with pytest.raises(AnswersError, match=r"answers for ids that are not items .*rank0.jsonl:1, id 'nope'"):
        merge_shards(folder, items)


def test_dota_val_map_ranked_by_the_answer_lines_confidence(tmp_path):
    data = make_fake_root(tmp_path / "data")
    val = get_benchmark("dota_val")
    items = val.items(data)
    plan = {"original": [512, 512], "model": [512, 512]}
    # a right plane, a wrong plane (no ground truth there) and the right vehicle
    text = ("10,10,60,10,60,40,10,40 plane\n300,300,340,300,340,340,300,340 plane\n"
            "100,100,140,100,140,180,100,180 small vehicle\n")

    def score(scores):
        line = {"id": items[0].id, "text": text, "resize": plan}
        if scores is not None:
            line["scores"] = scores
        return val.score(items, {items[0].id: line}, data_root=data)

    confident = score([0.9, 0.2, 0.8])  # the false plane ranked last: plane AP 100
    assert confident["metrics"]["mAP50"] == pytest.approx(100.0) and confident["details"]["parsing"]["unscored"] == 0
    misled = score([0.2, 0.9, 0.8])  # the false plane ranked first: plane AP drops, the vehicle's stays 100
    assert misled["metrics"]["mAP50"] < 100.0
    assert misled["metrics"]["AP_nc50"] == confident["metrics"]["AP_nc50"]  # AP_nc ignores confidence
    for scores in (None, [0.9, None, 0.8], [0.9]):  # no confidence, one missing, not one per object: n/a
        res = score(scores)
        assert res["metrics"]["mAP50"] is None and res["details"]["parsing"]["unscored"] >= 1
