r"""The pixel codec: decoded pixels stored losslessly as ``{key}.npy.zst`` members.

PNG decoding is the wall for training on decoded images: zlib's inflate alone caps any PNG
decoder near 400-680 images/s per core at 512x512. Training copies (``--image-codec zstd``)
therefore store an image's decoded pixels instead of its file: a ``.npy`` array (numpy's own
self-describing format: dtype and shape in a text header, readable by ``np.load``) compressed as
one zstd frame. On speckled SAR it costs about the PNG's bytes (1.06x) and decodes about 7x
faster (``bench/bench_codec.py``).

This module is the one owner of that member format (``docs/format.md``, "Pixel members"):

- :func:`encode_image` / :func:`encode_member`: pixels -> member bytes and their pixel hash;
- :func:`decode_array` / :func:`decode_image`: member bytes -> numpy array / PIL image;
- :func:`pixel_sha256`, :func:`member_pixel_sha256`: the hash that proves a member holds
  exactly the pixels Pillow decoded from the source image;
- a Pillow plugin (format ``NPYZST``), registered on import: ``PIL.Image.open`` reads members,
  so the stock ``datasets.Image()`` feature decodes them too, and ``Image.save(f, "NPYZST")``
  writes them (so ``datasets`` re-encodes images decoded from members losslessly in this
  format, never as PNG).

Layout of a member: ``zstd(npy)``, one frame at level :data:`LEVEL` with the content size and
a checksum written, compressed single-threaded (the bytes depend on the input and the zstd
version only). ``npy`` is ``b"\x93NUMPY\x01\x00"``, the header length as uint16
little-endian, then the ASCII header ``{'descr': D, 'fortran_order': False, 'shape': S, }``
padded with spaces and ended by ``\n`` so the pixels start at a multiple of 64 bytes, then the
pixels in C order. The Pillow mode maps to the dtype and shape as in :data:`MODES`.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import zstandard
from PIL import Image, ImageFile

from ..errors import ShardError

#: member extension of stored pixels (the key's suffix after its first dot)
EXT = "npy.zst"
#: image codecs a build, transcode or download accepts
CODECS = ("source", "zstd")
#: image member extensions of the release's bytes, by the format Pillow finds
SOURCE_EXTS = ("png", "jpg")
#: zstd level of pixel members. Measured on the synthetic SAR images (bench/bench_codec.py):
#: levels 6-9 decode fastest (~0.24 ms per 512x512 image; level 3 0.36 ms, level 19 0.34 ms)
#: and compress in ~0.5 ms; higher levels save 0-1.5% of the bytes at 8-40x the compress time.
LEVEL = 9
#: Pillow format name of the plugin
FORMAT = "NPYZST"
#: Pillow mode -> (npy dtype descr, channels; 0 for a 2-D array). Modes not listed here (P,
#: 1, CMYK, YCbCr, ...) have no lossless array form that gives back the same PIL image; such
#: images keep their source bytes.
MODES: dict[str, tuple[str, int]] = {
    "L": ("|u1", 0),
    "LA": ("|u1", 2),
    "RGB": ("|u1", 3),
    "RGBA": ("|u1", 4),
    "I;16": ("<u2", 0),
    "I": ("<i4", 0),
    "F": ("<f4", 0),
}
_MODE_OF = {v: k for k, v in MODES.items()}
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_NPY_MAGIC = b"\x93NUMPY"
#: our own header layout; anything else that numpy writes goes through numpy's parser
_HEADER_RE = re.compile(
    rb"\{'descr': '([<>|][a-z]\d)', 'fortran_order': False, "
    rb"'shape': \((\d+), (\d+)(?:, (\d+))?\), \} *\n"
)
_EXIF_ORIENTATION = 0x0112
_FIX = "re-download or rebuild the shard (`sarlang-data verify ROOT` lists every bad one)"
_local = threading.local()


def _dctx() -> zstandard.ZstdDecompressor:
    # a decompressor is not thread-safe; one per thread, reused (creating one costs a malloc)
    d = getattr(_local, "dctx", None)
    if d is None:
        d = _local.dctx = zstandard.ZstdDecompressor()
    return d


def _cctx() -> zstandard.ZstdCompressor:
    c = getattr(_local, "cctx", None)
    if c is None:
        # threads=0: single-threaded, so the frame depends on the input only
        c = _local.cctx = zstandard.ZstdCompressor(
            level=LEVEL, write_content_size=True, write_checksum=True, threads=0
        )
    return c


# --------------------------------------------------------------------------- npy bytes


def npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    """Return the ``.npy`` (format 1.0) header of a C-order array, as this codec writes it.

    Args:
        descr: numpy dtype descr, e.g. ``"|u1"`` or ``"<u2"``.
        shape: the array shape, e.g. ``(512, 512)`` or ``(512, 512, 3)``.

    Returns:
        Magic, version, header length and the padded header text: the pixels that follow start
        at a multiple of 64 bytes.

    """
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple(shape)!r}, }}"
    pad = -(len(_NPY_MAGIC) + 4 + len(text) + 1) % 64
    text += " " * pad + "\n"
    return _NPY_MAGIC + b"\x01\x00" + struct.pack("<H", len(text)) + text.encode("ascii")


def _array_of(image: Image.Image) -> np.ndarray | None:
    """Return the image's pixels as a C-order array of its :data:`MODES` dtype, or None."""
    spec = MODES.get(image.mode)
    if spec is None:
        return None
    arr = np.asarray(image)
    want = np.dtype(spec[0])
    if arr.dtype != want:
        # e.g. mode I on a big-endian machine: store little-endian, as the descr says
        arr = arr.astype(want)
    return np.ascontiguousarray(arr)


