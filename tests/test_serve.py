"""rscovlm serve: the viewer page driven in a real headless Chromium with a tiny model trained on a generated scene
(detection overlay with the model's boxes, the zoom chain's region of interest), the results browser over a
harness run folder, each upload limit, the one model queue under concurrent requests, and tiles read by windows.

Screenshots are written under the test's tmp folder and, when $RSCOVLM_ARTIFACTS is set, copied there."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install -e '.[serve]')")

import _serve_model as sm  # noqa: E402  (tests/ is on sys.path under pytest's rootdir conftest)

ROOT = Path(__file__).resolve().parents[1]


# ---- helpers ------------------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(url: str, data: bytes | None = None, json_body=None, timeout: float = 120.0):
    """``(status, parsed JSON or bytes)`` of a real HTTP request."""
    headers = {}
    if json_body is not None:
        data, headers = json.dumps(json_body).encode(), {"Content-Type": "application/json"}
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            status, body, ctype = res.status, res.read(), res.headers.get("content-type", "")
    except urllib.error.HTTPError as err:
        status, body, ctype = err.code, err.read(), err.headers.get("content-type", "")
    return status, json.loads(body) if "json" in ctype else body


def _artifact(path: Path) -> None:
    dest = os.environ.get("RSCOVLM_ARTIFACTS")
    if dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(dest) / path.name)


class _InProcess:
    """The app on a real uvicorn server in a thread (127.0.0.1, a free port)."""

    def __init__(self, backend, config):
        import uvicorn

        from rscovlm.serve.app import create_app

        self.app = create_app(backend, config)
        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)


# ---- fixtures -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scene_model(tiny_model_dir, tmp_path_factory):
    """The generated scene, the tiny model trained to answer it (tests/_serve_model.py), its objects and the
    detection answer it was taught."""
    return sm.train_scene_model(tiny_model_dir, tmp_path_factory.mktemp("serve_model"))


@pytest.fixture(scope="module")
def backend(scene_model):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rscovlm.infer import GenerationConfig, TransformersBackend

    torch.set_num_threads(1)
    model_dir = scene_model[1]
    return TransformersBackend(AutoModelForImageTextToText.from_pretrained(model_dir),
                               AutoProcessor.from_pretrained(model_dir), GenerationConfig(max_new_tokens=200))


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A harness run folder of the synthetic benchmark (2 scenes -> 8 items): answers right for some items,
    wrong for others (the expected verdict of each)."""
    from rscovlm.eval.benchmarks import get_benchmark

    base = tmp_path_factory.mktemp("serve_run")
    out, data = base / "O", base / "data"
    options = {"scenes": 2, "holdout": 0, "size": 336, "seed": 3}
    bench = get_benchmark("synthetic").with_options(**options)
    data.mkdir()
    items = bench.items(data)
    expected, lines = {}, []
    for k, it in enumerate(items):
        right = k % 3 != 1  # items 1, 4, 7 answered wrongly
        text = it.target["answer"] if right else ("There are none." if it.meta["task"] == "detection" else "zzz")
        lines.append({"id": it.id, "text": text, "resize": it.meta["plan"]})
        expected[it.id] = right
    (out / "synthetic").mkdir(parents=True)
    (out / "synthetic" / "answers.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (out / "synthetic" / "run.json").write_text(json.dumps({
        "bench": "synthetic", "data_root": str(data), "prompt_set": "reference", "options": options,
        "settings": {"family": "qwen2_5_vl"}}))
    return out, expected


@pytest.fixture(scope="module")
def served(scene_model, run_folder, tmp_path_factory):
    """`rscovlm serve` launched as a real process on a free port, with the trained model and the run folder."""
    port = _free_port()
    log = tmp_path_factory.mktemp("serve_log") / "serve.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "rscovlm", "serve", "--model", str(scene_model[1]),
                                 "--port", str(port), "--results", str(run_folder[0]), "--max-new-tokens", "200"],
                                stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 180
            while True:
                assert proc.poll() is None, f"rscovlm serve exited:\n{log.read_text()}"
                try:
                    if _http(url + "/api/health", timeout=2)[0] == 200:
                        break
                except OSError:
                    pass
                assert time.time() < deadline, f"rscovlm serve did not answer:\n{log.read_text()}"
                time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            proc.wait(30)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through chromedriver (Debian's chromium and chromium-driver packages)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dev extra)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("Chromium or chromedriver is not installed (apt-get install -y chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    yield driver
    driver.quit()


def _wait(driver, predicate, what: str, timeout: float = 90.0):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: predicate(d))
    except Exception:
        status = driver.execute_script("return document.getElementById('status')?.textContent")
        raise AssertionError(f"timed out waiting for {what}; page status: {status!r}") from None


