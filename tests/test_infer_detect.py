"""Large-image detection: a generated scene through split -> infer (a briefly trained tiny model) -> parse -> map
back -> merge, written as labelTxt / Task1 / GeoJSON / overlay; a GeoTIFF written with rasterio round-trips to
GeoJSON in its projected CRS; Max Mode's geometry."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from rscovlm.infer import Generation
from rscovlm.infer.detect import DetectConfig, Detector, detect_paths, geojson_dict

from _memorize import memorize

SIZE = 924  # 512 / 100 windows: x and y starts 0 and 412 -> 4 patches, a 100 px band seen by two (or four)
SEED = 19  # six objects, each fully inside at least one window, two of them in the shared band
CATS = ("plane", "storage-tank", "ship", "tennis-court")
TRANSFORM = (0.3, 0.02, 500000.0, 0.01, -0.3, 4100000.0)  # 0.3 m pixels, slightly rotated and sheared


def _scene():
    from rscovlm.dota.synthetic import SceneConfig, plan_scene

    return plan_scene(SIZE, SIZE, SEED, SceneConfig(categories=CATS, num_objects=6))


def _inside(quads, window):
    x0, y0, x1, y1 = window
    xs, ys = quads[:, 0::2], quads[:, 1::2]
    return (xs.min(1) >= x0) & (xs.max(1) <= x1) & (ys.min(1) >= y0) & (ys.max(1) <= y1)


@pytest.fixture(scope="module")
def scene_files(tmp_path_factory):
    """The scene as a PNG and as a georeferenced GeoTIFF (same 8-bit RGB pixels), and its objects."""
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import Affine

    d = tmp_path_factory.mktemp("detect")
    scene = _scene()
    rgb = scene.render()
    png = d / "scene.png"
    Image.fromarray(rgb).save(png)
    tif = d / "geo.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=SIZE, height=SIZE, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=Affine(*TRANSFORM), tiled=True, blockxsize=256,
                       blockysize=256, photometric="RGB") as dst:
        dst.write(rgb.transpose(2, 0, 1))
    return {"png": png, "tif": tif, "objects": scene.objects, "rgb": rgb}


@pytest.fixture(scope="module")
def detect_model(tiny_model_dir, scene_files, tmp_path_factory):
    """The tiny model trained (250 AdamW steps) on the scene's four patches, each answered with the objects fully
    inside it in the reference's plain quad format (model frame 504 x 504)."""
    import torch

    from rscovlm.geometry import Boxes, Frame, ObjectSet
    from rscovlm.protocol.detection import write_detections

    torch.set_num_threads(1)
    detector = Detector(None, DetectConfig(categories=",".join(CATS)))
    objects, rgb = scene_files["objects"], scene_files["rgb"]
    quads = objects.boxes.data
    windows = detector.windows(SIZE, SIZE)
    covered = np.zeros(len(objects), bool)
    samples = []
    for win in windows:
        x0, y0, x1, y1 = (int(v) for v in win)
        keep = _inside(quads, win)
        covered |= keep
        patch = Image.fromarray(rgb[y0:y1, x0:x1]).resize((504, 504), Image.Resampling.BICUBIC)
        local = ObjectSet(Boxes(quads[keep] - np.array([x0, y0] * 4), "quad", Frame.original(512, 512)),
                          [objects.labels[i] for i in np.flatnonzero(keep)])
        answer = write_detections(local, "plain", frame=Frame.model(504, 504)) if keep.any() else "There are none."
        messages = detector.prompt.messages({"type": "image", "image": patch})
        samples.append({"messages": messages + [{"role": "assistant", "content": [{"type": "text",
                                                                                   "text": answer}]}]})
    assert len(windows) == 4 and covered.all()
    assert sum(int(_inside(quads, w).sum()) for w in windows) > len(objects)  # some objects are seen twice
    out = tmp_path_factory.mktemp("detect_model")
    _, model_dir = memorize(tiny_model_dir, samples, out, steps=250, batch=4)
    return model_dir


