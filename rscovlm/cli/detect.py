"""``rscovlm detect``: detection on large images and GeoTIFFs (parser and handler in :mod:`rscovlm.cli._infer`)."""

from __future__ import annotations

HELP = "detect objects in large images and GeoTIFFs: split, infer, merge; labelTxt, Task1, GeoJSON, overlays"


def register(sub) -> None:
    from rscovlm.cli._infer import register_detect

    register_detect(sub, HELP)
