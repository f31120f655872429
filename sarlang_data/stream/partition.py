"""Who reads what: rows of one split divided over ranks and DataLoader workers, equalize.

Torch-free (``node_from_env`` and ``worker_info`` import torch only when it is already loaded
or asked for). The hf, wds and torch adapters all plan their streams here; the iteration,
shuffle buffer and exact resume state are in :mod:`sarlang_data.stream.shuffle`.

How the rows of one split are divided (DESIGN section 6); every step is a pure function of
the manifest's row counts, the seed and the epoch, so every rank computes the same plan:

1. **Order.** The split's shards with at least one row for the config, in manifest order, or
   after ``shuffle(seed=...)`` in an order drawn from ``(seed, epoch)``.
2. **Ranks first**, only when asked (``distributed=True`` or ``(rank, world_size)``, or
   ``datasets``' ``split_dataset_by_node`` / ``.shard()``, which reach :func:`split`). The
   rows of step 1, one shard after another, are cut into ``world_size`` contiguous ranges
   whose sizes differ by at most one row; a range may start and end inside a shard, even
   inside a sample's rows (the reader seeks to the sample through ``index.parquet``'s
   byte offsets). Ranks get disjoint rows whose union is the selection.
3. **Equalize** (optional, with ``distributed``). Every rank gets exactly the same number of
   rows: each rank drops its row above the smallest count or repeats its first row up to
   the largest, whichever touches fewer rows (fewer than ``world_size`` in all).
4. **Then DataLoader workers.** A rank's range is cut among its workers the same way, so
   every worker has rows even when there are fewer shards than workers.
5. **Shuffle buffer.** Each worker shuffles its rows through a buffer of ``buffer_size``
   rows: the buffer fills, then each new row takes the place of a row drawn by a
   counter-based hash of ``(seed, epoch, rank, worker, n)``, which is emitted; at the end
   the rest comes out in a drawn order.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
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


#: ``(shard, first, end)``: rows ``first <= k < end`` of one shard of the split
Segment = tuple[int, int, int]


@dataclass(frozen=True)
class Part:
    """The rows one reader (a rank, or a worker of a rank) reads.

    Attributes:
        segments: ``(shard, first, end)`` in reading order: rows ``first <= k < end`` of
            shard ``shard`` (an index into the split's shard list; ``k`` counts the config's
            rows of the shard from 0). A shard appears at most once.
        target: with equalize: exactly this many rows are yielded, cutting the stream or
            repeating it from its start. None yields one pass.

    """

    segments: tuple[Segment, ...]
    target: int | None = None

    @property
    def rows(self) -> int:
        """Rows of one pass over the part."""
        return sum(end - first for _, first, end in self.segments)

    @property
    def shards(self) -> tuple[int, ...]:
        """The shards the part reads from, in reading order."""
        return tuple(s for s, _, _ in self.segments)

    @property
    def yields(self) -> int:
        """Rows this part yields (``target`` when set, else ``rows``)."""
        return self.rows if self.target is None else self.target

    def fingerprint(self) -> str:
        """Return a short string identifying the part (checked when a state is loaded)."""
        return hashlib.blake2b(repr((self.segments, self.target)).encode(),
                               digest_size=6).hexdigest()


def whole(counts: Sequence[int], order: Sequence[int] | None = None) -> Part:
    """Return the part of every row of every shard, shards in ``order`` (default: list order).

    Args:
        counts: rows per shard of the split, in manifest order.
        order: reading order of the shard indices (a permutation of ``range(len(counts))``).

    Returns:
        The part (shards without rows left out).

    """
    order = range(len(counts)) if order is None else order
    return Part(tuple((i, 0, counts[i]) for i in order if counts[i] > 0))


def cut(part: Part, lo: int, hi: int) -> Part:
    """Return rows ``lo <= r < hi`` of a part's row stream (one pass, in reading order)."""
    out: list[Segment] = []
    pos = 0
    for shard, first, end in part.segments:
        n = end - first
        a, b = max(lo - pos, 0), min(hi - pos, n)
        if a < b:
            out.append((shard, first + a, first + b))
        pos += n
        if pos >= hi:
            break
    return Part(tuple(out))


