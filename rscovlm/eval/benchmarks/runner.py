"""Running benchmarks (``rscovlm eval run``): answers appended as they come, resumable, sharded, settings saved.

Run folder ``O/<bench>/``::

    answers.jsonl           one answer line per item (rscovlm.eval.benchmarks.base), in the order answered
    answers.rank{i}.jsonl   shard ``i`` of ``n`` (``--shard i/n``, or torchrun's RANK / WORLD_SIZE) until merged
    run.json                {"bench", "data_root", "limit", "prompt_set", "options", "settings"}

**Crash safety.** Each batch's lines are written with one ``write`` and flushed to disk (``fdatasync``) before the
next batch starts, so a killed run loses at most the batch in flight. A kill in the middle of that write can leave
a torn last line (no newline at the end): the next run drops it, says so on stderr, and answers that item again.
A broken line anywhere else is an error naming ``file:line`` (never skipped).

**Resume.** A run skips every item that has an answer in any answer file of the folder. It refuses to resume when
the saved settings (model, backend, model family, prompt set, pixels, decoding, budgets, rscovlm version and git
commit, benchmark options, data root) differ from this run's - ``force`` resumes anyway and keeps the earlier
settings under ``"superseded"`` in ``run.json``.

**Sharding.** Shard ``i`` of ``n`` answers items ``i, i + n, i + 2n, ...`` (item order) into its own file; any
number of processes (``torchrun``, or one ``--shard`` per GPU) run side by side. :func:`merge_shards`
(``rscovlm eval merge O``, or automatically when scoring) joins them into ``answers.jsonl`` in item order, checking
that no id is answered twice and none is missing. Items are answered in the same batches in every shard layout only
when the batch size is 1; with larger batches, left padding can differ (answers agree up to floating point).

**What is sent.** Every item is sent as :meth:`Benchmark.messages` builds it (``rscovlm eval show-prompt`` prints
it), through any backend (:mod:`rscovlm.infer.backends`), per item with the budget of its task
(:data:`rscovlm.infer.backends.TASK_MAX_NEW_TOKENS`; the synthetic benchmark's items have their own tasks).
Two kinds of benchmark go through the inference machinery made for them:

* the Zoom-in Chain (``lrs_vqa_zoom``): :class:`rscovlm.infer.zoom.ZoomChain` (pass 1 with the tool prompt, the
  crop read from the full-resolution original, pass 2); the line's ``text`` is the final answer, ``turns`` the
  earlier assistant turns and ``zoom`` the chain's status and calls;
* DOTA (``dota_val``, ``dota_test``): each item is one 512 / 100 split window, read from the image with padding
  outside it and resized by :class:`rscovlm.infer.detect.Detector`'s patch plan (512 -> 504 within 224^2-1008^2,
  or Max Mode); scoring merges the windows (:mod:`rscovlm.eval.benchmarks.dota`).

Detection answers (DOTA windows, the synthetic detection items) also carry ``"scores"``: the per-object
confidence from the token log-probs (:mod:`rscovlm.infer.confidence`; null where it cannot be computed), one per
object that :func:`rscovlm.protocol.detection.parse_detections` reads from ``text`` with the DOTA-v1.0 vocabulary,
in that order - so scoring can rank detections by confidence without the model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from rscovlm.eval.benchmarks.base import AnswersError, Benchmark, Item

ANSWERS = "answers.jsonl"
RUN_JSON = "run.json"
_RANK_FILE = re.compile(r"^answers\.rank(\d+)\.jsonl$")
DETECTION_VOCABULARY = "dota-v1.0"


class RunSettingsError(ValueError):
    """A resume whose settings differ from the saved ones (the message lists them)."""


# ---- answer files --------------------------------------------------------------------------------------------

def rank_file(rank: int) -> str:
    return f"answers.rank{rank}.jsonl"


def answer_files(folder: Path) -> list[Path]:
    """``answers.jsonl`` (when present) and the shard files of ``folder``, shard files by rank."""
    shards = sorted((p for p in folder.glob("answers.rank*.jsonl") if _RANK_FILE.match(p.name)),
                    key=lambda p: int(_RANK_FILE.match(p.name).group(1)))
    main = folder / ANSWERS
    return ([main] if main.is_file() else []) + shards


def read_answer_lines(path: Path, repair: bool = False, note=None) -> list[dict]:
    """The answer lines of ``path`` in file order. A torn last line (the file does not end with a newline: a write
    cut by a kill) is dropped and reported through ``note`` (a callable taking a message); with ``repair`` the file
    is also cut back to its last complete line. Any other line that is not a JSON object with a string ``id`` and
    a string ``text`` is an error naming ``file:line``."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        if note is not None:
            note(f"{path}: dropped a torn last line ({len(data) - end} bytes, no newline) left by an interrupted "
                 "run; its item is answered again")
        if repair:
            with open(path, "r+b") as fh:
                fh.truncate(end)
                fh.flush()
                os.fsync(fh.fileno())
    lines = []
    for number, raw in enumerate(data[:end].split(b"\n")[:-1], 1):
        try:
            rec = json.loads(raw)
        except ValueError as err:
            raise AnswersError(f"{path}:{number}: not a JSON line ({err})") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("id"), str) or not isinstance(rec.get("text"), str):
            raise AnswersError(f'{path}:{number}: an answer line needs a string "id" and a string "text"')
        rec["_where"] = f"{path}:{number}"
        lines.append(rec)
    return lines


