"""DOTA-v1.0 oriented detection (paper Table 3): split 512 / gap 100, one answer per patch, merge, score.

Items are the split windows (mmrotate ``img_split`` windows: :func:`rscovlm.dota.split.sliding_windows`,
size 512, gap 100, windows with at most 60% inside the image dropped), named ``{stem}__512__{x}___{y}``; the
image part carries ``window: [x1, y1, x2, y2]`` (the runner crops it, padding outside the image, as the split
writes patches). Scoring reads each answer with the tolerant detection reader (model frame -> patch pixels through
the answer's resize), shifts it by the window origin, merges the patches of each image (per-class polygon NMS,
IoU 0.1, as mmrotate's merge; every VLM object has score 1) and then:

* val: AP_nc50 / AP_nc75 / AP_nc50:95 (random scores, 10 seeds; MMRotate 1.x rules, paper 3.5.2), mF1
  (one-to-one), mAP50 with every score 1 (``mAP50_ones``, the reference's evaluation) and ``mAP50`` ranked by
  per-object confidence (the answer lines' ``scores`` from ``rscovlm eval run``; the confidences also order the
  merge's NMS; n/a when an object has none) against ``val/labelTxt``;
* test: writes the official Task1 files and ``Task1.zip`` for the evaluation server (``out_dir`` option).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rscovlm.eval.benchmarks import register_benchmark
from rscovlm.eval.benchmarks.base import Benchmark, BenchmarkDataError, Item, answered, resize_of

SIZE, GAP = 512, 100
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class _Dota(Benchmark):
    task = "detection"
    prompt = "dota_trainval512"
    rules = {"official": "MMRotate 1.x DOTAMetric rules after the merge: AP_nc (random scores, 10 seeds) at IoU "
                         "0.5 / 0.75 / 0.5:0.95, mF1 one-to-one at 0.5, mAP50 with all scores 1 (the reference)"}
    default_rule = "official"
    normalization = "tolerant detection reader; labels mapped to DOTA-v1.0 classes; unreadable objects counted"
    split = "val"

    def __init__(self):
        self.layout = (f"<root>/{self.split}/images/<id>.png      DOTA-v1.0 {self.split} images"
                       + ("\n<root>/val/labelTxt/<id>.txt     labelTxt ground truth (x1 y1 ... x4 y4 class "
                          "difficult)" if self.split == "val" else ""))

    def load(self, root: Path) -> list[Item]:
        from rscovlm.dota.split import patch_name, sliding_windows
        from rscovlm.imageio import image_size
        from rscovlm.protocol.categories import get_category_set

        img_dir = root / self.split / "images"
        if not img_dir.is_dir():
            raise BenchmarkDataError(f"{self.name}: missing {img_dir}; expected:\n{self.layout}")
        classes = list(get_category_set("dota-v1.0").classes)
        items = []
        for path in sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS):
            w, h = image_size(path)
            for x1, y1, x2, y2 in sliding_windows(w, h, SIZE, GAP).tolist():
                items.append(Item(id=patch_name(path.stem, SIZE, x1, y1), image=str(path.resolve()),
                                  fields={"categories": classes}, target=None,
                                  meta={"window": [x1, y1, x2, y2], "stem": path.stem, "size": [w, h]}))
        if not items:
            raise BenchmarkDataError(f"{self.name}: no images in {img_dir}")
        return items

    def merged(self, items, answers, family=None, confidence: bool = False) -> tuple[dict, dict]:
        """``{stem: ObjectSet}`` in image pixels after the merge, and parsing counts. Every object has score 1,
        or with ``confidence`` its answer line's per-object ``scores`` (the runner's token-log-prob confidence;
        objects without one keep 1 and are counted as ``unscored``), which also orders the merge's NMS."""
        from rscovlm.dota.merge import merge_patch_objects
        from rscovlm.eval.responses import read_response
        from rscovlm.geometry import Boxes, ObjectSet
        from rscovlm.model.families import family_for
        from rscovlm.protocol.categories import get_category_set

        fam = family_for(family or "qwen2_5_vl")
        cats = get_category_set("dota-v1.0")
        patches = {}
        stats = {"answers": 0, "objects": 0, "unparsed": 0, "unknown_labels": 0, "truncated": 0, "unscored": 0}
        for it in items:
            ans = answers[it.id]
            parsed, quads = read_response(ans.get("text") or "", resize_of(ans, self.name), fam, cats)
            keep = np.isfinite(quads).all(axis=1)
            labels = [lab for lab, k in zip(parsed.objects.labels, keep) if k]
            scores = np.ones(len(quads))
            if confidence:
                given = ans.get("scores")
                if isinstance(given, list) and len(given) == len(quads):
                    scores = np.array([np.nan if v is None else float(v) for v in given], float)
                else:
                    scores = np.full(len(quads), np.nan)
                stats["unscored"] += int(np.isnan(scores[keep]).sum())
                scores = np.where(np.isnan(scores), 1.0, scores)
            patches[it.id] = ObjectSet(Boxes(quads[keep].reshape(-1, 8), "quad"), labels, scores[keep])
            stats["answers"] += 1
            stats["objects"] += len(labels)
            stats["unparsed"] += len(parsed.unparsed)
            stats["unknown_labels"] += len(parsed.unknown_labels)
            stats["truncated"] += ans.get("finish_reason") == "length"
        return merge_patch_objects(patches, 0.1), stats


