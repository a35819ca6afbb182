"""data preview: PNGs with boxes drawn from the parsed targets, and one index.html."""

import re

import numpy as np
import yaml
from PIL import Image

from rscovlm.cli import main
from rscovlm.data.records import write_coco, write_jsonl


def test_preview_writes_pngs_and_html(tmp_path):
    img = tmp_path / "img"
    img.mkdir()
    Image.new("RGB", (400, 300), (20, 30, 40)).save(img / "d.png")
    Image.new("RGB", (256, 256), (20, 30, 40)).save(img / "c.png")
    write_coco(tmp_path / "d.json", {"images": [{"id": 1, "file_name": "d.png", "width": 400, "height": 300}],
                                     "categories": [{"id": 1, "name": "plane"}],
                                     "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                                                      "segmentation": [[100, 100, 200, 100, 200, 150, 100, 150]],
                                                      "bbox": [100, 100, 100, 50], "area": 5000}]})
    write_jsonl(tmp_path / "c.jsonl", [{"id": "x", "source": "s", "task": "referring", "messages": [
        {"role": "user", "content": [{"type": "image", "image": "c.png"}, {"type": "text", "text": "Where <b>?"}]},
        {"role": "assistant", "content": "<box:0>"}], "image_sizes": [[256, 256]],
        "boxes": [{"kind": "hbb", "values": [10, 10, 100, 100], "image": 0}]}])
    cfg = {"seed": 1, "epoch_size": 6, "builder": {"open_ended_prob": 1.0, "subset_prob": 0.0, "plain_prob": 1.0},
           "units": [{"name": "det", "path": "d.json", "type": "detection", "images": "img", "weight": 1},
                     {"name": "conv", "path": "c.jsonl", "type": "conversation", "images": "img", "weight": 1}]}
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "prev"
    assert main(["data", "preview", str(tmp_path / "mix.yaml"), "--n", "4", "--out", str(out)]) == 0
    pngs = sorted(out.glob("sample_*.png"))
    assert len(pngs) == 4
    page = (out / "index.html").read_text()
    assert page.count("<img src='sample_") == 4
    # both units drawn (fixed seed), text escaped; the reference set by default: its open-ended request, answers
    # "x1,y1,...,x4,y4 plane"
    assert "Where &lt;b&gt;?" in page and "find all the visible remote sensing objects" in page
    assert re.search(r"<pre>(\d+,){7}\d+ plane\n</pre>", page) and "prompt set reference" in page
    # a detection preview has the plane's box drawn where the target puts it (background is uniform)
    for png in pngs:
        arr = np.asarray(Image.open(png).convert("RGB")).astype(int)
        assert (np.abs(arr - [20, 30, 40]).sum(axis=2) > 60).sum() > 100
    # --prompt-set replaces the mixture's: the earlier templates and answer format
    assert main(["data", "preview", str(tmp_path / "mix.yaml"), "--n", "4", "--out", str(out),
                 "--prompt-set", "rscovlm-v0"]) == 0
    page = (out / "index.html").read_text()
    assert "plane: (" in page and "prompt set rscovlm-v0" in page
    assert main(["data", "preview", str(tmp_path / "mix.yaml"), "--n", "1", "--out", str(out),
                 "--prompt-set", "nope"]) == 2


def test_preview_draws_boxes_whatever_the_units_task_name(tmp_path, capsys):
    """A unit may rename its task (`task: dota_det`); the preview still parses its targets as detection /
    grounding and draws them. A record the builder cannot use is a clear error naming the unit file and line."""
    img = tmp_path / "img"
    (img / "ds").mkdir(parents=True)
    Image.new("RGB", (400, 300), (20, 30, 40)).save(img / "d.png")
    Image.new("RGB", (400, 300), (20, 30, 40)).save(img / "ds" / "g.png")
    write_coco(tmp_path / "d.json", {"images": [{"id": 1, "file_name": "d.png", "width": 400, "height": 300}],
                                     "categories": [{"id": 1, "name": "plane"}],
                                     "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                                                      "segmentation": [[100, 100, 200, 100, 200, 150, 100, 150]],
                                                      "bbox": [100, 100, 100, 50], "area": 5000}]})
    ground = {"dataset": "ds", "image_id": "g.png", "question": "the plane", "question_id": 1,
              "bbox": [50, 60, 150, 120], "image_width": 400, "image_height": 300}
    write_jsonl(tmp_path / "g.jsonl", [ground])
    cfg = {"seed": 1, "epoch_size": 2, "builder": {"open_ended_prob": 1.0, "subset_prob": 0.0},
           "units": [{"name": "det", "path": "d.json", "type": "detection", "images": "img", "task": "dota_det"},
                     {"name": "ref", "path": "g.jsonl", "type": "grounding", "images": "img", "task": "vg"}]}
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "prev"
    assert main(["data", "preview", str(tmp_path / "mix.yaml"), "--n", "2", "--out", str(out),
                 "--eval"]) == 0
    for png in sorted(out.glob("sample_*.png")):
        arr = np.asarray(Image.open(png).convert("RGB")).astype(int)
        assert (np.abs(arr - [20, 30, 40]).sum(axis=2) > 60).sum() > 100, png
    # obb targets need the record's poly: this one has none -> error naming file and line, no traceback
    cfg["units"] = [{"name": "ref", "path": "g.jsonl", "type": "grounding", "images": "img", "box_kind": "obb"}]
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["data", "preview", str(tmp_path / "mix.yaml"), "--n", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'g.jsonl'}:1" in err and "poly" in err


