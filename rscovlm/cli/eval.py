"""``rscovlm eval ...``: detection metrics on DOTA folders and model responses (see docs/metrics.md).

Each command is a thin wrapper over the function of the same name in :mod:`rscovlm.eval` (``eval dota`` ->
``eval_dota``, ``eval dota-nc`` -> ``eval_dota_nc``, ...); ``--json OUT`` writes that function's result.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rscovlm.cli import CliError, add_group

# register() takes choices and help texts from rscovlm.eval.names (no numpy): see the rule in rscovlm.cli
HELP = "evaluate detections: DOTA mAP (devkit / MMRotate 1.x / 0.x protocols), AP_nc, threshold sweep, mF1, model " \
       "responses"


def _protocol_help() -> str:
    from rscovlm.eval.names import PROTOCOL_SUMMARIES

    return "; ".join(f"{name}: {summary}" for name, summary in PROTOCOL_SUMMARIES.items())


def _common(p, *, thr: bool = True, mode: bool = True, protocol: str = "mmrotate1x") -> None:
    p.add_argument("--gt-dir", required=True, help="labelTxt folder: one {image_id}.txt per image")
    p.add_argument("--det-dir", required=True, help="Task1 folder: Task1_{class}.txt, lines 'image_id score x1 y1 "
                                                    "... x4 y4'")
    _options(p, thr=thr, mode=mode, protocol=protocol)
    _gt_vocabulary(p)


def _scoring(p, *, seeds_default: str = "10") -> None:
    """--score-mode, --seeds, --seed-list, --ties (AP_nc and all-ones AP)."""
    from rscovlm.eval.names import LMMROTATE_SEEDS, SCORE_MODES

    p.add_argument("--score-mode", choices=list(SCORE_MODES), default="random",
                   help="random: AP_nc, uniform random scores per class and seed; ones: every score 1.0, "
                        "the reference RSCoVLM evaluation (one run, metrics AP50/...); random-per-image: "
                        "LMMRotate's AP_nc, torch-equal random scores re-seeded for every image")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, default=None, metavar="N",
                       help=f"number of random seeds, 0..N-1 (default {seeds_default}; random-per-image: "
                            f"LMMRotate's {','.join(map(str, LMMROTATE_SEEDS))})")
    seeds.add_argument("--seed-list", default=None, metavar="S1,S2,...",
                       help="explicit seeds, e.g. 42,666,6666 (instead of --seeds)")
    p.add_argument("--ties", choices=["stable", "reference"], default="stable",
                   help="order of equal scores under ones / random-per-image: stable = the reference tool's "
                        "procedure with a stable sort (image order, then file/answer order; portable); "
                        "reference = numpy's default argsort as MMRotate uses it (its numbers on this machine)")


def _seeds(args):
    from rscovlm.eval.ap_nc import parse_seed_list

    if args.seed_list is None:
        return args.seeds
    try:
        return parse_seed_list(args.seed_list)
    except ValueError as err:
        raise CliError(f"--seed-list: {err}") from None


def _f1_mode(p) -> None:
    from rscovlm.eval.names import F1_MODES

    p.add_argument("--f1-mode", choices=list(F1_MODES), default="one-to-one",
                   help="one-to-one: each object matched at most once, mean of per-class F1 over classes with "
                        "ground truth; lmmrotate: mllm-mmrotate's f1_metric.py (confusion matrix of every "
                        "pair with IoU >= thr, duplicates counted, background row/column, F1 of the mean P and R "
                        "over C+1 entries)")


def _gt_vocabulary(p) -> None:
    from rscovlm.protocol.categories import CATEGORY_SETS

    p.add_argument("--categories", default="dota-v1.0", metavar="SET|any|A,B,...",
                   help=f"ground-truth vocabulary: {', '.join(sorted(CATEGORY_SETS))}, a comma-separated list of "
                        "class names, or 'any' (no check); default dota-v1.0. A ground-truth class outside it is "
                        "an error naming file:line (it would score AP 0 as a class without detections)")
    p.add_argument("--unknown-gt-classes", choices=["error", "ignore"], default="error",
                   help="ground-truth objects of classes outside --categories: fail (default) or drop and count "
                        "them")


def _options(p, *, thr: bool = True, mode: bool = True, protocol: str = "mmrotate1x") -> None:
    from rscovlm.eval.names import AP_MODE_NAMES, PROTOCOL_SUMMARIES

    if thr:
        p.add_argument("--iou-thr", type=float, default=0.5, help="IoU threshold")
    if mode:
        p.add_argument("--ap-mode", choices=list(AP_MODE_NAMES), default="11point",
                       help="VOC07 11-point (DOTA's and DOTAMetric's default) or area under the envelope")
    p.add_argument("--protocol", choices=list(PROTOCOL_SUMMARIES), default=protocol, help=_protocol_help())
    p.add_argument("--skip-invalid", action="store_true",
                   help="skip malformed label/Task1 lines instead of failing (they are counted and reported)")
    p.add_argument("--unknown-images", choices=["error", "ignore"], default="error",
                   help="detections on images without a labelTxt file: fail (error) or drop and count them (ignore)")
    p.add_argument("--json", dest="json_out", default=None, help="write the full result as JSON to this file")


def register(sub) -> None:
    from rscovlm.protocol.categories import CATEGORY_SETS

    group = add_group(sub, "eval", HELP)

    p = group.add_parser("dota", help="per-class AP and mAP of a Task1 folder against labelTxt ground truth")
    _common(p, protocol="dota")  # a conventional detector's Task1 files: the official devkit by default
    p.add_argument("--ties", choices=["reference", "stable"], default="reference",
                   help="order of equal scores: 'reference' = numpy's default argsort as the devkit/MMRotate "
                        "use it (same numbers as they give on this machine); 'stable' = input (line) order")
    p.set_defaults(handler=_dota)

    p = group.add_parser("dota-nc", help="AP_nc: drop scores below a threshold, randomize the rest, mean/std "
                                         "over seeds")
    _common(p, thr=False)
    p.add_argument("--score-thr", type=float, default=0.0,
                   help="drop detections with score < this (ones / random-per-image: keep score > this, as "
                        "LMMRotate)")
    _scoring(p)
    p.add_argument("--iou-thrs", default="0.5,0.75,0.5:0.95",
                   help="metrics to report: single IoUs and ranges a:b[:step]")
    p.set_defaults(handler=_dota_nc)

    p = group.add_parser("dota-sweep", help="sweep the score threshold 0.00..0.95 on val, apply the best on test, "
                                            "plot AP_nc vs threshold")
    p.add_argument("--val-gt", required=True, help="val labelTxt folder")
    p.add_argument("--val-det", required=True, nargs="+", help="val Task1 folder(s), one per detector")
    p.add_argument("--test-gt", default=None, help="test labelTxt folder")
    p.add_argument("--test-det", default=None, nargs="+", help="test Task1 folder(s), same detectors in the "
                                                               "same order as --val-det")
    p.add_argument("--names", default=None, nargs="+", help="detector names (default: the val folder names)")
    _scoring(p)
    p.add_argument("--iou-thrs", default="0.5,0.75,0.5:0.95", help="metrics (as in dota-nc)")
    p.add_argument("--select", default=None,
                   help="metric that picks the best threshold (default: the first of --iou-thrs, AP_nc50)")
    p.add_argument("--plot", default=None, help="write the AP_nc-vs-threshold plot (PNG) here")
    _options(p, thr=False)
    _gt_vocabulary(p)
    p.set_defaults(handler=_dota_sweep)

    p = group.add_parser("dota-f1", help="precision/recall/F1 with one-to-one matching; mF1 and micro")
    _common(p, mode=False)  # mF1 has no AP mode
    p.add_argument("--score-thr", type=float, default=0.0, help="drop detections with score < this")
    _f1_mode(p)
    p.set_defaults(handler=_dota_f1)

    p = group.add_parser("responses", help="score a jsonl of model responses ({image_id, response, resize}) "
                                           "against labelTxt ground truth: AP_nc, mF1, unparsed fraction")
    p.add_argument("--responses", required=True, help="jsonl file, one response per image")
    p.add_argument("--gt-dir", required=True, help="labelTxt folder")
    _scoring(p)
    p.add_argument("--iou-thrs", default="0.5,0.75,0.5:0.95", help="AP_nc metrics (as in dota-nc)")
    _f1_mode(p)
    p.add_argument("--prompt-set", default=None, metavar="NAME|DIR",
                   help="prompt set the responses were generated with (recorded in the output; its synonym table "
                        "serves --map-synonyms); default: reference")
    p.add_argument("--map-synonyms", action="store_true",
                   help="map labels outside --categories through the prompt set's synonym table (counted apart in "
                        "the report); without it such labels are unknown")
    p.add_argument("--categories", default="dota-v1.0", choices=sorted(CATEGORY_SETS),
                   help="category vocabulary of the responses' labels")
    p.add_argument("--family", default="qwen2_5_vl",
                   help="model family that wrote the responses, which fixes their box frame: qwen2_5_vl (pixels of "
                        "the resized input), qwen2_vl / qwen3_vl (0-1000 grid); a line's own 'family' "
                        "field wins")
    p.add_argument("--unknown-gt-classes", choices=["error", "ignore"], default="error",
                   help="ground-truth objects of classes outside --categories: fail (default) or drop and count "
                        "them")
    _options(p)
    p.set_defaults(handler=_responses)

    from rscovlm.cli import _eval_bench  # the benchmark commands (list, show-prompt, score, ...) of this group

    _eval_bench.register(sub)


def _write_json(path: str | None, result: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")


def _run(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except (FileNotFoundError, ValueError) as err:  # DotaFormatError, ResponseFormatError: ValueErrors naming file:line
        raise CliError(str(err)) from err


def _vocabulary(args) -> dict:
    from rscovlm.eval.dota_data import resolve_categories

    try:
        categories = resolve_categories(args.categories)
    except ValueError as err:
        raise CliError(f"--categories: {err}") from None
    return {"categories": categories, "unknown_gt_classes": args.unknown_gt_classes}


def _notes(result: dict, where: str = "") -> None:
    note = f"note ({where})" if where else "note"
    if result.get("skipped_lines"):
        print(f"{note}: skipped {result['skipped_lines']} malformed line(s) (--skip-invalid)", file=sys.stderr)
    if result.get("dropped_unknown_image"):
        print(f"{note}: dropped {result['dropped_unknown_image']} detection(s) on images without ground truth",
              file=sys.stderr)
    dropped = result.get("dropped_unknown_gt_classes")
    if dropped:
        print(f"{note}: dropped {sum(dropped.values())} ground-truth object(s) of classes outside the vocabulary: "
              f"{', '.join(f'{c} ({n})' for c, n in dropped.items())} (--unknown-gt-classes ignore)", file=sys.stderr)
    if result.get("missing_det_files"):
        print(f"{note}: no Task1 file for {', '.join(result['missing_det_files'])} (scored as no detections)",
              file=sys.stderr)


def _nc_table(res: dict) -> str:
    names = list(res["metrics"])
    rows = [f"{'class':<22}" + "".join(f"{n:>14}" for n in names)]
    for c in res["classes"]:
        rows.append(f"{c:<22}" + "".join(f"{100 * res['per_class'][c][n]['mean']:>14.2f}" for n in names))
    rows.append(f"{'mean':<22}" + "".join(
        f"{100 * res['metrics'][n]['mean']:>8.2f}±{100 * res['metrics'][n]['std']:<5.2f}" for n in names))
    return "\n".join(rows)


def _runs(res: dict) -> str:
    if res["seeds"] is None:
        return f"score mode ones, ties {res['ties']}"
    return f"score mode {res['score_mode']}, {len(res['seeds'])} seeds"


def _dota(args) -> int:
    from rscovlm.eval.dota_map import eval_dota

    res = _run(eval_dota, args.gt_dir, args.det_dir, iou_thr=args.iou_thr, ap_mode=args.ap_mode,
               protocol=args.protocol, ties=args.ties, skip_invalid=args.skip_invalid,
               unknown_images=args.unknown_images, **_vocabulary(args))
    print(res.table())
    out = res.to_dict()
    _notes(out)
    _write_json(args.json_out, out)
    return 0


def _dota_nc(args) -> int:
    from rscovlm.eval.ap_nc import eval_dota_nc

    res = _run(eval_dota_nc, args.gt_dir, args.det_dir, score_thr=args.score_thr, seeds=_seeds(args),
               iou_thrs=args.iou_thrs, ap_mode=args.ap_mode, protocol=args.protocol, score_mode=args.score_mode,
               ties=args.ties, skip_invalid=args.skip_invalid, unknown_images=args.unknown_images,
               **_vocabulary(args))
    print(_nc_table(res))
    print(f"(score threshold {res['score_thr']}, {_runs(res)}, protocol {res['protocol']})")
    _notes(res)
    _write_json(args.json_out, res)
    return 0


def _dota_sweep(args) -> int:
    from rscovlm.eval.sweep import eval_dota_sweep

    names = args.names or [Path(d).name or str(d) for d in args.val_det]
    if len(names) != len(args.val_det) or len(set(names)) != len(names):
        raise CliError("--names needs one distinct name per --val-det folder")
    if args.test_det is not None and len(args.test_det) != len(args.val_det):
        raise CliError("--test-det needs as many folders as --val-det (same detectors, same order)")
    val = dict(zip(names, args.val_det))
    test = dict(zip(names, args.test_det)) if args.test_det is not None else None
    res = _run(eval_dota_sweep, args.val_gt, val, args.test_gt, test, seeds=_seeds(args), iou_thrs=args.iou_thrs,
               select=args.select, ap_mode=args.ap_mode, protocol=args.protocol, score_mode=args.score_mode,
               ties=args.ties, skip_invalid=args.skip_invalid, unknown_images=args.unknown_images, plot=args.plot,
               **_vocabulary(args))
    select = res["select"]
    for name, entry in res["detectors"].items():
        v = entry["val"]
        best = v["thresholds"].index(v["best_threshold"])
        line = (f"{name}: best threshold {v['best_threshold']:.2f} on val ({select} "
                f"{100 * v['mean'][select][best]:.2f}±{100 * v['std'][select][best]:.2f})")
        if "test" in entry:
            line += "; test " + ", ".join(f"{m} {100 * r['mean']:.2f}±{100 * r['std']:.2f}"
                                          for m, r in entry["test"]["metrics"].items())
        print(line)
        _notes(v, f"{name}, val")
        if "test" in entry:
            _notes(entry["test"], f"{name}, test")
    if args.plot:
        print(f"plot: {args.plot}", file=sys.stderr)
    _write_json(args.json_out, res)
    return 0


def _dota_f1(args) -> int:
    from rscovlm.eval.f1 import eval_dota_f1

    res = _run(eval_dota_f1, args.gt_dir, args.det_dir, score_thr=args.score_thr, iou_thr=args.iou_thr,
               protocol=args.protocol, f1_mode=args.f1_mode, skip_invalid=args.skip_invalid,
               unknown_images=args.unknown_images, **_vocabulary(args))
    print(_f1_table(res))
    _notes(res)
    _write_json(args.json_out, res)
    return 0


def _f1_table(res: dict) -> str:
    if res.get("f1_mode") == "lmmrotate":
        rows = [f"{'label':<22}{'P':>8}{'R':>8}{'tp':>8}{'fp':>8}{'fn':>8}"]
        for name, r in res["per_label"].items():
            rows.append(f"{name:<22}{100 * r['precision']:>8.2f}{100 * r['recall']:>8.2f}{r['tp']:>8}{r['fp']:>8}"
                        f"{r['fn']:>8}")
        nan = " (NaN in the reference: P + R = 0)" if res["nan"] else ""
        rows.append(f"{'mF1 (lmmrotate)':<22}{100 * res['precision']:>8.2f}{100 * res['recall']:>8.2f}   "
                    f"F1 of the means over {res['num_classes']} + 1 labels: {100 * res['mF1']:.2f}{nan}")
        return "\n".join(rows)
    rows = [f"{'class':<22}{'P':>8}{'R':>8}{'F1':>8}{'tp':>8}{'fp':>8}{'num_gt':>8}"]
    for c in res["classes"]:
        r = res["per_class"][c]
        rows.append(f"{c:<22}{100 * r['precision']:>8.2f}{100 * r['recall']:>8.2f}{100 * r['f1']:>8.2f}"
                    f"{r['tp']:>8}{r['fp']:>8}{r['num_gt']:>8}")
    m = res["micro"]
    rows.append(f"{'mF1':<22}{'':>16}{100 * res['mF1']:>8.2f}   micro P/R/F1 {100 * m['precision']:.2f} / "
                f"{100 * m['recall']:.2f} / {100 * m['f1']:.2f}")
    return "\n".join(rows)


def _responses(args) -> int:
    from rscovlm.eval.responses import eval_responses

    res = _run(eval_responses, args.responses, args.gt_dir, iou_thr=args.iou_thr, seeds=_seeds(args),
               iou_thrs=args.iou_thrs, ap_mode=args.ap_mode, protocol=args.protocol, score_mode=args.score_mode,
               ties=args.ties, f1_mode=args.f1_mode, categories=args.categories, skip_invalid=args.skip_invalid,
               unknown_images=args.unknown_images, family=args.family, unknown_gt_classes=args.unknown_gt_classes,
               map_synonyms=args.map_synonyms, prompt_set=args.prompt_set)
    print(_nc_table(res))
    pr = res["parsing"]
    f1 = res["f1"]
    print(f"mF1 {100 * f1['mF1']:.2f} ({f1['f1_mode']}, IoU {args.iou_thr}); {_runs(res)}, protocol "
          f"{res['protocol']}, prompt set {res['prompt_set']}")
    print(f"responses {pr['n_responses']}, unparsed {100 * pr['unparsed_fraction']:.2f}% of {pr['n_fragments']} "
          f"fragments, {pr['images_without_response']} image(s) without a response; forms: "
          + (", ".join(f"{k} {v}" for k, v in pr["forms"].items()) or "-"))
    if pr["n_truncated"]:
        print(f"note: {pr['n_truncated']} answer(s) cut off by the generation budget (finish_reason 'length')",
              file=sys.stderr)
    if pr["n_synonym_labels"]:
        print(f"note: {pr['n_synonym_labels']} label(s) mapped through the synonym table: "
              + ", ".join(f"{k} ({v})" for k, v in pr["synonym_labels"].items()), file=sys.stderr)
    if pr["n_over_limits"]:
        from rscovlm.protocol.readers import MAX_CHARS, MAX_JSON_DEPTH, MAX_PIECES

        print(f"note: {pr['n_over_limits']} response(s) hit the reading limits ({MAX_CHARS} characters, "
              f"{MAX_PIECES} pieces, JSON depth {MAX_JSON_DEPTH}); the text beyond them counts as unparsed",
              file=sys.stderr)
    _notes(res)
    _write_json(args.json_out, res)
    return 0
