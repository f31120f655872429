"""manifest.json and index.parquet: write, read, validate, select shards and samples.

The manifest says what a dataset root holds (format version, build options, counts, every shard
with its size, hash and rows per config); the index has one row per sample with where its
members are, its metadata and its texts. Both are specified in ``docs/format.md``. Everything
here reads through fsspec (:mod:`sarlang_data.remote`), so a root can be a local folder or any
fsspec URL. Checking a root against them is :mod:`sarlang_data.format.verify`; statistics from
the index are :mod:`sarlang_data.format.stats`.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import schema
from ..errors import ManifestError, RemoteError, VerifyError, unknown_name
from ..remote import _fs, join

MANIFEST_NAME = "manifest.json"
INDEX_NAME = "index.parquet"
REJECTS_NAME = "rejects.jsonl"
#: shard paths a manifest may name: relative, under data/, no "..", a tar or a zstd tar
SHARD_PATH_RE = re.compile(r"^data/(?:[a-z0-9_-]+/)*[a-z0-9_-]+\.tar(?:\.zst)?$")
#: parquet writer options, pinned so the same rows always give the same bytes
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 9,
    "use_dictionary": True,
    "write_statistics": True,
    "row_group_size": 16384,
    "data_page_size": 1 << 20,
    "version": "2.6",
    "data_page_version": "1.0",
    "store_schema": True,
}

_TOP_KEYS: dict[str, type] = {
    "format": str,
    "format_version": int,
    "build": dict,
    "counts": dict,
    "configs": dict,
    "shards": list,
    "index": dict,
    "rejects": dict,
}
_SHARD_KEYS: dict[str, type] = {
    "path": str,
    "split": str,
    "tier": str,
    "cities": list,
    "sources": list,
    "samples": int,
    "bytes": int,
    "sha256": str,
    "configs": dict,
}
_COUNT_KEYS = ("samples", "captions", "qa", "rejects", "bytes")


# --------------------------------------------------------------------------- index.parquet


#: the index column of pixel hashes, present only in roots with pixel members (``npy.zst``)
PIXEL_COLUMN = "pixel_sha256"


def index_schema(pixels: bool = False):
    """Return the pyarrow schema of ``index.parquet`` (column order as in ``docs/format.md``).

    Args:
        pixels: add the last column, ``pixel_sha256``, of roots that store some images as
            pixels (``--image-codec zstd``); roots of the release's bytes do not have it.

    """
    import pyarrow as pa

    s, i64, i32, f64 = pa.string(), pa.int64(), pa.int32(), pa.float64()
    caption_t = pa.struct([(f, s) for f in schema.CAPTION_FIELDS])
    qa_t = pa.struct(
        [(f, pa.list_(f64) if f == "bbox_xywh" else s) for f in schema.QA_FIELDS]
    )
    cols = [
        ("key", s), ("shard", s), ("offset", i64), ("size", i64),
        ("json_offset", i64), ("json_size", i64), ("image_offset", i64), ("image_size", i64),
        ("image_ext", s), ("tif_offset", i64), ("tif_size", i64),
        ("split", s), ("tier", s), ("city", s), ("country", s), ("region", s), ("source", s),
        ("file_name", s), ("gsd_m", f64), ("lat", f64), ("lon", f64),
        ("width", i32), ("height", i32), ("image_sha256", s),
    ]
    cols += [(f"n_{k}", i32) for k in schema.CAPTION_KINDS]
    cols += [(f"n_{t}", i32) for t in schema.TASKS]
    cols += [("captions", pa.list_(caption_t)), ("qa", pa.list_(qa_t))]
    if pixels:
        cols.append((PIXEL_COLUMN, s))
    return pa.schema(cols)


def index_bytes(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Serialise index rows (dicts with every column of :func:`index_schema`) as parquet bytes.

    Args:
        rows: one dict per sample, in shard order then tar order; ``pixel_sha256`` is
            written when some row has one.

    Returns:
        The bytes of ``index.parquet``; the same rows always give the same bytes.

    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    sch = index_schema(pixels=any(r.get(PIXEL_COLUMN) for r in rows))
    table = pa.Table.from_pydict({f.name: [r[f.name] for r in rows] for f in sch}, schema=sch)
    buf = io.BytesIO()
    pq.write_table(table, buf, **PARQUET_OPTIONS)
    return buf.getvalue()


def read_index(
    root: str | Path,
    columns: Sequence[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    expect_sha256: str | None = None,
):
    """Read ``index.parquet`` of a root as a pyarrow Table.

    Args:
        root: dataset root, a local path or an fsspec URL.
        columns: columns to read (all when None).
        storage_options: passed to fsspec.
        expect_sha256: the manifest's sha256 of the index: when given, the bytes are checked
            against it first.

    Returns:
        The index table.

    Raises:
        ManifestError: if the root (or its index) does not exist.
        VerifyError: the index is not valid parquet, or differs from ``expect_sha256``.

    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    _no_such_folder(root)
    fs, base = _fs(root, storage_options)
    path = join(base, INDEX_NAME)
    try:
        with fs.open(path, "rb") as f:
            if expect_sha256 is None:
                return pq.read_table(f, columns=list(columns) if columns else None)
            data = f.read()
        got = hashlib.sha256(data).hexdigest()
        if got != expect_sha256:
            raise VerifyError(
                f"{join(str(root), INDEX_NAME)}: sha256 {got}, the manifest says "
                f"{expect_sha256}: the index is corrupt or from another build; download it "
                "again or rebuild the root (`sarlang-data verify ROOT` says which files differ)"
            )
        return pq.read_table(io.BytesIO(data), columns=list(columns) if columns else None)
    except FileNotFoundError:
        if not fs.exists(join(base, MANIFEST_NAME)):
            raise ManifestError(
                f"root={str(root)!r}: no {INDEX_NAME} and no {MANIFEST_NAME}, so it is not a "
                "sarlang-data dataset root; pass the folder `sarlang-data build` or `download` "
                "wrote"
            ) from None
        raise ManifestError(
            f"root={str(root)!r}: no {INDEX_NAME}; the root is incomplete: rebuild it "
            "(`sarlang-data build RELEASE --out ROOT`) or download it again"
        ) from None
    except (pa.ArrowException, OSError, ValueError) as e:
        raise VerifyError(
            f"{join(str(root), INDEX_NAME)}: not a valid parquet file, so the index is corrupt "
            f"({type(e).__name__}: {e}); download it again or rebuild the root "
            "(`sarlang-data verify ROOT` says which files differ from the manifest)"
        ) from None


