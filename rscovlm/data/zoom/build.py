"""``rscovlm data build-zoom``: the LRS-VQA-Zoom builder (paper 3.4) end to end.

Steps per input image (inputs: :mod:`rscovlm.data.zoom.inputs`), images in name order, in chunks of
``chunk_images`` whose LLM requests run together:

1. template questions (:mod:`rscovlm.data.zoom.templates`) -> ``OUT/template.jsonl``;
2. unique references and LLM region QA (:mod:`rscovlm.data.zoom.synthesis`) -> ``OUT/region.jsonl``;
3. multiple-choice conversion of a share of the open-ended pairs of 1 and 2 (:mod:`rscovlm.data.zoom.mcq`)
   -> ``OUT/mcq.jsonl``;
4. every pair written as a zoom-chain or single-turn conversation (:mod:`rscovlm.data.zoom.conversations`);
   pass-2 crops under ``OUT/crops/``.

Outputs are unified ``conversation`` records (``rscovlm data validate`` reads them; a mixture YAML lists the three
files as one ``type: conversation`` unit whose ``images`` is ``image_root``). Image paths are relative to
``image_root`` (every input image folder and ``OUT/crops`` must lie under it) or, without ``image_root``,
absolute. ``OUT/summary.json`` holds the counts by type, question type, category, source and chain, the rejects by
reason, the skipped inputs and the LLM usage and cost; the same summary goes to stdout.

Determinism: every random draw comes from a generator seeded by ``seed`` and the image (or record) id, so the
output depends on the seed and the inputs only - not on the order of LLM answers, the chunking or a resumed run
(the LLM replies come from the cache; an LLM that answers the same request differently changes only its own
records). Record files are written to ``*.part`` and renamed when the run ends.

``meta`` of every record: ``type`` (template / region / mcq), ``qtype`` (count_total, count_region,
compare_more, compare_which, or the region-QA type: color, category, shape, status, spatial, scene),
``category`` (display name; ``a|b`` for comparisons), ``image_id``, ``labels`` (the label file or COCO entry),
``chain`` (zoom / single), ``evidence`` (hbbs, original pixels) and, for zoom records, ``roi``, ``pass1_size``,
``call`` (the tool call's box at the configured budget), ``crop`` (the region of the original read),
``crop_size``; region QA also ``reference`` (object index, why unique); MCQ ``options`` and ``from`` (the
open-ended record's id).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rscovlm.data.zoom.conversations import ChainConfig, ChainGeometry, CropWriter, single_record, zoom_record
from rscovlm.data.zoom.inputs import InputConfig, InputReport, UHRImage, read_input
from rscovlm.data.zoom.mcq import MCQ_REJECTS, MCQConfig, check_options, is_yes_no, letter_options
from rscovlm.data.zoom.synthesis import (
    QA_REJECTS,
    LLMClient,
    LLMConfig,
    RegionConfig,
    load_prompts,
    parse_region_qa,
    unique_references,
)
from rscovlm.data.zoom.templates import QA, TemplateConfig, load_templates, template_questions

OUTPUT_FILES = {"template": "template.jsonl", "region": "region.jsonl", "mcq": "mcq.jsonl"}


@dataclass
class ZoomBuildConfig:
    """The whole build (a YAML file with these keys; sections are the dataclasses named)."""

    out: str = field(metadata={"help": "output folder: template.jsonl, region.jsonl, mcq.jsonl, crops/, "
                                       "summary.json, llm_cache.jsonl"})
    inputs: list = field(metadata={"help": "list of inputs (InputConfig: name, format, labels, images, ...)"})
    image_root: str | None = field(default=None, metadata={
        "help": "folder image paths are written relative to (the mixture unit's images); every input image folder "
                "and OUT/crops must lie under it. Default: absolute paths"})
    seed: int = field(default=0, metadata={"help": "seed of every random draw"})
    skip_invalid: bool = field(default=False, metadata={
        "help": "leave out (and count) label files that do not parse or have no image, instead of stopping"})
    chunk_images: int = field(default=8, metadata={"help": "images whose LLM requests are sent together"})
    chain: ChainConfig = field(default_factory=ChainConfig, metadata={"help": "zoom chain: prompt set, budgets"})
    templates: TemplateConfig = field(default_factory=TemplateConfig, metadata={"help": "template questions"})
    region: RegionConfig = field(default_factory=RegionConfig, metadata={"help": "LLM region QA"})
    mcq: MCQConfig = field(default_factory=MCQConfig, metadata={"help": "multiple-choice conversion"})
    llm: LLMConfig = field(default_factory=LLMConfig, metadata={"help": "the OpenAI-compatible endpoint"})

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("inputs: at least one input is needed")
        names = [i.name for i in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"inputs: names must be unique, got {names}")
        if self.chunk_images < 1:
            raise ValueError(f"chunk_images: must be >= 1, got {self.chunk_images}")


def _build(cls, data: Any, where: str):
    """A dataclass from a mapping; unknown or missing keys and bad values raise ValueError naming ``where.key``."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    kwargs = {}
    for name, value in data.items():
        sub = {"chain": ChainConfig, "templates": TemplateConfig, "region": RegionConfig, "mcq": MCQConfig,
               "llm": LLMConfig}.get(name) if cls is ZoomBuildConfig else None
        if sub is not None:
            value = _build(sub, value or {}, f"{where}.{name}" if where else name)
        elif cls is ZoomBuildConfig and name == "inputs":
            if not isinstance(value, list):
                raise ValueError("inputs: expected a list of inputs")
            value = [_build(InputConfig, v, f"inputs[{i}]") for i, v in enumerate(value)]
        kwargs[name] = value
    missing = [f.name for f in known.values() if f.name not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{where or 'config'}: missing key(s) {missing}")
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"{where or 'config'}: {err}") from None


