"""LLaVA-OneVision general data (charts, OCR, ...) -> conversation records: the released parquet shards, or
LLaVA JSON / JSON Lines.

Checked against: the dataset card of HF ``lmms-lab/LLaVA-OneVision-Data`` (parquet shards per subset, e.g.
``CLEVR-Math(MathV360K)/train-00000-of-00002.parquet``; ``dataset_info.features``: ``id`` string, ``image``
image, ``conversations`` list of ``{from, value}`` strings, ``data_source`` string - the same features as its
sibling card ``lmms-lab/LLaVA-NeXT-Data``), how the RSCoVLM reference reads the data
(VisionXLab/RSCoVLM @ c507282 ``training/data/llava_onevision_dataset.py``: records without ``<image>`` get it
prepended when they have an image; text-only records have ``image`` null) and haotian-liu/LLaVA @ 9ad7265
``docs/Finetune_Custom_Data.md`` for the JSON layout.

**parquet** (``--in`` a ``.parquet`` file or a folder: every ``*.parquet`` below it, sorted by path): columns
``id``, ``image`` (Hugging Face ``Image`` feature = a struct ``{bytes: binary, path: string}``, or null),
``conversations``, ``data_source``. Read 64 rows at a time (bounded memory). Each embedded image is written
**once** under ``--images`` with a content-addressed name ``<sha256[:2]>/<sha256>.<ext>`` (the extension from
the bytes' signature: png, jpg, gif, webp, bmp, tif), atomically (a temporary file renamed), so a re-run or a
resumed run finds it there and writes nothing twice; the report counts distinct images (``images_distinct``).
Reading parquet needs ``pyarrow`` (``pip install 'rscovlm[data]'``). A row without ``id`` gets
``<shard stem>/<row>``; ``data_source`` becomes the task.

**JSON / JSON Lines**::

    {"id": "...", "image": "part-000001/x.jpg" | ["a.jpg", "b.jpg"],   # optional (text-only samples)
     "conversations": [{"from": "human", "value": "<image>\\nWhat does the chart show?"},
                       {"from": "gpt", "value": "..."}]}

A record without ``id`` gets ``<file stem>/<index>`` (as VHM). One ``<image>`` token per image marks where each
image goes (none: images first in the first user turn). ``video`` samples are not supported by this framework
and are dropped, counted as ``unsupported: video``. There is no box convention in this data (each subset writes its
own box text), so no text is interpreted as boxes. Cleaning keeps indentation and fenced code untouched (see
rscovlm.data.cleaning).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterator

from rscovlm._optional import require
from rscovlm.data.converters.base import Converter, register_converter
from rscovlm.data.records import Problem, RecordError

SIGNATURES = ((b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF87a", ".gif"), (b"GIF89a", ".gif"),
              (b"BM", ".bmp"), (b"II*\x00", ".tif"), (b"MM\x00*", ".tif"))
COLUMNS = ("id", "image", "conversations", "data_source")


def image_extension(data: bytes) -> str | None:
    """File extension of encoded image bytes from their signature, or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    for sig, ext in SIGNATURES:
        if data.startswith(sig):
            return ext
    return None


def parquet_shards(path: str) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        return sorted(q for q in p.rglob("*.parquet") if q.is_file())
    return [p]


def is_parquet_input(path: str) -> bool:
    p = Path(path)
    return p.suffix == ".parquet" or (p.is_dir() and any(p.rglob("*.parquet")))


