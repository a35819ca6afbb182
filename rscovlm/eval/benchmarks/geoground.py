"""GeoGround visual grounding (refGeo test splits): DIOR-RSVG val/test, RSVG val/test, GeoChat-Bench VG, VRSBench
VG, AVVG. Acc@0.5 per subset (paper Table 2), rules in :data:`rscovlm.eval.grounding.GEOGROUND_RULES`.

Layout (the reference's ``GEOGROUND`` table, refGeo as released): ``<root>/metainfo/<subset>.jsonl`` with one
record per expression (``image_id``, ``question`` = the referring expression, ``bbox`` = ``[x1, y1, x2, y2]`` in
original pixels; other fields kept) and the image at ``<root>/images/<folder>/<image_id>``; GeoChat images named
``.jpg`` fall back to ``.png`` as in the reference.
"""

from __future__ import annotations

from pathlib import Path

from rscovlm.eval.benchmarks import register_benchmark
from rscovlm.eval.benchmarks.base import (
    Benchmark,
    BenchmarkDataError,
    Item,
    answered,
    field_of,
    pct,
    read_records,
    resize_of,
)
from rscovlm.eval.grounding import GEOGROUND_RULES, geoground_hit

# subset -> (image folder under images/, title)
SUBSETS = {
    "dior_rsvg_val": ("dior_rsvg", "DIOR-RSVG val"),
    "dior_rsvg_test": ("dior_rsvg", "DIOR-RSVG test"),
    "rsvg_val": ("rsvg", "RSVG val"),
    "rsvg_test": ("rsvg", "RSVG test"),
    "geochat_test": ("geochat_test", "GeoChat-Bench VG"),
    "vrsbench_test": ("vrsbench", "VRSBench VG"),
    "avvg_test": ("avvg", "AVVG"),
}


class GeoGroundSubset(Benchmark):
    task = "grounding"
    form = "plain"  # --grounding_prompt_type plain (the reference's default)
    rules = GEOGROUND_RULES
    default_rule = "official"
    normalization = "the first box of the answer, model frame -> original pixels through the answer's resize"
    subset = ""

    def __init__(self):
        folder, title = SUBSETS[self.subset]
        self.name = f"geoground_{self.subset}"
        self.title = f"GeoGround {title}"
        self.prompt = self.name
        self.folder = folder
        self.layout = (f"<root>/metainfo/{self.subset}.jsonl   refGeo records: image_id, question, bbox [x1, y1, x2, "
                       f"y2] (original pixels)\n<root>/images/{folder}/<image_id>")
        self.paper = {"Acc@0.5": f"table2.{self.subset}"}

    def load(self, root: Path) -> list[Item]:
        path = root / "metainfo" / f"{self.subset}.jsonl"
        items = []
        for line, rec in read_records(path, self):
            image_id = field_of(rec, "image_id", path, line, self)
            bbox = field_of(rec, "bbox", path, line, self, (list,))
            if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
                raise BenchmarkDataError(f"{self.name}: {path}:{line}: field 'bbox' must be 4 numbers, got {bbox!r}")
            image = root / "images" / self.folder / image_id
            if "geochat" in self.folder and not image.exists():
                image = image.with_name(image.name.replace(".jpg", ".png"))
            if not image.is_file():
                raise BenchmarkDataError(f"{self.name}: {path}:{line}: image {image} does not exist")
            items.append(Item(id=str(line), image=str(image.resolve()),
                              fields={"object": field_of(rec, "question", path, line, self)},
                              target=[float(v) for v in bbox],
                              meta={"question_id": rec.get("question_id"), "image_id": image_id}))
        return items

    def score(self, items, answers, rule=None, partial=False, family=None, **options) -> dict:
        from rscovlm.model.families import family_for

        rule = self.check_rule(rule)
        fam = family_for(family) if family is not None else None
        todo, missing = answered(items, answers, partial)
        hits = unreadable = 0
        ious = []
        for it in todo:
            ans = answers[it.id]
            hit, iou, readable = geoground_hit(ans.get("text") or "", it.target, resize_of(ans, self.name), rule,
                                               self.form, fam)
            hits += hit
            unreadable += not readable
            ious.append(iou)
        n = len(todo)
        return {"metrics": {"Acc@0.5": pct(hits / n) if n else None},
                "details": {"hits": hits, "n": n, "unreadable": unreadable, "rule": rule,
                            "mean_iou": sum(ious) / n if n else None},
                "n": n, "n_missing": missing}


for _subset in SUBSETS:
    register_benchmark(type(f"GeoGround_{_subset}", (GeoGroundSubset,), {"subset": _subset}))
