"""Pre-flight checks before the model loads: every referenced image (counted report, file:line of the records,
skip flag), for the jsonl source and the curation mixture."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import yaml
from PIL import Image

from rscovlm.data.records import ImageRef
from rscovlm.train.preflight import check_images


def _png(path, w=64, h=48, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _truncated_jpeg(path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def _line(image):
    return json.dumps({"messages": [{"role": "user", "content": [{"type": "image", "image": image},
                                                                  {"type": "text", "text": "What?"}]},
                                    {"role": "assistant", "content": "harbor"}]})


@pytest.fixture
def jsonl(tmp_path):
    """5 records: good, missing image, good, not an image, the missing image again."""
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png", seed=2)
    (tmp_path / "text.png").write_text("not an image")
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(_line(x) for x in ("a.png", "gone.png", "b.png", "text.png", "gone.png")) + "\n")
    return path


def _no_model(monkeypatch):
    import rscovlm.model.loading as loading

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the data check")

    monkeypatch.setattr(loading, "load_model", refuse)


def test_missing_and_unreadable_images_stop_training_before_the_model_loads(tiny_model_dir, jsonl, tmp_path,
                                                                          monkeypatch, capsys):
    """On main the missing image surfaced only when training reached it; now the whole list comes first."""
    from rscovlm.cli import main

    _no_model(monkeypatch)
    assert main(["train", f"model.model_name_or_path={tiny_model_dir}", f"data.paths=[{jsonl}]",
                 f"output_dir={tmp_path / 'out'}", "max_steps=1", "global_batch_size=1"]) == 2
    err = capsys.readouterr().err
    assert "data: 2 of 4 image file(s) cannot be used, in 3 record(s):" in err
    assert f"{tmp_path / 'gone.png'}: image file not found  [referenced by {jsonl}:2, {jsonl}:5]" in err
    assert f"{tmp_path / 'text.png'}: cannot read the image header" in err and f"by {jsonl}:4]" in err
    assert "data.skip_invalid_images=true" in err


def test_skip_flag_trains_without_those_records_and_counts_them(tiny_model_dir, jsonl, tmp_path, capfd):
    from rscovlm.train.config import build_config
    from rscovlm.train.trainer import train

    cfg = build_config({}, [f"model.model_name_or_path={tiny_model_dir}", f"data.paths=[{jsonl}]",
                            f"output_dir={tmp_path / 'out'}", "max_steps=2", "global_batch_size=1",
                            "dataloader_num_workers=0", "data.skip_invalid_images=true", "save_steps=100"])
    result = train(cfg)
    report = result.image_check
    assert (report.images, report.references, len(report.problems), report.skipped_records) == (4, 5, 2, 3)
    assert len(result.trainer.train_dataset) == 2 and result.global_step == 2
    assert [result.trainer.train_dataset.conversations.where(i) for i in range(2)] == [f"{jsonl}:1", f"{jsonl}:3"]
    err = capfd.readouterr().err
    assert ("data: 4 image file(s) checked (header check, 5 reference(s)" in err
            and "2 unusable; skipped 3 record(s) that use them (data.skip_invalid_images)" in err)
    assert f"{tmp_path / 'gone.png'}: image file not found" in err  # the skipped files are listed too


def test_decode_mode_finds_truncated_files_the_header_check_lets_through(tmp_path):
    good, bad = _png(tmp_path / "a.png"), _truncated_jpeg(tmp_path / "t.jpg")
    refs = [ImageRef(str(good), "x:1", 1), ImageRef(str(bad), "x:2", 2)]
    assert not check_images(refs, "header").problems
    report = check_images(refs, "decode")
    assert list(report.problems) == [str(bad)] and "truncated" in report.problems[str(bad)]
    assert report.bad_keys == {2}


def test_each_file_is_checked_once_however_often_it_is_referenced(tmp_path, monkeypatch):
    import rscovlm.imageio as imageio

    calls = []
    real = imageio.image_size
    monkeypatch.setattr(imageio, "image_size", lambda p: calls.append(p) or real(p))
    path = str(_png(tmp_path / "a.png"))
    report = check_images([ImageRef(path, f"x:{i}", i) for i in range(500)], "header")
    assert (report.images, report.references, len(calls)) == (1, 500, 1)
    assert check_images([ImageRef(path, "x:1", 1)], "none").images == 1 and not calls[1:]


def test_mixture_source_is_checked_and_skipping_shrinks_its_units(tiny_model_dir, tmp_path, capsys):
    """Detection (COCO) and grounding (jsonl) units: unusable images are named with the unit file's line; with
    the skip flag the records leave the mixture (its default epoch size shrinks) and nothing else changes."""
    from rscovlm.data.records import write_coco, write_jsonl
    from rscovlm.train.config import ConfigError, build_config
    from rscovlm.train.trainer import build_data

    img = tmp_path / "img"
    (img / "ds").mkdir(parents=True)
    for name in ("d1.png", "d3.png", "ds/g1.png"):
        _png(img / name, 300, 200)
    _truncated_jpeg(img / "ds" / "g2.jpg")
    write_coco(tmp_path / "d.json", {
        "images": [{"id": i, "file_name": f"d{i}.png", "width": 300, "height": 200} for i in (1, 2, 3)],
        "categories": [{"id": 1, "name": "plane"}], "annotations": []})
    ground = [{"dataset": "ds", "image_id": name, "question": "the plane", "question_id": k,
               "bbox": [10, 10, 50, 50], "image_width": 300, "image_height": 200}
              for k, name in enumerate(["g1.png", "g2.jpg", "g1.png"])]
    write_jsonl(tmp_path / "g.jsonl", ground)
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump({"units": [
        {"name": "det", "path": "d.json", "type": "detection", "images": "img"},
        {"name": "ref", "path": "g.jsonl", "type": "grounding", "images": "img"}]}))
    common = [f"model.model_name_or_path={tiny_model_dir}", "data.source=mixture",
              f"data.paths=[{tmp_path / 'mix.yaml'}]", "data.shuffle=false"]
    with pytest.raises(ConfigError) as err:
        build_data(build_config({}, [*common, "data.check_images=decode"]))
    message = str(err.value)
    assert "data: 2 of 5 image file(s) cannot be used, in 2 record(s):" in message
    assert f"{img / 'd2.png'}: image file not found  [referenced by {tmp_path / 'd.json'}:" in message
    assert f"{img / 'ds' / 'g2.jpg'}: damaged or unreadable image" in message
    assert f"[referenced by {tmp_path / 'g.jsonl'}:2]" in message

    data, report = build_data(build_config({}, [*common, "data.check_images=decode",
                                                "data.skip_invalid_images=true"]), with_report=True)
    assert report.skipped_records == 2 and len(data) == 4
    stores = data.mixture.stores
    assert [len(store) for store in stores] == [2, 2]
    assert [stores[0][i]["image"] for i in range(2)] == ["d1.png", "d3.png"]
    assert [stores[1].where(i) for i in range(2)] == [f"{tmp_path / 'g.jsonl'}:1", f"{tmp_path / 'g.jsonl'}:3"]
    used = {next(m for m in data[i]["messages"] if m["role"] == "user")["content"][0]["path"]  # after any system
            for i in range(len(data))}
    assert used <= {str(img / "d1.png"), str(img / "d3.png"), str(img / "ds" / "g1.png")}


@pytest.mark.parametrize("workers", [0, 2])
def test_an_image_failing_during_training_is_reported_on_its_own_line(tiny_model_dir, jsonl, tmp_path, capfd,
                                                                      workers):
    """With the check off, the unreadable image stops training when reached: the message names the sample, its
    file:line and the image, and starts on a new line (main glued it onto the progress bar); from a DataLoader
    worker it is the same one line, not the worker's traceback."""
    from rscovlm.cli import main

    assert main(["train", f"model.model_name_or_path={tiny_model_dir}", f"data.paths=[{jsonl}]",
                 f"output_dir={tmp_path / 'out'}", "max_steps=4", "global_batch_size=1", "data.shuffle=false",
                 f"dataloader_num_workers={workers}", "data.check_images=none"]) == 2
    err = capfd.readouterr().err
    assert f"\nrscovlm: error: sample 1 ({jsonl}:2): {tmp_path / 'gone.png'}: image file not found\n" in err
    assert "Traceback" not in err


