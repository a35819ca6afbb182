"""LRS-VQA-Zoom builder (issue 14): template answers against the labels, determinism, inputs (DOTA/COCO/STAR/
GLH-Bridge), the LLM steps against a real local HTTP server (rejects by reason, retries, SIGKILL + resume from
the cache, usage and cost), and the conversations through the collator, the tool-call parser and a trained tiny
model running the Zoom-in Chain."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml

from _memorize import memorize

REGIONS = ["top-left", "top", "top-right", "left", "center", "right", "bottom-left", "bottom", "bottom-right"]
SIZE = (1400, 1120)
BUDGET = 224 * 224


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from rscovlm.dota.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("zoomdata")
    generate_dataset(root / "syn", 3, size=SIZE, seed=11, density=30)
    return root


def _config(root: Path, out: str, **over) -> Path:
    cfg = {"out": out, "image_root": ".", "seed": 5,
           "inputs": [{"name": "syn", "format": "dota", "labels": "syn/labelTxt", "images": "syn/images",
                       "check_classes": True}],
           "chain": {"min_pixels": 112 * 112, "max_pixels": BUDGET, "crop_min_pixels": 112 * 112,
                     "crop_max_pixels": BUDGET},
           "templates": {"dense_min_count": 8, "region_questions": 2, "compare_questions": 2},
           "region": {"enabled": False}, "mcq": {"enabled": False}}
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    path = root / f"{out}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _build(path: Path):
    from rscovlm.data.zoom.build import build_zoom, load_build_config

    return build_zoom(load_build_config(path), progress=False)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _labels(txt: Path) -> list[tuple[str, float, float]]:
    """(display name, hbb centre x, y) of every object, parsed here without the library."""
    out = []
    for line in txt.read_text().splitlines():
        tok = line.split()
        if len(tok) < 9 or ":" in tok[0]:
            continue
        xs, ys = [float(v) for v in tok[0:8:2]], [float(v) for v in tok[1:8:2]]
        out.append((tok[8].replace("-", " "), (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2))
    return out


def _cell(cx: float, cy: float) -> int:
    w, h = SIZE
    col = 0 if cx < w / 3 else 1 if cx < 2 * w / 3 else 2
    row = 0 if cy < h / 3 else 1 if cy < 2 * h / 3 else 2
    return 3 * row + col


def test_template_answers_match_the_labels_and_a_seed_gives_the_same_output(scenes):
    """Every template answer equals the count computed here from the label files (grid cells by hbb centre);
    the zoom / single-turn rule holds; the same seed writes identical files, another seed other questions; the
    records validate; a unified COCO file of the same labels gives the same records."""
    from rscovlm.data.converters import ConvertConfig, convert
    from rscovlm.data.records import validate_file

    summary = _build(_config(scenes, "a"))
    _build(_config(scenes, "b"))
    _build(_config(scenes, "c", seed=6))
    a, b, c = ((scenes / o / "template.jsonl").read_text().replace(f'"{o}/crops/', '"a/crops/') for o in "abc")
    assert a == b and a != c
    assert validate_file(scenes / "a" / "template.jsonl", "conversation", scenes) == []
    records = _records(scenes / "a" / "template.jsonl")
    assert summary.records["template"] == len(records) > 10
    seen = Counter()
    for rec in records:
        m = rec["meta"]
        seen[m["qtype"]] += 1
        objects = _labels(scenes / "syn" / "labelTxt" / f"{m['image_id']}.txt")
        counts = Counter(name for name, _, _ in objects)
        answer = rec["messages"][-1]["content"]
        question = m["question"]
        if m["qtype"] == "count_region":
            cell = REGIONS.index(m["region"])
            assert m["region"] in question
            expect = sum(1 for name, x, y in objects if name == m["category"] and _cell(x, y) == cell)
            assert answer == str(expect) and counts[m["category"]] >= 8
            col, row = cell % 3, cell // 3
            w, h = SIZE
            assert m["roi"] == pytest.approx([col * w / 3, row * h / 3, (col + 1) * w / 3, (row + 1) * h / 3],
                                             abs=1e-3)
            assert m["chain"] == "zoom"
        elif m["qtype"] == "count_total":
            assert answer == str(counts[m["category"]]) and counts[m["category"]] < 8
            assert m["chain"] == ("zoom" if counts[m["category"]] == 1 else "single")
        else:
            x, y = m["category"].split("|")
            assert counts[x] != counts[y] and m["chain"] == "single"
            if m["qtype"] == "compare_more":
                assert answer == ("yes" if counts[x] > counts[y] else "no")
            else:
                assert answer == (x if counts[x] > counts[y] else y) + "s"
        if m["chain"] == "zoom":
            assert [msg["role"] for msg in rec["messages"]] == ["system", "user", "assistant", "user", "assistant"]
            assert rec["messages"][1]["content"][1]["text"].endswith(
                "\nZoom in to the region of interest and answer the question.")
            crop = scenes / rec["messages"][3]["content"][0]["image"]
            assert crop.is_file() and rec["image_sizes"][1] == m["crop_size"]
        else:
            assert [msg["role"] for msg in rec["messages"]] == ["user", "assistant"]
    assert set(seen) == {"count_region", "count_total", "compare_more", "compare_which"}

    coco = scenes / "syn.json"
    convert("dota", ConvertConfig(input=str(scenes / "syn" / "labelTxt"), output=str(coco),
                                  images=str(scenes / "syn" / "images")))
    _build(_config(scenes, "d", inputs=[{"name": "syn", "format": "coco", "labels": "syn.json",
                                         "images": "syn/images"}]))
    strip = lambda recs: [{**r, "meta": {k: v for k, v in r["meta"].items() if k != "labels"}} for r in recs]  # noqa
    d = [json.loads(line.replace('"d/crops/', '"a/crops/'))
         for line in (scenes / "d" / "template.jsonl").read_text().splitlines()]
    assert strip(d) == strip(records)


def test_star_glh_bridge_inputs_and_bad_inputs(tmp_path):
    """STAR (48 underscored classes) and GLH-Bridge (bridge) labelTxt folders are read; a class outside the
    list, a bad line and a missing image are errors naming the file (and line); skip_invalid counts them."""
    from PIL import Image

    from rscovlm.data.zoom.inputs import InputConfig, InputError, InputReport, read_input

    for name, lines in (("star", ["10 10 50 10 50 30 10 30 goods_yard 0", "60 60 90 60 90 90 60 90 car 1"]),
                        ("glh", ["5 5 80 5 80 20 5 20 bridge 0"])):
        (tmp_path / name / "labels").mkdir(parents=True)
        (tmp_path / name / "images").mkdir()
        (tmp_path / name / "labels" / "a.txt").write_text("\n".join(lines) + "\n")
        Image.new("RGB", (120, 100)).save(tmp_path / name / "images" / "a.png")
    star = list(read_input(InputConfig("star", "star", str(tmp_path / "star/labels"), str(tmp_path / "star/images"))))
    assert star[0].names() == ["goods yard", "car"] and star[0].size == (120, 100)
    assert star[0].hbbs.tolist() == [[10, 10, 50, 30], [60, 60, 90, 90]]
    glh = list(read_input(InputConfig("glh", "glh_bridge", str(tmp_path / "glh/labels"),
                                      str(tmp_path / "glh/images"))))
    assert glh[0].labels == ["bridge"]
    bad = InputConfig("glh", "glh_bridge", str(tmp_path / "star/labels"), str(tmp_path / "star/images"))
    with pytest.raises(InputError, match=r"a\.txt:1: unknown class 'goods_yard'"):
        list(read_input(bad))
    (tmp_path / "star/labels/b.txt").write_text("1 2 3 4 5 6 7 8 car 0\n")
    with pytest.raises(InputError, match=r"b\.txt: no image b"):
        list(read_input(InputConfig("star", "star", str(tmp_path / "star/labels"), str(tmp_path / "star/images"))))
    report = InputReport()
    kept = list(read_input(InputConfig("star", "star", str(tmp_path / "star/labels"), str(tmp_path / "star/images")),
                           skip_invalid=True, report=report))
    assert len(kept) == 1 and len(report.skipped) == 1 and "b.txt" in report.skipped[0]
    with pytest.raises(InputError, match="format"):
        InputConfig("x", "fair1m", "l", "i")
    (tmp_path / "star/labels/b.txt").unlink()
    (tmp_path / "star/labels/a.txt").write_text("1 1 9 1 9 9 1 9 container-crane 0\n")
    with pytest.raises(InputError, match=r"a\.txt:1: unknown class 'container-crane'"):
        list(read_input(InputConfig("d", "dota", str(tmp_path / "star/labels"), str(tmp_path / "star/images"))))
    v15 = list(read_input(InputConfig("d", "dota", str(tmp_path / "star/labels"), str(tmp_path / "star/images"),
                                      version="v1.5")))
    assert v15[0].names() == ["container crane"]


# ---- the LLM steps against a local OpenAI-compatible server ----------------------------------------------------

def _key(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


REGION_KINDS = ("good", "good", "not_json", "partial")
MCQ_KINDS = ("good", "good", "not_json", "not_four", "duplicate", "correct_missing", "no_options")


class _LLMServer(BaseHTTPRequestHandler):
    """A chat-completions endpoint whose reply kind is a function of the request; counts what it serves."""

    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def _send(self, code: int, raw: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        try:
            self.wfile.write(raw)
        except BrokenPipeError:  # the client was killed mid-answer
            pass

    def do_POST(self):
        st = self.state
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        body = json.loads(raw)
        key = _key(body)
        run = st["run"]  # the run this request belongs to (a killed run's request may finish later)
        with self.lock:
            st["auth"].add(self.headers.get("Authorization"))
            first = key not in st["attempts"]
            st["attempts"][key] += 1
        time.sleep(st["delay"])
        user = body["messages"][-1]["content"]
        if isinstance(user, list):
            with self.lock:
                st["region_keys"].add(key)
            text = user[-1]["text"]
            cat = re.search(r"The (.+?) inside the box", text).group(1)
            kind = REGION_KINDS[zlib.crc32(text.encode()) % len(REGION_KINDS)]
            if kind == "good":
                content = json.dumps([{"question": f"What color is the {cat}?", "answer": "white", "type": "color"},
                                      {"question": f"Is the {cat} in a rural area?", "answer": "yes", "type": "scene"},
                                      {"question": f"What shape is the {cat}?", "answer": "long", "type": "shape"}])
                content = "```json\n" + content + "\n```"
            elif kind == "not_json":
                content = f"Sure! Here are questions about the {cat}: what color is it?"
            else:
                content = json.dumps([{"question": f"Where is the {cat}?", "answer": "left", "type": "spatial"},
                                      {"question": "What is it?"},
                                      {"question": f"How does the {cat} smell?", "answer": "bad", "type": "smell"}])
        else:
            question = re.search(r"Question: (.*)\n", user).group(1)
            answer = re.search(r"Correct answer: (.*)\n", user).group(1)
            kind = MCQ_KINDS[zlib.crc32(question.encode()) % len(MCQ_KINDS)]
            content = {"good": json.dumps({"options": [answer, answer + "0", "red", "none"]}),
                       "not_json": "The options are: " + answer,
                       "not_four": json.dumps({"options": [answer, "x", "y"]}),
                       "duplicate": json.dumps({"options": [answer, "x", "X ", "y"]}),
                       "correct_missing": json.dumps({"options": ["w", "x", "y", "z"]}),
                       "no_options": json.dumps({"choices": [answer, "x", "y", "z"]})}[kind]
        if first and zlib.crc32(key.encode()) % 4 == 0:  # a transient failure: a body that is no chat completion
            with self.lock:
                st["flaky"] += 1
            return self._send(200, b"<html>busy</html>")
        usage = {"prompt_tokens": len(raw) // 100, "completion_tokens": len(content) // 4}
        with self.lock:
            st["kinds"][key] = kind
            st["served"][run][key] += 1
            st["tokens"][run][0] += usage["prompt_tokens"]
            st["tokens"][run][1] += usage["completion_tokens"]
        self._send(200, json.dumps({"choices": [{"message": {"role": "assistant", "content": content},
                                                 "finish_reason": "stop"}], "usage": usage}).encode())


@pytest.mark.slow
def test_llm_steps_against_a_local_server_rejects_retries_kill_and_resume(scenes):
    """Region QA and MCQ through a real HTTP server returning good, broken and non-JSON replies (and one
    non-chat-completion body per few requests, retried): rejects are counted by reason exactly as served; a run
    killed by SIGKILL resumes from the cache without repeating any finished request and writes the same files as
    an uninterrupted run; usage and cost add up; the key from the environment reaches the server only."""
    state = {"attempts": Counter(), "served": {1: Counter(), 2: Counter(), 3: Counter()}, "kinds": {},
             "tokens": {1: [0, 0], 2: [0, 0], 3: [0, 0]}, "flaky": 0, "delay": 0.15, "run": 1, "auth": set(),
             "region_keys": set()}
    handler = type("H", (_LLMServer,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    llm = {"base_url": url, "model": "fake", "concurrency": 1, "backoff_s": 0.01, "api_key_env": "ZOOM_TEST_KEY",
           "price_input_per_million": 2.0, "price_output_per_million": 8.0, "requests_per_minute": 6000}
    over = {"region": {"enabled": True, "references_per_image": 2, "qa_per_reference": 3},
            "mcq": {"enabled": True, "fraction": 0.6}, "llm": llm, "chunk_images": 2}
    env = {**os.environ, "ZOOM_TEST_KEY": "sk-local-test", "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "rscovlm", "data", "build-zoom", "--no-progress", "--config"]
    try:
        cfg1 = _config(scenes, "llm1", **over)
        proc = subprocess.Popen(cmd + [str(cfg1)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while sum(state["served"][1].values()) < 5 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        cache = scenes / "llm1" / "llm_cache.jsonl"
        cached = {json.loads(line)["key"] for line in cache.read_text().splitlines() if line.endswith("}")}
        assert len(cached) >= 4 and not (scenes / "llm1" / "region.jsonl").exists()
        state["delay"], state["run"] = 0.0, 2
        done = subprocess.run(cmd + [str(cfg1)], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert not cached & set(state["served"][2])  # nothing that finished before the kill was asked again
        first_run = set(state["served"][1])
        assert len(first_run - cached) <= 1  # at most the one request in flight at the kill
        assert all(n == 1 for n in state["served"][2].values())

        summary = json.loads((scenes / "llm1" / "summary.json").read_text())
        keys = first_run | set(state["served"][2])
        used = Counter(state["kinds"][k] for k in keys)  # every reply kind's reject counted once per request
        assert summary["region_rejects"]["not_json"] == sum(
            1 for k in keys if state["kinds"][k] == "not_json" and k in state["region_keys"])
        assert summary["region_rejects"]["bad_item"] == summary["region_rejects"]["bad_type"] == used["partial"]
        # MCQ: the open-ended records drawn (seed, record id; fraction 0.6) and not yes/no, each with the reply
        # kind the server gives its question: rejects by reason per record, the good ones become MCQ records
        expected, good = Counter(), set()
        for name in ("template.jsonl", "region.jsonl"):
            for r in _records(scenes / "llm1" / name):
                draw = np.random.default_rng([5, zlib.crc32(r["id"].encode()), zlib.crc32(b"mcq")]).random()
                if r["messages"][-1]["content"] in ("yes", "no") or draw >= 0.6:
                    continue
                kind = MCQ_KINDS[zlib.crc32(r["meta"]["question"].encode()) % len(MCQ_KINDS)]
                if kind == "good":
                    good.add(r["id"] + "/mcq")
                else:
                    expected[kind] += 1
        assert {k: v for k, v in summary["mcq_rejects"].items() if v} == dict(expected)
        assert {r["id"] for r in _records(scenes / "llm1" / "mcq.jsonl")} == good
        assert summary["mcq_rejects"]["request_failed"] == summary["region_rejects"]["request_failed"] == 0
        assert state["flaky"] >= 1
        u = summary["llm_usage"]
        # cached counts uses (a body asked again later in the run is answered from the cache too)
        assert u["sent"] == len(state["served"][2]) and u["cached"] >= len(keys & cached) and u["failed"] == 0
        assert [u["prompt_tokens"], u["completion_tokens"]] == state["tokens"][2]
        assert u["cost"] == pytest.approx((u["prompt_tokens"] * 2.0 + u["completion_tokens"] * 8.0) / 1e6)
        assert state["auth"] == {"Bearer sk-local-test"}
        for f in scenes.joinpath("llm1").rglob("*.json*"):
            assert "sk-local-test" not in f.read_text()

        state["run"] = 3  # an uninterrupted run with its own cache: the same files
        _build(_config(scenes, "llm2", **over))
        for name in ("template.jsonl", "region.jsonl", "mcq.jsonl"):
            a = (scenes / "llm1" / name).read_text()
            b = (scenes / "llm2" / name).read_text().replace('"llm2/crops/', '"llm1/crops/')
            assert a == b, name
        from rscovlm.data.records import validate_file

        for name in ("region.jsonl", "mcq.jsonl"):
            assert validate_file(scenes / "llm1" / name, "conversation", scenes) == []
        region = _records(scenes / "llm1" / "region.jsonl")
        mcq = _records(scenes / "llm1" / "mcq.jsonl")
        assert region and mcq
        assert all(r["meta"]["chain"] == "zoom" and r["meta"]["qtype"] in ("color", "scene", "shape", "spatial")
                   for r in region)
        for r in mcq:
            m = r["meta"]
            assert len(m["options"]) == 4 and [o[:4] for o in m["options"]] == ["(A) ", "(B) ", "(C) ", "(D) "]
            letter = r["messages"][-1]["content"]
            assert m["options"]["ABCD".index(letter)][4:] == m["answer_text"]
            assert m["answer_text"].lower() not in ("yes", "no")
            q = r["messages"][-4 if m["chain"] == "zoom" else -2]["content"][1]["text"]
            assert " The choices are listed below: \n(A) " in q and "\nThe best answer is:" in q
        assert summary["mcq_skipped_yes_no"] > 0
    finally:
        httpd.shutdown()
        httpd.server_close()


# ---- conversations -> collator, parser, tiny model, chain -------------------------------------------------------

@pytest.mark.slow
def test_conversations_train_the_tiny_model_to_run_the_chain(scenes, tiny_model_dir, tmp_path):
    """Zoom records built by a mixture (random_resize_prob 0) go through the training collator with labels
    exactly on the two assistant turns (the tool call, the answer); the call parses with the chain's parser to
    the record's call; the tiny model trained on three of them (100 steps) runs the Zoom-in Chain on the
    ORIGINAL files: pass 1 emits the trained call, the chain reads the very crop the record was trained with, and
    pass 2 gives the trained answer."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rscovlm.data.mixture import MixtureDataset
    from rscovlm.infer import GenerationConfig, TransformersBackend
    from rscovlm.infer.runners import Query
    from rscovlm.infer.zoom import ZoomChain, ZoomConfig
    from rscovlm.model.collator import IGNORE_INDEX, ConversationEncoder
    from rscovlm.protocol.zoom import format_zoom_call, parse_zoom_call

    torch.set_num_threads(1)
    _build(_config(scenes, "e2e", templates={"region_questions": 1, "compare_questions": 0}))
    zoom = [r for r in _records(scenes / "e2e" / "template.jsonl") if r["meta"]["chain"] == "zoom"]
    picked, seen = [], set()
    for r in zoom:  # one question per image, three images
        if r["meta"]["image_id"] not in seen:
            picked.append(r)
            seen.add(r["meta"]["image_id"])
    assert len(picked) == 3
    subset = tmp_path / "zoom.jsonl"
    subset.write_text("".join(json.dumps(r) + "\n" for r in picked))
    mix = tmp_path / "mix.yaml"
    mix.write_text(yaml.safe_dump({
        "builder": {"min_pixels": 112 * 112, "max_pixels": BUDGET, "load_images": True},
        "units": [{"name": "lrs_vqa_zoom", "type": "conversation", "path": str(subset), "images": str(scenes),
                   "random_resize_prob": 0.0}]}))
    ds = MixtureDataset.from_yaml(mix)
    samples = [ds[i] for i in range(len(ds))]
    by_id = {r["id"]: r for r in picked}
    assert sorted(s["meta"]["id"] for s in samples) == sorted(by_id)

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    encoder = ConversationEncoder(processor)
    tok = processor.tokenizer
    for s in samples:
        rec = by_id[s["meta"]["id"]]
        call_text = s["messages"][2]["content"][0]["text"]
        assert call_text == format_zoom_call(rec["meta"]["call"])
        assert parse_zoom_call(call_text).bbox == tuple(float(v) for v in rec["meta"]["call"])
        enc = encoder.encode(s)
        labels = enc.labels.tolist()
        spans, cur = [], []
        for t, lab in zip(enc.input_ids.tolist(), labels):
            if lab != IGNORE_INDEX:
                assert lab == t
                cur.append(t)
            elif cur:
                spans.append(tok.decode(cur))
                cur = []
        if cur:
            spans.append(tok.decode(cur))
        assert spans == [call_text + "<|im_end|>", rec["messages"][-1]["content"] + "<|im_end|>"]
        assert [p.model_size for p in enc.plans] == [tuple(rec["meta"]["pass1_size"]), tuple(rec["meta"]["crop_size"])]

    result, _ = memorize(tiny_model_dir, samples, tmp_path, steps=100, batch=3, save=False)
    model = result.trainer.model.eval()
    backend = TransformersBackend(model, processor, GenerationConfig(batch_size=3, max_new_tokens=64))
    chain = ZoomChain(backend, ZoomConfig(min_pixels=112 * 112, max_pixels=BUDGET, crop_min_pixels=112 * 112,
                                          crop_max_pixels=BUDGET, skip_categories=()))
    queries = [Query(str(scenes / r["messages"][1]["content"][0]["image"]),
                     r["messages"][1]["content"][1]["text"].split("\nZoom in to")[0], id=r["id"]) for r in picked]
    for res, rec in zip(chain.run(queries), picked):
        z, m = res.zoom, rec["meta"]
        assert z["status"] == "zoomed" and z["pass_answers"] == [format_zoom_call(m["call"])]
        assert z["calls"][0]["region"] == [float(v) for v in m["crop"]]
        assert z["calls"][0]["model_size"] == m["crop_size"]
        assert res.answer == rec["messages"][-1]["content"]


