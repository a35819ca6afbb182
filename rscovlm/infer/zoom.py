"""The Zoom-in Chain (paper 3.4) for ultra-high-resolution images, cropping the full-resolution ORIGINAL.

Per question (:class:`~rscovlm.infer.runners.Query` with ``text`` and optional ``category``):

1. **Pass 1** - the whole image, downsampled to the pass-1 budget (``min_pixels``..``max_pixels``; read in
   bounded memory by :class:`rscovlm.imageio.ImageSource`, never decoded whole), with the prompt set's zoom
   system prompt (tool schema) and ``{question}\\nZoom in to the region of interest and answer the question.``
   (the reference's ``lrsvqa_visual_cot`` prompt). Questions whose ``category`` is in ``skip_categories`` (the
   reference answers ``count`` questions in one pass; default: the benchmark entry's list) get the plain
   prompt and one pass.
2. The answer's tool call is read tolerantly (:func:`rscovlm.protocol.zoom.parse_zoom_call`: with or without
   newlines or the closing tag, decimals, swapped corners sorted). Its box is in the model family's box frame of
   the image the model saw (pixels of the downsampled image for Qwen2.5-VL; the 0-1000 grid for Qwen2-VL /
   Qwen3-VL) and is mapped per axis to the original image, grown by ``margin`` (a share of the box's width and
   height on each side) and clipped to the image.
3. **The crop.** ``crop_source="original"``: the region is read from the full-resolution file by a windowed read
   (tiled/striped TIFF and BigTIFF at random, PNG and JPEG top to bottom; only the region's tiles are decoded).
   With ``snap_crop`` the region is grown, centred and inside the image, to sides that are multiples of the
   model's factor (28) when that fits the crop budget, so pass 2 sees the pixels unresampled (native
   resolution); a larger region is downsampled to ``crop_max_pixels``, a smaller one enlarged to
   ``crop_min_pixels`` as training did. ``crop_source="downsampled"``: the reference's evaluation
   (VisionXLab/RSCoVLM ``eval/inferencer.py``, for parity runs): the box cuts the pass-1 image itself (already
   downsampled), then the crop is resized by the crop budget; the detail the chain exists for is gone.
4. **Pass 2** - the conversation continues: pass 1's answer as the assistant turn, then a user turn with the crop
   and ``Here's the zoomed-in image. You can complete your task now.``; its answer is the result.

No tool call in pass 1 (``status="direct"``): pass 1's answer is the answer, from the whole image (counted). A
call that cannot be used (broken JSON, another tool, a box that is not four numbers or has no area inside the
image; ``status="invalid_call"``): pass 2 gets the whole downsampled image instead of a crop, as the reference
does (counted). A pass-2 answer that calls the tool again zooms again inside the crop while ``max_depth``
allows (a box then refers to the last crop), else it is the answer (``status="depth_limit"``).

Every pass is one batched backend call over all questions still in the chain, so the chain works on every
backend. Each result's ``zoom`` trace records the status, every call (box in the model frame, region in
original pixels, pixels read, model size of the crop, ``native_scale`` = model pixels per original pixel of
the crop: 1.0 = native resolution) and the visual tokens of each pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

from rscovlm.infer.runners import BACKEND_TASK, Query, Result, image_name, strip_think

CROP_SOURCES = ("original", "downsampled")


@dataclass
class ZoomConfig:
    """Options of the Zoom-in Chain (module docstring)."""

    crop_source: Literal["original", "downsampled"] = field(default="original", metadata={
        "help": "original: crop the full-resolution file (windowed read); downsampled: crop the pass-1 image, "
                "the reference's evaluation (parity runs)"})
    margin: float = field(default=0.0, metadata={"help": "grow the box by this share of its width/height on "
                                                         "each side before cropping"})
    max_depth: int = field(default=1, metadata={"help": "zoom rounds at most (1 = the paper's chain)"})
    skip_categories: tuple[str, ...] | None = field(default=None, metadata={
        "help": "question categories answered in one pass without the chain; default: the benchmark's "
                "(lrsvqa: count)"})
    min_pixels: int = field(default=224 * 224, metadata={"help": "pass 1: pixel budget of the whole image"})
    max_pixels: int = field(default=1008 * 1008, metadata={"help": "pass 1: pixel budget of the whole image"})
    crop_min_pixels: int = field(default=224 * 224, metadata={"help": "pass 2: pixel budget of the crop"})
    crop_max_pixels: int = field(default=1008 * 1008, metadata={"help": "pass 2: pixel budget of the crop"})
    snap_crop: bool = field(default=True, metadata={"help": "grow native crops to sides that are multiples of "
                                                            "the factor, so pass 2 sees them unresampled"})
    factor: int = field(default=28, metadata={"help": "side multiple of the model input (patch x merge)"})
    benchmark: str = field(default="lrsvqa", metadata={"help": "benchmark entry of the prompt set (its zoom "
                                                               "form and skip list)"})
    prompt_set: str = field(default="reference", metadata={"help": "prompt set"})
    family: str = field(default="qwen2_5_vl", metadata={"help": "model family (frame of the tool call's box)"})
    max_new_tokens: int | None = field(default=None, metadata={"help": "answer budget of each pass "
                                                                       "(default: the zoom task's)"})

    def __post_init__(self) -> None:
        if self.crop_source not in CROP_SOURCES:
            raise ValueError(f"crop_source must be one of {list(CROP_SOURCES)}, got {self.crop_source!r}")
        if not (math.isfinite(self.margin) and self.margin >= 0) or self.max_depth < 1:
            raise ValueError(f"need margin >= 0 and max_depth >= 1, got {self.margin}, {self.max_depth}")
        if self.skip_categories is not None:
            self.skip_categories = tuple(self.skip_categories)


@dataclass
class _View:
    """An image the model saw: its region of the original (floats, x0 y0 x1 y1) and the picture at model size."""

    region: tuple[float, float, float, float]
    image: object  # PIL image at the model size
    source: str


@dataclass
class _Item:
    index: int
    query: Query
    messages: list
    view: _View
    source: object = None  # ImageSource of a file, or an in-memory picture with crop()
    generations: list = field(default_factory=list)
    calls: list = field(default_factory=list)
    status: str = "zoomed"


@dataclass
class ZoomReport:
    """Counts over one run: questions, answered after a zoom, answered directly in pass 1 (no tool call),
    invalid tool calls (pass 2 saw the whole image), skipped by category (one pass), stopped by the depth
    limit, answers cut by the budget."""

    questions: int = 0
    zoomed: int = 0
    direct: int = 0
    invalid_call: int = 0
    skipped: int = 0
    depth_limit: int = 0
    truncated: int = 0

    def summary(self) -> str:
        return (f"{self.questions} questions: {self.zoomed} zoomed, {self.direct} answered without a tool call, "
                f"{self.invalid_call} invalid tool calls (whole image in pass 2), {self.skipped} skipped by "
                f"category, {self.depth_limit} stopped at the depth limit, {self.truncated} truncated answers")


class ZoomChain:
    """The chain on ``backend`` (any registered backend) with ``config``; files are opened with
    ``read_options`` (:class:`rscovlm.imageio.ReadOptions`)."""

    def __init__(self, backend, config: ZoomConfig | None = None, read_options=None):
        from rscovlm.model.families import family_for
        from rscovlm.protocol.prompt_sets import get_prompt_set
        from rscovlm.resolution import ResolutionPolicy

        self.backend = backend
        self.read_options = read_options
        self.config = c = config or ZoomConfig()
        self.prompt_set = get_prompt_set(c.prompt_set)
        self.family = family_for(c.family)
        entry = self.prompt_set.benchmark(c.benchmark)[0]
        if entry.zoom is None:
            raise ValueError(f"benchmark {c.benchmark!r} of prompt set {self.prompt_set.name!r} has no zoom form")
        self.zoom_form = entry.zoom
        self.skip = tuple(c.skip_categories if c.skip_categories is not None else entry.zoom_skip_categories)
        self.whole_policy = ResolutionPolicy(min_pixels=c.min_pixels, max_pixels=c.max_pixels, factor=c.factor,
                                             uhr_min_pixels=max(c.max_pixels, 4 * 1008 * 1008))
        self.crop_policy = ResolutionPolicy(min_pixels=c.crop_min_pixels, max_pixels=c.crop_max_pixels,
                                            factor=c.factor, uhr_min_pixels=max(c.crop_max_pixels, 4 * 1008 * 1008))
        self.report = ZoomReport()

    # ---- geometry ---------------------------------------------------------------------------------------------
    def _box_to_region(self, bbox, view: _View, size: tuple[int, int]) -> tuple[float, float, float, float] | None:
        """A tool-call box (box frame of ``view``'s picture) -> the region of the original it names (sorted,
        grown by the margin, clipped to the image and to the view); None when nothing of it is left."""
        mw, mh = view.image.size
        frame = self.family.box_frame_for(mw, mh)
        x0, y0, x1, y1 = bbox
        x0, x1 = sorted((x0, x1))
        y0, y1 = sorted((y0, y1))
        rx0, ry0, rx1, ry1 = view.region
        x0, x1 = (rx0 + v * (rx1 - rx0) / frame.width for v in (x0, x1))  # multiply first: exact for integers
        y0, y1 = (ry0 + v * (ry1 - ry0) / frame.height for v in (y0, y1))
        m = self.config.margin
        x0, x1 = x0 - m * (x1 - x0), x1 + m * (x1 - x0)
        y0, y1 = y0 - m * (y1 - y0), y1 + m * (y1 - y0)
        x0, y0 = max(x0, rx0, 0.0), max(y0, ry0, 0.0)
        x1, y1 = min(x1, rx1, float(size[0])), min(y1, ry1, float(size[1]))
        if x1 - x0 < 1 or y1 - y0 < 1:
            return None
        return x0, y0, x1, y1

    def _snap(self, region: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
        """Grow an integer region to sides that are multiples of the factor (centred, kept inside the image)
        when the grown region fits the crop budget; else unchanged."""
        f = self.config.factor
        x0, y0, x1, y1 = region
        w, h = x1 - x0, y1 - y0
        gw, gh = max(f, -(-w // f) * f), max(f, -(-h // f) * f)
        if gw > size[0] or gh > size[1] or not (self.config.crop_min_pixels <= gw * gh <= self.config.crop_max_pixels):
            return region
        nx0 = min(max(0, x0 - (gw - w) // 2), size[0] - gw)
        ny0 = min(max(0, y0 - (gh - h) // 2), size[1] - gh)
        return nx0, ny0, nx0 + gw, ny0 + gh

    def _crop(self, source, view: _View, region, size) -> tuple[_View, dict]:
        """The next view for ``region`` (original coordinates, floats) and its trace entry."""
        from rscovlm.imageio import resize_to

        c = self.config
        if c.crop_source == "original":
            ix0, iy0 = int(math.floor(region[0])), int(math.floor(region[1]))
            ix1, iy1 = int(math.ceil(region[2])), int(math.ceil(region[3]))
            if c.snap_crop:
                ix0, iy0, ix1, iy1 = self._snap((ix0, iy0, ix1, iy1), size)
            picture = source.crop(ix0, iy0, ix1, iy1)
            read = (ix1 - ix0, iy1 - iy0)
            region = (float(ix0), float(iy0), float(ix1), float(iy1))
        else:  # the reference: cut the picture the model saw (already downsampled)
            rx0, ry0, rx1, ry1 = view.region
            mw, mh = view.image.size
            px = lambda v, lo, span, m: round((v - lo) / span * m)  # noqa: E731
            box = (px(region[0], rx0, rx1 - rx0, mw), px(region[1], ry0, ry1 - ry0, mh),
                   px(region[2], rx0, rx1 - rx0, mw), px(region[3], ry0, ry1 - ry0, mh))
            if box[2] <= box[0] or box[3] <= box[1]:
                box = (box[0], box[1], max(box[2], box[0] + 1), max(box[3], box[1] + 1))
            picture = view.image.crop(box)
            read = picture.size
        model_size = self.crop_policy.plan(*picture.size).model_size
        picture = resize_to(picture, model_size)
        entry = {"region": [round(v, 3) for v in region], "read_size": list(read), "model_size": list(model_size),
                 "native_scale": round(model_size[0] / max(region[2] - region[0], 1e-9), 6),
                 "source": c.crop_source}
        return _View(region, picture, c.crop_source), entry

    # ---- the chain --------------------------------------------------------------------------------------------
    def run(self, queries: Sequence[Query], progress=None) -> list[Result]:
        """Answer every query (see the module docstring); ``progress`` advances once per question answered."""
        from rscovlm.imageio import ImageSource, as_rgb, resize_to

        c = self.config
        sources: dict[str, ImageSource] = {}
        pictures: dict[str, object] = {}  # the pass-1 picture of each file (one read per file)
        results: list[Result | None] = [None] * len(queries)
        try:
            items: list[_Item] = []
            sizes: list[tuple[int, int]] = []
            for i, q in enumerate(queries):
                if isinstance(q.image, (str, bytes)) or hasattr(q.image, "__fspath__"):
                    key = str(q.image)
                    if key not in sources:
                        sources[key] = ImageSource(q.image, self.read_options)
                    src = sources[key]
                    size = src.size
                    whole_size = self.whole_policy.plan(*size).model_size
                    if key not in pictures:
                        pictures[key] = src.resized(whole_size)
                    picture = pictures[key]
                else:
                    picture0 = as_rgb(q.image)
                    src = _Memory(picture0)
                    size = picture0.size
                    whole_size = self.whole_policy.plan(*size).model_size
                    picture = resize_to(picture0, whole_size)
                sizes.append(size)
                skip = q.category is not None and q.category in self.skip
                prompt = self.prompt_set.eval_prompt(c.benchmark, form="plain" if skip else self.zoom_form,
                                                     category=q.category, question=q.text)
                part = {"type": "image", "image": picture, "resized_width": whole_size[0],
                        "resized_height": whole_size[1]}
                item = _Item(i, q, prompt.messages(part), _View((0.0, 0.0, float(size[0]), float(size[1])),
                                                               picture, "whole"), src)
                if skip:
                    item.status = "skipped"
                items.append(item)
            active = list(items)
            depth = 0
            task = BACKEND_TASK["zoom-vqa"]
            while active:
                gens = self.backend.generate_results([it.messages for it in active], c.max_new_tokens, None, task)
                next_round = []
                for it, gen in zip(active, gens):
                    it.generations.append(gen)
                    if it.status == "skipped" or not self._continue(it, gen, depth, sizes[it.index]):
                        self._finish(it, sizes[it.index], results)
                        if progress is not None:
                            progress.update(1)
                    else:
                        next_round.append(it)
                active = next_round
                depth += 1
        finally:
            for src in sources.values():
                src.close()
        self.report.questions += len(queries)
        return results

    def _continue(self, it: _Item, gen, depth: int, size) -> bool:
        """Read the answer's tool call; when the chain goes on, append the next turns and return True."""
        from rscovlm.protocol.zoom import parse_zoom_call

        call = parse_zoom_call(gen.text, self.prompt_set.zoom.tool_name)
        if not call.found:
            if depth == 0:
                it.status = "direct"
            return False
        if depth >= self.config.max_depth:
            it.status = "depth_limit"
            return False
        entry = {"bbox": list(call.bbox) if call.bbox else None, "problem": call.problem}
        region = self._box_to_region(call.bbox, it.view, size) if call.bbox is not None else None
        if call.bbox is not None and region is None:
            entry["problem"] = "the box has no area inside the image"
        if region is None:  # the reference's fallback: the whole (downsampled) image instead of a crop
            if depth == 0:
                it.status = "invalid_call"
            view = _View(it.view.region, it.view.image, "whole-image")
            entry.update({"region": [round(v, 3) for v in view.region], "read_size": None,
                          "model_size": list(view.image.size), "native_scale": None, "source": "whole-image"})
        else:
            view, crop = self._crop(it.source, it.view, region, size)
            entry.update(crop)
        it.calls.append(entry)
        it.view = view
        w, h = view.image.size
        z = self.prompt_set.zoom
        it.messages = it.messages + [
            {"role": "assistant", "content": [{"type": "text", "text": gen.text}]},
            {"role": "user", "content": [{"type": "image", "image": view.image, "resized_width": w,
                                          "resized_height": h}, {"type": "text", "text": z.followup}]}]
        return True

    def _finish(self, it: _Item, size, results) -> None:
        r = self.report
        last = it.generations[-1]
        setattr(r, it.status, getattr(r, it.status) + 1)
        r.truncated += int(last.truncated)
        visual = [g.visual_tokens for g in it.generations]
        trace = {"status": it.status, "passes": len(it.generations), "calls": it.calls,
                 "pass_answers": [g.text for g in it.generations[:-1]],
                 "visual_tokens": visual, "image_sizes": [[list(s) for s in g.image_sizes] for g in it.generations]}
        first = it.generations[0].image_sizes
        results[it.index] = Result(it.query.id, "zoom-vqa", image_name(it.query.image), last.text, last, size,
                                   first[0] if first else None, answer=strip_think(last.text), zoom=trace)


class _Memory:
    """The full-resolution picture of a PIL image query."""

    def __init__(self, picture):
        self.picture = picture

    def crop(self, x0: int, y0: int, x1: int, y1: int):
        return self.picture.crop((x0, y0, x1, y1))
