"""Mixture: proportions follow the weights, sequences are reproducible, ranks partition without overlap,
resuming continues the same sequence, statistics by source / task / box kind."""

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from rscovlm.cli import main
from rscovlm.data.mixture import Mixture, MixtureConfig, MixtureError, MixtureSampler, rank_positions
from rscovlm.data.records import write_coco, write_jsonl


def conv(i, source="geochat", task="vqa", boxes=None):
    rec = {"id": f"{source}/{i}", "source": source, "task": task,
           "messages": [{"role": "user", "content": [{"type": "image", "image": "a.png"},
                                                     {"type": "text", "text": f"q{i}"}]},
                        {"role": "assistant", "content": "a"}]}
    if boxes:
        rec["boxes"], rec["image_sizes"] = boxes, [[64, 48]]
    return rec


@pytest.fixture
def mix_dir(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [conv(i) for i in range(30)])
    write_jsonl(tmp_path / "b.jsonl", [conv(i, "vhm", "grounding", [{"kind": "hbb", "values": [1, 1, 2, 2]}])
                                       for i in range(7)] + [conv(99, "vhm", "vqa")])
    write_coco(tmp_path / "d.json", {"info": {"source": "dota"}, "images": [
        {"id": i, "file_name": "a.png", "width": 64, "height": 48} for i in range(1, 6)],
        "categories": [{"id": 1, "name": "plane"}], "annotations": []})
    cfg = {"seed": 7, "epoch_size": 6000, "units": [
        {"name": "a", "path": "a.jsonl", "type": "conversation", "weight": 1, "images": "."},
        {"name": "b", "path": "b.jsonl", "type": "conversation", "weight": 3, "images": "."},
        {"name": "det", "path": "d.json", "type": "detection", "weight": 2, "box_kind": "obb", "images": "."}]}
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(cfg))
    Image.new("RGB", (64, 48)).save(tmp_path / "a.png")
    return tmp_path


def test_proportions_follow_weights(mix_dir):
    mix = Mixture.from_yaml(mix_dir / "mix.yaml")
    units = np.concatenate([mix.epoch_plan(e)[0] for e in range(5)])
    share = np.bincount(units, minlength=3) / len(units)
    # 30000 draws: binomial std <= 0.003; 0.012 is four standard deviations
    np.testing.assert_allclose(share, [1 / 6, 3 / 6, 2 / 6], atol=0.012)


def test_unit_records_are_permutations_and_epochs_differ(mix_dir):
    mix = Mixture.from_yaml(mix_dir / "mix.yaml")
    units, recs = mix.epoch_plan(0)
    det = recs[units == 2]
    # a unit serves whole permutations: every record appears floor or ceil(k / n) times
    counts = np.bincount(det, minlength=5)
    assert counts.max() - counts.min() <= 1
    for start in range(0, len(det) - 5, 5):
        assert sorted(det[start:start + 5]) == [0, 1, 2, 3, 4]
    u1, r1 = mix.epoch_plan(1)
    assert not (np.array_equal(units, u1) and np.array_equal(recs, r1))


def test_same_sequence_across_two_runs(mix_dir):
    a = Mixture.from_yaml(mix_dir / "mix.yaml")
    b = Mixture.from_yaml(mix_dir / "mix.yaml")
    for epoch in (0, 3):
        for x, y in zip(a.epoch_plan(epoch), b.epoch_plan(epoch)):
            np.testing.assert_array_equal(x, y)
    cfg = yaml.safe_load((mix_dir / "mix.yaml").read_text())
    cfg["seed"] = 8
    c = Mixture(MixtureConfig.from_dict(cfg, base=mix_dir))
    assert not np.array_equal(a.epoch_plan(0)[0], c.epoch_plan(0)[0])