def _sync(fd: int) -> None:
    """The written data on disk: ``fdatasync`` (data and size, what an append needs) where there is one."""
    getattr(os, "fdatasync", os.fsync)(fd)


class AnswerLog:
    """Appends whole batches of answer lines to one file, each batch written at once and fsync'ed."""

    def __init__(self, path: Path):
        self.path = path
        self._fh = open(path, "ab")

    def append(self, lines: Iterable[dict]) -> None:
        blob = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode("utf-8")
        if blob:
            self._fh.write(blob)
            self._fh.flush()
            _sync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "AnswerLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def merge_shards(folder: str | os.PathLike, items: list[Item], allow_missing: bool = False, note=_stderr) -> dict:
    """Join ``answers.jsonl`` and the shard files of ``folder`` into ``answers.jsonl`` in item order (shard files
    removed). A second answer for an id (in any two files), an answer for an id that is not an item, or - unless
    ``allow_missing`` - an item without an answer is an error naming the files; a torn last line is dropped and
    reported through ``note``. Returns ``{"answers", "missing", "files"}``."""
    folder = Path(folder)
    files = answer_files(folder)
    found: dict[str, dict] = {}
    for path in files:
        for rec in read_answer_lines(path, note=note):
            if rec["id"] in found:
                raise AnswersError(f"{rec['_where']}: a second answer for id {rec['id']!r} (first at "
                                   f"{found[rec['id']]['_where']})")
            found[rec["id"]] = rec
    known = {it.id for it in items}
    unknown = [i for i in found if i not in known]
    if unknown:
        raise AnswersError(f"{folder}: {len(unknown)} answers for ids that are not items of the run (first: "
                           f"{found[unknown[0]]['_where']}, id {unknown[0]!r})")
    missing = [it.id for it in items if it.id not in found]
    if missing and not allow_missing:
        raise AnswersError(f"{folder}: {len(missing)} of {len(items)} items have no answer in "
                           f"{', '.join(p.name for p in files) or 'any answer file'} (first: {missing[:5]}); "
                           "finish every shard, or merge what is there with --partial")
    lines = [{k: v for k, v in found[it.id].items() if k != "_where"} for it in items if it.id in found]
    _write_atomic(folder / ANSWERS, "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    for path in files:
        if path.name != ANSWERS:
            path.unlink()
    return {"answers": len(lines), "missing": len(missing), "files": [p.name for p in files]}


# ---- settings ------------------------------------------------------------------------------------------------

def code_version() -> dict:
    """``{"rscovlm": version, "git": commit or None}`` of the code that runs (the commit when the package lives in
    a git work tree)."""
    from rscovlm import __version__

    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        sha = None
    return {"rscovlm": __version__, "git": sha}


def backend_settings(backend) -> dict:
    """Decoding options and pixel budget of a backend object (what changes its answers)."""
    from rscovlm.infer.backends import DecodingOptions

    cfg = getattr(backend, "config", None)
    decoding = {f.name: getattr(cfg, f.name, None) for f in dataclasses.fields(DecodingOptions)
                if f.name != "logprobs"}
    out = {"decoding": decoding, "max_new_tokens": getattr(cfg, "max_new_tokens", None)}
    policy = getattr(backend, "policy", None)
    if policy is not None:
        out["pixels"] = {"min_pixels": policy.min_pixels, "max_pixels": policy.max_pixels, "factor": policy.factor}
    elif cfg is not None and hasattr(cfg, "min_pixels"):
        out["pixels"] = {"min_pixels": cfg.min_pixels, "max_pixels": cfg.max_pixels}
    return out


def _diff(old, new, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in list(dict.fromkeys([*old, *new])):
            out += _diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: saved {old!r}, now {new!r}"]


# ---- the runner ----------------------------------------------------------------------------------------------

@dataclass
class RunConfig:
    """Options of one ``rscovlm eval run`` over one or more benchmarks."""

    out: str = field(metadata={"help": "run folder: O/<bench>/answers.jsonl and run.json"})
    data_root: str = field(metadata={"help": "folder holding the benchmarks' released files"})
    limit: int | None = field(default=None, metadata={"help": "answer only the first N items of each benchmark"})
    prompt_set: str = field(default="reference", metadata={"help": "prompt set (reference = the released "
                                                                    "checkpoints' strings), or a folder"})
    batch_size: int = field(default=8, metadata={"help": "items per backend call and per write"})
    shard: tuple[int, int] | None = field(default=None, metadata={"help": "(i, n): answer items i, i+n, ..."})
    force: bool = field(default=False, metadata={"help": "resume even when the saved settings differ"})
    max_new_tokens: int | None = field(default=None, metadata={"help": "answer budget of every item (default: "
                                                                       "its task's)"})
    confidence: bool = field(default=True, metadata={"help": "detection answers: token log-probs -> per-object "
                                                             "scores"})
    family: str = field(default="qwen2_5_vl", metadata={"help": "model family: the frame of answers' boxes"})
    progress: bool = field(default=True, metadata={"help": "progress bar on stderr"})

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.shard is not None:
            i, n = self.shard
            if not (n >= 1 and 0 <= i < n):
                raise ValueError(f"shard {i}/{n}: need 0 <= i < n")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)``."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not int(m.group(1)) < int(m.group(2)):
        raise ValueError(f"shard {text!r}: write i/n with 0 <= i < n (e.g. 0/2)")
    return int(m.group(1)), int(m.group(2))


def env_shard() -> tuple[int, int] | None:
    """``(RANK, WORLD_SIZE)`` under torchrun (and other launchers that set them), when WORLD_SIZE > 1."""
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return None
    return (rank, world) if world > 1 and 0 <= rank < world else None


def item_task(bench: Benchmark, item: Item) -> str:
    """The backend task (its new-token budget) of one item: the item's own (synthetic) or the benchmark's."""
    from rscovlm.infer.backends import TASK_MAX_NEW_TOKENS

    task = item.meta.get("task")
    return task if isinstance(task, str) and task in TASK_MAX_NEW_TOKENS else bench.task


class BenchRunner:
    """Answers benchmarks with one backend (see the module docstring). ``model``: what ``settings`` names as the
    model (a path is made absolute); ``backend_name``: the registry name of ``backend``."""

    def __init__(self, backend, config: RunConfig, model: str, backend_name: str, note=None):
        from rscovlm.model.families import family_for

        self.backend = backend
        self.config = config
        self.model = os.path.abspath(model) if os.path.exists(model) else model
        self.backend_name = backend_name
        self.family = family_for(config.family)
        self.note = note or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._code = None
        self._sizes: dict[str, tuple[int, int]] = {}
        self._source = (None, None)

    # ---- settings ---------------------------------------------------------------------------------------------
    def _zoom_config(self):
        from rscovlm.infer.zoom import ZoomConfig

        return ZoomConfig(prompt_set=self.config.prompt_set, family=self.family.name, benchmark="lrsvqa",
                          max_new_tokens=self.config.max_new_tokens)

    def _detect_config(self):
        from rscovlm.infer.detect import DetectConfig

        return DetectConfig(prompt_set=self.config.prompt_set, family=self.family.name,
                            max_new_tokens=self.config.max_new_tokens, confidence=self.config.confidence)

    def settings(self, bench: Benchmark) -> dict:
        """What the answers depend on (saved in run.json and compared on resume)."""
        if self._code is None:
            self._code = code_version()
        s = {"model": self.model, "backend": self.backend_name, "family": self.family.name,
             "prompt_set": self.config.prompt_set, **backend_settings(self.backend),
             "confidence": self.config.confidence, "code": self._code}
        if self.config.max_new_tokens is not None:
            s["max_new_tokens"] = self.config.max_new_tokens
        if bench.pixels:
            s["pixels"] = dict(bench.pixels)
        if bench.task == "zoom":
            s["zoom"] = dataclasses.asdict(self._zoom_config())
        if _is_dota(bench):
            c = self._detect_config()
            s["detect"] = {k: getattr(c, k) for k in ("patch_size", "gap", "padding_value", "max_mode",
                                                      "min_pixels", "max_pixels", "factor")}
        return s

    def _record(self, bench: Benchmark) -> dict:
        options = bench.options() if hasattr(bench, "options") else {}
        return {"bench": bench.name, "data_root": str(Path(self.config.data_root).resolve()),
                "limit": self.config.limit, "prompt_set": self.config.prompt_set, "options": options,
                "settings": self.settings(bench)}

    def _check_run_json(self, folder: Path, record: dict, has_answers: bool) -> dict:
        """The run.json to write: this run's record, checked against the saved one when resuming."""
        path = folder / RUN_JSON
        if not path.is_file():
            return record
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise RunSettingsError(f"{path}: not valid JSON ({err}); move it away or use a new --out") from None
        if not has_answers:
            return record
        diffs = _diff({k: saved.get(k) for k in ("bench", "data_root", "options", "settings")},
                      {k: record.get(k) for k in ("bench", "data_root", "options", "settings")})
        if diffs and not self.config.force:
            raise RunSettingsError(f"{path}: this run's settings differ from those the saved answers were made "
                                   "with:\n  " + "\n  ".join(diffs) + "\nuse a new --out, or --force to resume "
                                   "anyway (the earlier settings are kept under \"superseded\")")
        if diffs:
            record["superseded"] = saved.get("superseded", []) + [saved.get("settings")]
        elif "superseded" in saved:
            record["superseded"] = saved["superseded"]
        old, new = saved.get("limit"), record["limit"]
        record["limit"] = None if old is None or new is None else max(old, new)  # answered items stay in scope
        return record

    # ---- running ----------------------------------------------------------------------------------------------
    def run(self, bench: Benchmark, desc: str | None = None) -> dict:
        """Answer the items of ``bench`` not answered yet (``desc``: the progress bar's label, default the
        benchmark's name); returns ``{"bench", "items", "answered", "skipped", "file"}``."""
        from tqdm.auto import tqdm

        c = self.config
        folder = Path(c.out) / bench.name
        folder.mkdir(parents=True, exist_ok=True)
        items = bench.items(c.data_root, c.limit)
        record = self._record(bench)
        own = folder / (ANSWERS if c.shard is None else rank_file(c.shard[0]))
        done: set[str] = set()
        for path in answer_files(folder):
            # only this process's own file is cut back; another shard's may be mid-write
            lines = read_answer_lines(path, repair=path == own, note=self.note if path == own else None)
            done.update(rec["id"] for rec in lines)
        record = self._check_run_json(folder, record, bool(done))
        _write_atomic(folder / RUN_JSON, json.dumps(record, indent=2) + "\n")
        mine = items if c.shard is None else items[c.shard[0]::c.shard[1]]
        todo = [it for it in mine if it.id not in done]
        desc = desc or bench.name
        if c.shard is not None:
            desc += f" [shard {c.shard[0]}/{c.shard[1]}]"
        with tqdm(total=len(mine), initial=len(mine) - len(todo), desc=desc, unit="answer", file=sys.stderr,
                  disable=not c.progress, dynamic_ncols=True) as bar, AnswerLog(own) as log:
            for start in range(0, len(todo), c.batch_size):
                batch = todo[start:start + c.batch_size]
                log.append(self.answer(bench, batch))
                bar.update(len(batch))
        self._close_source()
        return {"bench": bench.name, "items": len(mine), "answered": len(todo), "skipped": len(mine) - len(todo),
                "file": str(own)}

    def answer(self, bench: Benchmark, batch: list[Item]) -> list[dict]:
        """The answer lines of ``batch`` (in its order)."""
        if bench.task == "zoom":
            return self._answer_zoom(batch)
        lines: dict[str, dict] = {}
        groups: dict[str, list[Item]] = {}
        for it in batch:
            groups.setdefault(item_task(bench, it), []).append(it)
        for task, group in groups.items():
            convs, originals = [], []
            for it in group:
                msgs = bench.messages(it, self.config.prompt_set)
                if "window" in it.meta:
                    msgs, original = self._window_messages(it, msgs)
                else:
                    original = self._size(it.image)
                convs.append(msgs)
                originals.append(original)
            logprobs = task == "detection" and self.config.confidence
            gens = self.backend.generate_results(convs, self.config.max_new_tokens, None, task, logprobs=logprobs)
            for it, gen, original in zip(group, gens, originals):
                line = {"id": it.id, "text": gen.text,
                        "resize": {"original": list(original),
                                   "model": list(gen.image_sizes[0]) if gen.image_sizes else None},
                        "finish_reason": gen.finish_reason}
                if task == "detection" and self.config.confidence and gen.image_sizes:
                    line["scores"] = self._scores(gen)
                lines[it.id] = line
        return [lines[it.id] for it in batch]

    def _scores(self, gen) -> list[float | None]:
        import math

        from rscovlm.infer.confidence import detections_with_confidence
        from rscovlm.protocol.categories import get_category_set

        _, scores = detections_with_confidence(gen.text, gen.tokens, gen.token_logprobs,
                                               frame=self.family.box_frame_for(*gen.image_sizes[0]),
                                               categories=get_category_set(DETECTION_VOCABULARY))
        return [None if math.isnan(s) else round(float(s), 6) for s in scores]

    def _size(self, image: str) -> tuple[int, int]:
        from rscovlm.imageio import display_size

        if image not in self._sizes:
            self._sizes[image] = display_size(image)
        return self._sizes[image]

    def _window_messages(self, item: Item, msgs: list[dict]) -> tuple[list[dict], tuple[int, int]]:
        """A DOTA window: the patch read from the image (padded outside it) at the Detector's patch size."""
        from PIL import Image

        from rscovlm.imageio import ImageSource, resize_to
        from rscovlm.infer.detect import Detector

        if getattr(self, "_detector", None) is None:
            self._detector = Detector(self.backend, self._detect_config())
        det = self._detector
        if self._source[0] != item.image:
            self._close_source()
            self._source = (item.image, ImageSource(item.image))
        x1, y1, x2, y2 = item.meta["window"]
        band = self._source[1].read_padded(x1, y1, x2, y2, det.config.padding_value)
        w, h = det.plan.model_size
        patch = resize_to(Image.fromarray(band), (w, h))
        for m in msgs:
            if isinstance(m.get("content"), list):
                m["content"] = [{"type": "image", "image": patch, "resized_width": w, "resized_height": h}
                                if p.get("type") == "image" else p for p in m["content"]]
        return msgs, (x2 - x1, y2 - y1)

    def _close_source(self) -> None:
        if self._source[1] is not None:
            self._source[1].close()
        self._source = (None, None)

    def _answer_zoom(self, batch: list[Item]) -> list[dict]:
        from rscovlm.infer.runners import Query
        from rscovlm.infer.zoom import ZoomChain

        if getattr(self, "_chain", None) is None:
            self._chain = ZoomChain(self.backend, self._zoom_config())
        queries = [Query(it.image, it.fields["question"], category=it.meta.get("category"), id=it.id)
                   for it in batch]
        lines = []
        for it, r in zip(batch, self._chain.run(queries)):
            z = r.zoom
            lines.append({"id": it.id, "text": r.raw,
                          "resize": {"original": list(r.size), "model": list(r.model_size) if r.model_size else None},
                          "finish_reason": r.generation.finish_reason, "turns": z["pass_answers"],
                          "zoom": {"status": z["status"], "calls": z["calls"]}})
        return lines


def _is_dota(bench: Benchmark) -> bool:
    from rscovlm.eval.benchmarks.dota import _Dota

    return isinstance(bench, _Dota)


def merge_run(out: str | os.PathLike, benches: list[str] | None = None, allow_missing: bool = False) -> dict:
    """Merge the shard files of every benchmark folder of the run folder ``out`` (or of ``benches``) that has
    any: ``{bench: merge_shards(...)}``."""
    from rscovlm.eval.benchmarks.results import bench_of_folder

    out = Path(out)
    if not out.is_dir():
        raise AnswersError(f"{out}: no such run folder")
    folders = [out / b for b in benches] if benches else sorted(p for p in out.iterdir() if p.is_dir())
    merged = {}
    for folder in folders:
        if any(p.name != ANSWERS for p in answer_files(folder)):
            bench, run = bench_of_folder(folder)
            merged[bench.name] = merge_shards(folder, bench.items(run["data_root"], run.get("limit")), allow_missing)
    return merged


__all__ = ["AnswerLog", "BenchRunner", "RunConfig", "RunSettingsError", "answer_files", "code_version",
           "env_shard", "merge_run", "merge_shards", "parse_shard", "read_answer_lines"]
