"""``rscovlm demo`` end to end on a reduced setting: every stage runs and the trained scenes score 100 %."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_demo_trains_answers_scores_and_draws(tmp_path, capsys):
    from rscovlm.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--scenes", "5", "--holdout", "1", "--steps", "400", "--size", "224",
                 "--batch", "4", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "train scenes" in printed and "AP_nc50" in printed and "mF1" in printed
    report = json.loads((out / "report.json").read_text())
    train = report["train"]
    # memorised: every stage (builder prompts, collator frames, decoding, parsers, frame mapping, metrics) agrees
    assert train["classification"]["accuracy"] == 1.0 and train["vqa"]["accuracy"] == 1.0
    assert train["grounding"]["acc@0.5"] == 1.0
    assert train["detection"]["AP_nc50"] == pytest.approx(1.0) and train["detection"]["mF1"] == 1.0
    assert train["detection"]["unparsed_fraction"] == 0.0
    assert set(report["holdout"]) == {"classification", "vqa", "grounding", "detection"}
    losses = report["run"]["losses"]
    assert losses[-1] < 0.1 * losses[0]
    lines = [json.loads(line) for line in (out / "responses.jsonl").read_text().splitlines()]
    assert len(lines) == 4 * 6 and {x["split"] for x in lines} == {"train", "holdout"}
    assert all(x["resize"]["model"] == [224, 224] for x in lines)
    overlays = sorted(p.name for p in (out / "overlays").glob("*.png"))
    assert len(overlays) == 2 * 6 and "scene_000_detection.png" in overlays
    assert (out / "tiny_model" / "model.safetensors").is_file()
    assert len((out / "data" / "train.jsonl").read_text().splitlines()) == 20
