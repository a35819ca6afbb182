"""Fake data in every benchmark's exact released layout (one root; the layouts do not collide), small enough for
CI: a few items per benchmark, tiny images. Used by the registry, scorer and harness tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def _img(path: Path, w: int = 64, h: int = 48, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(path, format=fmt)


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def make_fake_root(root: Path) -> Path:
    """Every benchmark's released layout under one root (they do not collide)."""
    # LRS-VQA: question file + images at the path each record names
    q = "\n Answer the question using a single word or phrase."
    _jsonl(root / "LRS_VQA_merged.jsonl", [
        {"question_id": "FAIR_1", "image": "LRS_VQA/image/1.tif", "category": "count", "text": "How many?" + q,
         "ground_truth": "2", "image_size": [64, 48]},
        {"question_id": "FAIR_2", "image": "LRS_VQA/image/1.tif", "category": "object color",
         "text": "What color is the plane?" + q, "ground_truth": "white", "image_size": [64, 48]},
        {"question_id": "GLH-Bridge_1", "image": "LRS_VQA/image/2.png", "category": "rural or urban",
         "text": "Rural or urban?" + q, "ground_truth": "urban", "image_size": [64, 48]},
        {"question_id": "STAR_1", "image": "LRS_VQA/image/2.png", "category": "object shape",
         "text": "What shape?" + q, "ground_truth": "round", "image_size": [64, 48]}])
    _img(root / "LRS_VQA/image/1.tif", fmt="TIFF")
    _img(root / "LRS_VQA/image/2.png")
    # GeoGround (refGeo): metainfo/<subset>.jsonl + images/<folder>/<image_id>
    from rscovlm.eval.benchmarks.geoground import SUBSETS

    for subset, (folder, _) in SUBSETS.items():
        image_id = "img_01.jpg"
        _jsonl(root / "metainfo" / f"{subset}.jsonl", [
            {"image_id": image_id, "question": "storage tank on the left", "bbox": [4, 6, 30, 40],
             "question_id": 7, "dataset": subset},
            {"image_id": image_id, "question": "the bridge", "bbox": [20.5, 10, 60, 20]}])
        # GeoChat images named .jpg are .png on disk (the reference falls back)
        _img(root / "images" / folder / (image_id.replace(".jpg", ".png") if "geochat" in folder else image_id))
    # DIOR-RSVG (its own release): Annotations/*.xml, split lists of global object indices, JPEGImages/
    rsvg = root / "DIOR_RSVG"
    (rsvg / "Annotations").mkdir(parents=True)
    for stem, objects in (("00001", [("storagetank", (4, 6, 30, 40), "storage tank on the left")]),
                          ("00002", [("bridge", (20.5, 10, 60, 20), "the bridge"), ("dam", (1, 2, 3, 4), "a dam")])):
        obj_xml = "".join(f"<object><name>{n}</name><pose>Unspecified</pose><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}"
                          f"</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox><description>{d}</description>"
                          f"</object>" for n, b, d in objects)
        (rsvg / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>64</width><height>48</height></size>"
            f"{obj_xml}</annotation>", encoding="utf-8")
        _img(rsvg / "JPEGImages" / f"{stem}.jpg")
    (rsvg / "test.txt").write_text("0\n1\n", encoding="utf-8")
    (rsvg / "val.txt").write_text("2\n", encoding="utf-8")
    # VRSBench (its own layout)
    _json(root / "VRSBench_EVAL_referring.json", [
        {"image_id": "P0001_0001.png", "question": "The small white car on the road.",
         "ground_truth": "{<10><20><50><60>}", "dataset": "RSBench", "question_id": 0, "type": "ref",
         "unique": True, "obj_cls": "small-vehicle"},
        {"image_id": "P0001_0001.png", "question": "<image>\nA large ship.", "ground_truth": "{<0><0><25><25>}",
         "dataset": "RSBench", "question_id": 1, "type": "ref", "unique": False}])
    _json(root / "VRSBench_EVAL_vqa.json", [
        {"image_id": "P0001_0001.png", "question": "Is there a car?", "ground_truth": "yes", "question_id": 10,
         "type": "object existence", "dataset": "RSBench"},
        {"image_id": "P0001_0001.png", "question": "What is the scene?", "ground_truth": "parking lot",
         "question_id": 11, "type": "image", "dataset": "RSBench"}])
    _img(root / "Images/P0001_0001.png", 100, 100)
    # DOTA-v1.0: val with labelTxt, test images only
    _img(root / "val/images/P0001.png", 512, 512)
    (root / "val/labelTxt").mkdir(parents=True)
    (root / "val/labelTxt/P0001.txt").write_text(
        "imagesource:GoogleEarth\ngsd:0.1\n10 10 60 10 60 40 10 40 plane 0\n100 100 140 100 140 180 100 180 "
        "small-vehicle 0\n", encoding="utf-8")
    _img(root / "test/images/P0002.png", 700, 512)
    # scene classification: VHM eval files
    for name in ("cls_AID.json", "cls_NWPU_RESISC45.json", "cls_WHU_RS19.json", "cls_METER_ML.json"):
        folder = name[:-5]
        _json(root / "datasets_eval" / name, [
            {"image": "a.png", "image_path": folder, "conversations": [
                {"from": "human", "value": "Classify the image. Classes: airport, forest. Answer with one word or "
                                           "short phrase. "}, {"from": "gpt", "value": "airport"}]},
            {"image": "b.png", "image_path": folder, "conversations": [
                {"from": "human", "value": "Classify the image. Classes: airport, forest."},
                {"from": "gpt", "value": "forest"}]}])
        _img(root / "datasets_eval" / folder / "a.png")
        _img(root / "datasets_eval" / folder / "b.png")
    # GeoChat-Bench scene files
    text = ("Classify the image from the following classes. Classes: Airport, Forest, MediumResidential\n"
            "Answer in one word")
    _jsonl(root / "GeoChat-Bench/aid.jsonl", [
        {"question_id": "Airport/airport_1", "image": "Airport/airport_1.png", "text": text, "ground_truth": "Airport"},
        {"question_id": "Forest/forest_2", "image": "Forest/forest_2.png", "text": text,
         "ground_truth": "MediumResidentialgt"}])
    _img(root / "AID/Airport/airport_1.jpg", fmt="JPEG")
    _img(root / "AID/Forest/forest_2.jpg", fmt="JPEG")
    _jsonl(root / "GeoChat-Bench/UCmerced.jsonl", [
        {"question_id": "forest/forest00", "image": "forest/forest00.tif", "text": text, "ground_truth": "Forest"}])
    _img(root / "UCMerced_LandUse/Images/forest/forest00.tif", fmt="TIFF")
    # RSVQA release files (inactive entries present)
    for folder, prefix, split, images, types in (("RSVQA_HR", "USGS", "test_phili", "Data", ("presence", "comp")),
                                                 ("RSVQA_LR", "LR", "test", "Images_LR",
                                                  ("presence", "comp", "rural_urban"))):
        qs, ans = [], []
        for k, t in enumerate((*types, "count", "area")):
            qs.append({"id": 100 + k, "img_id": 5, "type": t, "question": f"Question {t}?", "answers_ids": [200 + k],
                       "active": True, "date_added": 0.0})
            ans.append({"id": 200 + k, "question_id": 100 + k, "answer": "yes" if k % 2 == 0 else "no",
                        "active": True, "date_added": 0.0})
        qs.append({"id": 999, "img_id": 5, "type": "presence", "question": "inactive?", "answers_ids": [299],
                   "active": False})
        _json(root / folder / f"{prefix}_split_{split}_questions.json", {"questions": qs})
        _json(root / folder / f"{prefix}_split_{split}_answers.json", {"answers": ans})
        _img(root / folder / images / "5.tif", fmt="TIFF")
    return root