@register_converter("llava_onevision")
class LlavaOneVisionConverter(Converter):
    """LLaVA-OneVision parquet shards (embedded images) or LLaVA JSON -> conversations (no box parsing)."""

    output_kind = "conversation"
    summary = "LLaVA-OneVision parquet shards (embedded images) or LLaVA JSON/jsonl -> conversation jsonl"

    def prepare(self) -> None:
        self.parquet = is_parquet_input(self.path)
        self.stem = Path(self.path).stem
        self.digests: set[bytes] = set()
        if not self.parquet:
            return
        self.pq = require("pyarrow.parquet", "data", "reading LLaVA-OneVision parquet shards")
        self.shards = parquet_shards(self.path)
        if not self.shards:
            raise FileNotFoundError(f"no parquet files under {self.path}")
        if self.config.images is None:
            raise ValueError("parquet input: pass --images DIR, the folder the embedded images are written to")
        Path(self.config.images).mkdir(parents=True, exist_ok=True)
        self.rows = [self.pq.ParquetFile(s).metadata.num_rows for s in self.shards]

    # ---- input ----------------------------------------------------------------------------------------------
    def input_fingerprint(self) -> Any:
        if not self.parquet:
            return super().input_fingerprint()
        return [[str(s), s.stat().st_size, s.stat().st_mtime_ns] for s in self.shards]

    def progress_total(self) -> tuple[int | None, str]:
        return (sum(self.rows), "row") if self.parquet else super().progress_total()

    def progress_at(self, cursor: Any) -> int:
        if not self.parquet:
            return super().progress_at(cursor)
        shard, row = cursor
        return sum(self.rows[:shard]) + row

    def iter_input(self, start: Any = None) -> Iterator[tuple[int | None, Any, Any]]:
        if not self.parquet:
            yield from super().iter_input(start)
            return
        shard0, row0 = (0, 0) if start is None else (int(start[0]), int(start[1]))
        for s in range(shard0, len(self.shards)):
            pf = self.pq.ParquetFile(self.shards[s])
            names = set(pf.schema_arrow.names)
            missing = [c for c in ("conversations",) if c not in names]
            if missing:
                raise self.problem(None, "conversations", f"{self.shards[s]}: parquet file has no column "
                                                          f"{missing[0]!r} (columns: {sorted(names)})")
            columns = [c for c in COLUMNS if c in names]
            first = row0 if s == shard0 else 0
            row = 0
            for g in range(pf.metadata.num_row_groups):
                n = pf.metadata.row_group(g).num_rows
                if row + n <= first:
                    row += n
                    continue
                i = row
                for batch in pf.iter_batches(batch_size=64, row_groups=[g], columns=columns):
                    for rec in batch.to_pylist():
                        i += 1
                        if i <= first:
                            continue
                        self._shard = s
                        yield i, rec, [s, i]
                row += n
        self._shard = None

    # ---- records --------------------------------------------------------------------------------------------
    def _where(self, line: int | None) -> str:
        return f"{self._file()}:{line}"

    def _file(self) -> str:
        shard = getattr(self, "_shard", None)
        return str(self.shards[shard]) if self.parquet and shard is not None else self.path

    def problem(self, line: int | None, field: str, message: str) -> RecordError:
        """Parquet rows are named ``shard.parquet:ROW`` (1-based row of the shard, in place of a line)."""
        return RecordError(Problem(self._file(), line, field, message))

    def _embedded_image(self, image: Any, line: int) -> str:
        if not isinstance(image, dict) or not isinstance(image.get("bytes"), (bytes, bytearray)):
            raise self.problem(line, "image", "expected an embedded image {bytes, path}")
        data = bytes(image["bytes"])
        ext = image_extension(data)
        if ext is None:
            raise self.problem(line, "image.bytes", f"the bytes are no known image format (start {data[:8]!r})")
        digest = hashlib.sha256(data).hexdigest()
        rel = f"{digest[:2]}/{digest}{ext}"
        target = Path(self.config.images) / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        key = bytes.fromhex(digest)[:16]
        if key not in self.digests:
            self.digests.add(key)
            self.change("images_distinct")
        return rel

    def resume_record(self, rec: dict) -> None:
        super().resume_record(rec)
        if self.parquet:
            for msg in rec.get("messages", []):
                for part in msg["content"] if isinstance(msg["content"], list) else []:
                    if part.get("type") == "image":
                        self.digests.add(bytes.fromhex(Path(part["image"]).stem)[:16])

    def convert_one(self, raw: Any, line: int) -> dict | None:
        if not isinstance(raw, dict):
            raise self.problem(line, "", "expected a JSON object")
        if "video" in raw and raw["video"] is not None:
            self.report.drop("unsupported: video", self._where(line))
            return None
        rid = raw.get("id")
        if rid is None or rid == "":
            rid = f"{Path(self._file()).stem}/{line - 1 if self.parquet else self.index}"
            self.change("id_from_position")
        elif not isinstance(rid, (str, int)) or isinstance(rid, bool):
            raise self.problem(line, "id", f"expected a string id, got {rid!r}")
        image = raw.get("image")
        if self.parquet:
            images = [] if image is None else [self._embedded_image(image, line)]
        else:
            images = [] if image is None else [image] if isinstance(image, str) else image
            if not isinstance(images, list) or not all(isinstance(p, str) and p for p in images):
                raise self.problem(line, "image", f"expected an image path or a list of paths, got {image!r}")
        turns = self.llava_turns(raw, line)
        messages = self.messages_from_turns(turns, images, line)
        for msg in messages:
            msg["content"] = [dict(p, text=self.clean(p["text"])) if p["type"] == "text" else p
                              for p in msg["content"]]
            msg["content"] = [p for p in msg["content"] if p["type"] != "text" or p["text"]]
            if not msg["content"]:
                raise self.problem(line, "conversations", f"a {msg['role']} turn is empty")
        task = self.config.task or str(raw.get("data_source") or raw.get("task") or "general")
        return {"id": f"{self.name}/{rid}", "source": self.name, "task": task, "messages": messages}