def test_pixel_bounds_below_one_merged_patch_are_refused_before_the_model_loads(tiny_model_dir, jsonl, tmp_path,
                                                                                monkeypatch):
    """max_pixels=100 cannot be met by a Qwen2.5-VL input (28x28 at least); main trained on 784-pixel inputs."""
    from rscovlm.train.config import ConfigError, build_config
    from rscovlm.train.trainer import train

    _no_model(monkeypatch)
    good = tmp_path / "good.jsonl"
    good.write_text(_line("a.png") + "\n")
    cfg = build_config({}, [f"model.model_name_or_path={tiny_model_dir}", f"data.paths=[{good}]",
                            f"output_dir={tmp_path / 'out'}", "data.min_pixels=100", "data.max_pixels=100"])
    with pytest.raises(ConfigError, match=r"data.max_pixels: 100 is below the smallest input of a qwen2_5_vl model "
                                          r"\(28x28 = 784 pixels\)"):
        train(cfg)


DISTRIBUTED_WORKER = """
import json, os, sys
import torch
import rscovlm.train.preflight as preflight
from rscovlm.train.config import ConfigError, build_config
from rscovlm.train.trainer import train

torch.set_num_threads(1)
tiny, data, out = sys.argv[1:4]
rank = int(os.environ["RANK"])
checked = []
real = preflight._check_one
preflight._check_one = lambda path, mode: checked.append(path) or real(path, mode)
common = [f"model.model_name_or_path={tiny}", f"data.paths=[{data}]", f"output_dir={out}/run", "deepspeed=none",
          "global_batch_size=2", "max_steps=2", "dataloader_num_workers=0", "save_steps=100"]
try:
    train(build_config({}, common))
    error = None
except ConfigError as err:
    error = str(err)
first = sorted(checked)
result = train(build_config({}, [*common, "data.skip_invalid_images=true"]))
with open(f"{out}/rank{rank}.json", "w") as fh:
    json.dump({"error": error, "checked": first, "skipped": result.image_check.skipped_records,
               "problems": sorted(result.image_check.problems), "kept": len(result.trainer.train_dataset),
               "step": result.global_step}, fh)
"""


