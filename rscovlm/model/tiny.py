"""An offline, randomly initialised Qwen2.5-VL small enough to train on a laptop CPU.

:func:`build_tiny_model` writes a complete ``transformers`` model folder - the same files a real Qwen2.5-VL
checkpoint has - without downloading anything:

* ``config.json`` - a ``Qwen2_5_VLConfig`` with tiny widths and depths but the real vision geometry (patch 14,
  merge 2, temporal patch 2, so the input side granularity is 28 px as in Qwen2.5-VL-7B);
* ``model.safetensors`` - random weights;
* ``tokenizer.json`` / ``tokenizer_config.json`` - a byte-level BPE trained on the fly (``tokenizers``) on a small
  built-in corpus of remote-sensing prompts, answers (the reference prompt set's system prompts, requests and answer
  formats, and its zoom-in tool call, among them), category names, digits and punctuation, with the Qwen
  pre-tokenizer (digits split one by one) and every Qwen2.5-VL added token (:data:`QWEN2_5_VL_ADDED_TOKENS`);
* ``chat_template.jinja`` - the Qwen2.5-VL chat format (:data:`QWEN2_5_VL_CHAT_TEMPLATE`);
* ``preprocessor_config.json`` / ``video_preprocessor_config.json`` / ``processor_config.json`` - the
  ``Qwen2VLImageProcessor`` with the paper's pixel bounds;
* ``generation_config.json`` - greedy decoding that stops at ``<|im_end|>`` or ``<|endoftext|>``.

``AutoProcessor.from_pretrained(folder)`` and ``AutoModelForImageTextToText.from_pretrained(folder)`` load it with
``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Qwen2.5-VL's added tokens in vocabulary order, with their ``special`` flag (tokenizer_config.json of
# Qwen/Qwen2.5-VL-*-Instruct). The tool-call and FIM tokens are *not* special there: decoding with
# ``skip_special_tokens=True`` keeps them, which the zoom-in chain's tool-call parser relies on.
QWEN2_5_VL_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)

# The Qwen2.5-VL chat format: every message is ``<|im_start|>{role}\n{content}<|im_end|>\n``; a default system
# message is inserted when the conversation does not start with one; an image part renders as
# ``<|vision_start|><|image_pad|><|vision_end|>`` (optionally preceded by ``Picture N: `` with
# ``add_vision_id``), a video part likewise with ``<|video_pad|>``; ``add_generation_prompt`` appends
# ``<|im_start|>assistant\n``.
QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set counts = namespace(images=0, videos=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}"
    "{{ message['content'] }}"
    "{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part or 'image_url' in part %}"
    "{% set counts.images = counts.images + 1 %}"
    "{% if add_vision_id %}Picture {{ counts.images }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' or 'video' in part %}"
    "{% set counts.videos = counts.videos + 1 %}"
    "{% if add_vision_id %}Video {{ counts.videos }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in part %}"
    "{{ part['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "<|im_start|>assistant\n"
    "{% endif %}"
)

# Training text for the tiny tokenizer: what the remote-sensing tasks say. Digits, punctuation and brackets
# all occur so every coordinate and JSON answer is encodable without byte fallback surprises.
_CORPUS_WORDS = (
    "plane ship storage-tank baseball-diamond tennis-court basketball-court ground-track-field harbor bridge "
    "large-vehicle small-vehicle helicopter roundabout soccer-ball-field swimming-pool container-crane airport "
    "helipad vehicle building road river forest farmland residential industrial parking lot beach desert "
    "meadow mountain lake church stadium railway station overpass intersection dense sparse medium commercial "
    "airplane golf course island snowberg wetland terrace chaparral freeway mobile home park runway "
    "There is none. There are none. yes no Yes No one two three four five six seven eight nine ten zero "
    "A B C D left right top bottom center upper lower middle red white blue green gray black small large "
    "rural urban count color shape status category reasoning background"
)
_CORPUS_SENTENCES = (
    "You are a helpful assistant.",
    "Classify the scene of this remote sensing image.",
    "What is the scene category of this image? Answer with one word.",
    "Which category does this aerial image belong to?",
    "How many planes are there in the image?",
    "Is there a harbor in the image? Answer yes or no.",
    "What color is the largest vehicle?",
    "Please provide the bounding box of the region this sentence describes: the ship on the left.",
    "Locate the white plane near the runway and output its bounding box.",
    "Detect all objects in the image and output their quadrilateral boxes.",
    "Detect all objects of the following categories and output the class and coordinates of each object.",
    "Output the result in JSON format.",
    'Outline the position of each object and output all the coordinates in JSON format.',
    '[{"bbox_2d": [12, 34, 56, 78], "label": "plane"}, {"bbox_2d": [90, 123, 456, 789], "label": "ship"}]',
    '{"bbox_2d": [0, 1, 2, 3], "label": "small-vehicle"}',
    '{"quad": [10, 20, 30, 20, 30, 40, 10, 40], "label": "storage-tank"}',
    "plane: (12, 34), (56, 34), (56, 78), (12, 78); (100, 200), (300, 200), (300, 400), (100, 400)",
    "ship <quad>(1,2),(3,4),(5,6),(7,8)</quad> ship [10, 20, 30, 40] {12,345,678,901}",
    "The image is too large. Zoom in on the region of interest first.",
    "Answer the question using a single word or phrase.",
    "The answer is 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 25 50 100 1000.",
    "Describe the image in detail. This is an aerial image of an urban area with many buildings and roads.",
    "Question: How many ships are in the harbor? Options: A. 2 B. 3 C. 4 D. 5. Answer: B",
    "punctuation: . , ; : ! ? ' \" ( ) [ ] { } < > / \\ - _ + = * & % $ # @ ~ ` ^ |",
    "plane: (12,30),(40,30),(40,52),(12,52); (100,200),(300,200),(300,400),(100,400)\nship: (5,6),(7,8),(9,10),(11,12)",
    '```json\n[\n  {"bbox_2d": [12, 30, 40, 52], "label": "plane"},\n  {"quad": [1, 2, 3, 4, 5, 6, 7, 8], "label": "ship"}\n]\n```',
)
# The reference prompt set's strings (rscovlm.protocol, prompt set "reference"; VisionXLab/RSCoVLM): the system
# prompts, requests and answer formats the released checkpoints were trained on, and the zoom-in tool call
# (rscovlm.protocol.zoom), so the tiny tokenizer encodes them compactly.
_REFERENCE_SENTENCES = (
    "As an AI assistant, you specialize in accurate image object detection, delivering coordinates in plain text "
    "format 'x1,y1,x2,y2 object'.",
    "As an AI assistant, you specialize in accurate oriented object detection, delivering coordinates in plain text "
    "format 'x,y,w,h,a object'.",
    "As an AI assistant, you specialize in accurate oriented object detection, delivering coordinates of the polygon "
    "vertices in plain text format 'x1,y1,x2,y2,x3,y3,x4,y4 object'.",
    "You are an AI assistant specializing in oriented object detection. Represent objects with: center (x,y), width "
    "(w), height (h), and rotation angle.",
    "You are an AI assistant specializing in oriented object detection. Represent objects with quadrant bbox: the "
    "corrdinates of each vertices of the oriented bounding boxes in clock-wise order.",
    "find the baseball diamond, basketball court, bridge, ground track field, harbor, helicopter, large vehicle, "
    "plane, roundabout, ship, small vehicle, soccer ball field, storage tank, swimming pool, tennis court.",
    "find the plane, ship, storage tank, swimming pool, tennis court",
    "Locate every item from the category list in the image and output the coordinates in JSON format. The category "
    "set includes plane, ship.",
    "Locate every item from the category list in the image and output the oriented bbox coordinates in JSON "
    "format. The category set includes storage tank, swimming pool.",
    "Locate the topmost plane, output the bbox coordinates using JSON format",
    "120,45,160,45,160,80,120,80 plane\n130,300,170,300,170,340,130,340 small vehicle\n",
    "12,34,56,78 topmost plane\n138,61,40,35,-45 ship\n",
    '```json\n[\n\t{"quadrant bbox": [120, 45, 160, 45, 160, 80, 120, 80], "label": "plane"},\n\t{"oriented bbox": '
    '[138, 61, 40, 35, -45], "label": "ship"},\n\t{"bbox_2d": [12, 34, 56, 78], "label": "storage tank"}\n]\n```',
    '<tool_call>\n{"name": "image_zoom_in", "arguments": {"bbox": [100, 200, 300, 400]}}\n</tool_call>',
    "What is the color of the car?\nZoom in to the region of interest and answer the question.",
    "Here's the zoomed-in image. You can complete your task now.",
)


@dataclass
class TinySpec:
    """Sizes of the tiny Qwen2.5-VL. The vision geometry matches the real model; widths and depths are tiny."""

    text_hidden_size: int = field(default=64, metadata={"help": "decoder width"})
    text_layers: int = field(default=2, metadata={"help": "decoder layers"})
    text_heads: int = field(default=4, metadata={"help": "attention heads (head dim = width / heads)"})
    text_kv_heads: int = field(default=2, metadata={"help": "key/value heads (grouped-query attention)"})
    text_intermediate_size: int = field(default=128, metadata={"help": "decoder MLP width"})
    vision_hidden_size: int = field(default=32, metadata={"help": "vision tower width"})
    vision_depth: int = field(default=2, metadata={"help": "vision blocks"})
    vision_heads: int = field(default=2, metadata={"help": "vision attention heads"})
    vision_intermediate_size: int = field(default=64, metadata={"help": "vision MLP width"})
    patch_size: int = field(default=14, metadata={"help": "vision patch side (Qwen2.5-VL: 14)"})
    merge_size: int = field(default=2, metadata={"help": "spatial merge (Qwen2.5-VL: 2)"})
    temporal_patch_size: int = field(default=2, metadata={"help": "temporal patch (Qwen2.5-VL: 2)"})
    bpe_vocab_size: int = field(default=1024, metadata={"help": "BPE vocabulary before the added tokens"})
    min_pixels: int = field(default=224 * 224, metadata={"help": "processor lower pixel bound (paper: 224^2)"})
    max_pixels: int = field(default=1008 * 1008, metadata={"help": "processor upper pixel bound (paper: 1008^2)"})
    max_position_embeddings: int = field(default=8192, metadata={"help": "decoder context length"})
    seed: int = field(default=0, metadata={"help": "seed of the random weights"})


def _corpus() -> list[str]:
    lines = list(_CORPUS_SENTENCES) + list(_REFERENCE_SENTENCES) + [_CORPUS_WORDS]
    lines += [" ".join(str(i) for i in range(start, start + 50)) for start in range(0, 1100, 50)]
    return lines * 4


def build_tokenizer(spec: TinySpec):
    """Train the byte-level BPE and wrap it as the ``transformers`` Qwen2 tokenizer with the Qwen2.5-VL added
    tokens and chat template."""
    import tempfile

    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import AddedToken
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.bpe_vocab_size, min_frequency=2, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(_corpus(), trainer=trainer)
    with tempfile.TemporaryDirectory() as tmp:
        bpe.model.save(tmp)
        lines = (Path(tmp) / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]

    tokenizer = Qwen2Tokenizer(
        vocab=bpe.get_vocab(), merges=merges, unk_token=None, bos_token=None,
        eos_token="<|endoftext|>", pad_token="<|endoftext|>", errors="replace",
        chat_template=QWEN2_5_VL_CHAT_TEMPLATE, model_max_length=spec.max_position_embeddings,
    )
    tokenizer.add_tokens(
        [AddedToken(tok, special=special, normalized=False) for tok, special in QWEN2_5_VL_ADDED_TOKENS]
    )
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [t for t, special in QWEN2_5_VL_ADDED_TOKENS if special]},
        replace_extra_special_tokens=True,
    )
    tokenizer.eos_token = "<|im_end|>"  # set after adding so the added tokens keep Qwen's vocabulary order
    return tokenizer


def build_tiny_model(out_dir: str | Path, spec: TinySpec | None = None) -> Path:
    """Write the tiny Qwen2.5-VL folder to ``out_dir`` (created; existing files are overwritten) and return
    its path."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    spec = spec or TinySpec()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(spec)
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok, _ in QWEN2_5_VL_ADDED_TOKENS}
    vocab_size = -(-len(tokenizer) // 64) * 64  # real checkpoints pad the embedding to a multiple of 64 too

    head_dim = spec.text_hidden_size // spec.text_heads
    # multimodal RoPE splits the rotary half-dimension into (temporal, height, width) sections
    half = head_dim // 2
    mrope = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=vocab_size, hidden_size=spec.text_hidden_size, intermediate_size=spec.text_intermediate_size,
            num_hidden_layers=spec.text_layers, num_attention_heads=spec.text_heads,
            num_key_value_heads=spec.text_kv_heads, max_position_embeddings=spec.max_position_embeddings,
            rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": mrope},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
            tie_word_embeddings=False,
        ),
        vision_config=dict(
            depth=spec.vision_depth, hidden_size=spec.vision_hidden_size, num_heads=spec.vision_heads,
            intermediate_size=spec.vision_intermediate_size, out_hidden_size=spec.text_hidden_size,
            patch_size=spec.patch_size, spatial_merge_size=spec.merge_size,
            temporal_patch_size=spec.temporal_patch_size, window_size=112,
            fullatt_block_indexes=[spec.vision_depth - 1],
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(spec.seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        do_sample=False, eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"],
    )
    model.save_pretrained(out, safe_serialization=True)

    factor = spec.patch_size * spec.merge_size
    pixel_kwargs = dict(patch_size=spec.patch_size, temporal_patch_size=spec.temporal_patch_size,
                        merge_size=spec.merge_size)
    image_processor = Qwen2VLImageProcessor(min_pixels=spec.min_pixels, max_pixels=spec.max_pixels, **pixel_kwargs)
    video_processor = Qwen2VLVideoProcessor(
        size={"shortest_edge": 4 * factor * factor, "longest_edge": spec.max_pixels}, **pixel_kwargs,
    )
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
        chat_template=QWEN2_5_VL_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
    (out / "rscovlm_tiny.json").write_text(json.dumps(asdict(spec), indent=2) + "\n")
    return out
