"""Checkpoints are written atomically and ``resume_from_checkpoint=latest`` takes the latest *complete* one: a
process killed while saving (a real SIGKILL in the middle of the Trainer's writes), folders with files removed,
and folders written without rscovlm's manifest."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from rscovlm.train.checkpoints import MANIFEST, STAGING, checkpoint_problem, latest_complete

REPO = Path(__file__).resolve().parent.parent
COMMON = ("global_batch_size=2", "per_device_batch_size=1", "learning_rate=1e-3", "save_steps=2",
          "save_total_limit=5")

# Trains 4 steps with a checkpoint every 2; while writing checkpoint-4 it stops between the optimizer and the
# RNG states (after weights and optimizer are on disk, before trainer_state.json) and waits to be killed.
KILLED_WORKER = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    import torch
    import transformers
    sys.path.insert(0, sys.argv[3])
    from test_train_loop import _cfg, _task_samples
    from rscovlm.train.trainer import train

    torch.set_num_threads(1)
    tiny, out, _, flag = sys.argv[1], Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    stock = transformers.Trainer._save_rng_state

    def stalled(self, output_dir):
        stock(self, output_dir)
        if self.state.global_step == 4:
            flag.write_text(str(output_dir))
            time.sleep(600)

    transformers.Trainer._save_rng_state = stalled
    train(_cfg(tiny, out, *sys.argv[5:], "max_steps=4"), dataset=list(_task_samples().values()))
''')


def _cfg(model_dir, out, *extra):
    from test_train_loop import _cfg as cfg

    return cfg(model_dir, out, *COMMON, *extra)


def _data():
    from test_train_loop import _task_samples

    return list(_task_samples().values())


def _train(model_dir, out, *extra):
    import torch

    from rscovlm.train.trainer import train

    torch.set_num_threads(1)
    return train(_cfg(model_dir, out, *extra), dataset=_data())


@pytest.mark.slow
def test_sigkill_while_saving_leaves_no_checkpoint_folder_and_latest_resumes_from_the_previous(
        tiny_model_dir, tmp_path, capfd):
    out, flag = tmp_path / "run", tmp_path / "saving"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    script = tmp_path / "worker.py"
    script.write_text(KILLED_WORKER)
    proc = subprocess.Popen([sys.executable, str(script), str(tiny_model_dir), str(out), str(REPO / "tests"),
                             str(flag), *COMMON], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not flag.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the worker never reached the save of checkpoint-4:\n" + proc.stdout.read().decode()[-3000:])
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    # weights and optimizer of step 4 were written, but only under incomplete-checkpoints/
    staged = out / STAGING / "checkpoint-4"
    assert Path(flag.read_text()) == staged
    assert (staged / "model.safetensors").is_file() and (staged / "optimizer.pt").is_file()
    assert not (out / "checkpoint-4").exists()
    assert checkpoint_problem(out / "checkpoint-2") is None and (out / "checkpoint-2" / MANIFEST).is_file()
    scan = latest_complete(out)
    assert scan.latest == out / "checkpoint-2" and scan.leftovers == [staged]

    capfd.readouterr()
    resumed = _train(tiny_model_dir, out, "max_steps=4", "resume_from_checkpoint=latest")
    err = capfd.readouterr().err
    assert f"ignoring interrupted checkpoint write {staged}" in err
    assert resumed.global_step == 4
    # the two steps after the resume are those of a run that was never interrupted
    full = _train(tiny_model_dir, tmp_path / "full", "max_steps=4")
    np.testing.assert_allclose(resumed.losses[2:], full.losses[2:], rtol=1e-5, atol=1e-6)
    assert checkpoint_problem(out / "checkpoint-4") is None
    assert not (out / STAGING).exists()  # the next save cleared the leftover


@pytest.mark.slow
def test_latest_skips_folders_with_missing_files_and_names_them(tiny_model_dir, tmp_path, capfd):
    out = tmp_path / "run"
    _train(tiny_model_dir, out, "max_steps=6")
    for step in (2, 4, 6):
        folder = out / f"checkpoint-{step}"
        manifest = json.loads((folder / MANIFEST).read_text())
        assert manifest["step"] == step
        assert {"model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"} \
            <= set(manifest["files"])
    assert not (out / STAGING).exists()

    # a real checkpoint with a file removed, another with a file cut short: both incomplete, named, skipped
    (out / "checkpoint-6" / "optimizer.pt").unlink()
    with open(out / "checkpoint-4" / "model.safetensors", "r+b") as fh:
        fh.truncate(100)
    assert "optimizer.pt is missing" in checkpoint_problem(out / "checkpoint-6")
    assert "model.safetensors has 100 bytes" in checkpoint_problem(out / "checkpoint-4")
    capfd.readouterr()
    resumed = _train(tiny_model_dir, out, "max_steps=7", "resume_from_checkpoint=latest")
    err = capfd.readouterr().err
    assert f"ignoring incomplete checkpoint {out / 'checkpoint-6'}: optimizer.pt is missing" in err
    assert f"ignoring incomplete checkpoint {out / 'checkpoint-4'}: model.safetensors has 100 bytes" in err
    assert resumed.global_step == 7
    # resumed from 2: the incomplete 4 and 6 were rewritten, complete this time
    for step in (4, 6):
        assert checkpoint_problem(out / f"checkpoint-{step}") is None

    # an explicit folder must be complete too
    from rscovlm.train.config import ConfigError

    (out / "checkpoint-6" / "scheduler.pt").unlink()
    with pytest.raises(ConfigError, match="checkpoint-6 is not a complete checkpoint: scheduler.pt is missing"):
        _train(tiny_model_dir, out, "max_steps=8", f"resume_from_checkpoint={out / 'checkpoint-6'}")


def test_folders_without_manifest_are_judged_by_their_trainer_state(tmp_path):
    """Checkpoints written by the stock Trainer (or an older rscovlm): complete when trainer_state.json - written
    last - is there, parses and names the folder's step; a DeepSpeed 'latest' tag must name an existing folder."""
    def folder(step, state=True, tag=None):
        path = tmp_path / f"checkpoint-{step}"
        path.mkdir()
        (path / "model.safetensors").write_bytes(b"x" * 10)
        if state is True:
            (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        elif state:
            (path / "trainer_state.json").write_text(state)
        if tag:
            (path / "latest").write_text(tag)
        return path

    folder(10)
    folder(20, tag="global_step20")
    folder(30, state='{"global_step": 3')
    folder(40, state=False)
    (folder(50, tag="global_step50") / "global_step50").mkdir()
    folder(60, state=json.dumps({"global_step": 59}))
    assert checkpoint_problem(tmp_path / "checkpoint-10") is None
    assert "names global_step20, which is missing" in checkpoint_problem(tmp_path / "checkpoint-20")
    assert "not valid JSON" in checkpoint_problem(tmp_path / "checkpoint-30")
    assert "no trainer_state.json" in checkpoint_problem(tmp_path / "checkpoint-40")
    assert checkpoint_problem(tmp_path / "checkpoint-50") is None
    assert "says global_step 59" in checkpoint_problem(tmp_path / "checkpoint-60")
    scan = latest_complete(tmp_path)
    assert scan.latest == tmp_path / "checkpoint-50"
    assert [p.name for p, _ in scan.skipped] == ["checkpoint-60"]
    shutil.rmtree(tmp_path / "checkpoint-50")
    shutil.rmtree(tmp_path / "checkpoint-60")
    scan = latest_complete(tmp_path)
    assert scan.latest == tmp_path / "checkpoint-10"
    assert [p.name for p, _ in scan.skipped] == ["checkpoint-40", "checkpoint-30", "checkpoint-20"]
    assert len(scan.warnings()) == 3 and all("ignoring incomplete checkpoint" in w for w in scan.warnings())


DEEPSPEED_WORKER = textwrap.dedent('''
    import json, os, sys, time
    from pathlib import Path
    import numpy as np
    import torch
    import transformers
    from PIL import Image
    from rscovlm.train.config import build_config
    from rscovlm.train.trainer import train

    torch.set_num_threads(1)
    tiny, out, phase = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    rank = int(os.environ["RANK"])
    items = []
    for i in range(16):
        rng = np.random.default_rng(i)
        img = Image.fromarray(rng.integers(0, 255, (56, 56, 3), dtype=np.uint8))
        items.append({"messages": [{"role": "user", "content": [{"type": "image", "image": img},
                                                                {"type": "text", "text": f"How many? {i}"}]},
                                   {"role": "assistant", "content": str(i)}]})

    def cfg(folder, *extra):
        return build_config({}, [f"model.model_name_or_path={tiny}", f"output_dir={folder}", "global_batch_size=4",
                                 "per_device_batch_size=1", "learning_rate=1e-3", "deepspeed=zero1",
                                 "dataloader_num_workers=0", "logging_steps=1", "save_steps=2", "max_steps=4",
                                 "data.min_pixels=3136", *extra])

    if phase == "full":
        result = train(cfg(out / "full"), dataset=items)
        if rank == 0:
            (out / "full.json").write_text(json.dumps(result.losses))
        stock = transformers.Trainer._save_rng_state

        def stalled(self, output_dir):
            stock(self, output_dir)
            if self.state.global_step == 4:
                (out / f"saving{rank}").write_text(str(output_dir))
                time.sleep(600)

        transformers.Trainer._save_rng_state = stalled
        train(cfg(out / "run"), dataset=items)
    else:
        result = train(cfg(out / "run", "resume_from_checkpoint=latest"), dataset=items)
        if rank == 0:
            (out / "resumed.json").write_text(json.dumps({"losses": result.losses, "step": result.global_step}))
''')


def _torchrun(script, *args) -> list[str]:
    from test_train_distributed import _free_port

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.fail("torchrun is not installed next to the Python interpreter")
    return [torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
            str(script), *map(str, args)]


@pytest.mark.slow
def test_deepspeed_checkpoints_are_atomic_across_ranks_and_resume_after_a_kill(tiny_model_dir, tmp_path):
    """torchrun, 2 ranks, DeepSpeed ZeRO-1 on gloo: every rank's files (optimizer shards in global_stepN/, one RNG
    state per rank) are in the checkpoint before it is published; a SIGKILL of the whole job while both ranks are
    writing checkpoint-4 leaves no checkpoint-4, and `latest` resumes from checkpoint-2 with the losses of an
    uninterrupted run."""
    pytest.importorskip("deepspeed")
    script = tmp_path / "worker.py"
    script.write_text(DEEPSPEED_WORKER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests"),
                                                       os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    log = open(tmp_path / "full.log", "wb")
    proc = subprocess.Popen(_torchrun(script, tiny_model_dir, tmp_path, "full"), env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 400
    try:
        while not all((tmp_path / f"saving{r}").exists() for r in (0, 1)):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the job never reached the save of checkpoint-4:\n" +
                            (tmp_path / "full.log").read_text()[-4000:])
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        log.close()

    out = tmp_path / "run"
    full = json.loads((tmp_path / "full.json").read_text())
    manifest = json.loads((out / "checkpoint-2" / MANIFEST).read_text())["files"]
    for name in ("global_step2/zero_pp_rank_0_mp_rank_00_optim_states.pt",
                 "global_step2/zero_pp_rank_1_mp_rank_00_optim_states.pt", "global_step2/mp_rank_00_model_states.pt",
                 "rng_state_0.pth", "rng_state_1.pth", "latest", "trainer_state.json"):
        assert name in manifest, name
    assert not (out / "checkpoint-4").exists()
    assert (out / STAGING / "checkpoint-4" / "global_step4").is_dir()
    # a DeepSpeed checkpoint missing one rank's optimizer shard is incomplete
    broken = tmp_path / "broken" / "checkpoint-2"
    shutil.copytree(out / "checkpoint-2", broken)
    (broken / "global_step2" / "zero_pp_rank_1_mp_rank_00_optim_states.pt").unlink()
    assert "zero_pp_rank_1_mp_rank_00_optim_states.pt is missing" in checkpoint_problem(broken)

    proc = subprocess.run(_torchrun(script, tiny_model_dir, tmp_path, "resume"), env=env,
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert f"ignoring interrupted checkpoint write {out / STAGING / 'checkpoint-4'}" in proc.stderr
    resumed = json.loads((tmp_path / "resumed.json").read_text())
    assert resumed["step"] == 4
    np.testing.assert_allclose(resumed["losses"][2:], full[2:], rtol=1e-5, atol=1e-6)
    assert checkpoint_problem(out / "checkpoint-4") is None