def _no_such_folder(root: str | Path) -> None:
    """Raise ManifestError when a local root does not exist (not "incomplete": absent)."""
    text = str(root)
    if ("://" not in text or text.startswith("file://")) and "::" not in text:
        local = Path(text[len("file://"):] if text.startswith("file://") else text)
        if not local.exists():
            raise ManifestError(f"root={text!r}: no such folder; pass the folder of a dataset "
                                "root (`sarlang-data build` or `download` writes one)")
        if not local.is_dir():
            raise ManifestError(f"root={text!r}: is a file, not a folder; pass the folder of "
                                "a dataset root")


def _remote_failure(root: str | Path, e: BaseException, storage_options) -> RemoteError | None:
    """Return a RemoteError for a failed read of a remote root's manifest, or None for other errors.

    Covers the Hub (``hf://`` roots, ``ORG/NAME``): a missing repo, a refused token (401/403)
    and a Hub that cannot be reached; and transport failures of any fsspec filesystem.
    """
    from ..remote import redact

    text = str(root)
    if "://" not in text or text.startswith("file://"):
        return None
    chain = []
    cur: BaseException | None = e
    while cur is not None and len(chain) < 6:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    names = {type(c).__name__ for c in chain}
    status = None
    for c in chain:
        resp = getattr(c, "response", None)
        code = getattr(resp, "status_code", None) or getattr(c, "status", None)
        if isinstance(code, int):
            status = code
            break
    where = redact(text)
    if text.startswith("hf://"):
        from huggingface_hub import constants

        endpoint = (storage_options or {}).get("endpoint") or constants.ENDPOINT
        repo = text[len("hf://"):].split("@", 1)[0].removeprefix("datasets/")
        if status in (401, 403) or "GatedRepoError" in names:
            return RemoteError(
                f"root={where!r}: the Hub at {endpoint} refused {repo!r} (HTTP {status}): the "
                "repo does not exist, or the token is missing, wrong or has no access to it; "
                "check the name, and log in with `hf auth login` or set HF_TOKEN to a token "
                "that can read the repo")
        if "RepositoryNotFoundError" in names or (status == 404 and "Entry" not in str(names)):
            return RemoteError(
                f"root={where!r}: the Hub at {endpoint} has no dataset repo {repo!r} that this "
                "token can see (404 not found); check the name, or log in (`hf auth login`, "
                "HF_TOKEN) if the repo is private or gated")
        if "OfflineModeIsEnabled" in names:
            return RemoteError(
                f"root={where!r}: HF_HUB_OFFLINE is set, so the Hub is not asked; unset it, or "
                "read a local copy (`sarlang-data download --repo ORG/NAME --out DIR`)")
    if isinstance(e, FileNotFoundError):
        return None
    transport = any(type(c).__module__.split(".")[0] in (
        "httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3", "aiohttp",
        "botocore") or isinstance(c, (ConnectionError, TimeoutError)) for c in chain)
    if status is not None or transport or "HfHubHTTPError" in names:
        cause = (str(e).strip().splitlines() or [type(e).__name__])[0]
        what = f"HTTP {status}" if status is not None else type(e).__name__
        endpoint = ""
        if text.startswith("hf://"):
            from huggingface_hub import constants

            hub = (storage_options or {}).get("endpoint") or constants.ENDPOINT
            endpoint = f" (the Hub at {hub})"
        return RemoteError(
            f"root={where!r}{endpoint}: cannot be reached or failed ({what}: {redact(cause)}); "
            "check the URL, the network and the server (and credentials in storage_options), "
            "then retry")
    return None