def _state(driver) -> str:
    return driver.execute_script("return document.body.dataset.state")


# ---- the page in a browser ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_page_draws_the_models_detections_and_the_zoom_region(browser, served, scene_model, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from rscovlm.geometry import Frame
    from rscovlm.protocol.detection import parse_detections

    image, _, objects, answer = scene_model
    expected = len(parse_detections(answer, frame=Frame.model(sm.SIZE, sm.SIZE)).objects)
    assert expected == sm.N_OBJECTS == len(objects)

    browser.get(served + "/")
    _wait(browser, lambda d: _state(d) == "ready", "the page to load")
    browser.find_element(By.ID, "file").send_keys(str(image))
    _wait(browser, lambda d: _state(d) == "image", "the upload")
    _wait(browser, lambda d: d.execute_script(
        "return document.querySelectorAll('#map img.leaflet-tile-loaded').length") > 0, "map tiles")

    Select(browser.find_element(By.ID, "task")).select_by_value("detect")
    browser.find_element(By.ID, "run").click()
    _wait(browser, lambda d: _state(d) in ("done", "error"), "the detection")
    assert _state(browser) == "done", browser.find_element(By.ID, "status").text
    boxes = browser.find_elements(By.CSS_SELECTOR, "#map path.det-box")
    assert len(boxes) == expected  # what the model's answer parses to, drawn on the map
    result = browser.execute_script("return window.lastResult")
    assert result["raw"].strip() == answer.strip()  # the trained model wrote the taught answer
    assert len(result["objects"]) == expected
    assert all(0 < o["score"] <= 1 for o in result["objects"])  # per-object confidence
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".det-label")]
    assert sorted(lab.split()[0] for lab in labels) == sorted(o["label"] for o in result["objects"])
    rows = browser.find_elements(By.CSS_SELECTOR, "#objects tr.object-row")
    assert len(rows) == expected
    assert "find the" in browser.find_element(By.ID, "prompt").text  # the prompt that was sent
    assert "plane" in browser.find_element(By.ID, "raw").text
    assert "model" in browser.find_element(By.ID, "timing").text
    # the drawn boxes sit where the quads are: the polygons' screen extents follow the objects' pixel extents
    xs = [b.rect["x"] for b in boxes]
    quad_x = [min(o["quad"][0::2]) for o in result["objects"]]
    assert np.argsort(xs).tolist() == np.argsort(quad_x).tolist()
    shot = tmp_path / "serve_detect.png"
    browser.save_screenshot(str(shot))
    _artifact(shot)

    Select(browser.find_element(By.ID, "task")).select_by_value("zoom-vqa")
    text = browser.find_element(By.ID, "text")
    text.clear()
    text.send_keys(sm.QUESTION)
    browser.find_element(By.ID, "run").click()
    _wait(browser, lambda d: _state(d) in ("done", "error") and d.execute_script(
        "return window.lastResult && window.lastResult.task") == "zoom-vqa", "the zoom chain")
    assert _state(browser) == "done", browser.find_element(By.ID, "status").text
    result = browser.execute_script("return window.lastResult")
    assert result["answer"] == sm.ZOOM_ANSWER and result["zoom"]["status"] == "zoomed"
    region = result["zoom"]["calls"][0]["region"]
    assert region == [float(v) for v in sm.zoom_box(objects)]  # pixels = model frame for this scene
    assert len(browser.find_elements(By.CSS_SELECTOR, "#map path.zoom-roi")) == 1
    assert len(browser.find_elements(By.CSS_SELECTOR, "#map path.det-box")) == 0  # the overlay was replaced
    _wait(browser, lambda d: d.execute_script("return document.getElementById('crop').naturalWidth") > 0,
          "the crop preview")
    crop_w = browser.execute_script("return document.getElementById('crop').naturalWidth")
    assert crop_w == round(region[2] - region[0])  # the crop read, at its native size (under 384 px)
    assert len(result["passes"]) == 2 and sm.QUESTION in result["passes"][0]["prompt"]
    assert "image_zoom_in" in browser.find_element(By.ID, "raw").text  # pass 1's tool call, as written
    shot = tmp_path / "serve_zoom.png"
    browser.save_screenshot(str(shot))
    _artifact(shot)


