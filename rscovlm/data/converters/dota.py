"""DOTA labelTxt (after splitting) -> one COCO detection file with quad segmentation.

Source format (DOTA devkit / mmrotate img_split output; see shared/ARCHITECTURE.md "DOTA tools")
-----------------------------------------------------------------------------------------------
``--in`` is a folder of label files ``{stem}.txt`` (e.g. ``split/annfiles``), ``--images`` the folder of the
images with the same stems (``split/images``; .png, .jpg, .jpeg, .tif, .tiff, .bmp). Each label file::

    imagesource:GoogleEarth            <- optional header lines
    gsd:0.146343590398
    x1 y1 x2 y2 x3 y3 x4 y4 class difficult

* Box convention: the four corners of a quadrilateral in **absolute pixels** of the image (of the patch after
  splitting); ``class`` one of the DOTA-v1.0 classes, any spelling of it (``Small_Vehicle``); ``difficult`` 0/1,
  or 2 for objects cut by a split window. Lines are read by :func:`rscovlm.data.dota_io.read_labeltxt` (CRLF,
  headers; a bad line or an unknown class is an error naming file:line, or with ``--skip-invalid`` that line
  alone is dropped and counted).

Output: COCO with the categories in the DOTA order (ids 1..15), one image entry per label file (sizes read
from the image headers), one annotation per object: ``segmentation`` = the normalized quad (clockwise on
screen from the smallest-y vertex; reorderings are counted), ``bbox`` = its enclosing ``[x, y, w, h]``,
``area`` = the quad's area, ``difficult`` kept. **Empty label files give images without annotations** -
kept, because the builder teaches ``There is none.`` on them (paper 3.5.1). An image without a label file and
a label file without an image are malformed input (with ``--skip-invalid``: dropped and counted, as are bad
label lines). Objects that extend beyond their image (usual for objects cut by a split window, which mmrotate
keeps whole) are kept unchanged and counted; the sample builder clips them to the image.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rscovlm.data.converters.base import Converter, register_converter
from rscovlm.data.dota_io import DotaFormatError, read_labeltxt
from rscovlm.data.records import BOUNDS_SLACK, Problem, RecordError
from rscovlm.geometry.boxes import normalize_quads, signed_area
from rscovlm.protocol.categories import DOTA_V1_0, CategorySet

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@register_converter("dota")
class DotaConverter(Converter):
    """DOTA labelTxt folder (quads in pixels) -> COCO detection json."""

    output_kind = "detection"
    summary = "DOTA labelTxt folder after splitting (pixel quads) -> COCO json with quad segmentation"
    categories: CategorySet = DOTA_V1_0

    def _images_by_stem(self) -> dict[str, str]:
        if self.config.images is None:
            raise RecordError(Problem(self.path, None, "--images", "DOTA needs the image folder (--images DIR)"))
        root = Path(self.config.images)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist")
        out: dict[str, str] = {}
        for p in sorted(root.iterdir()):
            if p.suffix.lower() in IMAGE_EXTS:
                out.setdefault(p.stem, p.name)
        return out

    def _fail(self, err: RecordError) -> None:
        if not self.config.skip_invalid:
            raise err
        self.report.drop(f"malformed: {err.problem.field or 'file'}", str(err.problem))

    def convert_all(self) -> dict:
        label_dir = Path(self.path)
        if not label_dir.is_dir():
            raise FileNotFoundError(f"label folder {label_dir} does not exist")
        images = self._images_by_stem()
        label_files = sorted(label_dir.glob("*.txt"))
        stems = {p.stem for p in label_files}
        for stem in sorted(set(images) - stems):
            self._fail(RecordError(Problem(os.path.join(str(self.config.images), images[stem]), None, "image",
                                           f"no label file {stem}.txt in {label_dir}")))
        cats = [{"id": i + 1, "name": c} for i, c in enumerate(self.categories.classes)]
        cat_id = {c["name"]: c["id"] for c in cats}
        coco: dict = {"info": {"source": self.name, "box_convention": "segmentation = normalized quad, "
                               "original pixels"}, "images": [], "annotations": [], "categories": cats}
        ann_id = 0
        for path in label_files:
            self.report.records_in += 1
            try:
                labels = read_labeltxt(path, vocabulary=self.categories, skip_invalid=self.config.skip_invalid)
            except DotaFormatError as err:
                raise RecordError(Problem(err.path, err.line_no or None, "line", err.reason)) from None
            for skipped in labels.skipped:
                self.report.drop("malformed: label line", str(skipped))
            if path.stem not in images:
                self._fail(RecordError(Problem(str(path), None, "image",
                                               f"no image {path.stem}.* in {self.config.images}")))
                continue
            try:
                w, h = self.image_sizes(images[path.stem], Problem(str(path), None, "image", ""))
                anns = self._annotations(path, labels.objects, cat_id, w, h)
            except RecordError as err:
                self._fail(err)
                continue
            image_id = len(coco["images"]) + 1
            coco["images"].append({"id": image_id, "file_name": images[path.stem], "width": w, "height": h})
            for ann in anns:
                ann_id += 1
                coco["annotations"].append({"id": ann_id, "image_id": image_id, **ann})
            if not anns:
                self.change("images_without_objects")
            self.report.records_out += 1
        self.change("objects", ann_id)
        return coco

    def _annotations(self, path: Path, objects, cat_id: dict, w: int, h: int) -> list[dict]:
        quads = objects.boxes.data
        norm = normalize_quads(quads)
        self.change("quads_reordered", int(np.sum(np.any(norm != quads, axis=1))))
        areas = np.abs(signed_area(norm))
        anns = []
        for i, label in enumerate(objects.labels):
            canon = self.categories.canonical(label)  # read_labeltxt rejected labels that are no spelling of a class
            q = norm[i]
            xs, ys = q[0::2], q[1::2]
            if xs.min() < -BOUNDS_SLACK or ys.min() < -BOUNDS_SLACK or xs.max() > w + BOUNDS_SLACK \
                    or ys.max() > h + BOUNDS_SLACK:
                self.change("objects_extending_outside_image")  # normal for split patches: kept as they are
            if canon != label:
                self.change("label_spelling_unified")
            anns.append({"category_id": cat_id[canon], "segmentation": [q.tolist()],
                         "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min()),
                                  float(ys.max() - ys.min())],
                         "area": float(areas[i]), "iscrowd": 0, "difficult": int(objects.difficult[i])})
        return anns
