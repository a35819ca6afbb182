"""DOTA metrics as users time them: whole ``rscovlm`` processes side by side with the DOTA devkit's script.

    PYTHONPATH=. python benchmarks/bench_dota_map.py [--devkit DIR] [--scales 1 4] [--repeat 3] [--first-run]

Data: ``make_detection_set(458 * s, 28500 * s, 94000 * s, classes=DOTA-v1.0, seed=0)`` written as labelTxt and
Task1 folders (scale ``s = 1`` is DOTA-v1.0-val-sized: 458 images, 28.5k objects, 94k detections).

Timed, each as a whole process (interpreter start, imports, reading, computing, printing; the median of
``--repeat`` runs after one warm-up run, so files are in the page cache and bytecode is compiled, as on a user's
second run; the median CPU time, user + system, is printed beside it: on a busy machine it stays close to what an
idle one measures):

* ``rscovlm eval dota`` (devkit protocol), with the compiled kernels and without them (``RSCOVLM_NO_NATIVE=1``,
  the numpy path, numba from its crossover on); ``rscovlm eval dota --protocol mmrotate1x``;
* ``rscovlm eval dota-sweep`` (val only: 20 score thresholds x 10 seeds x 10 IoU thresholds, mmrotate1x);
* ``rscovlm --help`` and ``rscovlm eval dota --help``;
* with ``--devkit DIR``: the devkit's ``dota_evaluation_task1.py`` (its ``main()``: 15 classes, IoU 0.5,
  11-point AP), run from a copy whose three paths point at the generated set; ``DIR`` must hold the script and a
  ``polyiou`` module (the devkit's swig build, or a ctypes wrapper of ``polyiou.cpp``). Its per-class APs are
  compared with ours.

``--first-run`` also times one ``eval dota`` as the first run after an editable install: it deletes this
checkout's ``rscovlm/**/__pycache__`` folders first (compiled bytecode and numba's kernel cache), once with the
compiled kernels and once without (numba, where it is used, then compiles its kernel).

Child processes run without ``PYTHONDONTWRITEBYTECODE`` (users do not set it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rscovlm.eval.synthetic_dets import make_detection_set, write_detection_set  # noqa: E402
from rscovlm.protocol.categories import DOTA_V1_0  # noqa: E402


def _env(**extra) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.update(extra)
    return env


CPU_TIMES: dict[float, float] = {}  # wall time of a run -> its CPU time (user + system)
MAX_RSS: dict[float, float] = {}  # wall time of a run -> its peak resident memory (MiB)


def _run(cmd: list[str], env: dict, cwd: Path | None = None) -> tuple[float, str]:
    """Wall time and stdout of one run; its CPU time (user + system) and peak RSS go to CPU_TIMES / MAX_RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        dt = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    CPU_TIMES[dt] = usage.ru_utime + usage.ru_stime
    MAX_RSS[dt] = usage.ru_maxrss / 1024
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-2000:]}")
    return dt, stdout


def _median(cmd: list[str], env: dict, repeat: int, cwd: Path | None = None) -> tuple[float, list[float], str]:
    _, out = _run(cmd, env, cwd)  # warm-up: page cache, bytecode
    times = [_run(cmd, env, cwd)[0] for _ in range(repeat)]
    return statistics.median(times), times, out


def _devkit_script(devkit: Path, gt_dir: Path, det_dir: Path, imageset: Path, out: Path) -> Path:
    text = (devkit / "dota_evaluation_task1.py").read_text()
    for name, value in (("detpath", f"{det_dir}/Task1_{{:s}}.txt"), ("annopath", f"{gt_dir}/{{:s}}.txt"),
                        ("imagesetfile", str(imageset))):
        text, n = re.subn(rf"^(\s*){name}\s*=\s*r?['\"].*?['\"]", lambda m: f"{m.group(1)}{name} = r'{value}'",
                          text, flags=re.M)
        if n == 0:
            raise SystemExit(f"--devkit: no '{name} = ...' line in {devkit / 'dota_evaluation_task1.py'}")
    out.write_text(text)
    return out


