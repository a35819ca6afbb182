"""Pre-flight checks: what can be known to fail is found before the model loads and training starts.

* :func:`check_images` - every image file the training data references exists and opens (``header``: the image
  header reads, :func:`rscovlm.imageio.image_size`; ``decode``: the whole file decodes,
  :func:`rscovlm.imageio.open_rgb`, which also finds truncated files), and has the size its records state (the
  targets of detection and grounding records are written for that size). Each distinct file is checked once, on a
  thread pool (the work is file I/O); under ``torchrun`` the ranks split the files between them and exchange
  the results. The report counts the images and lists each unusable one with the ``file:line`` of the records
  that reference it.
* :func:`apply_image_check` - an unusable image is an error (:class:`PreflightError` with that list) unless
  skipping was asked for; then the records are removed from the dataset and counted.

A dataset takes part by offering two methods (the ``jsonl`` source and the curation ``mixture`` do):

* ``image_references() -> Iterable[ImageRef]`` - every image reference of every record
  (:class:`rscovlm.data.records.ImageRef`: datasets are built below ``train/``);
* ``drop_records(keys) -> int`` - remove the records with these ``ImageRef.key`` values, return how many.

Model paths that look local are checked by :func:`rscovlm.model.loading.local_model_problem`; numeric settings by
:func:`rscovlm.train.config.check_ranges`.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal

from rscovlm.data.records import ImageRef

CheckMode = Literal["header", "decode", "none"]
LISTED = 20  # unusable images named in full in an error message; the rest are counted
CHUNK = 64  # files per thread-pool task


class PreflightError(ValueError):
    """Training data that cannot be used as configured (the message lists what and where)."""


@dataclass
class ImageCheckReport:
    """Result of :func:`check_images` (and of skipping, in :func:`apply_image_check`)."""

    mode: str
    images: int = field(default=0, metadata={"help": "distinct image files checked"})
    references: int = field(default=0, metadata={"help": "image references in the records"})
    problems: dict[str, str] = field(default_factory=dict, metadata={"help": "unusable file -> reason"})
    referrers: dict[str, list[str]] = field(default_factory=dict,
                                            metadata={"help": "unusable file -> 'file:line' of its records"})
    bad_keys: set = field(default_factory=set, metadata={"help": "keys of the records with an unusable image"})
    skipped_records: int = field(default=0, metadata={"help": "records removed (skipping asked for)"})
    seconds: float = 0.0

    def summary(self) -> str:
        text = (f"{self.images} image file(s) checked ({self.mode} check, {self.references} reference(s), "
                f"{self.seconds:.1f} s): {len(self.problems)} unusable")
        if self.skipped_records:
            text += f"; skipped {self.skipped_records} record(s) that use them (data.skip_invalid_images)"
        return text

    def listing(self, limit: int = LISTED) -> list[str]:
        """One line per unusable image (the first ``limit``): path, reason, the records that reference it."""
        lines = []
        for path in sorted(self.problems)[:limit]:
            records = self.referrers.get(path, [])
            shown = ", ".join(records[:3]) + (f" and {len(records) - 3} more" if len(records) > 3 else "")
            reason = self.problems[path]
            # ImageReadError messages start with the path already
            text = reason if reason.startswith(path) else f"{path}: {reason}"
            lines.append(f"  {text}  [referenced by {shown}]")
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more unusable image(s)")
        return lines


def _check_one(path: str, mode: str) -> tuple[str | None, tuple[int, int] | None]:
    """``(problem, (width, height))`` of one file: the problem is None when it opens, the size None when not."""
    from rscovlm.imageio import ImageReadError, image_size, open_rgb

    try:
        if mode == "decode":
            with open_rgb(path) as im:
                return None, im.size
        return None, image_size(path)
    except ImageReadError as err:
        return str(err), None
    except (OSError, ValueError) as err:  # anything else the file system or decoder says
        return f"{path}: {type(err).__name__}: {err}", None


def default_workers() -> int:
    """Threads for the image check: file I/O bound, so more than the cores (capped at 16)."""
    return min(16, 4 * (os.cpu_count() or 1))


def check_images(refs: Iterable[ImageRef], mode: CheckMode = "header", workers: int | None = None,
                 progress=None, shard: tuple[int, int] = (0, 1),
                 gather: Callable[[dict], dict] | None = None) -> ImageCheckReport:
    """Check every distinct file of ``refs`` once (see module docstring). ``progress``: a tqdm-like bar updated per
    file (optional). Several processes with the same ``refs`` share the work: ``shard=(rank, world_size)`` checks
    every ``world_size``-th file (in sorted order) and ``gather`` merges the ``{path: (problem, size)}`` dicts of
    all ranks (e.g. ``torch.distributed.all_gather_object``), so every rank gets the same report. A reference whose
    ``size`` differs from the file's is a problem of its record (the other records of the file stay)."""
    start = time.perf_counter()
    report = ImageCheckReport(mode=mode)
    by_path: dict[str, list[ImageRef]] = defaultdict(list)
    for ref in refs:
        by_path[ref.path].append(ref)
        report.references += 1
    report.images = len(by_path)
    if mode == "none" or not by_path:
        report.seconds = time.perf_counter() - start
        return report
    rank, world = shard
    paths = sorted(by_path)[rank::world]
    if progress is not None:
        progress.reset(total=len(paths))
    # {path: (problem, size)} of the files that cannot be opened or whose records state another size
    found: dict[str, tuple[str | None, tuple[int, int] | None]] = {}
    # chunks of files per task: one future per file would cost more than a header read
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    with ThreadPoolExecutor(max_workers=min(workers or default_workers(), max(1, len(chunks)))) as pool:
        for chunk, results in zip(chunks, pool.map(lambda c: [_check_one(p, mode) for p in c], chunks)):
            for path, (problem, size) in zip(chunk, results):
                if problem is not None or any(r.size is not None and tuple(r.size) != size for r in by_path[path]):
                    found[path] = (problem, size)
            if progress is not None:
                progress.update(len(chunk))
    if gather is not None:
        found = gather(found)
    for path in sorted(found):
        problem, size = found[path]
        bad = by_path[path]
        if problem is None:
            bad = [r for r in bad if r.size is not None and tuple(r.size) != size]
            stated = ", ".join(sorted({f"{r.size[0]}x{r.size[1]}" for r in bad}))
            problem = f"{path}: the image is {size[0]}x{size[1]}, but its record(s) say {stated}"
        report.problems[path] = problem
        report.referrers[path] = [r.where for r in bad]
        report.bad_keys.update(r.key for r in bad)
    report.seconds = time.perf_counter() - start
    return report


