"""Parity of rscovlm's detection metrics with the reference implementations, run unchanged outside the repository.

    python benchmarks/parity_reference_metrics.py --mmrotate PATH [--mmrotate-ref 1.x] \\
        --mllm-mmrotate PATH [--mllm-ref HEAD] --mmdet-mean-ap FILE [--size quick|medium|val] [--json OUT]

``PATH`` is a checkout or a (bare) git repository of open-mmlab/mmrotate (branch 1.x) and VisionXLab/mllm-mmrotate;
``FILE`` is mmdetection's ``mmdet/evaluation/functional/mean_ap.py`` (only its ``average_precision`` is used).
Nothing of theirs is copied into the project: their files are written, unchanged, into a temporary folder next to
minimal stand-ins (written by this script) for what is not installable here - mmcv's compiled ``box_iou_rotated``
(replaced by an exact shapely IoU of the rotated rectangles, with mmcv's "area < 1e-14 -> 0" rule, returned as
float32), mmengine's registry/logging/file IO/``Evaluator``, mmdet's box registry, and the scripts' output libraries
(terminaltables, pandas, fire). Needs torch and shapely (the reference code calls torch).

Checks, on sets from :func:`rscovlm.eval.synthetic_dets.make_detection_set` (DOTA's 15 classes, difficult objects,
degenerate and self-intersecting quads, 2-decimal scores with many ties), the inputs built as the reference's
pickled results (``gt_instances``/``pred_instances`` with ``qbox2rbox`` rboxes, float32 scores):

1. ``--protocol mmrotate1x`` vs ``DOTAMetric.compute_metrics`` (``mmrotate/evaluation/metrics/dota_metric.py``):
   per-class AP, num_gts, num_dets and mAP, ``11points`` and ``area``, IoU 0.5 and 0.75, ties ``reference``.
2. ``--score-mode ones`` (every score 1.0) vs DOTAMetric with every score 1.0.
3. ``--score-mode random-per-image`` and ``ones`` with score thresholds vs LMMRotate's
   ``playground/map_nc_robustness_cal.py`` ``main()`` (its ``score``, ``1`` and ``rnd:*`` columns).
4. ``--f1-mode lmmrotate`` vs ``lmmrotate/modules/f1_metric.py`` (``calculate_confusion_matrix`` +
   ``confusion_matrix_to_ap_ar_f1``): the confusion matrix, mean P, mean R and F1.

Prints the largest differences and exits 1 when one exceeds its tolerance (AP: 1e-6; the reference's float32 mean
over classes vs ours may differ in the last float32 bit; confusion matrices: exact).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rscovlm.eval.ap_nc import LMMROTATE_SEEDS, ap_nc_table  # noqa: E402
from rscovlm.eval.dota_data import ClassDets, Detections  # noqa: E402
from rscovlm.eval.dota_map import compute_overlaps, map_from_overlaps  # noqa: E402
from rscovlm.eval.f1 import lmmrotate_f1  # noqa: E402
from rscovlm.eval.synthetic_dets import make_detection_set  # noqa: E402
from rscovlm.protocol.categories import DOTA_V1_0  # noqa: E402

CLASSES = list(DOTA_V1_0.classes)

MMROTATE_FILES = {
    "mmrotate/evaluation/functional/__init__.py": "mmrotate/evaluation/functional/__init__.py",
    "mmrotate/evaluation/functional/mean_ap.py": "mmrotate/evaluation/functional/mean_ap.py",
    "mmrotate/evaluation/metrics/dota_metric.py": "mmrotate/evaluation/metrics/dota_metric.py",
    "mmrotate/structures/bbox/box_converters.py": "mmrotate/structures/bbox/box_converters.py",
    "mmrotate/structures/bbox/bbox_overlaps.py": "mmrotate/structures/bbox/bbox_overlaps.py",
}
MLLM_FILES = {
    "lmmrotate/modules/f1_metric.py": "lmmrotate/modules/f1_metric.py",
    "playground/map_nc_robustness_cal.py": "map_nc_robustness_cal.py",
}

# ---- stand-ins (ours, minimal) -----------------------------------------------------------------------------------

STANDINS = {
    "mmcv/__init__.py": "",
    "mmcv/ops.py": '''
"""Stand-in for mmcv.ops: box_iou_rotated as the exact area IoU of the rotated rectangles (shapely), with mmcv's
rule that a box of area < 1e-14 has IoU 0, returned as float32 like the compiled op. Angles clockwise on screen
(w side along (cos t, sin t), y down), mmcv's clockwise=True convention; the first 5 values of a row are read."""
import numpy as np
import shapely
import torch


