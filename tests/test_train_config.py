"""Training configuration: paper defaults, YAML + overrides, argument mapping, data sources, optimizer groups."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rscovlm.train.config import (
    Config, ConfigError, build_config, gradient_accumulation_steps, load_config,
)

REPO = Path(__file__).resolve().parent.parent


def test_defaults_are_the_paper_recipe():
    cfg = Config()
    t, d = cfg.train, cfg.data
    assert (t.learning_rate, t.weight_decay, t.lr_scheduler_type, t.warmup_ratio) == (2e-6, 0.1, "cosine", 0.05)
    assert t.global_batch_size == 32 and d.max_length == 6144
    assert (d.min_pixels, d.max_pixels) == (224 * 224, 1008 * 1008)
    assert t.deepspeed == "auto" and t.precision == "auto" and t.gradient_checkpointing == "auto"
    assert cfg.model.model_name_or_path == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert not (cfg.model.freeze_vision_tower or cfg.model.freeze_merger or cfg.model.freeze_language_model)


def test_overrides_are_typed_and_unknown_keys_name_themselves(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  learning_rate: 2e-6\n  max_steps: 10\nmodel:\n  use_lora: false\n")
    cfg = load_config(path, ["train.max_steps=20", "use_lora=true", "data.paths=[a.jsonl, b.jsonl]",
                             "vision_lr=1e-5", "gradient_checkpointing=true", "resume_from_checkpoint=latest"])
    assert cfg.train.max_steps == 20 and cfg.model.use_lora is True
    assert cfg.train.learning_rate == 2e-6 and isinstance(cfg.train.learning_rate, float)
    assert cfg.data.paths == ["a.jsonl", "b.jsonl"] and cfg.train.vision_lr == 1e-5
    assert cfg.train.gradient_checkpointing == "true" and cfg.train.resume_from_checkpoint == "latest"
    with pytest.raises(ConfigError, match="'train.learnig_rate'.*train.learning_rate"):
        load_config(None, ["train.learnig_rate=1"])
    with pytest.raises(ConfigError, match="'batch'"):
        load_config(None, ["batch=4"])
    with pytest.raises(ConfigError, match="train.max_steps: expected an integer"):
        load_config(None, ["max_steps=many"])
    with pytest.raises(ConfigError, match="model.use_lora: expected true or false"):
        load_config(None, ["use_lora=3"])
    with pytest.raises(ConfigError, match="train.precision: 'bf32' is not one of"):
        load_config(None, ["precision=bf32"])
    with pytest.raises(ConfigError, match="must look like key=value"):
        load_config(None, ["max_steps"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: 1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key 'train.lr'"):
        load_config(bad)
    bad.write_text("optim:\n  lr: 1\n")
    with pytest.raises(ConfigError, match="unknown config key 'optim'"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_shipped_example_configs_load():
    files = sorted((REPO / "configs").glob("*.yaml"))
    assert files
    for path in files:
        cfg = load_config(path)
        assert cfg.data.paths, path
    paper = load_config(REPO / "configs" / "rscovlm_qwen2_5_vl_7b.yaml")
    assert paper.train.deepspeed == "zero1" and paper.train.precision == "bf16"
    assert paper.train.gradient_checkpointing == "true" and paper.train.use_liger_kernel
    t, d = paper.train, paper.data
    assert (t.learning_rate, t.weight_decay, t.lr_scheduler_type, t.warmup_ratio) == (2e-6, 0.1, "cosine", 0.05)
    assert (t.adam_beta1, t.adam_beta2, t.global_batch_size) == (0.9, 0.999, 32)
    assert (d.max_length, d.min_pixels, d.max_pixels) == (6144, 224 * 224, 1008 * 1008)
    assert paper.model.model_name_or_path == "Qwen/Qwen2.5-VL-7B-Instruct" and not paper.model.use_lora


@pytest.mark.parametrize("global_batch, world, per_device, expected", [
    (32, 1, 1, 32), (32, 8, 1, 4), (32, 8, 4, 1), (32, 2, 2, 8),
])
def test_accumulation_from_world_size(global_batch, world, per_device, expected):
    assert gradient_accumulation_steps(global_batch, world, per_device) == expected


def test_accumulation_must_divide():
    with pytest.raises(ConfigError, match="not a multiple"):
        gradient_accumulation_steps(32, 3, 1)
    with pytest.raises(ConfigError, match="not a multiple"):
        gradient_accumulation_steps(4, 8, 1)


def test_training_arguments_on_cpu(tmp_path, monkeypatch):
    import torch

    from rscovlm.train.deepspeed import config_path
    from rscovlm.train.trainer import build_training_arguments, resolve_deepspeed

    if torch.cuda.is_available():
        pytest.skip("checks the CPU resolution of the 'auto' settings")
    cfg = build_config({}, [f"output_dir={tmp_path}", "per_device_batch_size=2"])
    args = build_training_arguments(cfg, n_processes=4)
    assert args.gradient_accumulation_steps == 4
    assert args.learning_rate == 2e-6 and args.weight_decay == 0.1
    assert getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type) == "cosine" and args.warmup_steps == 0.05
    assert not args.bf16 and not args.gradient_checkpointing and args.deepspeed is None
    assert getattr(args.optim, "value", args.optim) == "adamw_torch"
    with pytest.raises(ConfigError, match="CUDA"):
        build_training_arguments(build_config({}, [f"output_dir={tmp_path}", "precision=bf16"]))
    with pytest.raises(ConfigError, match="liger"):
        build_training_arguments(build_config({}, [f"output_dir={tmp_path}", "use_liger_kernel=true"]))
    for stage in (1, 2, 3):
        ds = json.loads(config_path(f"zero{stage}").read_text())
        assert ds["zero_optimization"]["stage"] == stage
        assert ds["train_micro_batch_size_per_gpu"] == "auto" and ds["gradient_accumulation_steps"] == "auto"
    assert resolve_deepspeed("zero2") == str(config_path("zero2"))
    assert resolve_deepspeed("auto") is None and resolve_deepspeed("none") is None
    with pytest.raises(ConfigError, match="zero4"):
        resolve_deepspeed("zero4")


def _png(path, w=64, h=48):
    from PIL import Image

    Image.new("RGB", (w, h), (30, 60, 90)).save(path)
    return path


def test_jsonl_source_resolves_images_and_names_bad_lines(tmp_path):
    from rscovlm.train.config import DataConfig
    from rscovlm.train.sources import build_source, register_source, sources

    (tmp_path / "img").mkdir()
    _png(tmp_path / "img" / "a.png")
    good = {"messages": [{"role": "user", "content": [{"type": "image", "image": "img/a.png"},
                                                       {"type": "text", "text": "What?"}]},
                         {"role": "assistant", "content": "harbor"}]}
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(good) + "\n")
    data = build_source(DataConfig(paths=[str(path)]))
    assert len(data) == 2
    assert data[0]["messages"][0]["content"][0]["image"] == str(tmp_path / "img" / "a.png")
    other_root = build_source(DataConfig(paths=[str(path)], image_root="/data/root"))
    assert other_root[1]["messages"][0]["content"][0]["image"] == "/data/root/img/a.png"

    path.write_text(json.dumps(good) + "\n" + '{"messages": [{"role": "user", "content": "q"}]}\n')
    with pytest.raises(ValueError, match=r"train.jsonl:2: .*assistant"):
        build_source(DataConfig(paths=[str(path)]))
    path.write_text("{not json\n")
    with pytest.raises(ValueError, match=r"train.jsonl:1"):
        build_source(DataConfig(paths=[str(path)]))
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        build_source(DataConfig(paths=[str(tmp_path / "missing.jsonl")]))
    with pytest.raises(ValueError, match="not registered.*jsonl"):
        build_source(DataConfig(source="nope"))

    @register_source("test_constant")
    def _constant(cfg, seed):
        return [good] * cfg.options["n"]

    assert "test_constant" in sources()
    assert len(build_source(DataConfig(source="test_constant", options={"n": 3}))) == 3
    with pytest.raises(ValueError, match="already registered"):
        register_source("jsonl")(lambda cfg, seed: [])


def test_optimizer_groups_give_vision_and_merger_their_learning_rates(tiny_model_dir, tmp_path):
    from rscovlm.model.loading import module_groups
    from rscovlm.train.trainer import build_trainer

    convs = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"}]}]
    cfg = build_config({}, [f"model.model_name_or_path={tiny_model_dir}", f"output_dir={tmp_path}",
                            "global_batch_size=1", "vision_lr=1e-5", "merger_lr=3e-5", "learning_rate=2e-6",
                            "dataloader_num_workers=0"])
    trainer = build_trainer(cfg, dataset=convs)
    optimizer = trainer.create_optimizer()
    by_name = {g["name"]: g for g in optimizer.param_groups}
    assert by_name["vision_tower/decay"]["lr"] == 1e-5
    assert by_name["merger/decay"]["lr"] == 3e-5
    assert by_name["language_model/decay"]["lr"] == 2e-6
    assert by_name["language_model/no_decay"]["weight_decay"] == 0.0
    assert by_name["language_model/decay"]["weight_decay"] == 0.1
    groups = module_groups(trainer.model, trainer.family)
    params = dict(trainer.model.named_parameters())
    ids = {id(params[n]) for n in groups["merger"]}
    assert ids == {id(p) for g in ("merger/decay", "merger/no_decay") for p in by_name[g]["params"]}
    no_decay_names = {n for n in groups["language_model"]
                      if any(params[n] is p for p in by_name["language_model/no_decay"]["params"])}
    assert no_decay_names and all(n.endswith("bias") or "norm" in n for n in no_decay_names)
    total = sum(len(g["params"]) for g in optimizer.param_groups)
    assert total == sum(1 for p in trainer.model.parameters() if p.requires_grad)


def test_cli_train_rejects_unknown_keys_and_prints_config(capsys, tmp_path):
    from rscovlm.cli import main

    assert main(["train", "train.nope=1"]) == 2
    assert "unknown config key 'train.nope'" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "q"}]}\n')
    assert main(["train", f"data.paths=[{bad}]", f"output_dir={tmp_path / 'out'}", "model.model_name_or_path=none"]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err  # the data error comes first, before any model loading
    assert main(["train", "--print-config", "max_steps=7"]) == 0
    assert "max_steps: 7" in capsys.readouterr().out


def test_mixture_source_feeds_the_collator_at_the_builders_model_size(tiny_model_dir, tmp_path):
    """The curation mixture plugs in through the registry; the collator keeps the builder's random resize, so
    the target's model-frame coordinates refer to exactly the pixels the vision tower sees."""
    from PIL import Image

    from rscovlm.model.collator import ConversationEncoder
    from rscovlm.model.loading import load_processor
    from rscovlm.protocol.detection import parse_detections
    from rscovlm.train.config import DataConfig
    from rscovlm.train.sources import build_source

    (tmp_path / "images").mkdir()
    Image.new("RGB", (640, 480), (80, 90, 100)).save(tmp_path / "images" / "a.png")
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 640, "height": 480}],
            "categories": [{"id": 1, "name": "plane"}, {"id": 2, "name": "ship"}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[100, 100, 200, 100, 200, 180, 100, 180]],
                 "bbox": [100, 100, 100, 80], "area": 8000, "iscrowd": 0, "difficult": 0},
                {"id": 2, "image_id": 1, "category_id": 2, "segmentation": [[300, 200, 420, 200, 420, 260, 300, 260]],
                 "bbox": [300, 200, 120, 60], "area": 7200, "iscrowd": 0, "difficult": 0}]}
    (tmp_path / "det.json").write_text(json.dumps(coco))
    (tmp_path / "mix.yaml").write_text(
        "seed: 3\nepoch_size: 4\nbuilder: {plain_prob: 0.5, open_ended_prob: 0.0, subset_prob: 0.0}\n"
        "units:\n  - {name: det, path: det.json, type: detection, images: images, weight: 1.0}\n")
    data = build_source(DataConfig(source="mixture", paths=[str(tmp_path / "mix.yaml")]))
    assert len(data) == 4
    encoder = ConversationEncoder(load_processor(str(tiny_model_dir)))
    sizes = set()
    for i in range(len(data)):
        item = data[i]
        part = item["messages"][-2]["content"][0]
        sample = encoder.encode(item)
        (t, h, w), = sample.image_grid_thw.tolist()
        model_size = tuple(item["meta"]["plans"][0]["model"])
        assert (w * 14, h * 14) == (part["resized_width"], part["resized_height"]) == model_size
        assert sample.plans[0].model_size == model_size
        sizes.add(sample.plans[0].model_size)
        target = item["messages"][-1]["content"][0]["text"]
        parsed = parse_detections(target)
        assert sorted(parsed.objects.labels) == ["plane", "ship"]
        assert parsed.objects.boxes.data.max() <= max(sample.plans[0].model_size)
    assert len(sizes) > 1  # random resize drew different model sizes
    with pytest.raises(ValueError, match="one mixture YAML"):
        build_source(DataConfig(source="mixture", paths=[]))


