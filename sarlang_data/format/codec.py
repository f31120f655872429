r"""The pixel codec: decoded pixels stored losslessly as ``{key}.npy.zst`` members.

PNG decoding is the wall for training on decoded images: zlib's inflate alone caps any PNG
decoder near 400-680 images/s per core at 512x512. Training copies (``--image-codec zstd``)
therefore store an image's decoded pixels instead of its file, compressed as one zstd frame.

Two member versions exist; a member says which it is, so a reader decodes both (roots keep
reading whatever their build wrote; the manifest's ``build.pixel_version`` says what a root's
build wrote and ``format_version`` is 2 for roots of version-2 members):

- **version 1**: ``zstd(npy)``, the pixels as a ``.npy`` array (numpy's own self-describing
  format: dtype and shape in a text header, readable by ``np.load``), zstd level 9. On raw
  speckle it costs about the PNG's bytes (1.06x), on speckle-filtered (smooth) images 1.3-1.5x.
- **version 2** (what builds write): ``zstd(b"\x93SARPX" + version + predictor + npy of the
  residuals)``: a reversible predictor, chosen per image by size (a predictor that costs more to
  decode must save its :data:`PREDICTOR_COSTS` share of the bytes) among ``none``, ``up``
  (minus the pixel above) and ``grad`` (the ``up`` residuals minus their left neighbour in
  C order: the planar predictor ``left + up - upleft`` of smooth images), before zstd's
  optimal parser (``btopt``, 3-byte matches). On speckle-filtered images it costs about the
  PNG's bytes, on raw speckle less than version 1; decoding adds one pass of vectorised
  numpy adds (``up``) and one C prefix sum (``grad``, ``imagecodecs.delta_decode``).

This module is the one owner of that member format (``docs/format.md``, "Pixel members"):

- :func:`encode_image` / :func:`encode_member`: pixels -> member bytes and their pixel hash;
- :func:`decode_array` / :func:`decode_image`: member bytes -> numpy array / PIL image;
- :func:`pixel_sha256`, :func:`member_pixel_sha256`: the hash that proves a member holds
  exactly the pixels Pillow decoded from the source image (the same for both versions: the
  sha256 of the version-1 ``.npy`` bytes);
- a Pillow plugin (format ``NPYZST``), registered on import: ``PIL.Image.open`` reads members,
  so the stock ``datasets.Image()`` feature decodes them too, and ``Image.save(f, "NPYZST")``
  writes them (version 1, the fast encoder: ``datasets`` re-encodes images decoded from
  members losslessly in this format, never as PNG).

The ``.npy`` part: ``b"\x93NUMPY\x01\x00"``, the header length as uint16 little-endian, then
the ASCII header ``{'descr': D, 'fortran_order': False, 'shape': S, }`` padded with spaces and
ended by ``\n`` so the pixels start at a multiple of 64 bytes of the decompressed member, then
the pixels (version 2: the residuals, as unsigned integers of the pixels' width) in C order.
The Pillow mode maps to the dtype and shape as in :data:`MODES`.
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

try:  # imagecodecs: the C prefix sum of version-2 ``grad`` members (numpy fallback otherwise)
    from imagecodecs import delta_decode as _delta_decode
except ImportError:  # pragma: no cover - a dependency; the fallback is exact, only slower
    _delta_decode = None

#: member extension of stored pixels (the key's suffix after its first dot)
EXT = "npy.zst"
#: member versions this module reads and writes; builds write :data:`PIXEL_VERSION`
PIXEL_VERSIONS = (1, 2)
#: the member version builds and transcodes write unless told otherwise
PIXEL_VERSION = 2
#: version-2 predictors, by their id byte, in the order of their decoding cost
PREDICTORS = ("none", "up", "grad")
#: what each predictor's decoding costs, as a fraction of the bytes it must save to be chosen:
#: the encoder keeps the frame of least ``size * (1 + cost)``. On raw speckle ``up`` saves 3-5%
#: of ``none``'s bytes but costs a decoding pass (a third of the decode time at 512 px), so raw
#: speckle keeps version 1's bytes and speed; on filtered images ``grad`` saves 25-35% of
#: ``none`` and ~6% of ``up``, for one C prefix sum more
PREDICTOR_COSTS = (0.0, 0.08, 0.10)
#: image codecs a build, transcode or download accepts
CODECS = ("source", "zstd")
#: image member extensions of the release's bytes, by the format Pillow finds
SOURCE_EXTS = ("png", "jpg")
#: zstd level of pixel members. Measured on the synthetic SAR images (bench/bench_codec.py):
#: levels 6-9 decode fastest (~0.24 ms per 512x512 image; level 3 0.36 ms, level 19 0.34 ms)
#: and compress in ~0.5 ms; higher levels save 0-1.5% of the bytes at 8-40x the compress time.
LEVEL = 9
#: zstd parameters of version-2 ``up`` and ``grad`` members: the optimal parser with 3-byte
#: matches finds the short repeats of smooth residuals (speckle-filtered 512 px images: 1.12x
#: PNG at level 9, 1.02x here) at 10-20 ms per image and predictor. ``none`` members use
#: :data:`LEVEL`, as version 1: on raw speckle the optimal parser saves ~2% but its frames
#: decompress ~30% slower (bench/bench_codec.py)
V2_PARAMS = dict(strategy=zstandard.STRATEGY_BTOPT, window_log=18, chain_log=12, hash_log=15,
                 search_log=1, min_match=3, target_length=16)
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
#: the start of a decompressed version-2 member: magic, version byte, predictor byte
_V2_MAGIC = b"\x93SARPX"
_V2_LEAD = len(_V2_MAGIC) + 2
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


def _cctx(version: int = 1) -> zstandard.ZstdCompressor:
    name = f"cctx{version}"
    c = getattr(_local, name, None)
    if c is None:
        # threads=0: single-threaded, so the frame depends on the input only
        if version == 1:
            c = zstandard.ZstdCompressor(
                level=LEVEL, write_content_size=True, write_checksum=True, threads=0)
        else:
            c = zstandard.ZstdCompressor(compression_params=zstandard.ZstdCompressionParameters(
                **V2_PARAMS, write_content_size=True, write_checksum=True, threads=0))
        setattr(_local, name, c)
    return c


# --------------------------------------------------------------------------- npy bytes


def npy_header(descr: str, shape: tuple[int, ...], lead: int = 0) -> bytes:
    """Return the ``.npy`` (format 1.0) header of a C-order array, as this codec writes it.

    Args:
        descr: numpy dtype descr, e.g. ``"|u1"`` or ``"<u2"``.
        shape: the array shape, e.g. ``(512, 512)`` or ``(512, 512, 3)``.
        lead: bytes before the header in the decompressed member (8 in version 2), counted
            in the padding.

    Returns:
        Magic, version, header length and the padded header text: the pixels that follow start
        at a multiple of 64 bytes (of the member, ``lead`` included).

    """
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple(shape)!r}, }}"
    pad = -(lead + len(_NPY_MAGIC) + 4 + len(text) + 1) % 64
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


#: unsigned integer of each pixel width: the predictors' arithmetic (wrapping, so reversible
#: for any bits, float ones included)
_UNSIGNED = {1: np.dtype("<u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4")}


def _residuals(arr: np.ndarray, predictor: int) -> np.ndarray:
    """Return a version-2 predictor's residuals of C-order pixels, as unsigned integers."""
    u = arr.view(_UNSIGNED[arr.dtype.itemsize])
    if predictor == 0:
        return u
    up = u.copy()
    up[1:] -= u[:-1]  # minus the pixel above (the first row stays)
    if predictor == 1:
        return up
    flat = up.reshape(-1)
    grad = flat.copy()
    grad[1:] -= flat[:-1]  # minus the left neighbour in C order (across row ends too)
    return grad.reshape(arr.shape)


