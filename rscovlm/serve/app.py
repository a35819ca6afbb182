"""The web viewer's HTTP application (FastAPI): pages, tiles, uploads, task runs through one model queue, and the
results browser of a harness run folder.

Routes (JSON unless noted; errors are ``{"detail": message}`` with a 4xx/5xx status):

==============================================  ===========================================================
``GET /``, ``GET /results``                      the viewer page and the results browser (HTML)
``GET /static/...``                              the pages' scripts and the vendored Leaflet (no CDN)
``GET /api/health``                              model, backend, tasks, limits, queue state
``POST /api/upload?name=N``                      the raw image bytes as the body -> the image's info
``GET /api/images``                              known images and the files of ``--images`` to pick
``POST /api/images/pick``                        ``{"name"}``: a file of the ``--images`` folder -> info
``GET /api/images/{id}/tiles/{z}/{x}/{y}.png``   a map tile (:mod:`rscovlm.serve.images`)
``GET /api/images/{id}/region.png``              ``x0, y0, x1, y1`` (original pixels), ``side``: a preview
``POST /api/run``                                ``{"image", "task", "text", "classes", "categories",
                                                 "category"}`` -> result, prompts, raw answers, timing
``GET /api/results``                             the benchmarks of the run folder
``GET /api/results/{bench}``                     ``wrong``, ``offset``, ``limit``: items with scores
``GET /api/results/{bench}/items/{i}/image.png`` ``side``: the item's image, resized
``POST /api/results/{bench}/items/{i}/open``     the item's image added to the viewer -> info
==============================================  ===========================================================

Model calls go through :class:`ModelQueue`: one at a time, in arrival order, at most ``max_waiting`` waiting
(more: HTTP 503), so several users never hold two models' worth of activations at once. Each run answers with
its queue facts (when it was queued, started and finished; seconds waited and run).
"""


import contextlib
import json
import math
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

TASKS = ("detect", "zoom-vqa", "ground", "vqa", "classify")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


@dataclass
class ServeConfig:
    """Options of the viewer (the model itself is given as a backend)."""

    model_name: str = field(default="", metadata={"help": "shown on the page"})
    backend_name: str = field(default="transformers", metadata={"help": "shown on the page"})
    results: str | None = field(default=None, metadata={"help": "harness run folder (O/<bench>/answers.jsonl) "
                                                                "for the results browser"})
    images: str | None = field(default=None, metadata={"help": "folder whose images the page may pick"})
    upload_dir: str | None = field(default=None, metadata={"help": "where uploads are written (default: a new "
                                                                   "temporary folder, removed on exit)"})
    max_upload_mb: float = field(default=512.0, metadata={"help": "largest upload in MiB"})
    max_megapixels: float = field(default=1000.0, metadata={"help": "largest image in megapixels"})
    max_waiting: int = field(default=8, metadata={"help": "requests that may wait for the model (more: busy)"})
    overview_side: int = field(default=2048, metadata={"help": "long side of the overview low zooms are read from"})
    open_images: int = field(default=4, metadata={"help": "images kept decoded (with their overviews) at once; "
                                                          "others are opened again when shown"})
    categories: str = field(default="dota-v1.0", metadata={"help": "detection vocabulary (a category set or "
                                                                   "comma-separated names)"})
    split_megapixels: float = field(default=1.0, metadata={
        "help": "detect: images above this are split into 512 px patches (infer.detect), smaller ones are "
                "answered whole"})
    prompt_set: str = field(default="reference", metadata={"help": "prompt set"})
    family: str = field(default="qwen2_5_vl", metadata={"help": "model family (frame of answer coordinates)"})
    max_new_tokens: int | None = field(default=None, metadata={"help": "answer budget (default: per task)"})
    max_passes_shown: int = field(default=16, metadata={"help": "prompts and raw answers listed per run"})

    def __post_init__(self) -> None:
        if self.max_waiting < 1 or self.overview_side < 256 or self.split_megapixels <= 0 or self.open_images < 1:
            raise ValueError(f"need max_waiting >= 1, overview_side >= 256, split_megapixels > 0, open_images >= 1; "
                             f"got {self.max_waiting}, {self.overview_side}, {self.split_megapixels}, "
                             f"{self.open_images}")


