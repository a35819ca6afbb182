"""Conversation encoding: image tokens vs grid, model frame, template-derived label masks, truncation."""

from __future__ import annotations

import numpy as np
import pytest

from rscovlm.model.collator import (
    IGNORE_INDEX, Collator, ConversationEncoder, EncodedDataset, SampleDropped, SampleError,
)


def _image(w, h, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from rscovlm.model.loading import load_processor

    return load_processor(str(tiny_model_dir))


@pytest.fixture(scope="module")
def encoder(processor):
    return ConversationEncoder(processor)


def _label_runs(sample):
    """Contiguous runs of supervised positions as (start, end) pairs."""
    mask = (sample.labels != IGNORE_INDEX).numpy()
    runs, start = [], None
    for i, m in enumerate(mask):
        if m and start is None:
            start = i
        if not m and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(mask)))
    return runs


def _ids(processor, text):
    return processor.tokenizer(text, add_special_tokens=False)["input_ids"]


def _user(img, text):
    return {"role": "user", "content": [{"type": "image", "image": img}, {"type": "text", "text": text}]}


def _detection_target(form):
    from rscovlm.geometry.boxes import Boxes, Frame
    from rscovlm.geometry.objects import ObjectSet
    from rscovlm.protocol.detection import format_detections

    quads = [[10, 20, 60, 20, 60, 70, 10, 70], [100, 120, 140, 120, 140, 200, 100, 200],
             [200, 30, 250, 35, 245, 80, 195, 75]]
    objects = ObjectSet(Boxes(quads, "quad", Frame.model(308, 252)), ["plane", "ship", "small-vehicle"])
    return format_detections(objects, form)


DETECTION_PLAIN = _detection_target("plain")
DETECTION_JSON = _detection_target("json")  # fenced JSON list with "quad_2d" and "label"


@pytest.mark.parametrize("target", ["airport", DETECTION_PLAIN, DETECTION_JSON, "There is none."],
                         ids=["classification", "detection_plain", "detection_json", "none"])
def test_single_turn_labels_are_exactly_the_answer_and_end_of_turn(processor, encoder, target):
    messages = [_user(_image(300, 250), "Detect all objects."), {"role": "assistant", "content": target}]
    sample = encoder.encode({"messages": messages})
    runs = _label_runs(sample)
    assert len(runs) == 1
    start, end = runs[0]
    labelled = sample.input_ids[start:end].tolist()
    assert labelled == _ids(processor, target + "<|im_end|>")
    assert sample.labels[start:end].tolist() == labelled
    # everything before the answer is the inference prompt, token for token
    prompt = processor(text=[encoder.render(messages[:1], add_generation_prompt=True)],
                       images=encoder.images(messages)[0], do_resize=False)["input_ids"][0]
    assert sample.input_ids[:start].tolist() == list(prompt)


def test_image_pad_count_equals_grid_and_matches_the_processor(processor, encoder):
    img = _image(803, 611, seed=1)
    messages = [_user(img, "Count the planes."), {"role": "assistant", "content": "3"}]
    sample = encoder.encode(messages)
    (t, h, w), = sample.image_grid_thw.tolist()
    n_pad = int((sample.input_ids == processor.image_token_id).sum())
    assert n_pad == t * h * w // processor.image_processor.merge_size ** 2
    assert sample.pixel_values.shape[0] == t * h * w
    # the model frame is the size the vision tower sees: grid x patch, multiples of 28, within the bounds
    plan = sample.plans[0]
    assert plan.model_size == (w * 14, h * 14)
    assert plan.model_size[0] % 28 == 0 and plan.model_size[1] % 28 == 0
    assert 224 * 224 <= plan.model_size[0] * plan.model_size[1] <= 1008 * 1008
    assert (plan.original.width, plan.original.height) == (803, 611)
    # identical to the processor's own expansion of the rendered conversation
    full = encoder.render(messages)
    reference = processor(text=[full], images=[img], return_tensors="pt")
    assert sample.input_ids.tolist() == reference["input_ids"][0].tolist()
    assert reference["image_grid_thw"].tolist() == sample.image_grid_thw.tolist()
    assert sample.mm_token_type_ids.tolist() == reference["mm_token_type_ids"][0].tolist()