def _polys(b):
    b = b.detach().cpu().double().numpy().reshape(-1, b.shape[-1])[:, :5]
    cx, cy, w, h, t = b.T
    c, s = np.cos(t), np.sin(t)
    wx, wy, hx, hy = c * w / 2, s * w / 2, -s * h / 2, c * h / 2
    pts = np.stack([np.stack([cx - wx - hx, cy - wy - hy], 1), np.stack([cx + wx - hx, cy + wy - hy], 1),
                    np.stack([cx + wx + hx, cy + wy + hy], 1), np.stack([cx - wx + hx, cy - wy + hy], 1)], 1)
    return shapely.polygons(pts), w * h


def box_iou_rotated(bboxes1, bboxes2, mode="iou", aligned=False, clockwise=True):
    assert mode == "iou" and not aligned and clockwise
    p1, a1 = _polys(bboxes1)
    p2, a2 = _polys(bboxes2)
    out = np.zeros((len(a1), len(a2)))
    if len(a1) and len(a2):
        inter = shapely.area(shapely.intersection(p1[:, None], p2[None, :]))
        ok = (a1[:, None] >= 1e-14) & (a2[None, :] >= 1e-14)
        union = a1[:, None] + a2[None, :] - inter
        out = np.where(ok, inter / np.where(ok, union, 1.0), 0.0)
    return torch.from_numpy(out.astype(np.float32))


def box_iou_quadri(*args, **kwargs):
    raise NotImplementedError("stand-in: qbox evaluation is not used")


def nms_rotated(*args, **kwargs):
    raise NotImplementedError("stand-in: NMS is not used (merge_patches=False, nms_iou_thr=None)")


nms_quadri = nms_rotated
''',
    "mmengine/__init__.py": "",
    "mmengine/logging.py": '''
def print_log(*args, **kwargs):
    pass


class _Logger:
    def info(self, *args, **kwargs):
        pass

    warning = info


class MMLogger:
    @classmethod
    def get_current_instance(cls):
        return _Logger()
''',
    "mmengine/fileio.py": '''
import json
import pickle


def dump(obj, file, **kwargs):
    with open(file, "w") as f:
        json.dump(obj, f)


def load(file, **kwargs):
    with open(file, "rb") as f:
        return pickle.load(f)
''',
    "mmengine/utils.py": '''
def is_str(x):
    return isinstance(x, str)


class ProgressBar:
    def __init__(self, *args, **kwargs):
        pass

    def update(self, *args, **kwargs):
        pass
''',
    "mmengine/evaluator.py": '''
"""Stand-in for mmengine.evaluator: BaseMetric.evaluate (compute_metrics, keys prefixed) and
Evaluator.offline_evaluate (process in chunks, then evaluate), single process."""


class BaseMetric:
    default_prefix = None

    def __init__(self, collect_device="cpu", prefix=None):
        self.results = []
        self.prefix = prefix or self.default_prefix
        self.dataset_meta = None

    def evaluate(self, size):
        metrics = self.compute_metrics(self.results)
        if self.prefix:
            metrics = {"/".join((self.prefix, k)): v for k, v in metrics.items()}
        self.results.clear()
        return metrics


class Evaluator:
    def __init__(self, metrics):
        self.metrics = metrics if isinstance(metrics, list) else [metrics]

    @property
    def dataset_meta(self):
        return self.metrics[0].dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, meta):
        for m in self.metrics:
            m.dataset_meta = meta

    def offline_evaluate(self, data_samples, data=None, chunk_size=1):
        for i in range(0, len(data_samples), chunk_size):
            for m in self.metrics:
                m.process(None, data_samples[i:i + chunk_size])
        out = {}
        for m in self.metrics:
            out.update(m.evaluate(len(data_samples)))
        return out


class DumpResults:
    pass
''',
    "mmrotate/__init__.py": "",
    "mmrotate/registry.py": '''
class _Registry:
    def register_module(self, *args, **kwargs):
        return lambda obj: obj


