"""Random access: one sample by its index row or its key, the dict streaming yields for it.

``index.parquet`` says where each sample's bytes are (``shard``, ``offset``, ``size``); one
read of that span (a local seek, or one checked HTTP/S3/Hub range request:
:mod:`sarlang_data.format.access`) gets all of its members, which the shard reader parses as
it parses a whole shard. So a sample read here equals, key for key and byte for byte, the one
:func:`~sarlang_data.stream.reader.iter_samples` yields while streaming its shard.
"""

from __future__ import annotations

import difflib
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ManifestError, ShardError
from ..format.access import is_compressed, read_spans
from ..remote import join, redact
from .reader import BLOCK, iter_samples

#: index columns a lookup needs
SPAN_COLUMNS = ("key", "shard", "offset", "size")
_END = bytes(2 * BLOCK)  # tar's end-of-archive blocks, so the span parses as a whole tar


def samples_at(root: str | Path, rows: Sequence[Mapping[str, Any]],
               storage_options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Read the samples of index rows (one span read each; ``.tar.zst`` shards read through).

    Args:
        root: dataset root, a local path or an fsspec URL.
        rows: index rows with ``key``, ``shard``, ``offset`` and ``size``.
        storage_options: fsspec options for a remote root.

    Returns:
        One sample dict per row, as :func:`~sarlang_data.stream.reader.iter_samples` makes it
        (``__key__``, ``__url__``, ``__offset__``, ``json``, ``image``, ``image_ext`` and any
        other member).

    Raises:
        ShardError: the bytes at the row's offsets are not that sample (a stale index).
        RangeError: a remote server did not honour the range.

    """
    datas = read_spans(root, [(r["shard"], r["offset"], r["size"]) for r in rows],
                       storage_options)
    out = []
    for r, data in zip(rows, datas, strict=True):
        url = join(str(root), r["shard"])
        # the span is a plain tar stream even when the shard is a .tar.zst
        name = url[: -len(".zst")] if is_compressed(url) else url
        got = list(iter_samples(name, fileobj=io.BytesIO(data + _END)))
        if len(got) != 1 or got[0]["__key__"] != r["key"]:
            found = [s["__key__"] for s in got]
            raise ShardError(redact(url), r["offset"], f"index.parquet puts sample {r['key']!r} "
                             f"here, the shard holds {found}", "the index and the shards do not "
                             "match: rebuild or re-download the root")
        sample = got[0]
        sample["__url__"] = redact(url) if "://" in url or "::" in url else url
        sample["__offset__"] = r["offset"]
        out.append(sample)
    return out


def find_rows(index, keys: Sequence[str]) -> list[dict[str, Any]]:
    """Return the index rows of sample keys, in the order given.

    Args:
        index: an index Table with at least the columns of :data:`SPAN_COLUMNS`.
        keys: sample keys.

    Returns:
        One row dict per key (every column of ``index``).

    Raises:
        ConfigError: a key the index does not hold; the message lists the closest keys.

    """
    import pyarrow as pa
    import pyarrow.compute as pc

    table = index.filter(pc.is_in(index["key"], value_set=pa.array(list(keys), pa.string())))
    by_key = {r["key"]: r for r in table.to_pylist()}
    for key in keys:
        if key not in by_key:
            near = difflib.get_close_matches(key, index["key"].to_pylist(), n=8, cutoff=0.5)
            raise ConfigError(f"key={key!r}: no such sample in this root; closest keys: "
                              f"{', '.join(near) or 'none (the root is empty)'}; "
                              "`sarlang-data stream images --limit 5` prints some")
    return [by_key[k] for k in keys]


def sample_by_key(root: str | Path, key: str, *,
                  storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read one sample of a root by its key (one index read, one span read).

    Args:
        root: dataset root, a local path or an fsspec URL.
        key: the sample key (``sv_darwin_-12p4278_130p8688``, ``0009787``, ...).
        storage_options: fsspec options for a remote root.

    Returns:
        The sample dict (see :func:`samples_at`).

    Raises:
        ConfigError: no sample has that key.
        ManifestError: the root has no index.

    """
    from ..format.manifest import read_index

    index = read_index(root, columns=list(SPAN_COLUMNS), storage_options=storage_options)
    if index.num_rows == 0:
        raise ManifestError(f"root={redact(str(root))!r}: its index holds no sample")
    return samples_at(root, find_rows(index, [key]), storage_options)[0]
