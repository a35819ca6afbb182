"""The Zoom-in Chain: a real (briefly trained) tiny model on a generated 12000 x 12000 scene whose answer is
readable only at native resolution, through the transformers backend and through the OpenAI backend against a
real local server; and the chain's rules (fallbacks, skips, depth, margins, frames) with a scripted backend."""

from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rscovlm.infer.runners import Query
from rscovlm.infer.zoom import ZoomChain, ZoomConfig

from _memorize import memorize

SIZE = 12000
REGION = (6160, 3640, 6720, 4200)  # the patch of 1-px stripes, original pixels
FRAME = 280  # a dark frame this wide around it: what pass 1 can see in the downsampled picture
PASS1 = 448 * 448  # pass-1 budget of the test (12000^2 -> 448 x 448, 26.8 original pixels per model pixel)
QUESTION = "Which way do the stripes in the dark frame run?"
WHOLE_DECODE_MB = SIZE * SIZE * 3 / 2**20  # 412 MiB: what decoding the whole image would hold


def render(x0: int, y0: int, x1: int, y1: int, stripes: str) -> np.ndarray:
    """Pixels of the scene's region [x0, x1) x [y0, y1): grey 128, the dark frame, inside it 1-px black/white
    stripes (rows for 'horizontal', columns for 'vertical')."""
    ys, xs = np.mgrid[y0:y1, x0:x1]
    rx0, ry0, rx1, ry1 = REGION
    out = np.full((y1 - y0, x1 - x0, 3), 128, np.uint8)
    inside = (xs >= rx0) & (xs < rx1) & (ys >= ry0) & (ys < ry1)
    frame = (xs >= rx0 - FRAME) & (xs < rx1 + FRAME) & (ys >= ry0 - FRAME) & (ys < ry1 + FRAME) & ~inside
    out[frame] = 30
    on = ((ys if stripes == "horizontal" else xs) % 2).astype(bool)
    out[inside & on] = 255
    out[inside & ~on] = 0
    return out


def write_scene(path: Path, stripes: str, tile: int = 512) -> Path:
    """The 12000 x 12000 scene as a tiled, deflated BigTIFF, tile by tile (never whole in memory)."""
    import tifffile

    rx0, ry0, rx1, ry1 = REGION
    grey = np.full((tile, tile, 3), 128, np.uint8)

    def tiles():
        for ty in range(0, SIZE, tile):
            for tx in range(0, SIZE, tile):
                far = tx + tile <= rx0 - FRAME or tx >= rx1 + FRAME or ty + tile <= ry0 - FRAME or ty >= ry1 + FRAME
                yield grey if far else render(tx, ty, tx + tile, ty + tile, stripes)

    tifffile.imwrite(path, tiles(), shape=(SIZE, SIZE, 3), dtype=np.uint8, tile=(tile, tile), photometric="rgb",
                     compression="zlib", compressionargs={"level": 1}, bigtiff=True)
    return path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    pytest.importorskip("tifffile")
    pytest.importorskip("rasterio")
    d = tmp_path_factory.mktemp("uhr")
    return {s: write_scene(d / f"{s}.tif", s) for s in ("horizontal", "vertical")}


# the crop the chain must read: the trained tool call [229, 135, 250, 156] (the reference's int(v * 448 / 12000)
# of REGION) maps back to x 229*12000/448 = 6133.9 .. 6696.4, y 3616.1 .. 4178.6; floor/ceil -> 6133..6697 (564
# px) x 3616..4179 (563 px); grown to 588 x 588 (21 x 28) about its centre -> (6121, 3604, 6709, 4192)
EXPECTED_CROP = (6121, 3604, 6709, 4192)


