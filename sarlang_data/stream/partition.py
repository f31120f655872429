"""Who reads what: rows of one split divided over ranks and DataLoader workers, equalize.

Torch-free (``node_from_env`` and ``worker_info`` import torch only when it is already loaded
or asked for). The hf, wds and torch adapters all plan their streams here; the iteration,
shuffle buffer and exact resume state are in :mod:`sarlang_data.stream.shuffle`.

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
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ConfigError

log = logging.getLogger(__name__)

#: values of ``equalize``: ``auto`` drops or repeats, whichever touches fewer rows
EQUALIZE_MODES = ("auto", "drop", "repeat")


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
        from ..errors import unknown_name

        raise unknown_name("equalize mode", str(equalize), EQUALIZE_MODES, "equalize")
    return equalize


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
