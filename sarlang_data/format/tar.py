"""Tar shard writer: fixed ustar headers, exact offsets, rollover, atomic rename.

A shard is a plain POSIX (ustar) tar in WebDataset convention. Every header field that could
vary between machines or runs is fixed (see ``docs/format.md``), so the same samples always give
the same bytes. Offsets are computed here rather than asked of ``tarfile``, and refer to the
(decompressed) tar stream, also when the shard is written as one zstd stream (``.tar.zst``).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

BLOCK = 512
#: tar pads the archive to a whole record of 20 blocks, as GNU tar and Python's tarfile do
RECORD = 20 * BLOCK
#: the end of an archive: two zero blocks
END_BLOCKS = 2 * BLOCK
#: zstd level of ``--compress archive`` shards and of ``{key}.tif.zst`` members
ZSTD_LEVEL = 10
#: suffix of a shard (or any file) while it is being written
PARTIAL_SUFFIX = ".partial"
COMPRESSIONS = ("none", "archive")
_MAX_SIZE = 8**11 - 1  # largest size the 11 octal digits of a ustar header hold


def padded(size: int) -> int:
    """Return ``size`` rounded up to whole 512-byte tar blocks."""
    return -(-size // BLOCK) * BLOCK


def member_bytes(size: int) -> int:
    """Return the bytes one member of ``size`` data bytes takes in a tar (header + padded data)."""
    return BLOCK + padded(size)


def sample_bytes(member_sizes: Iterable[int]) -> int:
    """Return the bytes a sample with members of the given data sizes takes in a tar."""
    return sum(member_bytes(s) for s in member_sizes)


def tar_file_bytes(body: int) -> int:
    """Return the size of a tar whose members take ``body`` bytes (adds end blocks and padding)."""
    return -(-(body + END_BLOCKS) // RECORD) * RECORD


def plan_rollover(sizes: Sequence[int], shard_size: int) -> list[list[int]]:
    """Split consecutive samples into shards of at most ``shard_size`` tar bytes.

    A shard rolls over when adding the next sample would make its tar file (end blocks and
    record padding included) larger than ``shard_size``; a shard always holds at least one
    sample, so a single sample larger than ``shard_size`` gets a shard of its own.

    Args:
        sizes: tar bytes of each sample, in write order (see :func:`sample_bytes`).
        shard_size: the size limit in bytes.

    Returns:
        Lists of sample indices, one list per shard, in order.

    """
    shards: list[list[int]] = []
    current: list[int] = []
    body = 0
    for i, size in enumerate(sizes):
        if current and tar_file_bytes(body + size) > shard_size:
            shards.append(current)
            current, body = [], 0
        current.append(i)
        body += size
    if current:
        shards.append(current)
    return shards


def ustar_header(name: str, size: int) -> bytes:
    r"""Return the 512-byte ustar header of a regular file, with every variable field fixed.

    Fields: ``mode=0o644``, ``uid=gid=0``, empty ``uname``/``gname``, ``mtime=0``, type ``0``
    (regular file), magic ``ustar\0`` version ``00``, empty device numbers and prefix. The
    bytes equal what Python's ``tarfile`` writes for such a ``TarInfo`` in ``USTAR_FORMAT``.

    Args:
        name: member name, < 100 bytes of UTF-8.
        size: data size in bytes, < 8 GiB.

    Returns:
        The header block.

    Raises:
        ValueError: if the name or the size does not fit a ustar header.

    """
    raw = name.encode("utf-8")
    if not raw or len(raw) >= 100:
        raise ValueError(f"tar member name {name!r}: must be 1-99 bytes for a ustar header")
    if not 0 <= size <= _MAX_SIZE:
        raise ValueError(f"tar member {name!r}: size {size} does not fit a ustar header (< 8 GiB)")
    header = b"".join(
        (
            raw.ljust(100, b"\0"),  # name
            b"0000644\0",  # mode
            b"0000000\0",  # uid
            b"0000000\0",  # gid
            b"%011o\0" % size,  # size
            b"00000000000\0",  # mtime
            b" " * 8,  # checksum, computed over the header with this field as spaces
            b"0",  # typeflag: regular file
            b"\0" * 100,  # linkname
            b"ustar\0",  # magic
            b"00",  # version
            b"\0" * 32,  # uname
            b"\0" * 32,  # gname
            b"\0" * 8,  # devmajor
            b"\0" * 8,  # devminor
            b"\0" * 155,  # prefix
            b"\0" * 12,  # pad to 512
        )
    )
    checksum = b"%06o\0 " % sum(header)
    return header[:148] + checksum + header[156:]


@dataclass(frozen=True)
class MemberSpan:
    """Where one member sits in the (decompressed) tar stream.

    Attributes:
        name: member name, e.g. ``abc.json``.
        header_offset: byte offset of its header.
        data_offset: byte offset of its data (``header_offset + 512``).
        size: data size in bytes (padding excluded).

    """

    name: str
    header_offset: int
    data_offset: int
    size: int


@dataclass(frozen=True)
class SampleSpan:
    """Where one sample sits in the tar stream.

    Attributes:
        key: the sample key.
        offset: byte offset of its first header.
        size: bytes from ``offset`` to the end of its last member, padding included.
        members: its members in tar order.

    """

    key: str
    offset: int
    size: int
    members: tuple[MemberSpan, ...]

    def member(self, ext: str) -> MemberSpan | None:
        """Return the member ``{key}.{ext}``, or None when the sample has none."""
        name = f"{self.key}.{ext}"
        return next((m for m in self.members if m.name == name), None)


@dataclass(frozen=True)
class ShardResult:
    """A finished shard.

    Attributes:
        path: where the shard was written.
        bytes: size of the file as stored.
        sha256: hex sha256 of the file as stored.
        samples: the samples it holds, in tar order.

    """

    path: Path
    bytes: int
    sha256: str
    samples: tuple[SampleSpan, ...]


class _HashingFile(io.RawIOBase):
    """A write-only file that hashes and counts what passes through to ``raw``."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # noqa: D102 - io protocol
        view = memoryview(data)
        self.raw.write(view)
        self.sha.update(view)
        self.count += len(view)
        return len(view)


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary name and ``os.replace``.

    Readers never see a half-written file: they find the old file, no file, or the new one.

    Args:
        path: destination.
        data: the complete content.

    Returns:
        ``path`` as a Path.

    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the pid keeps two processes writing the same content-addressed file apart
    tmp = path.with_name(f"{path.name}.{os.getpid()}{PARTIAL_SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # a full disk (or any failure) leaves no partial file behind
        tmp.unlink(missing_ok=True)
        raise
    return path


class TarWriter:
    """Write one shard: ustar members with fixed headers, to a temporary name, then rename.

    Use as a context manager; leaving the block with an exception removes the temporary file.

    Args:
        path: final shard path (``.tar``, or ``.tar.zst`` with ``compress="archive"``).
        compress: ``"none"`` for a plain tar, ``"archive"`` for one zstd stream of the tar.

    Raises:
        ValueError: if ``compress`` is not one of :data:`COMPRESSIONS`.

    """

    def __init__(self, path: str | os.PathLike, compress: str = "none") -> None:
        if compress not in COMPRESSIONS:
            raise ValueError(f"compress={compress!r}: must be one of {', '.join(COMPRESSIONS)}")
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + PARTIAL_SUFFIX)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.tmp, "wb")  # noqa: SIM115 - closed in close()/abort()
        self._hashed = _HashingFile(self._file)
        self._zstd = None
        self._out: BinaryIO = self._hashed  # type: ignore[assignment]
        if compress == "archive":
            import zstandard

            # single-threaded compression: its output depends on the input only
            self._zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(
                self._hashed, closefd=False, write_size=1 << 20
            )
            self._out = self._zstd  # type: ignore[assignment]
        self.offset = 0  # position in the (decompressed) tar stream
        self.samples: list[SampleSpan] = []
        self._closed = False

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self.offset += len(data)

    def add_member(self, name: str, data: bytes) -> MemberSpan:
        """Append one member; return where it landed."""
        header_offset = self.offset
        self._write(ustar_header(name, len(data)))
        self._write(data)
        pad = padded(len(data)) - len(data)
        if pad:
            self._write(b"\0" * pad)
        return MemberSpan(name, header_offset, header_offset + BLOCK, len(data))

    def add_sample(self, key: str, members: Sequence[tuple[str, bytes]]) -> SampleSpan:
        """Append one sample: its members ``{key}.{ext}`` in the given order.

        Args:
            key: the sample key (no dot).
            members: ``(ext, data)`` pairs, e.g. ``[("json", b"{...}"), ("png", b"...")]``.

        Returns:
            Where the sample and each member landed.

        """
        start = self.offset
        spans = tuple(self.add_member(f"{key}.{ext}", data) for ext, data in members)
        span = SampleSpan(key, start, self.offset - start, spans)
        self.samples.append(span)
        return span

    def close(self) -> ShardResult:
        """Write the end of the archive, rename the file into place and return its summary."""
        self._write(b"\0" * (tar_file_bytes(self.offset) - self.offset))
        if self._zstd is not None:
            self._zstd.close()  # ends the zstd frame; closefd=False keeps the file open
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._closed = True
        os.replace(self.tmp, self.path)
        return ShardResult(
            self.path, self._hashed.count, self._hashed.sha.hexdigest(), tuple(self.samples)
        )

    def abort(self) -> None:
        """Drop the partial file (nothing reaches the final name)."""
        if not self._closed:
            self._closed = True
            try:
                self._file.close()  # flushing may fail again (a full disk): drop the file anyway
            except OSError:
                pass
            finally:
                self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> TarWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


