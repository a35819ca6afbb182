"""Template questions on a 3 x 3 grid (paper 3.4.1): counts and comparisons with answers from the labels.

Per image and category with ``n`` objects (:mod:`rscovlm.data.zoom.regions` for the grid and the cell of an
object):

* dense (``n >= dense_min_count``): ``region_questions`` ``count_region`` questions, each about a different cell
  drawn at random (answers may be 0); the zoom target (RoI) is the cell;
* sparse (``0 < n < dense_min_count``): one ``count_total`` question; its evidence is the ``n`` objects, so one
  object gives a zoom target (its coarse region) and several make a single-turn question (evidence in several
  regions, as the reference: ``len(crop_hbox) != 1``);
* up to ``compare_questions`` comparisons between two present categories with different counts (``compare_more``:
  yes/no, the pair's order drawn so both answers occur; ``compare_which``: the category with more objects);
  always single-turn (the evidence is both categories' objects over the whole image).

The texts come from a template file (packaged: ``templates.yaml`` beside this module; format in its header). All
draws come from ``rng`` in a fixed order, so a seed gives the same questions.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rscovlm.data.zoom.regions import cell_index, grid_cells

PACKAGED = Path(__file__).with_name("templates.yaml")
QTYPES = ("count_total", "count_region", "compare_more", "compare_which")


class TemplateError(ValueError):
    """A malformed template file (names the file and key)."""


@dataclass(frozen=True)
class Templates:
    """A loaded template file."""

    path: str
    texts: dict
    regions: tuple[str, ...]
    plurals: dict
    instruction: str
    yes: str
    no: str

    def plural(self, name: str) -> str:
        """``storage tank`` -> ``storage tanks`` (table first, then the English rule)."""
        if name in self.plurals:
            return self.plurals[name]
        if name.endswith(("s", "x", "z", "ch", "sh")):
            return name + "es"
        if name.endswith("y") and len(name) > 1 and name[-2] not in "aeiou":
            return name[:-1] + "ies"
        return name + "s"

    def question(self, qtype: str, rng: np.random.Generator, **values) -> str:
        """A drawn text of ``qtype`` filled with ``values`` (without the instruction)."""
        options = self.texts[qtype]
        return options[int(rng.integers(len(options)))].format(**values)


def load_templates(path: str | None = None) -> Templates:
    """The template file ``path`` (default: the packaged one), checked."""
    import yaml

    path = Path(path) if path else PACKAGED
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TemplateError(f"{path}: template file not found") from None
    except yaml.YAMLError as err:
        raise TemplateError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise TemplateError(f"{path}: expected a mapping")
    texts = data.get("templates")
    if not isinstance(texts, dict):
        raise TemplateError(f"{path}: templates: expected a mapping of question type -> list of texts")
    fields = {"count_total": {"objects"}, "count_region": {"objects", "region"},
              "compare_more": {"objects_a", "objects_b"}, "compare_which": {"objects_a", "objects_b"}}
    import string

    for qtype in QTYPES:
        items = texts.get(qtype)
        if not isinstance(items, list) or not items or not all(isinstance(t, str) and t.strip() for t in items):
            raise TemplateError(f"{path}: templates.{qtype}: expected a non-empty list of texts")
        for i, t in enumerate(items):
            names = {f for _, f, _, _ in string.Formatter().parse(t) if f is not None}
            if names - fields[qtype]:
                raise TemplateError(f"{path}: templates.{qtype}[{i}]: unknown placeholder(s) "
                                    f"{sorted(names - fields[qtype])}; allowed: {sorted(fields[qtype])}")
    unknown = set(texts) - set(QTYPES)
    if unknown:
        raise TemplateError(f"{path}: templates: unknown question type(s) {sorted(unknown)}; known: {list(QTYPES)}")
    regions = data.get("regions")
    if not isinstance(regions, list) or len(regions) != 9 or not all(isinstance(r, str) for r in regions):
        raise TemplateError(f"{path}: regions: expected the names of the 9 grid cells, row-major")
    answers = data.get("answers") or {}
    plurals = data.get("plurals") or {}
    if not isinstance(plurals, dict):
        raise TemplateError(f"{path}: plurals: expected a mapping")
    return Templates(str(path), {k: list(v) for k, v in texts.items()}, tuple(regions),
                     {str(k): str(v) for k, v in plurals.items()}, str(data.get("instruction") or ""),
                     str(answers.get("yes", "yes")), str(answers.get("no", "no")))


@dataclass
class TemplateConfig:
    """Template questions (paper 3.4.1)."""

    enabled: bool = field(default=True, metadata={"help": "write template questions"})
    dense_min_count: int = field(default=10, metadata={
        "help": "a category with at least this many objects in an image is asked per grid cell, else in total"})
    region_questions: int = field(default=2, metadata={"help": "cells asked about per dense category"})
    compare_questions: int = field(default=2, metadata={"help": "comparison questions per image at most"})
    templates: str | None = field(default=None, metadata={
        "help": "template YAML replacing the packaged rscovlm/data/zoom/templates.yaml"})

    def __post_init__(self) -> None:
        if self.dense_min_count < 1 or not 0 <= self.region_questions <= 9 or self.compare_questions < 0:
            raise ValueError("templates: need dense_min_count >= 1, 0 <= region_questions <= 9, "
                             "compare_questions >= 0")


@dataclass
class QA:
    """One question with its answer and evidence. ``evidence``: hbbs (original pixels) of what answers it;
    ``roi``: the zoom target when the evidence is one region (else None: single-turn); ``category``: the
    category (or ``a|b`` for comparisons); ``info``: counts and cell."""

    qtype: str
    category: str
    question: str
    answer: str
    evidence: list
    roi: list | None
    info: dict = field(default_factory=dict)


def template_questions(labels: list[str], hbbs: np.ndarray, size: tuple[int, int], cfg: TemplateConfig,
                       templates: Templates, rng: np.random.Generator, object_roi) -> list[QA]:
    """The template questions of one image (module docstring). ``labels`` are display names; ``object_roi(hbb)``
    gives the zoom target around one object."""
    w, h = size
    hbbs = np.asarray(hbbs, dtype=np.float64).reshape(-1, 4)
    cells = cell_index(hbbs, w, h)
    boxes = grid_cells(w, h)
    counts: dict[str, int] = {}
    for lab in labels:
        counts[lab] = counts.get(lab, 0) + 1
    out: list[QA] = []
    for cat in sorted(counts):
        n = counts[cat]
        idx = [i for i, lab in enumerate(labels) if lab == cat]
        name = templates.plural(cat)
        if n >= cfg.dense_min_count:
            for cell in sorted(rng.choice(9, size=cfg.region_questions, replace=False).tolist()):
                k = int(sum(1 for i in idx if cells[i] == cell))
                q = templates.question("count_region", rng, objects=name, region=templates.regions[cell])
                out.append(QA("count_region", cat, q, str(k), [list(boxes[cell])], [float(v) for v in boxes[cell]],
                              {"count": k, "cell": int(cell), "region": templates.regions[cell], "total": n}))
        else:
            q = templates.question("count_total", rng, objects=name)
            evidence = [hbbs[i].tolist() for i in idx]
            roi = [float(v) for v in object_roi(hbbs[idx[0]])] if n == 1 else None
            out.append(QA("count_total", cat, q, str(n), evidence, roi, {"count": n}))
    pairs = [(a, b) for a, b in itertools.combinations(sorted(counts), 2) if counts[a] != counts[b]]
    if pairs and cfg.compare_questions:
        chosen = rng.choice(len(pairs), size=min(cfg.compare_questions, len(pairs)), replace=False)
        for j in sorted(chosen.tolist()):
            a, b = pairs[j]
            if rng.random() < 0.5:
                a, b = b, a
            evidence = [hbbs[i].tolist() for i, lab in enumerate(labels) if lab in (a, b)]
            info = {"counts": {a: counts[a], b: counts[b]}}
            values = {"objects_a": templates.plural(a), "objects_b": templates.plural(b)}
            if rng.random() < 0.5:
                q = templates.question("compare_more", rng, **values)
                ans = templates.yes if counts[a] > counts[b] else templates.no
                out.append(QA("compare_more", f"{a}|{b}", q, ans, evidence, None, info))
            else:
                q = templates.question("compare_which", rng, **values)
                ans = templates.plural(a if counts[a] > counts[b] else b)
                out.append(QA("compare_which", f"{a}|{b}", q, ans, evidence, None, info))
    return out
