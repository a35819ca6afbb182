"""LLM judge for open VQA answers over an OpenAI-compatible chat endpoint (VRSBench's ``eval_vqa_gpt.ipynb``).

The request is the notebook's: one user message holding :data:`VRSBENCH_JUDGE_PROMPT` (verbatim, with the
question, the lower-cased ground truth and the lower-cased prediction), ``max_tokens=100``; the notebook used
``gpt-4o-mini``. Its reply counts as correct when it is exactly ``"1"`` and as wrong when exactly ``"0"``; any other
reply is kept and counted as neither (the notebook's total still includes it, so it lowers the accuracy).
Plain HTTP (urllib): ``POST {base_url}/chat/completions``; an API key, if any, comes from the environment variable
named by ``api_key_env``.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field

VRSBENCH_JUDGE_PROMPT = (
    "Question: {question}\nGround Truth Answer: {ground_truth}\nPredicted Answer: {predicted}\nDoes the predicted "
    "answer match the ground truth? Answer 1 for match and 0 for not match. Use semantic meaning not exact match. "
    "Synonyms are also treated as a match, e.g., football and soccer, playground and ground track field, building "
    "and rooftop, pond and swimming pool. Do not explain the reason.\n")


class JudgeError(RuntimeError):
    """The judge endpoint failed (the message names the URL and the reason)."""


@dataclass
class JudgeConfig:
    """Where and how to ask the judge."""

    base_url: str = field(metadata={"help": "OpenAI-compatible API root, e.g. http://127.0.0.1:8000/v1"})
    model: str = field(default="gpt-4o-mini", metadata={"help": "judge model name (VRSBench used gpt-4o-mini)"})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "environment variable holding the key"})
    timeout: float = field(default=60.0, metadata={"help": "seconds per request"})
    max_tokens: int = field(default=100, metadata={"help": "reply budget (the notebook's 100)"})


class Judge:
    """``judge(question, ground_truth, predicted) -> reply text`` (see module docstring)."""

    def __init__(self, config: JudgeConfig):
        self.config = config
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self.calls = 0

    def __call__(self, question: str, ground_truth: str, predicted: str) -> str:
        prompt = VRSBENCH_JUDGE_PROMPT.format(question=question, ground_truth=ground_truth.lower(),
                                              predicted=predicted.lower())
        body = {"model": self.config.model, "max_tokens": self.config.max_tokens,
                "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}]}
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.config.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.config.timeout) as resp:
                data = json.loads(resp.read().decode("utf-8"))
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise JudgeError(f"judge {self.url}: {err}") from None
        self.calls += 1
        try:
            return data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise JudgeError(f"judge {self.url}: unexpected reply {str(data)[:200]}") from None
