"""OpenAI-compatible chat-completions backend (vLLM's ``vllm serve``, SGLang, LMDeploy, hosted APIs).

Images travel as ``data:image/png;base64,...`` URLs holding the already-resized pixels, so a server that applies
its own resize to a Qwen2.5-VL model leaves them unchanged (the sides are multiples of 28 within the pixel
budget) and the returned coordinates are in our model frame. Plain ``urllib``: no client library needed.
"""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rscovlm.infer.backends import TASK_MAX_NEW_TOKENS, Generation, budget, register_backend


def _image_part(image) -> dict:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"type": "image_url", "image_url": {"url": url}}


def to_openai_messages(messages: list[dict]) -> list[dict]:
    """Our messages (``{"type": "image", "image": PIL}`` parts) -> OpenAI chat messages."""
    out = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            content = [_image_part(p["image"]) if p.get("type") == "image" else {"type": "text", "text": p["text"]}
                       for p in content]
        out.append({"role": message["role"], "content": content})
    return out


class OpenAIBackendError(RuntimeError):
    """A request that failed or an answer without a message; names the URL."""


@dataclass
class OpenAIConfig:
    """Where the OpenAI-compatible server is and how to call it (temperature 0 always)."""

    base_url: str = field(default="http://127.0.0.1:8000/v1", metadata={"help": "server root, ending in /v1"})
    model: str = field(default="rscovlm", metadata={"help": "model name the server serves"})
    api_key: str = field(default="EMPTY", metadata={"help": "bearer token (vLLM accepts any by default)"})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "max_tokens of every request; default: the per-task budget (task_budgets)"})
    task_budgets: dict = field(default_factory=lambda: dict(TASK_MAX_NEW_TOKENS), metadata={
        "help": "max_tokens per task (detection 16384, as the reference; grounding, vqa, ... 1024)"})
    timeout_s: float = field(default=600.0, metadata={"help": "per-request timeout"})
    concurrency: int = field(default=8, metadata={"help": "requests in flight at once"})


@register_backend("openai")
class OpenAIBackend:
    def __init__(self, config: OpenAIConfig | None = None, **overrides):
        self.config = config or OpenAIConfig(**overrides)

    def _post(self, messages: list[dict], max_new_tokens: int) -> Generation:
        body = json.dumps({"model": self.config.model, "messages": to_openai_messages(messages),
                           "max_tokens": max_new_tokens, "temperature": 0.0}).encode()
        url = self.config.base_url.rstrip("/") + "/chat/completions"
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {self.config.api_key}"})
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as err:
            raise OpenAIBackendError(f"{url}: HTTP {err.code}: {err.read()[:500]!r}") from err
        except urllib.error.URLError as err:
            raise OpenAIBackendError(f"{url}: {err.reason}") from err
        try:
            choice = payload["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as err:
            raise OpenAIBackendError(f"{url}: unexpected response {str(payload)[:500]}") from err
        return Generation(text, _finish_reason(choice.get("finish_reason")), max_new_tokens,
                          _completion_tokens(payload))

    def generate_results(self, conversations: list[list[dict]], max_new_tokens: int | None = None,
                         progress=None, task: str | None = None) -> list[Generation]:
        """One answer per conversation, in order, with the server's finish reason (``length``: cut off by the
        budget); ``task`` picks the budget; ``progress`` (e.g. a tqdm bar) advances per answer."""
        limit = budget(task, max_new_tokens, self.config.max_new_tokens, self.config.task_budgets)
        results = []
        with ThreadPoolExecutor(max_workers=max(1, self.config.concurrency)) as pool:
            for result in pool.map(lambda c: self._post(c, limit), conversations):
                results.append(result)
                if progress is not None:
                    progress.update(1)
        return results

    def generate(self, conversations: list[list[dict]], max_new_tokens: int | None = None,
                 progress=None, task: str | None = None) -> list[str]:
        """The texts of :meth:`generate_results`."""
        return [g.text for g in self.generate_results(conversations, max_new_tokens, progress, task)]


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