# ---- rules and refusals -----------------------------------------------------------------------------------------

def test_zoom_refs_validate_and_render_in_each_family_frame(tmp_path):
    """``<zoom:N.x1>`` references: a missing or non-hbb box is a validation problem; the sample builder writes
    them as int(v * frame / original) of the resize it applied - resized pixels for Qwen2.5-VL, the 0-1000 grid
    for Qwen2-VL - and the result is the tool call the chain's parser reads."""
    from PIL import Image

    from rscovlm.data.builder import BuildConfig, SampleBuilder
    from rscovlm.data.mixture import UnitConfig
    from rscovlm.data.records import validate_conversation
    from rscovlm.protocol.zoom import format_zoom_call, parse_zoom_call, zoom_box_to_model

    Image.new("RGB", (2000, 1500)).save(tmp_path / "big.png")
    Image.new("RGB", (224, 224)).save(tmp_path / "crop.png")
    refs = "[<zoom:0.x1>, <zoom:0.y1>, <zoom:0.x2>, <zoom:0.y2>]"
    call = format_zoom_call([0, 0, 0, 0]).replace("[0, 0, 0, 0]", refs)
    rec = {"id": "z", "source": "t", "task": "zoom_vqa", "image_sizes": [[2000, 1500], [224, 224]],
           "boxes": [{"kind": "hbb", "values": [333.3, 250.9, 999.9, 1001.7], "image": 0}],
           "messages": [{"role": "user", "content": [{"type": "image", "image": "big.png"},
                                                     {"type": "text", "text": "Where?"}]},
                        {"role": "assistant", "content": call},
                        {"role": "user", "content": [{"type": "image", "image": "crop.png"},
                                                     {"type": "text", "text": "Here."}]},
                        {"role": "assistant", "content": "there"}]}
    assert validate_conversation(rec) == []
    bad = {**rec, "boxes": [{"kind": "obb", "values": [500, 500, 100, 50, 0.1], "image": 0}]}
    assert ("boxes[0].kind", "a box written as a zoom tool call (<zoom:N.*>) must be hbb") in \
        validate_conversation(bad)
    assert any("<zoom:0.*> refers to a missing box" in m for _, m in validate_conversation({**rec, "boxes": []}))
    unit = UnitConfig(name="z", path="x.jsonl", type="conversation", images=str(tmp_path), random_resize_prob=0.0)
    for family, frame in (("qwen2_5_vl", None), ("qwen2_vl", (1000, 1000))):
        sample = SampleBuilder(BuildConfig(family=family, max_pixels=448 * 448)).build_conversation(rec, unit)
        size = sample["meta"]["plans"][0]["model"]
        box = zoom_box_to_model(rec["boxes"][0]["values"], (2000, 1500), frame or tuple(size))
        text = sample["messages"][1]["content"][0]["text"]
        assert text == format_zoom_call(box) and parse_zoom_call(text).bbox == tuple(float(v) for v in box)


