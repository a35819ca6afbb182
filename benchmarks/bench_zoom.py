"""Visual tokens, peak memory and wall time per ultra-high-resolution question: the Zoom-in Chain (cropping the
full-resolution original) vs one pass at the max pixel budget vs one pass at native resolution.

    python benchmarks/bench_zoom.py [--size 12000] [--repeat 2] [--native-cap 1512] [--work-dir /tmp/bench_zoom]

The scene: a ``--size`` x ``--size`` tiled BigTIFF, grey, with a dark frame around a 560 px patch of 1-px
stripes (horizontal in one scene, vertical in the other): the answer ("which way do the stripes run?") is
readable only at native resolution. The model: the offline tiny Qwen2.5-VL, trained once (100 steps, cached in
``--work-dir``) to call the zoom tool on the frame in pass 1 and to name the stripes' direction from a native crop.
Each question of the scene pair is asked ``--repeat`` times; every mode answers all of them in one batched call
(``--batch-size``), in its own process:

* ``chain``: :class:`rscovlm.infer.zoom.ZoomChain`, pass 1 at ``--max-pixels`` (the paper's 1008^2), the crop read
  from the original by a windowed read, pass 2 under the same budget;
* ``single``: one pass over the whole image downsampled to ``--max-pixels`` (the reference's one-pass answer);
* ``native``: one pass at native resolution. A 12000^2 image is 184k visual tokens (the tiny model's vision
  attention alone would need tens of GiB), so this pass runs on a ``--native-cap`` square window around the
  patch, and the whole image's figures are ESTIMATED from it: tokens exactly (the resize rule), time linearly
  in tokens (a lower bound: attention grows faster), memory as the decoded image plus the float32 pixel array
  the processor builds (the inputs alone, no activations).

Per mode: visual tokens per question (``chain``: the distinct image tokens, whole + crop, which is what a
prefix-cached engine such as vLLM computes; and the tokens prefilled by a backend without prefix caching: pass 2
re-reads the whole image, whole + whole + crop), the peak resident memory the questions add (VmHWM after a reset,
minus VmRSS before; Linux) and the process's peak RSS (model and libraries included), wall seconds per question,
the share the chain answered right (the model was trained on its conversations only), and the crop's size and its
``native_scale`` (1.0 = the crop reached the model at native resolution). Ratios are against ``single``.
Target: the chain costs at most 2x the single pass's visual tokens, with the crop at native resolution.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REGION_SIDE = 560  # the striped patch, original pixels
FRAME = 280  # the dark frame around it (what pass 1 can see downsampled)
QUESTION = "Which way do the stripes in the dark frame run?"
STRIPES = ("horizontal", "vertical")


def region(size: int) -> tuple[int, int, int, int]:
    """The striped patch of a ``size``^2 scene: a little right of and above the centre."""
    x0, y0 = int(size * 0.513), int(size * 0.303)
    return x0, y0, x0 + REGION_SIDE, y0 + REGION_SIDE


def render(size: int, x0: int, y0: int, x1: int, y1: int, stripes: str) -> np.ndarray:
    """Pixels of the scene's region [x0, x1) x [y0, y1)."""
    ys, xs = np.mgrid[y0:y1, x0:x1]
    rx0, ry0, rx1, ry1 = region(size)
    out = np.full((y1 - y0, x1 - x0, 3), 128, np.uint8)
    inside = (xs >= rx0) & (xs < rx1) & (ys >= ry0) & (ys < ry1)
    frame = (xs >= rx0 - FRAME) & (xs < rx1 + FRAME) & (ys >= ry0 - FRAME) & (ys < ry1 + FRAME) & ~inside
    out[frame] = 30
    on = ((ys if stripes == "horizontal" else xs) % 2).astype(bool)
    out[inside & on] = 255
    out[inside & ~on] = 0
    return out