def load_build_config(path: str | os.PathLike, overrides: dict | None = None) -> ZoomBuildConfig:
    """The build config of a YAML file; relative paths (inputs, out, image_root, cache, templates, prompts) are
    relative to the YAML's folder."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ValueError(f"{path}: config file not found") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    data = {**data, **(overrides or {})}
    base = path.parent

    def rel(v):
        return v if v is None or os.path.isabs(v) else str((base / v).resolve())

    try:
        cfg = _build(ZoomBuildConfig, data, "")
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    cfg.out, cfg.image_root = rel(cfg.out), rel(cfg.image_root)
    for inp in cfg.inputs:
        inp.labels, inp.images = rel(inp.labels), rel(inp.images)
    cfg.llm.cache, cfg.llm.prompts, cfg.templates.templates = (rel(cfg.llm.cache), rel(cfg.llm.prompts),
                                                               rel(cfg.templates.templates))
    return cfg


# ---- the run ------------------------------------------------------------------------------------------------

@dataclass
class Summary:
    """Counts of one build (module docstring); ``as_dict`` is ``summary.json``."""

    records: Counter = field(default_factory=Counter)
    by: dict = field(default_factory=lambda: defaultdict(Counter))
    region_rejects: Counter = field(default_factory=Counter)
    mcq_rejects: Counter = field(default_factory=Counter)
    mcq_skipped_yes_no: int = 0
    zoom_fallback: int = 0
    images: dict = field(default_factory=dict)
    skipped_inputs: list = field(default_factory=list)
    crops_written: int = 0
    usage: dict = field(default_factory=dict)

    def count(self, rec: dict) -> None:
        m = rec["meta"]
        self.records[m["type"]] += 1
        for key, value in (("qtype", m["qtype"]), ("category", m["category"]), ("source", rec["source"]),
                           ("chain", m["chain"])):
            self.by[key][f"{m['type']}/{value}"] += 1

    def as_dict(self) -> dict:
        return {"records": dict(self.records), **{f"by_{k}": dict(sorted(v.items())) for k, v in self.by.items()},
                "region_rejects": {r: self.region_rejects.get(r, 0) for r in QA_REJECTS},
                "mcq_rejects": {r: self.mcq_rejects.get(r, 0) for r in MCQ_REJECTS},
                "mcq_skipped_yes_no": self.mcq_skipped_yes_no, "zoom_fallback_single": self.zoom_fallback,
                "images": self.images, "skipped_inputs": self.skipped_inputs, "crops_written": self.crops_written,
                "llm_usage": self.usage}

    def format(self) -> str:
        d = self.as_dict()
        lines = [f"records: {', '.join(f'{k} {v}' for k, v in d['records'].items()) or 'none'}"]
        for key in ("qtype", "category", "source", "chain"):
            lines.append(f"by {key}:")
            lines += [f"  {k:40s} {v}" for k, v in d.get(f"by_{key}", {}).items()]
        lines.append("region QA rejects: " + ", ".join(f"{k} {v}" for k, v in d["region_rejects"].items()))
        lines.append("MCQ rejects: " + ", ".join(f"{k} {v}" for k, v in d["mcq_rejects"].items())
                     + f"; yes/no skipped {d['mcq_skipped_yes_no']}")
        lines.append(f"images: {d['images']}; skipped label files: {len(d['skipped_inputs'])}; "
                     f"crops written: {d['crops_written']}")
        if d["llm_usage"]:
            u = d["llm_usage"]
            lines.append(f"LLM: {u['sent']} requests sent, {u['cached']} from the cache, {u['failed']} failed; "
                         f"tokens {u['prompt_tokens']} prompt + {u['completion_tokens']} completion "
                         f"(cached: {u['cached_prompt_tokens']} + {u['cached_completion_tokens']}); "
                         f"cost {u['cost']:.4f}")
        return "\n".join(lines)


def _rng(seed: int, *keys) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(str(k).encode()) for k in keys)])


class ZoomBuilder:
    """One build of ``cfg`` (module docstring). :meth:`run` returns the :class:`Summary`."""

    def __init__(self, cfg: ZoomBuildConfig):
        self.cfg = cfg
        self.geometry = ChainGeometry(cfg.chain)
        self.templates = load_templates(cfg.templates.templates)
        self.prompts = load_prompts(cfg.llm.prompts)
        self.out = Path(cfg.out)
        self.crops = CropWriter(self.out / "crops")
        self.summary = Summary()
        if cfg.image_root is not None:
            root = Path(cfg.image_root).resolve()
            for inp in cfg.inputs:
                if not self._under(Path(inp.images).resolve(), root):
                    raise ValueError(f"inputs[{inp.name}].images: {inp.images} is not under image_root {root}")
            if not self._under((self.out / "crops").resolve(), root):
                raise ValueError(f"out: {self.out}/crops is not under image_root {root}; put out under it or "
                                 "leave image_root unset (absolute paths)")
        self.llm: LLMClient | None = None
        if (cfg.region.enabled and cfg.region.references_per_image) or cfg.mcq.enabled:
            self.llm = LLMClient(cfg.llm, cfg.llm.cache or self.out / "llm_cache.jsonl")

    @staticmethod
    def _under(path: Path, root: Path) -> bool:
        return path == root or root in path.parents

    def _path(self, path: str) -> str:
        return path if self.cfg.image_root is None else os.path.relpath(path, Path(self.cfg.image_root).resolve())

    def _object_roi(self, size):
        from rscovlm.data.zoom.regions import budget_side, coarse_region

        r = self.cfg.region
        return lambda hbb: coarse_region(hbb, size, r.padding, r.min_side, budget_side(self.cfg.chain.crop_max_pixels))

    # ---- records of one pair ----------------------------------------------------------------------------------
    def _record(self, image: UHRImage, src, rec_id: str, question: str, answer: str, roi, meta: dict) -> dict:
        meta = {"image_id": image.image_id, "labels": image.where, **meta}
        path = self._path(image.path)
        if roi is not None:
            plan = self.geometry.plan(roi, image.size)
            if plan is not None:
                crop = self._path(self.crops.write(src, image, plan["crop"], plan["crop_size"]))
                return zoom_record(rec_id, image.source, path, image.size, question, answer, plan, crop, roi,
                                   self.geometry, meta)
            self.summary.zoom_fallback += 1
        return single_record(rec_id, image.source, path, image.size, question, answer, meta)

    def _open_question(self, question: str) -> str:
        instruction = self.templates.instruction
        return f"{question}\n{instruction}" if instruction else question

    # ---- LLM bodies -------------------------------------------------------------------------------------------
    def _region_body(self, src, image: UHRImage, index: int, region) -> dict:
        from rscovlm.imageio import resize_to
        from rscovlm.infer.openai_backend import to_openai_messages
        from rscovlm.protocol.prompt_sets import render
        from rscovlm.resolution import ResolutionPolicy

        x0, y0 = int(np.floor(region[0])), int(np.floor(region[1]))
        x1, y1 = int(np.ceil(region[2])), int(np.ceil(region[3]))
        budget = self.cfg.llm.image_max_pixels
        policy = ResolutionPolicy(min(224 * 224, budget), budget, 28, uhr_min_pixels=max(budget, 4 * 1008 * 1008))
        size = policy.plan(x1 - x0, y1 - y0).model_size
        picture = resize_to(src.crop(x0, y0, x1, y1), size)
        sx, sy = size[0] / (x1 - x0), size[1] / (y1 - y0)
        hbb = image.hbbs[index]
        box = [int((hbb[0] - x0) * sx), int((hbb[1] - y0) * sy), int((hbb[2] - x0) * sx), int((hbb[3] - y0) * sy)]
        p = self.prompts["region_qa"]
        text = render(p["user"], category=image.names()[index], n=self.cfg.region.qa_per_reference,
                      **dict(zip(("x1", "y1", "x2", "y2"), box)))
        messages = ([{"role": "system", "content": p["system"]}] if p.get("system") else []) + [
            {"role": "user", "content": [{"type": "image", "image": picture}, {"type": "text", "text": text}]}]
        return {"messages": to_openai_messages(messages)}

    def _mcq_body(self, question: str, answer: str) -> dict:
        from rscovlm.protocol.prompt_sets import render

        p = self.prompts["mcq"]
        text = render(p["user"], question=question, answer=answer)
        return {"messages": ([{"role": "system", "content": p["system"]}] if p.get("system") else [])
                + [{"role": "user", "content": text}]}

    # ---- one chunk of images ----------------------------------------------------------------------------------
    def _chunk(self, images: list[UHRImage], writers: dict) -> None:
        from rscovlm.imageio import ImageSource

        cfg = self.cfg
        open_pairs = []  # (image index, record) of open-ended records (MCQ candidates)
        region_jobs = []  # (image index, reference index, why, region, body)
        sources = [ImageSource(im.path) for im in images]
        try:
            for k, (image, src) in enumerate(zip(images, sources)):
                rng = _rng(cfg.seed, image.source, image.image_id)
                names = image.names()
                if cfg.templates.enabled:
                    qas = template_questions(names, image.hbbs, image.size, cfg.templates, self.templates, rng,
                                             self._object_roi(image.size))
                    for j, qa in enumerate(qas):
                        rec = self._qa_record(image, src, f"{image.source}/{image.image_id}/t{j}", qa, "template")
                        open_pairs.append((k, rec, qa.roi))
                if cfg.region.enabled and cfg.region.references_per_image and len(names):
                    refs = unique_references(names, image.hbbs, cfg.region, self._object_roi(image.size), rng)
                    for i, why, region in refs:
                        region_jobs.append((k, i, why, region, self._region_body(src, image, i, region)))
            if region_jobs:
                replies = self.llm.run([job[4] for job in region_jobs])
                for (k, i, why, region, _), reply in zip(region_jobs, replies):
                    image = images[k]
                    pairs = parse_region_qa(reply.content, cfg.region.qa_per_reference, self.summary.region_rejects)
                    for j, pair in enumerate(pairs):
                        qa = QA(pair["type"], image.names()[i], pair["question"], pair["answer"],
                                [image.hbbs[i].tolist()], [float(v) for v in region],
                                {"reference": {"index": int(i), "why": why}})
                        rec = self._qa_record(image, sources[k], f"{image.source}/{image.image_id}/r{i}_{j}", qa,
                                              "region")
                        open_pairs.append((k, rec, qa.roi))
            for _, rec, _ in open_pairs:
                writers[rec["meta"]["type"]].write(json.dumps(rec, ensure_ascii=False) + "\n")
                self.summary.count(rec)
            if cfg.mcq.enabled:
                self._mcq(images, sources, open_pairs, writers)
        finally:
            for src in sources:
                src.close()

    def _qa_record(self, image, src, rec_id: str, qa: QA, kind: str) -> dict:
        meta = {"type": kind, "qtype": qa.qtype, "category": qa.category, "question": qa.question,
                "evidence": [[round(float(v), 3) for v in b] for b in qa.evidence], **qa.info}
        return self._record(image, src, rec_id, self._open_question(qa.question), qa.answer, qa.roi, meta)

    def _mcq(self, images, sources, open_pairs, writers) -> None:
        jobs = []
        for k, rec, roi in open_pairs:
            m = rec["meta"]
            answer = rec["messages"][-1]["content"]
            if is_yes_no(answer):
                self.summary.mcq_skipped_yes_no += 1
                continue
            rng = _rng(self.cfg.seed, rec["id"], "mcq")
            if rng.random() >= self.cfg.mcq.fraction:
                continue
            jobs.append((k, rec, roi, rng, self._mcq_body(m["question"], answer)))
        if not jobs:
            return
        replies = self.llm.run([j[4] for j in jobs])
        z = self.geometry.zoom
        for (k, rec, roi, rng, _), reply in zip(jobs, replies):
            m = rec["meta"]
            answer = rec["messages"][-1]["content"]
            options = check_options(reply.content, answer, self.summary.mcq_rejects)
            if options is None:
                continue
            choices, letter = letter_options(options, answer, rng)
            question = z.mcq_question(m["question"], choices, training=False)
            meta = {k2: v for k2, v in m.items() if k2 in ("qtype", "category", "question", "evidence", "reference")}
            meta.update({"type": "mcq", "from": rec["id"], "from_type": m["type"], "options": choices,
                         "answer_text": answer})
            out = self._record(images[k], sources[k], rec["id"] + "/mcq", question, letter, roi, meta)
            writers["mcq"].write(json.dumps(out, ensure_ascii=False) + "\n")
            self.summary.count(out)

    def run(self, progress: bool = True) -> Summary:
        from tqdm import tqdm

        self.out.mkdir(parents=True, exist_ok=True)
        parts = {k: self.out / (name + ".part") for k, name in OUTPUT_FILES.items()}
        writers = {k: open(p, "w", encoding="utf-8") for k, p in parts.items()}
        report = InputReport()
        try:
            with tqdm(desc="build-zoom", unit="img", disable=not progress, file=sys.stderr) as bar:
                for inp in self.cfg.inputs:
                    chunk: list[UHRImage] = []
                    for image in read_input(inp, self.cfg.skip_invalid, report):
                        chunk.append(image)
                        if len(chunk) >= self.cfg.chunk_images:
                            self._chunk(chunk, writers)
                            bar.update(len(chunk))
                            chunk = []
                    if chunk:
                        self._chunk(chunk, writers)
                        bar.update(len(chunk))
        finally:
            for w in writers.values():
                w.close()
            if self.llm is not None:
                self.llm.close()
        for k, p in parts.items():
            os.replace(p, self.out / OUTPUT_FILES[k])
        s = self.summary
        s.images, s.skipped_inputs, s.crops_written = dict(report.images), list(report.skipped), self.crops.written
        if self.llm is not None:
            s.usage = self.llm.usage.as_dict(self.cfg.llm)
        (self.out / "summary.json").write_text(json.dumps(s.as_dict(), indent=1, ensure_ascii=False) + "\n")
        return s


def build_zoom(cfg: ZoomBuildConfig, progress: bool = True) -> Summary:
    """Run the builder (module docstring)."""
    return ZoomBuilder(cfg).run(progress)