@register_benchmark
class DotaVal(_Dota):
    name, title, split = "dota_val", "DOTA-v1.0 val (split 512/100, merged)", "val"
    paper = {}  # the paper reports DOTA-v1.0 test (server) only

    def score(self, items, answers, rule=None, partial=False, family=None, data_root=None, **options) -> dict:
        from rscovlm.eval.ap_nc import ap_nc_table
        from rscovlm.eval.dota_data import load_gt_dir
        from rscovlm.eval.dota_map import compute_overlaps, map_from_overlaps
        from rscovlm.eval.f1 import f1_from_overlaps

        self.check_rule(rule)
        if data_root is None:
            raise ValueError(f"{self.name}: scoring needs the data root (its val/labelTxt)")
        todo, missing = answered(items, answers, partial)
        merged, stats = self.merged(todo, answers, family)
        gt = load_gt_dir(Path(data_root) / "val" / "labelTxt", categories="dota-v1.0")
        overlaps = compute_overlaps(gt, _detections(gt, merged, scored=False), "mmrotate1x")
        nc = ap_nc_table(overlaps, seeds=10).summary(0)["metrics"]
        ones = ap_nc_table(overlaps, score_mode="ones", iou_spec="0.5").summary(0)["metrics"]
        f1 = f1_from_overlaps(overlaps, iou_thr=0.5)
        metrics = {k: 100 * nc[k]["mean"] for k in ("AP_nc50", "AP_nc75", "AP_nc50:95")}
        metrics["mF1"] = 100 * f1["mF1"]
        metrics["mAP50_ones"] = 100 * next(iter(ones.values()))["mean"]
        # mAP ranked by per-object confidence: merged with the confidences ordering the NMS (as rscovlm detect)
        ranked, conf_stats = self.merged(todo, answers, family, confidence=True)
        metrics["mAP50"] = None
        if not conf_stats["unscored"]:
            conf_overlaps = compute_overlaps(gt, _detections(gt, ranked, scored=True), "mmrotate1x")
            metrics["mAP50"] = 100 * map_from_overlaps(conf_overlaps, iou_thr=0.5).mAP
        stats["unscored"] = conf_stats["unscored"]
        return {"metrics": metrics, "details": {"parsing": stats, "AP_nc_std": {k: 100 * nc[k]["std"] for k in nc},
                                                "images_answered": len(merged)},
                "n": len(todo), "n_missing": missing}


def _detections(gt, merged: dict, scored: bool):
    """:class:`~rscovlm.eval.dota_data.Detections` of merged objects: images in ground-truth order, objects in
    merged order; scores only when ``scored``."""
    from rscovlm.eval.dota_data import ClassDets, Detections

    rows: dict[str, tuple[list, list, list, list]] = {}
    for stem in gt.image_ids:
        objs = merged.get(stem)
        if objs is None:
            continue
        quads = objs.boxes.to_quad().data
        for k, lab in enumerate(objs.labels):
            r = rows.setdefault(lab, ([], [], [], []))
            r[0].append(quads[k])
            r[1].append(gt.index[stem])
            r[2].append(k)
            r[3].append(float(objs.scores[k]))
    return Detections({c: ClassDets(np.asarray(q, float).reshape(-1, 8), np.asarray(i, np.int64),
                                    np.asarray(s, float) if scored else None, np.asarray(o, np.int64))
                       for c, (q, i, o, s) in sorted(rows.items())})


@register_benchmark
class DotaTest(_Dota):
    name, title, split = "dota_test", "DOTA-v1.0 test (Task1 files for the evaluation server)", "test"
    paper = {"AP_nc50": "table3.AP_nc50", "AP_nc75": "table3.AP_nc75", "AP_nc50:95": "table3.AP_nc50:95"}
    notes = "no local ground truth: scoring writes Task1_<class>.txt and Task1.zip into out_dir for the server"

    def score(self, items, answers, rule=None, partial=False, family=None, out_dir=None, **options) -> dict:
        import zipfile

        from rscovlm.dota.io import write_task1_dir
        from rscovlm.protocol.categories import get_category_set

        self.check_rule(rule)
        if out_dir is None:
            raise ValueError(f"{self.name}: scoring writes Task1 files; give out_dir")
        todo, missing = answered(items, answers, partial)
        merged, stats = self.merged(todo, answers, family)
        task1 = Path(out_dir) / "Task1"
        paths = write_task1_dir(task1, merged, classes=get_category_set("dota-v1.0").classes)
        zpath = Path(out_dir) / "Task1.zip"
        with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
            for p in sorted(paths):
                z.write(p, p.name)
        return {"metrics": {}, "details": {"parsing": stats, "task1_dir": str(task1), "zip": str(zpath),
                                           "images_answered": len(merged)},
                "n": len(todo), "n_missing": missing}