def test_logged_learning_rate_is_the_base_rate_when_vision_has_its_own(tiny_model_dir, tmp_path):
    """The Trainer logs the first parameter group's rate: that must be the language model's (base) rate."""
    from rscovlm.train.trainer import build_trainer

    convs = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"}]}]
    cfg = build_config({}, [f"model.model_name_or_path={tiny_model_dir}", f"output_dir={tmp_path}",
                            "global_batch_size=1", "vision_lr=1e-5", "merger_lr=3e-5", "learning_rate=2e-6",
                            "dataloader_num_workers=0", "warmup_ratio=0.0", "lr_scheduler_type=constant"])
    trainer = build_trainer(cfg, dataset=convs)
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    assert trainer.optimizer.param_groups[0]["name"].startswith("language_model/")
    assert trainer._get_learning_rate() == 2e-6


@pytest.mark.parametrize("override, match", [
    ("warmup_ratio=2", r"train.warmup_ratio: 2.0 must be in \[0, 1\)"),  # >= 1 would silently mean 2 steps
    ("learning_rate=-1", "train.learning_rate: -1.0 must be > 0"),
    ("vision_lr=0", "train.vision_lr: 0.0 must be > 0"),
    ("data.max_length=0", "data.max_length: 0 must be >= 1"),
    ("per_device_batch_size=0", "train.per_device_batch_size: 0 must be >= 1"),
    ("model.lora_r=0", "model.lora_r: 0 must be >= 1"),
    ("data.min_pixels=2000000", "data.min_pixels: 2000000 must be <= data.max_pixels"),
    ("max_steps=-5", r"train.max_steps: -5 must be -1 \(train for num_train_epochs\) or >= 1"),
    ("max_steps=0", "train.max_steps: 0 must be -1"),
    ("num_train_epochs=.inf", "train.num_train_epochs: inf must be a finite number"),
    ("learning_rate=.nan", "train.learning_rate: nan must be a finite number"),
    ("max_grad_norm=.inf", "train.max_grad_norm: inf must be a finite number"),
    ("seed=-1", r"train.seed: -1 must be in \[0, 2\*\*32\)"),
    ("global_batch_size=0", "train.global_batch_size: 0 must be >= 1"),
    ("save_steps=0", "train.save_steps: 0 must be >= 1"),
    ("logging_steps=-1", "train.logging_steps: -1 must be >= 1"),
    ("weight_decay=-0.1", "train.weight_decay: -0.1 must be >= 0"),
    ("warmup_ratio=-0.1", r"train.warmup_ratio: -0.1 must be in \[0, 1\)"),
])
def test_out_of_range_values_name_their_key(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_cli_train_names_a_missing_model_and_checks_resume_before_loading(capsys, tmp_path):
    from rscovlm.cli import main

    good = tmp_path / "good.jsonl"
    good.write_text('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n')
    common = ["train", f"data.paths=[{good}]", f"output_dir={tmp_path / 'out'}"]
    assert main([*common, f"model.model_name_or_path={tmp_path / 'no_model'}"]) == 2
    assert "model.model_name_or_path" in capsys.readouterr().err
    # a resume that cannot work fails before the (possibly 7B) model is loaded
    assert main([*common, "model.model_name_or_path=none", "resume_from_checkpoint=latest"]) == 2
    assert "train.resume_from_checkpoint=latest: no complete checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["runs/tinyy", "./runs/tinyy", "runs/sub/tiny", "runs/tiny/"])
def test_a_missing_local_model_path_fails_at_once_without_asking_the_hub(tiny_model_dir, tmp_path, monkeypatch,
                                                                          capsys, name):
    """A path that looks local (./, a folder that partly exists, more than org/name) and is not there: an error
    naming the key, the path and the closest folder, before any hub look-up (main spent ~30 s on hub retries)."""
    import shutil

    import transformers

    from rscovlm.cli import main

    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_model_dir, tmp_path / "runs" / "tiny")
    if name == "runs/tiny/":
        (tmp_path / "runs" / "tiny" / "config.json").unlink()

    def no_hub(*args, **kwargs):
        raise AssertionError(f"from_pretrained was called: {args}")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", no_hub)
    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", no_hub)
    good = tmp_path / "good.jsonl"
    good.write_text('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n')
    assert main(["train", f"data.paths=[{good}]", "output_dir=out", f"model.model_name_or_path={name}"]) == 2
    err = capsys.readouterr().err
    assert f"model.model_name_or_path={name}: " in err
    if name == "runs/tiny/":
        assert "no config.json" in err
    else:
        assert "no such model folder" in err and "not looked up on the hub" in err
    if name == "runs/tinyy":
        assert "did you mean runs/tiny?" in err


