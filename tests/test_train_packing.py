"""Sequence packing: rows hold several samples, attention stays inside each sample, and a packed batch trains
exactly like the same samples padded.

Tolerances (float32, CPU): loss within 1e-6 relative; every gradient within 1e-6 absolute + 1e-5 relative (the
largest difference measured is ~1e-7 with gradients up to ~0.8: summation order only). A leak check compares the
logits of one sample while another sample of the same row is changed: they must not move (1e-6), and the same
check with the per-sample positions removed (plain causal attention over the row) must see them move - the test
would fail if the mask leaked.
"""

from __future__ import annotations

import numpy as np
import pytest

from rscovlm.model.collator import (
    IGNORE_INDEX, Collator, ConversationEncoder, EncodedDataset, SampleDropped, packed_model_inputs,
    packed_position_ids,
)
from rscovlm.train.stream import TrainStream, pack_rows


def _image(w, h, seed):
    from PIL import Image

    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def _conv(image, question, answer):
    content = [{"type": "text", "text": question}]
    if image is not None:
        content.insert(0, {"type": "image", "image": image})
    return [{"role": "user", "content": content}, {"role": "assistant", "content": answer}]


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from rscovlm.model.loading import load_processor

    return load_processor(str(tiny_model_dir))


@pytest.fixture(scope="module")
def samples(processor):
    """Four encoded samples: two images of different sizes, a text-only one, a two-image zoom-like chain."""
    enc = ConversationEncoder(processor)
    chain = [{"role": "user", "content": [{"type": "image", "image": _image(252, 196, 5)},
                                          {"type": "text", "text": "Where is the ship?"}]},
             {"role": "assistant", "content": "zoom 10,20,80,90"},
             {"role": "user", "content": [{"type": "image", "image": _image(112, 112, 6)},
                                          {"type": "text", "text": "Here it is."}]},
             {"role": "assistant", "content": "a small white ship"}]
    convs = [_conv(_image(224, 224, 1), "Classify the scene.", "airport"),
             _conv(None, "What is two plus two?", "four"),
             _conv(_image(308, 252, 2), "Count the planes.", "12 planes near the runway"),
             chain]
    return [enc.encode(c).as_dict() for c in convs]


def _model(tiny_model_dir, attn):
    import torch
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(0)
    return AutoModelForImageTextToText.from_pretrained(tiny_model_dir, attn_implementation=attn,
                                                       dtype=torch.float32)


def _loss_and_grads(model, inputs):
    model.zero_grad()
    out = model(**inputs)
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return float(out.loss.detach()), grads


# ---- the packer ----------------------------------------------------------------------------------------------

def test_pack_rows_fills_rows_in_order_from_the_look_ahead_buffer():
    lengths = [5, 9, 3, 8, 2, -1, 6, 1, 7]
    rows = pack_rows(lengths, capacity=10, buffer=3)
    # hand-run: buffer [0,1,2] -> row [0,2] (5+3, 9 does not fit); buffer [1,3,4] -> [1] (9; 8, 2 do not fit)
    # -> buffer [3,4,6] -> [3,4]; buffer [6,7,8] -> [6,7] (6+1; 7 does not fit); buffer [8] -> [8]
    assert rows == [[0, 2], [1], [3, 4], [6, 7], [8]]
    assert pack_rows(lengths, 10, 3) == rows  # a function of the lengths only
    with pytest.raises(ValueError, match="sample 1 has 9 tokens, more than the row capacity 8"):
        pack_rows(lengths, 8, 3)


def test_pack_rows_keeps_every_sample_once_within_capacity_and_the_oldest_opens_each_row():
    rng = np.random.default_rng(0)
    lengths = np.where(rng.random(3000) < 0.8, rng.integers(60, 400, 3000), rng.integers(1500, 4000, 3000))
    lengths[rng.random(3000) < 0.02] = -1  # dropped samples
    rows = pack_rows(lengths, capacity=4096, buffer=32)
    flat = [i for row in rows for i in row]
    assert sorted(flat) == [i for i, n in enumerate(lengths) if n >= 0]
    assert all(sum(lengths[i] for i in row) <= 4096 for row in rows)
    assert all(row[0] == min(i for r in rows[k:] for i in r) for k, row in enumerate(rows))  # oldest opens
    fill = sum(max(n, 0) for n in lengths) / (len(rows) * 4096)
    assert fill > 0.9


# ---- loss, gradients and attention of packed batches ---------------------------------------------------------

