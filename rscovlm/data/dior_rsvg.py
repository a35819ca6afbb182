"""DIOR-RSVG (Zhan et al., TGRS 2023) annotations: the referring-expression benchmark's XML files and split lists.

Checked against: github ZhanYang-nwpu/RSVG-pytorch - ``RSVGD/Annotations/00001.xml`` (@ 459c21b, a real
annotation file), ``data_loader.py`` (@ 0531211) and ``DIOR_RSVG/{train,val,test}.txt`` (@ 461bcaf; 26,991 /
3,829 / 7,500 lines). Layout of the release (``DIOR_RSVG/``)::

    Annotations/00001.xml ...      one Pascal-VOC-like file per image
    JPEGImages/00001.jpg ...       800 x 800 DIOR images
    train.txt val.txt test.txt     one integer per line: a global object index

An annotation file::

    <annotation>
      <filename>00001.jpg</filename>
      <source><database>DIOR</database></source>
      <size><width>800</width><height>800</height><depth>3</depth></size>
      <segmented>0</segmented>
      <object>
        <name>golffield</name>                  <- class
        <pose>Unspecified</pose>
        <bndbox><xmin>133</xmin><ymin>237</ymin><xmax>684</xmax><ymax>672</ymax></bndbox>
        <description>A green and brown golf field</description>   <- the referring expression
      </object>
      ...                                      <- one <object> per expression
    </annotation>

Conventions:

* ``bndbox`` is ``xmin, ymin, xmax, ymax`` in **absolute pixels of the image**, used as the corners of the box
  as they are (the upstream loader reads ``member[2][0..3]`` into ``x1 y1 x2 y2`` without any +-1): this reader
  returns them as float ``(x1, y1, x2, y2)`` in the original-pixel frame of ``rscovlm.geometry`` (IoU in
  continuous coordinates, no +1 pixel terms - the GeoGround protocol).
* The split files hold **global object indices**: the upstream loader counts every ``<object>`` of every XML file
  in the order ``os.walk`` lists them, which depends on the filesystem; the release was made with the files in
  name order (00001.xml, 00002.xml, ...), which this reader uses (sorted names), so index ``i`` is the i-th
  object in that order. Children are read by tag name (the upstream reads them by position: name, pose,
  bndbox, description - the same elements).
* A file that is not XML, an object without ``name``, ``bndbox`` (four numbers) or ``description``, a box with
  ``xmax < xmin``, or a split index outside the objects is an error naming the file (and line, or object).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from rscovlm.data.textio import read_lines


class DiorRsvgError(ValueError):
    """A DIOR-RSVG file that does not have the documented layout; the message names the file."""


@dataclass(frozen=True)
class RsvgObject:
    """One referring expression: ``index`` = its global object index, ``image`` = the file name under
    ``JPEGImages/``, ``bbox`` = ``(x1, y1, x2, y2)`` original pixels, ``name`` = class, ``description`` = the
    expression, ``size`` = ``(width, height)`` from the file's ``<size>`` (None when absent)."""

    index: int
    image: str
    bbox: tuple[float, float, float, float]
    name: str
    description: str
    size: tuple[int, int] | None
    xml: str


def _text(el: ET.Element | None) -> str | None:
    return el.text.strip() if el is not None and el.text is not None else None


def read_annotation(path: str | os.PathLike, first_index: int = 0) -> list[RsvgObject]:
    """The objects of one annotation file, numbered from ``first_index``."""
    path = str(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        line = err.position[0] if err.position else "?"
        raise DiorRsvgError(f"{path}:{line}: not valid XML ({err})") from None
    image = _text(root.find("filename"))
    if not image:
        raise DiorRsvgError(f"{path}: <filename> is missing")
    size = None
    w, h = _text(root.find("size/width")), _text(root.find("size/height"))
    if w and h:
        try:
            size = (int(float(w)), int(float(h)))
        except ValueError:
            raise DiorRsvgError(f"{path}: <size> holds {w!r} x {h!r}, not numbers") from None
    out = []
    for k, obj in enumerate(root.findall("object")):
        where = f"{path}: object {k + 1}"
        name, desc = _text(obj.find("name")), _text(obj.find("description"))
        if not name:
            raise DiorRsvgError(f"{where}: <name> is missing")
        if desc is None:
            raise DiorRsvgError(f"{where}: <description> (the referring expression) is missing")
        vals = [_text(obj.find(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax")]
        try:
            x1, y1, x2, y2 = (float(v) for v in vals)
        except (TypeError, ValueError):
            raise DiorRsvgError(f"{where}: <bndbox> needs xmin, ymin, xmax, ymax numbers, got {vals}") from None
        if x2 < x1 or y2 < y1:
            raise DiorRsvgError(f"{where}: <bndbox> has xmax < xmin or ymax < ymin: {vals}")
        out.append(RsvgObject(first_index + k, image, (x1, y1, x2, y2), name, desc, size, path))
    return out


def read_split(path: str | os.PathLike) -> list[int]:
    """The object indices of a split file (one integer per line; blank lines ignored)."""
    out = []
    for line_no, line in enumerate(read_lines(path, bom=True), start=1):
        if not isinstance(line, str):
            raise DiorRsvgError(f"{path}:{line_no}: {line.reason}")
        if not line.strip():
            continue
        try:
            out.append(int(line.strip()))
        except ValueError:
            raise DiorRsvgError(f"{path}:{line_no}: expected an object index, got {line.strip()!r}") from None
    return out


def read_dior_rsvg(root: str | os.PathLike, split: str | None = None) -> list[RsvgObject]:
    """Every object of ``root/Annotations/*.xml`` (global indices in file-name order), or those of ``split``:
    ``train`` / ``val`` / ``test`` (the file ``root/{split}.txt``) or a path to a split file, in its order."""
    root = Path(root)
    ann_dir = root / "Annotations"
    if not ann_dir.is_dir():
        raise FileNotFoundError(f"{ann_dir} does not exist (expected the DIOR-RSVG Annotations folder)")
    objects: list[RsvgObject] = []
    for xml in sorted(ann_dir.glob("*.xml")):
        objects.extend(read_annotation(xml, len(objects)))
    if split is None:
        return objects
    split_path = Path(split) if os.sep in split or split.endswith(".txt") else root / f"{split}.txt"
    if not split_path.is_file():
        raise FileNotFoundError(f"split file {split_path} does not exist")
    picked = []
    for n, idx in enumerate(read_split(split_path)):
        if not 0 <= idx < len(objects):
            raise DiorRsvgError(f"{split_path}: index {idx} (entry {n + 1}) is outside the {len(objects)} objects "
                                f"of {ann_dir}")
        picked.append(objects[idx])
    return picked
