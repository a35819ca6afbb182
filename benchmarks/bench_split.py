"""Benchmark ``rscovlm dota split`` against mmrotate's ``tools/data/dota/split/img_split.py``, side by side.

    python benchmarks/bench_split.py --mmrotate /path/to/mmrotate --workers 2

1. generates ``--n`` synthetic scenes of ``--size`` px with DOTA labels (``rscovlm.dota.synthetic``; cached in
   ``--work-dir``);
2. runs both tools as separate processes with the same settings (size, gap, iof_thr, img_rate_thr, number of
   worker processes), each ``--repeat`` times, recording wall time and peak memory (summed RSS of the process
   tree, sampled every 20 ms);
3. asserts identical output: the same file lists under ``images/`` and ``annfiles/``, byte-identical annotation
   files, and identical decoded pixels of every patch;
4. prints the table and the speed ratio (best wall time of each).

Without ``--mmrotate`` only our tool runs (no ratio). mmrotate's script needs numpy, opencv, shapely and Pillow
only; it runs with ``--python`` (default: this interpreter).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))


def tree_rss(pid: int) -> int:
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_measured(cmd: list[str], env: dict | None = None) -> tuple[float, float, int, str]:
    """Run ``cmd``; return (wall seconds, CPU seconds (user + system of the whole process tree), peak summed RSS
    of the process tree in bytes, combined output)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(proc.pid))
            done.wait(0.02)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    th.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{out[-3000:]}")
    return wall, cpu, peak[0], out


def make_data(work: Path, n: int, size: int, seed: int, density: float) -> Path:
    data = work / f"data_n{n}_s{size}_seed{seed}_d{density:g}"
    stamp = data / "DONE"
    if not stamp.exists():
        from rscovlm.dota.synthetic import generate_dataset

        shutil.rmtree(data, ignore_errors=True)
        t0 = time.perf_counter()
        generate_dataset(data, n, size, seed, density=density)
        stamp.write_text("ok")
        print(f"generated {n} scenes of {size} x {size} in {time.perf_counter() - t0:.1f} s -> {data}")
    return data


def compare_outputs(a: Path, b: Path) -> dict:
    import cv2

    stats = {}
    for sub in ("images", "annfiles"):
        fa, fb = sorted(os.listdir(a / sub)), sorted(os.listdir(b / sub))
        if fa != fb:
            only_a, only_b = sorted(set(fa) - set(fb)), sorted(set(fb) - set(fa))
            raise AssertionError(f"{sub}: file lists differ; only in {a}: {only_a[:5]}, only in {b}: {only_b[:5]}")
        stats[sub] = len(fa)
    for name in stats and sorted(os.listdir(a / "annfiles")):
        if (a / "annfiles" / name).read_bytes() != (b / "annfiles" / name).read_bytes():
            raise AssertionError(f"annfiles/{name} differs")
    for name in sorted(os.listdir(a / "images")):
        x = cv2.imread(str(a / "images" / name), cv2.IMREAD_UNCHANGED)
        y = cv2.imread(str(b / "images" / name), cv2.IMREAD_UNCHANGED)
        if x is None or y is None or x.shape != y.shape or x.dtype != y.dtype or not np.array_equal(x, y):
            raise AssertionError(f"images/{name}: pixels differ")
    return stats


def dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mmrotate", type=Path, default=None, help="mmrotate checkout (reference tool)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for mmrotate's script")
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/rscovlm_bench_split"))
    ap.add_argument("--n", type=int, default=8, help="number of generated images")
    ap.add_argument("--size", type=int, default=4000, help="generated image side")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--density", type=float, default=40.0, help="objects per megapixel in the generated scenes")
    ap.add_argument("--split-size", type=int, default=1024)
    ap.add_argument("--gap", type=int, default=200)
    ap.add_argument("--iof-thr", type=float, default=0.7)
    ap.add_argument("--img-rate-thr", type=float, default=0.6)
    ap.add_argument("--workers", type=int, default=2, help="worker processes, the same for both tools")
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool (best wall time is compared)")
    ap.add_argument("--also-opencv", action="store_true",
                    help="also time our split with the OpenCV PNG writer (the fpng share of the speed-up)")
    args = ap.parse_args()

    args.work_dir.mkdir(parents=True, exist_ok=True)
    data = make_data(args.work_dir, args.n, args.size, args.seed, args.density)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    common = ["--size", str(args.split_size), "--gap", str(args.gap), "--iof-thr", str(args.iof_thr),
              "--img-rate-thr", str(args.img_rate_thr), "--workers", str(args.workers)]

    tools: dict[str, callable] = {}

    def ours(out: Path, encoder: str = "auto") -> list[str]:
        return [sys.executable, "-m", "rscovlm", "dota", "split", "--img-dir", str(data / "images"), "--ann-dir",
                str(data / "labelTxt"), "--out-dir", str(out), "--no-progress", "--png-encoder", encoder, *common]

    tools["rscovlm"] = ours
    if args.also_opencv:
        tools["rscovlm (opencv png)"] = lambda out: ours(out, "opencv")
    if args.mmrotate is not None:
        script = args.mmrotate / "tools" / "data" / "dota" / "split" / "img_split.py"
        if not script.is_file():
            raise SystemExit(f"{script} not found: --mmrotate must point to an mmrotate checkout")
        tools["mmrotate img_split"] = lambda out: [
            args.python, str(script), "--img-dirs", str(data / "images"), "--ann-dirs", str(data / "labelTxt"),
            "--sizes", str(args.split_size), "--gaps", str(args.gap), "--iof-thr", str(args.iof_thr),
            "--img-rate-thr", str(args.img_rate_thr), "--nproc", str(args.workers), "--save-dir", str(out)]

    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in tools}
    outs = {name: args.work_dir / f"out_{i}" for i, name in enumerate(tools)}
    for rep in range(args.repeat):
        for name, make_cmd in tools.items():  # interleaved, so load changes hit both tools alike
            shutil.rmtree(outs[name], ignore_errors=True)
            wall, cpu, peak, _ = run_measured(make_cmd(outs[name]), env=env)
            results[name].append((wall, cpu, peak))
            print(f"run {rep + 1}/{args.repeat} {name:22s} wall {wall:6.2f} s  cpu {cpu:6.2f} s  "
                  f"peak RSS {peak / 2**20:5.0f} MiB", flush=True)

    names = list(tools)
    for other in names[1:]:
        stats = compare_outputs(outs[names[0]], outs[other])
        print(f"identical output: {names[0]} vs {other}: {stats['images']} patches (pixels), "
              f"{stats['annfiles']} annotation files (bytes)")

    print(f"\n{args.n} images {args.size}x{args.size}, patches {args.split_size}/{args.gap}, "
          f"workers {args.workers}, cpu count {os.cpu_count()}")
    print(f"{'tool':24s} {'best wall s':>11s} {'mean wall s':>11s} {'best cpu s':>10s} {'peak RSS MiB':>12s} "
          f"{'output MiB':>10s}")
    best, best_cpu = {}, {}
    for name in names:
        walls = [r[0] for r in results[name]]
        best[name] = min(walls)
        best_cpu[name] = min(r[1] for r in results[name])
        print(f"{name:24s} {min(walls):11.2f} {np.mean(walls):11.2f} {best_cpu[name]:10.2f} "
              f"{max(r[2] for r in results[name]) / 2**20:12.0f} {dir_mb(outs[name]):10.0f}")
    ref = "mmrotate img_split"
    if ref in best:
        for name in names:
            if name != ref:
                print(f"speed-up {name} vs {ref}: wall {best[ref] / best[name]:.2f}x, "
                      f"cpu {best_cpu[ref] / best_cpu[name]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
