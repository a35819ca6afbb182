"""A set of labelled objects in one image: boxes + category labels (+ optional scores and difficult flags)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rscovlm.geometry.boxes import BOX_DIMS, BoxKind, Boxes, Frame


@dataclass(eq=False)
class ObjectSet:
    """Objects of one image. ``labels[i]`` is the canonical category id of ``boxes[i]`` (e.g. ``small-vehicle``);
    ``scores`` is ``None`` for score-free output (ground truth, VLM responses); ``difficult`` holds DOTA's flag
    (0, 1, or 2 for objects cut by a split window) or is ``None``."""

    boxes: Boxes
    labels: list[str] = field(default_factory=list)
    scores: np.ndarray | None = None
    difficult: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.labels = list(self.labels)
        if len(self.labels) != len(self.boxes):
            raise ValueError(f"{len(self.boxes)} boxes but {len(self.labels)} labels")
        for name in ("scores", "difficult"):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value, dtype=np.float64 if name == "scores" else np.int64).reshape(-1)
                if len(value) != len(self.boxes):
                    raise ValueError(f"{len(self.boxes)} boxes but {len(value)} {name}")
                setattr(self, name, value)

    @classmethod
    def empty(cls, kind: BoxKind = "quad", frame: Frame | None = None) -> "ObjectSet":
        return cls(Boxes(np.zeros((0, BOX_DIMS[kind])), kind, frame), [])

    def __len__(self) -> int:
        return len(self.boxes)

    def select(self, index) -> "ObjectSet":
        """Subset by boolean mask or index array."""
        index = np.asarray(index)
        index = np.flatnonzero(index) if index.dtype == bool else index.astype(np.int64).reshape(-1)
        return ObjectSet(
            self.boxes[index],
            [self.labels[i] for i in index],
            None if self.scores is None else self.scores[index],
            None if self.difficult is None else self.difficult[index],
        )

    def with_boxes(self, boxes: Boxes) -> "ObjectSet":
        return ObjectSet(boxes, self.labels, self.scores, self.difficult)

    def to_frame(self, frame: Frame) -> "ObjectSet":
        return self.with_boxes(self.boxes.to_frame(frame))

    def to(self, kind: BoxKind) -> "ObjectSet":
        return self.with_boxes(self.boxes.to(kind))