def test_progress_bar_only_console_keeps_one_bar_and_no_log_dicts(tiny_model_dir, tmp_path, capfd):
    """``console="bar"`` (the demo): one training bar with the loss as postfix, no raw log dicts in between;
    the losses still reach the log history."""
    from rscovlm.train.trainer import train

    convs = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"}]}] * 2
    cfg = build_config({}, [f"model.model_name_or_path={tiny_model_dir}", f"output_dir={tmp_path}",
                            "global_batch_size=1", "max_steps=3", "logging_steps=1", "save_steps=100",
                            "dataloader_num_workers=0", "learning_rate=1e-3"])
    result = train(cfg, dataset=convs, console="bar", progress_desc="training")
    printed = capfd.readouterr()
    text = printed.out + printed.err
    assert len(result.losses) == 3
    assert "{'loss'" not in text and "train_runtime" not in text
    assert "training: 100%" in text and "loss=" in text
    with pytest.raises(ValueError, match="console"):
        train(cfg, dataset=convs, console="loud")


def test_cli_train_reports_unusable_samples_as_errors_naming_them(tiny_model_dir, tmp_path, capsys):
    """Samples that cannot be trained on stop `rscovlm train` with a message naming the sample, not a traceback:
    every sample dropped by max_length, a drop refused with data.drop_overlong=false, a bad resized size."""
    from rscovlm.cli import main

    _png(tmp_path / "a.png", 224, 224)
    line = {"messages": [{"role": "user", "content": [{"type": "image", "image": "a.png"},
                                                       {"type": "text", "text": "What?"}]},
                         {"role": "assistant", "content": "harbor"}]}
    good = tmp_path / "train.jsonl"
    good.write_text(json.dumps(line) + "\n")
    common = ["train", f"model.model_name_or_path={tiny_model_dir}", f"data.paths=[{good}]",
              f"output_dir={tmp_path / 'out'}", "max_steps=1", "global_batch_size=1", "dataloader_num_workers=0"]
    assert main([*common, "data.max_length=40"]) == 2
    assert "every one of the 1 samples was dropped" in capsys.readouterr().err
    assert main([*common, "data.max_length=40", "data.drop_overlong=false"]) == 2
    assert f"sample 0 ({good}:1): image_cut" in capsys.readouterr().err
    line["messages"][0]["content"][0]["resized_width"] = 100
    line["messages"][0]["content"][0]["resized_height"] = 224
    good.write_text(json.dumps(line) + "\n")
    assert main(common) == 2
    assert f"sample 0 ({good}:1): " in capsys.readouterr().err


