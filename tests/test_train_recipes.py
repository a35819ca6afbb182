"""The paper's recipes as configs: each loads, `rscovlm data mix-stats` prints its shares and expected tokens,
`rscovlm train --dry-run` sets it up (model config and processor, mixture, samples, packing, DeepSpeed config)
without weights, on fake data laid out like the real datasets (tests/_fake_layout.py); a missing dataset is an
error naming the unit and the path expected."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from _fake_layout import write_fake_layout
from rscovlm.cli import main
from rscovlm.data.mixture import Mixture, training_mixture_config
from rscovlm.train.config import load_config

REPO = Path(__file__).resolve().parent.parent
RECIPES = {"full": "rscovlm_qwen2_5_vl_7b.yaml", "det": "rscovlm_det_qwen2_5_vl_7b.yaml",
           "lora": "lora_qwen2_5_vl_7b.yaml"}
PAPER_UNITS = {"vhm", "geochat", "refgeo_hbb", "refgeo_quad", "refgeo_obb", "teochatlas", "llava_onevision_vl",
               "llava_onevision_text", "dota_trainval512", "lrs_vqa_zoom"}


def _config(name):
    return REPO / "configs" / RECIPES[name]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """One fake data root for the three recipes (the det and LoRA recipes read a subset / the same units)."""
    root = tmp_path_factory.mktemp("rscovlm_data")
    cfg = load_config(_config("full"))
    cfg.data.data_root = str(root)
    write_fake_layout(training_mixture_config(cfg.data), n=20)
    return root


def test_recipes_name_every_dataset_of_the_paper_under_one_data_root():
    cfg = load_config(_config("full"))
    assert cfg.data.source == "mixture" and cfg.train.packing
    mix = training_mixture_config(cfg.data)
    assert {u.name for u in mix.units} == PAPER_UNITS
    assert mix.mode == "rate" and mix.data_root == str(REPO / "playground" / "data")
    for unit in mix.units:
        assert unit.converter, unit.name
        assert all(p.startswith(mix.data_root + os.sep) for p in unit.paths), unit.name
    rates = {u.name: u.rate for u in mix.units}
    assert rates["vhm"] == "%50" and rates["refgeo_obb"] == "*0" and rates["llava_onevision_vl"] == "%10"
    det = training_mixture_config(load_config(_config("det")).data)
    assert [(u.name, u.target_box_kinds) for u in det.units] == [("dota_trainval512", ["hbb", "obb", "quad"])]
    assert "split_ss_dota_512" in det.units[0].images
    lora = load_config(_config("lora"))
    assert lora.model.use_lora and lora.model.freeze_vision_tower and lora.data.paths == cfg.data.paths


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_mix_stats_prints_shares_and_tokens_of_each_recipe(recipe, data_root, tiny_model_dir, capsys):
    assert main(["data", "mix-stats", str(_config(recipe)), "--data-root", str(data_root),
                 "--model", str(tiny_model_dir), "--samples-per-unit", "8"]) == 0
    out = capsys.readouterr().out
    units = PAPER_UNITS if recipe != "det" else {"dota_trainval512"}
    rows, tokens = {}, {}
    for line in out.splitlines():  # a unit's row in the shares table, then in the tokens table
        if line.split() and line.split()[0] in units:
            (tokens if line.split()[0] in rows else rows)[line.split()[0]] = line.split()
    assert set(rows) == units and set(tokens) == units - {"refgeo_obb"}
    assert f"data root {data_root}" in out and "rates (the reference's" in out
    assert "tokens per epoch (exact counts" in out and f"tokenizer of {tiny_model_dir}" in out
    total = int(re.search(r"total: ([\d,]+) tokens per epoch", out).group(1).replace(",", ""))
    assert total > 0 and "optimizer steps per epoch with packing at a global batch of 32 rows" in out
    if recipe != "det":
        # %50 of 20 VHM records = 10 per epoch; %10 of 20 = 2; *0 = off
        assert rows["vhm"][4:8] == ["~2.54", "%50", "2.54%", "10"]
        assert rows["llava_onevision_text"][5] == "%10" and rows["llava_onevision_text"][7] == "2"
        assert rows["refgeo_obb"][5] == "*0" and rows["refgeo_obb"][7] == "0"
    else:
        assert rows["dota_trainval512"][2:4] == ["20", "60"]  # 20 patches x 3 box kinds


def test_mix_stats_without_a_tokenizer_uses_the_documented_rule(data_root, capsys):
    assert main(["data", "mix-stats", str(_config("det")), "--data-root", str(data_root),
                 "--samples-per-unit", "4"]) == 0
    out = capsys.readouterr().out
    assert "approximate counts (rule: rscovlm.data.tokens)" in out
    assert "model Qwen/Qwen2.5-VL-7B-Instruct not available offline" in out


def test_a_missing_dataset_is_named_with_its_unit_and_path(data_root, tmp_path, capsys):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(data_root, root)
    (root / "unified" / "refgeo" / "rsvg_train.jsonl").unlink()
    shutil.rmtree(root / "detection")
    assert main(["data", "mix-stats", str(_config("full")), "--data-root", str(root)]) == 2
    err = capsys.readouterr().err
    assert f"unit refgeo_hbb: unit file not found: {root / 'unified' / 'refgeo' / 'rsvg_train.jsonl'}" in err
    assert "rscovlm data convert --source refgeo" in err
    assert f"unit dota_trainval512: image folder not found: {root}/detection/split_ss_dota_512/trainval/images" in err
    assert "2 missing file(s)" in err
    # the same before any model is touched in a dry run
    assert main(["train", "--config", str(_config("det")), "--dry-run", f"data.data_root={root}"]) == 2
    assert "unit dota_trainval512: image folder not found" in capsys.readouterr().err


@pytest.mark.parametrize("recipe, world, accumulation", [("full", 8, 4), ("det", 8, 4), ("lora", 8, 2)])
def test_each_recipe_dry_runs_without_weights(recipe, world, accumulation, data_root, tiny_model_dir, capsys,
                                             monkeypatch):
    import transformers

    def no_weights(*args, **kwargs):
        raise AssertionError("a dry run loaded weights")

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", no_weights)
    assert main(["train", "--config", str(_config(recipe)), "--dry-run", "--world-size", str(world),
                 "--samples", "3", f"model.model_name_or_path={tiny_model_dir}", f"data.data_root={data_root}"]) == 0
    out = capsys.readouterr().out
    assert "dry run: no weights loaded, nothing trained" in out
    assert "family qwen2_5_vl" in out and "# data: source mixture" in out
    assert len(re.findall(r"^  \[0, \d+\] ", out, re.M)) == 3  # three samples built and encoded
    assert re.search(r"# packing: the first \d+ samples make \d+ rows", out)
    assert f"world size {world} x" in out and f"x {accumulation} accumulation = 32 rows per optimizer step" in out
    ds = json.loads(out[out.index("# deepspeed: \n") + len("# deepspeed: \n"):out.index("\n\n# the run needs")])
    assert (ds["train_batch_size"], ds["gradient_accumulation_steps"]) == (32, accumulation)
    assert ds["zero_optimization"]["stage"] == (2 if recipe == "lora" else 1)
    assert ds["bf16"]["enabled"] is True and ds["zero_optimization"]["reduce_bucket_size"] == 64 * 64


def test_the_det_recipe_trains_packed_rows_on_the_fake_layout(data_root, tiny_model_dir, tmp_path):
    """The RSCoVLM-det recipe, CPU settings: two optimizer steps on packed rows of DOTA patches in three box
    kinds."""
    from rscovlm.train.trainer import train

    cfg = load_config(_config("det"), [
        f"model.model_name_or_path={tiny_model_dir}", f"data.data_root={data_root}", f"output_dir={tmp_path}",
        "precision=fp32", "deepspeed=none", "use_liger_kernel=false", "gradient_checkpointing=false",
        "global_batch_size=2", "max_steps=2", "dataloader_num_workers=0", "data.max_length=2048",
        "data.max_pixels=200704", "record_samples=true", "save_steps=1000", "logging_steps=1"])
    result = train(cfg)
    assert result.global_step == 2 and len(result.losses) == 2
    lines = [json.loads(line) for line in (tmp_path / "rscovlm_samples.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and all(len(line["rows"]) == 1 for line in lines)
    assert max(len(line["rows"][0]) for line in lines) > 1  # several patches per row
    assert Mixture(training_mixture_config(cfg.data)).epoch_size == 60
