"""Exact resume: a run killed by SIGKILL in the middle of an epoch and resumed from its latest checkpoint trains on
exactly the samples, in the same rows and micro-batches, and with the same losses as a run that was never
interrupted - because the checkpoint holds the data stream's own position (``rscovlm_data_state.json``), not a
count of batches for the Trainer to skip. One process (with and without packing, a DataLoader worker prefetching
ahead of the training loop) and torchrun with two ranks (packed rows split between the ranks)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from rscovlm.data.records import write_coco, write_jsonl

REPO = Path(__file__).resolve().parent.parent

WORKER = textwrap.dedent('''
    import json, os, signal, sys
    import torch
    from transformers import TrainerCallback
    from rscovlm.train.config import build_config
    from rscovlm.train.trainer import train

    torch.set_num_threads(1)
    tiny, mix, out, phase, packing, workers, kill_at = sys.argv[1:8]
    rank = int(os.environ.get("RANK", "0"))

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == int(kill_at):
                os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no last save: a real crash

    cfg = build_config({}, [
        f"model.model_name_or_path={tiny}", f"output_dir={out}", "data.source=mixture", f"data.paths=[{mix}]",
        "data.min_pixels=3136", "data.max_pixels=50176", "data.max_length=768", f"packing={packing}",
        "packing_buffer=8", "global_batch_size=4", "per_device_batch_size=1", "max_steps=8", "learning_rate=1e-3",
        "weight_decay=0.0", "warmup_ratio=0.0", "lr_scheduler_type=constant", "logging_steps=1", "save_steps=3",
        "seed=11", "deepspeed=none", f"dataloader_num_workers={workers}", "record_samples=true",
        *(["resume_from_checkpoint=latest"] if phase == "resume" else [])])
    result = train(cfg, callbacks=[Kill()] if phase == "killed" else None)
    if rank == 0:
        with open(os.path.join(out, "result.json"), "w") as fh:
            json.dump({"losses": result.losses, "step": result.global_step}, fh)
''')


def _mixture(folder: Path, epoch_size: int) -> Path:
    """Two units: conversations with images of different sizes and answers of different lengths, and detection
    patches in two box kinds; ``epoch_size`` samples per epoch (chosen so the 8 steps cross an epoch boundary)."""
    rng = np.random.default_rng(0)
    convs = []
    for i in range(12):
        w, h = int(rng.choice([56, 112, 168])), int(rng.choice([56, 112]))
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"c{i}.png")
        convs.append({"id": f"conv/{i}", "source": "vqa", "task": "vqa", "messages": [
            {"role": "user", "content": [{"type": "image", "image": f"c{i}.png"},
                                         {"type": "text", "text": f"What is in picture {i}?"}]},
            {"role": "assistant", "content": " ".join(["ships and planes"] * int(rng.integers(1, 25)))}]})
    write_jsonl(folder / "conv.jsonl", convs)
    Image.fromarray(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)).save(folder / "p.png")
    anns = [{"id": k + 1, "image_id": 1 + k % 4, "category_id": 1, "bbox": [5, 5, 20, 20], "area": 400,
             "iscrowd": 0, "segmentation": [[5 + k, 5, 25 + k, 5, 25 + k, 25, 5 + k, 25]]} for k in range(10)]
    write_coco(folder / "det.json", {"images": [{"id": i, "file_name": "p.png", "width": 112, "height": 112}
                                                for i in range(1, 5)],
                                     "categories": [{"id": 1, "name": "plane"}], "annotations": anns})
    path = folder / "mix.yaml"
    path.write_text(yaml.safe_dump({"seed": 5, "epoch_size": epoch_size, "builder": {"random_resize_prob": 0.5},
                                    "units": [
        {"name": "conv", "path": "conv.jsonl", "type": "conversation", "images": ".", "weight": 2},
        {"name": "det", "path": "det.json", "type": "detection", "images": ".", "weight": 1,
         "box_kinds": ["hbb", "quad"]}]}))
    return path


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")


def _run(cmd: list[str], expect_kill: bool = False) -> None:
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    if expect_kill:
        assert proc.returncode != 0, "the run was expected to be killed"
    else:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


def _records(out: Path) -> list[dict]:
    lines = []
    for path in sorted(out.glob("rscovlm_samples*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines()]
    return sorted(lines, key=lambda r: (r["step"], r["rank"], r["epoch"], r["batch"]))


@pytest.mark.slow
@pytest.mark.parametrize("packing, workers, epoch_size", [("true", 1, 40), ("false", 0, 16)])
def test_sigkill_mid_epoch_then_resume_draws_the_same_samples_and_losses(tiny_model_dir, tmp_path, packing,
                                                                         workers, epoch_size):
    mix = _mixture(tmp_path, epoch_size)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    base = [sys.executable, str(script), str(tiny_model_dir), str(mix)]
    _run(base + [str(tmp_path / "full"), "full", packing, str(workers), "0"])
    _run(base + [str(tmp_path / "run"), "killed", packing, str(workers), "5"], expect_kill=True)
    run = tmp_path / "run"
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-3"]
    state = json.loads((run / "checkpoint-3" / "rscovlm_data_state.json").read_text())
    full_records = _records(tmp_path / "full")
    # the checkpoint's position is the micro-batch after step 3's last one, in the middle of an epoch
    after = [r for r in full_records if r["step"] == 4][0]
    assert (state["epoch"], state["batch"]) == (after["epoch"], after["batch"]) and state["batch"] > 0
    assert state["packing"] == (packing == "true") and state["rows_sha256"]
    killed = _records(run)
    assert max(r["step"] for r in killed) == 5  # the killed run got past the checkpoint
    _run(base + [str(run), "resume", packing, str(workers), "0"])
    resumed = _records(run)
    assert len({r["epoch"] for r in full_records}) >= 2  # the run crosses an epoch boundary
    assert resumed == full_records  # every step's rows of sample ids, lines after step 3 rewritten once
    if packing == "true":
        assert max(len(row) for r in full_records for row in r["rows"]) > 1
    full = json.loads((tmp_path / "full" / "result.json").read_text())
    again = json.loads((run / "result.json").read_text())
    assert again["step"] == full["step"] == 8
    np.testing.assert_allclose(again["losses"][3:], full["losses"][3:], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_two_ranks_packed_resume_after_sigkill(tiny_model_dir, tmp_path):
    """torchrun, 2 ranks on gloo: the ranks exchange token counts, share the packed rows without overlap, and a job
    killed mid-epoch resumes with every rank's rows and the losses of an uninterrupted job."""
    from test_train_checkpoints import _torchrun

    mix = _mixture(tmp_path, 80)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    args = [tiny_model_dir, mix]
    _run(_torchrun(script, *args, tmp_path / "full", "full", "true", 0, 0))
    proc = subprocess.Popen(_torchrun(script, *args, tmp_path / "run", "killed", "true", 0, 5), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert (tmp_path / "run" / "checkpoint-3").is_dir() and not (tmp_path / "run" / "checkpoint-6").exists()
    _run(_torchrun(script, *args, tmp_path / "run", "resume", "true", 0, 0))
    full = _records(tmp_path / "full")
    assert _records(tmp_path / "run") == full
    for step in range(1, 9):  # the ranks' rows in one step never share a sample
        ids = [tuple(k) for r in full if r["step"] == step for row in r["keys"] for k in row]
        assert len(ids) == len(set(ids))
    assert {r["rank"] for r in full} == {0, 1}
    losses = [json.loads((tmp_path / f / "result.json").read_text())["losses"] for f in ("full", "run")]
    np.testing.assert_allclose(losses[1][3:], losses[0][3:], rtol=1e-5, atol=1e-6)
    shutil.rmtree(tmp_path / "run")
