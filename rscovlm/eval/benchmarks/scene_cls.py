"""Scene classification (paper Table 4): AID (VHM split and GeoChat split), UCMerced (GeoChat split),
NWPU-RESISC45, WHU-RS19, METER-ML (VHM splits). Accuracy in percent.

VHM splits read VHM's evaluation files (``cls_<DATASET>.json``, a JSON array of ``{image, image_path,
conversations: [{from: human, value: question}, {from: gpt, value: class}]}``) the way the reference does
(``vhm_bench.py``: the file under ``datasets_eval/``, the image at ``datasets_eval/<image_path>/<image>``, the
phrase "Answer with one word or short phrase." removed from the question); reference rule: VHM ``eval_contain``.
GeoChat splits read GeoChat-Bench's ``aid.jsonl`` / ``UCmerced.jsonl`` (``{question_id, image, text,
ground_truth}``) converted as the reference's ``format_geochat.py`` does (classes = the text after ``Classes:`` up
to the line end, lower-cased; ground truth lower-cased, ``MediumResidentialgt`` -> ``medium residential``; AID
image names get ``.jpg``); reference rule: ``compute_contain_acc``.
"""

from __future__ import annotations

from pathlib import Path

from rscovlm.eval.benchmarks import register_benchmark
from rscovlm.eval.benchmarks.base import (
    Benchmark,
    BenchmarkDataError,
    Item,
    answered,
    field_of,
    need_image,
    pct,
    read_records,
)
from rscovlm.eval.vqa_rules import RULE_DOCS, match


class _SceneCls(Benchmark):
    task = "classification"
    default_rule = "reference"
    reference_matcher = "contain"

    def _matcher(self, rule: str) -> str:
        return self.reference_matcher if rule == "reference" else "strict"

    def score(self, items, answers, rule=None, partial=False, **options) -> dict:
        rule = self.check_rule(rule)
        todo, missing = answered(items, answers, partial)
        correct = sum(v["correct"] for v in self.item_scores(todo, answers, rule).values())
        n = len(todo)
        return {"metrics": {"accuracy": pct(correct / n) if n else None},
                "details": {"correct": correct, "n": n, "rule": rule, "matcher": self._matcher(rule)},
                "n": n, "n_missing": missing}

    def item_scores(self, items, answers, rule=None, **options) -> dict[str, dict]:
        rule = self.check_rule(rule)
        matcher = self._matcher(rule)
        todo, _ = answered(items, answers, partial=True)
        out = {}
        for it in todo:
            ok = match(matcher, it.target, answers[it.id].get("text") or "")
            out[it.id] = {"correct": ok, "score": float(ok), "metric": "accuracy"}
        return out


class _VhmCls(_SceneCls):
    prompt = "vhm_scene_cls"
    reference_matcher = "contain_either"
    rules = {"reference": "RSCoVLM for VHM files (vhm_bench.py eval_contain): " + RULE_DOCS["contain_either"],
             "strict": RULE_DOCS["strict"]}
    normalization = "reference: lower().strip().strip('.') of both; strict: strict_norm"
    file = ""

    def __init__(self):
        self.layout = (f"<root>/datasets_eval/{self.file}   VHM eval file: [{{image, image_path, conversations}}]\n"
                       f"<root>/datasets_eval/<image_path>/<image>")

    def load(self, root: Path) -> list[Item]:
        base = root / "datasets_eval"
        path = base / self.file
        items = []
        for line, rec in read_records(path, self):
            conv = field_of(rec, "conversations", path, line, self, (list,))
            if len(conv) != 2 or not all(isinstance(c, dict) and isinstance(c.get("value"), str) for c in conv):
                raise BenchmarkDataError(f"{self.name}: {path}:{line}: conversations must be [question, answer] "
                                         "turns with string values")
            image = base / field_of(rec, "image_path", path, line, self) / field_of(rec, "image", path, line, self)
            items.append(Item(id=str(line), image=need_image(image, f"{path}:{line}", self),
                              fields={"question": conv[0]["value"]}, target=conv[1]["value"],
                              meta={"image": rec["image"]}))
        return items


class _GeoChatCls(_SceneCls):
    prompt = "geochat_aid"
    reference_matcher = "contain"
    rules = {"reference": "RSCoVLM for GeoChat-Bench (geochat_scores): " + RULE_DOCS["contain"],
             "strict": RULE_DOCS["strict"]}
    normalization = "reference: lower().strip().strip('.') of both; strict: strict_norm"
    file = ""
    image_dir = ""
    jpg = False

    def __init__(self):
        self.layout = (f"<root>/GeoChat-Bench/{self.file}   GeoChat-Bench: {{question_id, image, text (with 'Classes: "
                       f"...'), ground_truth}} per line\n<root>/{self.image_dir}/<image>"
                       + (" (extension replaced by .jpg)" if self.jpg else ""))

    def load(self, root: Path) -> list[Item]:
        path = root / "GeoChat-Bench" / self.file
        items = []
        for line, rec in read_records(path, self):
            text = field_of(rec, "text", path, line, self)
            if "Classes:" not in text:
                raise BenchmarkDataError(f"{self.name}: {path}:{line}: text has no 'Classes:' list: {text[:120]!r}")
            classes = text.rsplit("Classes:")[1].rsplit("\n")[0].strip().lower()
            gt = field_of(rec, "ground_truth", path, line, self)
            gt = "medium residential" if gt == "MediumResidentialgt" else gt.lower()
            image = field_of(rec, "image", path, line, self)
            if self.jpg:
                image = image.rsplit(".")[0] + ".jpg"
            items.append(Item(id=str(rec.get("question_id", line)),
                              image=need_image(root / self.image_dir / image, f"{path}:{line}", self),
                              fields={"classes": classes}, target=gt, meta={}))
        return items


@register_benchmark
class AidVhm(_VhmCls):
    name, title, file = "aid_vhm", "AID (VHM split)", "cls_AID.json"
    paper = {"accuracy": "table4.aid_vhm"}


@register_benchmark
class AidGeoChat(_GeoChatCls):
    name, title, file, image_dir, jpg = "aid_geochat", "AID (GeoChat split)", "aid.jsonl", "AID", True
    paper = {"accuracy": "table4.aid_geochat"}


@register_benchmark
class UCMerced(_GeoChatCls):
    name, title, file, image_dir = "ucmerced", "UCMerced (GeoChat split)", "UCmerced.jsonl", "UCMerced_LandUse/Images"
    prompt = "geochat_ucmerced"
    paper = {"accuracy": "table4.ucmerced"}


@register_benchmark
class NwpuResisc45(_VhmCls):
    name, title, file = "nwpu_resisc45", "NWPU-RESISC45 (VHM split)", "cls_NWPU_RESISC45.json"
    paper = {"accuracy": "table4.nwpu_resisc45"}


@register_benchmark
class WhuRs19(_VhmCls):
    name, title, file = "whu_rs19", "WHU-RS19 (VHM split)", "cls_WHU_RS19.json"
    paper = {"accuracy": "table4.whu_rs19"}


@register_benchmark
class MeterMl(_VhmCls):
    name, title, file = "meter_ml", "METER-ML (VHM split)", "cls_METER_ML.json"
    paper = {"accuracy": "table4.meter_ml"}