def write_scene(path: Path, size: int, stripes: str, tile: int = 512) -> None:
    """The scene as a tiled, deflated BigTIFF, written tile by tile."""
    import tifffile

    rx0, ry0, rx1, ry1 = region(size)
    grey = np.full((tile, tile, 3), 128, np.uint8)

    def tiles():
        for ty in range(0, size, tile):
            for tx in range(0, size, tile):
                far = tx + tile <= rx0 - FRAME or tx >= rx1 + FRAME or ty + tile <= ry0 - FRAME or ty >= ry1 + FRAME
                yield grey if far else render(size, tx, ty, min(tx + tile, size), min(ty + tile, size), stripes)

    tmp = path.with_suffix(".part.tif")
    tifffile.imwrite(tmp, tiles(), shape=(size, size, 3), dtype=np.uint8, tile=(tile, tile), photometric="rgb",
                     compression="zlib", compressionargs={"level": 1}, bigtiff=True)
    tmp.rename(path)


def zoom_config(args):
    from rscovlm.infer.zoom import ZoomConfig

    return ZoomConfig(min_pixels=224 * 224, max_pixels=args.max_pixels, crop_max_pixels=args.max_pixels,
                      max_new_tokens=64)


def paths(args, work: Path) -> tuple[dict, Path]:
    """Where the scenes and the trained model of these settings live in ``work``."""
    return {s: work / f"scene_{args.size}_{s}.tif" for s in STRIPES}, work / f"model_{args.size}_{args.max_pixels}"


def prepare(args, work: Path) -> None:
    """Scenes and the trained model in ``work`` (made once)."""
    scenes, model = paths(args, work)
    for s, path in scenes.items():
        if not path.exists():
            print(f"writing {path}", file=sys.stderr, flush=True)
            write_scene(path, args.size, s)
    if not (model / "config.json").exists():
        train_model(args, scenes, work, model)


def train_model(args, scenes: dict, work: Path, out: Path) -> None:
    """100 AdamW steps of the tiny model on the two scenes' zoom conversations (pass 1 -> the tool call of the
    frame; pass 2 with the native crop the chain will read -> the stripes' direction)."""
    import torch
    from PIL import Image

    from rscovlm.imageio import ImageSource
    from rscovlm.infer.zoom import ZoomChain, _View
    from rscovlm.model.tiny import build_tiny_model
    from rscovlm.protocol.zoom import zoom_box_to_model, zoom_messages
    from rscovlm.train.config import build_config
    from rscovlm.train.trainer import train

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    print("training the tiny model on the zoom conversations (once)", file=sys.stderr, flush=True)
    tiny = build_tiny_model(work / "tiny")
    geometry = ZoomChain(None, zoom_config(args))  # the chain's own box -> region -> crop geometry
    samples = []
    for stripes, path in scenes.items():
        with ImageSource(path) as src:
            whole_size = geometry.whole_policy.plan(*src.size).model_size
            whole = src.resized(whole_size)
        box = zoom_box_to_model(region(args.size), (args.size, args.size), whole_size)
        view = _View((0.0, 0.0, float(args.size), float(args.size)), whole, "whole")
        r = geometry._box_to_region(box, view, (args.size, args.size))
        crop = geometry._snap((math.floor(r[0]), math.floor(r[1]), math.ceil(r[2]), math.ceil(r[3])),
                              (args.size, args.size))
        picture = Image.fromarray(render(args.size, *crop, stripes))
        messages = zoom_messages({"type": "image", "image": whole}, QUESTION, box,
                                 {"type": "image", "image": picture}, stripes)
        samples += [{"messages": messages[:3]}, {"messages": messages}]
    cfg = build_config({}, [
        f"model.model_name_or_path={tiny}", f"output_dir={work / 'run'}", "dataloader_num_workers=0",
        "weight_decay=0.0", "warmup_ratio=0.0", "lr_scheduler_type=constant", "logging_steps=50",
        "save_steps=100000", "seed=7", "deepspeed=none", "global_batch_size=4", "per_device_batch_size=4",
        "max_steps=100", "learning_rate=3e-3", "precision=fp32"])
    result = train(cfg, dataset=samples)
    result.trainer.model.save_pretrained(out)
    result.trainer.processing_class.save_pretrained(out)


# ---- one mode, in its own process ---------------------------------------------------------------------------

def _kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    raise KeyError(key)