def test_two_ranks_partition_without_overlap(mix_dir):
    mix = Mixture.from_yaml(mix_dir / "mix.yaml")
    r0, r1 = (list(MixtureSampler(Mixture.from_yaml(mix_dir / "mix.yaml"), rank=r, world_size=2))
              for r in (0, 1))
    assert len(r0) == len(r1) == 3000
    assert not set(r0) & set(r1) and sorted(r0 + r1) == list(range(6000))
    # both ranks see the same global plan: what rank 1 serves is what a single process sees at those positions
    units, _ = mix.epoch_plan(0)
    single = Mixture.from_yaml(mix_dir / "mix.yaml")
    assert [single.locate(0, p)[0] for p in r1[:50]] == units[r1[:50]].tolist()
    # odd world size: equal counts, at most W-1 positions left out
    pos = [rank_positions(10, r, 3) for r in range(3)]
    assert [len(p) for p in pos] == [3, 3, 3] and len(set(np.concatenate(pos))) == 9


def test_resume_mid_epoch_continues_the_sequence(mix_dir):
    mix = Mixture.from_yaml(mix_dir / "mix.yaml")
    full = MixtureSampler(mix, rank=1, world_size=2)
    first_epoch = list(full)
    second_epoch = list(full)
    assert first_epoch == second_epoch  # positions per rank are fixed; the plan behind them changes per epoch
    assert full.epoch == 2

    s = MixtureSampler(mix, rank=1, world_size=2, epoch=4)
    it = iter(s)
    head = [next(it) for _ in range(1234)]
    state = json.loads(json.dumps(s.state_dict()))
    assert state == {"epoch": 4, "position": 1234, "seed": 7, "world_size": 2}
    resumed = MixtureSampler(Mixture.from_yaml(mix_dir / "mix.yaml"), rank=1, world_size=2)
    resumed.load_state_dict(state)
    tail = list(resumed)
    assert head + tail == first_epoch
    assert resumed.epoch == 5 and resumed.position == 0
    # the records behind the positions match an uninterrupted run of epoch 4
    fresh = Mixture.from_yaml(mix_dir / "mix.yaml")
    assert [fresh.locate(4, p) for p in tail[:100]] == [mix.locate(4, p) for p in first_epoch[1234:1334]]
    with pytest.raises(ValueError, match="another seed or world size"):
        MixtureSampler(mix, rank=0, world_size=4).load_state_dict(state)


