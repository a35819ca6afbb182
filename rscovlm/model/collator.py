"""Conversations -> model tensors with labels on the assistant turns only.

Input format (OpenAI ``messages``)::

    {"messages": [
        {"role": "system", "content": "..."},                                   # optional
        {"role": "user", "content": [{"type": "image", "image": "a.png"},      # path or PIL.Image
                                     {"type": "text", "text": "Detect all planes."}]},
        {"role": "assistant", "content": "plane: ..."},                         # str or [{"type": "text", ...}]
        ... more turns; the zoom-in chain has two user images and two assistant turns
    ]}

A bare list of messages is accepted as well.

How the labels are found
------------------------
Nothing about the chat format is hard-coded. For every assistant message ``i`` the processor's own chat template
renders the conversation up to ``i`` with the generation prompt (``P_i``, exactly the prompt the model gets at
inference) and the conversation including ``i`` (``Q_i``). ``Q_i`` must extend ``P_i``; the label span is
``Q_i[len(P_i):]`` without its trailing whitespace, i.e. the assistant content plus the template's end-of-turn
marker (``<|im_end|>`` for Qwen). Segments are tokenized separately, so prompt tokens are the same as at
inference time.

Images
------
Each image is resized to the ``resized_width`` x ``resized_height`` of its part when given (what the sample
builder writes after its random resize; sides must be multiples of ``patch * merge``), else by the
:class:`~rscovlm.resolution.ResolutionPolicy` (``smart_resize``: sides multiples of ``patch * merge``, pixels
within ``[min_pixels, max_pixels]``), *before* the image processor, which then runs
with ``do_resize=False``: the size in :attr:`EncodedSample.plans` is the model frame the vision tower sees,
``grid_h * patch`` by ``grid_w * patch`` pixels, and the number of ``<|image_pad|>`` tokens per image is
``grid_t * grid_h * grid_w / merge**2``. An image that the sample builder already resized to a valid model size
passes through unchanged.

Length limit
------------
Sequences longer than ``max_length`` (paper: 6144) are truncated at the end. A sample whose cut would fall
inside an image's tokens (or that would keep no supervised token) cannot be trained on: it raises
:class:`SampleDropped`, which :class:`EncodedDataset` counts and reports.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IGNORE_INDEX = -100


_WORKER_TRACEBACK = re.compile(r"^(?:[\w.]+\.)?(?:SampleError|SampleDropped): ", re.M)


def _unwrap_worker_message(message: str) -> str:
    """The original message of an error a DataLoader worker re-raises in the main process (torch passes
    ``"Caught SampleError in DataLoader worker process N.\nOriginal Traceback ..."`` as the message): the text
    after the traceback's last ``SampleError: `` line; any other message unchanged."""
    if not message.startswith("Caught ") or "Original Traceback" not in message:
        return message
    matches = list(_WORKER_TRACEBACK.finditer(message))
    return message[matches[-1].end():].strip() if matches else message


class SampleError(ValueError):
    """A training sample that cannot be used; the message names the sample (its index in the dataset, the record's
    ``file:line`` when known) and, for an image, the file. Raised again from a DataLoader worker it keeps just that
    message (not the worker's traceback)."""

    def __init__(self, message: str = ""):
        super().__init__(_unwrap_worker_message(message))


class SampleDropped(SampleError):
    """A sample that cannot be encoded within the limits; ``reason`` is a short key used in the counts.
    (Constructible from one message too, which is how dataloader workers re-raise it in the main process.)"""

    def __init__(self, reason: str, detail: str | None = None):
        if detail is None:
            reason = _unwrap_worker_message(reason)
            super().__init__(reason)
            self.reason = reason.split(":", 1)[0]
        else:
            super().__init__(f"{reason}: {detail}")
            self.reason = reason


