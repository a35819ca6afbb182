"""Fake data laid out like the real datasets a mixture names: for every unit in use, small unified record files at
the unit's paths (under the data root) and the images they reference in the unit's image folder - detection as
COCO with 512 x 512 DOTA-like patches and quads, grounding as refGeo records (``{dataset}/{image_id}``),
conversations with one image, two (temporal / zoom-like) or none (text-only units)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from rscovlm.data.records import write_coco, write_jsonl

CATEGORIES = ["plane", "ship", "storage-tank", "small-vehicle", "harbor"]


def _png(path: Path, size: tuple[int, int], seed: int) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    small = rng.integers(0, 255, (max(h // 16, 1), max(w // 16, 1), 3), dtype=np.uint8)
    Image.fromarray(small).resize(size, Image.Resampling.NEAREST).save(path)


def _detection(unit, path: str, n: int, rng) -> None:
    images, annotations = [], []
    for i in range(n):
        name = f"P{i:04d}__512__0___{100 * i}.png"
        _png(Path(unit.images, name), (512, 512), i)
        images.append({"id": i + 1, "file_name": name, "width": 512, "height": 512})
        for k in range(int(rng.integers(1, 12))):
            x, y = rng.uniform(0, 460, 2)
            w, h = rng.uniform(8, 50, 2)
            quad = [x, y, x + w, y, x + w, y + h, x, y + h]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1,
                                "category_id": int(rng.integers(1, len(CATEGORIES) + 1)),
                                "segmentation": [[round(v, 1) for v in quad]], "bbox": [x, y, w, h],
                                "area": w * h, "iscrowd": 0, "difficult": 0})
    write_coco(path, {"info": {"source": "dota"}, "images": images, "annotations": annotations,
                      "categories": [{"id": c + 1, "name": name} for c, name in enumerate(CATEGORIES)]})


def _grounding(unit, path: str, n: int, rng) -> None:
    dataset = Path(path).stem.replace("_train", "")
    records = []
    for i in range(n):
        image_id = f"{dataset}_{i:05d}.jpg"
        w, h = int(rng.choice([512, 800])), int(rng.choice([512, 600]))
        _png(Path(unit.images, dataset, image_id), (w, h), i)
        x, y = rng.uniform(0, min(w, h) / 2, 2)
        s = rng.uniform(20, 100)
        records.append({"dataset": dataset, "image_id": image_id, "question": f"the gray tank number {i}",
                        "question_id": i, "bbox": [x, y, x + s, y + s],
                        "poly": [[x, y], [x + s, y], [x + s, y + s], [x, y + s]],
                        "image_width": w, "image_height": h})
    write_jsonl(path, records)


def _conversation(unit, path: str, n: int, rng) -> None:
    stem = Path(path).stem
    images_per_record = 0 if unit.images is None else (2 if unit.name in ("teochatlas", "lrs_vqa_zoom") else 1)
    records = []
    for i in range(n):
        content, sizes = [], []
        for k in range(images_per_record):
            rel = f"{stem}/img_{i:04d}_{k}.png"
            size = (int(rng.choice([224, 256, 448])), int(rng.choice([224, 256])))
            _png(Path(unit.images, rel), size, 1000 * i + k)
            content.append({"type": "image", "image": rel})
            sizes.append(list(size))
        words = " ".join(["what", "is", "shown", "in", "the", "scene"][: int(rng.integers(2, 7))])
        content.append({"type": "text", "text": f"{words} ({stem} {i})?"})
        answer = " ".join(["a", "harbor", "with", "several", "ships"] * int(rng.integers(1, 20)))
        rec = {"id": f"{stem}/{i}", "source": unit.name, "task": "vqa",
               "messages": [{"role": "user", "content": content},
                            {"role": "assistant", "content": [{"type": "text", "text": answer}]}]}
        if sizes:
            rec["image_sizes"] = sizes
        records.append(rec)
    write_jsonl(path, records)


def write_fake_layout(config, n: int = 6, seed: int = 0) -> list[str]:
    """Write the files of every drawn unit of ``config`` (a :class:`rscovlm.data.mixture.MixtureConfig` whose paths
    are resolved); returns the unit files written."""
    rng = np.random.default_rng(seed)
    written = []
    for unit in config.units:
        if not unit.active:
            continue
        if unit.images is not None:
            os.makedirs(unit.images, exist_ok=True)
        for path in unit.paths:
            if path in written:  # a file two units share (refGeo's sources with rotated boxes)
                continue
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            {"detection": _detection, "grounding": _grounding, "conversation": _conversation}[unit.type](
                unit, path, n, rng)
            written.append(path)
    return written