def test_an_image_already_at_a_model_size_passes_unchanged(encoder):
    img = _image(812, 588, seed=2)  # 29 x 21 patches of 28 px
    images, plans = encoder.images([_user(img, "x")])
    assert images[0] is img and plans[0].model_size == (812, 588)
    small = _image(100, 80)  # below min_pixels: enlarged
    _, plans = encoder.images([_user(small, "x")])
    assert plans[0].model_size[0] * plans[0].model_size[1] >= 224 * 224


def test_zoom_chain_two_images_two_assistant_turns(processor, encoder):
    overview, crop = _image(1000, 700, seed=3), _image(400, 300, seed=4)
    turn1 = '<tool_call>{"name": "zoom_in", "arguments": {"bbox_2d": [100, 200, 300, 400]}}</tool_call>'
    turn2 = "There are 4 planes."
    messages = [
        {"role": "system", "content": "You can zoom in."},
        _user(overview, "How many planes are at the apron?"),
        {"role": "assistant", "content": [{"type": "text", "text": turn1}]},
        {"role": "user", "content": [{"type": "image", "image": crop}]},
        {"role": "assistant", "content": turn2},
    ]
    sample = encoder.encode({"messages": messages})
    runs = _label_runs(sample)
    assert len(runs) == 2
    assert sample.input_ids[runs[0][0]:runs[0][1]].tolist() == _ids(processor, turn1 + "<|im_end|>")
    assert sample.input_ids[runs[1][0]:runs[1][1]].tolist() == _ids(processor, turn2 + "<|im_end|>")
    grids = sample.image_grid_thw.tolist()
    assert len(grids) == 2
    pad = processor.image_token_id
    ids = sample.input_ids.tolist()
    # the first image lies before the first answer, the crop between the two answers, none is labelled
    first = [i for i, t in enumerate(ids) if t == pad and i < runs[0][0]]
    second = [i for i, t in enumerate(ids) if t == pad and runs[0][1] <= i < runs[1][0]]
    assert len(first) == grids[0][0] * grids[0][1] * grids[0][2] // 4
    assert len(second) == grids[1][0] * grids[1][1] * grids[1][2] // 4
    assert len(first) + len(second) == ids.count(pad)
    # system and user text carry no labels
    decoded = processor.tokenizer.decode(sample.input_ids[sample.labels != IGNORE_INDEX])
    assert "zoom in" not in decoded.lower().replace("zoom_in", "") and "apron" not in decoded


def test_truncation_cuts_text_but_drops_samples_cut_inside_image_tokens(processor):
    img = _image(224, 224)  # 8 x 8 merged tokens = 64 pads
    long_answer = " ".join(str(i) for i in range(200))
    messages = [_user(img, "List numbers."), {"role": "assistant", "content": long_answer}]
    full = ConversationEncoder(processor, max_length=100000).encode(messages)
    last_pad = max(i for i, t in enumerate(full.input_ids.tolist()) if t == processor.image_token_id)

    cut = ConversationEncoder(processor, max_length=last_pad + 20).encode(messages)
    assert cut.truncated and len(cut.input_ids) == last_pad + 20
    assert cut.input_ids.tolist() == full.input_ids[: last_pad + 20].tolist()
    assert cut.labels.tolist() == full.labels[: last_pad + 20].tolist()

    with pytest.raises(SampleDropped) as err:
        ConversationEncoder(processor, max_length=last_pad).encode(messages)
    assert err.value.reason == "image_cut"
    with pytest.raises(SampleDropped) as err:  # the vision-end token must fit too
        ConversationEncoder(processor, max_length=last_pad + 1).encode(messages)
    assert err.value.reason == "image_cut"
    first_label = int((full.labels != IGNORE_INDEX).nonzero()[0])
    with pytest.raises(SampleDropped) as err:
        ConversationEncoder(processor, max_length=first_label).encode(messages)
    assert err.value.reason == "no_target"