def test_values_transformers_rejects_become_config_errors(tmp_path):
    from rscovlm.train.trainer import build_training_arguments

    with pytest.raises(ConfigError, match=r"train.lr_scheduler_type: 'cosinee' is not one of .*'cosine'"):
        build_training_arguments(build_config({}, [f"output_dir={tmp_path}", "lr_scheduler_type=cosinee"]))
    with pytest.raises(ConfigError, match="train.report_to=wandbx: .*wandbx is not supported"):
        build_training_arguments(build_config({}, [f"output_dir={tmp_path}", "report_to=wandbx"]))


def _tiny_qwen2_vl(tiny_dir, out):
    """A tiny Qwen2-VL folder: the tiny Qwen2.5-VL's tokenizer and processor with Qwen2-VL config and weights."""
    import shutil

    import torch
    from transformers import AutoConfig, Qwen2VLConfig, Qwen2VLForConditionalGeneration

    shutil.copytree(tiny_dir, out)
    c = AutoConfig.from_pretrained(tiny_dir)
    text = c.text_config.to_dict()
    config = Qwen2VLConfig(
        text_config=text, tie_word_embeddings=False,
        vision_config=dict(depth=1, embed_dim=16, hidden_size=text["hidden_size"], num_heads=2, mlp_ratio=2,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=c.image_token_id, video_token_id=c.video_token_id,
        vision_start_token_id=c.vision_start_token_id, vision_end_token_id=c.vision_end_token_id)
    torch.manual_seed(0)
    Qwen2VLForConditionalGeneration(config).save_pretrained(out)
    return out


QUADS = [[100, 100, 200, 100, 200, 180, 100, 180], [300, 200, 420, 200, 420, 260, 300, 260]]


def _detection_mixture(tmp_path, builder="{plain_prob: 0.5, open_ended_prob: 0.0, subset_prob: 0.0}"):
    from PIL import Image

    (tmp_path / "images").mkdir(exist_ok=True)
    Image.new("RGB", (640, 480), (80, 90, 100)).save(tmp_path / "images" / "a.png")
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 640, "height": 480}],
            "categories": [{"id": 1, "name": "plane"}, {"id": 2, "name": "ship"}],
            "annotations": [{"id": k + 1, "image_id": 1, "category_id": k + 1, "segmentation": [q], "area": 1.0,
                             "bbox": [q[0], q[1], q[2] - q[0], q[5] - q[1]], "iscrowd": 0}
                            for k, q in enumerate(QUADS)]}
    (tmp_path / "det.json").write_text(json.dumps(coco))
    (tmp_path / "mix.yaml").write_text(
        f"seed: 3\nepoch_size: 4\nbuilder: {builder}\n"
        "units:\n  - {name: det, path: det.json, type: detection, images: images, weight: 1.0}\n")
    return tmp_path / "mix.yaml"


