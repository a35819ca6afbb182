"""``synthetic``: scenes from the seeded scene generator, so the whole harness runs with the tiny model and no data.

The scenes and samples are the demo's (:func:`rscovlm.demo.build_samples`: per scene one classification, one
counting VQA, one grounding and one detection question, written with the prompt set's strings); they are rendered
into ``<root>/synthetic/`` on first use (deterministic: same options, same images). Options (``with_options``):
``scenes``, ``holdout`` (unseen scenes scored separately), ``size``, ``seed``, ``prompt_set``, ``family`` (the
model family whose box frame the targets are written in) - the demo's defaults.

Scoring (:func:`score_samples`, the one rule ``rscovlm demo`` reports too), per split (``train`` = the first
``scenes`` scenes, ``holdout`` = the unseen ones): classification accuracy (``label`` rule), counting accuracy
(``lower`` rule), grounding Acc@0.5 (continuous IoU), detection AP_nc50 / 75 / 50:95 (random scores, 10 seeds),
mF1 (one-to-one, IoU 0.5) and mAP50 ranked by each object's confidence (the answer line's ``scores``, from the
token log-probs; n/a when any object has none), and the share of answers identical to their target text.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from rscovlm.eval.benchmarks import register_benchmark
from rscovlm.eval.benchmarks.base import Benchmark, Item, answered

OPTIONS = ("scenes", "holdout", "size", "seed", "prompt_set", "family")


@register_benchmark
class Synthetic(Benchmark):
    name = "synthetic"
    title = "Synthetic scenes (classification, counting, grounding, detection)"
    task = "detection"  # the largest budget of the four question kinds; each item has its own (meta "task")
    prompt = "(the demo's samples; grounding and detection use the prompt set's evaluation strings)"
    layout = "<root>/synthetic/scene_NNN.png   rendered on first use (nothing to download)"
    rules = {"official": "the demo's scoring: classification 'label' rule, counting 'lower' rule, grounding "
                         "Acc@0.5 (continuous IoU), detection AP_nc (10 seeds), mF1 and mAP50 by per-object "
                         "confidence"}
    normalization = "see rscovlm.eval.answers ('label', 'lower')"
    pixels_note = "scene side is a multiple of 28: the model sees it unresized"
    scenes, holdout, size, seed, prompt_set, family = 10, 5, 336, 0, "reference", "qwen2_5_vl"

    def with_options(self, **options) -> "Synthetic":
        bench = copy.copy(self)
        for key, value in options.items():
            if key not in OPTIONS:
                raise KeyError(f"synthetic: unknown option {key!r}; options: {', '.join(OPTIONS)}")
            setattr(bench, key, value)
        return bench

    def options(self) -> dict:
        return {k: getattr(self, k) for k in OPTIONS}

    def items(self, root, limit=None) -> list[Item]:
        Path(root).mkdir(parents=True, exist_ok=True)  # nothing to download: the root only receives the scenes
        return super().items(root, limit)

    def load(self, root: Path) -> list[Item]:
        from rscovlm.demo import DemoConfig, build_samples

        cfg = DemoConfig(scenes=self.scenes, holdout=self.holdout, size=self.size, seed=self.seed,
                         prompt_set=self.prompt_set)
        samples = build_samples(cfg, root / "synthetic", range(self.scenes + self.holdout), family=self.family)
        items = []
        for s in samples:
            msgs = s.conversation["messages"][:-1]
            image = next(p["image"] for m in msgs if m["role"] == "user" for p in m["content"]
                         if p.get("type") == "image")
            items.append(Item(id=f"{s.task}/{s.scene}", image=image, fields={},
                              target={"answer": s.answer, "labels": s.gt_labels, "quads": s.gt_quads},
                              meta={"task": s.task, "scene": s.scene, "messages": msgs,
                                    "plan": s.conversation["meta"]["plans"][0],
                                    "split": "train" if s.scene < self.scenes else "holdout"}))
        return items

    def messages(self, item: Item, prompt_set: str | None = None) -> list[dict]:
        # fresh messages and parts (a caller may replace parts); the strings are shared
        return [{**m, "content": [dict(p) for p in m["content"]] if isinstance(m["content"], list)
                 else m["content"]} for m in item.meta["messages"]]

    def eval_prompt(self, item: Item, prompt_set: str | None = None):
        raise NotImplementedError("synthetic items carry their messages (messages())")

    def score(self, items, answers, rule=None, partial=False, family=None, **options) -> dict:
        """Metrics per split; ``details``: the report of :func:`score_samples` per split and ``predictions``
        (item id -> parsed labels, quads in the original frame and confidence scores)."""
        from rscovlm.demo import DemoSample
        from rscovlm.model.families import family_for

        self.check_rule(rule)
        todo, missing = answered(items, answers, partial)
        fam = family_for(family or self.family)
        metrics, details, predictions = {}, {}, {}
        for split in ("train", "holdout"):
            part = [it for it in todo if it.meta["split"] == split]
            if not part:
                continue
            samples = [DemoSample(it.meta["task"], it.meta["scene"],
                                  {"messages": it.meta["messages"], "meta": {"plans": [it.meta["plan"]]}},
                                  it.target["answer"], it.target["labels"], it.target["quads"]) for it in part]
            report, parsed = score_samples(samples, [answers[it.id].get("text") or "" for it in part], fam,
                                           [answers[it.id].get("scores") for it in part])
            details[split] = report
            predictions.update({part[k].id: v for k, v in parsed.items()})
            det = report["detection"]
            metrics[f"{split}/classification"] = 100 * report["classification"]["accuracy"]
            metrics[f"{split}/vqa"] = 100 * report["vqa"]["accuracy"]
            metrics[f"{split}/Acc@0.5"] = 100 * report["grounding"]["acc@0.5"]
            metrics[f"{split}/AP_nc50"] = 100 * det["AP_nc50"]
            metrics[f"{split}/AP_nc50:95"] = 100 * det["AP_nc50:95"]
            metrics[f"{split}/mAP50"] = None if det["mAP50"] is None else 100 * det["mAP50"]
            metrics[f"{split}/mF1"] = 100 * det["mF1"]
            metrics[f"{split}/exact"] = 100 * report["all"]["exact"]
        details["predictions"] = predictions
        return {"metrics": metrics, "details": details, "n": len(todo), "n_missing": missing}

    def item_scores(self, items, answers, rule=None, family=None, **options) -> dict[str, dict]:
        from rscovlm.demo import DemoSample
        from rscovlm.model.families import family_for

        self.check_rule(rule)
        todo, _ = answered(items, answers, partial=True)
        samples = [DemoSample(it.meta["task"], it.meta["scene"],
                              {"messages": it.meta["messages"], "meta": {"plans": [it.meta["plan"]]}},
                              it.target["answer"], it.target["labels"], it.target["quads"]) for it in todo]
        scores = score_items(samples, [answers[it.id].get("text") or "" for it in todo],
                             family_for(family or "qwen2_5_vl"))
        return {it.id: s for it, s in zip(todo, scores)}

def _plan(sample):
    from rscovlm.resolution import ResizePlan

    return ResizePlan.from_dict(sample.conversation["meta"]["plans"][0])


def _mean(values) -> float:
    return sum(values) / len(values) if values else 0.0


def score_samples(samples: list, answers: list[str], family, scores: list | None = None) -> tuple[dict, dict]:
    """Metrics per task of ``answers`` to ``samples`` (:class:`rscovlm.demo.DemoSample`) and the parsed
    predictions (original frame) per sample index. Answer coordinates are read in the box frame of the model
    ``family`` (:class:`rscovlm.model.families.ModelFamily`: pixels of the resized input for Qwen2.5-VL, a 0-1000
    grid for Qwen2-VL / Qwen3-VL) and mapped to the original image. ``report["all"]["exact"]`` is the share of
    answers identical to their target text (whitespace-stripped).

    Detection is scored twice: AP_nc (random scores, the paper's confidence-free protocol) and ordinary mAP50
    ranked by each object's confidence: ``scores[k]`` lists the confidence of every object of answer ``k`` in
    reading order (:mod:`rscovlm.infer.confidence`: exp of the mean log-prob of the tokens that wrote the object;
    the runner's answer lines carry it). ``mAP50`` is None (and ``unscored`` counts the objects) when any object
    has none."""
    from rscovlm.eval.answers import answer_accuracy
    from rscovlm.eval.ap_nc import ap_nc_table
    from rscovlm.eval.dota_data import ClassDets, ClassGT, Detections, GroundTruth
    from rscovlm.eval.dota_map import compute_overlaps, map_from_overlaps
    from rscovlm.eval.f1 import f1_from_overlaps
    from rscovlm.eval.grounding import grounding_accuracy
    from rscovlm.eval.responses import read_response
    from rscovlm.geometry.boxes import Boxes
    from rscovlm.protocol.categories import get_category_set
    from rscovlm.protocol.grounding import parse_grounding

    report: dict = {}
    parsed: dict[int, dict] = {}
    for task, rule in (("classification", "label"), ("vqa", "lower")):
        idx = [k for k, s in enumerate(samples) if s.task == task]
        report[task] = answer_accuracy([answers[k] for k in idx], [samples[k].answer for k in idx], rule=rule)

    idx = [k for k, s in enumerate(samples) if s.task == "grounding"]
    preds = []
    for k in idx:
        plan = _plan(samples[k])
        boxes, _ = parse_grounding(answers[k], "hbb", family.box_frame_for(*plan.model_size))
        boxes = boxes.to_frame(plan.original) if len(boxes) else None
        preds.append(boxes)
        parsed[k] = {"labels": samples[k].gt_labels[:1] * (0 if boxes is None else 1),
                     "quads": [] if boxes is None else boxes[:1].to_quad().data.tolist()}
    if idx:
        targets = Boxes(np.array([samples[k].gt_quads[0] for k in idx]), "quad").to("hbb")
        g = grounding_accuracy(preds, targets)
        report["grounding"] = {"acc@0.5": g["acc"], "hits": g["hits"], "n": g["n"], "unparsed": g["unparsed"]}
    else:
        report["grounding"] = {"acc@0.5": 0.0, "hits": 0, "n": 0, "unparsed": 0}

    idx = [k for k, s in enumerate(samples) if s.task == "detection"]
    cats = get_category_set("dota-v1.0")
    image_ids = [f"scene_{samples[k].scene:03d}" for k in idx]
    gt_rows: dict[str, tuple[list, list]] = {}
    det_rows: dict[str, tuple[list, list, list]] = {}
    unparsed = fragments = 0
    for j, k in enumerate(idx):
        for lab, q in zip(samples[k].gt_labels, samples[k].gt_quads):
            gt_rows.setdefault(lab, ([], []))[0].append(q)
            gt_rows[lab][1].append(j)
        result, quads = read_response(answers[k], _plan(samples[k]), family, cats)
        given = scores[k] if scores is not None else None
        conf = np.array([np.nan if v is None else float(v) for v in given], float) \
            if given is not None and len(given) == len(quads) else np.full(len(quads), np.nan)
        unparsed += len(result.unparsed) + len(result.unknown_labels)
        fragments += result.n_fragments
        parsed[k] = {"labels": list(result.objects.labels), "quads": quads.tolist(),
                     "scores": [None if np.isnan(c) else round(float(c), 6) for c in conf]}
        for lab, q, c in zip(result.objects.labels, quads, conf):
            det_rows.setdefault(lab, ([], [], []))[0].append(q)
            det_rows[lab][1].append(j)
            det_rows[lab][2].append(c)
    gt = GroundTruth(image_ids, {c: ClassGT(np.array(q, float).reshape(-1, 8), np.array(im, np.int64),
                                            np.zeros(len(im), np.int64)) for c, (q, im) in gt_rows.items()})
    dets = Detections({c: ClassDets(np.array(q, float).reshape(-1, 8), np.array(im, np.int64), None)
                       for c, (q, im, _) in det_rows.items()})
    overlaps = compute_overlaps(gt, dets)
    table = ap_nc_table(overlaps, seeds=10).summary(0)["metrics"]
    f1 = f1_from_overlaps(overlaps, iou_thr=0.5)
    unscored = int(sum(np.isnan(c) for _, _, cs in det_rows.values() for c in cs))
    map50 = None
    if scores is not None and not unscored:
        ranked = Detections({c: ClassDets(np.array(q, float).reshape(-1, 8), np.array(im, np.int64),
                                          np.array(cs, float)) for c, (q, im, cs) in det_rows.items()})
        map50 = map_from_overlaps(compute_overlaps(gt, ranked), iou_thr=0.5).mAP
    report["detection"] = {"AP_nc50": table["AP_nc50"]["mean"], "AP_nc50_std": table["AP_nc50"]["std"],
                           "AP_nc75": table["AP_nc75"]["mean"], "AP_nc50:95": table["AP_nc50:95"]["mean"],
                           "mAP50": map50, "unscored": unscored, "mF1": f1["mF1"], "n_images": len(idx),
                           "unparsed_fraction": unparsed / fragments if fragments else 0.0}
    exact = [a.strip() == s.answer.strip() for s, a in zip(samples, answers)]
    report["all"] = {"exact": _mean(exact), "n": len(exact)}
    return report, parsed


def score_items(samples: list, answers: list[str], family) -> list[dict]:
    """Per sample ``{"correct", "score", "metric", "pred"}`` by :func:`score_samples`' rules, one item at a time:
    classification (``label`` rule) and counting VQA (``lower``) right or wrong (score 1 or 0); grounding: the
    continuous IoU of the first box with the target (right when > 0.5); detection: F1 at IoU 0.5 of that image's
    objects (one-to-one matching), right when every object is found and nothing else is. ``pred``: the parsed
    prediction (``{"labels", "quads"}`` in original pixels) for grounding and detection, else None."""
    from rscovlm.eval.answers import NORMALIZERS
    from rscovlm.eval.dota_data import ClassDets, ClassGT, Detections, GroundTruth
    from rscovlm.eval.dota_map import compute_overlaps
    from rscovlm.eval.f1 import f1_from_overlaps
    from rscovlm.eval.grounding import continuous_iou
    from rscovlm.eval.responses import read_response
    from rscovlm.geometry.boxes import Boxes
    from rscovlm.protocol.categories import get_category_set
    from rscovlm.protocol.grounding import parse_grounding

    out = []
    for s, text in zip(samples, answers):
        if s.task in ("classification", "vqa"):
            norm = NORMALIZERS["label" if s.task == "classification" else "lower"]
            ok = norm(text) == norm(s.answer)
            out.append({"correct": ok, "score": float(ok), "metric": "accuracy", "pred": None})
        elif s.task == "grounding":
            plan = _plan(s)
            boxes, _ = parse_grounding(text, "hbb", family.box_frame_for(*plan.model_size))
            target = Boxes(np.array(s.gt_quads[:1], float), "quad").to("hbb").data[0]
            iou, pred = 0.0, {"labels": [], "quads": []}
            if len(boxes):
                first = boxes[:1].to_frame(plan.original)
                iou = float(continuous_iou(first.data[0].tolist(), target.tolist())[0])
                pred = {"labels": s.gt_labels[:1], "quads": first.to_quad().data.tolist()}
            out.append({"correct": iou > 0.5, "score": iou, "metric": "IoU", "pred": pred})
        elif s.task == "detection":
            result, quads = read_response(text, _plan(s), family, get_category_set("dota-v1.0"))
            labels = list(result.objects.labels)
            gt_rows: dict[str, list] = {}
            det_rows: dict[str, list] = {}
            for lab, q in zip(s.gt_labels, s.gt_quads):
                gt_rows.setdefault(lab, []).append(q)
            for lab, q in zip(labels, quads):
                det_rows.setdefault(lab, []).append(q)
            gt = GroundTruth(["image"], {c: ClassGT(np.array(q, float).reshape(-1, 8), np.zeros(len(q), np.int64),
                                                    np.zeros(len(q), np.int64)) for c, q in gt_rows.items()})
            dets = Detections({c: ClassDets(np.array(q, float).reshape(-1, 8), np.zeros(len(q), np.int64), None)
                               for c, q in det_rows.items()})
            tp = f1_from_overlaps(compute_overlaps(gt, dets), iou_thr=0.5)["micro"]["tp"]
            n = len(labels) + len(s.gt_labels)  # F1 = 2 TP / (detections + objects), every class counted
            out.append({"correct": tp == len(s.gt_labels) == len(labels), "score": 2 * tp / n if n else 1.0,
                        "metric": "F1@0.5",
                        "pred": {"labels": labels, "quads": np.asarray(quads, float).reshape(-1, 8).tolist()}})
        else:
            raise ValueError(f"unknown demo task {s.task!r}")
    return out
