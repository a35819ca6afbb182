"""VRSBench (Li et al., NeurIPS 2024 D&B) in its own released layout: visual grounding (``vrsbench_vg``) and VQA
(``vrsbench_vqa``, paper Table 5), scored by the rules of the authors' notebooks (lx709/VRSBench
``eval_fianl/compute_metrics.ipynb``, ``eval_vqa_gpt.ipynb``).

Layout: ``<root>/VRSBench_EVAL_referring.json`` and ``<root>/VRSBench_EVAL_vqa.json`` (JSON arrays, as the prep
notebook writes them; read by :mod:`rscovlm.data.vrsbench`, conventions there), images at
``<root>/Images/<image_id>``.
"""

from __future__ import annotations

from pathlib import Path

from rscovlm.eval.benchmarks import register_benchmark
from rscovlm.eval.benchmarks.base import (
    AnswersError,
    Benchmark,
    BenchmarkDataError,
    Item,
    answered,
    field_of,
    need_file,
    need_image,
    pct,
    resize_of,
)
from rscovlm.eval.grounding import VRSBENCH_VG_RULES, score_vrsbench_referring
from rscovlm.eval.vqa_rules import match, vrsbench_rule

VRSBENCH_TYPES = ("object category", "object existence", "object quantity", "object color", "object shape",
                  "object size", "object position", "object direction", "image", "scene type", "reasoning",
                  "rural or urban")
TYPE_ALIASES = {"image": "scene type", "rural or urban": "scene type"}  # the notebook's per-type merge


def _read_answer_lines(path, required: tuple[str, ...]) -> list[dict]:
    from rscovlm.data.records import RecordError, iter_jsonl

    path = Path(path)
    if not path.is_file():
        raise AnswersError(f"{path}: no such answers file")
    out = []
    try:
        for line, rec in iter_jsonl(path):
            if not isinstance(rec, dict):
                raise AnswersError(f"{path}:{line}: expected a JSON object")
            for key in required:
                if isinstance(key, tuple):
                    if not any(k in rec for k in key):
                        raise AnswersError(f"{path}:{line}: needs one of {list(key)}")
                elif key not in rec:
                    raise AnswersError(f"{path}:{line}: missing field {key!r}")
            out.append(rec)
    except RecordError as err:
        raise AnswersError(str(err)) from None
    return out


def _read(reader, path: Path, bench: Benchmark):
    """The records of ``reader`` (:mod:`rscovlm.data.vrsbench`, the one reader of these files), its errors as
    :class:`BenchmarkDataError` naming the benchmark, file, line and field."""
    from rscovlm.data.records import RecordError

    try:
        return reader(path)
    except RecordError as err:
        raise BenchmarkDataError(f"{bench.name}: {err}") from None


def normal_caption(question: str) -> str:
    """The referring phrase the reference prompts with (``format_vrsbench.py``): ``<image>\\n`` removed,
    stripped, a leading ``the `` dropped and then trailing periods (only then)."""
    text = question.replace("<image>\n", "").strip()
    if text.lower().startswith("the "):
        text = text[4:].rstrip(".")
    return text


