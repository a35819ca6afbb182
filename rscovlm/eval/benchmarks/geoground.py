"""GeoGround visual grounding (refGeo test splits): DIOR-RSVG val/test, RSVG val/test, GeoChat-Bench VG, VRSBench
VG, AVVG. Acc@0.5 per subset (paper Table 2), rules in :data:`rscovlm.eval.grounding.GEOGROUND_RULES`.

Layout (the reference's ``GEOGROUND`` table, refGeo as released): ``<root>/metainfo/<subset>.jsonl`` with one
record per expression (``image_id``, ``question`` = the referring expression, ``bbox`` = ``[x1, y1, x2, y2]`` in
original pixels; other fields kept), read by :func:`rscovlm.data.refgeo.iter_refgeo_metainfo` (the reader of
``data convert --source refgeo``) and the image at ``<root>/images/<folder>/<image_id>``; GeoChat images named
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
    need_file,
    pct,
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
        from rscovlm.data.records import RecordError
        from rscovlm.data.refgeo import iter_refgeo_metainfo

        path = need_file(root / "metainfo" / f"{self.subset}.jsonl", self)
        items = []
        try:
            for line, rec in iter_refgeo_metainfo(path):
                image = root / "images" / self.folder / rec["image_id"]
                if "geochat" in self.folder and not image.exists():
                    image = image.with_name(image.name.replace(".jpg", ".png"))
                if not image.is_file():
                    raise BenchmarkDataError(f"{self.name}: {path}:{line}: image {image} does not exist")
                items.append(Item(id=str(line), image=str(image.resolve()), fields={"object": rec["question"]},
                                  target=[float(v) for v in rec["bbox"]],
                                  meta={"question_id": rec.get("question_id"), "image_id": rec["image_id"]}))
        except RecordError as err:
            raise BenchmarkDataError(f"{self.name}: {err}") from None
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

    def item_scores(self, items, answers, rule=None, family=None, **options) -> dict[str, dict]:
        from rscovlm.model.families import family_for

        rule = self.check_rule(rule)
        fam = family_for(family) if family is not None else None
        todo, _ = answered(items, answers, partial=True)
        out = {}
        for it in todo:
            ans = answers[it.id]
            hit, iou, _ = geoground_hit(ans.get("text") or "", it.target, resize_of(ans, self.name), rule, self.form,
                                        fam)
            out[it.id] = {"correct": bool(hit), "score": float(iou), "metric": "IoU"}
        return out


for _subset in SUBSETS:
    register_benchmark(type(f"GeoGround_{_subset}", (GeoGroundSubset,), {"subset": _subset}))


class DiorRsvgRelease(GeoGroundSubset):
    """DIOR-RSVG val/test in its own release (Zhan et al.: ``Annotations/*.xml`` + split lists), read by
    :func:`rscovlm.data.dior_rsvg.read_dior_rsvg` (conventions there: global object indices in file-name order,
    ``bndbox`` corners in original pixels). Prompt, rules and scoring are those of ``geoground_dior_rsvg_<split>``;
    use it when the data at hand is the DIOR-RSVG release rather than refGeo's metainfo."""

    split = ""

    def __init__(self):
        self.name = f"dior_rsvg_{self.split}"
        self.title = f"DIOR-RSVG {self.split} (its own release layout; the GeoGround prompt and rules)"
        self.prompt = f"geoground_dior_rsvg_{self.split}"
        self.layout = (f"<root>/DIOR_RSVG/Annotations/*.xml   Pascal-VOC-like: <filename>, <object> with <name>, "
                       f"<bndbox> (xmin, ymin, xmax, ymax: original pixels), <description>\n"
                       f"<root>/DIOR_RSVG/{self.split}.txt   one global object index per line\n"
                       f"<root>/DIOR_RSVG/JPEGImages/<filename>")
        self.paper = {}

    def load(self, root: Path) -> list[Item]:
        from rscovlm.data.dior_rsvg import DiorRsvgError, read_dior_rsvg

        release = root / "DIOR_RSVG"
        need_file(release / f"{self.split}.txt", self)
        try:
            objects = read_dior_rsvg(release, self.split)
        except (DiorRsvgError, FileNotFoundError) as err:
            raise BenchmarkDataError(f"{self.name}: {err}") from None
        items = []
        for obj in objects:
            image = release / "JPEGImages" / obj.image
            if not image.is_file():
                raise BenchmarkDataError(f"{self.name}: {obj.xml}: image {image} does not exist")
            items.append(Item(id=str(obj.index), image=str(image.resolve()), fields={"object": obj.description},
                              target=list(obj.bbox), meta={"question_id": obj.index, "image_id": obj.image,
                                                           "obj_cls": obj.name}))
        return items


for _split in ("val", "test"):
    register_benchmark(type(f"DiorRsvg_{_split}", (DiorRsvgRelease,), {"split": _split}))