# --------------------------------------------------------------------------- manifest.json


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """Serialise a manifest as format.md says: ``indent=1``, sorted keys, newline at the end."""
    return (json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def validate_manifest(manifest: Any, where: str = "manifest.json") -> dict:
    """Check that a decoded manifest has the keys, types and version this reader understands.

    Args:
        manifest: the decoded JSON.
        where: where it came from, for messages.

    Returns:
        The manifest, unchanged.

    Raises:
        ManifestError: naming the first key that is missing or wrong, or a newer format version.

    """
    fix = "rebuild the root (`sarlang-data build RELEASE --out ROOT`) or download it again"

    def bad(what: str) -> ManifestError:
        return ManifestError(f"{where}: {what}; the manifest is malformed: {fix}")

    if not isinstance(manifest, dict):
        raise bad(f"top level is a {type(manifest).__name__}, not an object")
    if manifest.get("format") != schema.FORMAT_NAME:
        raise bad(f"format={manifest.get('format')!r}, expected {schema.FORMAT_NAME!r}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise bad(f"format_version={version!r} is not a positive integer")
    if version > schema.FORMAT_VERSION:
        raise ManifestError(
            f"{where}: format_version={version} is newer than this sarlang-data reads "
            f"({schema.FORMAT_VERSION}); upgrade: `pip install -U sarlang-data`"
        )
    for key, typ in _TOP_KEYS.items():
        if not isinstance(manifest.get(key), typ):
            raise bad(f"key {key!r} is missing or not a {typ.__name__}")
    for key in _COUNT_KEYS:
        if not isinstance(manifest["counts"].get(key), int):
            raise bad(f"counts.{key} is missing or not an integer")
    for key in ("path", "rows", "sha256"):
        if key not in manifest["index"]:
            raise bad(f"index.{key} is missing")
    if manifest["index"]["path"] != INDEX_NAME:
        raise bad(f"index.path={manifest['index']['path']!r}, expected {INDEX_NAME!r}")
    seen = set()
    for i, shard in enumerate(manifest["shards"]):
        if not isinstance(shard, dict):
            raise bad(f"shards[{i}] is not an object")
        for key, typ in _SHARD_KEYS.items():
            if not isinstance(shard.get(key), typ):
                raise bad(f"shards[{i}].{key} is missing or not a {typ.__name__}")
        if not SHARD_PATH_RE.match(shard["path"]) or ".." in shard["path"]:
            raise bad(f"shards[{i}].path={shard['path']!r} is not a data/... shard path")
        if shard["path"] in seen:
            raise bad(f"shards[{i}].path={shard['path']!r} is listed twice")
        seen.add(shard["path"])
    return manifest


def read_manifest(root: str | Path, storage_options: dict | None = None) -> dict:
    """Read and validate ``manifest.json`` of a dataset root.

    Args:
        root: dataset root, a local path or an fsspec URL (``hf://datasets/ORG/NAME@main``,
            ``s3://bucket/prefix``, ``https://host/path``).
        storage_options: passed to fsspec (credentials, endpoint, ...).

    Returns:
        The manifest as a dict.

    Raises:
        ManifestError: if the root has no manifest, it is not valid JSON, it misses keys, or its
            format version is newer than this package reads.
        RemoteError: an ``http(s)`` root whose server cannot be reached or refuses the request.

    """
    _no_such_folder(root)
    try:
        fs, base = _fs(root, storage_options)
        path = join(base, MANIFEST_NAME)
        with fs.open(path, "rb") as f:
            raw = f.read()
    except Exception as e:
        remote = _remote_failure(root, e, storage_options)
        if remote is not None:
            raise remote from None
        if not isinstance(e, FileNotFoundError):
            raise
        from ..remote import http_unreachable, redact

        cause = http_unreachable(join(str(root), MANIFEST_NAME), storage_options)
        if cause is not None:
            raise RemoteError(
                f"root={redact(str(root))!r}: cannot read {MANIFEST_NAME}: {cause}; check the "
                "URL, the network and the server (and its credentials in storage_options), "
                "then retry"
            ) from None
        raise ManifestError(
            f"root={str(root)!r}: no {MANIFEST_NAME}, so it is not a (complete) sarlang-data "
            "dataset root; build one with `sarlang-data build RELEASE --out ROOT` or fetch one "
            "with `sarlang-data download --repo ORG/NAME --out ROOT`"
        ) from None
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(
            f"{join(root, MANIFEST_NAME)}: not valid JSON ({e}); rebuild the root or download it "
            "again"
        ) from None
    return validate_manifest(manifest, join(root, MANIFEST_NAME))


# --------------------------------------------------------------------------- selection


def _as_list(values: str | Iterable[str] | None) -> list[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        return [values]
    return list(values)


def _wanted(
    manifest: Mapping[str, Any],
    *,
    splits: str | Iterable[str] | None = None,
    tiers: str | Iterable[str] | None = None,
    cities: str | Iterable[str] | None = None,
    sources: str | Iterable[str] | None = None,
) -> dict[str, set[str] | None]:
    """Validate and normalise filter names: ``{"split"|"tier"|"city"|"source": set or None}``."""
    root_cities = sorted({c for s in manifest["shards"] for c in s["cities"]})
    wanted: dict[str, set[str] | None] = {}
    for argument, kind, values, valid, norm in (
        ("splits", "split", splits, schema.SPLITS, str.lower),
        ("tiers", "tier", tiers, schema.TIERS, str.lower),
        ("cities", "city", cities, root_cities, schema.slug),
        ("sources", "source", sources, schema.SOURCES, str.lower),
    ):
        names = _as_list(values)
        if names is None:
            wanted[kind] = None
            continue
        chosen = set()
        for name in names:
            n = norm(str(name).strip())
            if n not in valid:
                raise unknown_name(kind, str(name), valid, argument)
            chosen.add(n)
        wanted[kind] = chosen
    return wanted


def select_shards(
    manifest: Mapping[str, Any],
    *,
    splits: str | Iterable[str] | None = None,
    tiers: str | Iterable[str] | None = None,
    cities: str | Iterable[str] | None = None,
    sources: str | Iterable[str] | None = None,
) -> list[dict]:
    """Return the shards of a manifest that can hold samples matching every filter given.

    Filters are lists of names (a single string is one name); None keeps everything. Cities are
    compared as slugs (``"New York"`` matches ``newyork``). A valid name with no shard in this
    root simply selects nothing.

    Args:
        manifest: a manifest from :func:`read_manifest`.
        splits: split names (``train``, ``test``).
        tiers: resolution tiers (``vhr``, ``hr``, ``mr``).
        cities: city slugs; valid names are the cities of this root.
        sources: source names (``sardet100k``, ``spacenet6``, ``dfc2023``, ``oem_sar``).

    Returns:
        The matching shard entries, in manifest order.

    Raises:
        ConfigError: for a name that is not valid; the message lists the valid ones, closest
            first.

    """
    shards = manifest["shards"]
    wanted = _wanted(manifest, splits=splits, tiers=tiers, cities=cities, sources=sources)

    def keep(shard: Mapping[str, Any]) -> bool:
        return (
            (wanted["split"] is None or shard["split"] in wanted["split"])
            and (wanted["tier"] is None or shard["tier"] in wanted["tier"])
            and (wanted["city"] is None or bool(wanted["city"] & set(shard["cities"])))
            and (wanted["source"] is None or bool(wanted["source"] & set(shard["sources"])))
        )

    return [dict(s) for s in shards if keep(s)]


#: names a ``tasks`` filter takes: the six VQA tasks, and ``captions`` (images with a caption)
SAMPLE_TASKS = (*schema.TASKS, "captions")


def select_samples(
    manifest: Mapping[str, Any],
    index,
    *,
    splits: str | Iterable[str] | None = None,
    tiers: str | Iterable[str] | None = None,
    cities: str | Iterable[str] | None = None,
    sources: str | Iterable[str] | None = None,
    tasks: str | Iterable[str] | None = None,
):
    """Return the rows of an index whose samples match every filter given.

    A sample matches a ``tasks`` filter when it has at least one QA pair of one of the tasks
    (or, for ``captions``, at least one caption); it is selected with all of its texts. Names
    are checked as in :func:`select_shards`.

    Args:
        manifest: the root's manifest (names the valid cities and prunes shards first).
        index: the root's ``index.parquet`` as a pyarrow Table (needs ``shard``, ``split``,
            ``tier``, ``city``, ``source`` and, for ``tasks``, the ``n_*`` columns).
        splits: split names.
        tiers: resolution tiers.
        cities: city slugs of this root.
        sources: source names.
        tasks: names of :data:`SAMPLE_TASKS`.

    Returns:
        The matching rows, in index order (a pyarrow Table with the index's columns).

    Raises:
        ConfigError: for a name that is not valid; the message lists the valid ones, closest
            first.

    """
    import pyarrow as pa
    import pyarrow.compute as pc

    wanted = _wanted(manifest, splits=splits, tiers=tiers, cities=cities, sources=sources)
    task_names = _as_list(tasks)
    chosen_tasks = None
    if task_names is not None:
        chosen_tasks = []
        for name in task_names:
            n = str(name).strip().lower()
            if n not in SAMPLE_TASKS:
                raise unknown_name("task", str(name), SAMPLE_TASKS, "tasks")
            chosen_tasks.append(n)
    shards = select_shards(manifest, splits=splits, tiers=tiers, cities=cities, sources=sources)
    mask = pc.is_in(index["shard"], value_set=pa.array([s["path"] for s in shards], pa.string()))
    for column, kind in (("split", "split"), ("tier", "tier"), ("city", "city"),
                         ("source", "source")):
        if wanted[kind] is not None:
            values = pa.array(sorted(wanted[kind]), pa.string())
            mask = pc.and_(mask, pc.is_in(index[column], value_set=values))
    if chosen_tasks is not None:
        has = None
        for task in chosen_tasks:
            if task == "captions":
                concise, detailed = (index[f"n_{k}"] for k in schema.CAPTION_KINDS)
                n = pc.add(concise, detailed)
            else:
                n = index["n_" + task]
            got = pc.greater(n, 0)
            has = got if has is None else pc.or_(has, got)
        mask = pc.and_(mask, has)
    return index.filter(pc.fill_null(mask, False))


def index_table_bytes(table) -> bytes:
    """Serialise an index Table as ``index.parquet`` bytes, with the pinned writer options.

    Args:
        table: a pyarrow Table with every column of :func:`index_schema` (any order).

    Returns:
        The parquet bytes; equal rows give equal bytes, as with :func:`index_bytes`.

    """
    import pyarrow.parquet as pq

    # as index_bytes: the pixel column only when some row has a pixel member
    pixels = (PIXEL_COLUMN in table.column_names
              and table[PIXEL_COLUMN].null_count < table.num_rows)
    sch = index_schema(pixels=pixels)
    table = table.select(sch.names).cast(sch)
    buf = io.BytesIO()
    pq.write_table(table, buf, **PARQUET_OPTIONS)
    return buf.getvalue()
