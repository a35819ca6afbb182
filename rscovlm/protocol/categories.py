"""Category vocabularies and the mapping between label spellings.

Canonical ids are the DOTA file spellings (``small-vehicle``); the model reads and writes display names
(``small vehicle``: words separated by spaces, lower case). A label is matched to a class by its *spelling key*:
lower case, with every run of spaces, hyphens and underscores collapsed to one separator, so
``Small_Vehicle``, ``small vehicle`` and ``small-vehicle`` are one class. Nothing else is matched: synonyms
("car") are not spellings, and a label with no class is reported by the caller, never forced onto one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_SEPARATORS = re.compile(r"[\s\-_]+")


def spelling_key(label: str) -> str:
    """``'  Small_Vehicle '`` -> ``'small vehicle'``."""
    return _SEPARATORS.sub(" ", label.strip().lower()).strip()


@dataclass(frozen=True)
class CategorySet:
    """A closed vocabulary: canonical ids in their dataset's order."""

    name: str
    classes: tuple[str, ...]
    _by_key: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_key", {spelling_key(c): c for c in self.classes})

    def canonical(self, label: str) -> str | None:
        """The canonical id of ``label``, or ``None`` when it is no spelling of a class here."""
        return self._by_key.get(spelling_key(label))

    def __contains__(self, label: str) -> bool:
        return self.canonical(label) is not None


def display_name(label: str) -> str:
    """How the model reads and writes a class: ``small-vehicle`` -> ``small vehicle``."""
    return spelling_key(label)


DOTA_V1_0 = CategorySet("dota-v1.0", (
    "plane", "baseball-diamond", "bridge", "ground-track-field", "small-vehicle", "large-vehicle", "ship",
    "tennis-court", "basketball-court", "storage-tank", "soccer-ball-field", "roundabout", "harbor",
    "swimming-pool", "helicopter",
))
DOTA_V1_5 = CategorySet("dota-v1.5", DOTA_V1_0.classes + ("container-crane",))
DOTA_V2_0 = CategorySet("dota-v2.0", DOTA_V1_5.classes + ("airport", "helipad"))

CATEGORY_SETS: dict[str, CategorySet] = {s.name: s for s in (DOTA_V1_0, DOTA_V1_5, DOTA_V2_0)}


def get_category_set(name: str) -> CategorySet:
    try:
        return CATEGORY_SETS[name]
    except KeyError:
        raise KeyError(f"unknown category set {name!r}; known: {sorted(CATEGORY_SETS)}") from None


def canonical_label(label: str, categories: CategorySet = DOTA_V1_0) -> str | None:
    """Shortcut for ``categories.canonical(label)`` (DOTA-v1.0 by default)."""
    return categories.canonical(label)