@dataclass
class EncodedSample:
    """One encoded conversation; token tensors are 1-D, ``pixel_values`` is ``(patches, C*T*P*P)``."""

    input_ids: Any
    labels: Any
    mm_token_type_ids: Any
    pixel_values: Any | None
    image_grid_thw: Any | None
    plans: list = field(default_factory=list)
    truncated: bool = False

    def as_dict(self) -> dict:
        return {"input_ids": self.input_ids, "labels": self.labels, "mm_token_type_ids": self.mm_token_type_ids,
                "pixel_values": self.pixel_values, "image_grid_thw": self.image_grid_thw}


def conversation_messages(sample: Any) -> list[dict]:
    """The message list of ``sample`` (a ``{"messages": [...]}`` dict or a list), validated."""
    messages = sample.get("messages") if isinstance(sample, dict) else sample
    if not isinstance(messages, list) or not messages:
        raise ValueError("a conversation needs a non-empty 'messages' list")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise ValueError(f"message {i}: needs role system/user/assistant, got {message!r:.120}")
        content = message.get("content")
        if not isinstance(content, (str, list)):
            raise ValueError(f"message {i}: content must be a string or a list of parts")
        if isinstance(content, list):
            for j, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind not in ("text", "image"):
                    raise ValueError(f"message {i} part {j}: type must be 'text' or 'image', got {kind!r}")
                if kind == "image" and "image" not in part:
                    raise ValueError(f"message {i} part {j}: an image part needs an 'image' (path or PIL image)")
                if kind == "text" and not isinstance(part.get("text"), str):
                    raise ValueError(f"message {i} part {j}: a text part needs a 'text' string")
                if kind == "image" and message["role"] == "assistant":
                    raise ValueError(f"message {i}: assistant messages cannot hold images")
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("a training conversation needs at least one assistant message")
    return messages


def _open_image(value):
    """An RGB image from a PIL image or a file, through the one reader (:func:`rscovlm.imageio.as_rgb`: EXIF
    orientation, modes, 16-bit data; a missing, truncated or damaged file raises
    :class:`~rscovlm.imageio.ImageReadError` naming it)."""
    from rscovlm.imageio import as_rgb

    return as_rgb(value)


