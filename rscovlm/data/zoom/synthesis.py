"""LLM steps of LRS-VQA-Zoom: the OpenAI-compatible client (cache, rate limit, retries, usage and cost) and the
region QA synthesis (paper 3.4.2).

Client (:class:`LLMClient`)
---------------------------
Any OpenAI-compatible chat-completions endpoint (a local ``vllm serve``, a hosted API): ``base_url``, ``model``,
the key read from the environment variable ``api_key_env`` (never written anywhere). Requests go through
:meth:`rscovlm.infer.openai_backend.OpenAIBackend.request` (retries with exponential backoff on connection
failures, timeouts, HTTP 408/409/429/5xx and bodies that are not a chat completion), at most ``concurrency`` at
once and at most ``requests_per_minute`` started per minute.

Cache: every answered request is appended to a JSON Lines file as soon as it arrives (written, flushed and
fsync'ed under a lock), one line ``{"key": sha256 of the request body, "content": the reply text, "usage":
{"prompt_tokens", "completion_tokens"}}``. A run first reads the cache and sends only the requests it does not
hold, so a run killed at any moment loses at most the requests in flight and repeats none that finished; a
last line cut by the kill is ignored (counted). Replies are cached whatever their content: a reply that fails
validation is rejected again, identically, on the next run (the same request gets the same answer). Requests
that failed after their retries are not cached (a rerun tries them again) and are counted; when every request
of a batch failed the endpoint is taken as down and the run stops with that error (resume later).

Usage report (:class:`Usage`): requests sent, answered from the cache, failed; prompt and completion tokens of
the sent requests (the server's ``usage``) and of the cached ones; cost = tokens x the configured prices per
million.

Region QA
---------
Unique references (:func:`unique_references`): an object that is the only one of its category in the image
(``sole``), or whose coarse region holds no other object of its category (``isolated``: distinguishable where the
question is asked). Its coarse region (:func:`rscovlm.data.zoom.regions.coarse_region`) is cut from the original,
resized into ``llm.image_max_pixels`` and sent with the ``region_qa`` prompt of ``prompts.yaml``; the reply must
be JSON: a list of ``{"question", "answer", "type"}`` with type among :data:`QA_TYPES`. Every pair is checked;
rejects are counted by reason (:data:`QA_REJECTS`). The coarse region is the zoom target of the pairs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PROMPTS = Path(__file__).with_name("prompts.yaml")
QA_TYPES = ("color", "category", "shape", "status", "spatial", "scene")
QA_REJECTS = ("request_failed", "not_json", "not_a_list", "bad_item", "bad_type", "duplicate_question")
_FENCE = re.compile(r"^\s*```(?:json)?\s*\n?(.*?)\n?\s*```\s*$", re.S)


@dataclass
class LLMConfig:
    """The OpenAI-compatible endpoint of the LLM steps."""

    base_url: str | None = field(default=None, metadata={
        "help": "server root ending in /v1; default: $RSCOVLM_BASE_URL, $OPENAI_BASE_URL, http://127.0.0.1:8000/v1"})
    model: str | None = field(default=None, metadata={"help": "model name; default: $RSCOVLM_MODEL, else rscovlm"})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={
        "help": "environment variable holding the key (the key itself never goes into a config)"})
    concurrency: int = field(default=4, metadata={"help": "requests in flight at once"})
    requests_per_minute: float | None = field(default=None, metadata={"help": "at most this many requests "
                                                                              "started per minute"})
    max_retries: int = field(default=3, metadata={"help": "further attempts after a retryable failure"})
    backoff_s: float = field(default=2.0, metadata={"help": "wait before the first retry; doubles each time"})
    timeout_s: float = field(default=300.0, metadata={"help": "seconds to wait for an answer"})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature (diverse questions)"})
    seed: int | None = field(default=None, metadata={"help": "seed sent with every request (servers that "
                                                             "honour it answer reproducibly)"})
    max_tokens: int = field(default=1024, metadata={"help": "max_tokens of every request"})
    image_max_pixels: int = field(default=1008 * 1008, metadata={
        "help": "pixel budget of the region picture sent (resized into it, sides multiples of 28)"})
    price_input_per_million: float = field(default=0.0, metadata={"help": "cost of a million prompt tokens"})
    price_output_per_million: float = field(default=0.0, metadata={"help": "cost of a million completion tokens"})
    cache: str | None = field(default=None, metadata={
        "help": "cache file (JSON Lines); default: OUT/llm_cache.jsonl"})
    prompts: str | None = field(default=None, metadata={"help": "prompt YAML replacing the packaged "
                                                                "rscovlm/data/zoom/prompts.yaml"})

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.max_retries < 0 or self.timeout_s <= 0 or self.backoff_s < 0:
            raise ValueError("llm: need concurrency >= 1, max_retries >= 0, timeout_s > 0, backoff_s >= 0")
        if self.requests_per_minute is not None and self.requests_per_minute <= 0:
            raise ValueError(f"llm.requests_per_minute: must be > 0, got {self.requests_per_minute}")


@dataclass
class Usage:
    """What the LLM steps cost (module docstring)."""

    sent: int = 0
    cached: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0
    cache_lines_dropped: int = 0

    def cost(self, cfg: LLMConfig) -> float:
        return (self.prompt_tokens * cfg.price_input_per_million
                + self.completion_tokens * cfg.price_output_per_million) / 1e6

    def as_dict(self, cfg: LLMConfig) -> dict:
        return {**self.__dict__, "cost": round(self.cost(cfg), 6)}


@dataclass
class Reply:
    """A request's answer: ``content`` (None when it failed: ``error``), whether it came from the cache."""

    content: str | None
    cached: bool = False
    error: str | None = None


