"""Random access to a root's bytes: spans of shards at the offsets ``index.parquet`` gives.

A span is ``(shard, offset, size)``: a shard path relative to the root and a byte range of
its (decompressed) tar stream, e.g. one sample (``offset``/``size`` columns) or one member
(``image_offset``/``image_size``). Plain ``.tar`` shards cost one read per span: a seek on a
local file, a checked range request (:func:`sarlang_data.remote.read_range`) on a remote one.
Whole-archive ``.tar.zst`` shards cannot be entered at an offset, so their spans are read by
decompressing the shard once from its start up to the last span wanted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ShardError
from ..remote import READ_SIZE, join, open_url, read_range

#: a shard path and a byte range of its tar stream
Span = tuple[str, int, int]

_FIX = "the index and the shards do not match: rebuild or re-download the root"


def is_local(root: str | Path) -> bool:
    """Tell whether a root is a local folder (a path or a ``file://`` URL)."""
    text = str(root)
    return text.startswith("file://") or ("://" not in text and "::" not in text)


def _local_path(root: str | Path, rel: str) -> Path:
    text = str(root)
    return Path(text[len("file://"):] if text.startswith("file://") else text) / rel


def is_compressed(shard: str) -> bool:
    """Tell whether a shard path names a whole-archive zstd shard (``.tar.zst``)."""
    return shard.endswith(".zst")


def read_spans(root: str | Path, spans: Sequence[Span],
               storage_options: Mapping[str, Any] | None = None) -> list[bytes]:
    """Read byte ranges of a root's shards, in the order given.

    Args:
        root: dataset root, a local path or an fsspec URL.
        spans: ``(shard, offset, size)`` triples; offsets are in the decompressed tar stream.
        storage_options: fsspec options for a remote root (credentials, headers, endpoint).

    Returns:
        The bytes of each span, exactly ``size`` long.

    Raises:
        ShardError: a local shard is shorter than a span, or a compressed shard ends before it.
        RangeError: a remote server did not honour a range (see ``read_range``).

    """
    out: list[bytes | None] = [None] * len(spans)
    compressed: dict[str, list[int]] = {}
    for i, (shard, offset, size) in enumerate(spans):
        if is_compressed(shard):
            compressed.setdefault(shard, []).append(i)
        elif is_local(root):
            path = _local_path(root, shard)
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(size)
            if len(data) != size:
                raise ShardError(str(path), offset, f"the index names {size} bytes here, the "
                                 f"file has {len(data)}", _FIX)
            out[i] = data
        else:
            out[i] = read_range(join(root, shard), offset, size, storage_options)
    for shard, which in compressed.items():
        for i, data in zip(which, _read_through(root, shard, [spans[i] for i in which],
                                                storage_options), strict=True):
            out[i] = data
    return out  # type: ignore[return-value]


def _read_through(root: str | Path, shard: str, spans: Sequence[Span],
                  storage_options: Mapping[str, Any] | None) -> list[bytes]:
    """Read spans of a ``.tar.zst`` shard in one decompressing pass from its start."""
    import zstandard

    order = sorted(range(len(spans)), key=lambda i: spans[i][1])
    found: dict[int, bytes] = {}
    url = str(_local_path(root, shard)) if is_local(root) else join(root, shard)
    with open_url(url, storage_options) as raw:
        stream = zstandard.ZstdDecompressor().stream_reader(raw, read_size=READ_SIZE)
        pos = 0
        for i in order:
            _, offset, size = spans[i]
            if offset < pos:  # overlapping spans: start again from the shard's start
                found[i] = _read_through(root, shard, [spans[i]], storage_options)[0]
                continue
            while pos < offset:
                skipped = stream.read(min(READ_SIZE, offset - pos))
                if not skipped:
                    break
                pos += len(skipped)
            parts, got = [], 0
            while got < size and pos == offset + got:
                chunk = stream.read(size - got)
                if not chunk:
                    break
                parts.append(chunk)
                got += len(chunk)
                pos += len(chunk)
            if got != size:
                raise ShardError(url, offset, f"the shard's tar stream ends before the {size} "
                                 "bytes the index names here", _FIX)
            found[i] = b"".join(parts)
    return [found[i] for i in range(len(spans))]