def _npy_parts(arr: np.ndarray) -> tuple[bytes, memoryview]:
    return npy_header(arr.dtype.str, arr.shape), memoryview(arr).cast("B")


def pixel_sha256(image: Image.Image) -> str | None:
    """Return the pixel hash of a PIL image: sha256 of its ``.npy`` bytes (header + pixels).

    The header names the dtype and the shape (and so the mode, see :data:`MODES`), so two
    images have the same hash exactly when Pillow gives them the same mode, size and pixels.

    Args:
        image: a loaded PIL image.

    Returns:
        The hex digest, or None when the image's mode has no array form here.

    """
    arr = _array_of(image)
    if arr is None:
        return None
    header, pixels = _npy_parts(arr)
    sha = hashlib.sha256(header)
    sha.update(pixels)
    return sha.hexdigest()


# --------------------------------------------------------------------------- encode


@dataclass(frozen=True)
class Encoded:
    """A pixel member and what it holds.

    Attributes:
        member: the ``{key}.npy.zst`` bytes.
        pixel_sha256: sha256 of the uncompressed ``.npy`` (see :func:`pixel_sha256`).
        mode: the Pillow mode of the pixels.
        width: pixels.
        height: pixels.

    """

    member: bytes
    pixel_sha256: str
    mode: str
    width: int
    height: int


def why_not(image: Image.Image) -> str | None:
    """Return why an image cannot be stored as pixels, or None when it can.

    Args:
        image: a PIL image (opened; its pixels need not be loaded).

    Returns:
        A reason (its mode has no array form, or an EXIF orientation would make
        ``datasets.Image`` rotate the source but not the pixels), or None.

    """
    if image.mode not in MODES:
        return f"mode {image.mode} has no lossless array form (modes: {', '.join(MODES)})"
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # noqa: BLE001 - unreadable EXIF: decoders ignore it as well
        orientation = None
    if orientation is not None:
        return f"it has an EXIF orientation ({orientation}) that decoders apply"
    return None


def encode_image(image: Image.Image) -> Encoded:
    """Encode a PIL image's pixels as a ``{key}.npy.zst`` member.

    Args:
        image: a PIL image of a mode in :data:`MODES`.

    Returns:
        The member and its pixel hash.

    Raises:
        ValueError: if the image's mode is not in :data:`MODES`.

    """
    arr = _array_of(image)
    if arr is None:
        raise ValueError(
            f"image mode {image.mode!r}: cannot be stored as pixels (modes: "
            f"{', '.join(MODES)}); keep the source bytes (image codec 'source') or convert it"
        )
    header, pixels = _npy_parts(arr)
    npy = header + pixels.tobytes()
    return Encoded(
        member=_cctx().compress(npy),
        pixel_sha256=hashlib.sha256(npy).hexdigest(),
        mode=image.mode,
        width=image.width,
        height=image.height,
    )


