"""Reading a planned part: the seeded shuffle buffer and the exact resume state.

A :class:`~sarlang_data.stream.partition.Part` (what one reader reads) is read row by row or
sample by sample; with ``shuffle(seed=...)`` rows pass through a buffer whose draws are a
counter-based hash of ``(seed, epoch, rank, worker, n)``.

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
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ..errors import ConfigError
from .partition import Part

#: version of the stream state layout (2: parts of row ranges)
STATE_VERSION = 2
_M64 = (1 << 64) - 1

#: ``read(shard, first_row, end_row) -> iterator of (row_in_shard, key, row)``: rows
#: ``first_row <= k < end_row`` of one shard
ReadShard = Callable[[int, int, int], Iterator[tuple[int, Any, dict]]]
#: ``read_samples(shard, first_row, end_row) -> iterator of (row_in_shard, rows)``: the same
#: rows a sample at a time
ReadSamples = Callable[[int, int, int], Iterator[tuple[int, list]]]


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


# --------------------------------------------------------------------------- streams


def fresh_state(part: Part) -> dict[str, Any]:
    """Return the state of a stream of ``part`` that has not started.

    Keys: ``version``, ``part`` (fingerprint), ``lap`` (passes completed, for repeats),
    ``j`` (segment index within the part), ``k`` (next row of that segment's shard, 0 before
    the segment starts), ``p`` (rows the part yielded), ``buffer`` (the ``[j, k]`` of each
    buffered row, in slot order), ``n`` (shuffle draws made), ``drain`` (whether the source
    is exhausted and the buffer is being emptied).
    """
    # the buffer starts as a tuple: datasets' generic state merge copies a list only as far
    # as the fresh state's list goes (not at all, when it is empty), anything else whole
    return {"version": STATE_VERSION, "part": part.fingerprint(), "lap": 0, "j": 0, "k": 0,
            "p": 0, "buffer": (), "n": 0, "drain": False}


def check_state(state: Mapping[str, Any], part: Part) -> None:
    """Raise ConfigError when a loaded state belongs to another plan.

    A state is only valid for the same selection, seed, epoch, rank and worker count: a
    different plan would resume other shards at the recorded positions.
    """
    if state.get("version") != STATE_VERSION or state.get("part") != part.fingerprint():
        raise ConfigError(
            "load_state_dict(): the state was saved by a stream with other shards, seed, rank "
            "or number of DataLoader workers than this one (or by another version of "
            "sarlang-data); resume with the same config, filters, shuffle seed, world size and "
            "num_workers"
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
    target = part.target
    segments = part.segments
    while True:
        if target is not None and state["p"] >= target:
            return
        while state["j"] < len(segments):
            j = state["j"]
            shard, first, end = segments[j]
            for k, key, row in read(shard, max(state["k"], first), end):
                if target is not None and state["p"] >= target:
                    return
                state["k"] = k + 1
                state["p"] += 1
                yield (j, k), key, row
            state["j"], state["k"] = j + 1, 0
        if target is None or state["p"] >= target:
            return
        if state["p"] == 0:
            raise ConfigError(f"equalize: {target} rows are wanted but this reader's shards "
                              "gave none to repeat; use fewer ranks or a larger selection")
        state["lap"] += 1
        state["j"] = state["k"] = 0


def fetch(part: Part, read: ReadShard, positions: Sequence[Sequence[int]]
          ) -> dict[tuple[int, int], tuple[Any, dict]]:
    """Read the rows at ``[j, k]`` positions of a part again (for a resumed buffer).

    Each segment involved is read from its first wanted row up to its last one.
    """
    wanted: dict[int, set[int]] = {}
    for j, k in positions:
        wanted.setdefault(j, set()).add(k)
    out: dict[tuple[int, int], tuple[Any, dict]] = {}
    for j in sorted(wanted):
        ks = wanted[j]
        shard = part.segments[j][0]
        rows = read(shard, min(ks), max(ks) + 1)
        for k, key, row in rows:
            if k in ks:
                out[(j, k)] = (key, row)
        close = getattr(rows, "close", None)
        if close is not None:
            close()
        missing = ks - {k for jj, k in out if jj == j}
        if missing:
            raise ConfigError(
                f"load_state_dict(): rows {sorted(missing)[:5]} of shard {shard} are "
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
    """Yield ``(key, row)`` as :func:`iter_part` for a part without a target.

    Every row read is kept then, so ``p`` advances with ``k`` inside a segment and is
    written from a base instead of read back: per row this is the whole bookkeeping of the
    stream, and one generator layer less (no ``(j, k)`` position is made). With
    ``read_samples`` the rows come a sample's list at a time, which saves the reader's own
    generator layer and a tuple per row; keys are then ``(shard, k)``.
    """
    segments = part.segments
    while state["j"] < len(segments):
        j = state["j"]
        shard, first, end = segments[j]
        start = max(state["k"], first)
        p0 = state["p"] - start
        if read_samples is None:
            for k, row_key, row in read(shard, start, end):
                k += 1
                state["k"], state["p"] = k, p0 + k
                yield row_key, row
        else:
            for k, made in read_samples(shard, start, end):
                # n is the next row's k: the state is exact between any two rows
                for n, row in enumerate(made, k + 1):
                    state["k"], state["p"] = n, p0 + n
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
        if left:  # rows of a part without target: k and p both count each of them
            out["k"] -= left
            out["p"] -= left
        return out


def iter_plain_samples(part: Part, read_samples: ReadSamples, cursor: SampleCursor
                       ) -> Iterator[Iterator[dict]]:
    """Yield an iterator over each sample's rows of a part without a target.

    The rows, chained, are those of :func:`iter_rows` unshuffled (keys left out); the state
    as of the last row taken is ``cursor.position()`` (``cursor.state`` is updated per sample).

    Raises:
        ConfigError: ``cursor.state`` belongs to another plan (raised at the first step).

    """
    state = cursor.state
    check_state(state, part)
    segments = part.segments
    while state["j"] < len(segments):
        j = state["j"]
        shard, first, end = segments[j]
        start = max(state["k"], first)
        p0 = state["p"] - start
        for k, made in read_samples(shard, start, end):
            n = k + len(made)
            state["k"], state["p"] = n, p0 + n
            cursor.rows = rows = iter(made)
            yield rows
        state["j"], state["k"] = j + 1, 0


def iter_rows(part: Part, read: ReadShard, state: dict[str, Any], *, shuffle_key: int | None,
              buffer_size: int, read_samples: ReadSamples | None = None
              ) -> Iterator[tuple[Any, dict]]:
    """Return the ``(key, row)`` of a part, shuffled through a buffer when ``shuffle_key`` is set.

    See :func:`iter_part` and :func:`iter_shuffled`; ``state`` is checked against the part
    and updated as rows are yielded. ``read_samples(shard, start, end)``, when given, yields
    ``(k, rows)``: the rows ``k >= start`` (and ``< end``) of one sample, the same rows as
    ``read`` with keys ``(shard, k)``; unshuffled streams of one pass read through it, a
    sample at a time.

    Raises:
        ConfigError: ``state`` belongs to another plan (raised here, before any row).

    """
    check_state(state, part)
    if shuffle_key is not None and buffer_size > 1:
        return iter_shuffled(part, read, state, buffer_size, shuffle_key)
    if part.target is None:
        return _iter_plain(part, read, state, read_samples)
    return ((row_key, row) for _, row_key, row in iter_part(part, read, state))