def _backend(model_dir):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rscovlm.infer import GenerationConfig, TransformersBackend

    torch.set_num_threads(1)
    return TransformersBackend(AutoModelForImageTextToText.from_pretrained(model_dir),
                               AutoProcessor.from_pretrained(model_dir),
                               GenerationConfig(batch_size=4, max_new_tokens=200))


@pytest.mark.slow
def test_split_infer_merge_finds_every_object_once(detect_model, scene_files, tmp_path):
    """Proves the whole large-image path with a real model: the windows read from the file, the patch resize
    (512 -> 504), the parse of the reference answers, the model-frame -> patch -> image mapping (every object
    within 1.1 px: integer model coordinates x 512/504) and the merge (objects seen in two or four patches are
    kept once: polygon NMS); confidence scores from the token log-probs; the output files."""
    from rscovlm.dota.io import read_labeltxt, read_task1_dir
    from rscovlm.eval.dota_map import eval_dota
    from rscovlm.geometry.iou import poly_iou

    out = tmp_path / "out"
    report = detect_paths(scene_files["png"], _backend(detect_model), DetectConfig(categories=",".join(CATS),
                                                                                   batch_patches=3), out,
                          geojson=True)
    (image,) = report.per_image
    gt = scene_files["objects"]
    assert report.patches == 4 and image["truncated"] == 0 and image["unparsed"] == 0
    assert image["before_merge"] > image["objects"] == len(gt)
    found = read_labeltxt(out / "labelTxt" / "scene.txt").objects
    iou = poly_iou(found.boxes.data, gt.boxes.data)
    match = iou.argmax(axis=1)
    assert sorted(match.tolist()) == list(range(len(gt))) and (iou.max(axis=1) > 0.9).all()
    assert [found.labels[i] for i in np.argsort(match)] == list(gt.labels)
    err = np.abs(found.boxes.data - gt.boxes.data[match]).max()
    assert err <= 1.1, err
    task1 = read_task1_dir(out / "Task1")
    scores = task1["scene"].scores
    assert len(scores) == len(gt) and ((scores > 0.5) & (scores <= 1.0)).all()  # memorised: confident
    assert sorted(p.name for p in (out / "Task1").iterdir()) == sorted(f"Task1_{c}.txt" for c in CATS)
    gt_dir = tmp_path / "gt"
    from rscovlm.dota.io import write_labeltxt

    write_labeltxt(gt_dir / "scene.txt", gt)
    assert eval_dota(gt_dir, out / "Task1", iou_thr=0.5).mAP == pytest.approx(1.0)
    pixel = json.loads((out / "geojson" / "scene.geojson").read_text())
    assert "crs" not in pixel and pixel["rscovlm:coordinates"].startswith("pixel")
    ring = np.array(pixel["features"][0]["geometry"]["coordinates"][0])
    np.testing.assert_allclose(ring[:4].ravel(), found.boxes.data[0], atol=1e-5)
    with Image.open(out / "overlays" / "scene.png") as im:
        assert im.size == (SIZE, SIZE)
    line = json.loads((out / "detections.jsonl").read_text())
    assert line["objects"] == len(gt) and line["patch_model_size"] == [504, 504]