def test_length_counts_the_tokens_of_encode_without_decoding_images(processor, tmp_path, monkeypatch):
    """``length`` (what packing plans with) equals ``len(encode(...).input_ids)`` for images given as PIL images,
    files and builder parts with a resized size, several images, truncation, and raises the same drops - while no
    image is decoded (``open_rgb`` fails if called)."""
    import rscovlm.imageio

    path = tmp_path / "a.png"
    _image(500, 333, 3).save(path)
    zoom = [_user(str(path), "Where?"), {"role": "assistant", "content": "there"},
            _user(_image(140, 84, 4), "Now?"), {"role": "assistant", "content": "yes " * 30}]
    part = {"type": "image", "image": str(path), "resized_width": 308, "resized_height": 196}
    cases = [[_user(_image(300, 250), "Classify."), {"role": "assistant", "content": "airport"}],
             [{"role": "user", "content": "Only text?"}, {"role": "assistant", "content": "Only text."}],
             [{"role": "user", "content": [part, {"type": "text", "text": "Count."}]},
              {"role": "assistant", "content": "3"}], zoom]
    lengths = []
    for max_length in (100000, 350, 60):
        encoder = ConversationEncoder(processor, max_length=max_length)
        for case in cases:
            try:
                expected = len(encoder.encode(case).input_ids)
            except SampleDropped as err:
                expected = err.reason
            with monkeypatch.context() as m:
                m.setattr(rscovlm.imageio, "open_rgb", lambda *a, **k: pytest.fail("an image was decoded"))
                try:
                    got = encoder.length(case)
                except SampleDropped as err:
                    got = err.reason
            assert got == expected
            lengths.append(got)
    assert {"image_cut", "no_target"} & set(lengths) and 350 in lengths  # a drop and a truncation among them


def test_encoded_dataset_counts_drops_and_can_refuse_them(processor):
    img = _image(448, 448)  # 256 pads
    ok = [_user(_image(224, 224), "a"), {"role": "assistant", "content": "b"}]
    too_big = [_user(img, "a"), {"role": "assistant", "content": "b"}]
    encoder = ConversationEncoder(processor, max_length=150)
    data = EncodedDataset([too_big, ok, too_big], encoder)
    item = data[0]
    assert item["dropped"] == {"image_cut": 1}
    assert item["input_ids"].tolist() == encoder.encode(ok).input_ids.tolist()
    assert data[1]["dropped"] == {}
    assert data[2]["dropped"] == {"image_cut": 1}  # wraps around to sample 1
    batch = Collator(processor.tokenizer.pad_token_id)([data[0], data[2]])
    assert batch["rscovlm_dropped"] == {"image_cut": 2}
    with pytest.raises(SampleDropped, match="sample 0"):
        EncodedDataset([too_big, ok], encoder, drop=False)[0]
    with pytest.raises(SampleError, match="every one of the 1 samples"):
        EncodedDataset([too_big], encoder)[0]


@pytest.mark.parametrize("bad, match", [
    ({"messages": []}, "non-empty"),
    ([{"role": "user", "content": "no answer"}], "at least one assistant"),
    ([{"role": "robot", "content": "x"}], "role"),
    ([{"role": "user", "content": [{"type": "image"}]}, {"role": "assistant", "content": "x"}], "needs an 'image'"),
    ([{"role": "user", "content": [{"type": "video", "video": "v.mp4"}]}, {"role": "assistant", "content": "x"}],
     "type must be"),
])
def test_malformed_conversations_are_rejected_with_the_reason(encoder, bad, match):
    with pytest.raises(ValueError, match=match):
        encoder.encode(bad)


def test_missing_image_file_is_named(encoder, tmp_path):
    from rscovlm.imageio import ImageReadError

    missing = tmp_path / "nope.png"
    with pytest.raises(ImageReadError, match="nope.png: image file not found"):
        encoder.encode([_user(str(missing), "x"), {"role": "assistant", "content": "y"}])


def test_collator_pads_and_the_tiny_model_takes_the_batch(tiny_model_dir, processor, encoder):
    import torch
    from transformers import AutoModelForImageTextToText

    a = encoder.encode([_user(_image(300, 250), "Classify."), {"role": "assistant", "content": "airport"}])
    b = encoder.encode([_user(_image(500, 400, 1), "Count."), _assistant("12"),
                        {"role": "user", "content": "Sure?"}, _assistant("yes")])
    batch = Collator(processor.tokenizer.pad_token_id)([a.as_dict(), b.as_dict()])
    n = max(len(a.input_ids), len(b.input_ids))
    assert batch["input_ids"].shape == (2, n)
    short = 0 if len(a.input_ids) < n else 1
    k = len((a, b)[short].input_ids)
    assert batch["attention_mask"][short, k:].sum() == 0 and (batch["labels"][short, k:] == IGNORE_INDEX).all()
    assert (batch["input_ids"][short, k:] == processor.tokenizer.pad_token_id).all()
    assert torch.equal(batch["pixel_values"], torch.cat([a.pixel_values, b.pixel_values]))
    assert batch["image_grid_thw"].tolist() == a.image_grid_thw.tolist() + b.image_grid_thw.tolist()
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    out = model(**batch)
    assert torch.isfinite(out.loss)