def test_config_errors_name_the_key_and_a_dead_endpoint_stops_the_run(scenes, tmp_path, capsys):
    """An unknown key, a bad value or a missing input is an error naming it (CLI: exit 2 with the message); an
    endpoint that answers nothing stops the run with the URL instead of writing empty data."""
    from rscovlm.cli import main
    from rscovlm.data.zoom.build import load_build_config
    from rscovlm.infer.openai_backend import OpenAIBackendError

    repo = Path(__file__).resolve().parents[1]
    shipped = load_build_config(repo / "configs" / "data" / "zoom_data.yaml")  # writes what the mixture reads
    mixture = yaml.safe_load((repo / "configs" / "mixtures" / "rscovlm.yaml").read_text())
    root = (repo / "configs" / "mixtures" / mixture["data_root"]).resolve()
    unit = next(u for u in mixture["units"] if u["name"] == "lrs_vqa_zoom")
    assert [p.replace("${data_root}", str(root)) for p in unit["path"]] == [
        f"{shipped.out}/{name}" for name in ("template.jsonl", "region.jsonl", "mcq.jsonl")]
    assert unit["images"].replace("${data_root}", str(root)) == shipped.image_root
    assert unit["random_resize_prob"] == 0.0
    with pytest.raises(ValueError, match=r"region: unknown key\(s\) \['padd'\]"):
        load_build_config(_config(scenes, "bad1", region={"padd": 1}))
    with pytest.raises(ValueError, match=r"mcq.fraction: must be in \[0, 1\]"):
        load_build_config(_config(scenes, "bad2", mcq={"fraction": 2}))
    missing = _config(scenes, "bad3", inputs=[{"name": "x", "format": "star", "labels": "nope", "images": "syn"}])
    assert main(["data", "build-zoom", "--no-progress", "--config", str(missing)]) != 0
    assert "inputs[x].labels: label folder" in capsys.readouterr().err
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = _config(scenes, "dead", region={"enabled": True, "references_per_image": 1},
                   llm={"base_url": f"http://127.0.0.1:{port}/v1", "max_retries": 0, "timeout_s": 5})
    with pytest.raises(OpenAIBackendError, match=f"127.0.0.1:{port}.*run again to resume"):
        _build(dead)


