"""``rscovlm predict``: answer a prompt about each image with a checkpoint (parser and handler in
:mod:`rscovlm.cli._infer`)."""

from __future__ import annotations

HELP = "answer one prompt about each image (chat, or a task with the prompt set's prompt); JSON lines on stdout"


def register(sub) -> None:
    from rscovlm.cli._infer import register_predict

    register_predict(sub, HELP)
