"""Large-image and GeoTIFF detection: split -> batched inference -> parse -> map back -> merge -> outputs.

Per image (any size; read by :class:`rscovlm.imageio.ImageSource`, so a huge file is never decoded whole and a
GeoTIFF's bands, bit depth and nodata become 8-bit RGB by its documented rules):

1. **Split** into ``patch_size`` windows overlapping by ``gap`` (the paper's 512 / 100 by default; the windows of
   :func:`rscovlm.dota.split.sliding_windows`: the DOTA devkit's and mmrotate's), read one row of windows at
   a time (a band of ``patch_size`` rows); window parts outside the image are ``padding_value``.
2. **Resize** each patch to its model size: the resolution policy (a 512 patch -> 504 x 504 within the paper's
   224^2..1008^2), or with ``max_mode`` ("Max Mode") upsampled to the largest size within ``max_pixels``
   (512 -> 1008 x 1008).
3. **Infer** in batches of ``batch_patches`` conversations on any backend, with the prompt set's detection
   prompt (reference: the quad plain system prompt and ``find the {categories}.``) and token log-probs when
   ``confidence`` is on.
4. **Parse** each answer (:func:`rscovlm.protocol.detection.parse_detections`, the vocabulary's classes only),
   score each object with its confidence (:mod:`rscovlm.infer.confidence`; objects without one - no log-probs -
   get score 1.0, the reference's constant, and are counted as ``unscored``), map its quad from the model
   frame to patch pixels and shift it by the window's offset.
5. **Merge** the patches with per-class polygon NMS (:func:`rscovlm.dota.merge.nms_per_class`, IoU
   ``nms_iou`` = 0.1 as mmrotate's merge), highest confidence first.

Outputs under ``out``: ``labelTxt/{stem}.txt`` (DOTA quads, difficult 0), ``Task1/Task1_{class}.txt`` (every
class of the vocabulary; score = confidence), with ``geojson`` ``geojson/{stem}.geojson`` (one polygon per
object with label and score; in the raster's CRS when it is georeferenced - the ``crs`` member names it, QGIS
opens it - else in pixel coordinates, x right, y down, noted in the file), with ``overlay``
``overlays/{stem}.png`` (the image downsampled to ``overlay_side`` px with the boxes drawn), and
``detections.jsonl`` (one line per image: counts, size, georeferencing, time).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rscovlm.infer.runners import category_set

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


@dataclass
class DetectConfig:
    """Options of large-image detection (module docstring)."""

    patch_size: int = field(default=512, metadata={"help": "window side in pixels (paper: 512)"})
    gap: int = field(default=100, metadata={"help": "overlap of neighbouring windows (paper: 100)"})
    img_rate_thr: float = field(default=0.6, metadata={"help": "drop windows with at most this share inside the "
                                                               "image (unless none passes), as the DOTA split"})
    padding_value: int = field(default=0, metadata={"help": "pixel value of window parts outside the image"})
    max_mode: bool = field(default=False, metadata={"help": "Max Mode: upsample every patch to the largest size "
                                                            "within max_pixels"})
    min_pixels: int = field(default=224 * 224, metadata={"help": "pixel budget of a patch"})
    max_pixels: int = field(default=1008 * 1008, metadata={"help": "pixel budget of a patch"})
    factor: int = field(default=28, metadata={"help": "side multiple of the model input (patch x merge)"})
    categories: str = field(default="dota-v1.0", metadata={
        "help": "vocabulary: a category set (dota-v1.0, dota-v1.5, dota-v2.0) or comma-separated class names"})
    nms_iou: float = field(default=0.1, metadata={"help": "per-class polygon NMS IoU threshold of the merge"})
    confidence: bool = field(default=True, metadata={"help": "score objects by their token log-probs"})
    batch_patches: int = field(default=32, metadata={"help": "patches per backend call (held in memory at once)"})
    max_new_tokens: int | None = field(default=None, metadata={"help": "answer budget per patch (default: the "
                                                                       "detection task's, 16384)"})
    prompt_set: str = field(default="reference", metadata={"help": "prompt set"})
    family: str = field(default="qwen2_5_vl", metadata={"help": "model family (frame of the answers' boxes)"})
    overlay_side: int = field(default=2048, metadata={"help": "longest side of the overlay PNG"})

    def __post_init__(self) -> None:
        if not (0 <= self.gap < self.patch_size) or self.batch_patches < 1:
            raise ValueError(f"need 0 <= gap < patch_size and batch_patches >= 1, got gap {self.gap}, "
                             f"patch_size {self.patch_size}, batch_patches {self.batch_patches}")


@dataclass
class ImageDetections:
    """One image's result: merged objects (quads in original pixels, scores), and counts."""

    image: str
    stem: str
    size: tuple[int, int]
    objects: object
    patches: int = 0
    truncated: int = 0
    unparsed: int = 0
    unknown_labels: int = 0
    unscored: int = 0
    before_merge: int = 0
    patch_model_size: tuple[int, int] | None = None
    crs: str | None = None
    seconds: float = 0.0

    def record(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "objects"}
        d["objects"] = len(self.objects)
        return d