@register_benchmark
class VrsbenchVG(Benchmark):
    name = "vrsbench_vg"
    title = "VRSBench visual grounding (its own layout and scorer)"
    task = "grounding"
    prompt = "vrsbench_referring"
    form = "plain"
    layout = ("<root>/VRSBench_EVAL_referring.json   JSON array: image_id, question (the referring sentence), "
              "ground_truth '{<x1><y1><x2><y2>}' (0-100 grid), question_id, unique/is_unique, ...\n"
              "<root>/Images/<image_id>")
    rules = VRSBENCH_VG_RULES
    normalization = ("the answer's first box, model frame -> original pixels -> VRSBench's 0-100 grid (official: "
                     "written as integers, truncated, as the prep notebook writes int(v * 100); strict: exact)")
    answer_format = ('jsonl output lines of VRSBench\'s referring evaluation: "image_id", "ground_truth", "answer" '
                     '(boxes as text on the 0-100 grid, e.g. {<12><30><40><66>}), "is_unique"')

    def load(self, root: Path) -> list[Item]:
        from rscovlm.data.vrsbench import read_vrsbench_referring
        from rscovlm.imageio import image_size

        path = need_file(root / "VRSBench_EVAL_referring.json", self)
        items = []
        for q in _read(read_vrsbench_referring, path, self):
            image = need_image(root / "Images" / q.image_id, f"{path}:{q.line}", self)
            qid = q.question_id if q.question_id is not None else q.line
            items.append(Item(id=str(qid), image=image, fields={"object": normal_caption(q.question)},
                              target=q.raw["ground_truth"],
                              meta={"is_unique": 1 if q.unique is None else q.unique,
                                    "size": list(image_size(image)), "obj_cls": q.obj_cls}))
        return items

    def score(self, items, answers, rule=None, partial=False, **options) -> dict:
        import numpy as np

        from rscovlm.geometry.boxes import Boxes, Frame
        from rscovlm.protocol.grounding import read_grounding

        rule = self.check_rule(rule)
        todo, missing = answered(items, answers, partial)
        lines = []
        for it in todo:
            ans = answers[it.id]
            plan = resize_of(ans, self.name)
            read = read_grounding(ans.get("text") or "", "hbb", "reference" if rule == "official" else "auto",
                                  self.form if rule == "official" else None)
            text = ""
            if read.values and not read.normalized:
                box = Boxes(np.asarray([read.values[0]], float), "hbb", Frame.model(*plan.model_size))
                grid = box.to_frame(plan.original).data[0] / np.array([plan.original.width, plan.original.height] * 2)
                grid = grid * 100.0
                text = ("{" + "".join(f"<{int(v)}>" for v in grid) + "}" if rule == "official"
                        else "{" + "".join(f"<{float(v)!r}>" for v in grid) + "}")
            lines.append({"image_id": it.id, "ground_truth": it.target, "answer": text,
                          "is_unique": it.meta.get("is_unique", 1)})
        return self._result(score_vrsbench_referring(lines, rule), missing)

    def _result(self, res: dict, missing: int = 0) -> dict:
        keys = ("Acc@0.5", "Acc@0.7", "meanIoU", "cumIoU")
        return {"metrics": {k: res[k] for k in keys}, "details": res, "n": res["total"], "n_missing": missing}

    def score_answer_file(self, path, rule=None, **options) -> dict:
        rule = self.check_rule(rule)
        lines = _read_answer_lines(path, ("image_id", "ground_truth", "answer"))
        return self._result(score_vrsbench_referring(lines, rule))


VQA_RULES = {
    "official": "VRSBench eval_vqa_gpt.ipynb: lower-cased; ground truth inside the answer; yes/no/0-99 need "
                "equality; the rest by an LLM judge (--judge-url), else counted as judge-needed",
    "reference": "RSCoVLM compute_contain_acc: lower/strip/strip('.'), ground truth inside the answer",
    "strict": "normalized exact match (case, punctuation, separators); empty answer wrong",
}