class QueueFull(Exception):
    pass


class ModelQueue:
    """One model call at a time (module docstring)."""

    def __init__(self, max_waiting: int = 8):
        self.max_waiting = max_waiting
        self._model = threading.Lock()
        self._state = threading.Lock()
        self.waiting = 0
        self.running = False
        self.served = 0

    def run(self, fn):
        """``(fn(), facts)``; facts: ``queued_at``/``started_at``/``finished_at`` (epoch seconds), ``waited_s``,
        ``run_s``, ``ahead`` (requests waiting or running when this one arrived)."""
        with self._state:
            if self.waiting >= self.max_waiting:
                raise QueueFull(f"{self.waiting} requests are already waiting for the model; try again later")
            ahead = self.waiting + int(self.running)
            self.waiting += 1
        queued = time.time()
        try:
            self._model.acquire()
        finally:
            with self._state:
                self.waiting -= 1
        try:
            with self._state:
                self.running = True
            started = time.time()
            out = fn()
            finished = time.time()
            with self._state:
                self.served += 1
        finally:
            with self._state:
                self.running = False
            self._model.release()
        return out, {"queued_at": queued, "started_at": started, "finished_at": finished,
                     "waited_s": round(started - queued, 4), "run_s": round(finished - started, 4), "ahead": ahead}

    def state(self) -> dict:
        with self._state:
            return {"waiting": self.waiting, "running": self.running, "served": self.served,
                    "max_waiting": self.max_waiting}


def prompt_text(messages) -> str:
    from rscovlm.eval.benchmarks.results import prompt_text as text

    return text(messages)


class Recording:
    """A backend wrapper keeping the prompt text, raw answer and facts of each conversation it answers (the
    first ``limit``; the count of all)."""

    def __init__(self, backend, limit: int = 16):
        self.backend, self.limit = backend, limit
        self.passes: list[dict] = []
        self.n = 0

    def generate_results(self, conversations, max_new_tokens=None, progress=None, task=None, logprobs=None):
        start = time.perf_counter()
        gens = self.backend.generate_results(conversations, max_new_tokens, progress, task, logprobs=logprobs)
        seconds = (time.perf_counter() - start) / max(1, len(gens))
        for conv, g in zip(conversations, gens):
            self.n += 1
            if len(self.passes) < self.limit:
                self.passes.append({"prompt": prompt_text(conv), "raw": g.text, "finish_reason": g.finish_reason,
                                    "n_new_tokens": g.n_new_tokens, "image_sizes": [list(s) for s in g.image_sizes],
                                    "seconds": round(seconds, 4)})
        return gens

    def generate(self, conversations, max_new_tokens=None, progress=None, task=None):
        return [g.text for g in self.generate_results(conversations, max_new_tokens, progress, task)]


def _objects_json(objects) -> list[dict]:
    import numpy as np

    scores = objects.scores if objects.scores is not None else [None] * len(objects)
    return [{"label": lab, "quad": np.round(q, 3).tolist(),
             "score": None if s is None or not np.isfinite(s) else round(float(s), 6)}
            for lab, q, s in zip(objects.labels, objects.boxes.data, scores)]


def _names(value) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(",")
    names = [str(v).strip() for v in value if str(v).strip()]
    return names or None