def child(args) -> None:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rscovlm.imageio import ImageSource
    from rscovlm.infer import GenerationConfig, TransformersBackend
    from rscovlm.infer.runners import Query, Runner, RunnerConfig
    from rscovlm.infer.zoom import ZoomChain

    torch.set_num_threads(args.threads)
    scenes = json.loads(args.scenes)
    backend = TransformersBackend(AutoModelForImageTextToText.from_pretrained(args.model),
                                  AutoProcessor.from_pretrained(args.model),
                                  GenerationConfig(batch_size=args.batch_size, max_new_tokens=64))
    truth = [s for _ in range(args.repeat) for s in STRIPES]

    if args.child == "chain":
        chain = ZoomChain(backend, zoom_config(args))

        def run(n):
            return chain.run([Query(scenes[s], QUESTION, id=s) for s in truth[:n]])
    elif args.child == "single":
        runner = Runner(backend, RunnerConfig(min_pixels=224 * 224, max_pixels=args.max_pixels, max_new_tokens=64))

        def run(n):
            return runner.run("vqa", [Query(scenes[s], QUESTION, id=s) for s in truth[:n]])
    else:  # native: a cap x cap window around the patch, one model pixel per original pixel
        cap = args.native_cap
        rx0, ry0, rx1, ry1 = region(args.size)
        x0 = min(max(0, (rx0 + rx1 - cap) // 2), args.size - cap)
        y0 = min(max(0, (ry0 + ry1 - cap) // 2), args.size - cap)
        runner = Runner(backend, RunnerConfig(min_pixels=cap * cap, max_pixels=cap * cap, max_new_tokens=64))

        def run(n):
            queries = []
            for s in truth[:n]:
                with ImageSource(scenes[s]) as src:
                    queries.append(Query(src.crop(x0, y0, x0 + cap, y0 + cap), QUESTION, id=s))
            return runner.run("vqa", queries)

    run(1)  # warm-up: imports, allocator pools, GDAL
    measurable = Path("/proc/self/clear_refs").exists()
    if measurable:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current size
        except OSError:
            measurable = False
    before = _kib("VmRSS:") if measurable else 0
    start = time.perf_counter()
    results = run(len(truth))
    seconds = time.perf_counter() - start
    added = (_kib("VmHWM:") - before) / 1024 if measurable else float("nan")
    rows = []
    for r, s in zip(results, truth):
        g = r.generation
        row = {"right": r.answer.strip() == s, "visual": g.visual_tokens, "model_size": list(g.image_sizes[0])}
        if r.zoom is not None:
            z = r.zoom
            # the last pass's prompt holds every image of the chain (whole, then the crop)
            row.update(status=z["status"], pass_visual=z["visual_tokens"], distinct=z["visual_tokens"][-1],
                       calls=z["calls"])
        rows.append(row)
    print(json.dumps({"mode": args.child, "seconds": seconds, "n": len(truth), "added_mib": added, "rows": rows}))


def run_child(args, mode: str, scenes: dict, model: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--scenes", json.dumps({k: str(v) for k, v in scenes.items()}),
           "--model", str(model), "--size", str(args.size), "--repeat", str(args.repeat),
           "--max-pixels", str(args.max_pixels), "--native-cap", str(args.native_cap),
           "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    with tempfile.TemporaryFile("w+") as out_f, tempfile.TemporaryFile("w+") as err_f:
        proc = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, env=env, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # the child's own peak RSS (ru_maxrss)
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read(), err_f.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"mode {mode} failed:\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["process_peak_mib"] = usage.ru_maxrss / 1024
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=12000, help="scene side in pixels")
    ap.add_argument("--repeat", type=int, default=2, help="times each of the two questions is asked")
    ap.add_argument("--max-pixels", type=int, default=1008 * 1008, help="max pixel budget (pass 1, crop, single)")
    ap.add_argument("--native-cap", type=int, default=1512, help="side of the window the native pass runs on "
                                                                 "(a multiple of 28)")
    ap.add_argument("--batch-size", type=int, default=4, help="conversations per forward pass")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--work-dir", default="/tmp/bench_zoom", help="scenes and the trained model (kept)")
    ap.add_argument("--child", choices=["prepare", "chain", "single", "native"], default=None, help=argparse.SUPPRESS)
    ap.add_argument("--scenes", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "prepare":
        return prepare(args, Path(args.work_dir))
    if args.child:
        return child(args)
    if args.native_cap % 28:
        raise SystemExit("--native-cap must be a multiple of 28")
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    # in a process of its own: a child forked from a parent holding torch and a trained model would start with
    # (and report as its peak) the parent's resident memory
    subprocess.run([sys.executable, __file__, "--child", "prepare", "--size", str(args.size), "--max-pixels",
                    str(args.max_pixels), "--work-dir", str(work)], check=True)
    scenes, model = paths(args, work)
    res = {m: run_child(args, m, scenes, model) for m in ("chain", "single", "native")}
    report(args, res)


def report(args, res: dict) -> None:
    from rscovlm.resolution import smart_resize

    n = res["single"]["n"]
    single_tokens = float(np.mean([r["visual"] for r in res["single"]["rows"]]))
    chain_rows = res["chain"]["rows"]
    distinct = float(np.mean([r["distinct"] for r in chain_rows]))
    prefilled = float(np.mean([sum(r["pass_visual"]) for r in chain_rows]))
    calls = [c for r in chain_rows for c in r["calls"]]
    nat = res["native"]
    cap_tokens = float(np.mean([r["visual"] for r in nat["rows"]]))
    h, w = smart_resize(args.size, args.size, 28, 28 * 28, 1 << 40)
    full_tokens = h * w // (28 * 28)
    est_seconds = nat["seconds"] / nat["n"] * full_tokens / cap_tokens
    est_mib = (args.size * args.size * 3 + (h // 14) * (w // 14) * 3 * 2 * 14 * 14 * 4) / 2**20

    print(f"scene {args.size} x {args.size} (tiled BigTIFF), {n} questions per mode, batch {args.batch_size}, "
          f"{args.threads} torch thread(s); max pixels {args.max_pixels} ({int(args.max_pixels ** 0.5)}^2)")
    head = f"{'mode':44s}{'visual tokens/q':>16s}{'x single':>10s}{'added peak MiB':>16s}{'process peak MiB':>18s}" \
           f"{'s/question':>12s}{'right':>7s}"
    print(head)
    print("-" * len(head))

    def line(name, tokens, added, peak, sec, right):
        ratio = tokens / single_tokens
        print(f"{name:44s}{tokens:>16,.0f}{ratio:>9.2f}x{added:>16.0f}{peak:>18.0f}{sec:>12.2f}{right:>7s}")

    for mode, name, tokens in (("chain", "zoom chain: distinct (whole + crop)", distinct),
                               ("single", "one pass at max pixels", single_tokens),
                               ("native", f"one pass, native, {args.native_cap}^2 window", cap_tokens)):
        r = res[mode]
        # the model was trained on the chain's conversations only: the other modes' answers say nothing
        right = f"{sum(x['right'] for x in r['rows'])}/{r['n']}" if mode == "chain" else "-"
        line(name, tokens, r["added_mib"], r["process_peak_mib"], r["seconds"] / r["n"], right)
        if mode == "chain":
            print(f"{'  prefilled w/o prefix cache (2 x whole+crop)':44s}{prefilled:>16,.0f}"
                  f"{prefilled / single_tokens:>9.2f}x")
    print(f"{'one pass, native, whole image (ESTIMATED)':44s}{full_tokens:>16,d}{full_tokens / single_tokens:>9.0f}x"
          f"{est_mib:>16.0f}{'':>18s}{est_seconds:>12.1f}{'':>7s}")
    print("  estimate: tokens by the resize rule; MiB = decoded image + float32 pixel array (inputs alone);\n"
          "  seconds = the window's, scaled linearly by tokens (a lower bound)")
    statuses = [r.get("status") for r in chain_rows]
    scales = sorted({c["native_scale"] for c in calls})
    sizes = sorted({tuple(c["read_size"]) for c in calls if c["read_size"]})
    print(f"chain: {statuses.count('zoomed')}/{len(statuses)} zoomed; crops read {sizes} px from the original, "
          f"native_scale {scales} (1.0 = native resolution)")
    ok = distinct <= 2 * single_tokens and scales == [1.0]
    print(f"target (chain <= 2x single-pass visual tokens, crop at native resolution): {'met' if ok else 'NOT met'} "
          f"({distinct / single_tokens:.2f}x)")


if __name__ == "__main__":
    main()