@pytest.fixture(scope="module")
def zoom_model(tiny_model_dir, scenes, tmp_path_factory):
    """The tiny model trained (100 AdamW steps) on the four conversations of the two scenes: pass 1 -> the tool
    call of REGION; pass 2 with the NATIVE crop -> 'horizontal' / 'vertical'."""
    import torch

    from rscovlm.imageio import ImageSource
    from rscovlm.protocol.zoom import zoom_box_to_model, zoom_messages

    torch.set_num_threads(1)
    box = zoom_box_to_model(REGION, (SIZE, SIZE), (448, 448))
    assert box == [229, 135, 250, 156]
    samples = []
    for stripes, path in scenes.items():
        with ImageSource(path) as src:
            whole = src.resized((448, 448))
        crop = Image.fromarray(render(*EXPECTED_CROP, stripes))
        messages = zoom_messages({"type": "image", "image": whole}, QUESTION, box, {"type": "image", "image": crop},
                                 stripes)
        samples += [{"messages": messages[:3]}, {"messages": messages}]
    out = tmp_path_factory.mktemp("zoom_model")
    _, model_dir = memorize(tiny_model_dir, samples, out, steps=100, batch=4)
    return model_dir


class Recording:
    """A backend wrapper that keeps every conversation it was asked (the real backend answers)."""

    def __init__(self, backend):
        self.backend, self.calls = backend, []

    def generate_results(self, conversations, *args, **kwargs):
        self.calls.append(conversations)
        return self.backend.generate_results(conversations, *args, **kwargs)


def _transformers(model_dir):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rscovlm.infer import GenerationConfig, TransformersBackend

    torch.set_num_threads(1)
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    return TransformersBackend(model, AutoProcessor.from_pretrained(model_dir),
                               GenerationConfig(batch_size=4, max_new_tokens=64))


def _config(**kw) -> ZoomConfig:
    return ZoomConfig(**{"max_pixels": PASS1, "min_pixels": 224 * 224, **kw})


def _queries(scenes):
    return [Query(str(scenes[s]), QUESTION, id=s) for s in ("horizontal", "vertical")] + [
        Query(str(scenes["horizontal"]), "How many frames are there?", category="count", id="count")]


@pytest.mark.slow
def test_zoom_chain_reads_the_answer_from_a_native_crop_of_the_original(zoom_model, scenes):
    """Proves: (1) pass 1 of the real model emits the tool call and the chain maps it to the ORIGINAL image:
    the crop's region, size (588 x 588 read, 588 x 588 seen: native_scale 1.0) and pixels are those of the file
    at EXPECTED_CROP; (2) the answer depends on native resolution: both scenes are answered right from original
    crops, while with crop_source='downsampled' (the reference's evaluation) the crops of the two scenes are the
    same flat grey (1-px stripes averaged away) and the model cannot tell them apart; (3) a count question skips
    the chain (one pass, no tool prompt); (4) each pass is one batched backend call over all its questions."""
    backend = Recording(_transformers(zoom_model))
    chain = ZoomChain(backend, _config())
    results = chain.run(_queries(scenes))
    h, v, count = results
    assert (h.answer, v.answer) == ("horizontal", "vertical")
    for r, stripes in ((h, "horizontal"), (v, "vertical")):
        z = r.zoom
        assert z["status"] == "zoomed" and z["passes"] == 2 and r.size == (SIZE, SIZE)
        assert z["image_sizes"] == [[[448, 448]], [[448, 448], [588, 588]]]
        (call,) = z["calls"]
        assert call["bbox"] == [229.0, 135.0, 250.0, 156.0] and call["problem"] is None
        assert tuple(call["region"]) == EXPECTED_CROP and call["read_size"] == [588, 588]
        assert call["model_size"] == [588, 588] and call["native_scale"] == 1.0 and call["source"] == "original"
    assert count.zoom["status"] == "skipped" and count.zoom["passes"] == 1
    # one backend call per pass; pass 2 holds only the two zoomed questions
    assert [len(c) for c in backend.calls] == [3, 2]
    count_conv = backend.calls[0][2]
    assert count_conv[0]["role"] == "user" and count_conv[0]["content"][-1]["text"] == "How many frames are there?"
    assert backend.calls[0][0][0]["role"] == "system" and "image_zoom_in" in backend.calls[0][0][0]["content"][0]["text"]
    for conv, stripes in zip(backend.calls[1], ("horizontal", "vertical")):
        crop = conv[-1]["content"][0]["image"]
        np.testing.assert_array_equal(np.asarray(crop), render(*EXPECTED_CROP, stripes))
        assert conv[-1]["content"][1]["text"] == "Here's the zoomed-in image. You can complete your task now."
        assert conv[-2]["content"][0]["text"].startswith("<tool_call>\n{\"name\": \"image_zoom_in\"")
    assert chain.report.zoomed == 2 and chain.report.skipped == 1

    # the reference's crop of the downsampled picture: 21 x 21 px of flat grey, enlarged; no way to tell
    backend.calls.clear()
    down = ZoomChain(backend, _config(crop_source="downsampled")).run(_queries(scenes)[:2])
    crops = [np.asarray(c[-1]["content"][0]["image"]).astype(int) for c in backend.calls[1]]
    assert [d.zoom["calls"][0]["read_size"] for d in down] == [[21, 21], [21, 21]]
    assert np.abs(crops[0] - crops[1]).mean() < 1.0  # the two scenes' crops are the same picture
    center = crops[0][56:168, 56:168]  # inside the dark frame: where the stripes were, flat grey now
    assert center.std() < 3 and abs(center.mean() - 128) < 4
    assert down[0].answer == down[1].answer and (down[0].answer, down[1].answer) != ("horizontal", "vertical")