class Viewer:
    """The state behind the routes: backend, queue, image store, results folder."""

    def __init__(self, backend, config: ServeConfig):
        from rscovlm.serve.images import ImageStore, Limits

        self.backend, self.config = backend, config
        self.queue = ModelQueue(config.max_waiting)
        self._tmp = None
        if config.upload_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="rscovlm-serve-")
            folder = Path(self._tmp.name)
        else:
            folder = Path(config.upload_dir)
        self.store = ImageStore(folder, Limits(config.max_upload_mb, config.max_megapixels), config.overview_side,
                                config.open_images)
        self.results = Path(config.results) if config.results else None
        if self.results is not None and not self.results.is_dir():
            raise ValueError(f"--results {self.results}: no such folder")
        self.images_dir = Path(config.images) if config.images else None
        if self.images_dir is not None and not self.images_dir.is_dir():
            raise ValueError(f"--images {self.images_dir}: no such folder")
        self._item_cache: dict[str, tuple[float, dict]] = {}
        self._item_lock = threading.Lock()

    def close(self) -> None:
        self.store.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    # ---- tasks ------------------------------------------------------------------------------------------------
    def run_task(self, image, task: str, body: dict) -> dict:
        """Run ``task`` on ``image`` (a :class:`~rscovlm.serve.images.StoredImage`); called inside the queue."""
        from rscovlm.infer.runners import Query, Runner, RunnerConfig

        c = self.config
        rec = Recording(self.backend, c.max_passes_shown)
        text = str(body.get("text") or "").strip()
        w, h = image.size
        if task in ("vqa", "zoom-vqa", "ground") and not text:
            raise ValueError(f"task {task} needs a text ({'the object' if task == 'ground' else 'the question'})")
        categories = _names(body.get("categories"))
        out: dict = {"task": task, "image": image.id, "size": [w, h]}
        if task == "detect" and w * h > c.split_megapixels * 1e6:
            from rscovlm.infer.detect import DetectConfig, Detector

            cfg = DetectConfig(categories=",".join(categories) if categories else c.categories,
                               prompt_set=c.prompt_set, family=c.family, max_new_tokens=c.max_new_tokens)
            d = Detector(rec, cfg).detect(image.path)
            out.update(mode="split", objects=_objects_json(d.objects), patches=d.patches,
                       facts={"truncated": d.truncated, "unparsed": d.unparsed, "unknown_labels": d.unknown_labels,
                              "unscored": d.unscored, "before_merge": d.before_merge,
                              "patch_model_size": list(d.patch_model_size)})
        else:
            runner = Runner(rec, RunnerConfig(prompt_set=c.prompt_set, family=c.family, categories=c.categories,
                                              max_new_tokens=c.max_new_tokens))
            query = Query(str(image.path), text=text, classes=_names(body.get("classes")), categories=categories,
                          category=str(body["category"]).strip() or None if body.get("category") else None)
            if task == "classify" and not query.classes:
                raise ValueError("task classify needs the classes (comma-separated)")
            result = runner.run(task, [query])[0].to_json()
            result.pop("image", None)
            out.update(mode="whole", **{k: v for k, v in result.items() if k not in ("task", "size")})
        out["passes"] = rec.passes
        out["n_passes"] = rec.n
        return out

    # ---- results ----------------------------------------------------------------------------------------------
    def benchmarks(self) -> list[dict]:
        if self.results is None:
            return []
        out = []
        for f in sorted(self.results.glob("*/answers.jsonl")):
            with open(f, "rb") as fh:
                n = sum(1 for line in fh if line.strip())
            out.append({"bench": f.parent.name, "answers": n})
        return out

    def items(self, bench: str) -> dict:
        """:func:`rscovlm.eval.benchmarks.results.item_results` of ``bench`` with its metrics (cached until the
        answers file changes)."""
        from rscovlm.eval.benchmarks.results import item_results, score_run

        if self.results is None:
            raise KeyError("no results folder: start rscovlm serve with --results O")
        if bench not in {b["bench"] for b in self.benchmarks()}:
            raise KeyError(f"no benchmark {bench!r} in {self.results}")
        folder = self.results / bench
        stamp = (folder / "answers.jsonl").stat().st_mtime
        with self._item_lock:
            cached = self._item_cache.get(bench)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            data = item_results(folder)
            try:
                scored = score_run(self.results, benches=[bench], partial=True)["results"]
                data["metrics"] = next(iter(scored.values()))["metrics"]
            except (ValueError, KeyError) as err:
                data["metrics"], data["metrics_error"] = {}, str(err)
            self._item_cache[bench] = (stamp, data)
            return data


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def create_app(backend, config: ServeConfig | None = None):
    """The FastAPI application serving ``backend`` (any registered backend object) with ``config``."""
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles

    from rscovlm.imageio import ImageReadError
    from rscovlm.serve.images import TILE, UploadRejected

    config = config or ServeConfig()
    viewer = Viewer(backend, config)
    static = Path(str(resources.files("rscovlm.serve").joinpath("static")))

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        viewer.close()  # uploads are removed with their temporary folder

    app = FastAPI(title="rscovlm viewer", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.viewer = viewer
    app.mount("/static", StaticFiles(directory=static), name="static")

    def image_of(image_id: str):
        try:
            return viewer.store.get(image_id)
        except KeyError as err:
            raise HTTPException(404, err.args[0]) from None

    def png(data: bytes) -> Response:
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    def to_png(picture) -> bytes:
        import io

        buf = io.BytesIO()
        picture.save(buf, "PNG", compress_level=1)
        return buf.getvalue()

    @app.exception_handler(UploadRejected)
    async def rejected(_request, err: UploadRejected):
        return JSONResponse({"detail": err.message}, status_code=err.status)

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(static / "index.html")

    @app.get("/results", include_in_schema=False)
    def results_page():
        return FileResponse(static / "results.html")

    @app.get("/api/health")
    def health():
        c = config
        return {"ok": True, "model": c.model_name, "backend": c.backend_name, "tasks": list(TASKS),
                "categories": c.categories, "limits": {"max_upload_mb": c.max_upload_mb,
                                                       "max_megapixels": c.max_megapixels},
                "types": ["PNG", "JPEG", "TIFF/GeoTIFF"], "queue": viewer.queue.state(),
                "results": viewer.results is not None}

    @app.post("/api/upload")
    async def upload(request: Request, name: str = "upload"):
        declared = request.headers.get("content-length")
        up = viewer.store.begin_upload(name, int(declared) if declared and declared.isdigit() else None)
        try:
            async for chunk in request.stream():
                if chunk:
                    up.write(chunk)
        except BaseException:
            up.discard()
            raise
        image = await run_in_threadpool(up.finish)
        return image.info()

    @app.get("/api/images")
    def images():
        folder = []
        if viewer.images_dir is not None:
            folder = sorted(p.name for p in viewer.images_dir.iterdir()
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        return {"images": [im.info() for im in viewer.store.images.values()], "folder": folder}

    @app.post("/api/images/pick")
    def pick(body: dict):
        name = str(body.get("name", ""))
        if viewer.images_dir is None:
            raise HTTPException(404, "no --images folder to pick from")
        path = viewer.images_dir / name
        if Path(name).name != name or not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            raise HTTPException(404, f"{name!r} is not an image of the --images folder")
        return viewer.store.add_file(path).info()

    @app.get("/api/images/{image_id}")
    def image_info(image_id: str):
        return image_of(image_id).info()

    @app.get("/api/images/{image_id}/tiles/{z}/{x}/{y}.png")
    def tile(image_id: str, z: int, x: int, y: int):
        data = image_of(image_id).tile(z, x, y)
        if data is None:
            raise HTTPException(404, f"tile {z}/{x}/{y} is outside the image")
        return png(data)

    @app.get("/api/images/{image_id}/region.png")
    def region(image_id: str, x0: float, y0: float, x1: float, y1: float, side: int = 512):
        image = image_of(image_id)
        w, h = image.size
        x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)
        if not (x1 - x0 >= 1 and y1 - y0 >= 1) or not 16 <= side <= 4 * TILE:
            raise HTTPException(400, f"region {x0, y0, x1, y1} has no area inside the {w} x {h} image, or side "
                                     f"{side} is not within 16..{4 * TILE}")
        s = min(1.0, side / max(x1 - x0, y1 - y0))
        out_w, out_h = max(1, round((x1 - x0) * s)), max(1, round((y1 - y0) * s))
        return png(to_png(image.region(x0, y0, x1, y1, out_w, out_h)))

    @app.post("/api/run")
    def run(body: dict):
        from rscovlm.infer.runners import TASKS as RUNNER_TASKS

        task = body.get("task")
        if task not in TASKS or task not in RUNNER_TASKS:
            raise HTTPException(400, f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
        image = image_of(str(body.get("image", "")))
        t0 = time.perf_counter()
        try:
            result, facts = viewer.queue.run(lambda: viewer.run_task(image, task, body))
        except QueueFull as err:
            raise HTTPException(503, str(err)) from None
        except (ValueError, KeyError, ImageReadError) as err:
            raise HTTPException(422, f"{task}: {err}") from None
        result["timing"] = {**facts, "total_s": round(time.perf_counter() - t0, 4)}
        return JSONResponse(_finite(result))

    @app.get("/api/results")
    def results_list():
        return {"folder": None if viewer.results is None else str(viewer.results),
                "benchmarks": viewer.benchmarks()}

    def bench_items(bench: str) -> dict:
        try:
            return viewer.items(bench)
        except KeyError as err:
            raise HTTPException(404, err.args[0]) from None
        except ValueError as err:
            raise HTTPException(422, str(err)) from None

    @app.get("/api/results/{bench}")
    def results_items(bench: str, wrong: bool = False, offset: int = 0, limit: int = 50):
        data = bench_items(bench)
        rows = [dict(r, index=i) for i, r in enumerate(data["items"])]
        n_wrong = sum(r["correct"] is False for r in rows)
        if wrong:
            rows = [r for r in rows if r["correct"] is False]
        page = rows[max(0, offset):max(0, offset) + max(1, min(limit, 500))]
        head = {k: v for k, v in data.items() if k != "items"}
        return JSONResponse(_finite({**head, "n": len(data["items"]), "n_wrong": n_wrong, "n_shown": len(rows),
                                     "offset": offset, "items": json.loads(json.dumps(page, default=str))}))

    def item_row(bench: str, index: int) -> dict:
        items = bench_items(bench)["items"]
        if not 0 <= index < len(items):
            raise HTTPException(404, f"{bench}: no item {index}")
        return items[index]

    def item_path(bench: str, index: int) -> str:
        return item_row(bench, index)["image"]

    @app.get("/api/results/{bench}/items/{index}/image.png")
    def item_image(bench: str, index: int, side: int = 256, boxes: bool = True):
        """The item's image at most ``side`` px; with ``boxes`` and boxes to show (a target holding ``quads`` and
        ``labels``, a parsed prediction) the ground truth | prediction review picture."""
        import numpy as np

        from rscovlm.geometry import Boxes, ObjectSet
        from rscovlm.imageio import ImageSource
        from rscovlm.viz.overlay import compare

        row = item_row(bench, index)
        side = max(16, min(side, 4 * TILE))
        try:
            with ImageSource(row["image"]) as src:
                w, h = src.size
                s = min(1.0, side / max(w, h))
                picture = src.resized((max(1, round(w * s)), max(1, round(h * s))))
        except ImageReadError as err:
            raise HTTPException(422, str(err)) from None
        target, pred = row["target"], row.get("pred")
        if boxes and isinstance(target, dict) and "quads" in target and pred is not None:
            def objects(d):
                quads = np.asarray(d["quads"], float).reshape(-1, 8) * s
                return ObjectSet(Boxes(quads, "quad"), list(d["labels"]))

            picture = compare(picture, objects(target), objects(pred))
        return png(to_png(picture))

    @app.post("/api/results/{bench}/items/{index}/open")
    def item_open(bench: str, index: int):
        return viewer.store.add_file(item_path(bench, index)).info()

    return app