class ConversationEncoder:
    """Encode one conversation (see the module docstring) with ``processor`` (a Qwen-VL ``AutoProcessor``).

    ``policy`` is the :class:`~rscovlm.resolution.ResolutionPolicy`; by default the processor's own pixel
    bounds with the family's side factor.
    """

    def __init__(self, processor, policy=None, max_length: int = 6144):
        from rscovlm.resolution import ResolutionPolicy

        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_processor = processor.image_processor
        self.image_token = processor.image_token
        self.image_token_id = processor.image_token_id
        ip = self.image_processor
        self.merge_size = int(ip.merge_size)
        self.patch_size = int(ip.patch_size)
        if policy is None:
            size = dict(ip.size)
            policy = ResolutionPolicy(min_pixels=size["shortest_edge"], max_pixels=size["longest_edge"],
                                      factor=self.patch_size * self.merge_size)
        if policy.factor != self.patch_size * self.merge_size:
            raise ValueError(f"resolution policy factor {policy.factor} != patch {self.patch_size} x merge "
                             f"{self.merge_size} of the processor")
        self.policy = policy
        if max_length < 1:
            raise ValueError(f"max_length must be positive, got {max_length}")
        self.max_length = max_length

    # ---- text -----------------------------------------------------------------------------------------------
    def render(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        return self.processor.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def segments(self, messages: list[dict]) -> list[tuple[str, bool]]:
        """The rendered conversation cut into ``(text, is_label)`` pieces (placeholders not yet expanded)."""
        full = self.render(messages)
        spans = []
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prompt = self.render(messages[:i], add_generation_prompt=True)
            with_turn = self.render(messages[: i + 1])
            if not with_turn.startswith(prompt) or not full.startswith(with_turn):
                raise ValueError("the chat template is not prefix-stable: rendering up to assistant message "
                                 f"{i} with the generation prompt is not a prefix of the full rendering")
            turn = with_turn[len(prompt):].rstrip()
            spans.append((len(prompt), len(prompt) + len(turn)))
        pieces, cursor = [], 0
        for start, end in spans:
            if start < cursor:
                raise ValueError("assistant spans overlap; the chat template renders turns out of order")
            if start > cursor:
                pieces.append((full[cursor:start], False))
            pieces.append((full[start:end], True))
            cursor = end
        if cursor < len(full):
            pieces.append((full[cursor:], False))
        return pieces

    # ---- images ---------------------------------------------------------------------------------------------
    def images(self, messages: list[dict]):
        """Open and resize the images of ``messages`` in order; returns ``(images, plans)``."""
        from PIL import Image

        images, plans = [], []
        for message in messages:
            if isinstance(message["content"], str):
                continue
            for part in message["content"]:
                if part.get("type") != "image":
                    continue
                img = _open_image(part["image"])
                plan = self._plan(part, img.size)
                if plan.model_size != img.size:
                    img = img.resize(plan.model_size, Image.Resampling.BICUBIC)
                images.append(img)
                plans.append(plan)
        return images, plans

    def _plan(self, part: dict, size: tuple[int, int]):
        """The resize of one image part: the sample builder's ``resized_width``/``resized_height`` (qwen-vl-utils
        keys) when given, else the policy's deterministic plan."""
        from rscovlm.geometry.boxes import Frame
        from rscovlm.resolution import ResizePlan

        if "resized_width" not in part and "resized_height" not in part:
            return self.policy.plan(*size)
        try:
            w, h = int(part["resized_width"]), int(part["resized_height"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"image part {part.get('image')!r}: resized_width and resized_height must both be "
                             "integers") from None
        factor = self.policy.factor
        if w <= 0 or h <= 0 or w % factor or h % factor:
            raise ValueError(f"image part {part.get('image')!r}: resized size {w}x{h} is not a positive multiple "
                             f"of {factor} (patch {self.patch_size} x merge {self.merge_size})")
        return ResizePlan(Frame.original(*size), Frame.model(w, h))

    # ---- everything -----------------------------------------------------------------------------------------
    def _token_ids(self, pieces: list[tuple[str, bool]], counts: list[int]) -> tuple[list[int], list[int]]:
        """Token ids and labels of the rendered ``pieces`` with ``counts[i]`` pad tokens for image ``i``."""
        texts, is_label = [], []
        image_iter = iter(counts)
        for text, label in pieces:
            if not label and self.image_token in text:
                parts = text.split(self.image_token)
                text = parts[0] + "".join(self.image_token * next(image_iter) + rest for rest in parts[1:])
            texts.append(text)
            is_label.append(label)
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        ids: list[int] = []
        labels: list[int] = []
        for piece_ids, label in zip(encoded, is_label):
            ids.extend(piece_ids)
            labels.extend(piece_ids if label else [IGNORE_INDEX] * len(piece_ids))
        return ids, labels

    def _fit(self, ids: list[int], labels: list[int], has_images: bool) -> tuple[list[int], list[int], bool]:
        """Apply ``max_length``: truncate, or raise :class:`SampleDropped` (an image cut, no label left)."""
        truncated = False
        if len(ids) > self.max_length:
            if has_images:
                last_image_token = max(i for i, t in enumerate(ids) if t == self.image_token_id)
                # the image span closes with the vision-end token right after its last placeholder
                if last_image_token + 1 >= self.max_length:
                    raise SampleDropped("image_cut", f"{len(ids)} tokens, an image ends at token "
                                                     f"{last_image_token + 1} > max_length {self.max_length}")
            ids, labels = ids[: self.max_length], labels[: self.max_length]
            truncated = True
        if all(v == IGNORE_INDEX for v in labels):
            raise SampleDropped("no_target", f"no assistant token left within max_length {self.max_length}")
        return ids, labels, truncated

    def _check_placeholders(self, pieces, n_images: int) -> None:
        n_placeholders = sum(text.count(self.image_token) for text, _ in pieces)
        if n_placeholders != n_images:
            raise ValueError(f"the rendered conversation holds {n_placeholders} image placeholders for "
                             f"{n_images} images")

    def encode(self, sample: Any) -> EncodedSample:
        """Encode one conversation; raises :class:`SampleDropped` when it cannot fit ``max_length``."""
        import torch

        messages = conversation_messages(sample)
        pieces = self.segments(messages)
        images, plans = self.images(messages)
        self._check_placeholders(pieces, len(images))
        pixel_values = grid = None
        counts: list[int] = []
        if images:
            vision = self.image_processor(images=images, do_resize=False, return_tensors="pt")
            pixel_values, grid = vision["pixel_values"], vision["image_grid_thw"]
            for (t, h, w), plan in zip(grid.tolist(), plans):
                if (w * self.patch_size, h * self.patch_size) != plan.model_size:
                    raise AssertionError(f"vision grid {w}x{h} patches does not match model size {plan.model_size}")
                counts.append(t * h * w // self.merge_size**2)
        ids, labels = self._token_ids(pieces, counts)
        ids, labels, truncated = self._fit(ids, labels, bool(images))
        mm_types = self.processor.create_mm_token_type_ids([ids])[0]
        return EncodedSample(
            input_ids=torch.tensor(ids, dtype=torch.long), labels=torch.tensor(labels, dtype=torch.long),
            mm_token_type_ids=torch.tensor(mm_types, dtype=torch.long), pixel_values=pixel_values,
            image_grid_thw=grid, plans=plans, truncated=truncated,
        )

    def image_tokens(self, model_size: tuple[int, int]) -> int:
        """``<|image_pad|>`` tokens of one image at ``model_size`` (the processor's rule: a still image is one
        temporal patch, ``(h / patch) * (w / patch)`` patches, ``merge**2`` patches per token)."""
        w, h = model_size
        return (w // self.patch_size) * (h // self.patch_size) // self.merge_size**2

    def length(self, sample: Any) -> int:
        """The number of tokens :meth:`encode` gives ``sample``, without decoding any image (image sizes from the
        parts' ``resized_width`` / ``resized_height``, a PIL image's size or the file's header); raises
        :class:`SampleDropped` exactly when :meth:`encode` would."""
        from rscovlm.imageio import image_size

        messages = conversation_messages(sample)
        pieces = self.segments(messages)
        counts = []
        for message in messages:
            if isinstance(message["content"], str):
                continue
            for part in message["content"]:
                if part.get("type") != "image":
                    continue
                value = part["image"]
                if "resized_width" in part or "resized_height" in part:
                    size = (1, 1)  # the plan is the part's own size; the original size does not matter
                elif isinstance(value, (str, Path)):
                    size = image_size(value)
                else:
                    size = value.size
                counts.append(self.image_tokens(self._plan(part, size).model_size))
        self._check_placeholders(pieces, len(counts))
        ids, labels = self._token_ids(pieces, counts)
        ids, _, _ = self._fit(ids, labels, bool(counts))
        return len(ids)

    def encode_prompts(self, conversations: list[list[dict]]):
        """Inference inputs for a batch of conversations that end with a user turn: each rendered with the
        generation prompt, images resized exactly as in training, left-padded (generation appends on the right).
        Returns ``(inputs, plans)``: the processor's ``BatchFeature`` and one list of
        :class:`~rscovlm.resolution.ResizePlan` per conversation."""
        texts, images, plans = [], [], []
        for messages in conversations:
            texts.append(self.render(messages, add_generation_prompt=True))
            imgs, conv_plans = self.images(messages)
            images.extend(imgs)
            plans.append(conv_plans)
        side, self.tokenizer.padding_side = self.tokenizer.padding_side, "left"
        try:
            inputs = self.processor(text=texts, images=images or None, do_resize=False, padding=True,
                                    return_tensors="pt")
        finally:
            self.tokenizer.padding_side = side
        return inputs, plans


class Collator:
    """Pad a list of encoded samples (dicts from :meth:`EncodedSample.as_dict`) into a batch, or pack rows of them.

    Right padding with the tokenizer's pad id; labels padded with ``-100``; pixel values of all images are
    concatenated in order (the Qwen-VL layout). Keys other than the model inputs are summed into
    ``rscovlm_dropped`` (dropped-sample counts travelling from the dataset workers to the trainer).

    Packing (``packing=True``): the features are *rows*, each a list of encoded samples placed one after the
    other. The batch has no ``attention_mask``; ``packed_samples`` lists, per row, ``[tokens, images]`` of each
    sample, from which :func:`packed_position_ids` makes the per-sample position ids the model needs to keep
    attention inside each sample. The first label of every sample is ``-100`` (it is never a target unpacked
    either: nothing precedes it; packed, the previous sample's last token would otherwise predict it), other labels
    are unchanged. ``flatten=True`` puts all rows of the batch into one row of batch size 1 (flash-attention's
    variable-length path needs that); otherwise rows are right-padded to the longest, the padding being one more
    sequence of its own.
    """

    def __init__(self, pad_token_id: int, packing: bool = False, flatten: bool = False):
        self.pad_token_id = pad_token_id
        self.packing = packing
        self.flatten = flatten

    def __call__(self, features: list) -> dict:
        if not features:
            raise ValueError("cannot collate an empty batch")
        if self.packing:
            return self._pack(features)
        return self._pad(features)

    def _pad(self, features: list[dict]) -> dict:
        import torch

        length = max(len(f["input_ids"]) for f in features)
        n = len(features)
        input_ids = torch.full((n, length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((n, length), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((n, length), dtype=torch.long)
        mm_types = torch.zeros((n, length), dtype=torch.long)
        for i, f in enumerate(features):
            k = len(f["input_ids"])
            input_ids[i, :k] = f["input_ids"]
            labels[i, :k] = f["labels"]
            attention[i, :k] = 1
            mm_types[i, :k] = f["mm_token_type_ids"]
        batch = {"input_ids": input_ids, "attention_mask": attention, "labels": labels,
                 "mm_token_type_ids": mm_types}
        self._add_vision(batch, features)
        self._add_dropped(batch, features)
        return batch

    def _pack(self, rows: list[list[dict]]) -> dict:
        import torch

        if self.flatten:
            rows = [[f for row in rows for f in row]]
        if any(not row for row in rows):
            raise ValueError("cannot pack an empty row")
        lengths = [sum(len(f["input_ids"]) for f in row) for row in rows]
        length = max(lengths)
        n = len(rows)
        input_ids = torch.full((n, length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((n, length), IGNORE_INDEX, dtype=torch.long)
        mm_types = torch.zeros((n, length), dtype=torch.long)
        packed = []
        for i, row in enumerate(rows):
            cursor, layout = 0, []
            for f in row:
                k = len(f["input_ids"])
                input_ids[i, cursor:cursor + k] = f["input_ids"]
                labels[i, cursor:cursor + k] = f["labels"]
                labels[i, cursor] = IGNORE_INDEX
                mm_types[i, cursor:cursor + k] = f["mm_token_type_ids"]
                grid = f.get("image_grid_thw")
                layout.append([k, 0 if grid is None else int(grid.shape[0])])
                cursor += k
            packed.append(layout)
        features = [f for row in rows for f in row]
        batch = {"input_ids": input_ids, "labels": labels, "mm_token_type_ids": mm_types,
                 "packed_samples": packed}
        self._add_vision(batch, features)
        self._add_dropped(batch, features)
        return batch

    @staticmethod
    def _add_vision(batch: dict, features: list[dict]) -> None:
        import torch

        pixels = [f["pixel_values"] for f in features if f.get("pixel_values") is not None]
        if pixels:
            batch["pixel_values"] = torch.cat(pixels, dim=0)
            batch["image_grid_thw"] = torch.cat([f["image_grid_thw"] for f in features
                                                 if f.get("image_grid_thw") is not None], dim=0)

    @staticmethod
    def _add_dropped(batch: dict, features: list[dict]) -> None:
        dropped = Counter()
        for f in features:
            dropped.update(f.get("dropped") or {})
        if dropped:
            batch["rscovlm_dropped"] = dict(dropped)


def rope_index_function(model):
    """The ``get_rope_index`` of ``model`` or of the first submodule that has one (through DeepSpeed / DDP / PEFT
    wrappers): the model's own rule for its multimodal rotary position ids."""
    for module in model.modules():
        if callable(getattr(module, "get_rope_index", None)):
            return module.get_rope_index
    raise TypeError(f"{type(model).__name__} has no get_rope_index: packing needs a Qwen-VL model")


def packed_position_ids(model, batch: dict, rope_index=None):
    """Position ids of a packed batch (:class:`Collator` with ``packing=True``): shape ``(4, rows, length)``,
    row 0 the text positions (``0, 1, ...`` restarting at every sample and at the padding) that tell the
    attention where a sample starts - the block-diagonal mask of SDPA / eager, the cumulative lengths of
    flash-attention's variable-length kernel, both built by ``transformers`` from these positions when no
    ``attention_mask`` is given - and rows 1-3 the model's 3-D rotary positions (``get_rope_index``) of each
    sample computed on its own, as if it were alone in the batch."""
    import torch

    rope_index = rope_index or rope_index_function(model)
    input_ids, mm_types = batch["input_ids"], batch["mm_token_type_ids"]
    grids = batch.get("image_grid_thw")
    n_rows, length = input_ids.shape
    positions = torch.zeros((4, n_rows, length), dtype=torch.long, device=input_ids.device)
    image = 0
    for i, layout in enumerate(batch["packed_samples"]):
        cursor = 0
        for tokens, n_images in layout:
            span = slice(cursor, cursor + tokens)
            positions[0, i, span] = torch.arange(tokens, device=input_ids.device)
            if n_images:
                rope, _ = rope_index(input_ids[i:i + 1, span], mm_token_type_ids=mm_types[i:i + 1, span],
                                     image_grid_thw=grids[image:image + n_images])
                positions[1:, i, span] = rope[:, 0]
                image += n_images
            else:
                positions[1:, i, span] = positions[0, i, span]
            cursor += tokens
        if cursor < length:  # padding: a sequence of its own
            positions[:, i, cursor:] = torch.arange(length - cursor, device=input_ids.device)
    return positions


def packed_model_inputs(model, batch: dict, rope_index=None) -> dict:
    """The model's keyword arguments for a packed batch: ``batch`` without ``packed_samples``, with
    :func:`packed_position_ids` and ``use_cache=False`` (other batches are returned unchanged). ``transformers``
    reads packed sequences from the positions only without a cache: a forward that makes a ``DynamicCache``
    (``use_cache`` on, the config's default) would attend across the samples."""
    if "packed_samples" not in batch:
        return batch
    inputs = {k: v for k, v in batch.items() if k != "packed_samples"}
    inputs["position_ids"] = packed_position_ids(model, batch, rope_index)
    inputs["use_cache"] = False
    return inputs


class EncodedDataset:
    """A torch-style map dataset of encoded samples over any dataset of conversations.

    A sample that raises :class:`SampleDropped` is counted and replaced by the next index that encodes (wrapping
    around); the returned item carries ``dropped={reason: 1}`` for the requested index so the counts reach the
    trainer even from dataloader worker processes (one count per requested index: an epoch counts each
    dropped sample once). With ``drop=False`` the error propagates instead (naming the index). Any other
    problem of a sample (missing, truncated or damaged image, bad resized size, ...) raises :class:`SampleError`
    naming its index, its record's ``file:line`` when the conversations have ``where(index)``, and the file.

    Keys are indices, or ``(epoch, position)`` for conversations that take them (the mixture); a replacement keeps
    the epoch. Every item carries ``sample_id``: the conversation's ``meta.id`` when it has one, else its key.
    """

    def __init__(self, conversations, encoder: ConversationEncoder, drop: bool = True):
        self.conversations = conversations
        self.encoder = encoder
        self.drop = drop

    def __len__(self) -> int:
        return len(self.conversations)

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to datasets that draw per-epoch samples (the curation mixture)."""
        if hasattr(self.conversations, "set_epoch"):
            self.conversations.set_epoch(epoch)

    def describe(self, index) -> str:
        """``sample <index>``, with the record's location when the conversations know it (``where``)."""
        where = getattr(self.conversations, "where", None)
        try:
            return f"sample {index} ({where(index)})" if callable(where) else f"sample {index}"
        except (IndexError, KeyError, TypeError, ValueError):
            return f"sample {index}"

    @staticmethod
    def _shift(index, step: int, n: int):
        if isinstance(index, (tuple, list)):
            return (index[0], (int(index[1]) + step) % n)
        return (index + step) % n

    @staticmethod
    def _sample_id(conversation, key):
        meta = conversation.get("meta") if isinstance(conversation, dict) else None
        value = meta.get("id") if isinstance(meta, dict) else None
        return value if value is not None else (list(key) if isinstance(key, tuple) else key)

    def _encode(self, key) -> dict:
        conversation = self.conversations[key]
        item = self.encoder.encode(conversation).as_dict()
        item["sample_id"] = self._sample_id(conversation, key)
        return item

    def __getitem__(self, index) -> dict:
        dropped: Counter = Counter()
        n = len(self)
        for step in range(n):
            i = self._shift(index, step, n)
            try:
                item = self._encode(i)
            except SampleDropped as err:
                if not self.drop:
                    raise SampleDropped(err.reason, f"{self.describe(i)}: {err}") from err
                if step == 0:  # a replacement that fails too is counted when its own index is requested
                    dropped[err.reason] += 1
                continue
            except SampleError:
                raise
            except (ValueError, OSError, TypeError) as err:  # ImageReadError (a ValueError) names the file
                raise SampleError(f"{self.describe(i)}: {err}") from err
            item["dropped"] = dict(dropped)
            return item
        raise SampleError(f"every one of the {n} samples was dropped (sample {index}: {dict(dropped)}); raise "
                          "data.max_length or use smaller images")

    def encode_exact(self, key) -> dict:
        """The encoded sample at ``key`` itself (no replacement; packed rows hold samples whose lengths were
        counted): a sample that does not encode raises :class:`SampleError` naming it."""
        try:
            return self._encode(key)
        except SampleError as err:
            raise SampleError(f"{self.describe(key)}: {err}") from err
        except (ValueError, OSError, TypeError) as err:
            raise SampleError(f"{self.describe(key)}: {err}") from err

    def length(self, key) -> int:
        """Token count of the sample at ``key`` (:meth:`ConversationEncoder.length`; conversations that can build a
        sample without its decoded images - the mixture's ``build(key, load_images=False)`` - do). Raises
        :class:`SampleDropped` for a sample that cannot be trained on and :class:`SampleError` for a broken one."""
        build = getattr(self.conversations, "build", None)
        try:
            conversation = build(key, load_images=False) if callable(build) else self.conversations[key]
            return self.encoder.length(conversation)
        except SampleError:
            raise
        except (ValueError, OSError, TypeError) as err:
            raise SampleError(f"{self.describe(key)}: {err}") from err