def _devkit_aps(stdout: str) -> dict[str, float]:
    names = re.findall(r"^classname:\s*(\S+)", stdout, flags=re.M)
    aps = [float(v) for v in re.findall(r"^ap:\s*(\S+)", stdout, flags=re.M)]
    return dict(zip(names, aps))


def _clear_bytecode() -> int:
    n = 0
    for d in (ROOT / "rscovlm").rglob("__pycache__"):
        shutil.rmtree(d)
        n += 1
    return n


def _cpu(times: list[float]) -> float:
    return statistics.median(CPU_TIMES[x] for x in times)


def _fmt(t: float, times: list[float]) -> str:
    cpu = statistics.median(CPU_TIMES[x] for x in times)
    rss = max(MAX_RSS[x] for x in times)
    return f"{t:6.3f} s  (CPU {cpu:.3f} s, peak RSS {rss:.0f} MiB; runs: {', '.join(f'{x:.3f}' for x in times)})"


def bench_scale(scale: int, root: Path, args, py: list[str]) -> dict:
    n_img, n_gt, n_det = 458 * scale, 28500 * scale, 94000 * scale
    gt_dir, det_dir = root / f"x{scale}" / "labelTxt", root / f"x{scale}" / "Task1"
    if not (gt_dir.is_dir() and det_dir.is_dir()):
        ds = make_detection_set(n_img, n_gt, n_det, classes=DOTA_V1_0.classes, seed=0)
        write_detection_set(ds, gt_dir, det_dir)
    imageset = root / f"x{scale}" / "imageset.txt"
    imageset.write_text("\n".join(sorted(p.stem for p in gt_dir.glob("*.txt"))) + "\n")
    print(f"\n== scale {scale}x: {n_img} images, ~{n_gt} objects, ~{n_det} detections ({root / f'x{scale}'})")
    res: dict = {}
    ours = py + ["eval", "dota", "--gt-dir", str(gt_dir), "--det-dir", str(det_dir)]
    json_out = root / f"x{scale}" / "ours.json"
    t, times, _ = _median(ours + ["--json", str(json_out)], _env(), args.repeat)
    res["eval_dota"] = t
    res["eval_dota_cpu"] = _cpu(times)
    print(f"ours   rscovlm eval dota (devkit protocol)            {_fmt(t, times)}")
    t, times, _ = _median(ours, _env(RSCOVLM_NO_NATIVE="1"), args.repeat)
    res["eval_dota_numpy"] = t
    res["eval_dota_numpy_cpu"] = _cpu(times)
    print(f"ours   same without the compiled kernels (numpy/numba) {_fmt(t, times)}")
    t, times, _ = _median(ours + ["--protocol", "mmrotate1x"], _env(), args.repeat)
    res["eval_dota_mmrotate1x"] = t
    res["eval_dota_mmrotate1x_cpu"] = _cpu(times)
    print(f"ours   rscovlm eval dota --protocol mmrotate1x          {_fmt(t, times)}")
    sweep = py + ["eval", "dota-sweep", "--val-gt", str(gt_dir), "--val-det", str(det_dir)]
    if scale in args.sweep_scales:
        t, times, _ = _median(sweep, _env(), args.repeat)
        res["sweep"] = t
        res["sweep_cpu"] = _cpu(times)
        print(f"ours   rscovlm eval dota-sweep (20 x 10 x 10, mmrotate1x) {_fmt(t, times)}")
        for mode in args.modes:
            t, times, _ = _median(sweep + ["--score-mode", mode], _env(), args.repeat)
            res[f"sweep_{mode}"], res[f"sweep_{mode}_cpu"] = t, _cpu(times)
            print(f"ours   same, --score-mode {mode:<29} {_fmt(t, times)}")
        if args.numpy_sweep:
            t, times, _ = _median(sweep, _env(RSCOVLM_NO_NATIVE="1"), 1)
            res["sweep_numpy"] = t
            res["sweep_numpy_cpu"] = _cpu(times)
            print(f"ours   same without the compiled kernels               {_fmt(t, times)}")
    if args.first_run:
        for label, extra in (("", {}), (" without the compiled kernels", {"RSCOVLM_NO_NATIVE": "1"})):
            _clear_bytecode()
            t, _ = _run(ours, _env(**extra))
            key = "first_run" + ("_numpy" if extra else "")
            res[key], res[key + "_cpu"] = t, CPU_TIMES[t]
            print(f"ours   first run after install{label}: {t:.3f} s (CPU {CPU_TIMES[t]:.3f} s; bytecode and "
                  "kernel caches cleared)")
        _run(ours, _env())  # leave compiled bytecode behind
    if args.devkit:
        script = _devkit_script(args.devkit.resolve(), gt_dir, det_dir, imageset, root / f"x{scale}" / "devkit.py")
        env = _env(PYTHONPATH=str(args.devkit.resolve()))
        t, times, out = _median([sys.executable, str(script)], env, args.dk_repeat, cwd=args.devkit.resolve())
        res["devkit"] = t
        res["devkit_cpu"] = _cpu(times)
        dk = _devkit_aps(out)
        mine = json.loads(json_out.read_text())["per_class"]
        diff = max(abs(dk[c] - mine[c]["ap"]) for c in dk)
        print(f"devkit dota_evaluation_task1.py                          {_fmt(t, times)}  "
              f"({len(dk)} classes, max |AP diff| vs ours {diff:.1e})")
        for key, label in (("eval_dota", "eval dota"), ("eval_dota_numpy", "eval dota without compiled kernels")):
            print(f"ratio  {label}: {res['devkit'] / res[key]:.1f}x faster than the devkit "
                  f"(CPU time: {res['devkit_cpu'] / res[key + '_cpu']:.1f}x)")
        if "sweep" in res:
            print(f"ratio  full sweep / one devkit mAP: {res['sweep'] / res['devkit']:.2f} "
                  f"(CPU time: {res['sweep_cpu'] / res['devkit_cpu']:.2f})")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devkit", type=Path, default=None, help="DOTA devkit folder (see above)")
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 4], help="set sizes, multiples of DOTA-val")
    ap.add_argument("--sweep-scales", type=int, nargs="*", default=[1], help="scales at which to time the sweep")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per command (median reported)")
    ap.add_argument("--dk-repeat", type=int, default=3, help="timed runs of the devkit")
    ap.add_argument("--first-run", action="store_true", help="also time a first run (clears rscovlm/**/__pycache__)")
    ap.add_argument("--numpy-sweep", action="store_true", help="also time the sweep without the compiled kernels")
    ap.add_argument("--modes", nargs="*", default=[], choices=["ones", "random-per-image"],
                    help="also time the sweep under these score modes (the default one is random)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the generated sets here (default: temp)")
    args = ap.parse_args(argv)
    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    root = Path(tmp.name) if tmp else args.workdir
    root.mkdir(parents=True, exist_ok=True)
    py = [sys.executable, "-m", "rscovlm"]
    print(f"python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f} at start")
    from rscovlm._compiled import native

    print(f"compiled kernels: {'built' if native() is not None else 'NOT built (numpy/numba paths)'}")
    for label, cmd in (("rscovlm --help", py + ["--help"]), ("rscovlm eval dota --help", py + ["eval", "dota",
                                                                                                 "--help"])):
        t, times, _ = _median(cmd, _env(), max(args.repeat, 5))
        print(f"ours   {label:<48} {_fmt(t, times)}")
    results = {s: bench_scale(s, root, args, py) for s in args.scales}
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    print(json.dumps(results))
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