def codec_rule(image_codec: str | Mapping[str, str], zstd_jpeg: bool = False
               ) -> dict[str, str]:
    """Return the codec of each source image format: ``{"png": codec, "jpg": codec}``.

    ``zstd`` stores PNG images as pixels; JPEG images keep their bytes (their pixels are several
    times their size) unless ``zstd_jpeg`` asks for pixels too.

    Args:
        image_codec: ``"source"`` or ``"zstd"``, or a rule as returned here (a manifest's
            ``build.image_codec``).
        zstd_jpeg: with ``"zstd"``, store JPEG images as pixels too.

    Returns:
        The rule.

    Raises:
        ConfigError: an unknown codec name or format.

    """
    from ..errors import ConfigError, unknown_name

    if isinstance(image_codec, Mapping):
        rule = {ext: image_codec.get(ext, "source") for ext in SOURCE_EXTS}
        extra = sorted(set(image_codec) - set(SOURCE_EXTS))
        if extra:
            raise ConfigError(
                f"image_codec={dict(image_codec)!r}: unknown image format {extra[0]!r}; the "
                f"rule maps {', '.join(SOURCE_EXTS)} to a codec"
            )
        for codec in rule.values():
            if codec not in CODECS:
                raise unknown_name("image codec", codec, CODECS, "image_codec")
        return rule
    if image_codec not in CODECS:
        raise unknown_name("image codec", str(image_codec), CODECS, "image_codec")
    if zstd_jpeg and image_codec != "zstd":
        raise ConfigError(
            f"zstd_jpeg=True with image_codec={image_codec!r}: JPEG pixels are stored only by "
            "the zstd codec; pass --image-codec zstd with --zstd-jpeg, or drop --zstd-jpeg"
        )
    return {"png": image_codec, "jpg": "zstd" if zstd_jpeg else "source"}


def manifest_value(rule: Mapping[str, str]) -> str | dict[str, str]:
    """Return a rule as a manifest records it: ``"source"`` when nothing is stored as pixels.

    Roots of the release's bytes keep the plain ``"source"`` of their first format version;
    training copies record the codec per source image format.
    """
    if all(rule.get(ext, "source") == "source" for ext in SOURCE_EXTS):
        return "source"
    return {ext: rule.get(ext, "source") for ext in SOURCE_EXTS}


@dataclass(frozen=True)
class Member:
    """The image member a sample gets under a codec rule.

    Attributes:
        ext: ``png``, ``jpg`` or :data:`EXT`.
        data: the member bytes.
        pixel_sha256: the pixel hash when ``ext`` is :data:`EXT`, else None.
        kept_because: why an image the rule would store as pixels keeps its bytes, or None.

    """

    ext: str
    data: bytes
    pixel_sha256: str | None = None
    kept_because: str | None = None


def encode_member(data: bytes, ext: str, rule: Mapping[str, str]) -> Member:
    """Turn a source image member into the member a codec rule asks for.

    Args:
        data: the image file's bytes (a PNG or a JPEG).
        ext: its extension, ``png`` or ``jpg`` (or :data:`EXT`: kept as it is).
        rule: codec per source format, from :func:`codec_rule`.

    Returns:
        The member: the same bytes when the rule says ``source`` (or the image's mode has no
        array form, see :func:`why_not`), else its pixels.

    Raises:
        ValueError: if Pillow cannot decode the image.

    """
    if ext == EXT or rule.get(ext, "source") == "source":
        return Member(ext, data)
    try:
        with Image.open(io.BytesIO(data)) as im:
            reason = why_not(im)
            if reason is not None:
                return Member(ext, data, kept_because=reason)
            im.load()
            enc = encode_image(im)
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"Pillow cannot decode the {ext} image ({e})") from None
    return Member(EXT, enc.member, enc.pixel_sha256)


# --------------------------------------------------------------------------- decode


def is_member(data: Any) -> bool:
    """Return whether ``data`` starts like a pixel member (a zstd frame)."""
    return isinstance(data, (bytes, bytearray, memoryview)) and bytes(data[:4]) == _ZSTD_MAGIC


def _bad(cause: str, url: str, offset: int) -> ShardError:
    return ShardError(url or "<npy.zst member>", offset, cause, _FIX)


