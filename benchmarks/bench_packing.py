"""Sequence packing: training tokens per second and the fraction of padding tokens, packed vs padded.

Data shaped like the paper's mixture (many short samples, some long ones, a few near the limit): per sample a
real conversation encoded by the trainer's encoder - 55 % short (224 px image classification / VQA, one-word
answers), 25 % medium (grounding / captioning: 448 px, a sentence or a box), 15 % long (dense detection: 784 px
image, 20-60 objects written as quads) and 5 % near the limit (1008 px, ~100 objects). Lengths are scaled with
``--max-length`` (default 2048 on CPU, the paper trains at 6144 with the same proportions: a 224 px question is
~100 tokens, a dense detection patch several thousand).

Modes, each over the same samples in the same random order, every micro-batch = forward + backward + AdamW step
of the real model (the trainer's code path: :class:`rscovlm.model.collator.Collator`, and for packing
:func:`rscovlm.model.collator.packed_model_inputs` - per-sample positions, the block-diagonal attention mask of
SDPA on CPU / flash-attention's variable-length kernel on GPU):

* ``padded bs=1``  - one sample per micro-batch (no padding, tiny micro-batches: the slowest per token);
* ``padded bs=B``  - B samples per micro-batch right-padded to the longest (what ``per_device_batch_size: B``
  without packing does; B from ``--batch``);
* ``packed``       - rows of up to ``max_length`` tokens filled by :func:`rscovlm.train.stream.pack_rows`
  (look-ahead ``--buffer``), one row per micro-batch.

Printed per mode: micro-batches, real (non-padding) tokens, padding fraction = padding / all tokens in the batch
tensors, row fill (packing: real tokens / (rows x max_length)), seconds and real tokens per second, and the
ratio to ``padded bs=B``. Targets: padding < 5 % with packing, higher tokens/s than padded.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_packing.py [--samples 240] [--max-length 2048]``; on a GPU
machine add ``--device cuda --attn flash_attention_2 --max-length 6144`` (the packed rows are then flattened to
one sequence per micro-batch, flash-attention's variable-length path). ``--model DIR`` uses another checkpoint
(default: the offline tiny model, built in a temp folder).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _conversations(n: int, max_length: int, seed: int):
    """``n`` conversations with the mixture's length profile (module docstring), scaled to ``max_length``."""
    import numpy as np
    from PIL import Image

    from rscovlm.geometry.boxes import Boxes, Frame
    from rscovlm.geometry.objects import ObjectSet
    from rscovlm.protocol.detection import format_detections

    rng = np.random.default_rng(seed)
    scale = max_length / 6144
    side = lambda s: max(56, int(round(s * scale ** 0.5 / 28)) * 28)  # noqa: E731 - image tokens scale with area
    convs = []
    for i in range(n):
        r = rng.random()
        if r < 0.55:
            size, question, answer = side(224), "Classify the scene of this remote sensing image.", "airport"
        elif r < 0.80:
            size = side(448)
            question = "Locate the white storage tank next to the road and output its bounding box."
            answer = "112,230,168,291 white storage tank"
        else:
            size = side(784 if r < 0.95 else 1008)
            k = int(rng.integers(20, 60) if r < 0.95 else rng.integers(90, 110))
            k = max(1, int(k * scale))
            quads = rng.uniform(0, size, (k, 8))
            labels = [str(rng.choice(["plane", "ship", "small vehicle", "storage tank"])) for _ in range(k)]
            question = "find the plane, ship, small vehicle, storage tank"
            answer = format_detections(ObjectSet(Boxes(quads, "quad", Frame.model(size, size)), labels), "plain")
        image = Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        convs.append({"messages": [
            {"role": "user", "content": [{"type": "image", "image": image, "resized_width": size,
                                         "resized_height": size}, {"type": "text", "text": question}]},
            {"role": "assistant", "content": answer}]})
    return convs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=240, help="samples trained on per mode")
    parser.add_argument("--max-length", type=int, default=2048, help="row capacity / sample limit in tokens")
    parser.add_argument("--batch", type=int, default=4, help="samples per micro-batch of the padded mode")
    parser.add_argument("--buffer", type=int, default=64, help="look-ahead of the packer")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--attn", default="sdpa", help="attention implementation (sdpa, eager, flash_attention_2)")
    parser.add_argument("--model", help="model folder (default: the offline tiny model)")
    parser.add_argument("--width", type=int, default=64,
                        help="decoder width of the built tiny model (64 = the tiny model; wider ones with 7B's MLP "
                             "ratio 5.3 and head dim 64 show how the attention share of the cost falls)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    import numpy as np
    import torch
    from transformers import AutoModelForImageTextToText

    from rscovlm.model.collator import Collator, ConversationEncoder, packed_model_inputs
    from rscovlm.model.loading import load_processor
    from rscovlm.train.stream import pack_rows

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    tmp = tempfile.TemporaryDirectory()
    model_dir = args.model
    if model_dir is None:
        from rscovlm.model.tiny import TinySpec, build_tiny_model

        spec = TinySpec() if args.width == 64 else TinySpec(
            text_hidden_size=args.width, text_heads=max(args.width // 64, 1), text_kv_heads=max(args.width // 128, 1),
            text_intermediate_size=int(args.width * 5.3 / 64) * 64)
        model_dir = str(build_tiny_model(os.path.join(tmp.name, "tiny"), spec))
    processor = load_processor(model_dir, 56 * 56, 1008 * 1008)
    encoder = ConversationEncoder(processor, max_length=args.max_length)
    samples = [encoder.encode(c).as_dict() for c in _conversations(args.samples, args.max_length, args.seed)]
    lengths = [len(s["input_ids"]) for s in samples]
    print(f"{len(samples)} samples: tokens min {min(lengths)}, median {int(np.median(lengths))}, mean "
          f"{np.mean(lengths):.0f}, max {max(lengths)} (max_length {args.max_length}); model {model_dir}, "
          f"{args.device}, {args.attn}, {torch.get_num_threads()} thread(s)")
    order = np.random.default_rng(args.seed).permutation(len(samples))
    pad_id = processor.tokenizer.pad_token_id
    flatten = args.attn.startswith("flash")

    modes = {
        "padded bs=1": (Collator(pad_id), [[samples[i]] for i in order]),
        f"padded bs={args.batch}": (Collator(pad_id), [[samples[i] for i in order[k:k + args.batch]]
                                                       for k in range(0, len(order), args.batch)]),
    }
    rows = pack_rows([lengths[i] for i in order], args.max_length, args.buffer)
    modes["packed"] = (Collator(pad_id, packing=True, flatten=flatten), [[[samples[order[j]] for j in row]]
                                                                         for row in rows])

    model = AutoModelForImageTextToText.from_pretrained(model_dir, attn_implementation=args.attn,
                                                        dtype=torch.float32).to(args.device)
    model.config.use_cache = False
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    rope_index = model.model.get_rope_index

    def step(batch):
        inputs = packed_model_inputs(model, batch, rope_index)
        inputs = {k: v.to(args.device) if hasattr(v, "to") else v for k, v in inputs.items()}
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    results = {}
    for name, (collate, batches) in modes.items():
        collated = [collate(b) for b in batches]
        real = sum(int(b["input_ids"].numel()) - _padding(b, pad_id) for b in collated)
        total = sum(int(b["input_ids"].numel()) for b in collated)
        for b in collated[:2]:  # warm-up (allocator, kernels)
            step(b)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for b in collated:
            step(b)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        entry = {"micro_batches": len(collated), "real_tokens": real, "padding": 1 - real / total,
                 "seconds": seconds, "tokens_per_s": real / seconds}
        if name == "packed":
            entry["row_fill"] = real / (len(rows) * args.max_length)
            entry["samples_per_row"] = len(samples) / len(rows)
        results[name] = entry
    base = results[f"padded bs={args.batch}"]["tokens_per_s"]
    print(f"{'mode':14s} {'batches':>8s} {'tokens':>9s} {'padding':>8s} {'row fill':>9s} {'seconds':>8s} "
          f"{'tokens/s':>10s} {'vs padded':>10s}")
    for name, r in results.items():
        fill = f"{100 * r['row_fill']:.1f}%" if "row_fill" in r else "-"
        print(f"{name:14s} {r['micro_batches']:>8d} {r['real_tokens']:>9d} {100 * r['padding']:>7.1f}% {fill:>9s} "
              f"{r['seconds']:>8.2f} {r['tokens_per_s']:>10.0f} {r['tokens_per_s'] / base:>9.2f}x")
    packed = results["packed"]
    print(f"targets: padding with packing {100 * packed['padding']:.1f}% (< 5%): "
          f"{'met' if packed['padding'] < 0.05 else 'NOT met'}; tokens/s packed / padded bs={args.batch} = "
          f"{packed['tokens_per_s'] / base:.2f}x (> 1): {'met' if packed['tokens_per_s'] > base else 'NOT met'}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"args": vars(args), "results": results}, fh, indent=2)


def _padding(batch, pad_id: int) -> int:
    """Padding tokens of a collated batch: positions outside every sample (padded rows' tails)."""
    if "attention_mask" in batch:
        return int((batch["attention_mask"] == 0).sum())
    length = batch["input_ids"].shape[1]
    return sum(length - sum(n for n, _ in row) for row in batch["packed_samples"])


if __name__ == "__main__":
    main()
