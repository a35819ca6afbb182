"""Harness overhead per answer on the synthetic benchmark, against the bare backend call.

``rscovlm eval run`` + ``rscovlm eval score`` with the offline tiny model (random weights: every answer runs to
``--max-new-tokens``, a short budget, so the model's share is small and the harness's share large - the hard case).
The backend is wrapped so that the time spent inside ``generate_results`` (the model call: image resize, encoding,
generation, decoding, token log-probs) is measured; everything else is harness overhead:

* run: reading the items, building every request, settings and run.json, the resume scan, writing and fsync'ing
  the answer lines, per-object confidences, the progress bar;
* score: ``score_run`` (reading items and answers, the synthetic rule);
* and, reported apart, a resume: a second run over the finished folder (every item found and skipped).

The baseline is the bare backend call: ``generate_results`` over the same conversations, grouped as the runner
groups them (per task within each batch). Target: overhead under 5% of a tiny-model answer's time.

    python benchmarks/bench_harness.py [--scenes 10 --holdout 5 --max-new-tokens 32 --batch-size 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class Timed:
    """A backend whose ``generate_results`` calls are timed."""

    def __init__(self, backend):
        self.inner, self.seconds, self.calls = backend, 0.0, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate_results(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.inner.generate_results(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", type=int, default=10)
    ap.add_argument("--holdout", type=int, default=5)
    ap.add_argument("--size", type=int, default=336)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()

    import torch

    from rscovlm.eval.benchmarks import get_benchmark
    from rscovlm.eval.benchmarks.results import score_run
    from rscovlm.eval.benchmarks.runner import BenchRunner, RunConfig, item_task
    from rscovlm.infer.backends import GenerationConfig, TransformersBackend
    from rscovlm.model.loading import ModelConfig, load_model, load_processor
    from rscovlm.model.tiny import build_tiny_model

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench_harness_"))
    model_dir = build_tiny_model(tmp / "tiny")
    model, _ = load_model(ModelConfig(model_name_or_path=str(model_dir)))
    processor = load_processor(str(model_dir))
    backend = TransformersBackend(model, processor, GenerationConfig(max_new_tokens=args.max_new_tokens,
                                                                     batch_size=args.batch_size))
    bench = get_benchmark("synthetic").with_options(scenes=args.scenes, holdout=args.holdout, size=args.size)
    data = tmp / "data"
    items = bench.items(data)  # scenes rendered once before timing (the first use of a data root)
    n = len(items)

    # the bare backend call over the same conversations, grouped as the runner groups them
    convs = [bench.messages(it) for it in items]
    generate_results(backend, bench, items, convs, args.batch_size, item_task)  # warm-up
    start = time.perf_counter()
    generate_results(backend, bench, items, convs, args.batch_size, item_task)
    bare = time.perf_counter() - start

    timed = Timed(backend)
    runner = BenchRunner(timed, RunConfig(out=str(tmp / "run"), data_root=str(data), batch_size=args.batch_size,
                                          max_new_tokens=args.max_new_tokens, progress=False), str(model_dir),
                         "transformers", note=lambda msg: None)
    start = time.perf_counter()
    runner.run(bench)
    run_total = time.perf_counter() - start
    model_time = timed.seconds
    start = time.perf_counter()
    runner.run(bench)  # resume: everything is there
    resume = time.perf_counter() - start
    start = time.perf_counter()
    score_run(tmp / "run")
    scoring = time.perf_counter() - start

    run_overhead = run_total - model_time
    overhead = run_overhead + scoring
    per_answer = model_time / n
    print(f"synthetic benchmark: {n} items ({args.scenes} + {args.holdout} scenes of {args.size} px), tiny model, "
          f"max {args.max_new_tokens} new tokens, batch {args.batch_size}, torch threads 1")
    print(f"bare backend call:        {1000 * bare / n:8.2f} ms per answer")
    print(f"model call inside run:    {1000 * per_answer:8.2f} ms per answer ({timed.calls} calls)")
    print(f"harness, run:             {1000 * run_overhead / n:8.2f} ms per answer "
          f"(items, requests, settings, resume scan, writes + fdatasync, confidences)")
    print(f"harness, scoring:         {1000 * scoring / n:8.2f} ms per answer")
    print(f"overhead / model call:    {overhead / model_time:8.2%}  (run + scoring; target < 5%)")
    print(f"overhead / bare call:     {overhead / bare:8.2%}")
    print(f"a resume that finds every answer: {1000 * resume / n:.2f} ms per item ({resume / model_time:.2%} of "
          "the model time it saves)")


def generate_results(backend, bench, items, convs, batch_size, item_task) -> None:
    for start in range(0, len(items), batch_size):
        groups: dict[str, list] = {}
        for it, conv in zip(items[start:start + batch_size], convs[start:start + batch_size]):
            groups.setdefault(item_task(bench, it), []).append(conv)
        for task, group in groups.items():
            backend.generate_results(group, None, None, task, logprobs=task == "detection")


if __name__ == "__main__":
    main()