def _parse_npy(raw: bytes | bytearray, url: str, offset: int
               ) -> tuple[np.dtype, tuple[int, ...], int]:
    """Return (dtype, shape, data offset) of an uncompressed member, checking it fits MODES."""
    if raw[:6] != _NPY_MAGIC:
        raise _bad("pixel member does not hold a .npy array (no NUMPY magic)", url, offset)
    major = raw[6]
    if major == 1:
        hlen, start = struct.unpack_from("<H", raw, 8)[0], 10
    else:
        hlen, start = struct.unpack_from("<I", raw, 8)[0], 12
    m = _HEADER_RE.fullmatch(bytes(raw[start:start + hlen]))
    if m is not None:
        descr = m.group(1).decode()
        shape = tuple(int(g) for g in m.groups()[1:] if g is not None)
    else:
        fp = io.BytesIO(bytes(raw[:start + hlen]))
        try:
            version = np.lib.format.read_magic(fp)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read(fp)
        except Exception as e:  # noqa: BLE001 - any header numpy cannot read is corrupt here
            raise _bad(f"pixel member has an unreadable .npy header ({e})", url, offset) from None
        if fortran:
            raise _bad("pixel member holds a Fortran-order array; expected C order", url, offset)
        descr = dtype.str
    channels = shape[2] if len(shape) == 3 else 0
    if len(shape) not in (2, 3) or (descr, channels) not in _MODE_OF:
        raise _bad(f"pixel member holds a {descr} array of shape {shape}, which is no image mode "
                   f"of this codec ({', '.join(MODES)})", url, offset)
    dtype = np.dtype(descr)
    data_offset = start + hlen
    need = data_offset + math.prod(shape) * dtype.itemsize
    if len(raw) != need:
        raise _bad(f"pixel member has {len(raw)} bytes, its header says {need}", url, offset)
    return dtype, shape, data_offset


def _decompress(data: bytes, url: str, offset: int) -> bytes:
    try:
        return _dctx().decompress(data)
    except zstandard.ZstdError as e:
        raise _bad(f"pixel member is not a valid zstd frame ({e})", url, offset) from None


def decode_array(data: bytes, *, writable: bool = False, url: str = "", offset: int = -1
                 ) -> np.ndarray:
    """Decode a pixel member to a numpy array: (H, W) or (H, W, C), the mode's dtype.

    No PIL image is made. A torch collate stacks these views into its batch tensor (one copy,
    e.g. ``np.stack(arrays, out=batch.numpy())``) or decodes each member straight into its
    slot with :func:`decode_into`; ``torch.from_numpy`` of a single image needs
    ``writable=True`` (torch warns about read-only arrays).

    Args:
        data: the ``{key}.npy.zst`` member bytes.
        writable: return an array that owns writable memory (costs one copy of the pixels);
            by default the array is a read-only view of the decompressed bytes.
        url: shard URL, for error messages.
        offset: member offset in the shard, for error messages.

    Returns:
        The pixels, exactly as ``np.load`` would return them from the decompressed member.

    Raises:
        ShardError: if the member is not a valid zstd frame of a ``.npy`` of an image mode.

    """
    raw: bytes | bytearray = _decompress(data, url, offset)
    if writable:
        raw = bytearray(raw)
    dtype, shape, start = _parse_npy(raw, url, offset)
    return np.frombuffer(raw, dtype=dtype, offset=start).reshape(shape)


def decode_into(data: bytes, out: np.ndarray, *, url: str = "", offset: int = -1
                ) -> np.ndarray:
    """Decode a pixel member straight into ``out`` (e.g. one image's slot of a batch tensor).

    A collate that fills ``batch = torch.empty((n, H, W), dtype=torch.uint8)`` with
    ``decode_into(member, batch[i].numpy())`` writes each image's pixels once, into memory
    torch owns: no PIL image, no per-image array, no warning about read-only memory.

    Args:
        data: the ``{key}.npy.zst`` member bytes.
        out: a writable array of the member's shape and dtype (see :func:`decode_array`).
        url: shard URL, for error messages.
        offset: member offset in the shard, for error messages.

    Returns:
        ``out``.

    Raises:
        ShardError: if the member is not a valid pixel member.
        ValueError: if ``out`` has another shape or dtype than the member's pixels.

    """
    pixels = decode_array(data, url=url, offset=offset)
    if out.shape != pixels.shape or out.dtype != pixels.dtype:
        raise ValueError(
            f"decode_into: the member holds {pixels.dtype} pixels of shape {pixels.shape}, out "
            f"is {out.dtype} of shape {out.shape}; allocate out from the member's shape (images "
            "of a batch must have one size: resize or pad them first)"
        )
    np.copyto(out, pixels)
    return out