@pytest.mark.slow
def test_ranks_split_the_image_check_and_agree_on_what_to_drop(tiny_model_dir, jsonl, tmp_path):
    """torchrun with 2 ranks: each rank checks half of the files, the results are exchanged, and both ranks stop
    with the same list, or (skip flag) drop the same records and train."""
    import os
    import subprocess

    from test_train_checkpoints import REPO, _torchrun

    script = tmp_path / "worker.py"
    script.write_text(DISTRIBUTED_WORKER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(_torchrun(script, tiny_model_dir, jsonl, tmp_path), env=env, capture_output=True,
                          text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    files = {str(tmp_path / n) for n in ("a.png", "b.png", "gone.png", "text.png")}
    assert set(ranks[0]["checked"]) | set(ranks[1]["checked"]) == files
    assert not set(ranks[0]["checked"]) & set(ranks[1]["checked"])
    for r in ranks:
        assert r["error"] == ranks[0]["error"] and "2 of 4 image file(s) cannot be used" in r["error"]
        assert r["problems"] == [str(tmp_path / "gone.png"), str(tmp_path / "text.png")]
        assert (r["skipped"], r["kept"], r["step"]) == (3, 2, 2)
    assert proc.stderr.count("data: 4 image file(s) checked") == 1  # printed by rank 0 only


def test_a_record_stating_another_image_size_is_reported_without_its_neighbours(tmp_path):
    """Detection targets are written for the size the record states: a COCO entry whose width/height disagree with
    the file is named (main failed with a BuildError when training reached it), other entries of the file stay."""
    from rscovlm.data.mixture import Mixture, MixtureConfig, MixtureDataset
    from rscovlm.data.records import write_coco
    from rscovlm.train.preflight import PreflightError, apply_image_check

    _png(tmp_path / "d.png", 300, 200)
    write_coco(tmp_path / "d.json", {
        "images": [{"id": 1, "file_name": "d.png", "width": 300, "height": 200},
                   {"id": 2, "file_name": "d.png", "width": 400, "height": 200}],
        "categories": [{"id": 1, "name": "plane"}], "annotations": []})
    config = {"units": [{"name": "det", "path": "d.json", "type": "detection", "images": "."}],
              "builder": {"load_images": True}}
    data = MixtureDataset(Mixture(MixtureConfig.from_dict(config, base=tmp_path)), mode="eval")
    with pytest.raises(PreflightError) as err:
        apply_image_check(data)
    assert f"{tmp_path / 'd.png'}: the image is 300x200, but its record(s) say 400x200" in str(err.value)
    assert "in 1 record(s)" in str(err.value)
    report = apply_image_check(data, skip_invalid=True)
    assert report.skipped_records == 1 and len(data) == 1
    assert data[0]["meta"]["id"] == "1"