METRICS = _Registry()
''',
    "mmrotate/utils.py": "def register_all_modules(*args, **kwargs):\n    pass\n",
    "mmrotate/evaluation/__init__.py": "from .functional import eval_rbbox_map  # noqa\n"
                                       "from .metrics import DOTAMetric  # noqa\n",
    "mmrotate/evaluation/metrics/__init__.py": "from .dota_metric import DOTAMetric  # noqa\n",
    "mmrotate/structures/__init__.py": "",
    "mmrotate/structures/bbox/__init__.py": "from .box_converters import qbox2rbox, rbox2qbox  # noqa\n"
                                            "from .bbox_overlaps import rbbox_overlaps  # noqa\n",
    "mmrotate/structures/bbox/quadri_boxes.py": "class QuadriBoxes:\n    pass\n",
    "mmrotate/structures/bbox/rotated_boxes.py": "class RotatedBoxes:\n    pass\n",
    "mmdet/__init__.py": "",
    "mmdet/structures/__init__.py": "",
    "mmdet/structures/bbox.py": '''
class HorizontalBoxes:
    pass


def register_box_converter(*args, **kwargs):
    return lambda fn: fn
''',
    "mmdet/evaluation/__init__.py": "",
    "terminaltables.py": '''
class AsciiTable:
    def __init__(self, data):
        self.table = "\\n".join(" | ".join(map(str, row)) for row in data)
        self.inner_footing_row_border = False
''',
    "pandas.py": '''
import json


class DataFrame:
    def __init__(self, data):
        self.data = data

    @classmethod
    def from_dict(cls, data):
        return cls(data)

    @property
    def T(self):
        return self

    def to_csv(self, path):
        with open(path, "w") as f:
            json.dump({str(k): v for k, v in self.data.items()}, f)

    def __str__(self):
        return "(results written as JSON)"
