"""Online sample building speed: an 800x800 detection image with ~50 objects -> model tensors, on one core.

Stages measured per sample (single thread, images read from a PNG on disk every time, as in training):

* ``build``   - detection record -> conversation (rscovlm.data.builder: prompt template, random resize plan,
  boxes to the model frame, response text);
* ``encode``  - conversation -> input_ids / labels / pixel_values / image_grid_thw (rscovlm.model.collator:
  image load + resize, chat template, label spans, tokenization);
* ``total``   - both, i.e. what one dataloader worker does per sample.

Baseline, side by side: the stock ``transformers`` path on the same conversation - ``processor.apply_chat_template``
+ ``processor(text, images)`` with the processor's own resize - which produces no labels at all. The ratio shows
what the label derivation and the explicit resize cost on top of the library.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_sample_building.py [--samples 60]`` (builds the tiny model's
processor in a temp folder; the tokenizer/image processor are the real Qwen2.5-VL classes). Target: >= 20
samples/s per core.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _timeit(fn, n: int) -> list[float]:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=60, help="timed samples per stage")
    parser.add_argument("--objects", type=int, default=50, help="objects in the scene")
    parser.add_argument("--size", type=int, default=800, help="image side in pixels")
    parser.add_argument("--model", help="model folder whose processor to use (default: build the tiny model)")
    args = parser.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    torch.set_num_threads(1)
    from rscovlm.data.builder import BuildConfig, SampleBuilder
    from rscovlm.data.mixture import UnitConfig
    from rscovlm.dota.synthetic import generate_scene
    from rscovlm.model.collator import ConversationEncoder
    from rscovlm.model.loading import load_processor
    from rscovlm.model.tiny import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = args.model or build_tiny_model(tmp / "tiny")
        processor = load_processor(str(model_dir))
        encoder = ConversationEncoder(processor)

        pixels, objects = generate_scene(args.size, args.size, seed=5, num_objects=args.objects)
        Image.fromarray(pixels).save(tmp / "scene.png")
        record = {"id": 1, "image": "scene.png", "width": args.size, "height": args.size,
                  "labels": list(objects.labels), "quads": objects.boxes.data.tolist(),
                  "difficult": [0] * len(objects), "categories": sorted(set(objects.labels))}
        unit = UnitConfig(name="bench", path="unused.json", type="detection", images=str(tmp))
        builder = SampleBuilder(BuildConfig(open_ended_prob=0.0, subset_prob=0.0))
        rngs = [np.random.default_rng(i) for i in range(args.samples + 3)]
        convs = [builder.build(record, unit, rng=r) for r in rngs]

        # warm-up (template compilation, tokenizer caches)
        for c in convs[:3]:
            encoder.encode(c)

        def baseline(i):
            c = convs[3 + i]
            text = processor.apply_chat_template(c["messages"], tokenize=False)
            with Image.open(tmp / "scene.png") as im:
                img = im.convert("RGB")
            processor(text=[text], images=[img], return_tensors="pt")

        t_build = _timeit(lambda i: builder.build(record, unit, rng=np.random.default_rng(1000 + i)), args.samples)
        t_encode = _timeit(lambda i: encoder.encode(convs[3 + i]), args.samples)
        t_total = _timeit(lambda i: encoder.encode(builder.build(record, unit, rng=np.random.default_rng(2000 + i))),
                          args.samples)
        t_base = _timeit(baseline, args.samples)

        sample = encoder.encode(convs[3])
        target = convs[3]["messages"][-1]["content"][0]["text"]
        n_objects = len(objects)
        n_tokens = [len(encoder.encode(c).input_ids) for c in convs[3:13]]

    def rate(ts):
        return 1.0 / statistics.median(ts)

    rows = [("build (record -> conversation)", t_build), ("encode (conversation -> tensors)", t_encode),
            ("total (build + encode)", t_total), ("baseline: processor(text, images), no labels", t_base)]
    print(f"{args.size}x{args.size} image, {n_objects} objects, {len(target)} target chars, "
          f"{min(n_tokens)}-{max(n_tokens)} tokens per sample (random resize), {args.samples} samples per stage, "
          f"torch threads = {torch.get_num_threads()}")
    print(f"{'stage':<48}{'median ms':>10}{'samples/s/core':>16}")
    for name, ts in rows:
        print(f"{name:<48}{1000 * statistics.median(ts):>10.1f}{rate(ts):>16.1f}")
    ratio = rate(t_total) / rate(t_base)
    print(f"total vs baseline: {ratio:.2f}x the baseline's throughput (baseline computes no labels)")
    print(f"target >= 20 samples/s per core: {'met' if rate(t_total) >= 20 else 'NOT met'}")
    print(json.dumps({"total_samples_per_s": round(rate(t_total), 2), "baseline_samples_per_s": round(rate(t_base), 2),
                      "encode_samples_per_s": round(rate(t_encode), 2), "build_samples_per_s": round(rate(t_build), 2),
                      "pixel_values": list(sample.pixel_values.shape)}))


if __name__ == "__main__":
    main()