def _scan_rows(x: np.ndarray, block: int = 8) -> np.ndarray:
    """Prefix-sum ``x`` along axis 0 in place (wrapping): the inverse of the ``up`` predictor.

    ``np.cumsum(axis=0)`` runs one element at a time (~6 ns each); this does the same sum with
    whole-array adds: a running sum inside blocks of ``block`` rows (each add covers one row of
    every block), the blocks' totals summed the same way, recursively, and added to the
    blocks after them.
    """
    h = x.shape[0]
    if h <= block:
        for i in range(1, h):
            np.add(x[i], x[i - 1], out=x[i])
        return x
    m = h // block
    body = x[:m * block].reshape(m, block, *x.shape[1:])  # a view: x is C-contiguous
    for j in range(1, block):
        np.add(body[:, j], body[:, j - 1], out=body[:, j])
    carry = _scan_rows(body[:, block - 1].copy(), block)  # totals up to each block's end
    np.add(body[1:], carry[:-1, None], out=body[1:])
    for i in range(m * block, h):
        np.add(x[i], x[i - 1], out=x[i])
    return x


def _prefix_flat(src: np.ndarray, out: np.ndarray) -> None:
    """``out = cumsum(src)`` of 1-D unsigned integers, wrapping; ``src`` may be read-only."""
    if _delta_decode is not None and src.dtype.isnative:
        _delta_decode(src, out=out)  # C, ~0.3 ns a pixel; numpy's cumsum takes ~6 ns
    else:
        np.cumsum(src, dtype=src.dtype, out=out)