def mode_of(array: np.ndarray) -> str:
    """Return the Pillow mode of a decoded pixel array (see :data:`MODES`).

    Raises:
        ValueError: if the array's dtype and shape match no mode.

    """
    channels = array.shape[2] if array.ndim == 3 else 0
    mode = _MODE_OF.get((array.dtype.str, channels))
    if mode is None or array.ndim not in (2, 3):
        raise ValueError(f"array of dtype {array.dtype.str} and shape {array.shape}: no image "
                         f"mode of this codec ({', '.join(MODES)})")
    return mode


def _pil(raw: bytes, dtype: np.dtype, shape: tuple[int, ...], start: int) -> Image.Image:
    mode = _MODE_OF[(dtype.str, shape[2] if len(shape) == 3 else 0)]
    view = memoryview(raw)[start:]
    # frombuffer maps the decompressed bytes without a copy for L, RGBA and I;16; Pillow
    # copies them before any change (the image is read-only until then)
    return Image.frombuffer(mode, (shape[1], shape[0]), view, "raw", mode, 0, 1)


def decode_image(data: bytes, *, url: str = "", offset: int = -1) -> Image.Image:
    """Decode a pixel member to a PIL image of its mode (``L`` for the SAR images).

    Args:
        data: the ``{key}.npy.zst`` member bytes.
        url: shard URL, for error messages.
        offset: member offset in the shard, for error messages.

    Returns:
        A PIL image (format ``NPYZST``) with exactly the stored pixels; for ``L``, ``RGBA`` and
        ``I;16`` it maps the decompressed bytes (read-only until changed, then copied).

    Raises:
        ShardError: if the member is not a valid zstd frame of a ``.npy`` of an image mode.

    """
    raw = _decompress(data, url, offset)
    im = _pil(raw, *_parse_npy(raw, url, offset))
    # the format tells datasets' encoder (image_to_bytes) to re-encode such an image with our
    # save handler, losslessly, rather than as PNG
    im.format = FORMAT
    return im


def member_pixel_sha256(data: bytes, *, url: str = "", offset: int = -1) -> str:
    """Return the pixel hash of a member: sha256 of its decompressed ``.npy`` bytes.

    Args:
        data: the ``{key}.npy.zst`` member bytes.
        url: shard URL, for error messages.
        offset: member offset in the shard, for error messages.

    Returns:
        The hex digest, comparable with :func:`pixel_sha256` of the source image.

    Raises:
        ShardError: if the member is not a valid pixel member.

    """
    raw = _decompress(data, url, offset)
    _parse_npy(raw, url, offset)
    return hashlib.sha256(raw).hexdigest()


# --------------------------------------------------------------------------- Pillow plugin


def _accept(prefix: bytes) -> bool:
    return prefix[:4] == _ZSTD_MAGIC


class NpyZstImageFile(ImageFile.ImageFile):
    """Pillow image plugin for pixel members: ``PIL.Image.open`` of ``{key}.npy.zst`` bytes.

    The frame is decompressed when the file is opened (its header gives mode and size); the
    pixels become the image's memory, without a decoder pass, on ``load()``.
    """

    format = FORMAT
    format_description = "sarlang-data pixels (zstd-compressed .npy)"

    def _open(self) -> None:
        try:
            raw = _dctx().decompress(self.fp.read())
            dtype, shape, start = _parse_npy(raw, "", -1)
        except (zstandard.ZstdError, ShardError) as e:
            # SyntaxError: Pillow's signal to try the next plugin
            raise SyntaxError(f"not a sarlang-data pixel member ({e})") from None
        self._mode = _MODE_OF[(dtype.str, shape[2] if len(shape) == 3 else 0)]
        self._size = (shape[1], shape[0])
        self._pixels: tuple | None = (raw, dtype, shape, start)
        self.tile = []

    def load(self) -> Any:
        """Make the decompressed pixels the image's memory (once); see ``Image.load``."""
        if self._pixels is not None:
            decoded = _pil(*self._pixels)
            self.im = decoded.im
            self.readonly = decoded.readonly
            self._pixels = None
        return Image.Image.load(self)


def _save(im: Image.Image, fp: Any, filename: str | bytes) -> None:
    try:
        enc = encode_image(im)
    except ValueError as e:
        raise OSError(str(e)) from None
    fp.write(enc.member)


def register_pillow_plugin() -> None:
    """Register the ``NPYZST`` format with Pillow (done on import of this module)."""
    Image.register_open(FORMAT, NpyZstImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_mime(FORMAT, "application/x-sarlang-npy-zst")


register_pillow_plugin()
