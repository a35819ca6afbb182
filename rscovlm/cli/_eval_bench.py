"""``rscovlm eval list|show-prompt|score-answers|score|compare``: the benchmark registry and its scorers
(docs/benchmarks.md). These commands join the ``eval`` group of :mod:`rscovlm.cli.eval`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rscovlm.cli import CliError, add_group


def _eval_commands(sub) -> argparse._SubParsersAction:
    """The sub-command collection of the ``eval`` group (made here when this module registers first)."""
    parser = sub.choices.get("eval")
    if parser is None:
        return add_group(sub, "eval", help="evaluate: metrics, benchmarks and scorers")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError("the eval command has no sub-commands")


def _judge_options(p) -> None:
    p.add_argument("--judge-url", default=None, metavar="URL",
                   help="OpenAI-compatible API root of an LLM judge for VRSBench-VQA's open answers (e.g. "
                        "http://127.0.0.1:8000/v1); without it those answers are counted as judge-needed")
    p.add_argument("--judge-model", default="gpt-4o-mini", help="judge model name (VRSBench used gpt-4o-mini)")


def _judge(args):
    if args.judge_url is None:
        return None
    from rscovlm.eval.judge import Judge, JudgeConfig

    return Judge(JudgeConfig(base_url=args.judge_url, model=args.judge_model))


def register(sub) -> None:
    group = _eval_commands(sub)

    p = group.add_parser("list", help="the benchmark registry: data layout under the data root, rules, prompt")
    p.add_argument("--json", action="store_true", help="print the registry as JSON")
    p.set_defaults(handler=_list)

    p = group.add_parser("show-prompt", help="the exact messages sent for a benchmark item (the first by default)")
    p.add_argument("--bench", required=True, help="benchmark name (rscovlm eval list)")
    p.add_argument("--data-root", required=True, help="folder holding the benchmark's released files")
    p.add_argument("--item", default=None, help="item id (default: the first item)")
    p.add_argument("--prompt-set", default=None, help="prompt set name or folder (default: reference)")
    p.set_defaults(handler=_show_prompt)

    p = group.add_parser("score-answers", help="score an answer file in a benchmark's released format "
                                               "(lrs_vqa, vrsbench_vg, vrsbench_vqa)")
    p.add_argument("--bench", required=True, help="lrs_vqa (or lrs_vqa_zoom), vrsbench_vg or vrsbench_vqa")
    p.add_argument("--answers", required=True, help="answers jsonl in the benchmark's released format")
    p.add_argument("--rule", default=None, help="scoring rule (rscovlm eval list shows each benchmark's; default: "
                                                "official)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the result as JSON")
    _judge_options(p)
    p.set_defaults(handler=_score_answers)

    p = group.add_parser("score", help="score a run folder (<bench>/answers.jsonl + run.json per benchmark): "
                                       "markdown tables beside the paper's numbers")
    p.add_argument("run", help="run folder written by rscovlm eval run")
    p.add_argument("--rule", default=None, help="rule for every benchmark that has it (default: each one's default)")
    p.add_argument("--bench", default=None, help="comma-separated benchmarks to score (default: all in the folder)")
    p.add_argument("--partial", action="store_true", help="score only the answered items of an unfinished run")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the results as JSON")
    _judge_options(p)
    p.set_defaults(handler=_score)

    p = group.add_parser("compare", help="two runs side by side (results JSON files or run folders)")
    p.add_argument("a", help="first results JSON or run folder")
    p.add_argument("b", help="second results JSON or run folder")
    p.set_defaults(handler=_compare)


def _errors():
    from rscovlm.eval.benchmarks import AnswersError, BenchmarkDataError
    from rscovlm.eval.judge import JudgeError
    from rscovlm.eval.lrs_vqa import WordNetMissing

    return (AnswersError, BenchmarkDataError, JudgeError, WordNetMissing, KeyError, ValueError)


def _list(args) -> int:
    from rscovlm.eval.benchmarks import get_benchmark, list_benchmarks

    rows = [get_benchmark(n).describe() for n in list_benchmarks()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(f"{r['name']}: {r['title']} [{r['task']}]")
        print("  data:    " + r["layout"].replace("\n", "\n           "))
        print(f"  prompt:  {r['prompt']}" + (f" (form {r['form']})" if r["form"] else ""))
        t = r["prompt_template"]
        if t is not None:
            if t["system"] is not None:
                print("    system: " + json.dumps(t["system"])[:300])
            print("    user:   " + json.dumps(t["user"]))
        print(f"  pixels:  {r['pixels']}")
        for name, doc in r["rules"].items():
            print(f"  rule {name}{' (default)' if name == r['default_rule'] else ''}: {doc}")
        if r["answer_format"]:
            print(f"  score-answers reads: {r['answer_format']}")
        if r["notes"]:
            print(f"  note:    {r['notes']}")
        print()
    return 0


def _show_prompt(args) -> int:
    from rscovlm.eval.benchmarks import get_benchmark

    try:
        bench = get_benchmark(args.bench)
        items = bench.items(args.data_root)
        if args.item is None:
            item = items[0]
        else:
            item = next((it for it in items if it.id == args.item), None)
            if item is None:
                raise KeyError(f"{bench.name}: no item {args.item!r} (first ids: {[it.id for it in items[:5]]})")
        msgs = bench.messages(item, args.prompt_set)
    except _errors() as err:
        raise CliError(str(err).strip("'\"")) from None
    print(json.dumps({"bench": bench.name, "item": item.id, "messages": msgs}, indent=2, ensure_ascii=False))
    return 0


def _write_json(path: str | None, data: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2), encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)


def _score_answers(args) -> int:
    from rscovlm.eval.benchmarks import get_benchmark
    from rscovlm.eval.benchmarks.results import markdown_table, result_of

    try:
        bench = get_benchmark(args.bench)
        if bench.answer_format is None:
            raise ValueError(f"{bench.name} has no released answer-file format; score-answers reads lrs_vqa, "
                             "lrs_vqa_zoom, vrsbench_vg and vrsbench_vqa files (use rscovlm eval score for runs)")
        rule = bench.check_rule(args.rule)
        scored = bench.score_answer_file(args.answers, rule, judge=_judge(args))
    except _errors() as err:
        raise CliError(str(err).strip("'\"")) from None
    result = result_of(bench, scored, rule)
    if bench.name.startswith("lrs_vqa"):
        from rscovlm.eval.lrs_vqa import format_lrs_vqa

        print(format_lrs_vqa(scored["details"]))
    elif bench.name == "vrsbench_vg":
        d = scored["details"]
        print(f"VRSBench grounding (rule: {rule})\nnumber of total/valid samples: {d['total']} {d['valid']}")
        for key in ("Acc@0.5", "Acc@0.7", "meanIoU", "cumIoU"):
            print(f"{key}: " + ("n/a" if d[key] is None else f"{d[key]:.2f}"))
    else:
        print(markdown_table(result))
        d = scored["details"]
        if d.get("judge_needed"):
            print(f"\n{d['judge_needed']} answers need the LLM judge (--judge-url); accuracy_rule_only counts them "
                  "as wrong")
    _write_json(args.json, {"results": {bench.name: result}})
    return 0


def _score(args) -> int:
    from rscovlm.eval.benchmarks.results import markdown, score_run

    try:
        benches = [b.strip() for b in args.bench.split(",")] if args.bench else None
        results = score_run(args.run, args.rule, args.partial, _judge(args), benches)
    except _errors() as err:
        raise CliError(str(err).strip("'\"")) from None
    print(markdown(results))
    _write_json(args.json, results)
    return 0


def _compare(args) -> int:
    from rscovlm.eval.benchmarks.results import compare, load_results

    try:
        a, b = load_results(args.a), load_results(args.b)
    except _errors() as err:
        raise CliError(str(err).strip("'\"")) from None
    print(compare(a, b, Path(args.a).name, Path(args.b).name))
    return 0