@pytest.mark.slow
def test_geotiff_round_trips_to_geojson_in_its_crs(detect_model, scene_files, tmp_path):
    """A GeoTIFF written with rasterio (EPSG:32633, a rotated and sheared transform): the same objects are found
    (same pixels), and each GeoJSON vertex is the raster transform applied to the labelTxt vertex; the crs
    member names the raster's CRS so GIS tools place the polygons."""
    rasterio = pytest.importorskip("rasterio")

    out = tmp_path / "geo"
    report = detect_paths(scene_files["tif"], _backend(detect_model), DetectConfig(categories=",".join(CATS)), out,
                          geojson=True, overlay=False)
    assert report.objects == len(scene_files["objects"])
    from rscovlm.dota.io import read_labeltxt

    quads = read_labeltxt(out / "labelTxt" / "geo.txt").objects.boxes.data
    collection = json.loads((out / "geojson" / "geo.geojson").read_text())
    name = collection["crs"]["properties"]["name"]
    assert name == "urn:ogc:def:crs:EPSG::32633"
    assert rasterio.crs.CRS.from_user_input(name) == rasterio.crs.CRS.from_epsg(32633)
    a, b, c, d, e, f = TRANSFORM
    assert len(collection["features"]) == len(quads)
    for feature, quad in zip(collection["features"], quads):
        ring = np.array(feature["geometry"]["coordinates"][0])
        px, py = quad[0::2], quad[1::2]
        want = np.stack([a * px + b * py + c, d * px + e * py + f], axis=1)
        np.testing.assert_allclose(ring[:4], want, atol=1e-5)
        np.testing.assert_allclose(ring[4], ring[0])  # closed ring
        assert 0 < feature["properties"]["score"] <= 1
    with rasterio.open(scene_files["tif"]) as src:  # the same transform as the file's, via rasterio
        np.testing.assert_allclose(np.array(collection["features"][0]["geometry"]["coordinates"][0][0]),
                                   src.transform @ (quads[0][0], quads[0][1]), atol=1e-5)


class FixedBox:
    """Answers every patch with one plane at a fixed box of the model frame (log-probs 0: confidence 1)."""

    def __init__(self, text):
        self.text, self.sizes = text, []

    def generate_results(self, conversations, max_new_tokens=None, progress=None, task=None, logprobs=None):
        out = []
        for conv in conversations:
            size = conv[-1]["content"][0]["image"].size
            self.sizes.append(size)
            tokens = (self.text,) if logprobs else None
            out.append(Generation(self.text, "stop", 10, 1, (size,), None, (0.0,) if logprobs else None, tokens))
        if progress is not None:
            progress.update(len(conversations))
        return out


def test_max_mode_upsamples_patches_and_maps_boxes_back(tmp_path):
    """Max Mode: each 512 px patch goes to the model at 1008 x 1008 (the largest size within 1008^2) and its
    boxes come back scaled by 512/1008 and shifted by the window; without it the patch is 504 x 504."""
    path = tmp_path / "s.png"
    Image.fromarray(np.zeros((600, 1000, 3), np.uint8)).save(path)  # windows: x 0, 412, 488; y 0, 88
    backend = FixedBox("100,100,150,100,150,150,100,150 plane\n")
    det = Detector(backend, DetectConfig(max_mode=True)).detect(path)
    assert set(backend.sizes) == {(1008, 1008)} and det.patches == 6 and det.patch_model_size == (1008, 1008)
    s = 512 / 1008
    assert det.before_merge == 6 and len(det.objects) == 6  # the six boxes do not overlap: all kept
    starts = {(x, y) for x in (0, 412, 488) for y in (0, 88)}
    got = {(round(q[0] - 100 * s, 3), round(q[1] - 100 * s, 3)) for q in det.objects.boxes.data}
    assert got == {(float(x), float(y)) for x, y in starts}
    np.testing.assert_allclose(det.objects.boxes.data[:, 2] - det.objects.boxes.data[:, 0], 50 * s)
    assert (det.objects.scores == 1.0).all()
    backend.sizes.clear()
    Detector(backend, DetectConfig()).detect(path)
    assert set(backend.sizes) == {(504, 504)}


def test_geojson_in_pixels_without_georeferencing_and_errors(tmp_path):
    from rscovlm.geometry import Boxes, ObjectSet
    from rscovlm.infer.detect import ImageDetections, image_paths

    objects = ObjectSet(Boxes(np.array([[0, 0, 10, 0, 10, 5, 0, 5.0]]), "quad"), ["plane"], scores=[0.5])
    doc = geojson_dict(ImageDetections("a.png", "a", (20, 20), objects))
    assert doc["features"][0]["geometry"]["coordinates"][0][-1] == [0.0, 0.0]
    assert doc["features"][0]["properties"] == {"label": "plane", "score": 0.5}
    with pytest.raises(FileNotFoundError, match="no such image file or folder"):
        image_paths(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no images"):
        image_paths(tmp_path)
    with pytest.raises(ValueError, match="gap"):
        DetectConfig(gap=512)