def test_preview_with_images_loaded_by_the_builder(tmp_path):
    """`builder: {load_images: true}` (what training uses) puts resized PIL images into the parts."""
    (tmp_path / "img").mkdir()
    Image.new("RGB", (300, 200), (20, 30, 40)).save(tmp_path / "img" / "c.png")
    write_jsonl(tmp_path / "c.jsonl", [{"id": "x", "source": "s", "task": "referring", "messages": [
        {"role": "user", "content": [{"type": "image", "image": "c.png"}, {"type": "text", "text": "Where?"}]},
        {"role": "assistant", "content": "<box:0>"}], "image_sizes": [[300, 200]],
        "boxes": [{"kind": "hbb", "values": [10, 10, 100, 100], "image": 0}]}])
    cfg = {"builder": {"load_images": True},
           "units": [{"name": "conv", "path": "c.jsonl", "type": "conversation", "images": "img"}]}
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["data", "preview", str(tmp_path / "mix.yaml"), "--n", "1", "--out", str(tmp_path / "p")]) == 0
    arr = np.asarray(Image.open(tmp_path / "p" / "sample_000.png").convert("RGB")).astype(int)
    assert (np.abs(arr - [20, 30, 40]).sum(axis=2) > 60).sum() > 100


def test_preview_draws_relative_grid_targets_in_image_pixels(tmp_path):
    """A Qwen2-VL mixture writes targets on the 0-1000 grid; the preview reads them there and draws them on the
    object in the resized image's pixels."""
    from rscovlm.data.preview import render_preview

    img = tmp_path / "img"
    img.mkdir()
    Image.new("RGB", (400, 300), (20, 30, 40)).save(img / "d.png")
    write_coco(tmp_path / "d.json", {"images": [{"id": 1, "file_name": "d.png", "width": 400, "height": 300}],
                                     "categories": [{"id": 1, "name": "plane"}],
                                     "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                                                      "segmentation": [[100, 100, 200, 100, 200, 150, 100, 150]],
                                                      "bbox": [100, 100, 100, 50], "area": 5000}]})
    cfg = {"seed": 1, "epoch_size": 1, "builder": {"family": "qwen2_vl"},
           "units": [{"name": "det", "path": "d.json", "type": "detection", "images": "img"}]}
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(cfg))
    render_preview(tmp_path / "mix.yaml", tmp_path / "prev", n=1, eval_mode=True)
    arr = np.asarray(Image.open(tmp_path / "prev" / "sample_000.png").convert("RGB")).astype(int)
    ys, xs = np.nonzero(np.abs(arr - [20, 30, 40]).sum(axis=2) > 60)
    # eval resize of 400 x 300 is 392 x 308: the box is at x 98..196, y 102.7..154 (the label sits above it)
    assert abs(xs.min() - 98) <= 3 and abs(ys.max() - 154) <= 3 and abs(xs.max() - 196) <= 30


def test_preview_of_a_truncated_image_names_the_record_and_the_file(tmp_path, capsys):
    """The preview decodes each image in full: a truncated file is an error naming the unit file:line and the image
    (main drew half a picture or died with Pillow's bare message)."""
    import io

    img = tmp_path / "img"
    img.mkdir()
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(buf, "JPEG")
    (img / "d.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    write_coco(tmp_path / "d.json", {"images": [{"id": 1, "file_name": "d.jpg", "width": 400, "height": 300}],
                                     "categories": [{"id": 1, "name": "plane"}], "annotations": []})
    cfg = {"units": [{"name": "det", "path": "d.json", "type": "detection", "images": "img"}]}
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["data", "preview", str(tmp_path / "mix.yaml"), "--n", "1", "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'd.json'}:" in err and "unit det" in err
    assert f"{img / 'd.jpg'}: damaged or unreadable image" in err and "truncated" in err
