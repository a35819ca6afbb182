"""Checkpoints that are either complete or not there: atomic writes and the latest *complete* checkpoint.

The ``transformers`` Trainer writes ``<output_dir>/checkpoint-<step>/`` file by file (weights, optimizer and
scheduler states, DeepSpeed's ``global_step<N>/`` shards, one RNG state per process, ``trainer_state.json`` last).
A process killed in the middle leaves a folder that looks like a checkpoint but cannot be resumed from.

:class:`~rscovlm.train.trainer.RSCoVLMTrainer` therefore writes each checkpoint into
``<output_dir>/incomplete-checkpoints/checkpoint-<step>/``; when every process has finished writing (a barrier),
the main process writes the manifest ``rscovlm_checkpoint.json`` (step and every file with its size, written last)
and renames the folder to ``<output_dir>/checkpoint-<step>`` - one atomic rename on one file system. Whatever
is killed, ``checkpoint-<step>`` is either absent or complete. Leftovers of an interrupted write stay under
``incomplete-checkpoints/`` (reported, never resumed from) and are deleted by the next checkpoint save.

A checkpoint folder is *complete* (:func:`checkpoint_problem` returns None) when

* it has a manifest and every file listed in it exists with the listed size; or
* it has no manifest (written by the stock Trainer or an older rscovlm), its ``trainer_state.json`` - which the
  Trainer writes after the weights, optimizer and RNG states - parses and holds the folder's step, and a
  DeepSpeed ``latest`` tag, if present, names an existing folder.

``resume_from_checkpoint=latest`` is the complete checkpoint with the highest step (:func:`latest_complete`);
incomplete ones are reported by name and skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST = "rscovlm_checkpoint.json"
STAGING = "incomplete-checkpoints"
TRAINER_STATE = "trainer_state.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(folder: str | os.PathLike) -> int | None:
    """The step of a ``checkpoint-<step>`` folder name, None for other names."""
    match = _CHECKPOINT.match(Path(folder).name)
    return int(match.group(1)) if match else None


def list_files(folder: str | os.PathLike) -> dict[str, int]:
    """``{relative posix path: size in bytes}`` of every file under ``folder`` (the manifest excluded)."""
    folder = Path(folder)
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root, name)
            rel = path.relative_to(folder).as_posix()
            if rel != MANIFEST:
                files[rel] = path.stat().st_size
    return dict(sorted(files.items()))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_manifest(folder: str | os.PathLike, step: int) -> Path:
    """Write the manifest of ``folder`` (every file present now, with its size); the file is synced to disk."""
    folder = Path(folder)
    manifest = {"format": 1, "step": int(step), "files": list_files(folder)}
    tmp = folder / (MANIFEST + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / MANIFEST)
    return folder / MANIFEST


def checkpoint_problem(folder: str | os.PathLike) -> str | None:
    """Why ``folder`` is not a complete checkpoint (see the module docstring), or None when it is."""
    folder = Path(folder)
    if not folder.is_dir():
        return "not a folder"
    manifest_path = folder / MANIFEST
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            files = dict(manifest["files"])
        except (ValueError, KeyError, TypeError) as err:
            return f"unreadable {MANIFEST} ({err})"
        for rel, size in files.items():
            path = folder / rel
            if not path.is_file():
                return f"{rel} is missing (listed in {MANIFEST})"
            if path.stat().st_size != size:
                return f"{rel} has {path.stat().st_size} bytes, {MANIFEST} says {size}"
        return None
    state_path = folder / TRAINER_STATE
    if not state_path.is_file():
        return f"no {TRAINER_STATE} and no {MANIFEST}: the write was interrupted"
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        return f"{TRAINER_STATE} is not valid JSON ({err}): the write was interrupted"
    step = checkpoint_step(folder)
    if step is not None and state.get("global_step") != step:
        return f"{TRAINER_STATE} says global_step {state.get('global_step')!r}, the folder name says {step}"
    latest = folder / "latest"  # DeepSpeed's tag file: the name of the folder holding its shards
    if latest.is_file():
        tag = latest.read_text(encoding="utf-8").strip()
        if not (folder / tag).is_dir():
            return f"DeepSpeed tag 'latest' names {tag}, which is missing"
    return None


@dataclass
class CheckpointScan:
    """What :func:`latest_complete` found in an output folder."""

    latest: Path | None = None
    skipped: list[tuple[Path, str]] = field(default_factory=list,
                                            metadata={"help": "incomplete checkpoint-* folders and why"})
    leftovers: list[Path] = field(default_factory=list,
                                  metadata={"help": f"interrupted writes under {STAGING}/"})

    def warnings(self) -> list[str]:
        """One line per incomplete folder, naming it (empty when there is nothing to report)."""
        lines = [f"ignoring incomplete checkpoint {path}: {why}" for path, why in self.skipped]
        lines += [f"ignoring interrupted checkpoint write {path} (deleted at the next checkpoint save)"
                  for path in self.leftovers]
        return lines


def latest_complete(output_dir: str | os.PathLike) -> CheckpointScan:
    """The complete ``checkpoint-<step>`` folder with the highest step in ``output_dir``; the incomplete ones with
    a higher step, and the leftovers of interrupted writes, are listed for reporting."""
    output_dir = Path(output_dir)
    scan = CheckpointScan()
    if not output_dir.is_dir():
        return scan
    found = sorted(((checkpoint_step(p), p) for p in output_dir.iterdir()
                    if p.is_dir() and checkpoint_step(p) is not None), reverse=True)
    for _, path in found:
        problem = checkpoint_problem(path)
        if problem is None:
            scan.latest = path
            break
        scan.skipped.append((path, problem))
    staging = output_dir / STAGING
    if staging.is_dir():
        scan.leftovers = sorted(p for p in staging.iterdir())
    return scan


def clear_staging(output_dir: str | os.PathLike) -> None:
    """Delete ``<output_dir>/incomplete-checkpoints`` (leftovers of interrupted writes)."""
    shutil.rmtree(Path(output_dir) / STAGING, ignore_errors=True)


def staged_path(output_dir: str | os.PathLike, step: int) -> Path:
    """Where the checkpoint of ``step`` is written before it is published."""
    return Path(output_dir) / STAGING / f"checkpoint-{step}"


def publish(staged: str | os.PathLike, step: int) -> Path:
    """Write the manifest of the fully written folder ``staged`` and rename it to ``<output_dir>/checkpoint-<step>``
    (``output_dir`` = the parent of the staging folder). A checkpoint of the same step that is already there (a
    run resumed from an earlier step) is replaced; at every moment one of the two is in place."""
    staged = Path(staged)
    output_dir = staged.parent.parent
    final = output_dir / f"checkpoint-{step}"
    write_manifest(staged, step)
    _fsync_dir(staged)
    old = None
    if final.exists():
        old = staged.parent / f"replaced-checkpoint-{step}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(staged, final)
    _fsync_dir(output_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    try:
        staged.parent.rmdir()  # empty now unless something else is left there
    except OSError:
        pass
    return final