def test_unique_references_and_coarse_regions():
    """sole = the only one of its category; isolated = no other of its category inside its coarse region; tiny
    objects are never references. The coarse region grows the box by the padding, keeps min_side, stops at the
    budget side (unless the object is larger) and is shifted, not cut, to lie inside the image."""
    from rscovlm.data.zoom.regions import coarse_region
    from rscovlm.data.zoom.synthesis import RegionConfig, unique_references

    size = (4000, 3000)
    cfg = RegionConfig(references_per_image=10, padding=1.0, min_side=400, min_object_side=8)
    region_of = lambda hbb: coarse_region(hbb, size, cfg.padding, cfg.min_side, 1008)  # noqa: E731
    labels = ["tank", "car", "car", "car", "ship"]
    hbbs = np.array([[100, 100, 160, 160], [1000, 1000, 1020, 1010], [1100, 1000, 1120, 1010],
                     [3000, 2000, 3020, 2010], [2000, 100, 2004, 104]], dtype=float)
    refs = unique_references(labels, hbbs, cfg, region_of, np.random.default_rng(0))
    assert [(i, why) for i, why, _ in refs] == [(0, "sole"), (3, "isolated")]  # the 4-px ship is too small
    assert region_of([100, 100, 160, 160]) == (0.0, 0.0, 400.0, 400.0)  # 180 -> min 400, shifted inside
    assert region_of([1000, 1000, 1600, 1100]) == (796.0, 546.0, 1804.0, 1554.0)  # 1800 x 1300 -> the 1008 cap
    assert region_of([1000, 1000, 2600, 1100]) == (1000.0, 546.0, 2600.0, 1554.0)  # wider than the cap: the object
    assert region_of([3900, 2900, 3990, 2990]) == (3600.0, 2600.0, 4000.0, 3000.0)  # shifted into the corner


def test_rate_limit_spaces_request_starts_across_threads():
    """requests_per_minute: starts are at least 60 / rate seconds apart, whichever thread asks."""
    from concurrent.futures import ThreadPoolExecutor

    from rscovlm.data.zoom.synthesis import _RateLimit

    limit = _RateLimit(600.0)  # one start per 0.1 s
    starts = []

    def go(_):
        limit.wait()
        starts.append(time.monotonic())

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(go, range(5)))
    gaps = np.diff(sorted(starts))
    assert len(gaps) == 4 and gaps.min() >= 0.095