class ShardWriter:
    """Write samples to numbered shards, rolling over by size (the rule of :func:`plan_rollover`).

    Args:
        name_for: maps a shard number (from 0) to its path.
        shard_size: size limit in bytes of each shard's tar stream.
        compress: ``"none"`` or ``"archive"``.

    Raises:
        ValueError: if ``shard_size`` is not positive or ``compress`` is unknown.

    """

    def __init__(
        self, name_for: Callable[[int], str | os.PathLike], shard_size: int, compress: str = "none"
    ) -> None:
        if shard_size <= 0:
            raise ValueError(f"shard_size={shard_size!r}: must be a positive number of bytes")
        if compress not in COMPRESSIONS:
            raise ValueError(f"compress={compress!r}: must be one of {', '.join(COMPRESSIONS)}")
        self.name_for = name_for
        self.shard_size = shard_size
        self.compress = compress
        self.results: list[ShardResult] = []
        self._current: TarWriter | None = None

    def add_sample(self, key: str, members: Sequence[tuple[str, bytes]]) -> tuple[Path, SampleSpan]:
        """Append a sample, first closing the current shard if the sample would overflow it.

        Args:
            key: the sample key.
            members: ``(ext, data)`` pairs in member order.

        Returns:
            The shard path the sample went to and where it landed.

        """
        size = sample_bytes(len(data) for _, data in members)
        cur = self._current
        if cur is not None and cur.samples and tar_file_bytes(cur.offset + size) > self.shard_size:
            self.results.append(cur.close())
            cur = None
        if cur is None:
            cur = self._current = TarWriter(self.name_for(len(self.results)), self.compress)
        return cur.path, cur.add_sample(key, members)

    def close(self) -> list[ShardResult]:
        """Finish the last shard; return every shard written, in order."""
        if self._current is not None:
            self.results.append(self._current.close())
            self._current = None
        return list(self.results)

    def abort(self) -> None:
        """Drop the shard being written (finished shards stay)."""
        if self._current is not None:
            self._current.abort()
            self._current = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()
