"""DOTA labelTxt (after splitting) -> one COCO detection file with quad segmentation.

Source format (DOTA devkit / mmrotate img_split output; see shared/ARCHITECTURE.md "DOTA tools")
-----------------------------------------------------------------------------------------------
``--in`` is a folder of label files ``{stem}.txt`` (e.g. ``split/annfiles``), ``--images`` the folder of the
images with the same stems (``split/images``; .png, .jpg, .jpeg, .tif, .tiff, .bmp). Each label file::

    imagesource:GoogleEarth            <- optional header lines
    gsd:0.146343590398
    x1 y1 x2 y2 x3 y3 x4 y4 class difficult

* Box convention: the four corners of a quadrilateral in **absolute pixels** of the image (of the patch after
  splitting); ``difficult`` 0/1, or 2 for objects cut by a split window. Lines are read by
  :func:`rscovlm.dota.io.read_labeltxt_arrays` (CRLF, headers; a bad line or an unknown class is an error
  naming file:line, or with ``--skip-invalid`` that line alone is dropped and counted).
* ``--categories dota-v1.0|dota-v1.5|dota-v2.0`` (the names of ``rscovlm eval``; default dota-v1.0) is the class
  vocabulary (:mod:`rscovlm.protocol.categories`): v1.5 adds ``container-crane``, v2.0 also ``airport`` and
  ``helipad``. Any spelling of a class is accepted (``Small_Vehicle``; unified, counted). Checked against the DOTA
  devkit (CAPTAIN-WHU/DOTA_devkit @ 9938855: ``wordname_15`` of ``dota_utils.py``, the class list of
  ``dota-v1.5_evaluation_task1.py``, and its real label files ``example/labelTxt/*.txt`` - 7 files, 984 objects,
  converted and validated clean) and mmrotate 1.x (@ d50ab76 ``mmrotate/datasets/dota.py``: the METAINFO classes
  of ``DOTADataset``, ``DOTAv15Dataset``, ``DOTAv2Dataset``).
* A **self-intersecting quad** (its corners written in an order whose edges cross - it happens in the released
  labels) is kept as written (the evaluation's polygon IoU defines a value for it), counted
  (``self_intersecting_quads``) and its ``file:line`` listed in the report's ``notes``.

Output: COCO with the categories in the vocabulary's order (ids 1..N), one image entry per label file (sizes read
from the image headers), one annotation per object: ``segmentation`` = the normalized quad (clockwise on
screen from the smallest-y vertex; reorderings are counted), ``bbox`` = its enclosing ``[x, y, w, h]``,
``area`` = the quad's area, ``difficult`` kept. **Empty label files give images without annotations** -
kept, because the builder teaches ``There is none.`` on them (paper 3.5.1). An image without a label file and
a label file without an image are malformed input (with ``--skip-invalid``: dropped and counted, as are bad
label lines). Objects that extend beyond their image (usual for objects cut by a split window, which mmrotate
keeps whole) are kept unchanged and counted; the sample builder clips them to the image.

The run streams like every converter: image entries and annotations are spooled to ``OUT.partial`` and
``OUT.partial.annotations`` (checkpointed, resumable) and joined into the COCO file at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from rscovlm.data.converters.base import Converter, partial_path, register_converter
from rscovlm.data.records import BOUNDS_SLACK, Problem, RecordError
from rscovlm.data.textio import BadText, read_lines
from rscovlm.dota.io import HEADER_KEYS, DotaFormatError, read_labeltxt_arrays
from rscovlm.geometry.boxes import normalize_quads, signed_area
from rscovlm.protocol.categories import CategorySet, get_category_set

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def self_intersecting(quads: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: the quad's opposite edges (0-1 with 2-3, or 1-2 with 3-0) cross each other properly."""
    p = np.asarray(quads, dtype=np.float64).reshape(-1, 4, 2)

    def orient(a, b, c):
        return np.sign((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))

    def cross(i, j, k, m):
        a, b, c, d = p[:, i], p[:, j], p[:, k], p[:, m]
        return (orient(a, b, c) * orient(a, b, d) < 0) & (orient(c, d, a) * orient(c, d, b) < 0)

    return cross(0, 1, 2, 3) | cross(1, 2, 3, 0)