@pytest.mark.slow
def test_zoom_chain_memory_stays_far_below_a_whole_decode(zoom_model, scenes):
    """Peak resident memory added while the chain runs on the 12000 x 12000 BigTIFF (pass-1 downsampling by bands
    of rows, a windowed crop, two model passes) stays under a third of the 412 MiB a whole decode holds."""
    status = Path("/proc/self/status")
    clear = Path("/proc/self/clear_refs")
    if not status.exists():
        pytest.skip("needs Linux /proc to read the peak resident memory")

    def kib(key):
        for line in status.read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
        raise KeyError(key)

    backend = _transformers(zoom_model)
    chain = ZoomChain(backend, _config())
    chain.run(_queries(scenes)[:1])  # warm-up: imports, GDAL and allocator pools
    try:
        clear.write_text("5")  # reset the peak (VmHWM) to the current size
    except OSError:
        pytest.skip("cannot reset the peak resident memory (/proc/self/clear_refs)")
    before = kib("VmRSS:")
    results = chain.run(_queries(scenes)[:2])
    peak_mib = (kib("VmHWM:") - before) / 1024
    assert [r.answer for r in results] == ["horizontal", "vertical"]
    assert peak_mib < WHOLE_DECODE_MB / 3, peak_mib


class _ModelServer(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat-completions endpoint serving a transformers backend (a small `vllm serve`)."""

    backend = None
    lock = threading.Lock()
    requests = 0

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        messages = []
        for m in body["messages"]:
            content = m["content"]
            if isinstance(content, list):
                parts = []
                for p in content:
                    if p["type"] == "image_url":
                        data = base64.b64decode(p["image_url"]["url"].split(",", 1)[1])
                        parts.append({"type": "image", "image": Image.open(io.BytesIO(data)).convert("RGB")})
                    else:
                        parts.append({"type": "text", "text": p["text"]})
                content = parts
            messages.append({"role": m["role"], "content": content})
        with self.lock:
            type(self).requests += 1
            gen = self.backend.generate_results([messages], max_new_tokens=body["max_tokens"])[0]
        raw = json.dumps({"choices": [{"message": {"role": "assistant", "content": gen.text},
                                       "finish_reason": "length" if gen.truncated else "stop"}],
                          "usage": {"completion_tokens": gen.n_new_tokens}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


@pytest.mark.slow
def test_zoom_chain_through_the_openai_backend_against_a_local_server(zoom_model, scenes):
    """The same chain on the OpenAI backend, against a real HTTP server on 127.0.0.1 that runs the trained model:
    the images travel as PNG (already resized, so the server's model sees our grid) and the answers, tool calls
    and crop regions equal the transformers backend's."""
    from rscovlm.infer import get_backend

    direct = ZoomChain(_transformers(zoom_model), _config()).run(_queries(scenes)[:2])
    handler = type("Handler", (_ModelServer,), {"backend": _transformers(zoom_model), "requests": 0})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        backend = get_backend("openai", base_url=f"http://127.0.0.1:{httpd.server_address[1]}/v1", model="tiny",
                              concurrency=2, max_new_tokens=64)
        served = ZoomChain(backend, _config()).run(_queries(scenes)[:2])
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert [r.answer for r in served] == ["horizontal", "vertical"] == [r.answer for r in direct]
    assert [r.zoom["calls"] for r in served] == [r.zoom["calls"] for r in direct]
    assert handler.requests == 4  # two questions, two passes each


# ---- the chain's rules, with a scripted backend ---------------------------------------------------------------

class Scripted:
    """Answers from ``script(question, pass_number, conversation)``; records the conversations of every call."""

    def __init__(self, script):
        self.script, self.calls = script, []

    def generate_results(self, conversations, max_new_tokens=None, progress=None, task=None, logprobs=None):
        from rscovlm.infer import Generation

        self.calls.append(conversations)
        out = []
        for conv in conversations:
            user = next(m for m in conv if m["role"] == "user")
            question = user["content"][-1]["text"].split("\n")[0]
            n_pass = sum(m["role"] == "assistant" for m in conv) + 1
            images = [p for m in conv if isinstance(m["content"], list) for p in m["content"] if p["type"] == "image"]
            out.append(Generation(self.script(question, n_pass, conv), "stop", 64, 5,
                                  tuple(p["image"].size for p in images)))
        return out


def _call(box) -> str:
    return '<tool_call>\n{"name": "image_zoom_in", "arguments": {"bbox": %s}}\n</tool_call>' % json.dumps(box)


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    """A 2000 x 1400 PNG (whole-decoded) with random pixels."""
    rgb = np.random.default_rng(1).integers(0, 256, (1400, 2000, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("zoom_rules") / "p.png"
    Image.fromarray(rgb).save(path)
    return path, rgb


def test_fallbacks_skips_depth_margin_and_frames(picture):
    path, rgb = picture
    # pass-1 picture: 2000 x 1400 at <= 448^2 -> 532 x 364 (x 3.759..., y 3.846...)
    answers = {
        ("direct", 1): "It is a field.",
        ("broken", 1): "<tool_call>\n{\"name\": \"image_zoom_in\", \"arguments\": {\"bbox\": [1, 2, 3}}\n</tool_call>",
        ("outside", 1): _call([600, 400, 700, 500]),
        ("swapped", 1): _call([266, 182, 133, 91]),
        ("deep", 1): _call([0, 0, 266, 182]),
        ("deep", 2): _call([0, 0, 100, 100]),
    }

    def script(question, n_pass, conv):
        return answers.get((question, n_pass), f"answer {question} {n_pass}")

    backend = Scripted(script)
    chain = ZoomChain(backend, _config(max_depth=2, margin=0.0, snap_crop=False))
    qs = [Query(str(path), q, id=q) for q in ("direct", "broken", "outside", "swapped", "deep")]
    qs.append(Query(str(path), "count", category="count", id="count"))
    r = {x.id: x for x in chain.run(qs)}
    assert [len(c) for c in backend.calls] == [6, 4, 1]  # passes batched; only "deep" goes a third time
    assert r["direct"].zoom["status"] == "direct" and r["direct"].answer == "It is a field."
    assert r["count"].zoom["status"] == "skipped" and r["count"].answer == "answer count 1"
    for key in ("broken", "outside"):  # pass 2 sees the whole (pass-1) picture, as the reference does
        assert r[key].zoom["status"] == "invalid_call" and r[key].answer == f"answer {key} 2"
        (call,) = r[key].zoom["calls"]
        assert call["source"] == "whole-image" and call["region"] == [0.0, 0.0, 2000.0, 1400.0]
    assert "not valid JSON" in r["broken"].zoom["calls"][0]["problem"]
    assert r["outside"].zoom["calls"][0]["problem"] == "the box has no area inside the image"
    # pass-1 picture: 532 x 364, so a model pixel is 2000/532 x 1400/364 original pixels
    swapped = r["swapped"].zoom["calls"][0]
    assert swapped["region"] == [500.0, 350.0, 1000.0, 700.0]  # corners sorted: [133, 91, 266, 182] mapped
    assert swapped["read_size"] == [500, 350] and swapped["model_size"] == [504, 336]  # not snapped: resampled
    convs = {c[1]["content"][-1]["text"].split("\n")[0]: c for c in backend.calls[1]}
    got = np.asarray(convs["swapped"][-1]["content"][0]["image"])
    want = np.asarray(Image.fromarray(rgb[350:700, 500:1000]).resize((504, 336), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(got, want)  # cut from the original, then resized like training
    assert convs["swapped"][-2]["content"][0]["text"] == answers[("swapped", 1)]  # pass 1's answer, verbatim
    deep = r["deep"].zoom
    assert deep["status"] == "zoomed" and deep["passes"] == 3 and r["deep"].answer == "answer deep 3"
    first, second = deep["calls"]
    assert first["region"] == [0.0, 0.0, 1000.0, 700.0] and first["model_size"] == [1008, 700]
    # the second box refers to the first crop's picture (1008 x 700 model pixels for 1000 x 700 original ones)
    assert second["region"] == [0.0, 0.0, 100.0, 100.0]  # x: ceil(100 * 1000 / 1008) = 100
    assert chain.report.direct == 1 and chain.report.invalid_call == 2 and chain.report.skipped == 1


def test_crops_at_native_resolution_from_windowed_png_jpeg_and_tiff(tmp_path):
    """The crop is read by windows from PNG (libvips, top to bottom), JPEG and tiled TIFF (rasterio) with the
    pixels of a whole decode; a snapped crop is seen unresampled; margins grow the region."""
    pytest.importorskip("pyvips")
    pytest.importorskip("rasterio")
    import tifffile

    from rscovlm.imageio import ReadOptions, open_rgb

    rgb = np.random.default_rng(2).integers(0, 256, (1200, 1600, 3), dtype=np.uint8)
    paths = {"png": tmp_path / "a.png", "jpg": tmp_path / "a.jpg", "tif": tmp_path / "a.tif"}
    Image.fromarray(rgb).save(paths["png"])
    Image.fromarray(rgb).save(paths["jpg"], quality=95)
    tifffile.imwrite(paths["tif"], rgb, tile=(256, 256), photometric="rgb", compression="zlib")
    windowed = ReadOptions(max_decode_megapixels=0.5)  # 1.92 MP: read by windows
    # pass 1: 1600 x 1200 within 448^2 -> 504 x 364; the box [100, 100, 200, 180] -> x 317.46 .. 634.92,
    # y 329.67 .. 593.41 -> floor/ceil (317, 329, 635, 594), 318 x 265 -> snapped to 336 x 280 about its centre:
    # (308, 322, 644, 602). Margin 0.25 (of 317.46 x 263.74): (238, 263, 715, 660), 477 x 397 -> 504 x 420:
    # (225, 252, 729, 672)
    backend = Scripted(lambda q, n, conv: _call([100, 100, 200, 180]) if n == 1 else "done")
    for kind, path in paths.items():
        backend.calls.clear()
        for margin, want in ((0.0, (308, 322, 644, 602)), (0.25, (225, 252, 729, 672))):
            chain = ZoomChain(backend, _config(margin=margin), read_options=windowed)
            (res,) = chain.run([Query(str(path), "what?")])
            (call,) = res.zoom["calls"]
            assert tuple(int(v) for v in call["region"]) == want, (kind, margin, call)
            x0, y0, x1, y1 = want
            assert call["read_size"] == [x1 - x0, y1 - y0] and call["native_scale"] == 1.0
            crop = np.asarray(backend.calls[-1][0][-1]["content"][0]["image"]).astype(int)
            expected = np.asarray(open_rgb(path)).astype(int)[y0:y1, x0:x1]
            tolerance = 2 if kind == "jpg" else 0  # libvips' and Pillow's JPEG decoders may differ by a level
            assert crop.shape == expected.shape and np.abs(crop - expected).max() <= tolerance, kind


def test_qwen2_vl_boxes_are_on_the_0_1000_grid(picture):
    path, _ = picture
    backend = Scripted(lambda q, n, conv: _call([250, 500, 500, 1000]) if n == 1 else "ok")
    (res,) = ZoomChain(backend, _config(family="qwen2_vl", snap_crop=False)).run([Query(str(path), "q")])
    assert res.zoom["calls"][0]["region"] == [500.0, 700.0, 1000.0, 1400.0]


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="crop_source"):
        ZoomConfig(crop_source="resized")
    with pytest.raises(ValueError, match="max_depth"):
        ZoomConfig(max_depth=0)