@pytest.mark.slow
def test_page_rejects_a_non_image_with_the_reason(browser, served, tmp_path):
    from selenium.webdriver.common.by import By

    bad = tmp_path / "notes.png"
    bad.write_text("not an image at all")
    browser.get(served + "/")
    _wait(browser, lambda d: _state(d) == "ready", "the page to load")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    _wait(browser, lambda d: _state(d) == "error", "the refusal")
    status = browser.find_element(By.ID, "status").text
    assert "notes.png: not a PNG, JPEG or TIFF/GeoTIFF image" in status


@pytest.mark.slow
def test_results_browser_shows_items_and_filters_wrong_answers(browser, served, run_folder, tmp_path):
    from selenium.webdriver.common.by import By

    _, expected = run_folder
    browser.get(served + "/results")
    _wait(browser, lambda d: _state(d) in ("done", "error"), "the benchmark table")
    assert _state(browser) == "done", browser.find_element(By.ID, "status").text
    rows = browser.find_elements(By.CSS_SELECTOR, "#items tr.item-row")
    assert {r.get_attribute("data-id"): r.get_attribute("data-correct") for r in rows} == {
        k: "true" if v else "false" for k, v in expected.items()}
    first = rows[0].find_elements(By.TAG_NAME, "td")
    assert "[user]" in first[2].text and first[3].text and first[4].text  # prompt, answer, ground truth
    _wait(browser, lambda d: d.execute_script(
        "return [...document.querySelectorAll('#items img')].every(i => i.complete && i.naturalWidth > 0)"),
        "the item images")
    shapes = browser.execute_script("return [...document.querySelectorAll('#items tr.item-row')].map(r => "
                                    "[r.dataset.id, r.querySelector('img').naturalWidth, "
                                    "r.querySelector('img').naturalHeight])")
    for item_id, w, h in shapes:  # boxed items: ground truth | prediction side by side; the others: the image
        assert (w > 1.5 * h) == item_id.startswith(("grounding/", "detection/")), (item_id, w, h)
    browser.find_element(By.ID, "wrong-only").click()
    _wait(browser, lambda d: _state(d) == "done" and len(d.find_elements(By.CSS_SELECTOR, "#items tr.item-row"))
          == sum(not v for v in expected.values()), "the wrong-only filter")
    wrong = browser.find_elements(By.CSS_SELECTOR, "#items tr.item-row")
    assert sorted(r.get_attribute("data-id") for r in wrong) == sorted(k for k, v in expected.items() if not v)
    assert "wrong" in wrong[0].find_elements(By.TAG_NAME, "td")[5].text
    shot = tmp_path / "serve_results.png"
    browser.save_screenshot(str(shot))
    _artifact(shot)


# ---- without a browser --------------------------------------------------------------------------------------------

def test_per_item_scores_agree_with_the_benchmark_metrics(run_folder):
    from rscovlm.eval.benchmarks import Item, get_benchmark
    from rscovlm.eval.benchmarks.results import item_results, score_run

    out, expected = run_folder
    data = item_results(out / "synthetic")
    assert data["per_item"] and {r["id"]: r["correct"] for r in data["items"]} == expected
    metrics = score_run(out)["results"]["synthetic"]["metrics"]
    for task, metric in (("classification", "train/classification"), ("vqa", "train/vqa"),
                         ("grounding", "train/Acc@0.5")):
        rows = [r for r in data["items"] if r["meta"]["task"] == task]
        assert 100 * np.mean([r["correct"] for r in rows]) == pytest.approx(metrics[metric])
    det = [r for r in data["items"] if r["meta"]["task"] == "detection"]
    assert [r["score"] for r in det] == [1.0 if expected[r["id"]] else 0.0 for r in det]  # F1 per image

    bench = get_benchmark("aid_geochat")
    items = [Item(str(k), "x.jpg", {"classes": "forest, river"}, gt) for k, gt in enumerate(["forest", "river",
                                                                                               "forest"])]
    answers = {"0": {"id": "0", "text": "Forest."}, "1": {"id": "1", "text": "forest"},
               "2": {"id": "2", "text": "forest"}}
    per_item = bench.item_scores(items, answers)
    assert [per_item[k]["correct"] for k in "012"] == [True, False, True]
    assert 100 * np.mean([v["score"] for v in per_item.values()]) == pytest.approx(
        bench.score(items, answers)["metrics"]["accuracy"])
    assert get_benchmark("dota_val").item_scores(items, answers) is None  # an mAP has no per-item verdict