class _RateLimit:
    """Request starts spaced by at least ``60 / per_minute`` seconds (shared by the worker threads)."""

    def __init__(self, per_minute: float | None):
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self.next = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next)
            self.next = start + self.interval
        if start > now:
            time.sleep(start - now)


def request_key(body: dict) -> str:
    """SHA-256 of the request body (canonical JSON): the cache key."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class LLMClient:
    """See the module docstring. ``run(bodies)`` answers chat-completions bodies (without ``model``) in order."""

    def __init__(self, cfg: LLMConfig, cache_path: str | os.PathLike):
        from rscovlm.infer.openai_backend import OpenAIBackend, OpenAIConfig

        self.cfg = cfg
        self.usage = Usage()
        self.backend = OpenAIBackend(OpenAIConfig(
            base_url=cfg.base_url, model=cfg.model, api_key=os.environ.get(cfg.api_key_env) or None,
            timeout_s=cfg.timeout_s, max_retries=cfg.max_retries, backoff_s=cfg.backoff_s))
        self.cache_path = Path(cache_path)
        self.cache: dict[str, dict] = {}
        self._load()
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.cache_path, "a", encoding="utf-8")
        self._lock = threading.Lock()
        self._limit = _RateLimit(cfg.requests_per_minute)

    def _load(self) -> None:
        if not self.cache_path.exists():
            return
        raw = self.cache_path.read_bytes()
        if raw and not raw.endswith(b"\n"):  # a line cut by a kill: drop it, and end the file cleanly
            cut = raw.rfind(b"\n") + 1
            with open(self.cache_path, "r+b") as fh:
                fh.truncate(cut)
            raw = raw[:cut]
            self.usage.cache_lines_dropped += 1
        for line_no, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                self.cache[entry["key"]] = entry
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{self.cache_path}:{line_no}: not a cache entry; delete the line or the file "
                                 "(its requests are then sent again)") from None

    def close(self) -> None:
        self._fh.close()

    def _store(self, key: str, content: str, usage: dict) -> None:
        line = json.dumps({"key": key, "content": content, "usage": usage}, ensure_ascii=False)
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self.cache[key] = {"key": key, "content": content, "usage": usage}

    def _send(self, key: str, body: dict) -> Reply:
        from rscovlm.infer.openai_backend import OpenAIBackendError

        self._limit.wait()
        try:
            payload = self.backend.request(body)
        except OpenAIBackendError as err:
            with self._lock:
                self.usage.failed += 1
            return Reply(None, error=str(err))
        content = payload["choices"][0]["message"]["content"] or ""
        u = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
        usage = {k: int(u.get(k) or 0) for k in ("prompt_tokens", "completion_tokens")}
        self._store(key, content, usage)
        with self._lock:
            self.usage.sent += 1
            self.usage.prompt_tokens += usage["prompt_tokens"]
            self.usage.completion_tokens += usage["completion_tokens"]
        return Reply(content)

    def run(self, bodies: list[dict]) -> list[Reply]:
        """Answers of ``bodies`` in order (cached ones without a request)."""
        c = self.cfg
        out: list[Reply | None] = [None] * len(bodies)
        todo: dict[str, tuple[dict, list[int]]] = {}  # one request per distinct body
        for i, body in enumerate(bodies):
            body = {**body, "max_tokens": c.max_tokens, "temperature": c.temperature,
                    **({"seed": c.seed} if c.seed is not None else {})}
            key = request_key({"model": self.backend.config.model, **body})
            hit = self.cache.get(key)
            if hit is not None:
                self.usage.cached += 1
                self.usage.cached_prompt_tokens += int(hit.get("usage", {}).get("prompt_tokens", 0))
                self.usage.cached_completion_tokens += int(hit.get("usage", {}).get("completion_tokens", 0))
                out[i] = Reply(hit["content"], cached=True)
            else:
                todo.setdefault(key, (body, []))[1].append(i)
        if todo:
            jobs = list(todo.items())
            with ThreadPoolExecutor(max_workers=c.concurrency) as pool:
                replies = list(pool.map(lambda t: self._send(t[0], t[1][0]), jobs))
            for (_, (_, where)), reply in zip(jobs, replies):
                for i in where:
                    out[i] = reply
            if all(r.error is not None for r in replies):
                from rscovlm.infer.openai_backend import OpenAIBackendError

                raise OpenAIBackendError(f"every one of {len(replies)} LLM request(s) failed, the endpoint looks "
                                         f"down ({replies[0].error}); the replies so far are in {self.cache_path}: "
                                         "run again to resume")
        return out  # type: ignore[return-value]


# ---- parsing replies ----------------------------------------------------------------------------------------

def parse_json_reply(text: str):
    """The JSON value of a reply (a ```json fence around it is accepted); raises ValueError when it is none."""
    m = _FENCE.match(text or "")
    return json.loads(m.group(1) if m else (text or "").strip())


def load_prompts(path: str | None = None) -> dict:
    """``{step: {"system", "user"}}`` from the prompt YAML (default: the packaged one), checked."""
    import yaml

    path = Path(path) if path else PROMPTS
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: prompt file not found") from None
    for step in ("region_qa", "mcq"):
        entry = data.get(step) if isinstance(data, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("user"), str):
            raise ValueError(f"{path}: {step}: expected a mapping with a 'user' text (and optional 'system')")
    return data


def parse_region_qa(text: str | None, n_max: int, rejects: Counter) -> list[dict]:
    """The valid ``{"question", "answer", "type"}`` pairs of a region-QA reply (at most ``n_max``); every
    reject counted in ``rejects`` by reason (:data:`QA_REJECTS`)."""
    if text is None:
        rejects["request_failed"] += 1
        return []
    try:
        value = parse_json_reply(text)
    except ValueError:
        rejects["not_json"] += 1
        return []
    if isinstance(value, dict) and isinstance(value.get("qa"), list):
        value = value["qa"]
    if not isinstance(value, list):
        rejects["not_a_list"] += 1
        return []
    out, seen = [], set()
    for item in value:
        if not (isinstance(item, dict) and isinstance(item.get("question"), str) and item["question"].strip()
                and isinstance(item.get("answer"), (str, int, float)) and not isinstance(item.get("answer"), bool)
                and str(item["answer"]).strip()):
            rejects["bad_item"] += 1
            continue
        qtype = str(item.get("type", "")).strip().lower()
        if qtype not in QA_TYPES:
            rejects["bad_type"] += 1
            continue
        q = item["question"].strip()
        if q.lower() in seen:
            rejects["duplicate_question"] += 1
            continue
        seen.add(q.lower())
        out.append({"question": q, "answer": str(item["answer"]).strip(), "type": qtype})
    return out[:n_max]


# ---- unique references --------------------------------------------------------------------------------------

@dataclass
class RegionConfig:
    """LLM-synthesized region QA (paper 3.4.2)."""

    enabled: bool = field(default=True, metadata={"help": "write region QA (needs the llm endpoint)"})
    unique: tuple[str, ...] = field(default=("sole", "isolated"), metadata={
        "help": "which objects are unique references: sole (only one of its category in the image), isolated "
                "(no other of its category inside its coarse region)"})
    references_per_image: int = field(default=3, metadata={"help": "unique references asked about per image"})
    qa_per_reference: int = field(default=3, metadata={"help": "question-answer pairs asked per reference"})
    padding: float = field(default=1.0, metadata={
        "help": "coarse region: the object's hbb grown by this share of its longer side on each side"})
    min_side: int = field(default=448, metadata={"help": "coarse region: at least this many pixels wide and high"})
    min_object_side: float = field(default=8.0, metadata={"help": "objects smaller than this (pixels, longer "
                                                                  "hbb side) are not references"})

    def __post_init__(self) -> None:
        self.unique = tuple(self.unique)
        bad = set(self.unique) - {"sole", "isolated"}
        if bad or not self.unique:
            raise ValueError(f"region.unique: expected some of ['sole', 'isolated'], got {list(self.unique)}")
        if self.references_per_image < 0 or self.qa_per_reference < 1 or self.padding < 0 or self.min_side < 1:
            raise ValueError("region: need references_per_image >= 0, qa_per_reference >= 1, padding >= 0, "
                             "min_side >= 1")


def unique_references(labels: list[str], hbbs: np.ndarray, cfg: RegionConfig, region_of,
                      rng: np.random.Generator) -> list[tuple[int, str, tuple]]:
    """``[(object index, why, coarse region)]``: up to ``references_per_image`` unique references drawn at
    random (module docstring); ``region_of(hbb)`` gives the coarse region."""
    from rscovlm.data.zoom.regions import contains

    hbbs = np.asarray(hbbs, dtype=np.float64).reshape(-1, 4)
    by_label: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        by_label.setdefault(lab, []).append(i)
    found = []
    for i, lab in enumerate(labels):
        if max(hbbs[i, 2] - hbbs[i, 0], hbbs[i, 3] - hbbs[i, 1]) < cfg.min_object_side:
            continue
        same = by_label[lab]
        if len(same) == 1:
            if "sole" in cfg.unique:
                found.append((i, "sole", region_of(hbbs[i])))
        elif "isolated" in cfg.unique:
            region = region_of(hbbs[i])
            others = [j for j in same if j != i]
            if not contains(region, hbbs[others]).any():
                found.append((i, "isolated", region))
    if len(found) > cfg.references_per_image:
        pick = sorted(rng.choice(len(found), size=cfg.references_per_image, replace=False).tolist())
        found = [found[k] for k in pick]
    return found
