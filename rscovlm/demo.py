"""The whole pipeline in a few minutes on a laptop: synthetic data -> training -> inference -> scores -> pictures.

:func:`run_demo` (``rscovlm demo``):

1. renders small synthetic aerial scenes (:mod:`rscovlm.dota.synthetic`; one object category per scene, 1-3
   objects) and turns each into four samples with the online sample builder (:mod:`rscovlm.data.builder`, the
   evaluation prompts of the prompt set ``--prompt-set``, default ``reference``: its system prompts, requests and
   answer format): scene classification, VQA (counting), grounding (the topmost object, hbb) and detection
   (quads);
2. builds the offline tiny Qwen2.5-VL (:mod:`rscovlm.model.tiny`) unless a checkpoint is given, and trains it on the
   samples with the normal trainer (:func:`rscovlm.train.trainer.train`);
3. answers every prompt with greedy decoding, parses the answers (:mod:`rscovlm.protocol`), maps boxes back to the
   original image frame and scores them: accuracy (classification, VQA), Acc@0.5 (grounding), AP_nc and mF1
   (detection);
4. writes ``report.json``, ``responses.jsonl`` and overlay PNGs (ground truth | prediction) under ``--out``.

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


def build_samples(cfg: DemoConfig, image_dir: Path, scenes: range, progress=None,
                  family: str = "qwen2_5_vl") -> list[DemoSample]:
    """Render the scenes numbered ``scenes`` into ``image_dir`` and build the four samples of each, with targets
    in the box frame of the model ``family`` (the sample builder's ``family``). With ``c = i mod cfg.scenes``,
    scene ``i`` shows category ``c mod 5`` with ``1 + (c // 5) mod 3`` objects, placed and rendered from a seed
    of its own."""
    from PIL import Image

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
            scene = plan_scene(cfg.size, cfg.size, cfg.seed * 100_003 + 1000 * i + attempt,
                               SceneConfig(categories=(cat,), num_objects=n_objects))
            if len(scene.labels) == n_objects:
                break
        else:  # the counting answer and the boxes must agree with what is drawn
            raise DemoError(f"--size {cfg.size}: scene {i} has room for {len(scene.labels)} of {n_objects} "
                            f"{display_name(cat)} objects after 20 draws; use a larger --size")
        name = f"scene_{i:03d}.png"
        Image.fromarray(scene.render()).save(image_dir / name)
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


def _plan(sample: DemoSample):
    from rscovlm.resolution import ResizePlan

    return ResizePlan.from_dict(sample.conversation["meta"]["plans"][0])


def generate_answers(model, processor, samples: list[DemoSample], max_new_tokens: int, progress=None) -> list[str]:
    """Greedy answers to the user turn of every sample, through the inference backend (same resize, same chat
    template as training)."""
    from rscovlm.infer.backends import GenerationConfig, TransformersBackend

    backend = TransformersBackend(model, processor, GenerationConfig(max_new_tokens=max_new_tokens, batch_size=4))
    return backend.generate([s.conversation["messages"][:-1] for s in samples], progress=progress)


def score(samples: list[DemoSample], answers: list[str], family) -> tuple[dict, dict]:
    """Metrics per task and the parsed predictions (original frame) per sample index. Answer coordinates are
    read in the box frame of the model ``family`` (:class:`rscovlm.model.families.ModelFamily`: pixels of the
    resized input for Qwen2.5-VL, a 0-1000 grid for Qwen2-VL / Qwen3-VL) and mapped to the original image.
    ``report["all"]["exact"]`` is the share of answers identical to their target text (whitespace-stripped)."""
    from rscovlm.eval.answers import answer_accuracy
    from rscovlm.eval.ap_nc import ap_nc_table
    from rscovlm.eval.dota_data import ClassDets, ClassGT, Detections, GroundTruth
    from rscovlm.eval.dota_map import compute_overlaps
    from rscovlm.eval.f1 import f1_from_overlaps
    from rscovlm.eval.grounding import grounding_accuracy
    from rscovlm.geometry.boxes import Boxes
    from rscovlm.eval.responses import read_response
    from rscovlm.protocol.categories import get_category_set
    from rscovlm.protocol.grounding import parse_grounding

    report: dict = {}
    parsed: dict[int, dict] = {}
    for task, rule in (("classification", "label"), ("vqa", "lower")):
        idx = [k for k, s in enumerate(samples) if s.task == task]
        report[task] = answer_accuracy([answers[k] for k in idx], [samples[k].answer for k in idx], rule=rule)

    idx = [k for k, s in enumerate(samples) if s.task == "grounding"]
    preds = []
    for k in idx:
        plan = _plan(samples[k])
        boxes, _ = parse_grounding(answers[k], "hbb", family.box_frame_for(*plan.model_size))
        boxes = boxes.to_frame(plan.original) if len(boxes) else None
        preds.append(boxes)
        parsed[k] = {"labels": samples[k].gt_labels[:1] * (0 if boxes is None else 1),
                     "quads": [] if boxes is None else boxes[:1].to_quad().data.tolist()}
    targets = Boxes(np.array([samples[k].gt_quads[0] for k in idx]), "quad").to("hbb")
    g = grounding_accuracy(preds, targets)
    report["grounding"] = {"acc@0.5": g["acc"], "hits": g["hits"], "n": g["n"], "unparsed": g["unparsed"]}

    idx = [k for k, s in enumerate(samples) if s.task == "detection"]
    cats = get_category_set("dota-v1.0")
    image_ids = [f"scene_{samples[k].scene:03d}" for k in idx]
    gt_rows: dict[str, tuple[list, list]] = {}
    det_rows: dict[str, tuple[list, list]] = {}
    unparsed = fragments = 0
    for j, k in enumerate(idx):
        for lab, q in zip(samples[k].gt_labels, samples[k].gt_quads):
            gt_rows.setdefault(lab, ([], []))[0].append(q)
            gt_rows[lab][1].append(j)
        result, quads = read_response(answers[k], _plan(samples[k]), family, cats)
        unparsed += len(result.unparsed) + len(result.unknown_labels)
        fragments += result.n_fragments
        parsed[k] = {"labels": list(result.objects.labels), "quads": quads.tolist()}
        for lab, q in zip(result.objects.labels, quads):
            det_rows.setdefault(lab, ([], []))[0].append(q)
            det_rows[lab][1].append(j)
    gt = GroundTruth(image_ids, {c: ClassGT(np.array(q, float).reshape(-1, 8), np.array(im, np.int64),
                                            np.zeros(len(im), np.int64)) for c, (q, im) in gt_rows.items()})
    dets = Detections({c: ClassDets(np.array(q, float).reshape(-1, 8), np.array(im, np.int64), None)
                       for c, (q, im) in det_rows.items()})
    overlaps = compute_overlaps(gt, dets)
    table = ap_nc_table(overlaps, seeds=10).summary(0)["metrics"]
    f1 = f1_from_overlaps(overlaps, iou_thr=0.5)
    report["detection"] = {"AP_nc50": table["AP_nc50"]["mean"], "AP_nc50_std": table["AP_nc50"]["std"],
                           "AP_nc75": table["AP_nc75"]["mean"], "AP_nc50:95": table["AP_nc50:95"]["mean"],
                           "mF1": f1["mF1"], "n_images": len(idx),
                           "unparsed_fraction": unparsed / fragments if fragments else 0.0}
    exact = [a.strip() == s.answer.strip() for s, a in zip(samples, answers)]
    report["all"] = {"exact": sum(exact) / len(exact) if exact else 0.0, "n": len(exact)}
    return report, parsed


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
         ("detection", "AP_nc50:95", "AP_nc50:95"), ("detection", "mF1", "mF1"), ("all tasks", "exact", "exact"))


def format_report(report: dict) -> str:
    """The score table: one column per split (``train`` = the scenes trained on, ``holdout`` = unseen ones); the
    last row is the share of answers identical to their target text (a model that memorised its training scenes
    scores 100 % there, while AP_nc50:95 can stay below 100 % since targets are integer pixels)."""
    splits = [s for s in ("train", "holdout") if s in report]
    heads = {"train": "train scenes", "holdout": "held-out scenes"}
    lines = [f"{'task':<16}{'metric':<12}" + "".join(f"{heads[s]:>16}" for s in splits)]
    for task, metric, key in _ROWS:
        part = "all" if task == "all tasks" else task
        lines.append(f"{task:<16}{metric:<12}" + "".join(f"{100 * report[s][part][key]:>15.1f}%" for s in splits))
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
    image_dir = out / "data" / "images"
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
    with tqdm(total=len(everything), desc="4/4 answering", unit="prompt") as bar:
        answers = generate_answers(model, processor, everything, cfg.max_new_tokens, bar)
    report: dict = {}
    parsed: dict[int, dict] = {}
    for split, part, offset in (("train", samples, 0), ("holdout", unseen, len(samples))):
        if part:
            report[split], got = score(part, answers[offset:offset + len(part)], family)
            parsed.update({offset + k: v for k, v in got.items()})
    with open(out / "responses.jsonl", "w", encoding="utf-8") as fh:
        for k, (s, a) in enumerate(zip(everything, answers)):
            fh.write(json.dumps({"split": "train" if k < len(samples) else "holdout", "task": s.task,
                                 "scene": s.scene, "response": a, "target": s.answer,
                                 "resize": s.conversation["meta"]["plans"][0], "parsed": parsed.get(k)}) + "\n")
    overlays = write_overlays(everything, parsed, image_dir, out / "overlays")
    report["run"] = {"config": asdict(cfg), "model": model_path, "family": family.name,
                     "prompt_set": prompt_set,
                     "box_frame": family.box_frame, "train_samples": len(samples),
                     "holdout_samples": len(unseen), "losses": losses,
                     "seconds": round(time.perf_counter() - start, 1), "overlays": len(overlays)}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
