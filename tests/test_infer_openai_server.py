"""The OpenAI backend against a real HTTP server on 127.0.0.1 that answers badly on purpose: malformed bodies, slow
answers, HTTP failures (retried with backoff, or not), bounded concurrency, the key from the environment, token
log-probs and per-request pixel bounds. The server counts the attempts it saw per question, so every test checks
what reached the wire, not only what the client returned."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from rscovlm.infer import get_backend
from rscovlm.infer.openai_backend import OpenAIBackendError


class _State:
    def __init__(self):
        self.lock = threading.Lock()
        self.attempts: Counter = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.auth: list[str] = []
        self.bodies: list[dict] = []


def _handler(state: _State):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, code: int, raw: bytes):
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            question = body["messages"][-1]["content"][-1]["text"]
            with state.lock:
                state.attempts[question] += 1
                attempt = state.attempts[question]
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
                state.auth.append(self.headers.get("Authorization", ""))
                state.bodies.append(body)
            try:
                self._answer(question, attempt, body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up on a slow answer
                pass
            finally:
                with state.lock:
                    state.in_flight -= 1

        def _answer(self, question: str, attempt: int, body: dict):
            if question.startswith("malformed") and (question == "malformed-always" or attempt == 1):
                return self._send(200, b"<html>upstream proxy error</html>")
            if question == "no-choices":
                return self._send(200, json.dumps({"object": "error", "message": "overloaded"}).encode())
            if question.startswith("slow") and (question == "slow-always" or attempt == 1):
                time.sleep(1.0)
            if question == "fail-503-twice" and attempt <= 2:
                return self._send(503, b"busy")
            if question == "fail-400":
                return self._send(400, b"bad request: unknown field")
            if question == "wait":
                time.sleep(0.05)
            message = {"role": "assistant", "content": f"answer to {question} (attempt {attempt})"}
            choice = {"message": message, "finish_reason": "stop"}
            if body.get("logprobs"):
                choice["message"]["content"] = "12,30 plane"
                choice["logprobs"] = {"content": [{"token": t, "logprob": lp} for t, lp in
                                                  (("12", -0.1), (",", -0.01), ("30", -0.2), (" plane", -0.05))]}
            if "mm_processor_kwargs" in body:
                message["content"] += " " + json.dumps(body["mm_processor_kwargs"], sort_keys=True)
            self._send(200, json.dumps({"choices": [choice], "usage": {"completion_tokens": 3}}).encode())

    return Handler


@pytest.fixture()
def server():
    state = _State()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", state
    httpd.shutdown()
    httpd.server_close()


def _conv(text: str, size=(56, 56)):
    return [{"role": "user", "content": [{"type": "image", "image": Image.new("RGB", size, (90, 120, 30))},
                                         {"type": "text", "text": text}]}]


def _backend(url, **kw):
    return get_backend("openai", base_url=url, model="tiny", **{"timeout_s": 5, "backoff_s": 0.01, **kw})


def test_malformed_answer_is_retried_then_named(server):
    url, state = server
    assert _backend(url).generate([_conv("malformed-once")]) == ["answer to malformed-once (attempt 2)"]
    with pytest.raises(OpenAIBackendError) as info:
        _backend(url, max_retries=2).generate([_conv("malformed-always")])
    msg = str(info.value)
    assert msg.startswith(f"{url}/chat/completions: failed after 3 attempt(s): malformed answer"), msg
    assert "upstream proxy error" in msg and state.attempts["malformed-always"] == 3
    with pytest.raises(OpenAIBackendError, match="malformed answer"):
        _backend(url, max_retries=0).generate([_conv("no-choices")])


def test_slow_answers_time_out_and_are_retried(server):
    url, state = server
    start = time.perf_counter()
    assert _backend(url, timeout_s=0.3).generate([_conv("slow-once")]) == ["answer to slow-once (attempt 2)"]
    assert time.perf_counter() - start < 1.0  # did not wait for the slow first answer
    with pytest.raises(OpenAIBackendError, match=r"127\.0\.0\.1:\d+/v1/chat/completions: failed after 2 "
                                                 r"attempt\(s\): no answer within 0\.3 s \(timed out\)"):
        _backend(url, timeout_s=0.3, max_retries=1).generate([_conv("slow-always")])
    assert state.attempts["slow-always"] == 2


def test_server_errors_are_retried_with_backoff_client_errors_are_not(server):
    url, state = server
    start = time.perf_counter()
    out = _backend(url, backoff_s=0.1).generate([_conv("fail-503-twice")])
    assert out == ["answer to fail-503-twice (attempt 3)"]
    assert time.perf_counter() - start >= 0.1 + 0.2  # waited backoff, then twice that
    with pytest.raises(OpenAIBackendError, match=r"/v1/chat/completions: HTTP 400: b'bad request"):
        _backend(url).generate([_conv("fail-400")])
    assert state.attempts["fail-400"] == 1


def test_concurrency_is_bounded_and_order_kept(server):
    url, state = server
    questions = ["wait"] * 12
    out = _backend(url, concurrency=3).generate([_conv(q) for q in questions])
    assert len(out) == 12 and 2 <= state.max_in_flight <= 3


def test_key_comes_from_the_environment_and_never_into_errors(server, monkeypatch):
    url, state = server
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("RSCOVLM_API_KEY", "sk-test-key-from-env")
    backend = _backend(url)
    backend.generate([_conv("hello")])
    assert state.auth[-1] == "Bearer sk-test-key-from-env"
    assert "sk-test" not in repr(backend.config)
    with pytest.raises(OpenAIBackendError) as info:
        backend.generate([_conv("fail-400")])
    assert "sk-test" not in str(info.value)
    monkeypatch.setenv("RSCOVLM_BASE_URL", url)
    assert get_backend("openai", model="tiny").config.base_url == url  # the URL from the environment too


def test_logprobs_and_pixel_bounds_reach_the_server(server):
    url, state = server
    gen = _backend(url).generate_results([_conv("lp")], logprobs=True)[0]
    assert state.bodies[-1]["logprobs"] is True and state.bodies[-1]["temperature"] == 0.0
    assert gen.text == "12,30 plane" and gen.token_logprobs == (-0.1, -0.01, -0.2, -0.05)
    assert "".join(gen.tokens) == gen.text
    # an image without its own budget gets the backend's (224^2 .. 1008^2): 56x56 is enlarged to 224x224
    gen = _backend(url, send_pixel_bounds=True).generate_results([_conv("px")])[0]
    assert gen.image_sizes == ((224, 224),)
    assert gen.text.endswith('{"max_pixels": 50176, "min_pixels": 50176}')
    conv = _conv("own budget", size=(2000, 1000))
    conv[0]["content"][0]["max_pixels"] = 448 * 448
    assert _backend(url).generate_results([conv])[0].image_sizes == ((616, 308),)  # smart_resize within 448^2
