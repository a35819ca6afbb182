"""RSVQA-HR and RSVQA-LR (Lobry et al.; paper Table 5): accuracy per question type and overall.

Read from the released split files (three per split, linked by ids; entries with ``active: false`` left out):
``*_questions.json`` ``{"questions": [{id, img_id, type, question, answers_ids, active}]}``, ``*_answers.json``
``{"answers": [{id, question_id, answer, active}]}``; the answer of a question is its first active answer id.
The question types evaluated are GeoChat's RSVQA-HRBEN/LRBEN ones (counting and area questions left out):
presence and comparison, plus rural/urban for LR; ``overall`` = all answers, ``mean`` = the mean of the type
accuracies. The prompt is the reference's RSVQA (GeoChat HRBEN/LRBEN) prompt: the question + " Answer the question
using a single word or a short phrase."; reference rule ``compute_contain_acc`` (the reference's GeoChat
HRBEN/LRBEN scoring).
"""

from __future__ import annotations

from pathlib import Path

from rscovlm.eval.benchmarks import register_benchmark
from rscovlm.eval.benchmarks.base import (
    Benchmark,
    BenchmarkDataError,
    Item,
    answered,
    need_image,
    read_json,
)
from rscovlm.eval.vqa_rules import RULE_DOCS, accuracy_by, match


class _Rsvqa(Benchmark):
    task = "vqa"
    prompt = "geochat_hrben"
    rules = {"reference": "RSCoVLM geochat_hrben/lrben: " + RULE_DOCS["contain"], "strict": RULE_DOCS["strict"]}
    default_rule = "reference"
    normalization = "reference: lower().strip().strip('.') of both; strict: strict_norm"
    folder = prefix = split = images = ext = ""
    types: tuple[str, ...] = ()

    def __init__(self):
        stem = f"{self.prefix}_split_{self.split}"
        self.layout = (f"<root>/{self.folder}/{stem}_questions.json, {stem}_answers.json (RSVQA release)\n"
                       f"<root>/{self.folder}/{self.images}/<img_id>{self.ext}\nquestion types scored: "
                       + ", ".join(self.types))

    def load(self, root: Path) -> list[Item]:
        base = root / self.folder
        stem = f"{self.prefix}_split_{self.split}"
        qpath, apath = base / f"{stem}_questions.json", base / f"{stem}_answers.json"
        questions = self._list(read_json(qpath, self), "questions", qpath)
        answers = {a.get("id"): a for a in self._list(read_json(apath, self), "answers", apath)
                   if a.get("active", True)}
        items = []
        for k, q in enumerate(questions):
            where = f"{qpath}: questions[{k}]"
            if not q.get("active", True) or q.get("type") not in self.types:
                continue
            try:
                qid, img, text, ids = q["id"], q["img_id"], q["question"], q["answers_ids"]
            except KeyError as err:
                raise BenchmarkDataError(f"{self.name}: {where}: missing field {err}") from None
            ans = next((answers[i] for i in ids if i in answers), None)
            if ans is None:
                raise BenchmarkDataError(f"{self.name}: {where}: none of answers_ids {ids} is an active answer "
                                         f"in {apath}")
            items.append(Item(id=str(qid), image=need_image(base / self.images / f"{img}{self.ext}", where, self),
                              fields={"question": text}, target=str(ans["answer"]), meta={"type": q["type"]}))
        return items

    def _list(self, data, key: str, path: Path) -> list[dict]:
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise BenchmarkDataError(f"{self.name}: {path}: expected {{\"{key}\": [...]}}")
        return data[key]

    def score(self, items, answers, rule=None, partial=False, **options) -> dict:
        rule = self.check_rule(rule)
        todo, missing = answered(items, answers, partial)
        verdicts = self.item_scores(todo, answers, rule)
        groups: dict[str, list[bool]] = {}
        for it in todo:
            groups.setdefault(it.meta["type"], []).append(verdicts[it.id]["correct"])
        acc = accuracy_by(groups)
        metrics = {t: (None if g["accuracy"] is None else 100 * g["accuracy"]) for t, g in acc["groups"].items()}
        metrics["overall"] = None if acc["accuracy"] is None else 100 * acc["accuracy"]
        metrics["mean"] = None if acc["mean"] is None else 100 * acc["mean"]
        return {"metrics": metrics, "details": {**acc, "rule": rule}, "n": acc["total"], "n_missing": missing}

    def item_scores(self, items, answers, rule=None, **options) -> dict[str, dict]:
        rule = self.check_rule(rule)
        matcher = "contain" if rule == "reference" else "strict"
        todo, _ = answered(items, answers, partial=True)
        out = {}
        for it in todo:
            ok = match(matcher, it.target, answers[it.id].get("text") or "")
            out[it.id] = {"correct": ok, "score": float(ok), "metric": "accuracy"}
        return out


@register_benchmark
class RsvqaHR(_Rsvqa):
    name, title = "rsvqa_hr", "RSVQA-HR (test_phili)"
    folder, prefix, split, images, ext = "RSVQA_HR", "USGS", "test_phili", "Data", ".tif"
    types = ("presence", "comp")
    paper = {"overall": "table5.rsvqa_hr"}
    notes = "GeoChat evaluates HR on the Philadelphia test split (test_phili)"


@register_benchmark
class RsvqaLR(_Rsvqa):
    name, title = "rsvqa_lr", "RSVQA-LR (test)"
    folder, prefix, split, images, ext = "RSVQA_LR", "LR", "test", "Images_LR", ".tif"
    types = ("presence", "comp", "rural_urban")
    paper = {"overall": "table5.rsvqa_lr"}
