"""The training data stream: a per-rank, resumable sequence of micro-batches, packed or padded.

The trainer does not let the ``transformers`` Trainer sample, shard or skip data; it reads this stream, whose
position is part of every checkpoint, so a resumed run draws exactly the samples an uninterrupted one draws.

Order. Epoch ``e`` visits the dataset's samples in one global order: a mixture's own order of epoch ``e``
(:class:`rscovlm.data.mixture.MixtureDataset`, items keyed ``(e, position)``); any other dataset in a permutation
drawn from ``numpy.random.default_rng([seed, e])`` (``data.shuffle``) or as it is.

Rows. Without packing every sample is a row. With packing (``train.packing``) the samples' exact token counts are
computed first (:meth:`rscovlm.model.collator.ConversationEncoder.length`: the text tokenized, the image tokens
from the resized sizes, no image decoded; each rank counts a share and the ranks exchange them), samples that
cannot be trained on are dropped and counted (``image_cut``, ``no_target``), and rows of at most ``max_length``
tokens are formed greedily from a look-ahead buffer (:func:`pack_rows`): the oldest waiting sample opens a row,
and the following samples of the buffer, in order, join it while they fit. Rows depend only on the order and the
lengths, so every rank computes the same rows.

Ranks and batches. Rank ``r`` of ``W`` takes rows ``r, r + W, ...`` of the first ``W * (rows // W)`` (at most
``W - 1`` rows of an epoch are left out, as the mixture sampler leaves out trailing positions); its micro-batches
are consecutive groups of ``batch_size`` rows (the last may be smaller, on every rank alike).

State. ``{"epoch", "batch"}`` = the next micro-batch to train on (plus checks: world size, batch size, packing,
and a digest of the epoch's rows, so a checkpoint is not resumed with a different plan). Each batch carries its own
``(epoch, batch)`` in ``rscovlm_stream`` and the trainer records the last one it trained on: prefetching by
DataLoader workers does not move the state.
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np


class StreamStateError(ValueError):
    """A saved stream state that does not fit this run (another world size, batch size or data plan)."""


def pack_rows(lengths: Sequence[int], capacity: int, buffer: int) -> list[list[int]]:
    """Rows of sample indices, each with a total length of at most ``capacity``: samples enter a look-ahead
    buffer of ``buffer`` in order; the oldest opens a row and every later one in the buffer that still fits joins
    it, in buffer order; the row leaves, the buffer refills. Negative lengths mark dropped samples (skipped). A
    sample waits at most ``buffer`` rows; the result depends only on ``lengths``."""
    if capacity < 1 or buffer < 1:
        raise ValueError(f"capacity and buffer must be positive, got {capacity}, {buffer}")
    source = ((i, int(n)) for i, n in enumerate(lengths) if n >= 0)
    pending: deque = deque()
    rows: list[list[int]] = []

    def refill() -> None:
        while len(pending) < buffer:
            try:
                i, n = next(source)
            except StopIteration:
                return
            if n > capacity:
                raise ValueError(f"sample {i} has {n} tokens, more than the row capacity {capacity}")
            pending.append((i, n))

    refill()
    while pending:
        first, room = pending.popleft()
        row = [first]
        room = capacity - room
        if room > 0:
            kept: deque = deque()
            while pending:
                i, n = pending.popleft()
                if n <= room:
                    row.append(i)
                    room -= n
                    if room == 0:
                        break
                else:
                    kept.append((i, n))
            kept.extend(pending)
            pending = kept
        rows.append(row)
        refill()
    return rows


@dataclass
class EpochPlan:
    """The rows of one epoch (all ranks) and this rank's micro-batches of them."""

    epoch: int
    members: np.ndarray  # sample indices (into the epoch's order) row after row
    bounds: np.ndarray  # row r = members[bounds[r]:bounds[r + 1]]
    batches: list[list[list[int]]]  # this rank's micro-batches: rows of sample indices
    dropped: Counter = field(default_factory=Counter)  # this rank's share of the dropped samples
    tokens: int = 0  # tokens in this rank's rows (packing), 0 when not counted

    @property
    def rows(self) -> int:
        return len(self.bounds) - 1

    def digest(self) -> str:
        """SHA-256 (16 hex digits) of the epoch's rows: equal plans, equal digests."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.members, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(self.bounds, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]


class TrainStream:
    """Per-rank micro-batches of ``encoded`` (an :class:`~rscovlm.model.collator.EncodedDataset`) for a run of
    ``total_batches`` micro-batches (None: ``epochs`` epochs, planned up front). See the module docstring.

    ``gather(obj) -> list`` exchanges a picklable object between ranks (``torch.distributed.all_gather_object``):
    each rank counts the tokens of a share of the samples. Without it this process counts them all (one process;
    or a look at another rank's stream). The dropped counts are this rank's share with ``gather``, all without.
    ``progress`` = show a progress bar while counting tokens (rank 0)."""

    def __init__(self, encoded, collator: Callable, *, batch_size: int, seed: int, shuffle: bool = True,
                 packing: bool = False, max_length: int = 6144, buffer: int = 64, rank: int = 0,
                 world_size: int = 1, num_workers: int = 0, epochs: float | None = 1.0,
                 total_batches: int | None = None, gather: Callable | None = None, progress: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} out of range for world size {world_size}")
        self.encoded, self.collator = encoded, collator
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.packing, self.max_length, self.buffer = packing, max_length, buffer
        self.rank, self.world_size, self.num_workers = rank, world_size, num_workers
        self.gather, self.progress = gather, progress
        self.conversations = getattr(encoded, "conversations", encoded)
        self.keyed = callable(getattr(self.conversations, "build", None)) and hasattr(self.conversations, "mixture")
        self._plans: dict[int, EpochPlan] = {}
        self._counts: dict[int, int] = {}  # micro-batches per epoch, kept when a plan is let go
        self.epoch, self.batch = 0, 0  # the next micro-batch to train on
        self.dropped: Counter = Counter()  # samples dropped by the plans made so far (this rank's share)
        if total_batches is None:
            if epochs is None or epochs <= 0:
                raise ValueError("give epochs > 0 or total_batches")
            full = math.floor(epochs)
            counts = [self.batches_in(e) for e in range(math.ceil(epochs))]
            total = sum(counts[:full])
            if epochs > full:
                total += math.ceil((epochs - full) * counts[full])
            self.total_batches = total
        else:
            self.total_batches = int(total_batches)
        if self.total_batches < 1:
            raise ValueError("the training data holds no batch for this rank: fewer rows than ranks")

    # ---- plans ----------------------------------------------------------------------------------------------
    def epoch_order(self, epoch: int) -> np.ndarray:
        """Dataset indices of epoch ``epoch`` in visiting order (a mixture: its positions in order)."""
        n = len(self.encoded)
        if self.keyed or not self.shuffle:
            return np.arange(n, dtype=np.int64)
        return np.random.default_rng([self.seed, epoch]).permutation(n).astype(np.int64)

    def key(self, epoch: int, index: int):
        """The dataset key of sample ``index`` of ``epoch``: ``(epoch, index)`` for a mixture, else ``index``."""
        return (epoch, int(index)) if self.keyed else int(index)

    def plan(self, epoch: int) -> EpochPlan:
        """The (cached) :class:`EpochPlan` of ``epoch``."""
        plan = self._plans.get(epoch)
        if plan is None:
            plan = self._plans[epoch] = self._make_plan(epoch)
            if epoch not in self._counts:  # counted once per epoch, however often it is planned
                self.dropped.update(plan.dropped)
            self._counts[epoch] = len(plan.batches)
            for old in [e for e in self._plans if e < epoch - 1]:
                del self._plans[old]
        return plan

    def batches_in(self, epoch: int) -> int:
        """This rank's micro-batches in ``epoch`` (planned once, remembered after the plan is let go)."""
        if epoch not in self._counts:
            self.plan(epoch)
        return self._counts[epoch]

    def _make_plan(self, epoch: int) -> EpochPlan:
        order = self.epoch_order(epoch)
        dropped: Counter = Counter()
        lengths = None
        if self.packing:
            lengths, dropped = self._lengths(epoch, order)
            rows = pack_rows(lengths, self.max_length, self.buffer)
            members = np.fromiter((order[i] for row in rows for i in row), dtype=np.int64)
            sizes = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
        else:
            members, sizes = order, np.ones(len(order), dtype=np.int64)
        bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        n_rows = len(sizes)
        mine = np.arange(self.rank, (n_rows // self.world_size) * self.world_size, self.world_size)
        rows = [members[bounds[r]:bounds[r + 1]].tolist() for r in mine]
        batches = [rows[i:i + self.batch_size] for i in range(0, len(rows), self.batch_size)]
        tokens = 0
        if lengths is not None:
            where = {int(v): k for k, v in enumerate(order)}
            tokens = int(sum(lengths[where[i]] for row in rows for i in row))
        return EpochPlan(epoch, members, bounds, batches, dropped, tokens)

    def _lengths(self, epoch: int, order: np.ndarray) -> tuple[np.ndarray, Counter]:
        """Token count of every sample of ``order`` (-1: dropped), this rank counting ``order[rank::W]``; and this
        rank's dropped samples by reason."""
        from rscovlm.model.collator import SampleDropped

        # with an exchange each rank counts its share; without one (a single process) this process counts all
        step = self.world_size if self.gather is not None else 1
        share = np.arange(self.rank if self.gather is not None else 0, len(order), step)
        keys = [self.key(epoch, order[i]) for i in share]
        found = _count_lengths(self.encoded, keys, self.num_workers,
                               desc=f"counting tokens of epoch {epoch}" if self.progress else None)
        dropped: Counter = Counter()
        values = []
        for key, value in zip(keys, found):
            if isinstance(value, str):  # a dropped sample: its reason
                if not getattr(self.encoded, "drop", True):
                    raise SampleDropped(value.split(":", 1)[0], f"{self.encoded.describe(key)}: {value}")
                dropped[value.split(":", 1)[0]] += 1
                values.append(-1)
            else:
                values.append(value)
        if self.gather is None:
            return np.asarray(values, dtype=np.int64), dropped
        lengths = np.empty(len(order), dtype=np.int64)
        for rank, part in self.gather((self.rank, values)):
            lengths[np.arange(rank, len(order), self.world_size)] = part
        return lengths, dropped

    # ---- position ------------------------------------------------------------------------------------------
    def locate(self, consumed: int) -> tuple[int, int]:
        """``(epoch, batch)`` of the ``consumed``-th micro-batch of the run (0-based)."""
        epoch, left = 0, consumed
        while True:
            n = self.batches_in(epoch)
            if n == 0:
                raise ValueError(f"epoch {epoch} holds no batch for rank {self.rank}")
            if left < n:
                return epoch, left
            left -= n
            epoch += 1

    def consumed_batches(self) -> int:
        """Micro-batches of the run before the current position."""
        return sum(self.batches_in(e) for e in range(self.epoch)) + self.batch

    def advance(self, epoch: int, batch: int) -> None:
        """Record that micro-batch ``batch`` of ``epoch`` was trained on (the state moves past it)."""
        self.epoch, self.batch = epoch, batch + 1
        if self.batch >= self.batches_in(epoch):  # the next epoch starts (planned when it is read)
            self.epoch, self.batch = epoch + 1, 0

    def state_dict(self) -> dict:
        """What a checkpoint stores: the position and what must match on resume (the digest of the epoch's rows
        when that epoch is planned already; at an epoch's end the next one is not planned just for this)."""
        plan = self._plans.get(self.epoch)
        return {"format": 1, "epoch": self.epoch, "batch": self.batch, "world_size": self.world_size,
                "batch_size": self.batch_size, "packing": self.packing, "max_length": self.max_length,
                "buffer": self.buffer, "seed": self.seed, "rows_sha256": plan.digest() if plan else None}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state`` (:meth:`state_dict` of the interrupted run); raises
        :class:`StreamStateError` when this run's settings or data plan differ. ``{"consumed_batches": n}`` (a
        checkpoint written without a stream state) continues after the run's ``n``-th micro-batch."""
        if "consumed_batches" in state:
            self.epoch, self.batch = self.locate(int(state["consumed_batches"]))
            return
        for key in ("world_size", "batch_size", "packing", "max_length", "buffer", "seed"):
            if key in state and state[key] != getattr(self, key):
                raise StreamStateError(f"the checkpoint's data stream had {key}={state[key]!r}, this run has "
                                       f"{getattr(self, key)!r}: it would not continue with the same samples")
        epoch, batch = int(state["epoch"]), int(state["batch"])
        plan = self.plan(epoch)
        if state.get("rows_sha256") not in (None, plan.digest()):
            raise StreamStateError(f"the rows of epoch {epoch} differ from the checkpoint's (data or config "
                                   "changed since it was written): it would not continue with the same samples")
        if not 0 <= batch <= len(plan.batches):
            raise StreamStateError(f"batch {batch} out of range for epoch {epoch} ({len(plan.batches)} batches)")
        self.epoch, self.batch = epoch, batch

    # ---- iteration -----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.total_batches

    def descriptors(self) -> Iterator[tuple[int, int, list]]:
        """``(epoch, batch, rows of keys)`` from the current position to the end of the run."""
        done = self.consumed_batches()
        epoch, batch = self.epoch, self.batch
        while done < self.total_batches:
            plan = self.plan(epoch)
            if batch >= len(plan.batches):
                epoch, batch = epoch + 1, 0
                continue
            rows = [[self.key(epoch, i) for i in row] for row in plan.batches[batch]]
            yield epoch, batch, rows
            done += 1
            batch += 1

    def __iter__(self) -> Iterator[dict]:
        import torch

        loader = torch.utils.data.DataLoader(
            _BatchItems(self.encoded, self.collator, self.packing), batch_size=None,
            sampler=_Descriptors(self), num_workers=self.num_workers, collate_fn=_identity)
        return iter(loader)


def _identity(x):
    return x


class _Descriptors:
    """The stream's descriptors as a DataLoader sampler (iterated in the main process)."""

    def __init__(self, stream: TrainStream):
        self.stream = stream

    def __iter__(self):
        return self.stream.descriptors()

    def __len__(self) -> int:
        return self.stream.total_batches - self.stream.consumed_batches()


class _BatchItems:
    """Map-style dataset over batch descriptors: encodes and collates one micro-batch (in a DataLoader worker)."""

    def __init__(self, encoded, collator, packing: bool):
        self.encoded, self.collator, self.packing = encoded, collator, packing

    def __getitem__(self, descriptor) -> dict:
        epoch, batch, rows = descriptor
        if self.packing:
            items = [[self.encoded.encode_exact(key) for key in row] for row in rows]
            ids = [[item.pop("sample_id") for item in row] for row in items]
            out = self.collator(items)
        else:
            items = [self.encoded[row[0]] for row in rows]
            ids = [[item.pop("sample_id")] for item in items]
            out = self.collator(items)
        keys = [[list(k) if isinstance(k, tuple) else k for k in row] for row in rows]
        out["rscovlm_stream"] = {"epoch": epoch, "batch": batch, "ids": ids, "keys": keys}
        return out


class _LengthItems:
    def __init__(self, encoded, keys: list):
        self.encoded, self.keys = encoded, keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int):
        from rscovlm.model.collator import SampleDropped

        try:
            return self.encoded.length(self.keys[i])
        except SampleDropped as err:
            return str(err)


def _count_lengths(encoded, keys: list, num_workers: int, desc: str | None = None) -> list:
    """:meth:`EncodedDataset.length` of every key (a dropped sample gives its reason string), ``num_workers``
    DataLoader workers counting in parallel."""
    import torch

    if not keys:
        return []
    loader = torch.utils.data.DataLoader(_LengthItems(encoded, keys), batch_size=64, num_workers=num_workers,
                                         collate_fn=list)
    out: list[Any] = []
    bar = None
    if desc is not None:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(keys), desc=desc, unit="sample", file=sys.stderr, dynamic_ncols=True)
    for chunk in loader:
        out.extend(chunk)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return out