@dataclass
class DetectReport:
    images: int = 0
    patches: int = 0
    objects: int = 0
    truncated: int = 0
    unparsed: int = 0
    unscored: int = 0
    seconds: float = 0.0
    per_image: list = field(default_factory=list)

    def summary(self) -> str:
        rate = self.patches / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.images} images, {self.patches} patches answered ({rate:.2f} patches/s), {self.truncated} "
                f"truncated answers, {self.objects} objects after merging, {self.unparsed} unreadable fragments, "
                f"{self.unscored} objects without confidence; {self.seconds:.1f} s")


class Detector:
    """Detection of whole images on ``backend`` with ``config``."""

    def __init__(self, backend, config: DetectConfig | None = None):
        from rscovlm.model.families import family_for
        from rscovlm.protocol.prompt_sets import get_prompt_set
        from rscovlm.geometry.boxes import Frame
        from rscovlm.resolution import ResizePlan, ResolutionPolicy, smart_resize

        self.backend = backend
        self.config = c = config or DetectConfig()
        self.family = family_for(c.family)
        self.vocabulary = category_set(c.categories)
        self.prompt = get_prompt_set(c.prompt_set).eval_prompt("dense_det", categories=list(self.vocabulary.classes))
        s = c.patch_size
        if c.max_mode:
            h, w = smart_resize(s, s, c.factor, c.max_pixels, c.max_pixels)
            self.plan = ResizePlan(Frame.original(s, s), Frame.model(w, h))
        else:
            self.plan = ResolutionPolicy(min_pixels=c.min_pixels, max_pixels=c.max_pixels, factor=c.factor,
                                         uhr_min_pixels=max(c.max_pixels, 4 * 1008 * 1008)).plan(s, s)

    def windows(self, width: int, height: int) -> np.ndarray:
        """``(M, 4)`` windows x1, y1, x2, y2 in reading order (rows of windows top to bottom, then x)."""
        from rscovlm.dota.split import sliding_windows

        c = self.config
        w = sliding_windows(width, height, c.patch_size, c.gap, c.img_rate_thr)
        return w[np.lexsort((w[:, 0], w[:, 1]))]

    def _patches(self, source, windows: np.ndarray):
        """Yield ``(window, conversation)`` per window, reading one band of rows per row of windows."""
        from PIL import Image

        from rscovlm.imageio import resize_to

        c = self.config
        w, h = source.size
        mw, mh = self.plan.model_size
        for y in np.unique(windows[:, 1]):
            row = windows[windows[:, 1] == y]
            x_lo, x_hi = int(row[:, 0].min()), int(row[:, 2].max())
            band = source.read_padded(x_lo, int(y), x_hi, int(y) + c.patch_size, c.padding_value)
            for win in row:
                x0 = int(win[0]) - x_lo
                patch = resize_to(Image.fromarray(band[:, x0:x0 + c.patch_size]), (mw, mh))
                part = {"type": "image", "image": patch, "resized_width": mw, "resized_height": mh}
                yield win, self.prompt.messages(part)

    def _parse(self, gen, window) -> tuple:
        """Quads (original pixels), labels, scores and facts of one patch answer."""
        from rscovlm.infer.confidence import detections_with_confidence

        parsed, scores = detections_with_confidence(
            gen.text, gen.tokens, gen.token_logprobs,
            frame=self.family.box_frame_for(*gen.image_sizes[0]), categories=self.vocabulary)
        quads = parsed.objects.boxes.to_quad().to_frame(self.plan.original).data
        quads = quads + np.array([window[0], window[1]] * 4, dtype=np.float64)
        unscored = int(np.isnan(scores).sum())
        scores = np.where(np.isnan(scores), 1.0, scores)
        return quads, list(parsed.objects.labels), scores, len(parsed.unparsed), len(parsed.unknown_labels), unscored

    def detect(self, path: str | os.PathLike, progress=None, read_options=None) -> ImageDetections:
        """Detect objects in one image file (module docstring, steps 1-5)."""
        from rscovlm.dota.merge import nms_per_class
        from rscovlm.geometry import Boxes, ObjectSet
        from rscovlm.imageio import ImageSource

        c = self.config
        start = time.perf_counter()
        with ImageSource(path, read_options) as src:
            windows = self.windows(*src.size)
            result = ImageDetections(str(path), Path(path).stem, src.size, None, patch_model_size=self.plan.model_size,
                                     crs=None if src.georef is None else src.georef.crs)
            quads, labels, scores = [], [], []
            pending: list = []

            def flush():
                gens = self.backend.generate_results([conv for _, conv in pending], c.max_new_tokens, progress,
                                                     "detection", logprobs=c.confidence)
                for (win, _), gen in zip(pending, gens):
                    q, lab, s, unparsed, unknown, unscored = self._parse(gen, win)
                    quads.append(q)
                    labels.extend(lab)
                    scores.append(s)
                    result.truncated += int(gen.truncated)
                    result.unparsed += unparsed
                    result.unknown_labels += unknown
                    result.unscored += unscored
                result.patches += len(pending)
                pending.clear()

            for win, conv in self._patches(src, windows):
                pending.append((win, conv))
                if len(pending) >= c.batch_patches:
                    flush()
            if pending:
                flush()
        merged = ObjectSet(Boxes(np.concatenate(quads) if quads else np.zeros((0, 8)), "quad"), labels,
                           scores=np.concatenate(scores) if scores else np.zeros(0))
        result.before_merge = len(merged)
        result.objects = nms_per_class(merged, c.nms_iou)
        result.seconds = time.perf_counter() - start
        return result