@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("layout", ["one_row", "two_rows", "flattened"])
def test_packed_batch_has_the_loss_and_gradients_of_the_same_samples_padded(tiny_model_dir, processor, samples,
                                                                          attn, layout):
    import torch

    torch.set_num_threads(1)
    model = _model(tiny_model_dir, attn)
    pad_id = processor.tokenizer.pad_token_id
    loss_pad, grads_pad = _loss_and_grads(model, Collator(pad_id)(samples))
    rows = {"one_row": [samples], "two_rows": [samples[:1], samples[1:]],
            "flattened": [samples[:2], samples[2:]]}[layout]
    packed = Collator(pad_id, packing=True, flatten=layout == "flattened")(rows)
    assert "attention_mask" not in packed
    assert packed["input_ids"].shape[0] == (2 if layout == "two_rows" else 1)
    loss_pack, grads_pack = _loss_and_grads(model, packed_model_inputs(model, packed))
    assert loss_pack == pytest.approx(loss_pad, rel=1e-6)
    assert grads_pack.keys() == grads_pad.keys() and len(grads_pad) > 20
    for name, g in grads_pad.items():
        torch.testing.assert_close(grads_pack[name], g, atol=1e-6, rtol=1e-5, msg=name)


def test_labels_and_positions_of_a_packed_row(tiny_model_dir, processor, samples):
    """Labels are the samples' own except each sample's first token; rows 1-3 of the position ids are each
    sample's get_rope_index alone (equal to its positions in the padded batch), row 0 restarts per sample."""
    import torch

    model = _model(tiny_model_dir, "sdpa")
    pad = Collator(processor.tokenizer.pad_token_id)(samples)
    packed = Collator(processor.tokenizer.pad_token_id, packing=True)([samples])
    positions = packed_position_ids(model, packed)
    rope, _ = model.model.get_rope_index(pad["input_ids"], mm_token_type_ids=pad["mm_token_type_ids"],
                                         image_grid_thw=pad["image_grid_thw"], attention_mask=pad["attention_mask"])
    cursor = 0
    for i, s in enumerate(samples):
        k = len(s["input_ids"])
        assert torch.equal(positions[1:, 0, cursor:cursor + k], rope[:, i, :k])
        assert torch.equal(positions[0, 0, cursor:cursor + k], torch.arange(k))
        assert torch.equal(packed["input_ids"][0, cursor:cursor + k], s["input_ids"])
        assert packed["labels"][0, cursor] == IGNORE_INDEX
        assert torch.equal(packed["labels"][0, cursor + 1:cursor + k], s["labels"][1:])
        cursor += k
    assert packed["packed_samples"] == [[[len(s["input_ids"]), 0 if s["image_grid_thw"] is None
                                          else len(s["image_grid_thw"])] for s in samples]]
    assert torch.equal(packed["pixel_values"], pad["pixel_values"])


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_a_packed_sample_cannot_see_its_neighbour(tiny_model_dir, processor, samples, attn):
    """Change sample A (its text tokens and its image) in a row [A, B, C]: B's and C's logits stay put; A's move.
    Without the per-sample positions (one causal sequence over the row) B's logits move: the check can fail."""
    import torch

    model = _model(tiny_model_dir, attn).eval()
    pad_id = processor.tokenizer.pad_token_id
    collate = Collator(pad_id, packing=True)
    row = [samples[2], samples[0], samples[3]]
    changed = dict(samples[2])
    ids = changed["input_ids"].clone()
    text = (changed["mm_token_type_ids"] == 0).nonzero().flatten()
    ids[text[3:8]] = ids[text[3:8]] % 50 + 7  # some prompt tokens of A
    changed["input_ids"] = ids
    changed["pixel_values"] = changed["pixel_values"] + 0.5
    a = len(samples[2]["input_ids"])

    def logits(rows, packed_positions=True):
        batch = collate(rows)
        inputs = packed_model_inputs(model, batch)
        if not packed_positions:
            inputs.pop("position_ids")
        with torch.no_grad():
            return model(**inputs).logits[0]

    before, after = logits([row]), logits([[changed, *row[1:]]])
    assert (before[:a] - after[:a]).abs().max() > 1e-3  # A itself changed
    torch.testing.assert_close(after[a:], before[a:], atol=1e-6, rtol=0)
    leaky_before, leaky_after = logits([row], False), logits([[changed, *row[1:]]], False)
    assert (leaky_before[a:] - leaky_after[a:]).abs().max() > 1e-3


# ---- the stream ----------------------------------------------------------------------------------------------