def sizes(rows: int, n: int) -> list[int]:
    """Rows of each of ``n`` readers sharing ``rows``: the first ``rows % n`` get one more."""
    return [rows // n + (1 if k < rows % n else 0) for k in range(n)]


def split(part: Part, n: int, i: int) -> Part:
    """Return reader ``i``'s part when ``part`` is divided among ``n`` readers.

    The part's row stream (its segments one after another) is cut into ``n`` contiguous
    ranges whose sizes differ by at most one row (the first ``rows % n`` readers get the
    larger ones), so a reader may start and end in the middle of a shard, even in the
    middle of a sample's rows. A ``target`` is divided in proportion to the readers' rows.

    Args:
        part: the part to divide.
        n: number of readers (>= 1).
        i: this reader (``0 <= i < n``).

    Returns:
        Reader ``i``'s part; the parts of ``i = 0..n-1`` are disjoint and together are
        ``part``, in order.

    """
    if n == 1:
        return part
    each = sizes(part.rows, n)
    start = sum(each[:i])
    piece = cut(part, start, start + each[i])
    if part.target is not None:
        piece = replace(piece, target=apportion(part.target, each)[i])
    return piece


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

    Ranks get contiguous ranges of the split's rows (see :func:`split`): their row counts
    differ by at most one, so equalize drops or repeats fewer rows than there are ranks.

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
    part = split(base, world, rank)
    if equalize is None:
        return part, None
    rows = sizes(base.rows, world)
    lo, hi, total = min(rows), max(rows), sum(rows)
    drop, repeat = total - world * lo, world * hi - total
    target = lo if equalize == "drop" or (equalize == "auto" and drop <= repeat) else hi
    if lo == 0:
        raise ConfigError(
            f"equalize={equalize!r}: rank {rows.index(0)} of {world} has no rows ({total} rows "
            "in the selection), so ranks cannot be made equal; use fewer ranks or a larger "
            "selection"
        )
    eq = Equalized(target, tuple(rows), total - world * target if target == lo else 0,
                   world * target - total if target != lo else 0)
    return replace(part, target=target), eq


#: per process: (root, index hash, config, filters) -> sample starts per shard path
_STARTS: dict[tuple, dict[str, tuple[list[int], list[int], list[str]]]] = {}


def sample_starts(root: str, storage_options: Mapping[str, Any] | None, index_sha256: Any,
                  config: str, cities: tuple[str, ...] | None = None,
                  tiers: tuple[str, ...] | None = None, sources: tuple[str, ...] | None = None,
                  *, count: Callable[[Mapping[str, Any]], int] | None = None,
                  count_key: Any = None) -> dict[str, tuple[list[int], list[int], list[str]]]:
    """Return, per shard path, where each sample with rows of a config starts.

    From ``index.parquet`` (its key, shard, offset, filter and ``n_*`` count columns only),
    read once per process and selection: for each shard, in tar order, the config's row
    number of the sample's first row (``k``), the byte offset of its first header, and its
    key. A sample's rows are counted by ``count`` (default :meth:`Config.rows_in`) on a
    stand-in record with the sample's tier and as many captions and QA pairs of each kind and
    task as the index counts, so the texts themselves are never read. Samples the filters
    drop or that give no row are left out, as the reader skips them.

    Args:
        root: the dataset root.
        storage_options: fsspec options for it.
        index_sha256: the manifest's hash of the index (part of the cache key).
        config: config name.
        cities: city filter.
        tiers: tier filter.
        sources: source filter.
        count: rows a sample record gives (the reader must count skipped samples alike).
        count_key: what ``count`` depends on besides the config (part of the cache key).

    Returns:
        ``{shard path: (first rows, byte offsets, keys)}``.

    """
    cache_key = (root, index_sha256, config, cities, tiers, sources, count_key)
    got = _STARTS.get(cache_key)
    if got is not None:
        return got
    from ..configs import get_config
    from ..format.manifest import read_index
    from ..schema import CAPTION_KINDS, TASKS

    cfg = get_config(config)
    count = count or cfg.rows_in
    kinds = {f"n_{k}": k for k in CAPTION_KINDS}
    tasks = {f"n_{t}": t for t in TASKS}
    table = read_index(root, ["key", "shard", "offset", "city", "tier", "source", *kinds,
                              *tasks], storage_options).to_pydict()
    kept: dict[str, tuple[list[int], list[int], list[str]]] = {}
    done: dict[str, int] = {}
    wanted = {"city": cities, "tier": tiers, "source": sources}
    for i, shard in enumerate(table["shard"]):
        if any(v is not None and table[c][i] not in v for c, v in wanted.items()):
            continue
        record = {"tier": table["tier"][i],
                  "captions": [{"kind": k} for c, k in kinds.items() for _ in range(table[c][i])],
                  "qa": [{"task": t} for c, t in tasks.items() for _ in range(table[c][i])]}
        n = count(record)
        if not n:
            continue
        firsts, offsets, keys = kept.setdefault(shard, ([], [], []))
        firsts.append(done.get(shard, 0))
        offsets.append(table["offset"][i])
        keys.append(table["key"][i])
        done[shard] = done.get(shard, 0) + n
    if len(_STARTS) >= 4:
        _STARTS.clear()
    _STARTS[cache_key] = kept
    return kept


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
