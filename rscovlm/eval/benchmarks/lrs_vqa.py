"""LRS-VQA (large remote-sensing images; sources FAIR1M, STAR, GLH-Bridge), one pass and with the Zoom-in Chain.

Paper Table 1 reports the average accuracy (AA) per source under the official scorer (:mod:`rscovlm.eval.lrs_vqa`).
"""

from __future__ import annotations

from pathlib import Path

from rscovlm.eval.benchmarks import register_benchmark
from rscovlm.eval.benchmarks.base import (
    AnswersError,
    Benchmark,
    Item,
    answered,
    field_of,
    need_image,
    pct,
    read_records,
)
from rscovlm.eval.lrs_vqa import LRS_VQA_RULES, score_lrs_vqa

SOURCES = ("FAIR", "STAR", "GLH-Bridge")
ANSWER_FORMAT = ('jsonl, one line per question as the released llava_eval_LRSVQA.py writes it: "question_id" '
                 '(or "id", which the released scorer reads), "category", "ground_truth", "text" (the answer)')


class _LrsVqa(Benchmark):
    task = "vqa"
    layout = ("<root>/LRS_VQA_merged.jsonl   the released question file (question_id, image, category, text, "
              "ground_truth, image_size, ...)\n<root>/<image>                 images at the path the record names, "
              "e.g. <root>/LRS_VQA/image/15565.tif")
    normalization = ("official: answer and ground truth lower-cased only (no strip); the runner stores the answer "
                     "stripped, as the released inference script writes it")
    rules = LRS_VQA_RULES
    default_rule = "official"
    paper = {f"{s}/AA": f"table1.{s}" for s in SOURCES}
    answer_format = ANSWER_FORMAT

    def load(self, root: Path) -> list[Item]:
        path = root / "LRS_VQA_merged.jsonl"
        items = []
        for line, rec in read_records(path, self):
            qid = field_of(rec, "question_id", path, line, self)
            image = field_of(rec, "image", path, line, self)
            items.append(Item(
                id=qid, image=need_image(root / image, f"{path}:{line}", self),
                fields={"question": field_of(rec, "text", path, line, self)},
                target=field_of(rec, "ground_truth", path, line, self),
                meta={"category": field_of(rec, "category", path, line, self), "source": qid.split("_")[0],
                      "image_size": rec.get("image_size")}))
        return items

    def score(self, items, answers, rule=None, partial=False, **options) -> dict:
        rule = self.check_rule(rule)
        todo, missing = answered(items, answers, partial)
        lines = [{"id": it.id, "category": it.meta["category"], "ground_truth": it.target,
                  "text": (answers[it.id].get("text") or "").strip()} for it in todo]
        return self._result(score_lrs_vqa(lines, rule), missing)

    def _result(self, res: dict, missing: int = 0) -> dict:
        metrics = {}
        for source, s in res["sources"].items():
            metrics[f"{source}/AA"] = pct(s["AA"])
            metrics[f"{source}/OA"] = pct(s["OA"])
        metrics["all/AA"] = pct(res["overall"]["AA"])
        metrics["all/OA"] = pct(res["overall"]["OA"])
        return {"metrics": metrics, "details": res, "n": res["overall"]["total"], "n_missing": missing}

    def score_answer_file(self, path, rule=None, **options) -> dict:
        rule = self.check_rule(rule)
        return self._result(score_lrs_vqa(read_lrs_vqa_answers(path), rule))


def read_lrs_vqa_answers(path) -> list[dict]:
    """Answer lines of the released format (``ANSWER_FORMAT``); a line without an id, category, ground truth or
    text field is an error naming file:line (the released scorer would skip an empty ground truth or category:
    those are still skipped and counted)."""
    from rscovlm.data.records import RecordError, iter_jsonl

    path = Path(path)
    if not path.is_file():
        raise AnswersError(f"{path}: no such answers file")
    out = []
    try:
        for line, rec in iter_jsonl(path):
            if not isinstance(rec, dict):
                raise AnswersError(f"{path}:{line}: expected a JSON object")
            if "id" not in rec and "question_id" not in rec:
                raise AnswersError(f"{path}:{line}: needs \"question_id\" (or \"id\")")
            for key in ("category", "ground_truth", "text"):
                if key not in rec:
                    raise AnswersError(f"{path}:{line}: missing field {key!r}")
                if rec[key] is not None and not isinstance(rec[key], str):
                    raise AnswersError(f"{path}:{line}: field {key!r} must be a string, got {rec[key]!r}")
            out.append(rec)
    except RecordError as err:
        raise AnswersError(str(err)) from None
    return out


@register_benchmark
class LrsVqa(_LrsVqa):
    name = "lrs_vqa"
    title = "LRS-VQA, one pass"
    prompt = "lrsvqa"


@register_benchmark
class LrsVqaZoom(_LrsVqa):
    name = "lrs_vqa_zoom"
    title = "LRS-VQA with the Zoom-in Chain"
    task = "zoom"
    prompt = "lrsvqa_visual_cot"
    paper = {f"{s}/AA": f"table1.zoom.{s}" for s in SOURCES}
    notes = ("pass 1 asks for a zoom-in tool call (system prompt of zoom.yaml); count questions stay one pass, as in "
             "the reference; the runner's zoom chain crops and asks pass 2, whose answer is the line's text")


__all__ = ["LrsVqa", "LrsVqaZoom", "read_lrs_vqa_answers"]