def test_mixture_training_builds_targets_in_the_checkpoint_family_frame(tiny_model_dir, tmp_path):
    """`rscovlm train` with data.source=mixture on a Qwen2-VL checkpoint: the sample builder gets the family from
    the checkpoint, so targets are on Qwen2-VL's 0-1000 grid (they map back to the labels' boxes) and the model
    trains on them."""
    import numpy as np

    from rscovlm.geometry.boxes import Boxes
    from rscovlm.protocol.detection import parse_detections
    from rscovlm.resolution import ResizePlan
    from rscovlm.train.trainer import build_trainer

    model = _tiny_qwen2_vl(tiny_model_dir, tmp_path / "qwen2vl")
    mix = _detection_mixture(tmp_path)
    cfg = build_config({}, [f"model.model_name_or_path={model}", f"output_dir={tmp_path / 'o'}",
                            "data.source=mixture", f"data.paths=[{mix}]", "data.shuffle=false", "max_steps=1",
                            "global_batch_size=1", "dataloader_num_workers=0", "report_to=none"])
    trainer = build_trainer(cfg)
    assert trainer.family.name == "qwen2_vl"
    data = trainer.train_dataset.conversations
    assert data.builder.family.name == "qwen2_vl"
    for i in range(len(data)):
        item = data[i]
        plan = ResizePlan.from_dict(item["meta"]["plans"][0])
        assert item["meta"]["box_frames"] == [[1000, 1000]]
        frame = trainer.family.box_frame_for(*plan.model_size)
        parsed = parse_detections(item["messages"][-1]["content"][0]["text"], kind="quad", frame=frame)
        back = parsed.objects.boxes.to_frame(plan.original).normalized().data
        orig = Boxes(np.asarray(QUADS, float), "quad", plan.original).normalized().data
        # within one grid step: the reference answer format truncates
        assert len(back) == 2 and all(np.abs(orig - row).max(axis=1).min() <= 640 / 1000 + 1e-6
                                      for row in back)
        assert trainer.train_dataset[i]["input_ids"].numel() > 0  # the collator accepts the builder's size
    result = trainer.train()
    assert np.isfinite(result.training_loss)


