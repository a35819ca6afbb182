"""What ``rscovlm predict`` / ``rscovlm zoom`` / ``rscovlm detect`` share (options, backend, progress bar,
summary line) and their parsers and handlers; each command's own module (:mod:`rscovlm.cli.predict`, ...) holds its
``HELP`` line and calls the ``register_*`` function here. They run a checkpoint on images (rscovlm.infer).

Results go to stdout (JSON lines) or to the output folder; a progress bar and one summary line (images,
answers, truncated answers, time) go to stderr.
"""

from __future__ import annotations

import json
import sys
import time

from rscovlm.cli import CliError, config_help, config_option, library_output_to_stderr, status

BACKEND_NAMES = ("transformers", "vllm", "openai")
PREDICT_TASKS = ("chat", "classify", "vqa", "caption", "ground", "detect")


def _backend_options(p) -> None:
    p.add_argument("--model", required=True,
                   help="checkpoint folder or hub id (transformers, vllm); the served model name (openai)")
    p.add_argument("--backend", choices=BACKEND_NAMES, default="transformers", help="inference engine")
    p.add_argument("--base-url", default=None, help="openai: server root ending in /v1 (unset: "
                                                    "$RSCOVLM_BASE_URL or $OPENAI_BASE_URL); the key comes from "
                                                    "$RSCOVLM_API_KEY or $OPENAI_API_KEY")
    p.add_argument("--device", default="auto", help="transformers: cpu, cuda, cuda:1 ... (auto: cuda when present)")
    p.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"],
                   help="transformers / vllm weight dtype")
    p.add_argument("--batch-size", type=int, default=8, help="transformers: conversations per forward pass; "
                                                             "openai: requests in flight")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm: GPUs one model is split over")
    p.add_argument("--data-parallel-size", type=int, default=1, help="vllm: model replicas")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vllm: share of GPU memory")
    p.add_argument("--max-new-tokens", type=int, default=None, help="answer budget (unset: per task; "
                                                                    "detection 16384 as the reference)")
    p.add_argument("--prompt-set", default="reference", help="prompt set (reference = the released checkpoints' "
                                                             "strings), or a folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register_predict(sub, help: str) -> None:
    p = sub.add_parser("predict", help=help,
                       description="Answer PROMPT about each IMAGE (files or folders) with a checkpoint. --task chat "
                                   "sends PROMPT as it is; the tasks build the prompt set's prompt from it: classify "
                                   "(PROMPT = comma-separated classes), vqa (the question), caption (the request), "
                                   "ground (the object), detect (comma-separated class names or a category set "
                                   "such as dota-v1.0). One JSON line per image on stdout: the raw answer, the "
                                   "parsed answer or boxes in original image pixels, finish reason and model size.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images")
    p.add_argument("prompt", metavar="PROMPT", help="the prompt, question, object, classes or categories")
    p.add_argument("--task", choices=PREDICT_TASKS, default="chat", help="how PROMPT is used")
    p.add_argument("--min-pixels", type=int, default=None, help="pixel budget of each image (unset: the model's)")
    p.add_argument("--max-pixels", type=int, default=None, help="pixel budget of each image (unset: the model's)")
    _backend_options(p)
    p.set_defaults(handler=_predict)


def register_zoom(sub, help: str) -> None:
    from rscovlm.infer.zoom import ZoomConfig

    z = sub.add_parser("zoom", help=help,
                       description="The Zoom-in Chain (paper 3.4): pass 1 sees the downsampled whole image and asks "
                                   "for a region with a tool call; the region is read from the full-resolution file "
                                   "by a windowed read (the image is never decoded whole) and pass 2 answers from "
                                   "the crop. One JSON line per image on stdout with the answer and the chain's "
                                   "trace (tool call, crop region in original pixels, crop size).")
    z.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images")
    z.add_argument("question", metavar="QUESTION", help="the question")
    z.add_argument("--category", default=None, help="the question's category (count questions skip the chain)")
    z.add_argument("--crop-source", choices=["original", "downsampled"], **config_option(ZoomConfig, "crop_source"))
    z.add_argument("--margin", type=float, **config_option(ZoomConfig, "margin"))
    z.add_argument("--max-depth", type=int, **config_option(ZoomConfig, "max_depth"))
    z.add_argument("--min-pixels", type=int, **config_option(ZoomConfig, "min_pixels"))
    z.add_argument("--max-pixels", type=int, **config_option(ZoomConfig, "max_pixels"))
    z.add_argument("--crop-min-pixels", type=int, **config_option(ZoomConfig, "crop_min_pixels"))
    z.add_argument("--crop-max-pixels", type=int, **config_option(ZoomConfig, "crop_max_pixels"))
    _backend_options(z)
    z.set_defaults(handler=_zoom)


def register_detect(sub, help: str) -> None:
    from rscovlm.imageio import STRETCHES, ReadOptions
    from rscovlm.infer.detect import DetectConfig

    d = sub.add_parser("detect", help=help,
                       description="Detect objects in each IMAGE (or the images of a folder) of any size: split into "
                                   "overlapping patches (512 / 100 by default, the paper's), answer each patch, "
                                   "parse, score each object by its token log-probs, map back and merge with "
                                   "polygon NMS. Writes OUT/labelTxt/*.txt, OUT/Task1/Task1_{class}.txt, "
                                   "OUT/overlays/*.png, OUT/detections.jsonl and with --geojson OUT/geojson/"
                                   "*.geojson (in the raster's CRS for a georeferenced GeoTIFF).")
    d.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders (GeoTIFF, TIFF, PNG, JPEG)")
    d.add_argument("--out", required=True, help="output folder")
    d.add_argument("--geojson", action="store_true", help="also write GeoJSON polygons")
    d.add_argument("--max-mode", action="store_true", help=config_help(DetectConfig, "max_mode"))
    d.add_argument("--no-overlay", action="store_true", help="do not write overlay PNGs")
    d.add_argument("--no-confidence", action="store_true", help="do not ask for token log-probs (scores 1.0)")
    d.add_argument("--stretch", choices=STRETCHES, **config_option(ReadOptions, "stretch"))
    d.add_argument("--bands", default=None, help="comma-separated 1-based bands shown as red, green, blue (one band: "
                                                 "grey); unset: the bands whose colour interpretation is red, "
                                                 "green, blue, else 1, 2, 3")
    d.add_argument("--patch-size", type=int, **config_option(DetectConfig, "patch_size"))
    d.add_argument("--gap", type=int, **config_option(DetectConfig, "gap"))
    d.add_argument("--categories", **config_option(DetectConfig, "categories"))
    d.add_argument("--nms-iou", type=float, **config_option(DetectConfig, "nms_iou"))
    d.add_argument("--batch-patches", type=int, **config_option(DetectConfig, "batch_patches"))
    d.add_argument("--min-pixels", type=int, **config_option(DetectConfig, "min_pixels"))
    d.add_argument("--max-pixels", type=int, **config_option(DetectConfig, "max_pixels"))
    _backend_options(d)
    d.set_defaults(handler=_detect)


# ---- backends -----------------------------------------------------------------------------------------------

def make_backend(args, logprobs: bool = False):
    """The backend the options name (models are loaded here)."""
    from rscovlm._optional import MissingDependencyError

    if args.batch_size < 1:
        raise CliError("--batch-size must be >= 1")
    try:
        if args.backend == "openai":
            from rscovlm.infer.openai_backend import OpenAIBackend, OpenAIConfig

            return OpenAIBackend(OpenAIConfig(base_url=args.base_url, model=args.model, concurrency=args.batch_size,
                                              max_new_tokens=args.max_new_tokens, logprobs=logprobs))
        if args.backend == "vllm":
            from rscovlm.infer.vllm_backend import VLLMBackend, VLLMConfig

            return VLLMBackend(VLLMConfig(model=args.model, tensor_parallel_size=args.tensor_parallel_size,
                                          data_parallel_size=args.data_parallel_size,
                                          gpu_memory_utilization=args.gpu_memory_utilization, dtype=args.dtype,
                                          max_new_tokens=args.max_new_tokens, logprobs=logprobs))
        import torch

        from rscovlm.infer.backends import GenerationConfig, TransformersBackend
        from rscovlm.model.loading import ModelConfig, load_model, load_processor

        model, _ = load_model(ModelConfig(model_name_or_path=args.model, dtype=args.dtype))
        device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        model = model.to(device)
        processor = load_processor(args.model)
        return TransformersBackend(model, processor, GenerationConfig(batch_size=args.batch_size,
                                                                      max_new_tokens=args.max_new_tokens,
                                                                      logprobs=logprobs))
    except (MissingDependencyError, ValueError, OSError) as err:
        raise CliError(f"--backend {args.backend} --model {args.model}: {err}") from err


def _paths(targets) -> list[str]:
    from rscovlm.infer.detect import image_paths

    try:
        return [str(p) for t in targets for p in image_paths(t)]
    except FileNotFoundError as err:
        raise CliError(str(err)) from None


def _bar(total: int, desc: str, disabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="answer", disable=disabled, file=sys.stderr)


def _summary(n_images: int, results, seconds: float) -> str:
    from rscovlm.infer.backends import count_truncated

    counts = count_truncated([r.generation for r in results])
    return (f"{n_images} images, {counts['n']} answers, {counts['truncated']} truncated answers; "
            f"{seconds:.1f} s")


# ---- commands -----------------------------------------------------------------------------------------------

def _predict(args) -> int:
    from rscovlm.imageio import ImageReadError
    from rscovlm.infer.openai_backend import OpenAIBackendError
    from rscovlm.infer.runners import Runner, RunnerConfig

    paths = _paths(args.images)
    start = time.perf_counter()
    with library_output_to_stderr():
        backend = make_backend(args, logprobs=args.task == "detect")
        cfg = RunnerConfig(prompt_set=args.prompt_set, min_pixels=args.min_pixels, max_pixels=args.max_pixels,
                           max_new_tokens=args.max_new_tokens)
        try:
            runner = Runner(backend, cfg)
            queries = [_query(args.task, p, args.prompt) for p in paths]
            with _bar(len(queries), "predict", args.no_progress) as bar:
                results = runner.run(args.task, queries, progress=bar)
        except (ImageReadError, ValueError, KeyError, OpenAIBackendError) as err:
            raise CliError(str(err)) from err
    for r in results:
        print(json.dumps(r.to_json()))
    status(_summary(len(paths), results, time.perf_counter() - start))
    return 0


def _query(task: str, path: str, prompt: str):
    from rscovlm.infer.runners import Query

    if task == "classify":
        return Query(path, classes=[c.strip() for c in prompt.split(",") if c.strip()], id=path)
    if task == "detect":
        from rscovlm.protocol.categories import CATEGORY_SETS

        names = None if prompt in CATEGORY_SETS else [c.strip() for c in prompt.split(",") if c.strip()]
        if names is None:
            names = list(CATEGORY_SETS[prompt].classes)
        return Query(path, categories=names, id=path)
    return Query(path, prompt, id=path)


def _zoom(args) -> int:
    from rscovlm.imageio import ImageReadError
    from rscovlm.infer.openai_backend import OpenAIBackendError
    from rscovlm.infer.runners import Query
    from rscovlm.infer.zoom import ZoomChain, ZoomConfig

    paths = _paths(args.images)
    start = time.perf_counter()
    try:
        cfg = ZoomConfig(crop_source=args.crop_source, margin=args.margin, max_depth=args.max_depth,
                         min_pixels=args.min_pixels, max_pixels=args.max_pixels,
                         crop_min_pixels=args.crop_min_pixels, crop_max_pixels=args.crop_max_pixels,
                         prompt_set=args.prompt_set, max_new_tokens=args.max_new_tokens)
    except ValueError as err:
        raise CliError(str(err)) from err
    with library_output_to_stderr():
        backend = make_backend(args)
        try:
            chain = ZoomChain(backend, cfg)
            queries = [Query(p, args.question, category=args.category, id=p) for p in paths]
            with _bar(len(queries), "zoom", args.no_progress) as bar:
                results = chain.run(queries, progress=bar)
        except (ImageReadError, ValueError, KeyError, OpenAIBackendError) as err:
            raise CliError(str(err)) from err
    for r in results:
        print(json.dumps(r.to_json()))
    status(chain.report.summary())
    status(_summary(len(paths), results, time.perf_counter() - start))
    return 0


def _detect(args) -> int:
    from rscovlm._optional import MissingDependencyError
    from rscovlm.imageio import ImageReadError, ImageSource, ReadOptions
    from rscovlm.infer.detect import DetectConfig, detect_paths, patch_count
    from rscovlm.infer.openai_backend import OpenAIBackendError

    paths = _paths(args.images)
    try:
        cfg = DetectConfig(patch_size=args.patch_size, gap=args.gap, max_mode=args.max_mode,
                           min_pixels=args.min_pixels, max_pixels=args.max_pixels, categories=args.categories,
                           nms_iou=args.nms_iou, confidence=not args.no_confidence,
                           batch_patches=args.batch_patches, max_new_tokens=args.max_new_tokens,
                           prompt_set=args.prompt_set)
        bands = None
        if args.bands is not None:
            try:
                bands = tuple(int(b) for b in args.bands.split(","))
            except ValueError:
                raise CliError(f"--bands {args.bands!r}: give comma-separated band numbers such as 4,3,2") from None
        read_options = ReadOptions(stretch=args.stretch, bands=bands)
        total = 0
        for p in paths:
            with ImageSource(p, read_options) as src:
                total += patch_count(*src.size, cfg)
    except (ImageReadError, ValueError, MissingDependencyError) as err:
        raise CliError(str(err)) from err
    with library_output_to_stderr():
        backend = make_backend(args, logprobs=cfg.confidence)
        try:
            with _bar(total, "detect", args.no_progress) as bar:
                report = detect_paths(paths, backend, cfg, args.out, geojson=args.geojson,
                                      overlay=not args.no_overlay, progress=bar, read_options=read_options)
        except (ImageReadError, ValueError, KeyError, MissingDependencyError, OpenAIBackendError) as err:
            raise CliError(str(err)) from err
    status(f"wrote {args.out}/labelTxt, {args.out}/Task1" + (f", {args.out}/geojson" if args.geojson else "")
           + ("" if args.no_overlay else f", {args.out}/overlays") + f", {args.out}/detections.jsonl")
    status(report.summary())
    return 0