def _assistant(text):
    return {"role": "assistant", "content": text}


def test_batched_prompts_are_left_padded_training_prompts(processor, encoder):
    """``encode_prompts`` (what the inference backend feeds ``generate``): each row, without its left padding,
    is token for token the prompt part of the training encoding."""
    convs = [[_user(_image(300, 250), "Classify.")], [_user(_image(500, 400, 1), "Count the planes in it.")]]
    inputs, plans = encoder.encode_prompts(convs)
    assert [p[0].model_size for p in plans] == [encoder.policy.plan(300, 250).model_size,
                                               encoder.policy.plan(500, 400).model_size]
    for row, conv in enumerate(convs):
        train = encoder.encode(conv + [{"role": "assistant", "content": "x"}])
        start = int((train.labels != IGNORE_INDEX).nonzero()[0])
        mask = inputs["attention_mask"][row].bool()
        assert mask[-1] and inputs["input_ids"][row][mask].tolist() == train.input_ids[:start].tolist()
        assert mask.tolist() == sorted(mask.tolist())  # padding only on the left
    assert inputs["image_grid_thw"].shape == (2, 3)


def _truncated(path, fmt, w=120, h=90):
    import io

    buf = io.BytesIO()
    _image(w, h, 3).save(buf, fmt)
    data = buf.getvalue()
    path.write_bytes(data[: len(data) * 6 // 10])
    return path


@pytest.mark.parametrize("fmt, suffix", [("PNG", "png"), ("JPEG", "jpg")])
def test_truncated_image_is_a_sample_error_naming_the_record_and_the_file(encoder, tmp_path, fmt, suffix):
    """A truncated file in a training jsonl: the error names the sample, its file:line and the image file (on main
    it said only 'sample 1: image file is truncated')."""
    import json

    from rscovlm.train.sources import JsonlConversations

    _image(56, 56).save(tmp_path / "good.png")
    _truncated(tmp_path / f"bad.{suffix}", fmt)
    lines = [json.dumps({"messages": [_user(name, "What?"), {"role": "assistant", "content": "harbor"}]})
             for name in ("good.png", f"bad.{suffix}")]
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n")
    data = EncodedDataset(JsonlConversations([tmp_path / "t.jsonl"]), encoder)
    assert len(data[0]["input_ids"]) > 0
    with pytest.raises(SampleError) as err:
        data[1]
    message = str(err.value)
    assert message.startswith(f"sample 1 ({tmp_path / 't.jsonl'}:2): {tmp_path / f'bad.{suffix}'}: ")
    assert "truncated" in message


def test_errors_raised_again_by_a_dataloader_worker_keep_their_own_message():
    """torch re-raises a worker's exception as ``type("Caught X in DataLoader worker process N.\\nOriginal
    Traceback ...")``: the sample errors keep only their message (and a dropped sample its reason)."""
    from torch._utils import ExceptionWrapper  # what torch.utils.data's workers wrap exceptions in

    for error, text, reason in [(SampleError("sample 3 (a.jsonl:4): /x.png: image file not found"),
                                 "sample 3 (a.jsonl:4): /x.png: image file not found", None),
                                (SampleDropped("image_cut", "sample 2 (a.jsonl:3): 98 tokens"),
                                 "image_cut: sample 2 (a.jsonl:3): 98 tokens", "image_cut")]:
        try:
            raise error
        except SampleError:
            wrapped = ExceptionWrapper(where="in DataLoader worker process 1")
        with pytest.raises(type(error)) as raised:
            wrapped.reraise()
        assert str(raised.value) == text
        if reason:
            assert raised.value.reason == reason