def test_a_family_option_contradicting_the_checkpoint_is_an_error(tmp_path):
    """The family comes from the checkpoint; a user-forced family for another box frame would train wrong
    coordinates, so it stops before any weights load. Naming the same family is fine."""
    from transformers import Qwen2VLConfig, Qwen3VLConfig

    from rscovlm.train.trainer import build_data

    Qwen2VLConfig().save_pretrained(tmp_path / "qwen2vl")  # config only: the data needs no weights
    Qwen3VLConfig().save_pretrained(tmp_path / "qwen3vl")
    mix = _detection_mixture(tmp_path, builder="{family: qwen2_5_vl}")
    common = ["data.source=mixture", f"data.paths=[{mix}]", f"output_dir={tmp_path / 'o'}"]
    cfg = build_config({}, [f"model.model_name_or_path={tmp_path / 'qwen2vl'}", *common])
    with pytest.raises(ConfigError, match=r"mix.yaml: builder.family='qwen2_5_vl', but the model being trained is "
                                          r"a qwen2_vl model"):
        build_data(cfg)
    _detection_mixture(tmp_path, builder="{family: qwen3_vl}")
    cfg = build_config({}, [f"model.model_name_or_path={tmp_path / 'qwen3vl'}", *common])
    data = build_data(cfg)  # the same family: fine; Qwen3-VL's 32 px side factor
    assert all(v % 32 == 0 for i in range(len(data)) for v in data[i]["meta"]["plans"][0]["model"])
    cfg = build_config({}, [f"model.model_name_or_path={tmp_path / 'qwen3vl'}", *common,
                            "data.options={family: qwen2_vl}"])
    with pytest.raises(ConfigError, match="data.options.family='qwen2_vl', but .* qwen3_vl model"):
        build_data(cfg)
