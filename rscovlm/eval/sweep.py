"""Score-threshold sweep for AP_nc (paper 4.4.1, Figure 7): choose a detector's threshold on val, apply it on test.

For every threshold ``t`` in 0.00, 0.05, ..., 0.95 the val set's AP_nc (mean and std over seeds) is computed
from one set of IoUs (:func:`rscovlm.eval.ap_nc.ap_nc_table`); the best ``t`` for the selection metric (highest
mean; the lowest threshold wins ties) is then used for the test set. Several detectors can be swept together
and drawn on one plot (:func:`rscovlm.viz.plots.plot_threshold_sweep`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rscovlm.eval.ap_nc import DEFAULT_IOU_SPEC, DEFAULT_SCORE_THRS, ap_nc_table, det_positions, eval_dota_nc
from rscovlm.eval.dota_data import GroundTruth, load_gt_dir
from rscovlm.eval.dota_map import compute_overlaps, load_pair


@dataclass
class SweepCurve:
    """One detector's curve: per metric, ``mean`` and ``std`` over seeds at each threshold; what reading left
    out (as in :func:`rscovlm.eval.dota_map.eval_dota`)."""

    name: str
    thresholds: list[float]
    mean: dict[str, list[float]]
    std: dict[str, list[float]]
    best_threshold: float
    select: str
    skipped_lines: int = 0
    dropped_unknown_image: int = 0
    missing_det_files: list[str] = field(default_factory=list)
    dropped_unknown_gt_classes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"thresholds": self.thresholds, "mean": self.mean, "std": self.std,
                "best_threshold": self.best_threshold, "select": self.select, "skipped_lines": self.skipped_lines,
                "dropped_unknown_image": self.dropped_unknown_image,
                "missing_det_files": list(self.missing_det_files),
                "dropped_unknown_gt_classes": dict(self.dropped_unknown_gt_classes)}


def sweep_curve(gt, dets, *, name: str = "detector", thresholds=DEFAULT_SCORE_THRS, seeds=None,
                iou_thrs: str = DEFAULT_IOU_SPEC, select: str | None = None, ap_mode: str = "11point",
                protocol: str = "mmrotate1x", score_mode: str = "random", ties: str = "stable",
                skip_invalid: bool = False, unknown_images: str = "error", categories=None,
                unknown_gt_classes: str = "error") -> SweepCurve:
    """AP_nc at every threshold on one (val) set, and the best threshold for metric ``select`` (default: the
    first metric of ``iou_thrs``). ``score_mode``/``seeds``/``ties`` as in :func:`rscovlm.eval.ap_nc.ap_nc_table`."""
    gt, dets = load_pair(gt, dets, skip_invalid=skip_invalid, unknown_images=unknown_images, categories=categories,
                         unknown_gt_classes=unknown_gt_classes)
    table = ap_nc_table(compute_overlaps(gt, dets, protocol), score_thrs=thresholds, seeds=seeds,
                        iou_spec=iou_thrs, ap_mode=ap_mode, score_mode=score_mode, ties=ties,
                        positions=det_positions(dets))
    select = select or next(iter(table.metrics))
    if select not in table.metrics:
        raise ValueError(f"selection metric {select!r} is not among {sorted(table.metrics)} (from --iou-thrs)")
    mean = {m: table.metric_per_seed(m).mean(axis=1).tolist() for m in table.metrics}
    std = {m: table.metric_per_seed(m).std(axis=1).tolist() for m in table.metrics}
    best = int(np.argmax(np.asarray(mean[select])))  # first maximum = lowest threshold on ties
    return SweepCurve(name, [float(t) for t in table.score_thrs], mean, std, table.score_thrs[best], select,
                      len(gt.skipped) + len(dets.skipped), dets.dropped_unknown_image, list(dets.missing_files),
                      dict(gt.dropped_unknown_classes))


def _load_gt(gt, skip_invalid: bool, categories, unknown_gt_classes):
    """Ground truth given as a folder is read once (and shared by every detector); loaded ground truth passes."""
    if isinstance(gt, GroundTruth):
        return gt
    return load_gt_dir(gt, skip_invalid=skip_invalid, categories=categories, unknown_classes=unknown_gt_classes)


def eval_dota_sweep(val_gt, val_dets: dict, test_gt=None, test_dets: dict | None = None, *,
                    thresholds=DEFAULT_SCORE_THRS, seeds=None, iou_thrs: str = DEFAULT_IOU_SPEC,
                    select: str | None = None, ap_mode: str = "11point", protocol: str = "mmrotate1x",
                    score_mode: str = "random", ties: str = "stable", skip_invalid: bool = False,
                    unknown_images: str = "error", plot: str | None = None,
                    categories=None, unknown_gt_classes: str = "error") -> dict:
    """Sweep each detector of ``val_dets`` (``{name: Task1 folder or Detections}``) on ``val_gt``; with
    ``test_gt``/``test_dets`` (same names) apply each best threshold on test. Also ``rscovlm eval
    dota-sweep``. ``unknown_images`` treats detections on images without ground truth as in
    :func:`rscovlm.eval.dota_map.eval_dota`, and so do ``categories``/``unknown_gt_classes`` ground-truth
    classes outside the vocabulary (val and test). Returns ``{"detectors": {name: {"val": curve, "test": AP_nc result
    or absent}}}``."""
    if not val_dets:
        raise ValueError("the sweep needs at least one val detection set")
    vocab = dict(categories=categories, unknown_gt_classes=unknown_gt_classes)
    if test_dets is not None and set(test_dets) != set(val_dets):
        raise ValueError(f"test detectors {sorted(test_dets)} differ from val detectors {sorted(val_dets)}")
    if (test_gt is None) != (test_dets is None):
        raise ValueError("test ground truth and test detections go together")
    val_gt_loaded = _load_gt(val_gt, skip_invalid, **vocab)
    test_gt_loaded = _load_gt(test_gt, skip_invalid, **vocab) if test_gt is not None else None
    out: dict = {"detectors": {}, "select": select, "protocol": protocol, "ap_mode": ap_mode,
                 "score_mode": score_mode, "ties": ties}
    curves = []
    for name, dets in val_dets.items():
        curve = sweep_curve(val_gt_loaded, dets, name=name, thresholds=thresholds, seeds=seeds, iou_thrs=iou_thrs,
                            select=select, ap_mode=ap_mode, protocol=protocol, score_mode=score_mode, ties=ties,
                            skip_invalid=skip_invalid, unknown_images=unknown_images)
        out["select"] = curve.select
        curves.append(curve)
        entry = {"val": curve.to_dict()}
        if test_gt_loaded is not None:
            entry["test"] = eval_dota_nc(test_gt_loaded, test_dets[name], score_thr=curve.best_threshold,
                                         seeds=seeds, iou_thrs=iou_thrs, ap_mode=ap_mode, protocol=protocol,
                                         score_mode=score_mode, ties=ties, skip_invalid=skip_invalid,
                                         unknown_images=unknown_images)
        out["detectors"][name] = entry
    if plot:
        from rscovlm.viz.plots import plot_threshold_sweep

        plot_threshold_sweep(curves, plot, metric=out["select"])
        out["plot"] = str(plot)
    return out
