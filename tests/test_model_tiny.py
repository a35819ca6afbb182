"""The offline tiny Qwen2.5-VL folder, the family registry and checkpoint loading."""

from __future__ import annotations

import json

import pytest

from rscovlm.model.families import QWEN2_5_VL, family_for
from rscovlm.model.tiny import QWEN2_5_VL_ADDED_TOKENS


def test_tiny_folder_has_the_checkpoint_files(tiny_model_dir):
    names = {p.name for p in tiny_model_dir.iterdir()}
    for required in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                     "chat_template.jinja", "generation_config.json"):
        assert required in names
    assert {"preprocessor_config.json", "processor_config.json"} & names


def test_tiny_folder_reloads_offline_with_auto_classes(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    vision = model.config.vision_config
    assert (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) == (14, 2, 2)
    tok = processor.tokenizer
    # the config's multimodal ids point at the tokenizer's placeholder tokens
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>") == processor.image_token_id
    assert model.config.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert model.config.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert model.config.vision_end_token_id == tok.convert_tokens_to_ids("<|vision_end|>")
    assert model.get_input_embeddings().num_embeddings >= len(tok)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert processor.image_processor.size["shortest_edge"] == 224 * 224
    assert processor.image_processor.size["longest_edge"] == 1008 * 1008
    gen = json.loads((tiny_model_dir / "generation_config.json").read_text())
    assert set(gen["eos_token_id"]) == {tok.convert_tokens_to_ids("<|im_end|>"),
                                         tok.convert_tokens_to_ids("<|endoftext|>")}


def test_every_qwen_added_token_is_one_token_with_its_special_flag(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = []
    for text, special in QWEN2_5_VL_ADDED_TOKENS:
        encoded = tok(text, add_special_tokens=False)["input_ids"]
        assert len(encoded) == 1, text
        ids.append(encoded[0])
        decoded = tok.decode(encoded, skip_special_tokens=True)
        assert decoded == ("" if special else text), text
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # contiguous order, as in Qwen's vocabulary


@pytest.mark.parametrize("text", [
    "plane: (12, 34), (56, 34), (56, 78), (12, 78); ship: (100, 200), (300, 200), (300, 400), (100, 400)",
    '[{"bbox_2d": [0, 1, 1007, 999], "label": "small-vehicle"}]',
    "There is none.",
    "Ünïcödé and emoji 🛰 survive byte-level BPE",
])
def test_tokenizer_round_trips_task_text(tiny_model_dir, text):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    digits = [t for t in tok.convert_ids_to_tokens(ids) if any(c.isdigit() for c in t)]
    assert all(len(t.lstrip("Ġ")) == 1 for t in digits)  # Qwen splits numbers into single digits


def test_chat_template_renders_the_qwen2_5_vl_format(tiny_model_dir):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    messages = [
        {"role": "user", "content": [{"type": "image", "image": "a.png"}, {"type": "text", "text": "Where?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "[1, 2, 3, 4]"}]},
        {"role": "user", "content": [{"type": "image", "image": "b.png"}, {"type": "text", "text": "And?"}]},
    ]
    rendered = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Where?<|im_end|>\n"
        "<|im_start|>assistant\n[1, 2, 3, 4]<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>And?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    with_system = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert processor.apply_chat_template(with_system, tokenize=False, add_vision_id=True) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n")
    numbered = processor.apply_chat_template(messages[:1], tokenize=False, add_vision_id=True)
    assert "Picture 1: <|vision_start|>" in numbered


def test_family_registry_knows_each_qwen_box_frame():
    from transformers import Qwen2VLConfig, Qwen3VLConfig

    from rscovlm.geometry.boxes import Frame

    assert family_for("qwen2_5_vl") is QWEN2_5_VL
    assert QWEN2_5_VL.box_frame_for(812, 588) == Frame.model(812, 588)
    assert QWEN2_5_VL.factor == 28 and QWEN2_5_VL.image_tokens((1, 58, 42)) == 58 * 42 // 4
    qwen2 = family_for(Qwen2VLConfig())
    qwen3 = family_for(Qwen3VLConfig())
    assert qwen2.name == "qwen2_vl" and qwen3.name == "qwen3_vl"
    assert qwen2.box_frame_for(812, 588) == Frame(1000, 1000, "norm1000")
    assert qwen3.box_frame == "relative_1000" and qwen3.factor == 32
    with pytest.raises(KeyError, match="llava"):
        family_for("llava")


def test_freeze_flags_and_lora_select_the_trainable_groups(tiny_model_dir):
    from rscovlm.model.loading import ModelConfig, load_model, trainable_summary

    model, family = load_model(ModelConfig(str(tiny_model_dir), freeze_vision_tower=True))
    summary = trainable_summary(model, family)
    assert summary["vision_tower"][0] == 0 < summary["vision_tower"][1]
    assert summary["merger"][0] == summary["merger"][1] > 0
    assert summary["language_model"][0] == summary["language_model"][1] > 0
    # the vision blocks are frozen but the merger inside model.visual is not
    assert not model.model.visual.blocks[0].attn.qkv.weight.requires_grad
    assert model.model.visual.merger.mlp[0].weight.requires_grad

    model, family = load_model(ModelConfig(str(tiny_model_dir), use_lora=True, lora_r=4, lora_alpha=8,
                                           freeze_vision_tower=True))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("lora_A" in n and "language_model" in n for n in trainable)
    assert not any("lora_" in n and "visual" in n for n in trainable)  # adapters only on the decoder
    assert any("merger" in n for n in trainable)  # merger still fully trained
    assert not any("lm_head" in n or ("embed_tokens" in n) for n in trainable)

    with pytest.raises(ValueError, match="every parameter is frozen"):
        load_model(ModelConfig(str(tiny_model_dir), freeze_vision_tower=True, freeze_merger=True,
                               freeze_language_model=True))


def test_attention_and_dtype_resolution_on_this_machine():
    import torch

    from rscovlm.model.loading import flash_attention_available, resolve_attn_implementation, resolve_dtype

    if not flash_attention_available():
        assert resolve_attn_implementation("auto") == "sdpa"
        with pytest.raises(ValueError, match="flash-attn"):
            resolve_attn_implementation("flash_attention_2")
    if not torch.cuda.is_available():
        assert resolve_dtype("auto") == torch.float32
    assert resolve_dtype("bfloat16") == torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("int8")


def test_cli_model_tiny_and_info(tmp_path, capsys):
    from rscovlm.cli import main

    assert main(["model", "tiny", "--out", str(tmp_path / "t"), "--seed", "3"]) == 0
    assert (tmp_path / "t" / "model.safetensors").is_file()
    assert main(["model", "info", str(tmp_path / "t")]) == 0
    out = capsys.readouterr().out
    assert "family: qwen2_5_vl" in out and "box frame: model_pixels" in out
    assert main(["model", "info", str(tmp_path / "missing")]) == 2


def test_freeze_groups_follow_the_qwen2_and_qwen3_module_trees():
    """The family module paths match the real transformers classes of Qwen2-VL and Qwen3-VL (randomly built,
    tiny): the merger (and Qwen3-VL's DeepStack mergers) is its own group inside the vision tower."""
    import torch
    from transformers import AutoModelForImageTextToText, Qwen2VLConfig, Qwen3VLConfig

    from rscovlm.model.loading import apply_freeze, module_groups

    torch.manual_seed(0)
    text = dict(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=1, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    configs = {
        "qwen2_vl": Qwen2VLConfig(
            text_config={**text, "rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
                                                     "mrope_section": [2, 3, 3]}},
            vision_config=dict(depth=1, embed_dim=16, hidden_size=32, num_heads=2, mlp_ratio=2)),
        "qwen3_vl": Qwen3VLConfig(
            text_config={**text, "head_dim": 16},
            vision_config=dict(depth=2, hidden_size=16, num_heads=2, intermediate_size=32, out_hidden_size=32,
                               deepstack_visual_indexes=[0])),
    }
    for name, config in configs.items():
        model = AutoModelForImageTextToText.from_config(config)
        family = family_for(model.config)
        assert family.name == name
        groups = module_groups(model, family)
        assert all(groups.values()), (name, {k: len(v) for k, v in groups.items()})
        assert all(n.startswith("model.visual.") and "merger" in n for n in groups["merger"])
        assert not any("merger" in n for n in groups["vision_tower"] + groups["language_model"])
        assert all(n.startswith("model.visual.") for n in groups["vision_tower"])
        apply_freeze(model, family, vision_tower=True, merger=False, language_model=True)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable == set(groups["merger"])
    assert any("deepstack_merger_list" in n for n in groups["merger"])  # Qwen3-VL


def test_tokenizer_corpus_speaks_the_reference_prompt_set(tiny_model_dir):
    """The tiny tokenizer is trained on the reference set's strings: its zoom-in tool call (rendered by
    rscovlm.protocol.zoom, not the tool-call line the corpus had before), every detection system prompt and the
    answer formats; they round-trip and take few tokens (on the earlier corpus the tool call took 41 tokens and
    the quad system prompt 88)."""
    from transformers import AutoTokenizer

    from rscovlm.model.tiny import _corpus
    from rscovlm.protocol.prompt_sets import get_prompt_set
    from rscovlm.protocol.zoom import format_zoom_call

    corpus = "\n".join(_corpus())
    call = format_zoom_call([100, 200, 300, 400])
    assert call == '<tool_call>\n{"name": "image_zoom_in", "arguments": {"bbox": [100, 200, 300, 400]}}\n</tool_call>'
    assert call in corpus and '"zoom_in"' not in corpus
    task = get_prompt_set("reference").task("detection")
    systems = {fp.system for kinds in task.forms.values() for fp in kinds.values() if fp.system}
    assert len(systems) == 5 and all(s in corpus for s in systems)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    answer = '```json\n[\n\t{"quadrant bbox": [245, 145, 256, 290, 117, 301, 106, 155], "label": "plane"}\n]\n```'
    for text, most in [(call, 38), (answer, 60), ("There are none.", 5),
                       ("245,145,256,290,117,301,106,155 plane\n", 33)] + [(s, len(s) / 3.5) for s in systems]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text and len(ids) <= most, (text, len(ids))