def _unpredict(res: np.ndarray, predictor: int) -> np.ndarray:
    """Return the pixels (unsigned view) of version-2 residuals; ``res`` may be read-only."""
    if predictor == 0:
        return res
    if predictor == 2:
        out = np.empty(res.shape, res.dtype)
        _prefix_flat(res.reshape(-1), out.reshape(-1))
    else:
        out = res.copy()
    return _scan_rows(out)


def _encode_v2(arr: np.ndarray, predictors: tuple[int, ...] = (0, 1, 2)) -> bytes:
    """Return the version-2 member of C-order pixels of least ``size * (1 + cost)``.

    The costs are :data:`PREDICTOR_COSTS`; on a tie the predictor tried first wins.
    """
    header = npy_header(arr.dtype.str, arr.shape, lead=_V2_LEAD)
    best: bytes | None = None
    score = 0.0
    for pid in predictors:
        res = _residuals(arr, pid)
        member = _cctx(1 if pid == 0 else 2).compress(b"".join((
            _V2_MAGIC, bytes((2, pid)), header, memoryview(res).cast("B"))))
        if best is None or len(member) * (1 + PREDICTOR_COSTS[pid]) < score:
            best, score = member, len(member) * (1 + PREDICTOR_COSTS[pid])
    assert best is not None
    return best


def encode_image(image: Image.Image, version: int = PIXEL_VERSION) -> Encoded:
    """Encode a PIL image's pixels as a ``{key}.npy.zst`` member.

    Args:
        image: a PIL image of a mode in :data:`MODES`.
        version: member version, 1 or 2 (:data:`PIXEL_VERSIONS`).

    Returns:
        The member and its pixel hash (the same for both versions).

    Raises:
        ValueError: if the image's mode is not in :data:`MODES`, or an unknown version.

    """
    if version not in PIXEL_VERSIONS:
        raise ValueError(f"pixel version {version!r}: unknown; use one of "
                         f"{', '.join(map(str, PIXEL_VERSIONS))}")
    arr = _array_of(image)
    if arr is None:
        raise ValueError(
            f"image mode {image.mode!r}: cannot be stored as pixels (modes: "
            f"{', '.join(MODES)}); keep the source bytes (image codec 'source') or convert it"
        )
    return encode_array(arr, version)


def encode_array(arr: np.ndarray, version: int = PIXEL_VERSION) -> Encoded:
    """Encode decoded pixels (a :data:`MODES` dtype and shape) as a member.

    Args:
        arr: (H, W) or (H, W, C) pixels, e.g. from :func:`decode_array`.
        version: member version, 1 or 2.

    Returns:
        The member and its pixel hash.

    Raises:
        ValueError: if the array's dtype and shape match no mode.

    """
    mode = mode_of(arr)
    arr = np.ascontiguousarray(arr)
    header, pixels = _npy_parts(arr)
    sha = hashlib.sha256(header)
    sha.update(pixels)
    if version == 1:
        member = _cctx(1).compress(header + pixels.tobytes())
    else:
        member = _encode_v2(arr)
    return Encoded(member=member, pixel_sha256=sha.hexdigest(), mode=mode,
                   width=arr.shape[1], height=arr.shape[0])


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


def stores_pixels(rule: Mapping[str, str]) -> bool:
    """Return whether a codec rule stores some image format as pixels."""
    return manifest_value(rule) != "source"


def manifest_pixel_version(rule: Mapping[str, str], version: int) -> dict[str, int]:
    """Return the manifest's ``build`` entry of the pixel version: ``{"pixel_version": v}``.

    Empty for roots of the release's bytes (their manifests stay as the first format version
    wrote them); roots holding pixels record the member version their build wrote.
    """
    return {"pixel_version": version} if stores_pixels(rule) else {}


def pixel_version_of(build: Mapping[str, Any]) -> int:
    """Return the pixel member version a manifest's ``build`` says its root holds.

    Roots built before version 2 have no ``pixel_version``: their members are version 1.
    """
    return int(build.get("pixel_version", 1))