def test_item_scores_agree_with_each_benchmarks_score():
    """Per-item verdicts of GeoGround, RSVQA and LRS-VQA average to the benchmark's own headline metric."""
    from rscovlm.eval.benchmarks import Item, get_benchmark

    resize = {"original": [100, 100], "model": [100, 100]}
    bench = get_benchmark("geoground_rsvg_test")
    items = [Item(str(k), "x.png", {"object": "the plane"}, [10.0, 10.0, 50.0, 50.0]) for k in range(3)]
    answers = {"0": {"id": "0", "text": "10,10,50,50 the plane", "resize": resize},
               "1": {"id": "1", "text": "60,60,90,90 the plane", "resize": resize},
               "2": {"id": "2", "text": "12,10,50,52 the plane", "resize": resize}}
    per = bench.item_scores(items, answers)
    assert [per[k]["correct"] for k in "012"] == [True, False, True] and per["0"]["score"] == pytest.approx(1.0)
    assert 100 * np.mean([v["correct"] for v in per.values()]) == pytest.approx(
        bench.score(items, answers)["metrics"]["Acc@0.5"])

    bench = get_benchmark("rsvqa_hr")
    items = [Item(str(k), "x.tif", {"question": "q"}, gt, {"type": "presence"}) for k, gt in enumerate(["yes", "no"])]
    answers = {"0": {"id": "0", "text": "Yes"}, "1": {"id": "1", "text": "yes"}}
    per = bench.item_scores(items, answers)
    assert [per[k]["correct"] for k in "01"] == [True, False]
    assert 100 * np.mean([v["correct"] for v in per.values()]) == pytest.approx(
        bench.score(items, answers)["metrics"]["overall"])

    bench = get_benchmark("lrs_vqa")
    items = [Item(f"FAIR_{k}", "x.tif", {"question": "q"}, gt, {"category": "color", "source": "FAIR"})
             for k, gt in enumerate(["red", "white", "blue"])]
    answers = {"FAIR_0": {"id": "FAIR_0", "text": "red"}, "FAIR_1": {"id": "FAIR_1", "text": "black"},
               "FAIR_2": {"id": "FAIR_2", "text": "Blue"}}
    per = bench.item_scores(items, answers)
    assert [per[f"FAIR_{k}"]["correct"] for k in range(3)] == [True, False, True]
    assert 100 * np.mean([v["correct"] for v in per.values()]) == pytest.approx(
        bench.score(items, answers)["metrics"]["all/OA"])


@pytest.fixture()
def small_limits_server(backend, tmp_path):
    from rscovlm.serve.app import ServeConfig

    uploads = tmp_path / "uploads"
    config = ServeConfig(upload_dir=str(uploads), max_upload_mb=0.05, max_megapixels=0.1, max_new_tokens=200)
    with _InProcess(backend, config) as server:
        yield server, uploads


def _png_bytes(array) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.slow
def test_upload_limits_answer_with_the_reason_and_keep_nothing(small_limits_server, scene_model):
    server, uploads = small_limits_server
    url = server.url + "/api/upload?name="
    rng = np.random.default_rng(0)

    noisy = _png_bytes(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8))  # 0.04 MP but ~120 KB
    assert len(noisy) > 0.05 * (1 << 20)
    status, body = _http(url + "noise.png", noisy)  # refused by its declared length before it is read
    assert status == 413 and body["detail"] == ("noise.png: the upload is 0.1 MiB, more than the limit of 0.05 MiB "
                                                "(rscovlm serve --max-upload-mb)")
    chunks = iter([noisy[i:i + 8192] for i in range(0, len(noisy), 8192)])  # chunked: no declared length
    status, body = _http(url + "noise.png", chunks)
    assert status == 413 and body["detail"] == ("noise.png: the upload is more than the limit of 0.05 MiB (rscovlm "
                                                "serve --max-upload-mb)")

    status, body = _http(url + "big.png", _png_bytes(np.zeros((400, 400, 3), np.uint8)))  # 0.16 MP, small file
    assert status == 413 and body["detail"] == ("big.png: 400 x 400 px is 0.2 megapixels, more than the limit of "
                                                "0.1 (rscovlm serve --max-megapixels)")

    status, body = _http(url + "notes.txt", b"hello, this is text")
    assert status == 415 and "notes.txt: not a PNG, JPEG or TIFF/GeoTIFF image" in body["detail"]

    status, body = _http(url + "cut.png", _png_bytes(np.zeros((64, 64, 3), np.uint8))[:40])
    assert status == 422 and body["detail"].startswith("cut.png: cannot be read as an image")

    status, body = _http(url + "empty.png", b"")
    assert status == 400 and body["detail"] == "empty.png: the upload is empty"
    assert list(uploads.iterdir()) == []  # nothing of a refused upload stays

    status, body = _http(url + "ok.png", _png_bytes(np.full((100, 120, 3), 90, np.uint8)))
    assert status == 200 and (body["width"], body["height"]) == (120, 100)
    assert [p.name for p in uploads.iterdir()] == [f"{body['id']}.png"]  # stored under the server's folder only
    status, health = _http(server.url + "/api/health")
    assert health["limits"] == {"max_upload_mb": 0.05, "max_megapixels": 0.1}


