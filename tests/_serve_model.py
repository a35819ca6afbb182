"""A tiny model trained to answer one generated scene: detection (its objects, in the reference's plain quad
format) and a Zoom-in Chain (a tool call naming one object's box, then a short answer). The training
conversations are the ones the runners send: a scripted backend answers the runners once with the wanted texts
and records what they sent, then the real tiny model is trained on exactly those conversations, so the trained
model, run through the same runners (and the web page), writes those answers itself."""

from __future__ import annotations

from pathlib import Path

from _memorize import memorize

SIZE = 336  # a multiple of 28 within 224^2..1008^2: the model sees the scene unresized (frame = pixels)
SEED = 5
CATS = ("plane", "ship", "storage-tank")
N_OBJECTS = 3
QUESTION = "How many planes are there?"
ZOOM_ANSWER = "2"


def make_scene(path: Path):
    """Render the scene to ``path`` (PNG); returns its objects (quads in pixels)."""
    from PIL import Image

    from rscovlm.dota.synthetic import SceneConfig, plan_scene

    scene = plan_scene(SIZE, SIZE, SEED, SceneConfig(categories=CATS, num_objects=N_OBJECTS))
    Image.fromarray(scene.render()).save(path)
    return scene.objects


class Scripted:
    """A backend that answers with given texts (one per call, in order) and records the conversations."""

    def __init__(self, texts, policy):
        self.texts, self.policy, self.calls = list(texts), policy, []

    def generate_results(self, conversations, max_new_tokens=None, progress=None, task=None, logprobs=None):
        from rscovlm.infer import Generation, resolve_images

        _, sizes = resolve_images(conversations, self.policy)
        self.calls.append(conversations)
        text = self.texts.pop(0)
        return [Generation(text, "stop", 100, 10, tuple(s)) for s in sizes]


def zoom_box(objects) -> list[int]:
    """The RoI the model is taught to ask for: the first object's box grown by 12 px (pixels = model frame)."""
    q = objects.boxes.data[0]
    xs, ys = q[0::2], q[1::2]
    return [max(0, int(xs.min()) - 12), max(0, int(ys.min()) - 12), min(SIZE, int(xs.max()) + 12),
            min(SIZE, int(ys.max()) + 12)]


def training_samples(image: Path, objects) -> tuple[list[dict], str]:
    """The detection and zoom conversations the runners send for ``image``, with the wanted answers."""
    from rscovlm.geometry import Frame
    from rscovlm.infer.runners import Query, Runner
    from rscovlm.protocol.detection import write_detections
    from rscovlm.protocol.zoom import format_zoom_call
    from rscovlm.resolution import ResolutionPolicy

    policy = ResolutionPolicy()
    answer = write_detections(objects, "plain", frame=Frame.model(SIZE, SIZE))
    det = Scripted([answer], policy)
    Runner(det).run("detect", [Query(str(image))])
    zoom = Scripted([format_zoom_call(zoom_box(objects)), ZOOM_ANSWER], policy)
    Runner(zoom).run("zoom-vqa", [Query(str(image), QUESTION)])
    det_conv = det.calls[0][0] + [{"role": "assistant", "content": [{"type": "text", "text": answer}]}]
    zoom_conv = zoom.calls[1][0] + [{"role": "assistant", "content": [{"type": "text", "text": ZOOM_ANSWER}]}]
    return [{"messages": det_conv}, {"messages": zoom_conv}], answer


def train_scene_model(tiny_model_dir, work: Path, steps: int = 120) -> tuple[Path, Path, object, str]:
    """Scene PNG, trained model folder, the scene's objects and the taught detection answer."""
    import torch


    torch.set_num_threads(1)
    image = work / "scene.png"
    objects = make_scene(image)
    samples, answer = training_samples(image, objects)
    _, out = memorize(tiny_model_dir, samples, work, steps=steps, batch=2, logging_steps=20)
    return image, out, objects, answer


if __name__ == "__main__":  # time the training: python tests/_serve_model.py TINY_DIR WORK
    import sys
    import time

    t = time.perf_counter()
    img, model, objs, ans = train_scene_model(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"trained in {time.perf_counter() - t:.1f} s; answer:\n{ans}")
