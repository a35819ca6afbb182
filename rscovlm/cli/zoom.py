"""``rscovlm zoom``: the Zoom-in Chain on ultra-high-resolution images (parser and handler in
:mod:`rscovlm.cli._infer`)."""

from __future__ import annotations

HELP = "answer a question about an ultra-high-resolution image with the Zoom-in Chain, cropping the original"


def register(sub) -> None:
    from rscovlm.cli._infer import register_zoom

    register_zoom(sub, HELP)
