"""Parity of ``rscovlm eval score-answers`` with the released scorers, run UNCHANGED outside the repository.

* LRS-VQA: ``Script/evaluation_LRSVQA.py`` of VisionXLab/LRS-VQA (``--lrs-scorer``) on answers generated from a
  question file (``--lrs-questions``, e.g. the public ``LRS_VQA_merged.jsonl``): exact, case, trailing period,
  padding, numbers as words, WordNet synonyms, other answers, empty. The scorer runs with NLTK reading the same
  WordNet 3.0 folder as rscovlm (placed at ``<tmp>/nltk_data/corpora/wordnet``).
* VRSBench grounding: the code cells of ``eval_fianl/compute_metrics.ipynb`` of lx709/VRSBench
  (``--vrsbench-notebook``, with its ``eval_utils.py`` beside it) executed in order, on referring output lines with
  signs, decimals, missing numbers, reversed, degenerate and zero-area boxes. ``BboxToolkit`` (a submodule the
  snapshot lacks, used only on its oriented-box path) is a stub module.

Every count and printed figure is compared; the script prints both and exits 1 on any difference. It needs the
released files, so it is not a test::

    python benchmarks/parity_bench_scorers.py --lrs-scorer /tmp/x/evaluation_LRSVQA.py \\
        --lrs-questions ../shared/data/lrs_vqa/LRS_VQA_merged.jsonl \\
        --vrsbench-notebook /tmp/y/compute_metrics.ipynb --work /tmp/parity_run
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORDS = {str(i): w for i, w in enumerate("zero one two three four five six seven eight nine ten".split())}


def lrs_answers(questions: Path, out: Path, seed: int = 0) -> int:
    from rscovlm.eval.lrs_vqa import load_wordnet

    wn = load_wordnet()
    rng = random.Random(seed)
    rows = [json.loads(line) for line in questions.read_text(encoding="utf-8").splitlines() if line.strip()]
    pool = [r["ground_truth"] for r in rows]
    with out.open("w", encoding="utf-8") as f:
        for r in rows:
            gt = r["ground_truth"]
            kind = rng.randrange(10)
            if kind == 0:
                text = gt
            elif kind == 1:
                text = gt.upper() if rng.random() < 0.5 else gt.capitalize()
            elif kind == 2:
                text = gt + "."
            elif kind == 3:
                text = " " + gt + " "
            elif kind == 4:
                text = WORDS.get(gt, {v: k for k, v in WORDS.items()}.get(gt, gt))
            elif kind == 5:
                lemmas = [lem.name().replace("_", " ") for s in wn.synsets(gt)[:3] for lem in s.lemmas()]
                text = rng.choice(lemmas) if lemmas else gt
            elif kind == 6:
                text = rng.choice(pool)
            elif kind == 7:
                text = ""
            elif kind == 8:
                text = rng.choice(["yes", "no", "Yes", "2", "two", "grey", "gray", "round", "circular"])
            else:
                text = f"The answer is {gt}"
            line = {"question_id": r["question_id"], "id": r["question_id"], "prompt": r["text"],
                    "category": r["category"], "text": text, "ground_truth": gt}
            f.write(json.dumps(line) + "\n")
    return len(rows)


def parse_lrs_official(stdout: str) -> dict:
    out, cur = {}, None
    for line in stdout.splitlines():
        m = re.match(r"Evaluating dataset: (.+)$", line)
        if m:
            cur = out.setdefault(m.group(1).strip(), {"categories": {}})
            continue
        if cur is None:
            continue
        m = re.match(r"(.+?)\s*: (\d+)/(\d+) \(([\d.]+)%\)$", line)
        if m:
            cur["categories"][m.group(1).strip()] = (int(m.group(2)), int(m.group(3)), m.group(4))
        m = re.match(r"Overall Accuracy \(OA\): ([\d.]+)%", line)
        if m:
            cur["OA"] = m.group(1)
        m = re.match(r"Average Accuracy \(AA\): ([\d.]+)%", line)
        if m:
            cur["AA"] = m.group(1)
        m = re.match(r"Total Correct: (\d+)", line)
        if m:
            cur["correct"] = int(m.group(1))
    return out


def run_lrs(args, work: Path) -> bool:
    from rscovlm.eval.lrs_vqa import wordnet_dir

    answers = work / "lrs_answers.jsonl"
    n = lrs_answers(Path(args.lrs_questions), answers)
    nltk_data = work / "nltk_data" / "corpora"
    nltk_data.mkdir(parents=True, exist_ok=True)
    copy = nltk_data / "wordnet"
    if not copy.exists():  # a copy, not a link: NLTK refuses data that resolves outside its data path
        shutil.copytree(wordnet_dir(), copy)
    scorer = work / "evaluation_LRSVQA.py"
    shutil.copyfile(args.lrs_scorer, scorer)
    env = {**os.environ, "NLTK_DATA": str(work / "nltk_data"),
           "PYTHONPATH": os.pathsep.join(p for p in (args.pylib or "", os.environ.get("PYTHONPATH", "")) if p)}
    off = subprocess.run([sys.executable, str(scorer), "--results_file", str(answers)], cwd=work, env=env,
                         capture_output=True, text=True)
    if off.returncode:
        print(off.stdout[-2000:], off.stderr[-4000:])
        raise SystemExit("the official LRS-VQA scorer failed")
    official = parse_lrs_official(off.stdout)
    ours_json = work / "lrs_ours.json"
    subprocess.run([sys.executable, "-m", "rscovlm", "eval", "score-answers", "--bench", "lrs_vqa", "--answers",
                    str(answers), "--json", str(ours_json)], check=True, capture_output=True, cwd=ROOT)
    ours = json.loads(ours_json.read_text())["results"]["lrs_vqa"]["details"]
    ok = True
    print(f"LRS-VQA: {n} generated answers, synonym matches (ours): {ours['synonym_matches']}")
    print(f"{'source':<12} {'category':<20} {'official':>14} {'ours':>14}")
    for source, s in official.items():
        mine = ours["sources"].get(source)
        for cat, (c, t, acc) in s["categories"].items():
            m = mine["categories"][cat]
            mine_txt = f"{m['correct']}/{m['total']} ({100 * m['accuracy']:.2f}%)"
            same = (c, t) == (m["correct"], m["total"]) and acc == f"{100 * m['accuracy']:.2f}"
            ok &= same
            print(f"{source:<12} {cat:<20} {f'{c}/{t} ({acc}%)':>14} {mine_txt:>14} {'' if same else 'DIFF'}")
        for key in ("OA", "AA"):
            mine_v = f"{100 * mine[key]:.2f}"
            same = s[key] == mine_v
            ok &= same
            print(f"{source:<12} {key:<20} {s[key] + '%':>14} {mine_v + '%':>14} {'' if same else 'DIFF'}")
    print("LRS-VQA parity:", "IDENTICAL" if ok else "DIFFERENT")
    return ok


def vrsbench_lines(out: Path, seed: int = 0, n: int = 2000) -> None:
    rng = random.Random(seed)
    with out.open("w", encoding="utf-8") as f:
        for i in range(n):
            x1, y1 = rng.randrange(0, 90), rng.randrange(0, 90)
            x2, y2 = rng.randrange(x1, 101), rng.randrange(y1, 101)
            gt = f"{{<{x1}><{y1}><{x2}><{y2}>}}"
            j = lambda v: max(0, v + rng.randrange(-8, 9))  # noqa: E731
            kind = rng.randrange(12)
            if kind == 0:
                ans = gt
            elif kind == 1:
                ans = f"{{<{j(x1)}><{j(y1)}><{j(x2)}><{j(y2)}>}}"
            elif kind == 2:
                ans = f"[{j(x1)}, {j(y1)}, {j(x2)}, {j(y2)}]"
            elif kind == 3:
                ans = f"{{<-{x1}><{y1}><{x2}><{y2}>}}"
            elif kind == 4:
                ans = f"{{<{x1}.5><{y1}.25><{x2}><{y2}>}}"
            elif kind == 5:
                ans = f"{{<{x1}><{y1}>}}"
            elif kind == 6:
                ans = "There is no such object."
            elif kind == 7:
                ans = f"{{<{x2}><{y2}><{x1}><{y1}>}}"
            elif kind == 8:
                ans = f"{{<{x1}><{y1}><{x1}><{y1}>}}"
            elif kind == 9:
                ans = f"{{<{x1}><{y1}><{x1 - 1}><{y1 - 1}>}}" if x1 and y1 else ""
            elif kind == 10:
                ans = f"the 2 cars at {{<{j(x1)}><{j(y1)}><{j(x2)}><{j(y2)}>}}"
            else:
                ans = f"{{<{j(x1)}><{j(y1)}><{j(x2)}><{j(y2)}>|<{rng.randrange(-90, 90)}>}}"
            f.write(json.dumps({"image_id": f"P{i:05d}.png", "question_id": i, "is_unique": rng.random() < 0.7,
                                "ground_truth": gt, "answer": ans, "size_group": ""}) + "\n")


STUB_BBOXTOOLKIT = "def bbox2type(*a, **k):\n    raise NotImplementedError\n\n\n" \
                   "def get_bbox_type(*a, **k):\n    raise NotImplementedError\n"


def run_vrsbench(args, work: Path) -> bool:
    nb = json.loads(Path(args.vrsbench_notebook).read_text(encoding="utf-8"))
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    code = "\n\n".join("".join(cells[i]["source"]) for i in (0, 1, 2, 3, 5))
    vwork = work / "vrsbench"
    run_dir = vwork / "a" / "b"
    out_dir = vwork / "outputs" / "outputs_RSBench_new"
    run_dir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "BboxToolkit").mkdir(exist_ok=True)
    (run_dir / "BboxToolkit" / "__init__.py").write_text(STUB_BBOXTOOLKIT)
    utils = Path(args.vrsbench_utils or Path(args.vrsbench_notebook).with_name("eval_utils.py"))
    shutil.copyfile(utils, run_dir / "eval_utils.py")
    (run_dir / "compute_metrics_cells.py").write_text(code)
    lines = out_dir / "rsbench_referring_v2.json"
    vrsbench_lines(lines)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(run_dir), args.pylib or "") if p)}
    off = subprocess.run([sys.executable, "compute_metrics_cells.py"], cwd=run_dir, env=env, capture_output=True,
                         text=True)
    if off.returncode:
        print(off.stdout[-2000:], off.stderr[-4000:])
        raise SystemExit("the VRSBench notebook cells failed")
    m = re.search(r"number of total/valid samples: (\d+) (\d+)", off.stdout)
    official = {"total": int(m.group(1)), "valid": int(m.group(2))}
    for thr in ("0.5", "0.7"):
        official[f"Acc@{thr}"] = float(re.search(rf"Acc at iou_{thr}: (\S+)", off.stdout).group(1))
    m = re.search(r"meanIoU: (\S+), cumIoU: (\S+),", off.stdout)
    official["meanIoU"], official["cumIoU"] = float(m.group(1)), float(m.group(2))
    ours_json = work / "vrsbench_ours.json"
    subprocess.run([sys.executable, "-m", "rscovlm", "eval", "score-answers", "--bench", "vrsbench_vg", "--answers",
                    str(lines), "--rule", "official", "--json", str(ours_json)], check=True, capture_output=True,
                   cwd=ROOT)
    ours = json.loads(ours_json.read_text())["results"]["vrsbench_vg"]["details"]
    strict_json = work / "vrsbench_strict.json"
    subprocess.run([sys.executable, "-m", "rscovlm", "eval", "score-answers", "--bench", "vrsbench_vg", "--answers",
                    str(lines), "--rule", "strict", "--json", str(strict_json)], check=True, capture_output=True,
                   cwd=ROOT)
    strict = json.loads(strict_json.read_text())["results"]["vrsbench_vg"]["details"]
    ok = True
    print(f"\nVRSBench grounding: {official['total']} lines scored (is_unique filter as the notebook)")
    print(f"{'figure':<10} {'official notebook':>20} {'ours (official)':>20} {'ours (strict)':>16}")
    for key in ("total", "valid", "Acc@0.5", "Acc@0.7", "meanIoU", "cumIoU"):
        same = official[key] == ours[key]
        ok &= same
        print(f"{key:<10} {official[key]!r:>20} {ours[key]!r:>20} {strict[key]!r:>16.8} {'' if same else 'DIFF'}")
    print("VRSBench parity:", "IDENTICAL" if ok else "DIFFERENT")
    return ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lrs-scorer", help="evaluation_LRSVQA.py (released, unchanged)")
    p.add_argument("--lrs-questions", help="LRS-VQA question file (LRS_VQA_merged.jsonl)")
    p.add_argument("--vrsbench-notebook", help="VRSBench eval_fianl/compute_metrics.ipynb (released, unchanged)")
    p.add_argument("--vrsbench-utils", help="its eval_utils.py (default: beside the notebook)")
    p.add_argument("--pylib", help="extra import path for the released scripts' imports (shortuuid, inflect)")
    p.add_argument("--work", default="/tmp/rscovlm_parity", help="scratch folder (outside the repository)")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    ok = True
    if args.lrs_scorer and args.lrs_questions:
        ok &= run_lrs(args, work)
    if args.vrsbench_notebook:
        ok &= run_vrsbench(args, work)
    if not (args.lrs_scorer or args.vrsbench_notebook):
        p.error("give --lrs-scorer/--lrs-questions and/or --vrsbench-notebook")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