def format_version(rule: Mapping[str, str], version: int) -> int:
    """Return the manifest ``format_version`` of a root: what a reader must know to read it.

    2 for roots of version-2 pixel members (an older sarlang-data cannot decode them and says
    to upgrade), 1 for the release's bytes and version-1 members.
    """
    return 2 if stores_pixels(rule) and version >= 2 else 1


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


def encode_member(data: bytes, ext: str, rule: Mapping[str, str],
                  version: int = PIXEL_VERSION) -> Member:
    """Turn a source image member into the member a codec rule asks for.

    Args:
        data: the image file's bytes (a PNG or a JPEG).
        ext: its extension, ``png`` or ``jpg`` (or :data:`EXT`: kept as it is).
        rule: codec per source format, from :func:`codec_rule`.
        version: pixel member version (1 or 2) of the images stored as pixels.

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
            enc = encode_image(im, version)
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"Pillow cannot decode the {ext} image ({e})") from None
    return Member(EXT, enc.member, enc.pixel_sha256)


# --------------------------------------------------------------------------- decode


def is_member(data: Any) -> bool:
    """Return whether ``data`` starts like a pixel member (a zstd frame)."""
    return isinstance(data, (bytes, bytearray, memoryview)) and bytes(data[:4]) == _ZSTD_MAGIC


def _bad(cause: str, url: str, offset: int) -> ShardError:
    return ShardError(url or "<npy.zst member>", offset, cause, _FIX)


def _parse_npy(raw: bytes | bytearray, url: str, offset: int, lead: int = 0
               ) -> tuple[np.dtype, tuple[int, ...], int]:
    """Return (dtype, shape, data offset) of the ``.npy`` at ``raw[lead:]``, checking MODES."""
    if raw[lead:lead + 6] != _NPY_MAGIC:
        raise _bad("pixel member does not hold a .npy array (no NUMPY magic)", url, offset)
    major = raw[lead + 6]
    if major == 1:
        hlen, start = struct.unpack_from("<H", raw, lead + 8)[0], lead + 10
    else:
        hlen, start = struct.unpack_from("<I", raw, lead + 8)[0], lead + 12
    m = _HEADER_RE.fullmatch(bytes(raw[start:start + hlen]))
    if m is not None:
        descr = m.group(1).decode()
        shape = tuple(int(g) for g in m.groups()[1:] if g is not None)
    else:
        fp = io.BytesIO(bytes(raw[lead:start + hlen]))
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


def _pixels(data: bytes, url: str, offset: int) -> tuple[np.ndarray, int, bytes]:
    """Decode a member of either version: (pixels, version, decompressed bytes).

    Version 1 and version-2 ``none`` members give a read-only view of the decompressed bytes;
    the other predictors give an array that owns its (writable) memory.
    """
    raw = _decompress(data, url, offset)
    if raw[:len(_V2_MAGIC)] != _V2_MAGIC:
        dtype, shape, start = _parse_npy(raw, url, offset)
        return np.frombuffer(raw, dtype=dtype, offset=start).reshape(shape), 1, raw
    version, pid = raw[len(_V2_MAGIC)], raw[len(_V2_MAGIC) + 1]
    if version != 2 or pid >= len(PREDICTORS):
        raise _bad(f"pixel member of version {version}, predictor {pid}: this sarlang-data reads "
                   f"versions {', '.join(map(str, PIXEL_VERSIONS))} with predictors 0-"
                   f"{len(PREDICTORS) - 1}; upgrade it (`pip install -U sarlang-data`)",
                   url, offset)
    dtype, shape, start = _parse_npy(raw, url, offset, lead=_V2_LEAD)
    res = np.frombuffer(raw, dtype=_UNSIGNED[dtype.itemsize], offset=start).reshape(shape)
    return _unpredict(res, pid).view(dtype), 2, raw


def member_version(data: bytes, *, url: str = "", offset: int = -1) -> int:
    """Return the version (1 or 2) of a pixel member.

    Raises:
        ShardError: if the member is not a valid pixel member.

    """
    return _pixels(data, url, offset)[1]


def decode_array(data: bytes, *, writable: bool = False, url: str = "", offset: int = -1
                 ) -> np.ndarray:
    """Decode a pixel member to a numpy array: (H, W) or (H, W, C), the mode's dtype.

    No PIL image is made. A torch collate stacks these views into its batch tensor (one copy,
    e.g. ``np.stack(arrays, out=batch.numpy())``) or decodes each member straight into its
    slot with :func:`decode_into`; ``torch.from_numpy`` of a single image needs
    ``writable=True`` (torch warns about read-only arrays).

    Args:
        data: the ``{key}.npy.zst`` member bytes (either version).
        writable: return an array that owns writable memory (version 1 copies the pixels
            for it); by default the array may be a read-only view of the decompressed bytes.
        url: shard URL, for error messages.
        offset: member offset in the shard, for error messages.

    Returns:
        The pixels, exactly as ``np.load`` would return them from a version-1 member.

    Raises:
        ShardError: if the member is not a valid zstd frame of a ``.npy`` of an image mode.

    """
    arr = _pixels(data, url, offset)[0]
    if writable and not arr.flags.writeable:
        arr = arr.copy()
    return arr


def decode_into(data: bytes, out: np.ndarray, *, url: str = "", offset: int = -1
                ) -> np.ndarray:
    """Decode a pixel member straight into ``out`` (e.g. one image's slot of a batch tensor).

    A collate that fills ``batch = torch.empty((n, H, W), dtype=torch.uint8)`` with
    ``decode_into(member, batch[i].numpy())`` writes each image's pixels into memory torch
    owns: no PIL image, no warning about read-only memory.

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


def _pil(arr: np.ndarray) -> Image.Image:
    mode = _MODE_OF[(arr.dtype.str, arr.shape[2] if arr.ndim == 3 else 0)]
    # frombuffer maps the pixels' memory without a copy for L, RGBA and I;16; Pillow copies
    # them before any change (the image is read-only until then)
    return Image.frombuffer(mode, (arr.shape[1], arr.shape[0]), memoryview(arr).cast("B"),
                            "raw", mode, 0, 1)


def decode_image(data: bytes, *, url: str = "", offset: int = -1) -> Image.Image:
    """Decode a pixel member to a PIL image of its mode (``L`` for the SAR images).

    Args:
        data: the ``{key}.npy.zst`` member bytes (either version).
        url: shard URL, for error messages.
        offset: member offset in the shard, for error messages.

    Returns:
        A PIL image (format ``NPYZST``) with exactly the stored pixels; for ``L``, ``RGBA`` and
        ``I;16`` it maps the decoded pixels (read-only until changed, then copied).

    Raises:
        ShardError: if the member is not a valid zstd frame of a ``.npy`` of an image mode.

    """
    im = _pil(_pixels(data, url, offset)[0])
    # the format tells datasets' encoder (image_to_bytes) to re-encode such an image with our
    # save handler, losslessly, rather than as PNG
    im.format = FORMAT
    return im


def member_pixel_sha256(data: bytes, *, url: str = "", offset: int = -1) -> str:
    """Return the pixel hash of a member: sha256 of the pixels' version-1 ``.npy`` bytes.

    Args:
        data: the ``{key}.npy.zst`` member bytes (either version).
        url: shard URL, for error messages.
        offset: member offset in the shard, for error messages.

    Returns:
        The hex digest, comparable with :func:`pixel_sha256` of the source image.

    Raises:
        ShardError: if the member is not a valid pixel member.

    """
    arr, version, raw = _pixels(data, url, offset)
    if version == 1:
        return hashlib.sha256(raw).hexdigest()
    header, pixels = _npy_parts(arr)
    sha = hashlib.sha256(header)
    sha.update(pixels)
    return sha.hexdigest()


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
            arr = _pixels(self.fp.read(), "", -1)[0]
        except ShardError as e:
            # SyntaxError: Pillow's signal to try the next plugin
            raise SyntaxError(f"not a sarlang-data pixel member ({e})") from None
        self._mode = mode_of(arr)
        self._size = (arr.shape[1], arr.shape[0])
        self._pixels: np.ndarray | None = arr
        self.tile = []

    def load(self) -> Any:
        """Make the decompressed pixels the image's memory (once); see ``Image.load``."""
        if self._pixels is not None:
            decoded = _pil(self._pixels)
            self.im = decoded.im
            self.readonly = decoded.readonly
            self._pixels = None
        return Image.Image.load(self)


def _save(im: Image.Image, fp: Any, filename: str | bytes) -> None:
    # version 1: one fast compression (version 2 tries three predictors with the optimal
    # parser, ~20x the time); readers decode both
    try:
        enc = encode_image(im, version=1)
    except ValueError as e:
        raise OSError(str(e)) from None
    fp.write(enc.member)


def register_pillow_plugin() -> None:
    """Register the ``NPYZST`` format with Pillow (done on import of this module)."""
    Image.register_open(FORMAT, NpyZstImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_mime(FORMAT, "application/x-sarlang-npy-zst")


register_pillow_plugin()