@register_benchmark
class VrsbenchVQA(Benchmark):
    name = "vrsbench_vqa"
    title = "VRSBench VQA"
    task = "vqa"
    prompt = "vrsbench_vqa"
    layout = ("<root>/VRSBench_EVAL_vqa.json   JSON array: image_id, question, ground_truth, question_id, type\n"
              "<root>/Images/<image_id>")
    rules = VQA_RULES
    default_rule = "official"
    paper = {"accuracy": "table5.vrsbench_vqa"}
    normalization = "official: lower-cased only; reference: lower/strip/strip('.'); strict: strict_norm"
    answer_format = ('jsonl output lines of VRSBench\'s VQA evaluation: "question_id", "type", "question", '
                     '"ground_truth", "answer" (or "predicted"), optional "correct" ("1"/"0": an earlier verdict)')

    def load(self, root: Path) -> list[Item]:
        from rscovlm.data.vrsbench import read_vrsbench_eval

        path = need_file(root / "VRSBench_EVAL_vqa.json", self)
        items = []
        for line, rec in _read(read_vrsbench_eval, path, self):
            qid = rec.get("question_id", line)
            items.append(Item(id=str(qid), image=need_image(root / "Images" / rec["image_id"], f"{path}:{line}", self),
                              fields={"question": rec["question"]},
                              target=field_of(rec, "ground_truth", path, line, self),  # VQA: one answer string
                              meta={"type": str(rec.get("type", "")), "question": rec["question"]}))
        return items

    def score(self, items, answers, rule=None, partial=False, judge=None, **options) -> dict:
        rule = self.check_rule(rule)
        todo, missing = answered(items, answers, partial)
        lines = [{"question_id": it.id, "type": it.meta["type"], "question": it.meta["question"],
                  "ground_truth": it.target, "answer": answers[it.id].get("text") or ""} for it in todo]
        res = score_vrsbench_vqa(lines, rule, judge)
        res["n_missing"] = missing
        return res

    def score_answer_file(self, path, rule=None, judge=None, **options) -> dict:
        rule = self.check_rule(rule)
        lines = _read_answer_lines(path, ("ground_truth", ("answer", "predicted")))
        return score_vrsbench_vqa(lines, rule, judge)


def score_vrsbench_vqa(lines: list[dict], rule: str = "official", judge=None) -> dict:
    """Accuracy overall and per question type (``image`` and ``rural or urban`` merged into ``scene type`` as
    the notebook does) under ``rule``. Official: the notebook's rules; an earlier verdict in ``correct``
    (``"1"``/``"0"``) is kept; the rest goes to ``judge`` (:class:`rscovlm.eval.judge.Judge`) or is counted in
    ``judge_needed`` (then ``accuracy`` is None and ``accuracy_rule_only`` counts those as wrong)."""
    verdicts: list[tuple[str, str | None]] = []
    judge_needed = judged = 0
    for rec in lines:
        gt, pred = str(rec["ground_truth"]), str(rec.get("answer", rec.get("predicted")) or "")
        qtype = str(rec.get("type", "")).lower()
        if rule == "official":
            ok = vrsbench_rule(gt, pred)
            if ok is not None:
                verdict = "1" if ok else "0"
            elif rec.get("correct") in ("1", "0"):
                verdict = rec["correct"]
            elif judge is not None:
                verdict = judge(str(rec.get("question", "")), gt, pred)
                judged += 1
            else:
                verdict = None
                judge_needed += 1
        else:
            verdict = "1" if match("contain" if rule == "reference" else "strict", gt, pred) else "0"
        verdicts.append((TYPE_ALIASES.get(qtype, qtype), verdict))
    total = len(verdicts)
    correct = sum(v == "1" for _, v in verdicts)
    per_type: dict[str, dict] = {}
    for qtype, v in verdicts:
        t = per_type.setdefault(qtype, {"correct": 0, "total": 0})
        t["total"] += 1
        t["correct"] += v == "1"
    for t in per_type.values():
        t["accuracy"] = pct(t["correct"] / t["total"])
    known = [per_type[t]["accuracy"] for t in VRSBENCH_TYPES if t in per_type]
    unknown_types = sorted(t for t in per_type if t not in VRSBENCH_TYPES)
    acc = pct(correct / total) if total else None
    return {"metrics": {"accuracy": acc if not judge_needed else None,
                        "accuracy_rule_only": acc, "judge_needed": judge_needed},
            "details": {"rule": rule, "correct": correct, "total": total, "judged": judged,
                        "judge_needed": judge_needed, "other_judge_replies": sum(v not in ("1", "0", None)
                                                                                 for _, v in verdicts),
                        "types": dict(sorted(per_type.items())),
                        "mean_of_types": sum(known) / len(known) if known else None,
                        "unknown_types": unknown_types},
            "n": total}
