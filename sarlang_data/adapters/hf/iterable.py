"""The streams of ``load_dataset(..., streaming=True)``: ``datasets.IterableDataset``, our plan.

:class:`SarlangIterableDataset` and its examples iterable speak ``datasets``' protocol (so
``split_dataset_by_node``, ``.shuffle``, ``.map`` and DataLoader workers work as with any
IterableDataset), but plan and read through :mod:`sarlang_data.stream.partition` and
:mod:`sarlang_data.stream.shuffle`: balanced by manifest rows, equalized, exactly resumable.
This module relies on ``datasets`` internals (tested on datasets 3.6 and 5.x).
"""

from __future__ import annotations

import copy as _copy
import itertools
import logging
import operator
from collections.abc import Iterator, Mapping
from typing import Any

import datasets

from ...errors import ConfigError, ShardError
from ...format.codec import decode_image
from ...stream.partition import (
    Part,
    node_part,
    split,
    worker_info,
)
from ...stream.shuffle import (
    SampleCursor,
    fresh_state,
    iter_plain_samples,
    iter_rows,
    permutation,
    stream_key,
)
from .features import PIXEL_SUFFIX, _encoded, _set_decode
from .rows import _ShardReader

log = logging.getLogger(__name__)


try:
    from datasets.iterable_dataset import _BaseExamplesIterable
except ImportError:  # pragma: no cover - checked by tests on datasets 3.6 and 5.2
    _BaseExamplesIterable = None


