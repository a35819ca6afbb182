"""Inputs of the LRS-VQA-Zoom builder: ultra-high-resolution images with their object labels.

Formats (``InputConfig.format``):

``dota`` - DOTA v1.0 / v1.5 / v2.0 ``labelTxt`` folders (:mod:`rscovlm.dota.io`): one ``{stem}.txt`` per image,
  optional ``imagesource:`` / ``gsd:`` header lines, then ``x1 y1 x2 y2 x3 y3 x4 y4 class difficult`` (quad in
  original pixels). ``version`` picks the vocabulary checked (v1.0: 15 classes; v1.5 adds container-crane; v2.0
  adds airport and helipad).

``star`` - STAR (Li et al., "STAR: A First-Ever Dataset and A Large-Scale Benchmark for Scene Graph Generation in
  Large-Size Satellite Imagery"), its oriented-detection release. Its official loader (github
  yangxue0827/STAR-MMRotate at 714753b, ``mmrotate/datasets/star.py::STARDataset.load_annotations``) reads the
  DOTA-v1 layout: one ``{stem}.txt`` per ``{stem}.png``, lines ``x1 y1 x2 y2 x3 y3 x4 y4 class difficulty`` with no
  header, 48 classes spelled with underscores (``goods_yard``, ``boarding_bridge``; :data:`STAR_CLASSES`).

``glh_bridge`` - GLH-Bridge (Li et al., "Learning to Holistically Detect Bridges from Large-Size VHR Remote
  Sensing Imagery", TPAMI 2024; labels ``train_label.tar.gz`` / ``val_label.tar.gz`` on HF ``ll-13/GLH-Bridge``).
  Its official code (github peishusu/bridge-detection at 6575ea2, ``mmrotate/datasets/dota.py``, ``CLASSES =
  ('bridge',)``) reads the same DOTA-v1 layout with one class ``bridge`` and ``{stem}.png`` images. No released
  label file was seen here: the format is the one that loader parses.

``coco`` - a unified detection file (:mod:`rscovlm.data.records`, ``detection`` kind: COCO JSON with one
  normalized quad per annotation in original pixels, ``difficult``), images under ``images``.

Every object keeps its label (canonical spelling of the source), its quad and its enclosing hbb, both in
original pixels (x right, y down, origin at the top-left corner of the top-left pixel). Difficult objects are
objects: they count. A label file whose image is missing, or a line that does not parse, raises an error naming
the file (and line); with ``skip_invalid`` the file is left out and counted instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from rscovlm.protocol.categories import DOTA_V1_0, DOTA_V1_5, DOTA_V2_0, display_name

FORMATS = ("dota", "star", "glh_bridge", "coco")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")

#: STAR's 48 oriented-detection classes (STAR-MMRotate ``STARDataset.CLASSES``)
STAR_CLASSES = (
    "ship", "boat", "crane", "goods_yard", "tank", "storehouse", "breakwater", "dock", "airplane", "boarding_bridge",
    "runway", "taxiway", "terminal", "apron", "gas_station", "truck", "car", "truck_parking", "car_parking", "bridge",
    "cooling_tower", "chimney", "vapor", "smoke", "genset", "coal_yard", "lattice_tower", "substation", "wind_mill",
    "cement_concrete_pavement", "toll_gate", "flood_dam", "gravity_dam", "ship_lock", "ground_track_field",
    "basketball_court", "engineering_vehicle", "foundation_pit", "intersection", "soccer_ball_field", "tennis_court",
    "tower_crane", "unfinished_building", "arch_dam", "roundabout", "baseball_diamond", "stadium",
    "containment_vessel")
GLH_BRIDGE_CLASSES = ("bridge",)
DOTA_VERSIONS = {"v1.0": DOTA_V1_0.classes, "v1.5": DOTA_V1_5.classes, "v2.0": DOTA_V2_0.classes}


class InputError(ValueError):
    """A bad input (file, line or field named in the message)."""


@dataclass
class InputConfig:
    """One input dataset of the builder."""

    name: str = field(metadata={"help": "source name written into every record (statistics per source)"})
    format: str = field(metadata={"help": "dota | star | glh_bridge | coco (module docstring)"})
    labels: str = field(metadata={"help": "labelTxt folder (dota, star, glh_bridge) or unified COCO file (coco)"})
    images: str = field(metadata={"help": "image folder"})
    version: str = field(default="v1.0", metadata={"help": "dota only: v1.0, v1.5 or v2.0 (classes checked)"})
    max_images: int | None = field(default=None, metadata={"help": "use at most this many images (sorted by name)"})
    check_classes: bool = field(default=True, metadata={
        "help": "refuse labels outside the format's class list (dota version, STAR, GLH-Bridge)"})

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise InputError(f"inputs[{self.name}].format: expected one of {list(FORMATS)}, got {self.format!r}")
        if self.format == "dota" and self.version not in DOTA_VERSIONS:
            raise InputError(f"inputs[{self.name}].version: expected one of {list(DOTA_VERSIONS)}, "
                             f"got {self.version!r}")
        if self.max_images is not None and self.max_images < 1:
            raise InputError(f"inputs[{self.name}].max_images: must be >= 1, got {self.max_images}")

    def vocabulary(self) -> tuple[str, ...] | None:
        if not self.check_classes:
            return None
        return {"dota": DOTA_VERSIONS.get(self.version), "star": STAR_CLASSES,
                "glh_bridge": GLH_BRIDGE_CLASSES}.get(self.format)


@dataclass
class UHRImage:
    """One labelled image: ``path`` (absolute), ``size`` (width, height), ``labels`` (N,), ``quads`` (N, 8) and
    ``hbbs`` (N, 4: x1 y1 x2 y2), original pixels; ``where`` names the label file (or COCO entry)."""

    source: str
    image_id: str
    path: str
    size: tuple[int, int]
    labels: list[str]
    quads: np.ndarray
    where: str

    @property
    def hbbs(self) -> np.ndarray:
        q = self.quads.reshape(-1, 4, 2)
        return np.concatenate([q.min(axis=1), q.max(axis=1)], axis=1) if len(q) else np.zeros((0, 4))

    def names(self) -> list[str]:
        """Display names of the labels (``small-vehicle`` -> ``small vehicle``)."""
        return [display_name(lab) for lab in self.labels]


@dataclass
class InputReport:
    """Images read per source and label files left out (``skip_invalid``) with the reason."""

    images: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)


def _find_image(folder: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        for cand in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if cand.is_file():
                return cand
    return None


def _labeltxt_images(cfg: InputConfig, skip_invalid: bool, report: InputReport) -> Iterator[UHRImage]:
    from rscovlm.dota.io import DotaFormatError, read_labeltxt_arrays
    from rscovlm.imageio import ImageReadError, display_size

    labels_dir, images_dir = Path(cfg.labels), Path(cfg.images)
    if not labels_dir.is_dir():
        raise InputError(f"inputs[{cfg.name}].labels: label folder {labels_dir} does not exist")
    if not images_dir.is_dir():
        raise InputError(f"inputs[{cfg.name}].images: image folder {images_dir} does not exist")
    files = sorted(labels_dir.glob("*.txt"))
    if not files:
        raise InputError(f"inputs[{cfg.name}].labels: no *.txt label files in {labels_dir}")
    vocab = cfg.vocabulary()
    n = 0
    for txt in files:
        if cfg.max_images is not None and n >= cfg.max_images:
            break
        try:
            image = _find_image(images_dir, txt.stem)
            if image is None:
                raise InputError(f"{txt}: no image {txt.stem}{{{','.join(IMAGE_SUFFIXES)}}} in {images_dir}")
            arr = read_labeltxt_arrays(txt, vocabulary=vocab)
            size = display_size(image)
        except (InputError, DotaFormatError, ImageReadError) as err:
            if not skip_invalid:
                raise InputError(str(err)) from None
            report.skipped.append(str(err))
            continue
        n += 1
        yield UHRImage(cfg.name, txt.stem, str(image.resolve()), (int(size[0]), int(size[1])), list(arr.labels),
                       np.asarray(arr.quads, dtype=np.float64).reshape(-1, 8), str(txt))


def _coco_images(cfg: InputConfig, skip_invalid: bool, report: InputReport) -> Iterator[UHRImage]:
    from rscovlm.data.records import RecordError, read_coco, validate_coco

    path = Path(cfg.labels)
    if not path.is_file():
        raise InputError(f"inputs[{cfg.name}].labels: COCO file {path} does not exist")
    try:
        coco, lines = read_coco(path)
    except RecordError as err:
        raise InputError(str(err)) from None
    problems = validate_coco(coco, lines, str(path))
    if problems:
        raise InputError(f"{problems[0]} ({len(problems)} problem(s); `rscovlm data validate {path}` lists them)")
    names = {c["id"]: c["name"] for c in coco["categories"]}
    by_image: dict = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    order = sorted(range(len(coco["images"])), key=lambda i: str(coco["images"][i]["file_name"]))
    n = 0
    for i in order:
        if cfg.max_images is not None and n >= cfg.max_images:
            break
        img = coco["images"][i]
        where = f"{path}:{lines['images'][i]}"
        image = Path(cfg.images) / img["file_name"]
        if not image.is_file():
            msg = f"{where}: images[{i}].file_name: image not found under {cfg.images}: {img['file_name']}"
            if not skip_invalid:
                raise InputError(msg)
            report.skipped.append(msg)
            continue
        anns = by_image.get(img["id"], [])
        quads = np.asarray([a["segmentation"][0] for a in anns], dtype=np.float64).reshape(-1, 8)
        n += 1
        stem = os.path.splitext(str(img["file_name"]))[0].replace("/", "_")
        yield UHRImage(cfg.name, stem, str(image.resolve()), (int(img["width"]), int(img["height"])),
                       [names[a["category_id"]] for a in anns], quads, where)


def read_input(cfg: InputConfig, skip_invalid: bool = False, report: InputReport | None = None
               ) -> Iterator[UHRImage]:
    """The labelled images of one input, sorted by name (streamed)."""
    report = report if report is not None else InputReport()
    reader = _coco_images if cfg.format == "coco" else _labeltxt_images
    count = 0
    for image in reader(cfg, skip_invalid, report):
        count += 1
        yield image
    report.images[cfg.name] = count
