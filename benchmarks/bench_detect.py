"""Large-image detection throughput (patches/s): batched inference vs a loop of single requests.

    python benchmarks/bench_detect.py [--size 4096] [--batch 16] [--max-new-tokens 32] [--threads 1]

One generated aerial scene (:func:`rscovlm.dota.synthetic.write_scene`, ``--size`` px square, PNG) goes through
:func:`rscovlm.infer.detect.detect_paths` on the offline tiny Qwen2.5-VL (transformers backend, CPU unless a GPU is
present): split into the paper's 512 px patches with a 100 px gap, every patch answered, parsed with per-object
confidence, mapped back, merged and written (labelTxt, Task1, overlay). Twice, on the same loaded model:

* ``batched``: ``--batch`` patches per request list and per forward pass (left-padded);
* ``single``: one patch per request, one request at a time (a loop of single requests).

Greedy decoding gives both modes the same answers (the untrained tiny model mostly runs to ``--max-new-tokens``),
so the same tokens are generated and only the batching differs. Prints wall time, patches/s and the ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=4096, help="scene side in pixels")
    ap.add_argument("--batch", type=int, default=16, help="patches per forward pass (batched mode)")
    ap.add_argument("--max-new-tokens", type=int, default=32, help="answer budget per patch")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--work-dir", default=None, help="scene, model and outputs (default: a temporary folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(args, Path(args.work_dir or tmp))


def run(args, work: Path) -> None:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rscovlm.dota.synthetic import write_scene
    from rscovlm.infer import GenerationConfig, TransformersBackend
    from rscovlm.infer.detect import DetectConfig, detect_paths, patch_count
    from rscovlm.model.tiny import build_tiny_model

    torch.set_num_threads(args.threads)
    work.mkdir(parents=True, exist_ok=True)
    scene = work / f"scene_{args.size}.png"
    small = work / "warmup.png"
    if not scene.exists():
        write_scene(scene, args.size, args.size, seed=0)
    if not small.exists():
        write_scene(small, 924, 924, seed=1)  # 4 patches
    model_dir = work / "tiny"
    if not (model_dir / "config.json").exists():
        build_tiny_model(model_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForImageTextToText.from_pretrained(model_dir).to(device).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    n = patch_count(args.size, args.size, DetectConfig())
    print(f"scene {args.size} x {args.size}: {n} patches of 512 px (gap 100), {args.max_new_tokens} new tokens "
          f"each, tiny model on {device}, {args.threads} torch thread(s)")

    rows = {}
    for mode, batch in (("batched", args.batch), ("single", 1)):
        backend = TransformersBackend(model, processor, GenerationConfig(batch_size=batch,
                                                                         max_new_tokens=args.max_new_tokens))
        cfg = DetectConfig(batch_patches=batch, max_new_tokens=args.max_new_tokens)
        detect_paths([small], backend, cfg, work / f"warm_{mode}", overlay=False)  # warm-up: kernels, allocator
        start = time.perf_counter()
        report = detect_paths([scene], backend, cfg, work / f"out_{mode}")
        seconds = time.perf_counter() - start
        assert report.patches == n, (report.patches, n)
        rows[mode] = seconds
        print(f"{mode + ' (' + str(batch) + ' per pass)':22s} {seconds:8.1f} s  {n / seconds:8.2f} patches/s  "
              f"{report.objects} objects after merging", flush=True)
    print(f"batched vs single requests: {rows['single'] / rows['batched']:.2f}x the patches/s")


if __name__ == "__main__":
    sys.exit(main())
