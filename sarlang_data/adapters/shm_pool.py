"""Reusable shared memory for the batches a DataLoader worker hands to the main process.

torch sends a worker's batch tensor through fresh shared memory every time: the worker's
first write to each 4 KiB page of it faults that page in, which on a virtual machine costs
more than the copy itself (16 MiB of 512 px images: ~12 ms of faults against ~3 ms of
copying, measured on this project's 2-vCPU VM). This pool keeps a worker's segments
(``memfd`` files, mapped once) and reuses one as soon as the process that received its last
batch has dropped it, so a batch's pages are written while already mapped.

Each segment starts with a small header: ``sent`` (batches pickled from it, written by the
worker) and ``returned`` (of those, the ones the receiving side has released, written by
the receiver when its tensor's memory is freed). A segment is reused only when the two are
equal and no tensor of the worker's own still views it. When every segment is busy (the main
process keeps many batches), :func:`buffer` returns None and the caller falls back to
torch's shared memory: nothing waits, nothing is overwritten while in use.

Pickled (by :func:`ship`'s tensor subclass), a pooled tensor sends a duplicate of the
segment's file descriptor, the bytes in use and the view; the receiver maps the segment and
gets a plain tensor over it. Linux only (``os.memfd_create``); elsewhere :func:`buffer` is
None and torch's own path is used.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import weakref
from typing import Any

#: header bytes before a segment's data: sent, returned (two little-endian uint64), padding
HEADER = 64
#: segments a worker keeps at most (batches in flight: prefetch_factor, plus the one in use)
MAX_SEGMENTS = 8
_COUNTS = struct.Struct("<QQ")
_COUNT = struct.Struct("<Q")  # each side writes only its own count: sent at 0, returned at 8
_RETURN_LOCK = threading.Lock()  # a receiver's threads (main, pin memory) free batches


class _Segment:
    """One memfd segment of a worker's pool."""

    __slots__ = ("capacity", "fd", "local", "map", "__weakref__")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.fd = os.memfd_create("sarlang-batch", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, HEADER + capacity)
        self.map = mmap.mmap(self.fd, HEADER + capacity)
        self.local = 0  # tensors of this process that view the segment

    def counts(self) -> tuple[int, int]:
        return _COUNTS.unpack_from(self.map, 0)

    def free(self) -> bool:
        sent, returned = self.counts()
        return self.local == 0 and sent == returned

    def close(self) -> None:
        try:
            self.map.close()
        except BufferError:  # pragma: no cover - a view is alive: leave it to the GC
            return
        os.close(self.fd)


class _Pool:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.segments: list[_Segment] = []
        self.by_ptr: dict[int, _Segment] = {}
        # the queue feeder thread pickles (and frees) batches while collate runs; a
        # finalizer may run inside take(), in the thread that holds the lock
        self.lock = threading.RLock()

    def take(self, nbytes: int) -> _Segment | None:
        with self.lock:
            fitting = [s for s in self.segments if s.capacity >= nbytes and s.free()]
            if fitting:
                return min(fitting, key=lambda s: s.capacity)
            if len(self.segments) >= MAX_SEGMENTS:
                idle = [s for s in self.segments if s.free()]
                if not idle:
                    return None
                self._drop(idle[0])  # too small for this batch: make room for one that fits
            # room for bigger batches to come (images differ in size): pages never written
            # are never allocated, so the spare capacity costs address space only
            seg = _Segment(1 << max(20, (2 * nbytes - 1).bit_length()))
            self.segments.append(seg)
            return seg

    def _drop(self, seg: _Segment) -> None:
        self.segments.remove(seg)
        self.by_ptr = {p: s for p, s in self.by_ptr.items() if s is not seg}
        seg.close()


_POOL: _Pool | None = None


def _pool() -> _Pool:
    global _POOL
    if _POOL is None or _POOL.pid != os.getpid():  # a forked child starts its own pool
        _POOL = _Pool()
    return _POOL


def _local_done(pool: _Pool, seg: _Segment) -> None:
    with pool.lock:
        seg.local -= 1


def buffer(numel: int, dtype: Any) -> Any:
    """Return a 1-D tensor of ``numel`` items in a free pooled segment, or None.

    None: no ``memfd`` here, or every segment is still in use; use torch's shared memory.
    """
    import numpy as np
    import torch

    if not hasattr(os, "memfd_create"):
        return None
    itemsize = torch.empty(0, dtype=dtype).element_size()
    nbytes = numel * itemsize
    try:
        seg = _pool().take(nbytes)
    except OSError:  # pragma: no cover - memfd refused (limits): torch's path
        return None
    if seg is None:
        return None
    pool = _pool()
    array = np.frombuffer(seg.map, dtype=np.uint8, count=nbytes, offset=HEADER)
    with pool.lock:
        seg.local += 1
    weakref.finalize(array, _local_done, pool, seg)  # the tensor's storage holds the array
    tensor = torch.from_numpy(array).view(dtype)
    pool.by_ptr[tensor.untyped_storage().data_ptr()] = seg
    return tensor


_SHIPPED: Any = None  # the tensor subclass of ship, made on first use (torch is lazy)


def ship(tensor: Any) -> Any:
    """Return ``tensor`` as a subclass that pickles through its pooled segment, or None.

    None: the tensor's memory is not in this process's pool.
    """
    global _SHIPPED
    if _POOL is None or _POOL.pid != os.getpid():
        return None
    seg = _POOL.by_ptr.get(tensor.untyped_storage().data_ptr())
    if seg is None:
        return None
    if _SHIPPED is None:
        import torch

        class PooledTensor(torch.Tensor):
            # results of operations on it are plain tensors (pickled the usual way)
            __torch_function__ = torch._C._disabled_torch_function_impl

            def __reduce_ex__(self, protocol: int) -> tuple:
                return _reduce(self)

        _SHIPPED = PooledTensor
    return tensor.as_subclass(_SHIPPED)


def _reduce(tensor: Any) -> tuple:
    from multiprocessing.reduction import DupFd

    import torch

    plain = tensor.as_subclass(torch.Tensor)
    storage = plain.untyped_storage()
    pool = _pool()
    seg = pool.by_ptr[storage.data_ptr()]
    with pool.lock:
        _COUNT.pack_into(seg.map, 0, seg.counts()[0] + 1)
    dtype = str(plain.dtype).rpartition(".")[2]
    return _rebuild, (DupFd(seg.fd), storage.nbytes(), dtype, tuple(plain.shape),
                      tuple(plain.stride()), plain.storage_offset())


def _returned(segment_map: mmap.mmap) -> None:
    with _RETURN_LOCK:
        _COUNT.pack_into(segment_map, 8, _COUNT.unpack_from(segment_map, 8)[0] + 1)


def _rebuild(dup: Any, nbytes: int, dtype: str, shape: tuple[int, ...],
             stride: tuple[int, ...], offset: int) -> Any:
    """Map a pooled segment sent by a worker; a plain tensor that returns it when freed."""
    import numpy as np
    import torch

    fd = dup.detach()
    try:
        segment_map = mmap.mmap(fd, HEADER + nbytes)
    finally:
        os.close(fd)
    array = np.frombuffer(segment_map, dtype=np.uint8, count=nbytes, offset=HEADER)
    weakref.finalize(array, _returned, segment_map)
    flat = torch.from_numpy(array).view(getattr(torch, dtype))
    return flat.as_strided(shape, stride, offset)
