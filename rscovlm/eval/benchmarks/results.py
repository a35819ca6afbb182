"""Scoring a run folder, result JSON, markdown tables beside the paper's numbers, and comparing two runs.

Run folder (written by the runner, read by :func:`score_run`)::

    O/<bench>/answers.jsonl   one answer line per item (rscovlm.eval.benchmarks.base)
    O/<bench>/run.json        {"bench": name, "data_root": R, "prompt_set": S, "options": {...}, "settings": {...}}

A result (one per benchmark) is ``{"bench", "title", "rule", "rule_doc", "n", "n_missing", "metrics": {name:
percent}, "paper": {name: {"value", "table", "what"}}, "details": {...}}``; :func:`score_run` returns
``{"results": {bench: result}}``.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml

from rscovlm.eval.benchmarks import AnswersError, get_benchmark
from rscovlm.eval.benchmarks.base import Benchmark


@lru_cache(maxsize=1)
def paper_numbers() -> dict:
    """``{key: {"table", "what", "value"}}`` from ``paper.yaml`` (values in percent, None where not typed)."""
    text = resources.files("rscovlm.eval.benchmarks").joinpath("paper.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def read_answers(path: str | os.PathLike) -> dict[str, dict]:
    """``{id: answer line}`` of an answers jsonl; a line that is not a JSON object with a string ``id`` and a
    string ``text``, or a repeated id, is an error naming ``file:line``."""
    from rscovlm.data.records import RecordError, iter_jsonl

    path = Path(path)
    if not path.is_file():
        raise AnswersError(f"{path}: no such answers file")
    out: dict[str, dict] = {}
    try:
        for line, rec in iter_jsonl(path):
            if not isinstance(rec, dict) or not isinstance(rec.get("id"), str) or not isinstance(rec.get("text"), str):
                raise AnswersError(f'{path}:{line}: an answer line needs a string "id" and a string "text"')
            if rec["id"] in out:
                raise AnswersError(f"{path}:{line}: a second answer for id {rec['id']!r}")
            out[rec["id"]] = rec
    except RecordError as err:
        raise AnswersError(str(err)) from None
    return out


def result_of(bench: Benchmark, scored: dict, rule: str) -> dict:
    paper = {}
    for metric, key in bench.paper.items():
        entry = paper_numbers().get(key)
        if entry is not None:
            paper[metric] = {"value": entry.get("value"), "table": entry.get("table"), "what": entry.get("what")}
    return {"bench": bench.name, "title": bench.title, "rule": rule, "rule_doc": bench.rules.get(rule, ""),
            "n": scored.get("n"), "n_missing": scored.get("n_missing", 0), "metrics": scored.get("metrics", {}),
            "paper": paper, "details": scored.get("details", {})}


def score_run(out_dir: str | os.PathLike, rule: str | None = None, partial: bool = False, judge=None,
              benches: list[str] | None = None) -> dict:
    """Score every ``<bench>/answers.jsonl`` of a run folder (or the ``benches`` named) with its ``run.json``."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise AnswersError(f"{out_dir}: no such run folder")
    folders = sorted(p.parent for p in out_dir.glob("*/answers.jsonl"))
    if benches is not None:
        folders = [out_dir / b for b in benches]
    if not folders:
        raise AnswersError(f"{out_dir}: no <bench>/answers.jsonl inside")
    results = {}
    for folder in folders:
        run_file = folder / "run.json"
        if not run_file.is_file():
            raise AnswersError(f"{run_file}: missing (the runner writes it beside answers.jsonl)")
        try:
            run = json.loads(run_file.read_text(encoding="utf-8"))
        except ValueError as err:
            raise AnswersError(f"{run_file}: not valid JSON: {err}") from None
        bench = get_benchmark(run.get("bench", folder.name))
        if run.get("options") and hasattr(bench, "with_options"):
            bench = bench.with_options(**run["options"])
        if "data_root" not in run:
            raise AnswersError(f"{run_file}: no \"data_root\"")
        items = bench.items(run["data_root"])
        answers = read_answers(folder / "answers.jsonl")
        unknown = [a for a in answers if a not in {it.id for it in items}]
        if unknown:
            raise AnswersError(f"{folder / 'answers.jsonl'}: {len(unknown)} answers for ids that are not items of "
                               f"{bench.name} (first: {unknown[:3]})")
        r = rule if rule in bench.rules else bench.default_rule  # a rule the benchmark lacks: its default
        scored = bench.score(items, answers, r, partial=partial, judge=judge, data_root=run["data_root"],
                             out_dir=str(folder), family=run.get("settings", {}).get("family"))
        results[bench.name] = result_of(bench, scored, r)
        results[bench.name]["run"] = {k: run.get(k) for k in ("prompt_set", "settings")}
        if rule is not None and rule != r:
            results[bench.name]["rule_note"] = f"no rule {rule!r} here; scored with its default {r!r}"
    return {"results": results}


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def markdown_table(result: dict) -> str:
    """One benchmark: metric | ours | paper (RSCoVLM, table)."""
    lines = [f"### {result['title']} (`{result['bench']}`, rule `{result['rule']}`, n={result['n']})", "",
             "| metric | ours | paper (RSCoVLM) |", "|---|---:|---:|"]
    for metric, value in result["metrics"].items():
        p = result["paper"].get(metric)
        paper = "" if p is None else (f"{_fmt(p['value'])} ({p['table']})" if p["value"] is not None
                                      else f"not typed ({p['table']})")
        lines.append(f"| {metric} | {_fmt(value)} | {paper} |")
    if result.get("n_missing"):
        lines.append(f"\n{result['n_missing']} items without an answer were left out (--partial).")
    return "\n".join(lines)


def markdown(results: dict) -> str:
    return "\n\n".join(markdown_table(r) for r in results["results"].values())


def load_results(path: str | os.PathLike) -> dict:
    """A result JSON (``--json`` of ``eval score``/``score-answers``) or a run folder (scored now)."""
    path = Path(path)
    if path.is_dir():
        return score_run(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise AnswersError(f"{path}: cannot read results: {err}") from None
    if "results" not in data:
        raise AnswersError(f"{path}: not a results file (no \"results\")")
    return data


def compare(a: dict, b: dict, name_a: str = "A", name_b: str = "B") -> str:
    """Markdown: per benchmark and metric, the two runs and their difference (B - A)."""
    out = [f"| benchmark | metric | {name_a} | {name_b} | {name_b} - {name_a} |", "|---|---|---:|---:|---:|"]
    for bench in list(dict.fromkeys([*a["results"], *b["results"]])):
        ra, rb = a["results"].get(bench, {}), b["results"].get(bench, {})
        ma, mb = ra.get("metrics", {}), rb.get("metrics", {})
        for metric in list(dict.fromkeys([*ma, *mb])):
            va, vb = ma.get(metric), mb.get(metric)
            diff = vb - va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
            out.append(f"| {bench} | {metric} | {_fmt(va)} | {_fmt(vb)} | "
                       f"{'n/a' if diff is None else f'{diff:+.2f}'} |")
        rules = {ra.get("rule"), rb.get("rule")} - {None}
        if len(rules) > 1:
            out.append(f"| {bench} | (rules differ: {name_a} {ra.get('rule')}, {name_b} {rb.get('rule')}) | | | |")
    return "\n".join(out)
