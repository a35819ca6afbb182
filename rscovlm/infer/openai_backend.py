"""OpenAI-compatible chat-completions backend (vLLM's ``vllm serve``, SGLang, LMDeploy, hosted APIs).

Images are resolved like every backend's (:func:`rscovlm.infer.backends.resolve_images`) and travel as
``data:image/png;base64,...`` URLs holding the already-resized pixels, so a Qwen2.5-VL server whose pixel
bounds contain them leaves them unchanged (sides are multiples of 28) and the returned coordinates are in our
model frame. ``send_pixel_bounds`` adds vLLM's per-request ``mm_processor_kwargs`` (``min_pixels``/``max_pixels``
spanning this request's images) so that a vLLM server with narrower defaults does not resize them again;
servers that reject unknown fields need it off.

Where the server is and who we are: ``base_url``, ``model`` and ``api_key`` from the config, else the
environment (``RSCOVLM_BASE_URL`` / ``OPENAI_BASE_URL``, ``RSCOVLM_MODEL``, ``RSCOVLM_API_KEY`` /
``OPENAI_API_KEY``), else ``http://127.0.0.1:8000/v1``, ``rscovlm`` and ``EMPTY`` (vLLM accepts any key). A key
never appears in an error message.

Failures: a request is retried (``max_retries`` times, waiting ``backoff_s * 2**attempt`` seconds) when the
connection fails, the server does not answer within ``timeout_s`` seconds, it answers HTTP 408, 409, 429 or 5xx,
or its body is not a chat completion (not JSON, no ``choices[0].message``); other HTTP errors (400, 401, 404 ...)
fail at once. Then :class:`OpenAIBackendError` names the URL, the attempts and the last problem. At most
``concurrency`` requests are in flight at once. Plain ``urllib``: no client library needed.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rscovlm.infer.backends import (
    TASK_MAX_NEW_TOKENS,
    DecodingOptions,
    Generation,
    budget,
    register_backend,
    resolve_images,
)

RETRY_HTTP = (408, 409, 429, 500, 502, 503, 504)
ENV_BASE_URL = ("RSCOVLM_BASE_URL", "OPENAI_BASE_URL")
ENV_MODEL = ("RSCOVLM_MODEL",)
ENV_API_KEY = ("RSCOVLM_API_KEY", "OPENAI_API_KEY")


def _image_part(image) -> dict:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"type": "image_url", "image_url": {"url": url}}


def to_openai_messages(messages: list[dict]) -> list[dict]:
    """Our messages (``{"type": "image", "image": PIL}`` parts, already resized) -> OpenAI chat messages."""
    out = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            content = [_image_part(p["image"]) if p.get("type") == "image" else {"type": "text", "text": p["text"]}
                       for p in content]
        out.append({"role": message["role"], "content": content})
    return out


class OpenAIBackendError(RuntimeError):
    """A request that failed (after its retries) or an answer without a message; names the URL."""


class _Retryable(Exception):
    """A failure worth another attempt."""


def _env(names: tuple[str, ...]) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


@dataclass
class OpenAIConfig(DecodingOptions):
    """Where the OpenAI-compatible server is and how to call it (greedy, i.e. temperature 0, unless
    ``do_sample``)."""

    base_url: str | None = field(default=None, metadata={
        "help": "server root ending in /v1; default: $RSCOVLM_BASE_URL, $OPENAI_BASE_URL, http://127.0.0.1:8000/v1"})
    model: str | None = field(default=None, metadata={
        "help": "model name the server serves; default: $RSCOVLM_MODEL, else rscovlm"})
    api_key: str | None = field(default=None, metadata={
        "help": "bearer token; default: $RSCOVLM_API_KEY, $OPENAI_API_KEY, else EMPTY. Keep keys out of code"})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "max_tokens of every request; default: the per-task budget (task_budgets)"})
    task_budgets: dict = field(default_factory=lambda: dict(TASK_MAX_NEW_TOKENS), metadata={
        "help": "max_tokens per task (detection 16384, as the reference; grounding, vqa, ... 1024)"})
    timeout_s: float = field(default=600.0, metadata={"help": "seconds to wait for the server (connect, and "
                                                                "between bytes of the answer)"})
    concurrency: int = field(default=8, metadata={"help": "requests in flight at once"})
    max_retries: int = field(default=3, metadata={"help": "further attempts after a retryable failure"})
    backoff_s: float = field(default=1.0, metadata={"help": "wait before the first retry; doubles each time"})
    send_pixel_bounds: bool = field(default=False, metadata={
        "help": "send vLLM's mm_processor_kwargs (min/max pixels spanning the request's images)"})
    min_pixels: int = field(default=224 * 224, metadata={"help": "pixel budget of images without their own"})
    max_pixels: int = field(default=1008 * 1008, metadata={"help": "pixel budget of images without their own"})
    factor: int = field(default=28, metadata={"help": "side multiple of the model's input (patch x merge)"})

    def __post_init__(self) -> None:
        self.check_decoding()
        self.base_url = self.base_url or _env(ENV_BASE_URL) or "http://127.0.0.1:8000/v1"
        self.model = self.model or _env(ENV_MODEL) or "rscovlm"
        self.api_key = self.api_key or _env(ENV_API_KEY) or "EMPTY"
        if self.concurrency < 1 or self.max_retries < 0 or self.timeout_s <= 0 or self.backoff_s < 0:
            raise ValueError("concurrency >= 1, max_retries >= 0, timeout_s > 0 and backoff_s >= 0 are needed")

    def __repr__(self) -> str:  # the key stays out of logs
        return f"OpenAIConfig(base_url={self.base_url!r}, model={self.model!r}, api_key=***)"


@register_backend("openai")
class OpenAIBackend:
    def __init__(self, config: OpenAIConfig | None = None, **overrides):
        from rscovlm.resolution import ResolutionPolicy

        self.config = config or OpenAIConfig(**overrides)
        c = self.config
        self.policy = ResolutionPolicy(min_pixels=c.min_pixels, max_pixels=c.max_pixels, factor=c.factor,
                                       uhr_min_pixels=max(c.max_pixels, 4 * 1008 * 1008))
        self.url = c.base_url.rstrip("/") + "/chat/completions"

    def _body(self, messages: list[dict], sizes: list[tuple[int, int]], max_new_tokens: int,
              logprobs: bool) -> bytes:
        c = self.config
        body = {"model": c.model, "messages": to_openai_messages(messages), "max_tokens": max_new_tokens}
        if c.do_sample:
            body.update(temperature=c.temperature, top_p=c.top_p)
            if c.top_k:
                body["top_k"] = c.top_k
        else:
            body["temperature"] = 0.0
        if c.seed is not None:
            body["seed"] = c.seed
        if logprobs:
            body["logprobs"] = True
        if c.send_pixel_bounds and sizes:
            areas = [w * h for w, h in sizes]
            body["mm_processor_kwargs"] = {"min_pixels": min(areas), "max_pixels": max(areas)}
        return json.dumps(body).encode()

    def _attempt(self, body: bytes) -> dict:
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {self.config.api_key}"})
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            detail = f"HTTP {err.code}: {err.read()[:300]!r}"
            if err.code in RETRY_HTTP:
                raise _Retryable(detail) from None
            raise OpenAIBackendError(f"{self.url}: {detail}") from None
        except (TimeoutError, socket.timeout):
            raise _Retryable(f"no answer within {self.config.timeout_s:g} s (timed out)") from None
        except urllib.error.URLError as err:
            reason = err.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise _Retryable(f"no answer within {self.config.timeout_s:g} s (timed out)") from None
            raise _Retryable(f"cannot connect ({reason})") from None
        except (ConnectionError, OSError) as err:  # reset or closed mid-answer
            raise _Retryable(f"connection broken ({err})") from None
        try:
            payload = json.loads(raw)
            choice = payload["choices"][0]
            content = choice["message"]["content"]
            if content is not None and not isinstance(content, str):
                raise TypeError("content is not text")
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Retryable(f"malformed answer (not a chat completion): {raw[:300]!r}") from None
        return payload

    def _post(self, messages: list[dict], sizes: list[tuple[int, int]], max_new_tokens: int,
              logprobs: bool) -> Generation:
        body = self._body(messages, sizes, max_new_tokens, logprobs)
        attempts = self.config.max_retries + 1
        problem = ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.config.backoff_s * 2 ** (attempt - 1))
            try:
                payload = self._attempt(body)
                break
            except _Retryable as err:
                problem = str(err)
        else:
            raise OpenAIBackendError(f"{self.url}: failed after {attempts} attempt(s): {problem}")
        choice = payload["choices"][0]
        text = choice["message"]["content"] or ""
        token_lp = tokens = None
        if logprobs:
            token_lp, tokens = _logprobs(choice, text)
        return Generation(text, _finish_reason(choice.get("finish_reason")), max_new_tokens,
                          _completion_tokens(payload), tuple(sizes), None, token_lp, tokens)

    def generate_results(self, conversations: list[list[dict]], max_new_tokens: int | None = None,
                         progress=None, task: str | None = None, logprobs: bool | None = None) -> list[Generation]:
        """One answer per conversation, in order, with the server's finish reason (``length``: cut off by the
        budget); ``task`` picks the budget; ``progress`` (e.g. a tqdm bar) advances per answer."""
        limit = budget(task, max_new_tokens, self.config.max_new_tokens, self.config.task_budgets)
        want = self.config.logprobs if logprobs is None else logprobs

        def one(conversation):
            resolved, sizes = resolve_images([conversation], self.policy)
            return self._post(resolved[0], sizes[0], limit, want)

        results = []
        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            for result in pool.map(one, conversations):
                results.append(result)
                if progress is not None:
                    progress.update(1)
        return results

    def generate(self, conversations: list[list[dict]], max_new_tokens: int | None = None,
                 progress=None, task: str | None = None) -> list[str]:
        """The texts of :meth:`generate_results`."""
        return [g.text for g in self.generate_results(conversations, max_new_tokens, progress, task)]


def _logprobs(choice: dict, text: str) -> tuple[tuple[float, ...] | None, tuple[str, ...] | None]:
    """OpenAI's ``logprobs.content`` -> (log-probs, token texts); None when missing or when the token texts do not
    add up to the answer (then objects cannot be located among the tokens)."""
    content = (choice.get("logprobs") or {}).get("content") if isinstance(choice.get("logprobs"), dict) else None
    if not isinstance(content, list):
        return None, None
    try:
        lps = tuple(float(t["logprob"]) for t in content)
        toks = tuple(str(t["token"]) for t in content)
    except (KeyError, TypeError, ValueError):
        return None, None
    return (lps, toks) if "".join(toks) == text else (lps, None)


def _finish_reason(value) -> str | None:
    """OpenAI's ``finish_reason``: ``length`` stays, an end of the model's own (``stop``, ``tool_calls``,
    ``eos``, ...) is ``stop``, a missing one None."""
    if not isinstance(value, str):
        return None
    return "length" if value == "length" else "stop"


def _completion_tokens(payload) -> int | None:
    usage = payload.get("usage") if isinstance(payload, dict) else None
    n = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return n if isinstance(n, int) and not isinstance(n, bool) else None
