"""The whole pipeline in a few minutes on a laptop: synthetic data -> training -> inference -> scores -> pictures.

:func:`run_demo` (``rscovlm demo``):

1. renders small synthetic aerial scenes (:mod:`rscovlm.dota.synthetic`; one object category per scene, 1-3
   objects) and turns each into four samples with the online sample builder (:mod:`rscovlm.data.builder`, the
   evaluation prompts of the prompt set ``--prompt-set``, default ``reference``: its system prompts, requests and
   answer format): scene classification, VQA (counting), grounding (the topmost object, hbb) and detection
   (quads);
2. builds the offline tiny Qwen2.5-VL (:mod:`rscovlm.model.tiny`) unless a checkpoint is given, and trains it on the
   samples with the normal trainer (:func:`rscovlm.train.trainer.train`);
3. answers every prompt and scores the answers through the benchmark harness - the ``synthetic`` benchmark
   (:mod:`rscovlm.eval.benchmarks.synthetic`) run as ``rscovlm eval run`` into ``--out/eval`` and scored as
   ``rscovlm eval score``: greedy decoding, answers parsed (:mod:`rscovlm.protocol`), boxes mapped back to the
   original image frame; accuracy (classification, VQA), Acc@0.5 (grounding), AP_nc, mAP50 with per-object
   confidence from the token log-probs, and mF1 (detection);
4. writes ``report.json``, ``responses.jsonl`` and overlay PNGs (ground truth | prediction) under ``--out`` (the
   harness run folder ``eval/`` holds the answers, their settings and ``scores.json``).

Scores are reported twice: on the scenes trained on (the tiny model memorizes them: this checks that every stage
works and fits together - a stage that garbles prompts, boxes or frames scores ~0) and on unseen scenes (what a
300k-parameter model learns from ten images: little, except on the easiest tasks). With a real checkpoint
(``--model``) and ``--steps 0`` the same command evaluates it zero-shot on the synthetic scenes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

# scene category -> (scene class answered by classification, plural used in the counting question)
SCENE_OF: dict[str, tuple[str, str]] = {
    "plane": ("airport", "planes"),
    "ship": ("harbor", "ships"),
    "storage-tank": ("storage tanks", "storage tanks"),
    "tennis-court": ("tennis courts", "tennis courts"),
    "swimming-pool": ("swimming pools", "swimming pools"),
}
CLASSIFY_PROMPT = "Classify the scene of this remote sensing image. Answer with one word or phrase."
COUNT_PROMPT = "How many {plural} are there in the image? Answer with a number."


@dataclass
class DemoConfig:
    """Options of ``rscovlm demo``."""

    out: str = field(default="demo_out", metadata={"help": "output folder (data, model, report, PNGs)"})
    scenes: int = field(default=10, metadata={"help": "synthetic training scenes; each gives four samples"})
    holdout: int = field(default=5, metadata={"help": "unseen scenes scored separately (generalization)"})
    size: int = field(default=336, metadata={"help": "scene side in pixels (a multiple of 28 keeps it unresized)"})
    steps: int = field(default=700, metadata={"help": "optimizer steps (0 = evaluate only)"})
    batch: int = field(default=8, metadata={"help": "samples per step"})
    learning_rate: float = field(default=3e-3, metadata={"help": "peak lr (cosine, 5% warmup); the random tiny "
                                                                 "model needs a large one"})
    model: str | None = field(default=None, metadata={"help": "checkpoint folder or hub id (default: build the "
                                                              "tiny model)"})
    max_new_tokens: int = field(default=256, metadata={"help": "longest answer"})
    seed: int = field(default=0, metadata={"help": "seed of the scenes and of training"})
    prompt_set: str = field(default="reference", metadata={
        "help": "prompt set of the grounding and detection samples and their answer format (reference = the "
                "released checkpoints' strings; rscovlm-v0; or a folder)"})
    threads: int = field(default=1, metadata={"help": "CPU threads for torch; the scores can depend on it. More "
                                                     "than one pays only on idle cores: with other jobs running "
                                                     "each training step slowed 6-12x at 2 threads"})


@dataclass
class DemoSample:
    """One evaluation item: the built conversation plus what is needed to score it."""

    task: str
    scene: int
    conversation: dict
    answer: str
    gt_labels: list[str] = field(default_factory=list)
    gt_quads: list[list[float]] = field(default_factory=list)   # original frame


SCENE_VERSION = "rscovlm-scene-1"  # bump when the renderer's pictures change


def _write_scene(scene, path: Path, key: str) -> None:
    """Render ``scene`` to the PNG ``path`` unless the file there already holds it (its ``rscovlm-scene`` text
    chunk equals ``key``: renderer version, size, seed, category, object count). Written whole (a temporary file
    renamed), so processes rendering the same scenes at once (shards of a run) never read a partial file."""
    from PIL import Image, PngImagePlugin

    try:
        with Image.open(path) as im:
            if im.info.get("rscovlm-scene") == key:  # a tEXt chunk before the pixels: no decoding
                return
    except (OSError, ValueError):
        pass
    info = PngImagePlugin.PngInfo()
    info.add_text("rscovlm-scene", key)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(scene.render()).save(tmp, format="PNG", pnginfo=info)
    os.replace(tmp, path)


def build_samples(cfg: DemoConfig, image_dir: Path, scenes: range, progress=None,
                  family: str = "qwen2_5_vl") -> list[DemoSample]:
    """Render the scenes numbered ``scenes`` into ``image_dir`` and build the four samples of each, with targets
    in the box frame of the model ``family`` (the sample builder's ``family``). With ``c = i mod cfg.scenes``,
    scene ``i`` shows category ``c mod 5`` with ``1 + (c // 5) mod 3`` objects, placed and rendered from a seed
    of its own. A scene file already holding that scene is not rendered again (:func:`_write_scene`)."""
    from rscovlm.data.builder import BuildConfig, SampleBuilder
    from rscovlm.data.mixture import UnitConfig
    from rscovlm.dota.synthetic import SceneConfig, plan_scene
    from rscovlm.protocol.categories import display_name

    image_dir.mkdir(parents=True, exist_ok=True)
    builder = SampleBuilder(BuildConfig(prompt_set=cfg.prompt_set, family=family, random_resize_prob=0.0,
                                        plain_prob=1.0, synonym_prob=0.0, open_ended_prob=0.0, subset_prob=0.0))
    units = {kind: UnitConfig(name=f"demo_{kind}", path="(generated)", type=kind, images=str(image_dir))
             for kind in ("detection", "grounding", "conversation")}
    cats = list(SCENE_OF)
    samples: list[DemoSample] = []
    for i in scenes:
        c = i % cfg.scenes  # unseen scenes repeat the (category, count) pattern of the trained ones
        cat = cats[c % len(cats)]
        n_objects = 1 + (c // len(cats)) % 3
        scene = None
        for attempt in range(20):  # a crowded draw can place fewer objects than asked; try the next seed
            # full-size objects: at 0.6x a storage tank could be 18 px across and a ship 7 px wide, under one
            # 28-px vision token, and the tiny model told some scenes apart by a hair or not at all
            seed = cfg.seed * 100_003 + 1000 * i + attempt
            scene = plan_scene(cfg.size, cfg.size, seed, SceneConfig(categories=(cat,), num_objects=n_objects))
            if len(scene.labels) == n_objects:
                break
        else:  # the counting answer and the boxes must agree with what is drawn
            raise DemoError(f"--size {cfg.size}: scene {i} has room for {len(scene.labels)} of {n_objects} "
                            f"{display_name(cat)} objects after 20 draws; use a larger --size")
        name = f"scene_{i:03d}.png"
        _write_scene(scene, image_dir / name, f"{SCENE_VERSION}:{cfg.size}:{seed}:{cat}:{n_objects}")
        objects = scene.objects
        quads = objects.boxes.data
        scene_name, plural = SCENE_OF[cat]
        size = [[cfg.size, cfg.size]]

        def chat(task, prompt, answer):
            record = {"id": f"{task}/{i}", "source": "demo", "task": task, "image_sizes": size,
                      "messages": [{"role": "user", "content": [{"type": "image", "image": name},
                                                                {"type": "text", "text": prompt}]},
                                   {"role": "assistant", "content": answer}]}
            return builder.build(record, units["conversation"])

        samples.append(DemoSample("classification", i, chat("classification", CLASSIFY_PROMPT, scene_name),
                                  scene_name))
        samples.append(DemoSample("vqa", i, chat("vqa", COUNT_PROMPT.format(plural=plural), str(n_objects)),
                                  str(n_objects)))
        top = int(np.argmin(quads[:, 1::2].min(axis=1)))
        hbb = objects.boxes[top].to("hbb").data[0]
        grounding = {"dataset": "demo", "image_id": name, "image": name, "question_id": i,
                     "question": f"topmost {display_name(cat)}", "bbox": hbb.tolist(),
                     "image_width": cfg.size, "image_height": cfg.size}
        conv = builder.build(grounding, units["grounding"])
        samples.append(DemoSample("grounding", i, conv, conv["messages"][-1]["content"][0]["text"],
                                  [cat], [objects.boxes[top].to_quad().data[0].tolist()]))
        detection = {"id": i, "image": name, "width": cfg.size, "height": cfg.size, "labels": list(objects.labels),
                     "quads": quads.tolist(), "difficult": [0] * len(objects), "categories": cats}
        conv = builder.build(detection, units["detection"])
        samples.append(DemoSample("detection", i, conv, conv["messages"][-1]["content"][0]["text"],
                                  list(objects.labels), quads.tolist()))
        if progress is not None:
            progress.update(1)
    return samples


def answer_and_score(cfg: DemoConfig, model, processor, model_path: str, family: str, out: Path
                     ) -> tuple[dict, dict]:
    """Answer the demo's scenes with the loaded ``model`` through the benchmark harness and score them with the
    synthetic benchmark's rule: ``rscovlm eval run --bench synthetic`` (options: this demo's scenes, size, seed,
    prompt set and the model's family; greedy; per-object confidence from token log-probs) into ``out/eval``, then
    ``rscovlm eval score out/eval`` (written to ``out/eval/scores.json``). Returns the report per split (``train``,
    ``holdout``: :func:`rscovlm.eval.benchmarks.synthetic.score_samples`) and the parsed predictions by item id.
    ``model_path`` is what the run's settings name as the model."""
    import shutil

    from rscovlm.eval.benchmarks import get_benchmark
    from rscovlm.eval.benchmarks.results import score_run
    from rscovlm.eval.benchmarks.runner import BenchRunner, RunConfig
    from rscovlm.infer.backends import GenerationConfig, TransformersBackend

    bench = get_benchmark("synthetic").with_options(scenes=cfg.scenes, holdout=cfg.holdout, size=cfg.size,
                                                    seed=cfg.seed, prompt_set=cfg.prompt_set, family=family)
    shutil.rmtree(out / "eval", ignore_errors=True)  # a fresh run: this model's answers only
    backend = TransformersBackend(model, processor, GenerationConfig(max_new_tokens=cfg.max_new_tokens,
                                                                     batch_size=16))
    runner = BenchRunner(backend, RunConfig(out=str(out / "eval"), data_root=str(out / "data"), batch_size=16,
                                            prompt_set=cfg.prompt_set, max_new_tokens=cfg.max_new_tokens,
                                            family=family), model_path, "transformers")
    runner.run(bench, desc="4/4 answering")
    results = score_run(out / "eval")
    (out / "eval" / "scores.json").write_text(json.dumps(results, indent=2) + "\n")
    details = results["results"]["synthetic"]["details"]
    return {split: details[split] for split in ("train", "holdout") if split in details}, details["predictions"]


def write_overlays(samples: list[DemoSample], parsed: dict, image_dir: Path, out_dir: Path) -> list[Path]:
    """``{scene}_{task}.png``: ground truth (left) | prediction (right) under panel titles with object counts
    (:func:`rscovlm.viz.overlay.compare`), for grounding and detection."""
    from rscovlm.geometry.boxes import Boxes
    from rscovlm.geometry.objects import ObjectSet
    from rscovlm.imageio import open_rgb
    from rscovlm.viz.overlay import compare

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for k, s in enumerate(samples):
        if s.task not in ("grounding", "detection"):
            continue
        img = open_rgb(image_dir / f"scene_{s.scene:03d}.png")
        gt = ObjectSet(Boxes(np.array(s.gt_quads, float).reshape(-1, 8), "quad"), s.gt_labels)
        pred = ObjectSet(Boxes(np.array(parsed[k]["quads"], float).reshape(-1, 8), "quad"), parsed[k]["labels"])
        path = out_dir / f"scene_{s.scene:03d}_{s.task}.png"
        compare(img, gt, pred).save(path)
        written.append(path)
    return written


_ROWS = (("classification", "accuracy", "accuracy"), ("vqa", "accuracy", "accuracy"),
         ("grounding", "Acc@0.5", "acc@0.5"), ("detection", "AP_nc50", "AP_nc50"),
         ("detection", "AP_nc50:95", "AP_nc50:95"), ("detection", "mAP50", "mAP50"), ("detection", "mF1", "mF1"),
         ("all tasks", "exact", "exact"))


def format_report(report: dict) -> str:
    """The score table: one column per split (``train`` = the scenes trained on, ``holdout`` = unseen ones); the
    last row is the share of answers identical to their target text (a model that memorised its training scenes
    scores 100 % there, while AP_nc50:95 can stay below 100 % since targets are integer pixels). mAP50 ranks the
    detections by their per-object confidence (token log-probs), beside the confidence-free AP_nc50; ``n/a``
    when no confidence could be computed."""
    splits = [s for s in ("train", "holdout") if s in report]
    heads = {"train": "train scenes", "holdout": "held-out scenes"}
    lines = [f"{'task':<16}{'metric':<12}" + "".join(f"{heads[s]:>16}" for s in splits)]
    for task, metric, key in _ROWS:
        part = "all" if task == "all tasks" else task
        values = [report[s][part].get(key) for s in splits]
        lines.append(f"{task:<16}{metric:<12}" + "".join(f"{'n/a':>16}" if v is None else f"{100 * v:>15.1f}%"
                                                         for v in values))
    return "\n".join(lines)


def _portable_jsonl(conversations: list[dict], path: Path) -> None:
    """Write the training conversations as a jsonl file that ``rscovlm train`` reads from anywhere: image paths
    relative to the file's folder."""
    lines = []
    for c in conversations:
        messages = json.loads(json.dumps(c["messages"]))
        for message in messages:
            for part in message["content"] if isinstance(message["content"], list) else []:
                if part.get("type") == "image":
                    part["image"] = os.path.relpath(part["image"], path.parent)
        lines.append(json.dumps({"messages": messages, "meta": c["meta"]}) + "\n")
    path.write_text("".join(lines))


class DemoError(ValueError):
    """A demo option that cannot work (the message names it)."""


def model_family(model: str):
    """The :class:`~rscovlm.model.families.ModelFamily` of the checkpoint ``model`` (folder or hub id)."""
    from transformers import AutoConfig

    from rscovlm.model.families import family_for

    try:
        return family_for(AutoConfig.from_pretrained(model))
    except (OSError, KeyError, ValueError) as err:
        raise DemoError(f"--model {model}: cannot load its config: {err}") from err


def run_demo(cfg: DemoConfig) -> dict:
    """Run the demo (see the module docstring) and return the report (also written to ``out/report.json``).

    The run is deterministic: scenes, weights and data order come from ``cfg.seed``, torch uses exactly
    ``cfg.threads`` threads (a float sum's order, hence every score, can depend on it) and deterministic
    algorithms; the same settings on the same machine give the same report, except the timings.

    The console (stderr) shows one progress bar per stage (the training bar carries the loss) and stage lines;
    transformers' own loading / saving bars are turned off for the run. Warnings and errors still print."""
    import torch
    from transformers.utils import logging as hf_logging

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(cfg.threads)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what deterministic cuBLAS needs on a GPU
    torch.use_deterministic_algorithms(True, warn_only=True)
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # otherwise DeepSpeed's import warns that it chose the CPU
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return _run(cfg)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        if bars:
            hf_logging.enable_progress_bar()


def _run(cfg: DemoConfig) -> dict:
    import torch
    from tqdm.auto import tqdm

    from rscovlm.data.builder import prompt_set_record
    from rscovlm.model.families import family_for
    from rscovlm.protocol.prompt_sets import PromptSetError, get_prompt_set
    from rscovlm.train.config import build_config
    from rscovlm.train.trainer import train

    start = time.perf_counter()
    # a bad --model or --prompt-set fails before any work; the offline tiny model is a Qwen2.5-VL
    family = family_for("qwen2_5_vl") if cfg.model is None else model_family(cfg.model)
    try:
        prompt_set = prompt_set_record(get_prompt_set(cfg.prompt_set))
    except (FileNotFoundError, PromptSetError) as err:
        raise DemoError(f"--prompt-set {cfg.prompt_set}: {err}") from None
    out = Path(cfg.out)
    image_dir = out / "data" / "synthetic"  # where the synthetic benchmark renders the same scenes
    with tqdm(total=cfg.scenes + cfg.holdout, desc="1/4 scenes + samples", unit="scene") as bar:
        samples = build_samples(cfg, image_dir, range(cfg.scenes), bar, family.name)
        unseen = build_samples(cfg, image_dir, range(cfg.scenes, cfg.scenes + cfg.holdout), bar, family.name)

    model_path = cfg.model
    if model_path is None:
        from rscovlm.model.tiny import build_tiny_model

        print("2/4 building the offline tiny Qwen2.5-VL", file=sys.stderr, flush=True)
        model_path = str(build_tiny_model(out / "tiny_model"))
    conversations = [s.conversation for s in samples]
    _portable_jsonl(conversations, out / "data" / "train.jsonl")
    overrides = [f"model.model_name_or_path={model_path}", f"output_dir={out / 'run'}",
                 f"global_batch_size={cfg.batch}", f"per_device_batch_size={cfg.batch}",
                 f"max_steps={max(cfg.steps, 1)}", f"learning_rate={cfg.learning_rate}", "deepspeed=none",
                 "dataloader_num_workers=0", f"logging_steps={max(cfg.steps // 8, 1)}",
                 f"save_steps={max(cfg.steps, 1) + 1}", f"seed={cfg.seed}", "report_to=none"]
    if cfg.model is None:
        overrides.append("gradient_checkpointing=false")  # pointless for the tiny model, and slow on a GPU
    if cfg.steps > 0:
        result = train(build_config({}, overrides), dataset=conversations, console="bar",
                       progress_desc=f"3/4 training on {len(samples)} samples")
        model, processor = result.trainer.model, result.trainer.processing_class
        losses = result.losses
    else:
        from rscovlm.model.loading import ModelConfig, load_model, load_processor

        model, _ = load_model(ModelConfig(model_name_or_path=model_path))
        if torch.cuda.is_available():
            model = model.to("cuda")
        processor = load_processor(model_path)
        losses = []
    everything = samples + unseen
    report, predictions = answer_and_score(cfg, model, processor, model_path if cfg.steps == 0 else
                                           str(out / "run"), family.name, out)
    parsed = {k: predictions.get(f"{s.task}/{s.scene}") for k, s in enumerate(everything)}
    answers = {x["id"]: x for x in map(json.loads, (out / "eval" / "synthetic" / "answers.jsonl").open())}
    with open(out / "responses.jsonl", "w", encoding="utf-8") as fh:
        for k, s in enumerate(everything):
            a = answers[f"{s.task}/{s.scene}"]
            fh.write(json.dumps({"split": "train" if k < len(samples) else "holdout", "task": s.task,
                                 "scene": s.scene, "response": a["text"], "target": s.answer,
                                 "resize": s.conversation["meta"]["plans"][0], "parsed": parsed[k]}) + "\n")
    overlays = write_overlays(everything, parsed, image_dir, out / "overlays")
    report["run"] = {"config": asdict(cfg), "model": model_path, "family": family.name,
                     "prompt_set": prompt_set,
                     "box_frame": family.box_frame, "train_samples": len(samples),
                     "holdout_samples": len(unseen), "losses": losses,
                     "seconds": round(time.perf_counter() - start, 1), "overlays": len(overlays),
                     "eval": {"run": str(out / "eval"), "scores": str(out / "eval" / "scores.json")}}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