if _BaseExamplesIterable is not None:

    class _SarlangRows(_BaseExamplesIterable):
        """The rows of one split: planned by rows per shard, split, shuffled, resumable.

        A pure description until iterated: the split's shard URLs, rows and sizes, this
        process's rank (``node``), ``equalize``, the shuffle seed and buffer size, an epoch
        token and the reader splits applied so far.
        :func:`~sarlang_data.stream.partition.node_part` and
        :func:`~sarlang_data.stream.partition.split` turn it into the
        :class:`~sarlang_data.stream.partition.Part` this reader reads (see that module for the
        rules); :func:`~sarlang_data.stream.shuffle.iter_rows` reads it. It speaks
        ``datasets``' examples-iterable protocol, so ``datasets``' own worker and node
        splitting (``.map()``, ``split_dataset_by_node``, ``.shard()``, accelerate's
        ``prepare``) get row ranges within one row of each other too; there, as ``datasets``
        decides, readers beyond ``num_shards`` stop (it logs a warning; ``reshard()`` makes
        every row a shard), while :class:`SarlangIterableDataset` itself gives every reader
        rows (:meth:`split_rows`).
        """

        def __init__(self, reader: _ShardReader, urls: list[str], counts: list[int],
                     sizes: list[int], *, node: tuple[int, int] | None = None,
                     equalize: str | None = None, seed: int | None = None,
                     buffer_size: int = 0, epoch_token: int = 0,
                     splits: tuple[tuple[int, int, bool], ...] = (),
                     fine: bool = False) -> None:
            super().__init__()
            self.reader = reader
            self.urls = list(urls)
            self.counts = list(counts)
            self.sizes = list(sizes)
            self.node = node
            self.equalize = equalize
            self.seed = seed
            self.buffer_size = buffer_size
            self.epoch_token = epoch_token
            self.splits = tuple(splits)
            #: after reshard(): every row counts as a shard for datasets' splitting
            self.fine = fine
            self._plan: tuple[Part, Any] | None = None

        def copy(self, **changes: Any) -> _SarlangRows:
            """Return a copy with some attributes changed and no iteration state."""
            new = _copy.copy(self)
            new.__dict__.update(changes)
            new._plan = None
            new._state_dict = None
            return new

        def plan(self) -> tuple[Part, Any]:
            """Return ``(part, equalized)``: what this reader reads, and what equalize did."""
            if self._plan is None:
                order = None
                if self.seed is not None:
                    order = permutation(len(self.urls),
                                        stream_key("shards", self.seed, self.epoch_token))
                part, eq = node_part(self.counts, order, self.node, self.equalize)
                for n, i, units in self.splits:
                    part = _split_part(part, n, i, units)
                self._plan = (part, eq)
            return self._plan

        def split_rows(self, n: int, i: int) -> _SarlangRows:
            """Return reader ``i`` of ``n``: a contiguous range of the rows, sizes within one.

            Unlike :meth:`shard_data_sources`, every reader gets rows when there are fewer
            shards than readers.
            """
            return self.copy(splits=(*self.splits, (n, i, 0)))

        @property
        def num_shards(self) -> int:
            part = self.plan()[0]
            return part.rows if self.fine else len(part.segments)

        def split_shard_indices_by_worker(self, num_shards: int, index: int,
                                          contiguous: bool = True) -> list[int]:
            # as datasets' rule: readers beyond num_shards get nothing (datasets stops them);
            # the others share the rows (see _split_part)
            part = _split_part(self.plan()[0], num_shards, index, self.num_shards)
            return list(range(len(part.segments)))

        def shard_data_sources(self, num_shards: int, index: int, contiguous: bool = True
                               ) -> _SarlangRows:
            # rank splits (split_dataset_by_node, .shard(), accelerate) and datasets' own
            # DataLoader worker split come here: contiguous row ranges, sizes within one row
            return self.copy(splits=(*self.splits, (num_shards, index, self.num_shards)))

        def shuffle_data_sources(self, generator: Any) -> _SarlangRows:
            # datasets passes default_rng(epoch) each epoch: one draw makes the epoch token
            return self.copy(epoch_token=int(generator.integers(0, 2**62)))

        def reshard_data_sources(self) -> _SarlangRows:
            # rows can be read from any row on (the index has every sample's offset), so
            # reshard() makes every row a shard for datasets' node and worker splitting
            return self.copy(fine=True)

        def _init_state_dict(self) -> dict:
            self._state_dict = fresh_state(self.plan()[0])
            return self._state_dict

        def load_state_dict(self, state_dict: dict | None) -> dict:
            self._init_state_dict()
            if state_dict is not None:
                self._state_dict = _copy_state(state_dict)
            return self._state_dict

        def state_dict(self) -> dict:
            if self._state_dict is None:
                raise RuntimeError("call _init_state_dict() first")
            return _copy_state(self._state_dict)

        def _read(self, shard: int, start: int, end: int
                  ) -> Iterator[tuple[int, Any, dict[str, Any]]]:
            return self.reader.rows(self.urls[shard], shard, start, self.sizes[shard] or None,
                                    plain_keys=True, end=end)

        def _read_samples(self, shard: int, start: int, end: int
                          ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
            return self.reader.samples(self.urls[shard], start, self.sizes[shard] or None,
                                       end=end)

        def plain_rows(self) -> tuple[SampleCursor, Iterator[dict[str, Any]]] | None:
            """Return ``(cursor, rows)`` read a sample at a time; None if shuffled or equalized.

            For one unshuffled pass over the part's row ranges: the rows of :meth:`__iter__`
            without keys, chained at C level from per-sample lists; ``cursor.position()`` is the
            state as of the last row taken (see :class:`~sarlang_data.stream.shuffle.SampleCursor`).
            """
            part, _ = self.plan()
            if self.seed is not None or part.target is not None:
                return None
            state = self._state_dict if self._state_dict is not None else fresh_state(part)
            cursor = SampleCursor(state)
            return cursor, itertools.chain.from_iterable(
                iter_plain_samples(part, self._read_samples, cursor))

        def __iter__(self) -> Iterator[tuple[Any, dict[str, Any]]]:
            # returns the row iterator itself rather than delegating to it: a generator layer
            # per row less (the warning is logged at iter() instead of at the first row)
            part, _ = self.plan()
            state = self._state_dict if self._state_dict is not None else fresh_state(part)
            key = None
            if self.seed is not None:
                key = stream_key("rows", self.seed, self.epoch_token, self.node, self.splits)
            return iter_rows(part, self._read, state, shuffle_key=key,
                             buffer_size=self.buffer_size, read_samples=self._read_samples)

    def _split_part(part: Part, n: int, i: int, units: int) -> Part:
        """Return reader ``i`` of ``n``'s part (see :func:`sarlang_data.stream.partition.split`).

        ``units`` is the ``num_shards`` ``datasets`` was shown (0: no limit): readers
        ``>= units`` get nothing, as ``datasets`` stops them, and the others share the rows.
        """
        k = min(n, units) if units else n
        if i >= k:
            return Part((), target=0 if part.target is not None else None)
        return split(part, k, i)

    _row_of = operator.itemgetter(1)  # the row of a (key, row) pair

    def _copy_state(state: Mapping[str, Any]) -> dict:
        """Copy a stream state (flat values plus the buffer's ``[j, k]`` pairs)."""
        out = dict(state)
        out["buffer"] = [list(p) for p in state.get("buffer") or ()]
        return out

    def _url_of(inner: Any, key: Any) -> str:
        """Return the shard URL of a streamed row's key ``(shard_idx, k)``, for messages."""
        urls = getattr(inner, "urls", None)
        if urls and isinstance(key, tuple) and key and isinstance(key[0], int) \
                and 0 <= key[0] < len(urls):
            return urls[key[0]]
        return "<shard>"

    class _TypedRows(_BaseExamplesIterable):
        """Streamed rows that already have their feature types.

        ``datasets`` otherwise runs ``Features.encode_example`` and ``decode_example`` on every
        streamed row: about 65 us per row of the ``vqa`` config, ten times the cost of reading
        and shaping the row. Our views make rows in exactly the encoded form of their Features
        (images as ``{"bytes", "path"}``, floats as float64), so the encode step is a no-op;
        the only decoding left is the images', done here with ``datasets.Image`` itself when
        ``decode=True``. One decode serves all rows of a sample (each row gets its own copy
        when a config makes several rows of one image).
        ``tests/test_hf.py`` checks that rows equal those of the generic path for every config.
        """

        def __init__(self, ex_iterable: Any, features: datasets.Features, decode: bool,
                     typed: bool = True, shared: bool = True) -> None:
            super().__init__()
            self.ex_iterable = ex_iterable
            self._features = features
            self._decode = decode
            # whether several rows may carry the same image (then each gets its own copy)
            self._shared = shared
            # untyped: rows stay encoded and datasets applies (cast) features itself
            self._typed = typed

        @property
        def is_typed(self) -> bool:
            return self._typed

        @property
        def features(self) -> datasets.Features:
            return self._features

        @property
        def num_shards(self) -> int:
            return self.ex_iterable.num_shards

        def _wrap(self, ex_iterable: Any) -> _TypedRows:
            return _TypedRows(ex_iterable, self._features, self._decode, self._typed,
                              self._shared)

        def _init_state_dict(self) -> dict:
            self._state_dict = self.ex_iterable._init_state_dict()
            return self._state_dict

        def load_state_dict(self, state_dict: dict) -> dict:
            # the inner iterable owns the state; datasets' generic merge would drop a buffer
            self._state_dict = self.ex_iterable.load_state_dict(state_dict)
            return self._state_dict

        def split_shard_indices_by_worker(self, num_shards: int, index: int,
                                          contiguous: bool = True) -> list[int]:
            return self.ex_iterable.split_shard_indices_by_worker(num_shards, index,
                                                                  contiguous=contiguous)

        def shuffle_data_sources(self, generator: Any) -> _TypedRows:
            return self._wrap(self.ex_iterable.shuffle_data_sources(generator))

        def shard_data_sources(self, num_shards: int, index: int, contiguous: bool = True
                               ) -> _TypedRows:
            return self._wrap(self.ex_iterable.shard_data_sources(num_shards, index,
                                                                  contiguous=contiguous))

        def reshard_data_sources(self) -> _TypedRows:
            return self._wrap(self.ex_iterable.reshard_data_sources())

        def __iter__(self) -> Iterator[tuple[Any, dict[str, Any]]]:
            if not (self._decode and self._typed):
                return iter(self.ex_iterable)  # nothing to do per row: no layer of our own
            return self._decoded()

        def _decoded(self) -> Iterator[tuple[Any, dict[str, Any]]]:
            image = datasets.Image(decode=True)
            last_bytes: Any = None
            last_image: Any = None

            def decode(value: dict[str, Any]) -> Any:
                # pixel members (npy.zst) straight to our codec; datasets.Image would reach the
                # same plugin through PIL.Image.open's format probing
                if (value["path"] or "").endswith(PIXEL_SUFFIX):
                    return decode_image(value["bytes"])
                return image.decode_example(value)

            def decoded(value: dict[str, Any]) -> Any:
                nonlocal last_bytes, last_image
                if not self._shared:
                    return decode(value)
                if value["bytes"] is not last_bytes:
                    last_bytes, last_image = value["bytes"], decode(value)
                return last_image.copy()

            inner = self.ex_iterable
            reader = getattr(inner, "reader", None)
            skip = getattr(reader, "on_error", "raise") == "skip"
            bad_bytes: Any = None  # the image of the last sample skipped (its other rows too)
            for key, row in inner:
                try:
                    if "image" in row:
                        row["image"] = decoded(row["image"])
                    else:
                        row["images"] = [decoded(v) for v in row["images"]]
                except Exception as e:  # noqa: BLE001 - whatever the decoder raises
                    value = row.get("image") or (row.get("images") or [{}])[0]
                    if skip and isinstance(value, dict) and value.get("bytes") is bad_bytes:
                        continue  # another row of the sample already skipped
                    url = _url_of(inner, key)
                    cause = (f"sample {row.get('key')!r}: its image does not decode "
                             f"({type(e).__name__}: {e}); the shard was built by a version that "
                             "checked only image headers, or is damaged")
                    if not skip:
                        raise ShardError(url, -1, cause, "rebuild the root (the build now "
                                         "rejects such images), or pass on_error='skip'"
                                         ) from None
                    log.warning("skipping a sample: shard %r: %s", url, cause)
                    bad_bytes = value.get("bytes") if isinstance(value, dict) else None
                    if reader is not None:
                        reader.stats.skip("bad_image")
                    continue
                yield key, row

    class SarlangIterableDataset(datasets.IterableDataset):
        """The streams of :func:`load_dataset`: rank-aware, balanced, exactly resumable.

        Iteration (``__iter__``) plans this reader's rows itself (the rank's rows when
        ``distributed`` asked for a split, then a DataLoader worker's range of them, within
        one row of the others; see :mod:`sarlang_data.stream.partition`), so
        ``num_workers`` of 0, 1, 2, 4 ... each read every row of this rank once, and workers
        beyond the number of shards still get rows. ``shuffle`` and
        ``set_epoch`` shuffle shard order and a row buffer from ``(seed, epoch)``, the same
        on every rank; ``state_dict``/``load_state_dict`` (used by torchdata's
        ``StatefulDataLoader``, per worker) resume exactly, buffered rows included.

        Rows arrive already typed (see ``_TypedRows``), and ``datasets`` does not re-apply
        features to typed rows; so ``decode()`` switches our own image decoding, and ``cast``/
        ``cast_column`` hand rows to ``datasets`` in their encoded form to cast them itself.
        Other methods return plain ``IterableDataset`` objects, as ``datasets`` makes them:
        they keep this rank's part, the balanced worker split and the shuffle (all live in
        the examples iterable), under ``datasets``' own state handling. Shuffle, cast or
        change decoding first (or pass ``decode=`` to :func:`load_dataset`).
        """

        def _inner(self) -> _SarlangRows | None:
            ex = self._ex_iterable
            if (isinstance(ex, _TypedRows) and isinstance(ex.ex_iterable, _SarlangRows)
                    and not self._formatting and not getattr(self, "_distributed", None)):
                return ex.ex_iterable
            return None

        def _with_inner(self, inner: _SarlangRows) -> SarlangIterableDataset:
            ds = self.__class__.__new__(self.__class__)
            ds.__dict__.update(self.__dict__)
            ds.__dict__.pop("_sarlang_state", None)
            ds.__dict__.pop("_sarlang_resume", None)
            ds._epoch = _shared_epoch(int(self._epoch))  # its own epoch, as datasets' copies
            ds._ex_iterable = self._ex_iterable._wrap(inner)
            return ds

        def __iter__(self) -> Iterator[dict[str, Any]]:
            inner = self._inner()
            if inner is None:
                yield from super().__iter__()
                return
            import numpy as np

            epoch = self.epoch
            if epoch:
                inner = inner.shuffle_data_sources(np.random.default_rng(epoch))
            worker = worker_info()
            if worker is not None and worker[1] > 1:
                inner = inner.split_rows(worker[1], worker[0])
            else:
                inner = inner.copy()
            _, eq = inner.plan()
            if eq is not None and inner.seed is not None and (worker is None or worker[0] == 0):
                # shuffled plans change with the epoch, and so may the rows per rank
                log.log(logging.WARNING if eq.dropped or eq.repeated else logging.INFO,
                        "epoch %d: %s", epoch, eq.describe())
            inner._init_state_dict()
            resume = self.__dict__.pop("_sarlang_resume", None)
            if resume is not None and resume.get("rows") is not None:
                if resume.get("epoch") == epoch:
                    inner.load_state_dict(resume["rows"])
                else:
                    log.warning("load_state_dict(): the state is of epoch %s but the dataset "
                                "is at epoch %d, so epoch %d starts from its beginning; call "
                                "set_epoch(%s) first to resume", resume.get("epoch"), epoch,
                                epoch, resume.get("epoch"))
            self._sarlang_state = {"format": _STATE_FORMAT, "epoch": epoch,
                                   "rows": inner._state_dict}
            outer = self._ex_iterable
            if not (outer._decode and outer._typed):  # no per-row layer of our own
                plain = inner.plain_rows()
                if plain is not None:
                    # a sample at a time: state_dict() asks the cursor for the exact position
                    self._sarlang_state["cursor"], stream = plain
                    yield from stream
                    return
            # delegating to a C-level map is cheaper per row than unpacking in a loop here
            yield from map(_row_of, self._ex_iterable._wrap(inner))

        def shuffle(self, seed: int | None = None, generator: Any = None,
                    buffer_size: int = 1000, max_buffer_input_shards: int | None = None
                    ) -> datasets.IterableDataset:
            """Shuffle shard order and rows through a buffer, from ``(seed, epoch)``.

            Unlike ``datasets``' shuffle, the result resumes exactly from ``state_dict()``
            with any number of DataLoader workers, buffered rows included. Shard order is
            drawn from ``seed`` and the epoch (``set_epoch``), the same on every rank; each
            reader's rows then pass a buffer of ``buffer_size`` rows.

            Args:
                seed: the seed; needed when ranks are split (every rank must draw alike).
                    None draws one (single process only).
                generator: a numpy Generator to draw the seed from, when ``seed`` is None.
                buffer_size: rows held in the buffer (>= 1; 1 shuffles shards only).
                max_buffer_input_shards: accepted for ``datasets`` compatibility and ignored:
                    each reader reads its shards one after another.

            Returns:
                The shuffled stream.

            Raises:
                ConfigError: a bad ``buffer_size``, or no seed for a rank-split stream.

            """
            inner = self._inner()
            if inner is None:
                return super().shuffle(seed=seed, generator=generator, buffer_size=buffer_size)
            if not isinstance(buffer_size, int) or isinstance(buffer_size, bool) or (
                    buffer_size < 1):
                raise ConfigError(f"buffer_size={buffer_size!r}: must be an integer >= 1 "
                                  "(rows held for shuffling); pass e.g. buffer_size=1000")
            if seed is None and generator is not None:
                seed = int(generator.integers(0, 2**63))
            if seed is None:
                if inner.node is not None:
                    raise ConfigError(
                        f"shuffle(seed=None) on rank {inner.node[0]} of {inner.node[1]}: "
                        "every rank must shuffle alike or they read overlapping shards; pass "
                        "the same seed on every rank, e.g. shuffle(seed=42)"
                    )
                import secrets

                seed = secrets.randbits(63)
            return self._with_inner(inner.copy(seed=int(seed), buffer_size=buffer_size))

        def state_dict(self) -> dict:
            """Return the stream's position: epoch, read position and buffered rows.

            Taken between two rows, it resumes after the last one returned (see
            :mod:`sarlang_data.stream.partition`). ``StatefulDataLoader`` calls it in each worker.
            """
            if self._inner() is None:
                return super().state_dict()
            state = self.__dict__.get("_sarlang_state")
            if state is None:
                return {"format": _STATE_FORMAT, "epoch": self.epoch, "rows": None}
            cursor = state.get("cursor")
            at = state["rows"] if cursor is None else cursor.position()
            return {"format": _STATE_FORMAT, "epoch": state["epoch"], "rows": _copy_state(at)}

        def load_state_dict(self, state_dict: dict) -> None:
            """Make the next iteration resume from ``state_dict`` (when its epoch matches).

            Raises:
                ConfigError: a state of another kind of stream, or (when iterating) of a
                    different plan (config, filters, seed, world size, worker count).

            """
            if self._inner() is None:
                return super().load_state_dict(state_dict)
            if not isinstance(state_dict, Mapping) or state_dict.get("format") != _STATE_FORMAT:
                raise ConfigError(
                    "load_state_dict(): not a state of a sarlang_data stream (no format "
                    f"{_STATE_FORMAT!r}); pass what state_dict() of the same stream returned"
                )
            self._sarlang_resume = dict(state_dict)
            return None

        def _retyped(self, features: datasets.Features, rows: datasets.Features, decode: bool,
                     typed: bool) -> SarlangIterableDataset:
            """Return a copy declaring ``features`` whose rows come typed as ``rows``."""
            # not copy.copy: datasets' __getstate__ hands over the very same __dict__
            ds = self.__class__.__new__(self.__class__)
            ds.__dict__.update(self.__dict__)
            ds._info = self._info.copy()
            ds._info.features = features
            ex = self._ex_iterable
            ds._ex_iterable = _TypedRows(ex.ex_iterable, rows, decode, typed, ex._shared)
            return ds

        def decode(self, enable: bool = True, num_threads: int | None = None
                   ) -> datasets.IterableDataset:
            """Turn image decoding on or off (see ``datasets.IterableDataset.decode``)."""
            if num_threads or not isinstance(self._ex_iterable, _TypedRows):
                return super().decode(enable, num_threads)
            features = datasets.Features(
                {k: _set_decode(v, enable) for k, v in self._info.features.items()})
            return self._retyped(features, features, enable, True)

        def cast_column(self, column: str, feature: Any) -> datasets.IterableDataset:
            """Cast one column (see ``datasets.IterableDataset.cast_column``)."""
            if not isinstance(self._ex_iterable, _TypedRows):
                return super().cast_column(column, feature)
            plain = self._retyped(self._info.features, _encoded(self._info.features), False,
                                  False)
            return datasets.IterableDataset.cast_column(plain, column, feature)

        def cast(self, features: datasets.Features) -> datasets.IterableDataset:
            """Cast to new features (see ``datasets.IterableDataset.cast``)."""
            if not isinstance(self._ex_iterable, _TypedRows):
                return super().cast(features)
            plain = self._retyped(self._info.features, _encoded(self._info.features), False,
                                  False)
            return datasets.IterableDataset.cast(plain, features)

else:  # pragma: no cover
    _TypedRows = None
    _SarlangRows = None
    SarlangIterableDataset = None

#: marks the states of our streams
_STATE_FORMAT = "sarlang-stream-1"


def _shared_epoch(epoch: int) -> Any:
    """Return an epoch counter as ``datasets`` keeps it (shared with persistent workers)."""
    try:
        from datasets.iterable_dataset import _maybe_share_with_torch_persistent_workers
    except ImportError:  # pragma: no cover - older datasets keep a plain int
        return epoch
    return _maybe_share_with_torch_persistent_workers(epoch)
