"""A real distributed run: ``torchrun --nproc_per_node 2`` + DeepSpeed ZeRO-1 on the gloo backend (CPU)."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

WORKER = textwrap.dedent('''
    import json, os, sys
    import numpy as np
    import torch
    from PIL import Image
    from rscovlm.train.config import build_config
    from rscovlm.train.trainer import train

    torch.set_num_threads(1)

    class Recording:
        """16 distinct conversations; remembers which indices this process fetched."""
        def __init__(self, n):
            self.seen = []
            self.items = []
            for i in range(n):
                rng = np.random.default_rng(i)
                img = Image.fromarray(rng.integers(0, 255, (56, 56, 3), dtype=np.uint8))
                self.items.append({"messages": [
                    {"role": "user", "content": [{"type": "image", "image": img},
                                                 {"type": "text", "text": f"How many planes? sample {i}"}]},
                    {"role": "assistant", "content": str(i)}]})
        def __len__(self):
            return len(self.items)
        def __getitem__(self, i):
            self.seen.append(int(i))
            return self.items[i]

    tiny, out = sys.argv[1], sys.argv[2]
    data = Recording(16)
    cfg = build_config({}, [f"model.model_name_or_path={tiny}", f"output_dir={out}", "global_batch_size=4",
                            "per_device_batch_size=1", "max_steps=3", "learning_rate=1e-3", "deepspeed=zero1",
                            "dataloader_num_workers=0", "logging_steps=1", "save_steps=1000",
                            "data.min_pixels=3136"])
    result = train(cfg, dataset=data)
    plugin = result.trainer.accelerator.state.deepspeed_plugin
    engine = result.trainer.model_wrapped
    with open(os.path.join(out, f"rank{os.environ['RANK']}.json"), "w") as fh:
        json.dump({"seen": data.seen, "losses": result.losses, "world": int(os.environ["WORLD_SIZE"]),
                   "accumulation": result.trainer.args.gradient_accumulation_steps,
                   "zero_stage": plugin.zero_stage if plugin else None,
                   "engine": type(engine).__name__,
                   "engine_stage": getattr(engine, "zero_optimization_stage", lambda: None)(),
                   "optimizer": type(getattr(engine, "optimizer", None)).__name__,
                   "backend": torch.distributed.get_backend(),
                   "step": result.global_step}, fh)
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_ranks_deepspeed_zero1_gloo(tiny_model_dir, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.fail("torchrun is not installed next to the Python interpreter")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
         str(script), str(tiny_model_dir), str(out)],
        env=env, capture_output=True, text=True, timeout=420,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r in ranks:
        assert r["world"] == 2 and r["zero_stage"] == 1 and r["step"] == 3
        # the training step really ran inside a DeepSpeed engine with the ZeRO stage-1 optimizer, over gloo
        assert r["engine"] == "DeepSpeedEngine" and r["engine_stage"] == 1, r
        assert r["optimizer"] == "DeepSpeedZeroOptimizer" and r["backend"] == "gloo", r
        assert r["accumulation"] == 2  # global batch 4 = 2 ranks x 1 per device x 2 accumulation steps
        assert len(r["losses"]) == 3 and all(math.isfinite(x) for x in r["losses"])
    assert ranks[0]["losses"] == ranks[1]["losses"]  # the logged loss is the all-reduced mean
    seen0, seen1 = set(ranks[0]["seen"]), set(ranks[1]["seen"])
    assert len(seen0) >= 6 and len(seen1) >= 6  # 3 steps x 2 micro-batches each (plus prefetch)
    assert not seen0 & seen1  # the ranks see different samples
    assert (out / "model.safetensors").is_file()