def _object_lines(path: Path, skipped: set[int]) -> list[int]:
    """Line numbers of the objects :func:`read_labeltxt_arrays` returned, in order (for messages only)."""
    out = []
    for line_no, line in enumerate(read_lines(path, bom=True), start=1):
        if isinstance(line, BadText) or line_no in skipped:
            continue
        stripped = line.strip()
        key, sep, _ = stripped.partition(":")
        if not stripped or (sep and key.strip().lower() in HEADER_KEYS and len(stripped.split()) < 9):
            continue
        out.append(line_no)
    return out


class CocoOutput:
    """Image entries spooled to ``OUT.partial``, annotations to ``OUT.partial.annotations`` (JSON Lines, so that
    their sizes are a checkpoint's position); :meth:`finish` writes the COCO file (one element per line)."""

    def __init__(self, output: str, info: dict, categories: list[dict]):
        self.output, self.info, self.categories = output, info, categories
        self.paths = {"images": partial_path(output), "annotations": Path(str(partial_path(output)) + ".annotations")}
        self.fhs: dict = {}

    def open(self, position: dict | None) -> Iterator[dict]:
        Path(self.output).parent.mkdir(parents=True, exist_ok=True)
        for key, path in self.paths.items():
            if position is None:
                self.fhs[key] = open(path, "wb")
            else:
                with open(path, "r+b") as fh:
                    fh.truncate(position[key])
                self.fhs[key] = open(path, "ab")
        return iter(())

    def can_resume(self, position: dict) -> bool:
        return all(p.exists() and p.stat().st_size >= position[k] for k, p in self.paths.items())

    def write(self, unit: dict) -> None:
        self.fhs["images"].write(json.dumps(unit["image"], ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
        for ann in unit["annotations"]:
            self.fhs["annotations"].write(json.dumps(ann, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")

    def position(self) -> dict:
        out = {}
        for key, fh in self.fhs.items():
            fh.flush()
            out[key] = fh.tell()
        return out

    def finish(self) -> None:
        for fh in self.fhs.values():
            fh.close()
        tmp = Path(str(partial_path(self.output)) + ".coco")
        with open(tmp, "w", encoding="utf-8") as out:
            out.write("{\n" + f'"info": {json.dumps(self.info, ensure_ascii=False)},\n')
            for n, key in enumerate(("images", "categories", "annotations")):
                out.write(f'"{key}": [')
                lines = (json.dumps(c, separators=(",", ":")) + "\n" for c in self.categories) \
                    if key == "categories" else open(self.paths[key], encoding="utf-8")
                first = True
                for line in lines:
                    out.write(("\n  " if first else ",\n  ") + line.rstrip("\n"))
                    first = False
                out.write("]" if first else "\n]")
                out.write(",\n" if n < 2 else "\n")
            out.write("}\n")
        os.replace(tmp, self.output)
        for path in self.paths.values():
            path.unlink()

    def discard(self) -> None:
        for fh in self.fhs.values():
            fh.close()
        for path in self.paths.values():
            path.unlink(missing_ok=True)
        Path(str(partial_path(self.output)) + ".coco").unlink(missing_ok=True)


@register_converter("dota")
class DotaConverter(Converter):
    """DOTA labelTxt folder (quads in pixels) -> COCO detection json."""

    output_kind = "detection"
    summary = "DOTA labelTxt folder after splitting (pixel quads; --categories dota-v1.0|dota-v1.5|dota-v2.0) -> COCO"

    def prepare(self) -> None:
        try:
            self.categories: CategorySet = get_category_set(self.config.categories or "dota-v1.0")
        except KeyError as err:
            raise ValueError(f"--categories: {err.args[0]}") from None
        label_dir = Path(self.path)
        if not label_dir.is_dir():
            raise FileNotFoundError(f"label folder {label_dir} does not exist")
        if self.config.images is None:
            raise RecordError(Problem(self.path, None, "--images", "DOTA needs the image folder (--images DIR)"))
        root = Path(self.config.images)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist")
        self.images: dict[str, str] = {}
        for p in sorted(root.iterdir()):
            if p.suffix.lower() in IMAGE_EXTS:
                self.images.setdefault(p.stem, p.name)
        self.label_files = sorted(label_dir.glob("*.txt"))
        self.cat_id = {c: i + 1 for i, c in enumerate(self.categories.classes)}
        self.next_image_id, self.next_ann_id = 1, 1

    def make_output(self):
        info = {"source": self.name, "categories": self.categories.name,
                "box_convention": "segmentation = normalized quad, original pixels"}
        return CocoOutput(self.config.output, info, [{"id": i, "name": c} for c, i in self.cat_id.items()])

    def input_fingerprint(self) -> Any:
        digest = hashlib.blake2b(digest_size=16)
        for p in self.label_files:
            st = p.stat()
            digest.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        digest.update(json.dumps(sorted(self.images.items())).encode())
        return digest.hexdigest()

    def progress_total(self) -> tuple[int | None, str]:
        return len(self.label_files), "file"

    def progress_at(self, cursor: Any) -> int:
        return int(cursor[0])

    def state_dict(self) -> dict:
        return {"next_image_id": self.next_image_id, "next_ann_id": self.next_ann_id}

    def load_state_dict(self, state: dict) -> None:
        self.next_image_id, self.next_ann_id = state["next_image_id"], state["next_ann_id"]

    def _validate(self, rec: dict) -> list:
        return []  # geometry is checked while the annotations are built

    def iter_input(self, start: Any = None) -> Iterator[tuple[int | None, Any, Any]]:
        if start is None:  # images without labels: reported once, before the first checkpoint
            stems = {p.stem for p in self.label_files}
            for stem in sorted(set(self.images) - stems):
                err = RecordError(Problem(os.path.join(str(self.config.images), self.images[stem]), None, "image",
                                          f"no label file {stem}.txt in {self.path}"))
                if not self.config.skip_invalid:
                    raise err
                self.report.drop(f"malformed: {err.problem.field}", str(err.problem))
        for i in range(0 if start is None else int(start[0]), len(self.label_files)):
            yield None, self.label_files[i], [i + 1]

    def convert_one(self, path: Path, line: int | None) -> dict | None:
        try:
            labels = read_labeltxt_arrays(path, vocabulary=self.categories, skip_invalid=self.config.skip_invalid)
        except DotaFormatError as err:
            raise RecordError(Problem(err.path, err.line_no or None, "line", err.reason)) from None
        for skipped in labels.skipped:
            self.report.drop("malformed: label line", str(skipped))
        if path.stem not in self.images:
            raise RecordError(Problem(str(path), None, "image", f"no image {path.stem}.* in {self.config.images}"))
        w, h = self.image_sizes(self.images[path.stem], Problem(str(path), None, "image", ""))
        image_id = self.next_image_id
        anns = [{"id": self.next_ann_id + k, "image_id": image_id, **ann}
                for k, ann in enumerate(self._annotations(path, labels, w, h))]
        self.next_image_id += 1
        self.next_ann_id += len(anns)
        if not anns:
            self.change("images_without_objects")
        self.change("objects", len(anns))
        return {"image": {"id": image_id, "file_name": self.images[path.stem], "width": w, "height": h},
                "annotations": anns}

    def _annotations(self, path: Path, labels, w: int, h: int) -> list[dict]:
        quads = labels.quads
        norm = normalize_quads(quads)
        self.change("quads_reordered", int(np.sum(np.any(norm != quads, axis=1))))
        areas = np.abs(signed_area(norm))
        crossing = self_intersecting(quads)
        if crossing.any():
            self.change("self_intersecting_quads", int(crossing.sum()))
            lines = _object_lines(path, {s.line_no for s in labels.skipped})
            for i in np.flatnonzero(crossing):
                where = f"{path}:{lines[i]}" if i < len(lines) else f"{path}: object {i + 1}"
                self.report.note(f"{where}: self-intersecting quad {' '.join(f'{v:g}' for v in quads[i])} (kept)")
        anns = []
        for i, label in enumerate(labels.labels):
            canon = self.categories.canonical(label)  # the reader rejected labels that are no spelling of a class
            q = norm[i]
            xs, ys = q[0::2], q[1::2]
            if xs.min() < -BOUNDS_SLACK or ys.min() < -BOUNDS_SLACK or xs.max() > w + BOUNDS_SLACK \
                    or ys.max() > h + BOUNDS_SLACK:
                self.change("objects_extending_outside_image")  # normal for split patches: kept as they are
            if canon != label:
                self.change("label_spelling_unified")
            anns.append({"category_id": self.cat_id[canon], "segmentation": [q.tolist()],
                         "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min()),
                                  float(ys.max() - ys.min())],
                         "area": float(areas[i]), "iscrowd": 0, "difficult": int(labels.difficult[i])})
        return anns