@pytest.mark.slow
def test_two_concurrent_requests_both_succeed_one_at_a_time(backend, scene_model, tmp_path):
    from rscovlm.serve.app import ServeConfig

    with _InProcess(backend, ServeConfig(upload_dir=str(tmp_path), max_new_tokens=200)) as server:
        _two_requests(server, scene_model)


def _two_requests(server, scene_model):
    status, info = _http(server.url + "/api/upload?name=scene.png", scene_model[0].read_bytes())
    assert status == 200
    results = [None, None]

    def ask(k):
        results[k] = _http(server.url + "/api/run", json_body={"image": info["id"], "task": "detect"})

    threads = [threading.Thread(target=ask, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [r[0] for r in results] == [200, 200], results
    assert all(len(r[1]["objects"]) == sm.N_OBJECTS for r in results)
    first, second = sorted((r[1]["timing"] for r in results), key=lambda t: t["started_at"])
    assert second["started_at"] >= first["finished_at"]  # never two model calls at once
    assert second["waited_s"] > 0 and second["ahead"] == 1  # the second one waited in the queue
    assert _http(server.url + "/api/health")[1]["queue"]["served"] == 2


@pytest.mark.slow
def test_large_images_are_detected_by_patches(backend, scene_model, tmp_path):
    """Above split_megapixels detection takes infer.detect's path (512 px patches, merge); the objects shown are
    the merge of what the patch answers parse to."""
    from rscovlm.geometry import Frame
    from rscovlm.protocol.detection import parse_detections
    from rscovlm.serve.app import ServeConfig

    config = ServeConfig(upload_dir=str(tmp_path), max_new_tokens=120, split_megapixels=0.05)
    with _InProcess(backend, config) as server:
        status, info = _http(server.url + "/api/upload?name=scene.png", scene_model[0].read_bytes())
        status, result = _http(server.url + "/api/run", json_body={"image": info["id"], "task": "detect"})
    assert status == 200, result
    assert result["mode"] == "split" and result["patches"] == result["n_passes"] == 1
    assert result["facts"]["patch_model_size"] == [504, 504]  # the paper's 512 px patch in the model frame
    raw = result["passes"][0]["raw"]
    parsed = parse_detections(raw, frame=Frame.model(504, 504))
    assert len(result["objects"]) <= result["facts"]["before_merge"] <= len(parsed.objects)


@pytest.mark.slow
def test_uploads_stay_in_a_temporary_folder_removed_on_exit(backend, tmp_path):
    from rscovlm.serve.app import ServeConfig

    pickable = tmp_path / "pick"
    pickable.mkdir()
    Image.fromarray(np.full((20, 30, 3), 7, np.uint8)).save(pickable / "field.png")
    (pickable / "notes.txt").write_text("not listed")
    with _InProcess(backend, ServeConfig(images=str(pickable))) as server:
        folder = server.app.state.viewer.store.folder
        status, info = _http(server.url + "/api/upload?name=a.png", _png_bytes(np.zeros((30, 40, 3), np.uint8)))
        assert status == 200 and (folder / f"{info['id']}.png").is_file()
        assert folder.name.startswith("rscovlm-serve-")
        listing = _http(server.url + "/api/images")[1]
        assert listing["folder"] == ["field.png"] and [im["id"] for im in listing["images"]] == [info["id"]]
        status, picked = _http(server.url + "/api/images/pick", json_body={"name": "field.png"})
        assert status == 200 and (picked["width"], picked["height"]) == (30, 20)
        assert not (folder / "field.png").exists()  # a picked file is read where it is, not copied
        for name in ("../pick/field.png", "notes.txt", str(pickable / "field.png")):
            status, body = _http(server.url + "/api/images/pick", json_body={"name": name})
            assert status == 404 and "is not an image of the --images folder" in body["detail"], name
    assert not folder.exists()


def test_queue_refuses_beyond_its_waiting_room():
    from rscovlm.serve.app import ModelQueue, QueueFull

    queue = ModelQueue(max_waiting=1)
    release, started = threading.Event(), threading.Event()

    def hold():
        started.set()
        release.wait(10)
        return "first"

    out = {}
    first = threading.Thread(target=lambda: out.setdefault("a", queue.run(hold)))
    first.start()
    started.wait(10)
    second = threading.Thread(target=lambda: out.setdefault("b", queue.run(lambda: "second")))
    second.start()
    deadline = time.time() + 10
    while queue.state()["waiting"] != 1:
        assert time.time() < deadline
        time.sleep(0.01)
    with pytest.raises(QueueFull, match="1 requests are already waiting"):
        queue.run(lambda: "third")
    release.set()
    first.join(10)
    second.join(10)
    assert out["a"][0] == "first" and out["b"][0] == "second" and out["b"][1]["ahead"] == 1


def test_tiles_come_from_windows_of_a_geotiff(tmp_path):
    """Tiles of a tiled GeoTIFF (read by rasterio windows) hold the image's pixels at the native zoom, the
    overview's at low zooms, transparency past the edge; outside the image there is no tile."""
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import Affine

    from rscovlm.serve.images import TILE, StoredImage

    w, h = 1300, 700
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    path = tmp_path / "scene.tif"
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=3, dtype="uint8", crs="EPSG:32633",
                       transform=Affine(0.5, 0, 500000, 0, -0.5, 4100000), tiled=True, blockxsize=256,
                       blockysize=256, photometric="RGB") as dst:
        dst.write(rgb.transpose(2, 0, 1))
    from rscovlm.serve.images import ImageStore, Limits

    store = ImageStore(tmp_path / "uploads", Limits(), max_open=1)  # an uploaded GeoTIFF keeps its georeferencing
    with open(path, "rb") as fh:
        tif = store.add_upload("scene.tif", fh)
    uploaded = tif.info()
    assert uploaded["georeferenced"] and uploaded["access"] == "random" and uploaded["width"] == w
    first = tif.tile(3, 0, 0)
    other = store.add_file(tmp_path / "uploads" / f"{tif.id}.tif", "again")  # one image open at a time: the
    assert other.is_open and not tif.is_open  # least recently used is released ...
    assert tif.tile(3, 0, 0) == first and tif.is_open and not other.is_open  # ... and opened again when shown
    store.close()
    image = StoredImage("t", path, "scene.tif", overview_side=256)
    assert image.source.access == "random" and image.native_zoom == 3  # 1300 px -> 2^3 tiles of 256 across
    info = image.info()
    assert info["georeferenced"] and (info["width"], info["height"]) == (w, h)

    def tile(z, x, y):
        import io

        return np.asarray(Image.open(io.BytesIO(image.tile(z, x, y))))

    t = tile(3, 1, 2)  # native: pixels [256, 512) x [512, 700), transparent below row 700
    assert t.shape == (TILE, TILE, 4)
    assert np.array_equal(t[:188, :, :3], rgb[512:700, 256:512]) and (t[:188, :, 3] == 255).all()
    assert (t[188:, :, 3] == 0).all()
    edge = tile(3, 5, 0)  # the last column: [1280, 1300)
    assert np.array_equal(edge[:, :20, :3], rgb[0:256, 1280:1300]) and (edge[:, 20:, 3] == 0).all()
    low = tile(0, 0, 0)  # the whole image in one tile, from the 256 px overview
    assert image._overview is not None and image._overview.size == (256, 138)
    assert (low[:81, :162, 3] == 255).all() and (low[:, 165:, 3] == 0).all()
    assert abs(low[:81, :162, :3].astype(float).mean() - rgb.mean()) < 4  # the same picture, smaller
    assert image.tile(3, 6, 0) is None and image.tile(4, 0, 0) is None and image.tile(0, 1, 0) is None
    image.close()


@pytest.mark.slow
def test_serve_command_help_and_bad_options(scene_model, tmp_path, capsys):
    from rscovlm.cli import main

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "rscovlm", "serve", "--help"], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=60)
    assert out.returncode == 0 and "--max-upload-mb" in out.stdout and "127.0.0.1" in out.stdout
    assert main(["serve", "--model", str(scene_model[1]), "--results", str(tmp_path / "missing")]) == 2
    assert f"--results {tmp_path / 'missing'}: no such folder" in capsys.readouterr().err