''',
    "fire.py": "def Fire(*args, **kwargs):\n    pass\n",
    "lmmrotate/__init__.py": "",
    "lmmrotate/dataset.py": "OrientedDetEvalDataset = None\n",
    "lmmrotate/utils.py": "def monkey_patch_of_collections_typehint_for_mmrotate1x():\n    pass\n",
    "lmmrotate/modules/__init__.py": "",
}


def read_source(path: str, rel: str, ref: str | None) -> str:
    """``rel`` of a checkout, or of a git repository at ``ref`` (bare mirrors too)."""
    p = Path(path)
    if (p / rel).is_file() and ref is None:
        return (p / rel).read_text()
    out = subprocess.run(["git", "--git-dir", str(p / ".git") if (p / ".git").exists() else str(p), "show",
                          f"{ref or 'HEAD'}:{rel}"], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"cannot read {rel} from {path} at {ref or 'HEAD'}: {out.stderr.strip()}")
    return out.stdout


def average_precision_source(mean_ap_file: str) -> str:
    """mmdet's ``average_precision`` function, verbatim, from its ``mean_ap.py``."""
    text = Path(mean_ap_file).read_text()
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef) and node.name == "average_precision":
            return "import numpy as np\n\n\n" + ast.get_source_segment(text, node) + "\n"
    raise SystemExit(f"{mean_ap_file} has no average_precision function")


def build_reference_tree(args) -> Path:
    root = Path(tempfile.mkdtemp(prefix="rscovlm_parity_"))
    files = dict(STANDINS)
    for rel, dest in MMROTATE_FILES.items():
        files[dest] = read_source(args.mmrotate, rel, args.mmrotate_ref)
    for rel, dest in MLLM_FILES.items():
        files[dest] = read_source(args.mllm_mmrotate, rel, args.mllm_ref)
    files["mmdet/evaluation/functional/__init__.py"] = average_precision_source(args.mmdet_mean_ap)
    for rel, text in files.items():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
    return root


# ---- data ---------------------------------------------------------------------------------------------------------

SIZES = {"quick": dict(n_images=12, n_gt=700, n_det=2200), "medium": dict(n_images=60, n_gt=4000, n_det=13000),
         "val": dict(n_images=458, n_gt=28500, n_det=100000)}


def make_sets(size: str):
    """(name, rscovlm ground truth, detections with float32 scores and a per-image prediction order)."""
    out = []
    for seed, decimals in ((101, 2), (202, None)):
        ds = make_detection_set(**SIZES[size], classes=CLASSES, seed=seed, score_decimals=decimals,
                                invalid_rate=0.03)
        rng = np.random.default_rng(seed)
        # any per-image prediction order, interleaving the classes (distinct positions, as an answer's object
        # indices); the rows of a class follow it (as a responses file gives them: line order, then answer order)
        total = sum(len(d.quads) for d in ds.dets.classes.values())
        positions = rng.permutation(total).astype(np.int64)
        classes, at = {}, 0
        for c, d in ds.dets.classes.items():
            order = positions[at:at + len(d.quads)]
            at += len(d.quads)
            rows = np.argsort(order)
            classes[c] = ClassDets(d.quads[rows], d.image[rows], d.scores[rows].astype(np.float32).astype(np.float64),
                                   order[rows])
        out.append((f"seed{seed}-{'2dec' if decimals else 'cont'}", ds.gt, Detections(classes)))
    return out


def to_samples(gt, dets, ones: bool = False) -> list[dict]:
    """The reference's pickled results: per image ``gt_instances``/``pred_instances`` (rboxes by the reference's
    own ``qbox2rbox``, float32), predictions in each image's prediction order (``ClassDets.order``)."""
    import torch
    from mmrotate.structures.bbox import qbox2rbox

    label_of = {c: i for i, c in enumerate(CLASSES)}
    samples = []
    for i, image_id in enumerate(gt.image_ids):
        gq, gl = [], []
        for c, g in gt.classes.items():
            m = g.image == i
            gq.append(g.quads[m])
            gl += [label_of[c]] * int(m.sum())
        dq, dl, ds, do = [], [], [], []
        for c, d in dets.classes.items():
            m = d.image == i
            dq.append(d.quads[m])
            dl += [label_of[c]] * int(m.sum())
            ds.append(d.scores[m])
            do.append(d.order[m])
        dq, ds, do = np.concatenate(dq).reshape(-1, 8), np.concatenate(ds), np.concatenate(do)
        dl = np.asarray(dl, np.int64)
        o = np.lexsort((np.arange(len(do)), do))
        dq, ds, dl = dq[o], ds[o], dl[o]
        samples.append({
            "img_id": image_id,
            "gt_instances": {"labels": torch.tensor(gl, dtype=torch.long),
                             "bboxes": qbox2rbox(torch.tensor(np.concatenate(gq).reshape(-1, 8), dtype=torch.float32))},
            "ignored_instances": {"labels": torch.zeros(0, dtype=torch.long), "bboxes": torch.zeros((0, 5))},
            "pred_instances": {"bboxes": qbox2rbox(torch.tensor(dq, dtype=torch.float32)),
                               "scores": torch.ones(len(ds)) if ones else torch.tensor(ds, dtype=torch.float32),
                               "labels": torch.tensor(dl, dtype=torch.long)},
        })
    return samples


# ---- checks --------------------------------------------------------------------------------------------------------

def reference_dota_metric(samples, iou_thr, eval_mode):
    """DOTAMetric.process + compute_metrics; per-class results captured from its eval_rbbox_map call."""
    import mmrotate.evaluation.metrics.dota_metric as dm

    captured = {}
    real = dm.eval_rbbox_map

    def spy(*a, **k):
        mean_ap, results = real(*a, **k)
        captured["results"] = results
        return mean_ap, results

    dm.eval_rbbox_map = spy
    try:
        metric = dm.DOTAMetric(iou_thrs=iou_thr, eval_mode=eval_mode)
        metric.dataset_meta = {"classes": tuple(CLASSES)}
        metric.process(None, samples)
        out = metric.compute_metrics(metric.results)
    finally:
        dm.eval_rbbox_map = real
    per_class = {CLASSES[k]: (float(r["ap"]), int(r["num_gts"]), int(r["num_dets"]))
                 for k, r in enumerate(captured["results"])}
    return float(out["mAP"]), per_class


def check_dota_metric(sets, report):
    worst = 0.0
    for name, gt, dets in sets:
        for ones in (False, True):
            samples = to_samples(gt, dets, ones=ones)
            ov = compute_overlaps(gt, dets, "mmrotate1x")
            for thr in (0.5, 0.75):
                for mode, ours_mode in (("11points", "11point"), ("area", "area")):
                    ref_map, ref = reference_dota_metric(samples, thr, mode)
                    if ones:
                        tab = ap_nc_table(ov, score_mode="ones", ties="reference", iou_spec=str(thr), ap_mode=ours_mode,
                                          score_thrs=[-1.0])
                        ours = {c: float(tab.ap[0, 0, 0, k]) for k, c in enumerate(tab.classes)}
                        ours_map = float(np.mean(np.float32([ours[c] for c in CLASSES if c in ours]), dtype=np.float32))
                        counts_ok = True
                    else:
                        res = map_from_overlaps(ov, thr, ours_mode, ties="reference", mean_order=CLASSES)
                        ours = {c: r.ap for c, r in res.per_class.items()}
                        ours_map = res.mAP
                        counts_ok = all((res.per_class[c].num_gt, res.per_class[c].num_det) == ref[c][1:]
                                        for c in res.classes)
                    with_gt = [c for c, r in ref.items() if r[1] > 0]
                    assert sorted(with_gt) == sorted(ours), (name, sorted(with_gt), sorted(ours))
                    d = max(abs(ours[c] - ref[c][0]) for c in with_gt)
                    dm = abs(ours_map - ref_map)
                    worst = max(worst, d, dm)
                    report.append({"check": "DOTAMetric" + (" (all scores 1.0)" if ones else ""), "set": name,
                                   "iou_thr": thr, "eval_mode": mode, "mAP_ref": ref_map, "mAP_ours": ours_map,
                                   "max_class_ap_diff": d, "map_diff": dm, "counts_equal": counts_ok})
                    print(f"  {report[-1]['check']:<28} {name:<14} IoU {thr} {mode:<8} mAP {ref_map:.6f} vs "
                          f"{ours_map:.6f}  max|dAP| {d:.2e}  |dmAP| {dm:.2e}  counts {'=' if counts_ok else '!='}")
                    if not counts_ok:
                        worst = max(worst, 1.0)
    return worst


def check_map_nc(sets, report, root, g):
    import map_nc_robustness_cal as mapnc

    worst = 0.0
    for name, gt, dets in sets[:1]:
        pkl = root / f"{name}.pkl"
        with open(pkl, "wb") as f:
            pickle.dump(to_samples(gt, dets), f)
        csv = root / f"{name}.csv.json"
        t0 = time.time()
        mapnc.main("dota", str(pkl), str(csv), g=g)
        ref = json.loads(csv.read_text())
        t_ref = time.time() - t0
        ov = compute_overlaps(gt, dets, "mmrotate1x")
        for t in [i / g for i in range(g)]:
            r = ref[str(t)]
            keep = {c: d.scores.astype(np.float32) > np.float32(t) for c, d in dets.classes.items()}
            sub = Detections({c: d.select(keep[c]) for c, d in dets.classes.items()})
            score_map = map_from_overlaps(compute_overlaps(gt, sub, "mmrotate1x"), 0.5, ties="reference",
                                          mean_order=CLASSES).mAP
            ones = ap_nc_table(ov, score_mode="ones", ties="reference", iou_spec="0.5", score_thrs=[t])
            rnd = ap_nc_table(ov, score_mode="random-per-image", ties="reference", iou_spec="0.5", score_thrs=[t],
                              seeds=list(LMMROTATE_SEEDS), positions={c: d.order for c, d in dets.classes.items()})
            ours = {"score": score_map, "1": float(ones.metric_per_seed("AP50")[0, 0])}
            ours.update({f"rnd:{s}": float(v) for s, v in zip(LMMROTATE_SEEDS, rnd.metric_per_seed("AP_nc50")[0])})
            summary = rnd.summary(0)["metrics"]["AP_nc50"]
            ours["rnd:mean"], ours["rnd:std"] = summary["lmmrotate_mean"], summary["lmmrotate_std"]
            # the mean over the seeds themselves, from the script's own columns
            ref_seed_mean = float(np.mean([r[f"rnd:{s}"] for s in LMMROTATE_SEEDS]))
            d_seed_mean = abs(summary["mean"] - ref_seed_mean)
            d = max(max(abs(ours[k] - r[k]) for k in ours), d_seed_mean)
            worst = max(worst, d)
            report.append({"check": "map_nc_robustness_cal", "set": name, "threshold": t, "ref": r, "ours": ours,
                           "max_diff": d, "mean_over_seeds": [ref_seed_mean, summary["mean"]]})
            print(f"  map_nc_robustness_cal        {name:<14} thr {t:.2f}  score {r['score']:.6f}  1 {r['1']:.6f}  "
                  f"rnd:mean {r['rnd:mean']:.6f}±{r['rnd:std']:.6f} (seeds' own mean {ref_seed_mean:.6f})  "
                  f"max|d| over {len(ours)} columns {d:.2e}")
        print(f"  (reference script: {t_ref:.0f} s)")
    return worst


def check_f1(sets, report):
    from lmmrotate.modules import f1_metric

    worst = 0.0
    for name, gt, dets in sets:
        samples = to_samples(gt, dets)
        for score_thr in (0.0, 0.3, 0.65):
            for iou in (0.5, 0.7):
                t0 = time.time()
                cm = f1_metric.calculate_confusion_matrix(samples, score_thr, None, iou)
                p, r, f = f1_metric.confusion_matrix_to_ap_ar_f1(cm.clone())
                t_ref = time.time() - t0
                ours = lmmrotate_f1(gt, dets, CLASSES, iou_thr=iou, score_thr=score_thr)
                cm_equal = np.array_equal(np.asarray(ours["confusion_matrix"]), cm.numpy().astype(int))
                d = max(abs(ours["mF1"] - f), abs(ours["precision"] - p), abs(ours["recall"] - r))
                worst = max(worst, d, 0.0 if cm_equal else 1.0)
                report.append({"check": "f1_metric", "set": name, "score_thr": score_thr, "iou_thr": iou,
                               "ref": [p, r, f], "ours": [ours["precision"], ours["recall"], ours["mF1"]],
                               "max_diff": d, "confusion_matrix_equal": cm_equal})
                print(f"  f1_metric                    {name:<14} score>={score_thr} IoU {iou}  P/R/F1 "
                      f"{p:.6f}/{r:.6f}/{f:.6f} vs {ours['precision']:.6f}/{ours['recall']:.6f}/{ours['mF1']:.6f}"
                      f"  max|d| {d:.2e}  matrix {'=' if cm_equal else '!='}  (ref {t_ref:.1f} s)")
    return worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mmrotate", required=True, help="open-mmlab/mmrotate checkout or git repository")
    ap.add_argument("--mmrotate-ref", default=None, help="git ref to read (e.g. 1.x) when --mmrotate is a repository")
    ap.add_argument("--mllm-mmrotate", required=True, help="VisionXLab/mllm-mmrotate checkout or git repository")
    ap.add_argument("--mllm-ref", default=None, help="git ref of --mllm-mmrotate (default HEAD)")
    ap.add_argument("--mmdet-mean-ap", required=True, help="mmdetection's mmdet/evaluation/functional/mean_ap.py")
    ap.add_argument("--size", choices=list(SIZES), default="quick")
    ap.add_argument("--thresholds", type=int, default=4,
                    help="g of map_nc_robustness_cal.main (score thresholds 0, 1/g, ...; the script's default is 20)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["dota", "mapnc", "f1"])
    ap.add_argument("--json", default=None, help="write every figure here")
    args = ap.parse_args()

    root = build_reference_tree(args)
    sys.path.insert(0, str(root))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(root), str(ROOT), os.environ.get("PYTHONPATH", "")])
    print(f"reference files and stand-ins in {root}")
    sets = make_sets(args.size)
    for name, gt, dets in sets:
        print(f"set {name}: {len(gt.image_ids)} images, {sum(len(g.quads) for g in gt.classes.values())} objects, "
              f"{sum(len(d.quads) for d in dets.classes.values())} detections")
    report: list[dict] = []
    worst = {}
    if "dota" not in args.skip:
        print("1-2. mmrotate1x / ones vs MMRotate 1.x DOTAMetric")
        worst["dota"] = check_dota_metric(sets, report)
    if "mapnc" not in args.skip:
        print("3. ones / random-per-image vs LMMRotate map_nc_robustness_cal.py")
        worst["mapnc"] = check_map_nc(sets, report, root, args.thresholds)
    if "f1" not in args.skip:
        print("4. --f1-mode lmmrotate vs LMMRotate f1_metric.py")
        worst["f1"] = check_f1(sets, report)
    print("largest differences:", {k: f"{v:.2e}" for k, v in worst.items()})
    if args.json:
        Path(args.json).write_text(json.dumps({"worst": worst, "checks": report}, indent=1, default=float))
    return 1 if any(v > 1e-6 for v in worst.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
