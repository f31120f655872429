"""PyTorch DataLoader helpers: shard assignment, equal rows per rank, shuffle, resume, collate.

Importing this module does not import torch; :func:`collate` and :func:`node_from_env` do
when they need it. The streams of :func:`sarlang_data.load_dataset` use the planning and
streaming functions here; :func:`collate` is for the user's ``DataLoader``.

How the rows of one split are divided (DESIGN section 6); every step is a pure function of
the manifest's row counts, the seed and the epoch, so every rank computes the same plan:

1. **Order.** The split's shards with at least one row for the config, in manifest order, or
   after ``shuffle(seed=...)`` in an order drawn from ``(seed, epoch)``.
2. **Ranks first.** The shards are dealt to ``world_size`` ranks by row count (largest
   first, each to the rank with the fewest rows so far, ties by the order of step 1), so ranks
   get disjoint shards whose union is the selection and whose row counts differ by less than
   one shard. With fewer shards than ranks, every rank reads every shard and keeps every
   ``world_size``-th row.
3. **Equalize** (optional). Every rank gets exactly the same number of rows: the rank counts
   are known from the manifest, so each rank drops the rows above the smallest count or
   repeats its own first rows up to the largest, whichever touches fewer rows.
4. **Then DataLoader workers.** A rank's shards are dealt to its workers the same way. With
   fewer shards than workers, each worker reads all of the rank's shards and keeps every
   ``num_workers``-th row (logged as a warning): every row still comes exactly once.
5. **Shuffle buffer.** Each worker shuffles its rows through a buffer of ``buffer_size``
   rows: the buffer fills, then each new row takes the place of a row drawn by a
   counter-based hash of ``(seed, epoch, rank, worker, n)``, which is emitted; at the end
   the rest comes out in a drawn order.

Resume is exact. The state of a worker's stream records where its reading stands (shard,
row in shard, rows emitted) and, with shuffling, *which rows sit in the buffer* (as
``[shard, row]`` positions, in slot order) and how many draws were made. Resuming reads the
buffered rows again from their shards (they are at most a few shards back: a row stays in
a buffer of ``B`` rows for about ``B`` more rows), puts them back in their slots, and carries
on from the recorded position with the recorded draw counter: the rows that come out are
exactly those an uninterrupted run would have given, in the same order.
"""

from __future__ import annotations

import hashlib
import io
import logging
import operator
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import ConfigError

log = logging.getLogger(__name__)

#: values of ``equalize``: ``auto`` drops or repeats, whichever touches fewer rows
EQUALIZE_MODES = ("auto", "drop", "repeat")
#: version of the stream state layout
STATE_VERSION = 1
_M64 = (1 << 64) - 1

#: ``read(shard, first_row) -> iterator of (row_in_shard, key, row)``: rows of one shard
ReadShard = Callable[[int, int], Iterator[tuple[int, Any, dict]]]
#: ``read_samples(shard, first_row) -> iterator of (row_in_shard, rows)``: a sample at a time
ReadSamples = Callable[[int, int], Iterator[tuple[int, list]]]


# --------------------------------------------------------------------------- ranks


def node_from_env() -> tuple[int, int] | None:
    """Return ``(rank, world_size)`` of this process, or None when it is the only one.

    ``torch.distributed`` when it is initialised (only looked at when torch is already
    imported), else the ``RANK`` and ``WORLD_SIZE`` environment variables that ``torchrun``
    and most launchers set.

    Returns:
        ``(rank, world_size)`` with ``world_size > 1``, or None.

    Raises:
        ConfigError: ``RANK``/``WORLD_SIZE`` that are not integers, or a rank out of range.

    """
    import sys

    if "torch" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            world = dist.get_world_size()
            return (dist.get_rank(), world) if world > 1 else None
    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    if rank is None or world is None:
        return None
    try:
        r, w = int(rank), int(world)
    except ValueError:
        raise ConfigError(
            f"RANK={rank!r}, WORLD_SIZE={world!r}: not integers; unset them or set them as "
            "torchrun does (RANK=0..WORLD_SIZE-1)"
        ) from None
    return check_node((r, w), "RANK/WORLD_SIZE") if w > 1 else None


def check_node(node: Any, argument: str = "distributed") -> tuple[int, int]:
    """Validate a ``(rank, world_size)`` pair.

    Args:
        node: the pair.
        argument: the argument it came from, for the message.

    Returns:
        The pair as ints.

    Raises:
        ConfigError: not two integers with ``0 <= rank < world_size``.

    """
    try:
        rank, world = (int(v) for v in node)
    except (TypeError, ValueError):
        raise ConfigError(f"{argument}={node!r}: expected (rank, world_size), e.g. (0, 2)") \
            from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"{argument}={node!r}: rank must be in 0..world_size-1 and "
                          "world_size >= 1; pass e.g. (0, 2)")
    return rank, world