def test_stats_by_source_task_and_box_kind(mix_dir, capsys):
    stats = Mixture.from_yaml(mix_dir / "mix.yaml").stats()
    assert stats["source"] == pytest.approx({"vhm": 0.5, "dota": 1 / 3, "geochat": 1 / 6})
    assert stats["task"] == pytest.approx({"grounding": 0.5 * 7 / 8, "detection": 1 / 3,
                                           "vqa": 1 / 6 + 0.5 / 8})
    assert stats["box_kind"] == pytest.approx({"hbb": 0.5 * 7 / 8, "obb": 1 / 3, "none": 1 / 6 + 0.5 / 8})
    assert stats["units"][2]["passes"] == pytest.approx(6000 / 3 / 5)
    assert main(["data", "mix-stats", str(mix_dir / "mix.yaml")]) == 0
    out = capsys.readouterr().out
    assert "by box kind" in out and "obb" in out and "33.33%" in out


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["units"][0].update(weight=-1), r"units\[0\].weight"),
    (lambda c: c["units"][1].update(type="video"), r"units\[1\].type"),
    (lambda c: c["units"][0].update(box_kind="obb"), r"units\[0\].box_kind"),
    (lambda c: c["units"][2].update(name="a"), "duplicate unit name"),
    (lambda c: c.update(epochs=3), "unknown key"),
    (lambda c: c["units"][0].update(path="missing.jsonl"), "unit file not found"),
    (lambda c: c.update(builder={"plain_prob": 2.0}), "builder: plain_prob must be a number in"),
    (lambda c: c.update(builder={"jsn_prob": 0.5}), "unknown option"),
    (lambda c: c.update(builder={"json_prob": 0.5}), "json_prob was replaced by plain_prob"),
    (lambda c: c.update(builder={"random_resize": False}), "random_resize was replaced by random_resize_prob"),
    (lambda c: c.update(builder={"prompt_set": "nope"}), "builder: prompt_set: unknown prompt set 'nope'"),
    (lambda c: c["units"][2].update(prompt_set="nope"), r"units\[2\]: prompt_set: unknown prompt set"),
    (lambda c: c["units"][2].update(random_resize_prob=1.5), r"units\[2\]: random_resize_prob must be"),
    (lambda c: c["units"][2].update(random_resize_dist="gauss"), r"units\[2\]: random_resize_dist must be one"),
    (lambda c: c["units"][2].update(clip_boxes="yes"), r"units\[2\]: clip_boxes must be true or false"),
    (lambda c: c["units"][2].update(box_kinds=["hbb", "hbb"]), r"units\[2\].box_kinds: expected a list"),
    (lambda c: c["units"][2].update(box_kinds=["hbb", "rbox"]), r"units\[2\].box_kinds: expected a list"),
    (lambda c: c["units"][2].update(box_kinds=["hbb"]), r"units\[2\]: give box_kind or box_kinds, not both"),
    (lambda c: c["units"][0].update(box_kinds=["hbb"]), r"units\[0\].box_kinds: conversations keep"),
])
def test_bad_configs_are_named(mix_dir, edit, message, capsys):
    cfg = yaml.safe_load((mix_dir / "mix.yaml").read_text())
    edit(cfg)
    (mix_dir / "bad.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(MixtureError, match=message):
        Mixture.from_yaml(mix_dir / "bad.yaml")
    assert main(["data", "mix-stats", str(mix_dir / "bad.yaml")]) == 2


def test_torch_dataloader_with_sampler_and_dataset(mix_dir):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from rscovlm.data.mixture import MixtureDataset

    mix = Mixture.from_yaml(mix_dir / "mix.yaml")
    ds = MixtureDataset(mix, epoch=2)
    sampler = MixtureSampler(mix, rank=1, world_size=2, epoch=2)
    loader = torch.utils.data.DataLoader(ds, sampler=sampler, batch_size=4, collate_fn=list)
    batch = next(iter(loader))
    positions = rank_positions(6000, 1, 2)[:4]
    assert [s["meta"]["id"] for s in batch] == [ds[int(p)]["meta"]["id"] for p in positions]
    assert all(s["messages"][-1]["role"] == "assistant" for s in batch)


def test_training_source_feeds_the_collator_resized_images(mix_dir):
    from rscovlm.train.config import DataConfig
    from rscovlm.train.sources import build_source

    cfg = DataConfig(source="mixture", paths=[str(mix_dir / "mix.yaml")], options={"epoch_size": 10},
                     min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16)
    ds = build_source(cfg, seed=0)
    assert len(ds) == 10
    seen = 0
    for pos in range(10):
        sample = ds[pos]
        for part in sample["messages"][0]["content"]:
            if part["type"] == "image":
                img = part["image"]
                assert img.size == (part["resized_width"], part["resized_height"])
                assert 28 * 28 * 4 <= img.size[0] * img.size[1] <= 28 * 28 * 16
                assert img.size[0] % 28 == 0 and img.size[1] % 28 == 0
                seen += 1
    assert seen > 0


def test_collator_encodes_built_samples_in_the_targets_frame(mix_dir, tiny_model_dir):
    """The model helper's encoder takes the builder's resized images unchanged: the frame the target's
    coordinates are written in is the frame the vision tower sees."""
    from rscovlm.model.collator import ConversationEncoder
    from rscovlm.model.loading import load_processor
    from rscovlm.train.config import DataConfig
    from rscovlm.train.sources import build_source

    ds = build_source(DataConfig(source="mixture", paths=[str(mix_dir / "mix.yaml")], options={"epoch_size": 8}))
    encoder = ConversationEncoder(load_processor(str(tiny_model_dir)))
    for pos in range(3):
        sample = ds[pos]
        encoded = encoder.encode(sample)
        assert [p.model_size for p in encoded.plans] == [tuple(p["model"]) for p in sample["meta"]["plans"]]
        assert (encoded.labels != -100).any()


def test_broken_unit_files_are_named_not_tracebacks(mix_dir, capsys):
    """A unit whose file is not what its type says: errors name the file (and line), mix-stats exits 2."""
    cfg = yaml.safe_load((mix_dir / "mix.yaml").read_text())
    (mix_dir / "not_coco.json").write_text(json.dumps({"images": []}))
    cfg["units"][2]["path"] = "not_coco.json"
    (mix_dir / "bad.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(MixtureError, match=r"not_coco.json: .*categories"):
        Mixture.from_yaml(mix_dir / "bad.yaml")
    assert main(["data", "mix-stats", str(mix_dir / "bad.yaml")]) == 2
    with open(mix_dir / "a.jsonl", "a") as fh:
        fh.write('{"id": broken\n')
    assert main(["data", "mix-stats", str(mix_dir / "mix.yaml")]) == 2
    assert f"{mix_dir / 'a.jsonl'}:31: not valid JSON" in capsys.readouterr().err


def test_box_kinds_give_one_sample_per_record_and_kind(mix_dir, capsys):
    """`box_kinds: [hbb, obb, quad]`: the reference's dense-detection dataset trains every image once per kind. The
    unit serves records x kinds items (kind-major), each exactly once per pass, and the statistics split by kind."""
    from rscovlm.data.mixture import MixtureDataset

    cfg = yaml.safe_load((mix_dir / "mix.yaml").read_text())
    cfg["units"][2].pop("box_kind")
    cfg["units"][2]["box_kinds"] = ["hbb", "obb", "quad"]
    cfg["epoch_size"] = None
    cfg["units"] = cfg["units"][2:]  # the detection unit alone: 5 records
    (mix_dir / "kinds.yaml").write_text(yaml.safe_dump(cfg))
    mix = Mixture.from_yaml(mix_dir / "kinds.yaml")
    assert mix.epoch_size == 15 and mix.n_items(0) == 15
    assert [mix.item(0, i) for i in (0, 4, 5, 14)] == [(0, "hbb"), (4, "hbb"), (0, "obb"), (4, "quad")]
    ds = MixtureDataset(mix)
    seen = sorted((s["meta"]["id"], s["meta"]["box_kind"]) for s in (ds[p] for p in range(len(ds))))
    assert seen == sorted((str(i), k) for i in range(1, 6) for k in ("hbb", "obb", "quad"))
    stats = mix.stats()
    assert stats["box_kind"] == pytest.approx({"hbb": 1 / 3, "obb": 1 / 3, "quad": 1 / 3})
    assert stats["units"][0]["records"] == 5 and stats["units"][0]["samples"] == 15
    assert stats["units"][0]["passes"] == pytest.approx(1.0)


def test_prompt_sets_per_unit_recorded_and_overridden(mix_dir, capsys):
    from rscovlm.data.builder import prompt_set_digest
    from rscovlm.protocol.prompt_sets import get_prompt_set

    cfg = yaml.safe_load((mix_dir / "mix.yaml").read_text())
    cfg["units"].append(dict(cfg["units"][2], name="det_v0", prompt_set="rscovlm-v0"))
    (mix_dir / "sets.yaml").write_text(yaml.safe_dump(cfg))
    mix = Mixture.from_yaml(mix_dir / "sets.yaml")
    sets = {s["name"]: s for s in mix.prompt_sets()}
    assert sets["reference"]["units"] == ["det"] and sets["rscovlm-v0"]["units"] == ["det_v0"]
    assert sets["reference"]["sha256"] == prompt_set_digest(get_prompt_set("reference"))
    assert sets["rscovlm-v0"]["answer_styles"]["detection"] == "rscovlm-v0"
    assert main(["data", "mix-stats", str(mix_dir / "sets.yaml")]) == 0
    rows = {line.split()[0]: line.split()[-1] for line in capsys.readouterr().out.splitlines()[3:7]}
    assert rows == {"a": "-", "b": "-", "det": "reference", "det_v0": "rscovlm-v0"}
    # --prompt-set replaces the builder's and every unit's
    assert {s["name"] for s in Mixture.from_yaml(mix_dir / "sets.yaml", "rscovlm-v0").prompt_sets()} == \
        {"rscovlm-v0"}
    assert main(["data", "mix-stats", str(mix_dir / "sets.yaml"), "--prompt-set", "rscovlm-v0"]) == 0
    assert "reference" not in capsys.readouterr().out
    assert main(["data", "mix-stats", str(mix_dir / "sets.yaml"), "--prompt-set", "nope"]) == 2
    assert "unknown prompt set 'nope'" in capsys.readouterr().err


def test_training_source_takes_the_prompt_set_from_the_mixture_or_data_options(mix_dir):
    from rscovlm.train.config import DataConfig
    from rscovlm.train.sources import build_source, dataset_prompt_sets

    cfg = DataConfig(source="mixture", paths=[str(mix_dir / "mix.yaml")], options={"epoch_size": 40})
    ds = build_source(cfg, seed=0)
    det = [ds[p] for p in range(40) if ds[p]["meta"]["type"] == "detection"]
    assert det and {s["meta"]["prompt_set"]["name"] for s in det} == {"reference"}
    assert all(s["messages"][-1]["content"][0]["text"] == "There are none." for s in det)
    assert [s["name"] for s in dataset_prompt_sets(ds)] == ["reference"]
    cfg.options["prompt_set"] = "rscovlm-v0"
    ds = build_source(cfg, seed=0)
    assert [s["name"] for s in dataset_prompt_sets(ds)] == ["rscovlm-v0"]
    assert {ds[p]["messages"][-1]["content"][0]["text"] for p in range(40)
            if ds[p]["meta"]["type"] == "detection"} == {"There is none."}


def test_packaged_reference_mixture_config_is_valid():
    """configs/mixtures/reference.yaml (documentation of a reference-like mixture) parses: options, kinds, sets."""
    from pathlib import Path

    from rscovlm.data.builder import BuildConfig

    cfg = MixtureConfig.from_yaml(Path(__file__).resolve().parent.parent / "configs" / "mixtures" / "reference.yaml")
    build = BuildConfig.from_dict(cfg.builder)
    assert (build.prompt_set, build.plain_prob, build.random_resize_dist, build.clip_boxes) == \
        ("reference", 1.0, "reference", False)
    assert cfg.units[0].target_box_kinds == ["hbb", "obb", "quad"] and cfg.units[1].target_box_kinds == ["hbb"]


# ---- the reference's rates, data root, several files per unit ------------------------------------------------

@pytest.fixture
def rate_dir(tmp_path):
    root = tmp_path / "root"
    (root / "unified").mkdir(parents=True)
    write_jsonl(root / "unified" / "a1.jsonl", [conv(i, "vhm") for i in range(100)])
    write_jsonl(root / "unified" / "a2.jsonl", [conv(100 + i, "vhm") for i in range(7)])
    write_jsonl(root / "unified" / "b.jsonl", [conv(i, "geochat") for i in range(8)])
    write_coco(root / "unified" / "d.json", {"info": {"source": "dota"}, "images": [
        {"id": i, "file_name": "a.png", "width": 64, "height": 48} for i in range(1, 6)],
        "categories": [{"id": 1, "name": "plane"}], "annotations": []})
    Image.new("RGB", (64, 48)).save(root / "a.png")
    cfg = {"seed": 3, "data_root": "root", "units": [
        {"name": "a%29", "path": ["${data_root}/unified/a1.jsonl", "${data_root}/unified/a2.jsonl"],
         "type": "conversation", "images": "${data_root}", "converter": "vhm"},
        {"name": "b", "path": "${data_root}/unified/b.jsonl", "type": "conversation", "rate": "*3",
         "images": "${data_root}"},
        {"name": "det", "path": "${data_root}/unified/d.json", "type": "detection", "images": "${data_root}",
         "box_kinds": ["hbb", "obb", "quad"]},
        {"name": "off", "path": "${data_root}/unified/not_converted_yet.jsonl", "type": "conversation",
         "rate": "*0"}]}
    (tmp_path / "rates.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path


def test_reference_rates_select_the_reference_subsets_once_per_run(rate_dir):
    """`%P` keeps int(n * (P / 100.0)) records of each file, the records random.Random(42).sample picks (the
    reference's random_sample; 100 * 0.29 = 28.999... truncates to 28), the same every epoch; `*N` repeats every
    record N times; box kinds multiply; no rate is `*1`; `*0` is off (its file is not even needed); an epoch is
    every selected sample once, in a new order each epoch."""
    import random

    mix = Mixture.from_yaml(rate_dir / "rates.yaml")
    assert mix.mode == "rate" and [u.rate for u in mix.units] == ["%29", "*3", None, "*0"]
    picked = sorted(random.Random(42).sample(range(100), 28)) + \
        sorted(100 + i for i in random.Random(42).sample(range(7), 2))
    assert sorted(mix.selected[0].tolist()) == picked
    assert sorted(mix.selected[1].tolist()) == sorted(list(range(8)) * 3)
    assert sorted(mix.selected[2].tolist()) == list(range(15))
    assert mix.epoch_size == 30 + 24 + 15
    epochs = [mix.epoch_plan(e) for e in range(2)]
    for units, items in epochs:
        assert np.bincount(units, minlength=4).tolist() == [30, 24, 15, 0]
        assert sorted(items[units == 0].tolist()) == picked
    assert not np.array_equal(epochs[0][0], epochs[1][0])
    ids = {Mixture.from_yaml(rate_dir / "rates.yaml").stats()["units"][i]["per_epoch"] for i in range(3)}
    assert ids == {30.0, 24.0, 15.0}
    stats = mix.stats()
    assert [u["passes"] for u in stats["units"]] == pytest.approx([30 / 107, 3.0, 1.0, 0.0])
    assert stats["box_kind"] == pytest.approx({"none": 54 / 69, "hbb": 5 / 69, "obb": 5 / 69, "quad": 5 / 69})


def test_rate_syntax_and_its_errors(rate_dir, capsys):
    base = yaml.safe_load((rate_dir / "rates.yaml").read_text())

    def load(edit):
        cfg = yaml.safe_load(yaml.safe_dump(base))
        edit(cfg)
        (rate_dir / "edited.yaml").write_text(yaml.safe_dump(cfg))
        return MixtureConfig.from_yaml(rate_dir / "edited.yaml")

    suffix = load(lambda c: None).units[0]
    keyed = load(lambda c: c["units"][0].update(name="a", rate="%29")).units[0]
    assert (suffix.name, suffix.rate) == (keyed.name, keyed.rate) == ("a", "%29")
    for bad, message in [
        (lambda c: c["units"][1].update(rate="50%"), r"units\[1\].rate: expected '%P'"),
        (lambda c: c["units"][1].update(rate="%0"), r"the percentage must be in \(0, 100\]"),
        (lambda c: c["units"][1].update(rate="%101"), r"the percentage must be in \(0, 100\]"),
        (lambda c: c["units"][1].update(rate="*1.5"), r"units\[1\].rate: expected"),
        (lambda c: c["units"][1].update(weight=2), r"units\[1\]: give weight or rate, not both"),
        (lambda c: c["units"][0].update(rate="*2"), r"units\[0\].name: 'a%29' carries a rate suffix"),
        (lambda c: c["units"][2].update(weight=1), "a mixture uses one of the two"),
        (lambda c: c.update(epoch_size=10), "epoch_size: a mixture with reference rates"),
        (lambda c: c["units"][1].update(path="${root}/b.jsonl"), r"unknown variable \$\{root\}"),
        (lambda c: c.pop("data_root"), r"uses \$\{data_root\} but the mixture sets no data_root"),
    ]:
        with pytest.raises(MixtureError, match=message):
            load(bad)
    cfg = yaml.safe_load(yaml.safe_dump(base))
    cfg["units"][1]["rate"] = "%1"  # int(8 * 0.01) = 0 records
    (rate_dir / "none.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(MixtureError, match=r"rate selects no record: b \(rate %1 of 8 records\)"):
        Mixture.from_yaml(rate_dir / "none.yaml")


def test_data_root_from_the_yaml_or_replaced(rate_dir, tmp_path, monkeypatch):
    import shutil

    mix = MixtureConfig.from_yaml(rate_dir / "rates.yaml")
    assert mix.data_root == str(rate_dir / "root")
    assert mix.units[1].path == str(rate_dir / "root" / "unified" / "b.jsonl")
    other = tmp_path / "elsewhere"
    shutil.copytree(rate_dir / "root", other / "data")
    monkeypatch.chdir(other)
    moved = Mixture.from_yaml(rate_dir / "rates.yaml", data_root="data")  # relative to the current directory
    assert moved.config.data_root == str(other / "data")
    assert moved.stores[1].path == str(other / "data" / "unified" / "b.jsonl")


def test_missing_unit_files_are_all_named_with_unit_and_path(rate_dir, capsys):
    (rate_dir / "root" / "unified" / "a2.jsonl").unlink()
    (rate_dir / "root" / "unified" / "b.jsonl").unlink()
    with pytest.raises(MixtureError) as err:
        Mixture.from_yaml(rate_dir / "rates.yaml")
    text = str(err.value)
    assert text.startswith("2 missing file(s) or folder(s) of the mixture's units (data root")
    assert (f"unit a: unit file not found: {rate_dir / 'root' / 'unified' / 'a2.jsonl'}; make it with `rscovlm "
            "data convert --source vhm") in text
    assert f"unit b: unit file not found: {rate_dir / 'root' / 'unified' / 'b.jsonl'}" in text
    assert "not_converted_yet" not in text  # a unit that is off needs no file
    assert main(["data", "mix-stats", str(rate_dir / "rates.yaml")]) == 2
    assert "unit b: unit file not found" in capsys.readouterr().err


def test_mix_stats_shows_both_notations(mix_dir, rate_dir, capsys):
    """A weight mixture shows the rate each weight amounts to, a rate mixture the share each rate amounts to."""
    assert main(["data", "mix-stats", str(mix_dir / "mix.yaml"), "--samples-per-unit", "0"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[3:6]}
    # unit a: 30 records, weight 1 of 6 over 6000 draws = 1000 samples = 33.33 passes
    assert rows["a"][4:9] == ["1", "~*33.33", "16.67%", "1000", "33.33"]
    assert main(["data", "mix-stats", str(rate_dir / "rates.yaml"), "--samples-per-unit", "4"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[3:7]}
    assert rows["a"][4:9] == ["~43.5", "%29", "43.48%", "30", "0.28"]
    assert rows["off"][5] == "*0"
    assert "approximate counts" in out and "total:" in out


def test_data_never_imports_train_and_train_registers_the_mixture_source():
    """The layers run one way: no module under rscovlm/data imports rscovlm.train (lazy imports included); the
    trainer's ``mixture`` source is registered by rscovlm.train.sources, which imports the mixture only when the
    source is built."""
    import ast
    import subprocess
    import sys
    from pathlib import Path

    data = Path(__file__).resolve().parents[1] / "rscovlm" / "data"
    offenders = []
    for path in sorted(data.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            offenders += [f"{path.name}:{node.lineno}: {n}" for n in names if n.startswith("rscovlm.train")]
    assert offenders == []
    code = ("import sys; from rscovlm.train.sources import source_uses_family, sources; "
            "print('mixture' in sources(), source_uses_family('mixture'), 'rscovlm.data.mixture' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True", "False"]