def supports_image_check(dataset: Any) -> bool:
    return hasattr(dataset, "image_references") and hasattr(dataset, "drop_records")


def apply_image_check(dataset: Any, mode: CheckMode = "header", skip_invalid: bool = False,
                      workers: int | None = None, progress=None, shard: tuple[int, int] = (0, 1),
                      gather: Callable | None = None) -> ImageCheckReport:
    """Check the images of ``dataset`` (see the module docstring; ``shard`` / ``gather`` as in
    :func:`check_images`). Unusable images raise :class:`PreflightError` listing them, unless ``skip_invalid``:
    then their records are dropped from ``dataset`` and counted in the report (an error still when no record is
    left)."""
    report = check_images(dataset.image_references(), mode, workers, progress, shard, gather)
    if not report.problems:
        return report
    if not skip_invalid:
        raise PreflightError("\n".join([
            f"data: {len(report.problems)} of {report.images} image file(s) cannot be used, in "
            f"{len(report.bad_keys)} record(s):", *report.listing(),
            "fix or remove them, or set data.skip_invalid_images=true to train without these records"]))
    report.skipped_records = dataset.drop_records(report.bad_keys)
    if len(dataset) == 0:
        raise PreflightError(f"data: every record uses an unusable image ({report.summary()})")
    return report
