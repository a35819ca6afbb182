"""Peak memory and time of ``rscovlm synth`` and ``rscovlm dota split`` on one huge scene (default 30000 x 30000).

    python benchmarks/bench_memory_big.py --size 30000 --workers 2 \\
        [--baseline /path/to/older/checkout --baseline-size 6000]

Every command runs as a separate process (``python -m rscovlm ...``); the resident memory (RSS) of the whole
process tree (the command and its worker processes) is summed and sampled every 20 ms (psutil); the table gives
the peak, the wall time and the CPU time of the tree. The steps, at ``--size``:

1. ``synth scenes --n 1 --size S``: one PNG scene + labelTxt;
2. ``synth big --width S --height S``: the same kind of scene as a tiled BigTIFF;
3. ``dota split`` of the PNG (a PNG decodes only top to bottom: one worker streams it band by band);
4. ``dota split`` of the TIFF (bands of windows shared by ``--workers`` processes, each reading its tiles).

Split settings: ``--split-size`` / ``--gap`` (1024 / 200), ``--workers`` (2). The data of each step is deleted
as soon as no later step needs it (a 30000^2 scene is ~2.7 GB of pixels: PNG ~2 GB, TIFF ~2 GB, each split
~4 GB of patches); peak disk use is about 8 GB in ``--work-dir``.

With ``--baseline DIR`` (a checkout of older code, run with ``PYTHONPATH=DIR``) the same steps also run at
``--baseline-size`` with both codes, side by side, and the outputs are compared: same scene pixels, same patch
files, identical annotation files and identical patch pixels. (The older ``synth scenes`` held the whole scene
in float32 work arrays, ~53 bytes per pixel: ~50 GB at 30000^2, so it is not run at ``--size``.)
``--baseline-full`` also runs the older split at ``--size`` (it decodes the whole image in a worker).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_split import compare_outputs, dir_mb, run_measured  # noqa: E402  (same folder)


def _env(code: Path) -> dict:
    return dict(os.environ, PYTHONPATH=str(code), OMP_NUM_THREADS="1")


def _cmd(*args: str) -> list[str]:
    # -P: the current folder does not shadow PYTHONPATH (which selects the code under test)
    return [sys.executable, "-P", "-m", "rscovlm", *args]


class Runner:
    def __init__(self, split_args: list[str]):
        self.rows: list[tuple] = []
        self.split_args = split_args

    def run(self, label: str, code_name: str, code: Path, size: int, cmd: list[str], out: Path | None = None):
        wall, cpu, peak, _ = run_measured(cmd, env=_env(code))
        mb = dir_mb(out) if out is not None and out.exists() else float("nan")
        self.rows.append((label, f"{size}^2", code_name, wall, cpu, peak, mb))
        print(f"{label:28s} {size:>6d}^2  {code_name:9s} wall {wall:7.1f} s  cpu {cpu:7.1f} s  "
              f"peak RSS {peak / 2**20:7.0f} MiB  output {mb:8.0f} MiB", flush=True)

    def scenes(self, work: Path, size: int, code_name: str, code: Path, steps: set[str]) -> dict[str, Path]:
        """Steps 1-2 (scene files) for one code; returns the folders the splits read."""
        d = work / f"{code_name}_{size}"
        shutil.rmtree(d, ignore_errors=True)
        png, tif = d / "png", d / "tif"
        if "scenes" in steps:
            self.run("synth scenes (PNG)", code_name, code, size,
                     _cmd("synth", "scenes", "--out", str(png), "--n", "1", "--size", str(size), "--seed", "0",
                          *(["--no-progress"] if code_name == "new" else [])), png)
        if "big" in steps:
            (tif / "images").mkdir(parents=True)
            (tif / "labelTxt").mkdir()
            self.run("synth big (tiled BigTIFF)", code_name, code, size,
                     _cmd("synth", "big", "--out", str(tif / "images" / "scene.tif"), "--width", str(size),
                          "--height", str(size), "--seed", "0", *(["--no-progress"] if code_name == "new" else [])),
                     tif / "images")
            shutil.move(tif / "images" / "scene.txt", tif / "labelTxt" / "scene.txt")
        return {"png": png, "tif": tif}

    def split(self, src: Path, kind: str, out: Path, size: int, code_name: str, code: Path) -> None:
        shutil.rmtree(out, ignore_errors=True)
        self.run(f"dota split ({kind})", code_name, code, size,
                 _cmd("dota", "split", "--img-dir", str(src / "images"), "--ann-dir", str(src / "labelTxt"),
                      "--out-dir", str(out), "--no-progress", *self.split_args), out)


def _same_pixels(a: Path, b: Path) -> None:
    import cv2
    import numpy as np

    x, y = cv2.imread(str(a), cv2.IMREAD_UNCHANGED), cv2.imread(str(b), cv2.IMREAD_UNCHANGED)
    if x is None or y is None or not np.array_equal(x, y):
        raise AssertionError(f"{a} and {b} differ")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=30000, help="scene side in pixels")
    ap.add_argument("--workers", type=int, default=2, help="split worker processes")
    ap.add_argument("--split-size", type=int, default=1024)
    ap.add_argument("--gap", type=int, default=200)
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/rscovlm_bench_memory"))
    ap.add_argument("--baseline", type=Path, default=None, help="checkout of older code to compare with")
    ap.add_argument("--baseline-size", type=int, default=6000, help="scene side for the side-by-side runs")
    ap.add_argument("--baseline-full", action="store_true", help="also run the older split at --size")
    ap.add_argument("--steps", default="scenes,big,split-png,split-tif",
                    help="comma-separated subset of scenes,big,split-png,split-tif")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    args = ap.parse_args()

    steps = set(args.steps.split(","))
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    r = Runner(["--size", str(args.split_size), "--gap", str(args.gap), "--workers", str(args.workers)])
    codes = [("new", REPO)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])

    if args.baseline:  # side by side at the smaller size, outputs compared
        srcs = {name: r.scenes(work, args.baseline_size, name, code, steps) for name, code in codes}
        if "scenes" in steps:
            _same_pixels(srcs["new"]["png"] / "images" / "syn_00000.png",
                         srcs["baseline"]["png"] / "images" / "syn_00000.png")
            print("same scene pixels (synth scenes): new vs baseline")
        for kind in ("png", "tif"):
            if f"split-{kind}" not in steps:
                continue
            outs = {}
            for name, code in codes:  # both read the new code's scene files
                outs[name] = work / f"split_{kind}_{name}_{args.baseline_size}"
                r.split(srcs["new"][kind], kind, outs[name], args.baseline_size, name, code)
            stats = compare_outputs(outs["new"], outs["baseline"])
            print(f"identical split output ({kind}): {stats['images']} patches (pixels), "
                  f"{stats['annfiles']} annotation files (bytes)")
            for out in outs.values():
                shutil.rmtree(out, ignore_errors=True)
        if not args.keep:
            for name, _ in codes:
                shutil.rmtree(work / f"{name}_{args.baseline_size}", ignore_errors=True)

    src = r.scenes(work, args.size, "new", REPO, steps)
    for kind in ("png", "tif"):
        if f"split-{kind}" not in steps:
            continue
        for name, code in codes:
            if name == "baseline" and not args.baseline_full:
                continue
            out = work / f"split_{kind}_{name}_{args.size}"
            r.split(src[kind], kind, out, args.size, name, code)
            shutil.rmtree(out, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(src[kind], ignore_errors=True)

    print(f"\nworkers {args.workers}, patches {args.split_size}/{args.gap}, cpu count {os.cpu_count()}")
    print(f"{'command':28s} {'scene':>8s} {'code':9s} {'wall s':>8s} {'cpu s':>8s} {'peak RSS MiB':>12s} "
          f"{'output MiB':>10s}")
    for label, size, code_name, wall, cpu, peak, mb in r.rows:
        print(f"{label:28s} {size:>8s} {code_name:9s} {wall:8.1f} {cpu:8.1f} {peak / 2**20:12.0f} {mb:10.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
