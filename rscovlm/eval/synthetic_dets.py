"""Seeded ground truth + detections in DOTA form, for metric tests, parity checks and benchmarks.

:func:`make_detection_set` draws rotated rectangles per image and class (some difficult, a few degenerate or
self-intersecting quads, as real labels have), then detections: jittered copies of most objects (sometimes two),
plus false positives, with scores that favour the better boxes. :func:`write_detection_set` writes a labelTxt
folder and a Task1 folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rscovlm.eval.dota_data import ClassDets, ClassGT, Detections, GroundTruth
from rscovlm.geometry.boxes import obb_to_quad

DEFAULT_CLASSES = ("plane", "ship", "small-vehicle", "large-vehicle", "storage-tank", "harbor")


@dataclass
class DetectionSet:
    """Generated ground truth and detections over the same images (tests and benchmarks)."""

    gt: GroundTruth
    dets: Detections


def make_detection_set(n_images: int = 20, n_gt: int = 600, n_det: int = 2000, *, classes=DEFAULT_CLASSES,
                       image_size: float = 1024.0, seed: int = 0, difficult_rate: float = 0.1,
                       invalid_rate: float = 0.02, score_decimals: int | None = None) -> DetectionSet:
    """A random set with about ``n_gt`` objects and ``n_det`` detections over ``n_images`` images."""
    rng = np.random.default_rng(seed)
    classes = list(classes)
    image_ids = [f"P{i:04d}" for i in range(n_images)]
    img = rng.integers(0, n_images, n_gt)
    cls = rng.integers(0, len(classes), n_gt)
    size = np.exp(rng.uniform(np.log(6), np.log(120), n_gt))
    obb = np.stack([rng.uniform(0, image_size, n_gt), rng.uniform(0, image_size, n_gt), size,
                    size * rng.uniform(0.3, 1.0, n_gt), rng.uniform(-np.pi / 2, np.pi / 2, n_gt)], axis=1)
    quads = np.round(obb_to_quad(obb), 1)
    bad = rng.random(n_gt) < invalid_rate
    kinds = rng.integers(0, 3, n_gt)
    q = quads.reshape(-1, 4, 2)
    bowtie = bad & (kinds == 0)
    q[bowtie] = q[bowtie][:, [0, 2, 1, 3]]
    repeat = bad & (kinds == 1)
    q[repeat, 1] = q[repeat, 0]
    flat = bad & (kinds == 2)
    q[flat, :, 1] = q[flat, :1, 1]
    quads = q.reshape(-1, 8)
    difficult = (rng.random(n_gt) < difficult_rate).astype(np.int64)
    order = np.lexsort((cls, img))
    img, cls, quads, difficult, obb = img[order], cls[order], quads[order], difficult[order], obb[order]

    # detections: jittered copies of ground truth (true positives and duplicates) + random false positives
    n_tp = min(int(n_det * 0.7), 3 * n_gt)
    src = rng.integers(0, n_gt, n_tp)
    jit = obb[src].copy()
    noise = rng.normal(0, 1, (n_tp, 5)) * rng.uniform(0.02, 0.25, (n_tp, 1))
    jit[:, :2] += noise[:, :2] * jit[:, 2:3]
    jit[:, 2:4] *= np.exp(noise[:, 2:4])
    jit[:, 4] += noise[:, 4]
    d_quads = obb_to_quad(jit)
    d_quads += rng.normal(0, 0.5, d_quads.shape)  # general (not rectangular) quads
    d_img, d_cls = img[src], cls[src]
    flip = rng.random(n_tp) < 0.05
    d_cls = np.where(flip, rng.integers(0, len(classes), n_tp), d_cls)
    quality = np.exp(-np.abs(noise).sum(1) * 3)
    n_fp = n_det - n_tp
    fp_obb = np.stack([rng.uniform(0, image_size, n_fp), rng.uniform(0, image_size, n_fp),
                       np.exp(rng.uniform(np.log(6), np.log(120), n_fp)), rng.uniform(4, 60, n_fp),
                       rng.uniform(-np.pi / 2, np.pi / 2, n_fp)], axis=1)
    d_quads = np.concatenate([d_quads, obb_to_quad(fp_obb)])
    d_img = np.concatenate([d_img, rng.integers(0, n_images, n_fp)])
    d_cls = np.concatenate([d_cls, rng.integers(0, len(classes), n_fp)])
    scores = np.concatenate([0.4 + 0.6 * quality * rng.uniform(0.5, 1, n_tp), rng.uniform(0, 0.8, n_fp)])
    sbad = rng.random(len(d_quads)) < invalid_rate / 2
    dq = d_quads.reshape(-1, 4, 2)
    dq[sbad] = dq[sbad][:, [0, 2, 1, 3]]
    d_quads = np.round(dq.reshape(-1, 8), 2)
    scores = np.round(scores, score_decimals) if score_decimals is not None else scores
    perm = rng.permutation(len(d_quads))
    d_quads, d_img, d_cls, scores = d_quads[perm], d_img[perm], d_cls[perm], scores[perm]

    gt_classes = {c: ClassGT(quads[cls == k], img[cls == k], difficult[cls == k])
                  for k, c in enumerate(classes) if (cls == k).any()}
    det_classes = {c: ClassDets(d_quads[d_cls == k], d_img[d_cls == k], scores[d_cls == k])
                   for k, c in enumerate(classes)}
    return DetectionSet(GroundTruth(image_ids, gt_classes), Detections(det_classes))


def _num(v: float) -> str:
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


def write_detection_set(ds: DetectionSet, gt_dir: str | os.PathLike, det_dir: str | os.PathLike) -> None:
    """Write ``ds`` as ``gt_dir/{image_id}.txt`` (labelTxt) and ``det_dir/Task1_{class}.txt``."""
    gt_dir, det_dir = Path(gt_dir), Path(det_dir)
    gt_dir.mkdir(parents=True, exist_ok=True)
    det_dir.mkdir(parents=True, exist_ok=True)
    lines: dict[int, list[str]] = {i: [] for i in range(len(ds.gt.image_ids))}
    for c, g in ds.gt.classes.items():
        for q, i, d in zip(g.quads, g.image, g.difficult):
            lines[int(i)].append(" ".join(_num(v) for v in q) + f" {c} {int(d)}")
    for i, image_id in enumerate(ds.gt.image_ids):
        (gt_dir / f"{image_id}.txt").write_text("".join(ln + "\n" for ln in lines[i]))
    for c, d in ds.dets.classes.items():
        with open(det_dir / f"Task1_{c}.txt", "w") as f:
            for q, i, s in zip(d.quads, d.image, d.scores):
                f.write(f"{ds.gt.image_ids[int(i)]} {_num(s)} " + " ".join(_num(v) for v in q) + "\n")
