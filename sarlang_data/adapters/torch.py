"""PyTorch DataLoader helpers: ``collate`` and ``ResizeNormalize``.

Importing this module does not import torch; :func:`collate` does when called. Which rows a
rank or worker reads is planned in :mod:`sarlang_data.stream.partition`, not here.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..stream.partition import worker_info
from . import shm_pool

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
        from ..format import codec  # noqa: F401 - registers the pixel-member plugin with Pillow

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
        from ..format import codec

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
    an ordinary tensor makes. The worker's segments are reused once the main process has
    dropped their batches (:mod:`.shm_pool`: fresh pages cost more to fault in than to
    fill); when all are in use, torch's own shared memory. Smaller ones are ordinary
    memory, pickled by value (:func:`_by_value`).
    """
    import torch

    empty = torch.empty(0, dtype=dtype)
    if worker_info() is not None and numel * empty.element_size() >= PIPE_BYTES:
        pooled = shm_pool.buffer(numel, dtype)
        if pooled is not None:
            return pooled
        try:
            storage = empty._typed_storage()._new_shared(numel, device=empty.device)
            return empty.new(storage)[:numel]
        except (AttributeError, RuntimeError):  # pragma: no cover - private API moved
            pass
    return torch.empty(numel, dtype=dtype)


_PIPED: Any = None  # the tensor subclass of _by_value, made on first use (torch is lazy)


def _by_value(tensor: Any) -> Any:
    """In a DataLoader worker, make a batch tensor pickle the cheapest way.

    A tensor in a pooled segment (:func:`_new_buffer`) pickles through it
    (:func:`.shm_pool.ship`); one in torch's shared memory as torch does. Any other, a small
    batch, would be moved into fresh shared memory by torch: this subclass (a tensor in
    every other respect) pickles as dtype, shape and bytes instead, and the main process gets
    a plain tensor. Outside workers the tensor is returned as it is.
    """
    global _PIPED
    if worker_info() is None:
        return tensor
    pooled = shm_pool.ship(tensor)
    if pooled is not None:
        return pooled
    if tensor.is_shared():
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
        pooled = shm_pool.ship(self._buffer)
        if pooled is not None:
            return _image_list, (pooled, list(self._layout))
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
