"""DOTA metrics benchmark: one mAP and the full AP_nc sweep on a DOTA-v1.0-val-sized generated set, side by side
with the DOTA devkit's ``voc_eval`` when it is available.

    PYTHONPATH=. python benchmarks/bench_dota_map.py [--devkit DIR] [--images 458 --gt 28500 --dets 100000]

``--devkit DIR``: a folder with the devkit's ``dota_evaluation_task1.py`` where ``import polyiou`` works (the
devkit's swig module built in place, or any module exposing ``VectorDouble``/``iou_poly`` from its
``polyiou.cpp``). The devkit is run exactly as its ``main()`` does: ``voc_eval`` per class, 11-point AP, IoU 0.5,
on the same files; its per-class APs are compared with ours.

Measured: wall time of one mAP end to end (reading the folders included, as the devkit does) and of the
computation alone; the full sweep (20 score thresholds x 10 seeds x 10 IoU thresholds, reading included);
peak memory (tracemalloc: Python + numpy allocations; and the process's max RSS). Then the MMRotate 1.x protocol
(``mmrotate1x``): one mAP, and the sweep under each score mode (``--modes``; ``random`` is vectorized over the
thresholds, ``ones`` and ``random-per-image`` rank once per threshold, seed and class).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rscovlm.eval.ap_nc import DEFAULT_SCORE_THRS, ap_nc_table  # noqa: E402
from rscovlm.eval.dota_data import load_gt_dir, load_task1_dir  # noqa: E402
from rscovlm.eval.dota_map import compute_overlaps, eval_dota, map_from_overlaps  # noqa: E402
from rscovlm.eval.synthetic_dets import make_detection_set, write_detection_set  # noqa: E402
from rscovlm.protocol.categories import DOTA_V1_0  # noqa: E402


def _timed(fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _peak(fn) -> tuple[float, object]:
    tracemalloc.start()
    out = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20, out


def run_devkit(devkit: Path, gt_dir: Path, det_dir: Path, image_ids: list[str], classes: list[str]):
    sys.path.insert(0, str(devkit))
    dk = importlib.import_module("dota_evaluation_task1")
    imageset = gt_dir.parent / "imageset.txt"
    imageset.write_text("\n".join(image_ids) + "\n")
    aps = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for c in classes:
            _, _, ap = dk.voc_eval(str(det_dir / "Task1_{:s}.txt"), str(gt_dir / "{:s}.txt"), str(imageset), c,
                                   ovthresh=0.5, use_07_metric=True)
            aps[c] = float(ap)
    return aps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devkit", type=Path, default=None, help="DOTA_devkit folder (see module docstring)")
    ap.add_argument("--images", type=int, default=458)
    ap.add_argument("--gt", type=int, default=28500)
    ap.add_argument("--dets", type=int, default=100000)
    ap.add_argument("--image-size", type=float, default=2000.0, help="side of the generated images (px)")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="data generation seed")
    ap.add_argument("--repeat", type=int, default=3, help="best of N for the one-mAP timing")
    ap.add_argument("--workdir", type=Path, default=None, help="where to write the generated set (default: temp)")
    ap.add_argument("--modes", nargs="*", default=["random", "ones", "random-per-image"],
                    help="score modes to time under mmrotate1x (none: skip)")
    args = ap.parse_args(argv)

    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    root = Path(tmp.name) if tmp else args.workdir
    gt_dir, det_dir = root / "labelTxt", root / "Task1"
    ds = make_detection_set(args.images, args.gt, args.dets, classes=DOTA_V1_0.classes, seed=args.seed,
                            image_size=args.image_size, invalid_rate=0.03, score_decimals=4)
    write_detection_set(ds, gt_dir, det_dir)
    n_gt = sum(len(g.quads) for g in ds.gt.classes.values())
    n_det = sum(len(d.quads) for d in ds.dets.classes.values())
    print(f"data: {args.images} images, {n_gt} ground-truth objects, {n_det} detections, 15 classes "
          f"(~3% degenerate/self-intersecting quads, scores with 4 decimals -> ties) in {root}")

    # ---- ours: one mAP ---------------------------------------------------------------------------------------
    eval_dota(gt_dir, det_dir)  # warm-up: numba kernel load, file cache
    t_map, res = _timed(lambda: eval_dota(gt_dir, det_dir), args.repeat)
    gt = load_gt_dir(gt_dir)
    dets = load_task1_dir(det_dir, gt)
    t_load, _ = _timed(lambda: (lambda g: load_task1_dir(det_dir, g))(load_gt_dir(gt_dir)), args.repeat)
    t_ov, overlaps = _timed(lambda: compute_overlaps(gt, dets, "dota"), args.repeat)
    t_ap, _ = _timed(lambda: map_from_overlaps(overlaps, 0.5, "11point"), args.repeat)
    n_pairs = sum(len(o.pair_det) for o in overlaps.values())
    print(f"ours   one mAP (dota, IoU 0.5, 11-point): {t_map:.3f} s end to end  [read {t_load:.3f} s, "
          f"IoUs {t_ov:.3f} s for {n_pairs} candidate pairs, matching+AP {t_ap:.3f} s]  mAP {100 * res.mAP:.2f}")

    # ---- ours: full AP_nc sweep ----------------------------------------------------------------------------
    def sweep():
        g = load_gt_dir(gt_dir)
        d = load_task1_dir(det_dir, g)
        return ap_nc_table(compute_overlaps(g, d, "dota"), score_thrs=DEFAULT_SCORE_THRS, seeds=args.seeds,
                           iou_spec="0.5:0.95")

    t_sweep, table = _timed(sweep, 1)
    print(f"ours   full AP_nc sweep ({len(table.score_thrs)} thresholds x {len(table.seeds)} seeds x "
          f"{len(table.iou_thrs)} IoU thresholds = {table.ap.size} class APs): {t_sweep:.2f} s")
    mem_map, _ = _peak(lambda: eval_dota(gt_dir, det_dir))
    mem_sweep, _ = _peak(sweep)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"ours   peak traced memory: one mAP {mem_map:.0f} MiB, sweep {mem_sweep:.0f} MiB; process max RSS "
          f"{rss:.0f} MiB")

    # ---- ours: mmrotate1x ----------------------------------------------------------------------------------
    t_ov1, ov1 = _timed(lambda: compute_overlaps(gt, dets, "mmrotate1x"), 1)
    t_ap1, res1 = _timed(lambda: map_from_overlaps(ov1, 0.5, "11point"), args.repeat)
    print(f"ours   one mAP (mmrotate1x): IoUs {t_ov1:.3f} s, matching+AP {t_ap1:.3f} s  mAP {100 * res1.mAP:.2f}")
    for mode in args.modes:
        t_m, tab = _timed(lambda: ap_nc_table(ov1, score_thrs=DEFAULT_SCORE_THRS, seeds=args.seeds,
                                              iou_spec="0.5:0.95", score_mode=mode), 1)
        print(f"ours   mmrotate1x sweep, score mode {mode}: {tab.ap.size} class APs in {t_m:.2f} s (IoUs reused)")

    # ---- devkit ----------------------------------------------------------------------------------------------
    if args.devkit is None:
        print("devkit: not given (--devkit DIR) - no side-by-side ratio")
        return 0
    classes = list(res.classes)
    t_dk, dk_aps = _timed(lambda: run_devkit(args.devkit, gt_dir, det_dir, gt.image_ids, classes), 1)
    dk_map = float(np.mean([dk_aps[c] for c in classes]))
    diff = max(abs(dk_aps[c] - res.per_class[c].ap) for c in classes)
    print(f"devkit one mAP (voc_eval x {len(classes)} classes): {t_dk:.2f} s  mAP {100 * dk_map:.2f}  "
          f"max |AP diff| vs ours {diff:.2e}")
    print(f"ratio  one mAP: ours is {t_dk / t_map:.1f}x faster than the devkit (target >= 20x)")
    print(f"ratio  full sweep / one devkit mAP: {t_sweep / t_dk:.2f} (target <= 3)")
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