def test_stream_packs_every_sample_once_per_epoch_and_ranks_split_the_rows(processor):
    """Rows within max_length, each sample once per epoch across both ranks (but the < W rows left out), the
    same rows on every rank, and ranks' micro-batches disjoint; deterministic per seed."""
    rng = np.random.default_rng(3)
    convs = []
    for i in range(40):
        long = rng.random() < 0.2
        text = " ".join(f"word{j}" for j in range(int(rng.integers(120, 300) if long else rng.integers(3, 30))))
        img = _image(int(rng.choice([56, 112, 224])), 56, i) if i % 2 else None
        convs.append({"messages": _conv(img, f"sample {i}: {text}", f"answer {i}"), "meta": {"id": f"s{i}"}})
    encoded = EncodedDataset(convs, ConversationEncoder(processor, max_length=512))

    def length(i):
        try:
            return encoded.length(i)
        except SampleDropped:  # the answer would be cut away: dropped
            return -1

    lengths = [length(i) for i in range(len(convs))]
    dropped = {i for i, n in enumerate(lengths) if n < 0}
    assert 0 < len(dropped) < 10
    collate = Collator(processor.tokenizer.pad_token_id, packing=True)

    def stream(rank, seed=5):
        return TrainStream(encoded, collate, batch_size=2, seed=seed, packing=True, max_length=512, buffer=8,
                           rank=rank, world_size=2, epochs=2)

    r0, r1 = stream(0), stream(1)
    for epoch in (0, 1):
        p0, p1 = r0.plan(epoch), r1.plan(epoch)
        assert p0.digest() == p1.digest()
        rows0 = [row for b in p0.batches for row in b]
        rows1 = [row for b in p1.batches for row in b]
        assert len(rows0) == len(rows1) == p0.rows // 2
        served = [i for row in rows0 + rows1 for i in row]
        assert len(served) == len(set(served)) and not dropped & set(served)
        left_out = set(range(40)) - set(served) - dropped
        assert len(left_out) <= max(len(r) for r in rows0 + rows1)  # one row (< W rows) left out at most
        assert all(sum(lengths[i] for i in row) <= 512 for row in rows0 + rows1)
        assert sum(len(r) > 1 for r in rows0) > len(rows0) // 2  # rows really hold several samples
    assert r0.plan(0).digest() != r0.plan(1).digest()  # each epoch its own order
    assert r0.dropped == {"no_target": 2 * len(dropped)}  # counted per epoch (no exchange: all samples)
    assert stream(0).plan(0).digest() == r0.plan(0).digest() != stream(0, seed=6).plan(0).digest()
    batch = next(iter(r0))
    assert batch["rscovlm_stream"]["ids"] == [[f"s{i}" for i in row] for row in r0.plan(0).batches[0]]
    assert batch["input_ids"].shape[0] == len(r0.plan(0).batches[0])


def test_stream_state_resumes_at_the_next_batch_and_refuses_another_plan(processor):
    convs = [{"messages": _conv(None, "q " * (i % 7 + 1), f"a{i}")} for i in range(30)]
    encoded = EncodedDataset(convs, ConversationEncoder(processor, max_length=64))
    collate = Collator(processor.tokenizer.pad_token_id, packing=True)
    make = lambda **kw: TrainStream(encoded, collate, **{"batch_size": 1, "seed": 1, "packing": True,  # noqa: E731
                                                         "max_length": 64, "buffer": 4, "epochs": 3, **kw})
    full = [b["rscovlm_stream"]["ids"] for b in make()]
    first = make()
    for i, b in enumerate(first):
        first.advance(b["rscovlm_stream"]["epoch"], b["rscovlm_stream"]["batch"])
        if i == 6:
            break
    state = first.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    assert [b["rscovlm_stream"]["ids"] for b in resumed] == full[7:]
    with pytest.raises(ValueError, match="max_length=64, this run has 80"):
        make(max_length=80).load_state_dict(state)
    with pytest.raises(ValueError, match="rows of epoch .* differ"):
        make(seed=2).load_state_dict({k: v for k, v in state.items() if k != "seed"})


def test_trainer_trains_packed_rows_and_counts_the_samples_packing_drops(tiny_model_dir, tmp_path):
    """`train.packing: true` end to end: rows of several samples within max_length, every kept sample once per
    epoch, a sample whose image would be cut dropped and counted once per epoch, steps from the planned epochs."""
    import json

    from rscovlm.train.config import build_config
    from rscovlm.train.trainer import train

    items = [{"messages": _conv(_image(56 * (1 + i % 3), 56, i) if i % 4 else None, f"question {i}",
                                " ".join(["answer"] * (1 + i % 5))), "meta": {"id": f"s{i}"}} for i in range(14)]
    items.append({"messages": _conv(_image(448, 448, 99), "too big", "x"), "meta": {"id": "big"}})  # 256 pads
    cfg = build_config({}, [
        f"model.model_name_or_path={tiny_model_dir}", f"output_dir={tmp_path}", "dataloader_num_workers=0",
        "deepspeed=none", "packing=true", "data.max_length=200", "data.min_pixels=3136", "global_batch_size=2",
        "per_device_batch_size=1", "num_train_epochs=2", "record_samples=true", "logging_steps=1",
        "save_steps=1000", "lr_scheduler_type=constant", "warmup_ratio=0.0"])
    result = train(cfg, dataset=items)
    assert result.dropped == {"image_cut": 2, "no_target": 0}
    lines = [json.loads(line) for line in (tmp_path / "rscovlm_samples.jsonl").read_text().splitlines()]
    for epoch in (0, 1):
        ids = [i for line in lines if line["epoch"] == epoch for row in line["rows"] for i in row]
        assert sorted(ids) == sorted(f"s{i}" for i in range(14))
    assert max(len(row) for line in lines for row in line["rows"]) > 2
    assert result.global_step == -(-len(lines) // 2) and all(np.isfinite(result.losses))
