"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1."""

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from rscovlm.infer import get_backend
from rscovlm.infer.openai_backend import OpenAIBackendError


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/chat/completions" or body["model"] != "tiny":
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b"no such model")
            return
        parts = body["messages"][-1]["content"]
        sizes = []
        for part in parts:
            if part["type"] == "image_url":
                data = part["image_url"]["url"].split(",", 1)[1]
                sizes.append("%dx%d" % Image.open(io.BytesIO(base64.b64decode(data))).size)
        text = next(p["text"] for p in parts if p["type"] == "text")
        choice = {"message": {"role": "assistant", "content": f"{text} | {','.join(sizes)} | {body['max_tokens']}"}}
        if "cut" in text:  # what vLLM answers when max_tokens runs out
            choice["finish_reason"] = "length"
        elif "done" in text:
            choice["finish_reason"] = "stop"
        reply = {"choices": [choice], "usage": {"completion_tokens": 5}}
        raw = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


@pytest.fixture()
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def _conv(i):
    image = Image.new("RGB", (28 * (i + 1), 56))
    return [{"role": "user", "content": [{"type": "image", "image": image, "resized_width": 28 * (i + 1),
                                          "resized_height": 56},
                                         {"type": "text", "text": f"question {i}"}]}]


def test_requests_carry_images_and_keep_order(server):
    backend = get_backend("openai", base_url=server, model="tiny", concurrency=4)
    out = backend.generate([_conv(i) for i in range(6)], max_new_tokens=7)
    assert out == [f"question {i} | {28 * (i + 1)}x56 | 7" for i in range(6)]


def test_http_errors_name_the_url(server):
    backend = get_backend("openai", base_url=server, model="other")
    with pytest.raises(OpenAIBackendError, match="chat/completions: HTTP 404"):
        backend.generate([_conv(0)])


def test_unreachable_server_is_a_clear_error():
    backend = get_backend("openai", base_url="http://127.0.0.1:9/v1", model="tiny", timeout_s=5, backoff_s=0.01)
    with pytest.raises(OpenAIBackendError, match="127.0.0.1:9"):
        backend.generate([_conv(0)])


def test_finish_reasons_and_task_budgets(server):
    backend = get_backend("openai", base_url=server, model="tiny")
    convs = [_conv(0), _conv(1), _conv(2)]
    convs[0][0]["content"][1]["text"] = "cut"
    convs[1][0]["content"][1]["text"] = "done"
    out = backend.generate_results(convs, task="detection")
    assert [g.finish_reason for g in out] == ["length", "stop", None]
    assert [g.truncated for g in out] == [True, False, False]
    assert out[0].max_new_tokens == 16384 and out[0].text.endswith("| 16384") and out[0].n_new_tokens == 5
    assert backend.generate(convs[:1], task="grounding")[0].endswith("| 1024")
    assert backend.generate(convs[:1], task="detection", max_new_tokens=9)[0].endswith("| 9")
    backend = get_backend("openai", base_url=server, model="tiny", task_budgets={"detection": 8192})
    assert backend.generate(convs[:1], task="detection")[0].endswith("| 8192")