def image_paths(target: str | os.PathLike) -> list[Path]:
    """The image files of ``target``: itself when a file, else the images of the folder (sorted; not recursive)."""
    target = Path(target)
    if target.is_file():
        return [target]
    if not target.is_dir():
        raise FileNotFoundError(f"{target}: no such image file or folder")
    paths = sorted(p for p in target.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise FileNotFoundError(f"{target}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return paths


def geojson_dict(result: ImageDetections, source=None) -> dict:
    """A GeoJSON FeatureCollection of ``result``: one Polygon per object (the quad's ring, closed), properties
    ``label`` and ``score``. With a georeferenced ``source`` the coordinates are in its CRS (``crs`` member:
    ``urn:ogc:def:crs:EPSG::<code>``, or the WKT when the CRS has no EPSG code); otherwise pixel coordinates of
    the image (x right, y down, origin at the top-left corner of the image; ``rscovlm:coordinates`` says so)."""
    objects = result.objects
    georef = None if source is None else source.georef
    features = []
    for quad, label, score in zip(objects.boxes.data, objects.labels, objects.scores):
        ring = np.vstack([quad.reshape(4, 2), quad[:2][None]])
        if georef is not None:
            ring = source.to_geo(ring)
        features.append({"type": "Feature", "properties": {"label": label, "score": round(float(score), 6)},
                         "geometry": {"type": "Polygon", "coordinates": [ring.round(6).tolist()]}})
    out = {"type": "FeatureCollection", "name": result.stem, "features": features}
    if georef is not None:
        name = f"urn:ogc:def:crs:EPSG::{georef.epsg}" if georef.epsg else georef.crs
        out["crs"] = {"type": "name", "properties": {"name": name}}
    else:
        out["rscovlm:coordinates"] = "pixel (x right, y down, origin at the top-left corner of the image)"
    return out


def write_outputs(result: ImageDetections, out: Path, geojson: bool, overlay: bool, overlay_side: int = 2048,
                  read_options=None) -> list[Path]:
    """labelTxt (and GeoJSON, overlay PNG) of one image; Task1 files are written for all images at the end."""
    from rscovlm.dota.io import write_labeltxt
    from rscovlm.imageio import ImageSource

    written = []
    path = out / "labelTxt" / f"{result.stem}.txt"
    write_labeltxt(path, result.objects, imagesource="rscovlm-detect")
    written.append(path)
    if not (geojson or overlay):
        return written
    with ImageSource(result.image, read_options) as src:
        if geojson:
            path = out / "geojson" / f"{result.stem}.geojson"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(geojson_dict(result, src)) + "\n")
            written.append(path)
        if overlay:
            from rscovlm.geometry import Frame
            from rscovlm.viz.overlay import draw_objects

            w, h = src.size
            scale = min(1.0, overlay_side / max(w, h))
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            picture = src.resized(size)
            objects = result.objects
            if len(objects):
                from rscovlm.geometry import Boxes

                objects = objects.with_boxes(Boxes(objects.boxes.data, "quad", Frame.original(w, h))).to_frame(
                    Frame.original(*size))
            path = out / "overlays" / f"{result.stem}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            draw_objects(picture, objects).save(path)
            written.append(path)
    return written


def detect_paths(targets, backend, config: DetectConfig | None = None, out: str | os.PathLike = "detect_out", *,
                 geojson: bool = False, overlay: bool = True, progress=None, read_options=None) -> DetectReport:
    """Detect in every image of ``targets`` (files or folders) and write the outputs (module docstring)."""
    from rscovlm.dota.io import write_task1_dir

    detector = Detector(backend, config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [p for t in ([targets] if isinstance(targets, (str, os.PathLike)) else targets) for p in image_paths(t)]
    stems = [p.stem for p in paths]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise ValueError(f"images share the file stem {dup[0]!r}: output names would collide")
    report = DetectReport()
    start = time.perf_counter()
    by_image = {}
    with open(out / "detections.jsonl", "w", encoding="utf-8") as log:
        for path in paths:
            result = detector.detect(path, progress, read_options)
            write_outputs(result, out, geojson, overlay, detector.config.overlay_side, read_options)
            by_image[result.stem] = result.objects
            report.images += 1
            report.patches += result.patches
            report.objects += len(result.objects)
            report.truncated += result.truncated
            report.unparsed += result.unparsed
            report.unscored += result.unscored
            report.per_image.append(result.record())
            log.write(json.dumps(result.record()) + "\n")
            log.flush()
    write_task1_dir(out / "Task1", by_image, classes=detector.vocabulary.classes)
    report.seconds = time.perf_counter() - start
    return report


def patch_count(width: int, height: int, config: DetectConfig | None = None) -> int:
    """How many windows an image of ``width`` x ``height`` gives (for progress bars)."""
    from rscovlm.dota.split import sliding_windows

    c = config or DetectConfig()
    return len(sliding_windows(width, height, c.patch_size, c.gap, c.img_rate_thr))


__all__ = ["DetectConfig", "DetectReport", "Detector", "ImageDetections", "detect_paths", "geojson_dict",
           "image_paths", "patch_count", "write_outputs"]