def check_equalize(equalize: Any) -> str | None:
    """Normalise ``equalize``: False/None -> None, True -> ``"auto"``, else a mode name.

    Raises:
        ConfigError: an unknown mode.

    """
    if equalize is None or equalize is False:
        return None
    if equalize is True:
        return "auto"
    if equalize not in EQUALIZE_MODES:
        from .errors import unknown_name

        raise unknown_name("equalize mode", str(equalize), EQUALIZE_MODES, "equalize")
    return equalize


# --------------------------------------------------------------------------- hashing


def _mix(x: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit hash of a 64-bit integer."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def stream_key(*parts: Any) -> int:
    """Return a 64-bit key for a tuple of ints and strings, the same in every process."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def permutation(n: int, key: int) -> list[int]:
    """Return a permutation of ``range(n)`` drawn from ``key`` (Fisher-Yates, hashed draws)."""
    out = list(range(n))
    for i in range(n - 1, 0, -1):
        j = _mix((key + i) & _M64) % (i + 1)
        out[i], out[j] = out[j], out[i]
    return out


# --------------------------------------------------------------------------- assignment


def balanced_bins(weights: Sequence[int], n_bins: int) -> list[list[int]]:
    """Deal items to bins so that the bins' total weights are as even as a greedy deal gets.

    Items go largest first (ties by index) to the bin with the smallest total so far (ties by
    bin index): the largest bin exceeds the average by less than the largest item, and by
    at most a third of the best possible maximum.

    Args:
        weights: weight of each item (row counts).
        n_bins: number of bins (>= 1).

    Returns:
        ``n_bins`` lists of item indices, each in ascending order (so a bin keeps the order
        the items were given in).

    """
    import heapq

    bins: list[list[int]] = [[] for _ in range(n_bins)]
    heap = [(0, b) for b in range(n_bins)]
    for i in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
        load, b = heapq.heappop(heap)
        bins[b].append(i)
        heapq.heappush(heap, (load + weights[i], b))
    return [sorted(b) for b in bins]


@dataclass(frozen=True)
class Part:
    """The rows one reader (a rank, or a worker of a rank) reads.

    Attributes:
        shards: indices into the split's shard list, in reading order.
        rows: rows of one pass over the part (from the manifest's counts).
        step: keep the ``r``-th row of the part's row stream when ``r % step == offset``
            (``step`` > 1 when there were fewer shards than readers).
        offset: see ``step``.
        target: with equalize: exactly this many rows are yielded, cutting the stream or
            repeating it from its start. None yields one pass.
        fallback: True when this part was made by splitting rows instead of shards.

    """

    shards: tuple[int, ...]
    rows: int
    step: int = 1
    offset: int = 0
    target: int | None = None
    fallback: bool = False

    @property
    def yields(self) -> int:
        """Rows this part yields (``target`` when set, else ``rows``)."""
        return self.rows if self.target is None else self.target

    def fingerprint(self) -> str:
        """Return a short string identifying the part (checked when a state is loaded)."""
        return hashlib.blake2b(repr((self.shards, self.step, self.offset, self.target))
                               .encode(), digest_size=6).hexdigest()


def whole(counts: Sequence[int], order: Sequence[int] | None = None) -> Part:
    """Return the part of every shard with rows, in ``order`` (default: list order).

    Args:
        counts: rows per shard of the split, in manifest order.
        order: reading order of the shard indices (a permutation of ``range(len(counts))``).

    Returns:
        The part.

    """
    order = range(len(counts)) if order is None else order
    shards = tuple(i for i in order if counts[i] > 0)
    return Part(shards, sum(counts[i] for i in shards))


def split(part: Part, counts: Sequence[int], n: int, i: int) -> Part:
    """Return reader ``i``'s part when ``part`` is divided among ``n`` readers.

    Whole shards, balanced by rows (:func:`balanced_bins`, ties by reading order), when the
    part has at least ``n`` shards and was not itself split by rows; otherwise every ``n``-th
    row (``fallback``). A ``target`` is divided in proportion to the readers' rows.

    Args:
        part: the part to divide.
        counts: rows per shard of the split.
        n: number of readers (>= 1).
        i: this reader (``0 <= i < n``).

    Returns:
        Reader ``i``'s part; the parts of ``i = 0..n-1`` are disjoint and together are
        ``part``.

    """
    if n == 1:
        return part
    if part.step == 1 and len(part.shards) >= n:
        weights = [counts[s] for s in part.shards]
        bins = balanced_bins(weights, n)
        parts = [Part(tuple(part.shards[j] for j in b), sum(weights[j] for j in b))
                 for b in bins]
    else:
        total = sum(counts[s] for s in part.shards)
        parts = []
        for k in range(n):
            step, offset = part.step * n, part.offset + part.step * k
            parts.append(Part(part.shards, len(range(offset, total, step)), step, offset,
                              fallback=True))
    if part.target is not None:
        targets = apportion(part.target, [p.rows for p in parts])
        parts = [replace(p, target=t) for p, t in zip(parts, targets, strict=True)]
    return parts[i]


def apportion(target: int, rows: Sequence[int]) -> list[int]:
    """Divide ``target`` rows among readers in proportion to the rows they have.

    Largest remainders, ties to the lower index; a reader with no rows gets none. When
    ``target`` is below ``sum(rows)`` no reader gets more than it has; above, none gets less.

    Raises:
        ConfigError: ``target > 0`` but no reader has any row.

    """
    total = sum(rows)
    if total == 0:
        if target:
            raise ConfigError(f"equalize: {target} rows are wanted but this rank has none to "
                              "repeat; use fewer ranks or a larger selection")
        return [0] * len(rows)
    out = [r * target // total for r in rows]
    rest = target - sum(out)
    by_fraction = sorted(range(len(rows)), key=lambda k: (-(rows[k] * target % total), k))
    for k in by_fraction[:rest]:
        out[k] += 1
    return out


@dataclass(frozen=True)
class Equalized:
    """What equalize did to the ranks of one epoch.

    Attributes:
        target: rows every rank yields.
        rows: rows each rank has before equalizing.
        dropped: rows dropped in all (ranks above ``target``).
        repeated: rows repeated in all (ranks below ``target``).

    """

    target: int
    rows: tuple[int, ...]
    dropped: int
    repeated: int

    def describe(self) -> str:
        """One line for the log."""
        change = (f"{self.dropped} rows dropped" if self.dropped else
                  f"{self.repeated} rows repeated" if self.repeated else "nothing changed")
        return (f"equalize: every rank yields {self.target} rows ({change}; rows per rank "
                f"before: {list(self.rows)})")


def node_part(counts: Sequence[int], order: Sequence[int] | None, node: tuple[int, int] | None,
              equalize: str | None = None) -> tuple[Part, Equalized | None]:
    """Return this rank's part of a split, and what equalize did.

    Args:
        counts: rows per shard of the split, in manifest order.
        order: reading order of the shards (None: manifest order).
        node: ``(rank, world_size)``, or None for a single process.
        equalize: None, ``auto``, ``drop`` or ``repeat``.

    Returns:
        ``(part, equalized)``; ``equalized`` is None without equalize or a single rank.

    Raises:
        ConfigError: equalize asked for rows a rank does not have (fewer rows than ranks).

    """
    base = whole(counts, order)
    if node is None or node[1] == 1:
        return base, None
    rank, world = node
    parts = [split(base, counts, world, r) for r in range(world)]
    if equalize is None:
        return parts[rank], None
    rows = [p.rows for p in parts]
    lo, hi, total = min(rows), max(rows), sum(rows)
    drop, repeat = total - world * lo, world * hi - total
    if equalize == "drop" or (equalize == "auto" and drop <= repeat):
        target = lo
    else:
        target = hi
    if lo == 0:
        empty = rows.index(0)
        raise ConfigError(
            f"equalize={equalize!r}: rank {empty} of {world} has no rows ({total} rows in the "
            "selection), so ranks cannot be made equal; use fewer ranks or a larger selection"
        )
    eq = Equalized(target, tuple(rows), total - world * target if target == lo else 0,
                   world * target - total if target != lo else 0)
    return replace(parts[rank], target=target), eq


# --------------------------------------------------------------------------- streams


def fresh_state(part: Part) -> dict[str, Any]:
    """Return the state of a stream of ``part`` that has not started.

    Keys: ``version``, ``part`` (fingerprint), ``lap`` (passes completed, for repeats),
    ``j`` (shard index within the part), ``k`` (next row of that shard), ``r`` (rows of the
    pass read so far, for row splitting), ``p`` (rows the part yielded), ``buffer`` (the
    ``[j, k]`` of each buffered row, in slot order), ``n`` (shuffle draws made), ``drain``
    (whether the source is exhausted and the buffer is being emptied).
    """
    # the buffer starts as a tuple: datasets' generic state merge copies a list only as far
    # as the fresh state's list goes (not at all, when it is empty), anything else whole
    return {"version": STATE_VERSION, "part": part.fingerprint(), "lap": 0, "j": 0, "k": 0,
            "r": 0, "p": 0, "buffer": (), "n": 0, "drain": False}


def check_state(state: Mapping[str, Any], part: Part) -> None:
    """Raise ConfigError when a loaded state belongs to another plan.

    A state is only valid for the same selection, seed, epoch, rank and worker count: a
    different plan would resume other shards at the recorded positions.
    """
    if state.get("version") != STATE_VERSION or state.get("part") != part.fingerprint():
        raise ConfigError(
            "load_state_dict(): the state was saved by a stream with other shards, seed, rank "
            "or number of DataLoader workers than this one; resume with the same config, "
            "filters, shuffle seed, world size and num_workers"
        )


def iter_part(part: Part, read: ReadShard, state: dict[str, Any]
              ) -> Iterator[tuple[tuple[int, int], Any, dict]]:
    """Yield ``((j, k), key, row)`` of a part from the position in ``state``.

    ``state`` (see :func:`fresh_state`) is updated before each yield, so a copy taken
    between two rows resumes after the last one. With a ``target``, the stream is cut there,
    or read again from its start (``lap``) until it is reached.

    Raises:
        ConfigError: a target above zero but the part yields no row at all.

    """
    target, step, offset = part.target, part.step, part.offset
    shards = part.shards
    while True:
        if target is not None and state["p"] >= target:
            return
        while state["j"] < len(shards):
            j = state["j"]
            for k, key, row in read(shards[j], state["k"]):
                r = state["r"]
                state["k"], state["r"] = k + 1, r + 1
                if r % step != offset:
                    continue
                if target is not None and state["p"] >= target:
                    return
                state["p"] += 1
                yield (j, k), key, row
            state["j"], state["k"] = j + 1, 0
        if target is None or state["p"] >= target:
            return
        if state["p"] == 0:
            raise ConfigError(f"equalize: {target} rows are wanted but this reader's shards "
                              "gave none to repeat; use fewer ranks or a larger selection")
        state["lap"] += 1
        state["j"] = state["k"] = state["r"] = 0


def fetch(part: Part, read: ReadShard, positions: Sequence[Sequence[int]]
          ) -> dict[tuple[int, int], tuple[Any, dict]]:
    """Read the rows at ``[j, k]`` positions of a part again (for a resumed buffer).

    Each shard involved is read from its first wanted row up to its last one.
    """
    wanted: dict[int, set[int]] = {}
    for j, k in positions:
        wanted.setdefault(j, set()).add(k)
    out: dict[tuple[int, int], tuple[Any, dict]] = {}
    for j in sorted(wanted):
        ks = wanted[j]
        last = max(ks)
        rows = read(part.shards[j], min(ks))
        for k, key, row in rows:
            if k in ks:
                out[(j, k)] = (key, row)
            if k >= last:
                break
        close = getattr(rows, "close", None)
        if close is not None:
            close()
        missing = ks - {k for jj, k in out if jj == j}
        if missing:
            raise ConfigError(
                f"load_state_dict(): rows {sorted(missing)[:5]} of shard {part.shards[j]} are "
                "gone; the shards changed since the state was saved; start the epoch again"
            )
    return out


def iter_shuffled(part: Part, read: ReadShard, state: dict[str, Any], buffer_size: int,
                  key: int) -> Iterator[tuple[Any, dict]]:
    """Yield ``(key, row)`` of a part through a seeded shuffle buffer, resumable exactly.

    The first ``buffer_size`` rows fill the buffer; then each row read replaces the buffered
    row in slot ``hash(key, n) % buffer_size``, which is yielded (``n`` counts the draws);
    when the part is exhausted the rest is yielded in a drawn order. ``state`` records the
    read position, the positions of the buffered rows in slot order, ``n`` and whether the
    buffer is draining; a stream started from a copy of it yields exactly the rows that
    would have followed.

    Args:
        part: the rows to shuffle.
        read: reads the rows of one shard from a row on.
        state: stream state (see :func:`fresh_state`), updated before each yield.
        buffer_size: rows held (>= 1).
        key: the stream's random key (seed, epoch, rank, worker).

    Yields:
        ``(key, row)`` pairs.

    """
    slots: list = [list(p) for p in state["buffer"]]
    state["buffer"] = slots
    items: list = []
    if slots:  # a resumed stream: read the buffered rows again, into their slots
        again = fetch(part, read, slots)
        # a copy per slot: a repeated row may sit in two slots
        items = [(again[(j, k)][0], dict(again[(j, k)][1])) for j, k in slots]
    if not state["drain"]:
        for pos, row_key, row in iter_part(part, read, state):
            if len(items) < buffer_size:
                items.append((row_key, row))
                slots.append(list(pos))
                continue
            i = _mix((key + state["n"]) & _M64) % buffer_size
            state["n"] += 1
            out = items[i]
            items[i] = (row_key, row)
            slots[i] = list(pos)
            yield out
        # the source is exhausted: the rest goes out in a drawn order, popped from the end
        order = permutation(len(items), (key ^ 0x5DEECE66D) + state["n"])
        items[:] = [items[i] for i in order]
        slots[:] = [slots[i] for i in order]
        state["drain"] = True
    while items:
        out = items.pop()
        slots.pop()
        yield out


def _iter_plain(part: Part, read: ReadShard, state: dict[str, Any],
                read_samples: ReadSamples | None = None) -> Iterator[tuple[Any, dict]]:
    """Yield ``(key, row)`` as :func:`iter_part` for a part of step 1 and no target.

    Every row read is kept then, so ``r`` and ``p`` advance with ``k`` inside a shard and
    each is written from a base instead of read back: per row this is the whole bookkeeping
    of the stream, and one generator layer less (no ``(j, k)`` position is made). With
    ``read_samples`` the rows come a sample's list at a time, which saves the reader's own
    generator layer and a tuple per row; keys are then ``(shard, k)``.
    """
    shards = part.shards
    while state["j"] < len(shards):
        j, start = state["j"], state["k"]
        r0, p0 = state["r"] - start, state["p"] - start
        if read_samples is None:
            for k, row_key, row in read(shards[j], start):
                k += 1
                state["k"], state["r"], state["p"] = k, r0 + k, p0 + k
                yield row_key, row
        else:
            shard = shards[j]
            for k, made in read_samples(shard, start):
                # n is the next row's k: the state is exact between any two rows
                for n, row in enumerate(made, k + 1):
                    state["k"], state["r"], state["p"] = n, r0 + n, p0 + n
                    yield (shard, n - 1), row
        state["j"], state["k"] = j + 1, 0


class SampleCursor:
    """Where a stream read a sample at a time stands, so its state is exact between any rows.

    :func:`iter_plain_samples` sets the stream state to the position after a whole sample
    and keeps that sample's row iterator here; :meth:`position` takes off the rows not yet
    taken from it. The state is then written once per sample instead of once per row, and
    rows can be handed out by C-level iterators (``itertools.chain``).

    Attributes:
        state: the stream state (see :func:`fresh_state`), as of the end of the current sample.
        rows: the current sample's row iterator (a list iterator).

    """

    __slots__ = ("rows", "state")

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.rows: Iterator[dict] = iter(())

    def position(self) -> dict[str, Any]:
        """Return a copy of the state as of the last row taken (what :func:`iter_part` keeps)."""
        out = dict(self.state)
        left = operator.length_hint(self.rows)
        if left:  # rows of a plain part: k, r and p all count each of them
            out["k"] -= left
            out["r"] -= left
            out["p"] -= left
        return out


def iter_plain_samples(part: Part, read_samples: ReadSamples, cursor: SampleCursor
                       ) -> Iterator[Iterator[dict]]:
    """Yield an iterator over each sample's rows of a part of step 1 and no target.

    The rows, chained, are those of :func:`iter_rows` unshuffled (keys left out); the state
    as of the last row taken is ``cursor.position()`` (``cursor.state`` is updated per sample).

    Raises:
        ConfigError: ``cursor.state`` belongs to another plan (raised at the first step).

    """
    state = cursor.state
    check_state(state, part)
    shards = part.shards
    while state["j"] < len(shards):
        j, start = state["j"], state["k"]
        r0, p0 = state["r"] - start, state["p"] - start
        for k, made in read_samples(shards[j], start):
            n = k + len(made)
            state["k"], state["r"], state["p"] = n, r0 + n, p0 + n
            cursor.rows = rows = iter(made)
            yield rows
        state["j"], state["k"] = j + 1, 0


def iter_rows(part: Part, read: ReadShard, state: dict[str, Any], *, shuffle_key: int | None,
              buffer_size: int, read_samples: ReadSamples | None = None
              ) -> Iterator[tuple[Any, dict]]:
    """Return the ``(key, row)`` of a part, shuffled through a buffer when ``shuffle_key`` is set.

    See :func:`iter_part` and :func:`iter_shuffled`; ``state`` is checked against the part
    and updated as rows are yielded. ``read_samples(shard, start)``, when given, yields
    ``(k, rows)``: the rows of one sample from row ``k`` of the shard on (``k >= start``),
    the same rows as ``read`` with keys ``(shard, k)``; unshuffled streams of one pass
    read through it, a sample at a time.

    Raises:
        ConfigError: ``state`` belongs to another plan (raised here, before any row).

    """
    check_state(state, part)
    if shuffle_key is not None and buffer_size > 1:
        return iter_shuffled(part, read, state, buffer_size, shuffle_key)
    if part.step == 1 and part.target is None:
        return _iter_plain(part, read, state, read_samples)
    return ((row_key, row) for _, row_key, row in iter_part(part, read, state))


# --------------------------------------------------------------------------- collate


@dataclass
class ResizeNormalize:
    """An ``image_transform`` for :func:`collate`: resize, scale to [0, 1], normalise.

    Attributes:
        size: ``(width, height)`` or one side for a square, in pixels.
        mean: per-channel mean to subtract after scaling (None: no normalisation).
        std: per-channel standard deviation to divide by.
        mode: Pillow mode to convert to first (``"L"`` for one channel, ``"RGB"`` for three
            as most vision encoders want), or None to keep the image's own.

    """

    size: int | tuple[int, int]
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    mode: str | None = None
    _resample: int = field(default=2, repr=False)  # PIL.Image.BILINEAR

    def __call__(self, image: Any) -> Any:
        """Return the image as a float32 ``C x H x W`` tensor."""
        import numpy as np
        import torch

        if self.mode is not None and image.mode != self.mode:
            image = image.convert(self.mode)
        size = (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)
        if image.size != size:
            image = image.resize(size, self._resample)
        tensor = _to_tensor(_chw(np.asarray(image))).float().div_(255.0)
        if self.mean is not None:
            mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
            std = torch.tensor(self.std or [1.0] * len(self.mean),
                               dtype=torch.float32).view(-1, 1, 1)
            tensor = (tensor - mean) / std
        return tensor


def _to_tensor(chw: Any) -> Any:
    """``C x H x W`` array (any strides) -> a tensor of a C-contiguous copy, same dtype."""
    import numpy as np
    import torch

    return torch.from_numpy(np.array(chw, order="C", copy=True))


def _as_pil(value: Any) -> Any:
    from PIL import Image

    if isinstance(value, Image.Image):
        return value
    if isinstance(value, Mapping):  # decode=False rows: {"bytes", "path"}
        from . import codec  # noqa: F401 - registers the pixel-member plugin with Pillow

        image = Image.open(io.BytesIO(value["bytes"]))
        image.load()
        return image
    raise TypeError(f"collate: cannot make an image of a {type(value).__name__}; rows hold "
                    "PIL images (decode=True) or {'bytes', 'path'} dicts (decode=False)")


def _pixels(value: Any, image_transform: Callable[[Any], Any] | None) -> Any:
    """One image of a row as a ``C x H x W`` numpy array (possibly a strided view) or tensor."""
    import numpy as np
    import torch

    if isinstance(value, Mapping) and value.get("bytes") is not None:
        from . import codec

        if codec.is_member(value["bytes"]):
            # pixel members (image_codec zstd, decode=False) go straight to an array: no
            # PIL round trip, no PNG anywhere
            value = codec.decode_array(value["bytes"])
    if isinstance(value, np.ndarray) and image_transform is None:
        return _chw(value)
    image = _as_pil(value) if not isinstance(value, np.ndarray) else value
    if image_transform is not None:
        from PIL import Image

        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        image = image_transform(image)
    if isinstance(image, torch.Tensor):
        return image
    return _chw(image if isinstance(image, np.ndarray) else _array_of(image))


#: Pillow modes whose Arrow export (Pillow >= 11.2) reads as numpy does: bands kept
_ARROW_BANDS = {"L": 1, "RGB": 3, "RGBA": 4}


def _array_of(image: Any) -> Any:
    """Return a PIL image's pixels as a numpy array, without copying them where Pillow can.

    ``np.asarray(image)`` copies every pixel (``Image.tobytes``); Pillow's Arrow export hands
    out its own memory, read through pyarrow, for single-block images of the common modes.
    The array keeps the image's memory alive; collate copies it into the batch at once.
    """
    import numpy as np

    bands = _ARROW_BANDS.get(image.mode)
    if bands is not None and hasattr(image, "__arrow_c_array__"):
        import pyarrow as pa  # a dependency of datasets

        try:
            flat = pa.array(image)
            width, height = image.size
            if bands == 1:
                return flat.to_numpy(zero_copy_only=True).reshape(height, width)
            # RGB and RGBA are stored as 4 bytes a pixel
            return flat.flatten().to_numpy(zero_copy_only=True).reshape(
                height, width, 4)[..., :bands]
        except (ValueError, TypeError, pa.ArrowException):
            pass  # e.g. "Image rows are not contiguous in memory" (large images): copy
    return np.asarray(image)


def _chw(array: Any) -> Any:
    """``H x W`` or ``H x W x C`` array -> a ``C x H x W`` view of it (no copy)."""
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def image_tensor(value: Any, image_transform: Callable[[Any], Any] | None = None) -> Any:
    """Turn one image of a row into a tensor.

    Args:
        value: a PIL image, a ``{"bytes", "path"}`` dict or a numpy array.
        image_transform: called with the PIL image; may return a tensor, a numpy array or a
            PIL image. None keeps the pixels as they are.

    Returns:
        A ``C x H x W`` tensor: uint8 (or the image's own dtype) without a transform.

    """
    import torch

    pixels = _pixels(value, image_transform)
    return pixels if isinstance(pixels, torch.Tensor) else _to_tensor(pixels)


def _torch_dtype(dtype: Any) -> Any:
    """Return the torch dtype of a numpy dtype (a torch dtype as it is)."""
    import numpy as np
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    return torch.from_numpy(np.empty(0, dtype=dtype)).dtype


#: Batches of fewer pixel bytes than this cross from a DataLoader worker pickled through its
#: pipe; larger ones in shared memory. Handing over shared memory passes a file descriptor
#: through a socket with an authentication handshake, per batch: a fixed cost of milliseconds
#: that piping a few megabytes undercuts (``bench/bench_read.py``, 64 px against 512 px).
PIPE_BYTES = 2 << 20


def _new_buffer(numel: int, dtype: Any) -> Any:
    """Return a 1-D tensor for a batch's pixels.

    Inside a DataLoader worker, a batch of :data:`PIPE_BYTES` or more is allocated in
    shared memory, as torch's own ``default_collate`` does: it then crosses to the main
    process as one file descriptor, without the copy into fresh shared memory that pickling
    an ordinary tensor makes. Smaller ones are ordinary memory, pickled by value
    (:func:`_by_value`).
    """
    import torch

    empty = torch.empty(0, dtype=dtype)
    if worker_info() is not None and numel * empty.element_size() >= PIPE_BYTES:
        try:
            storage = empty._typed_storage()._new_shared(numel, device=empty.device)
            return empty.new(storage)[:numel]
        except (AttributeError, RuntimeError):  # pragma: no cover - private API moved
            pass
    return torch.empty(numel, dtype=dtype)


_PIPED: Any = None  # the tensor subclass of _by_value, made on first use (torch is lazy)


def _by_value(tensor: Any) -> Any:
    """In a DataLoader worker, make a small batch tensor pickle as its bytes.

    torch pickles every tensor a worker sends by moving it into shared memory; this
    subclass (a tensor in every other respect) pickles as dtype, shape and bytes instead,
    and the main process gets a plain tensor. Outside workers, and for tensors in shared
    memory, the tensor is returned as it is.
    """
    global _PIPED
    if worker_info() is None or tensor.is_shared():
        return tensor
    if _PIPED is None:
        import torch

        class PipedTensor(torch.Tensor):
            # results of operations on it are plain tensors (pickled the usual way)
            __torch_function__ = torch._C._disabled_torch_function_impl

            def __reduce_ex__(self, protocol: int) -> tuple:
                return _tensor_from_bytes, _tensor_bytes(self)

        _PIPED = PipedTensor
    return tensor.as_subclass(_PIPED)


def _tensor_bytes(tensor: Any) -> tuple[bytes, str, tuple[int, ...]]:
    import torch

    plain = tensor.as_subclass(torch.Tensor).contiguous()
    return plain.numpy().tobytes(), str(plain.dtype).rpartition(".")[2], tuple(plain.shape)


def _tensor_from_bytes(data: bytes, dtype: str, shape: tuple[int, ...]) -> Any:
    """Rebuild a tensor pickled by :func:`_by_value` (writable: it owns a copy)."""
    import torch

    return torch.frombuffer(bytearray(data), dtype=getattr(torch, dtype)).view(shape)


def _pack(images: list, slots: list[int], stack: bool = True) -> Any:
    """Copy distinct images into one buffer; ``slots[i]`` names the image of batch row i.

    Returns:
        A ``B x C x H x W`` tensor when all share one shape and dtype (and ``stack``); else
        an :class:`ImageList` of views of one buffer (or a plain list when dtypes differ).

    """
    import math

    import torch

    kinds = {(isinstance(p, torch.Tensor), p.dtype) for p in images}
    if len(kinds) != 1:
        tensors = [p if isinstance(p, torch.Tensor) else _to_tensor(p) for p in images]
        return [tensors[s] for s in slots]
    ((tensors, dtype),) = kinds
    dtype = _torch_dtype(dtype)
    shapes = [tuple(p.shape) for p in images]
    sizes = [math.prod(shape) for shape in shapes]
    first = shapes[0]
    if stack and shapes.count(first) == len(shapes):
        out = _new_buffer(sizes[0] * len(slots), dtype).view(len(slots), *first)
        into = out if tensors else out.numpy()
        for row, slot in enumerate(slots):
            into[row] = images[slot]
        return _by_value(out)
    buffer = _new_buffer(sum(sizes), dtype)
    into = buffer if tensors else buffer.numpy()
    offsets, at = [], 0
    for pixels, shape, size in zip(images, shapes, sizes, strict=True):
        into[at:at + size].reshape(shape)[...] = pixels
        offsets.append(at)
        at += size
    views = [part.view(shape) for part, shape in
             zip(torch.split(buffer, sizes), shapes, strict=True)]
    return _image_list(buffer, [(offsets[s], shapes[s]) for s in slots],
                       [views[s] for s in slots])


class ImageList(list):
    """A batch's images of differing shapes: ``C x H x W`` tensors viewing one buffer.

    A plain ``list`` to its users. Pickled (as a DataLoader worker hands a batch to the main
    process) it sends the one buffer and the shapes, not a tensor per image: one file
    descriptor per batch for a buffer in shared memory instead of one per image, or the
    buffer's bytes for a small one (:data:`PIPE_BYTES`). Once its items are replaced it
    pickles as the list it has become.
    """

    _buffer: Any = None
    _layout: tuple = ()
    _views: tuple = ()

    def _intact(self) -> bool:
        return (self._buffer is not None and len(self) == len(self._views)
                and all(a is b for a, b in zip(self, self._views, strict=True)))

    def __reduce__(self) -> tuple:  # noqa: D105
        if not self._intact():
            return ImageList, (list(self),)
        if self._buffer.is_shared():
            return _image_list, (self._buffer, list(self._layout))
        return _image_list_from_bytes, (*_tensor_bytes(self._buffer), list(self._layout))

    def pin_memory(self, device: Any = None) -> ImageList:
        """Pin the buffer once (``DataLoader(pin_memory=True)`` calls this)."""
        if self._intact():
            pinned = self._buffer.pin_memory() if device is None else self._buffer.pin_memory(
                device)
            return _image_list(pinned, list(self._layout))
        return ImageList(t.pin_memory() for t in self)


class _ImageRows(list):
    """The ``images`` column of a ``chat`` batch: a list per row of tensors viewing one buffer.

    Pickled, it sends that buffer (an :class:`ImageList`) once and the rows' lengths; once
    its rows are changed it pickles as the lists it holds.
    """

    _flat: ImageList | None = None
    _lengths: tuple = ()

    def _intact(self) -> bool:
        if self._flat is None or not self._flat._intact() or len(self) != len(self._lengths):
            return False
        items = iter(self._flat)
        return all(type(row) is list and len(row) == n and all(t is next(items) for t in row)
                   for row, n in zip(self, self._lengths, strict=True))

    def __reduce__(self) -> tuple:  # noqa: D105
        if self._intact():
            return _image_rows, (self._flat, self._lengths)
        return _ImageRows, ([list(row) for row in self],)

    def pin_memory(self, device: Any = None) -> _ImageRows:
        """Pin the buffer once (``DataLoader(pin_memory=True)`` calls this)."""
        if self._intact():
            return _image_rows(self._flat.pin_memory(device), self._lengths)
        return _ImageRows([[t.pin_memory() for t in row] for row in self])


def _image_rows(flat: Any, lengths: Sequence[int]) -> _ImageRows:
    """Split the images of a batch (an :class:`ImageList` or a list) into its rows."""
    rows, at = [], 0
    for n in lengths:
        rows.append(list(flat[at:at + n]))
        at += n
    out = _ImageRows(rows)
    if isinstance(flat, ImageList):
        out._flat, out._lengths = flat, tuple(lengths)
    return out


def _image_list_from_bytes(data: bytes, dtype: str, shape: tuple[int, ...],
                           layout: list[tuple[int, tuple[int, ...]]]) -> ImageList:
    return _image_list(_tensor_from_bytes(data, dtype, shape), layout)


def _image_list(buffer: Any, layout: list[tuple[int, tuple[int, ...]]],
                items: list | None = None) -> ImageList:
    """Make views of ``buffer``: one per ``(offset, shape)``; equal entries share one view.

    ``items``: those views when the caller has made them already.
    """
    import math

    if items is None:
        views: dict[int, Any] = {}
        items = []
        for offset, shape in layout:
            view = views.get(offset)
            if view is None:
                view = views[offset] = buffer[offset:offset + math.prod(shape)].view(*shape)
            items.append(view)
    out = ImageList(items)
    out._buffer, out._layout, out._views = buffer, tuple(layout), tuple(items)
    return out


def collate(batch: Sequence[Mapping[str, Any]],
            image_transform: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """Batch rows of any config for vision-language training.

    - ``image``: each image becomes a ``C x H x W`` tensor (uint8 pixels as stored:
      ``1 x H x W`` for the grayscale SAR images, ``3 x H x W`` for RGB), through
      ``image_transform`` when given (e.g. :class:`ResizeNormalize` or a torchvision
      transform). Stacked into ``B x C x H x W`` when all have one shape and dtype, else an
      :class:`ImageList` (a list) of tensors that view one buffer. Either way a batch's
      pixels are copied once, and leave a DataLoader worker as one tensor: in shared memory
      from :data:`PIPE_BYTES`, pickled through the worker's pipe below. Rows of one sample
      share its image, converted once per batch (without a transform or with
      :class:`ResizeNormalize`; other transforms may be random and run per row).
    - ``images`` (the ``chat`` config): a list per row of such tensors, all viewing one
      buffer that crosses from a worker as one tensor.
    - ``gsd_m``: a float64 tensor.
    - everything else (texts, keys, cities, bboxes, captions, qa, messages) as a list of
      the rows' values, in batch order.

    Use it as ``DataLoader(ds, batch_size=32, collate_fn=collate)``, or with a transform as
    ``collate_fn=functools.partial(collate, image_transform=ResizeNormalize(448))``.

    Args:
        batch: rows as ``load_dataset`` yields them (decoded or not).
        image_transform: called on each PIL image before it becomes a tensor.

    Returns:
        A dict with the rows' columns.

    Raises:
        TypeError: an image value that is neither an image, bytes nor an array.

    """
    import torch

    if not batch:
        return {}
    out: dict[str, Any] = {}
    for column in batch[0]:
        values = [row[column] for row in batch]
        if column == "image":
            # rows of one sample (several per image in the text configs) share one image:
            # convert it once per batch, unless the transform may be random
            same = image_transform is None or isinstance(image_transform, ResizeNormalize)
            seen: dict[Any, int] = {}
            images: list = []
            slots: list[int] = []
            for row, value in zip(batch, values, strict=True):
                key = row.get("key") if same else None
                slot = seen.get(key) if key is not None else None
                if slot is None:
                    slot = len(images)
                    images.append(_pixels(value, image_transform))
                    if key is not None:
                        seen[key] = slot
                slots.append(slot)
            out[column] = _pack(images, slots)
        elif column == "images":
            # every image of the batch in one buffer, then a list of views per row
            pixels = [_pixels(v, image_transform) for vs in values for v in vs]
            flat = _pack(pixels, list(range(len(pixels))), stack=False) if pixels else []
            out[column] = _image_rows(flat, [len(vs) for vs in values])
        elif column == "gsd_m":
            out[column] = torch.tensor(values, dtype=torch.float64)
        else:
            out[column] = values
    return out


def worker_info() -> tuple[int, int] | None:
    """Return ``(worker_id, num_workers)`` inside a DataLoader worker, else None.

    Looks only when torch is already imported (a DataLoader worker always has it).
    """
    import sys

    if "torch" not in sys.modules:
        return None
    import torch.utils.data

    info = torch.utils.data.get_worker_info()
    return None if info is None else (info.id, info.num_workers)
