"""Export a config's rows as files other tools read: a LLaMA-Factory folder, or parquet.

``sarlang-data export CONFIG --data ROOT --split S --format llamafactory|parquet --out DIR``.

- ``llamafactory``: ``DIR/dataset_info.json`` with an entry LLaMA-Factory (0.9.x) reads as it
  is (``sharegpt`` formatting over OpenAI-style ``messages`` with ``role``/``content`` tags and
  an ``images`` column), the data file ``DIR/{entry}.jsonl`` (one conversation per text with the
  paper's prompts, string content with ``<image>`` opening the user turn, and the row's ``id``)
  and the image files it names, ``DIR/images/{key}.{ext}`` (the root's bytes; pixel members
  become PNG). Point LLaMA-Factory at it with ``dataset_dir: DIR``, ``media_dir: DIR`` and
  ``dataset: {entry}``.
- ``parquet``: ``DIR/{entry}-{n:05d}.parquet``, the config's rows with their images embedded
  (``datasets.Image`` columns holding the root's bytes, features in the schema metadata), for
  stock ``datasets`` (``load_dataset("parquet", data_files=...)``), pandas, lmms-eval or any
  other parquet reader.

Both write ``DIR/{entry}.ids.txt``: the ``id`` of every row, one a line, in row order (an
image-grouped row's ids on one line, space-separated). LLaMA-Factory drops the columns it does
not know, ``id`` among them, so line ``i`` of its ``generated_predictions.jsonl`` is the
prediction for line ``i`` of the ids file. ``DIR/sarlang_export.json`` describes every export
written into ``DIR`` (config, split, format, layout, rows, files, root and its index sha256).

Rows stream from the root in order (no shuffle; every row once; the whole split, whatever the
rank) with a progress bar. Exports resume: the data file grows under a temporary name, and
``DIR/.sarlang-export/{entry}.json`` records, every ``checkpoint_rows`` rows (every finished part
file for parquet), how many rows and bytes are safely written and the stream's exact position;
rerunning the same export continues from there. Finished files are renamed into place last,
and files this package did not write are never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..configs import get_config
from ..errors import BuildError, ConfigError
from ..format.codec import EXT as PIXEL_EXT
from ..format.tar import PARTIAL_SUFFIX, write_atomic
from ..stream.views import Layout, layout_for

log = logging.getLogger(__name__)

#: export formats
FORMATS = ("llamafactory", "parquet")
#: LLaMA-Factory's dataset registry file in a dataset folder
INFO_NAME = "dataset_info.json"
#: what this package exported into a folder (entries, files, ids), read by evaluation joins
EXPORTS_NAME = "sarlang_export.json"
#: resume state of unfinished exports
STATE_DIR = ".sarlang-export"
#: image files of a LLaMA-Factory export, relative to the folder (its ``media_dir``)
IMAGES_DIR = "images"
#: the dataset_info.json entry LLaMA-Factory reads OpenAI-style messages with
LLAMAFACTORY_ENTRY = {
    "formatting": "sharegpt",
    "columns": {"messages": "messages", "images": "images"},
    "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
             "assistant_tag": "assistant"},
}
#: rows per parquet row group (what the Hub viewer pages by; keeps image row groups small)
ROW_GROUP_ROWS = 100
#: default size at which a parquet part file is closed
FILE_BYTES = 256 * 2**20


@dataclass
class ExportReport:
    """What an export wrote.

    Attributes:
        format: ``llamafactory`` or ``parquet``.
        config: the config exported.
        split: the split exported.
        entry: the name of the export (LLaMA-Factory's dataset name, the files' stem).
        out: the folder written.
        rows: rows written in total.
        resumed_rows: rows that an earlier, interrupted run had written already.
        images: image files written (llamafactory) or embedded (parquet).
        files: data files, relative to ``out``.
        ids_file: the ids file, relative to ``out``.
        seconds: wall time of this run.

    """

    format: str
    config: str
    split: str
    entry: str
    out: Path
    rows: int = 0
    resumed_rows: int = 0
    images: int = 0
    files: list[str] = field(default_factory=list)
    ids_file: str = ""
    seconds: float = 0.0

    def describe(self) -> str:
        """Return a readable summary."""
        resumed = (f", {self.resumed_rows:,} of them by an earlier run" if self.resumed_rows
                   else "")
        lines = [f"{self.format} export {self.entry!r} ({self.config}, {self.split}) -> "
                 f"{self.out}: {self.rows:,} rows{resumed} in {self.seconds:.1f} s",
                 f"  files: {', '.join(self.files)}; ids in row order: {self.ids_file}"]
        if self.format == "llamafactory":
            lines.append(f"  LLaMA-Factory: dataset_dir: {self.out}, media_dir: {self.out}, "
                         f"dataset: {self.entry} ({self.images:,} images in "
                         f"{IMAGES_DIR}/)")
        return "\n".join(lines)


# --------------------------------------------------------------------------- helpers


def _layout(fmt: str, config: str, chat_format: str | None, chat_group: str | None,
            max_turns: int | None) -> Layout:
    cfg = get_config(config)
    if fmt == "llamafactory":
        if not cfg.is_text:
            raise ConfigError(
                f"config {config!r} is image-centric; a LLaMA-Factory export is one "
                "conversation per text: pass chat, captions, captions_concise, "
                "captions_detailed, vqa or a VQA task")
        if chat_format not in (None, "llamafactory"):
            raise ConfigError(
                f"chat_format={chat_format!r}: LLaMA-Factory reads string contents with "
                "<image>, the 'llamafactory' layout; leave chat_format out (or use --format "
                "parquet for TRL's layout)")
        chat_format = "llamafactory"
    return layout_for(cfg, chat_format, chat_group, max_turns)


def _portable(image: Mapping[str, Any]) -> tuple[str, bytes]:
    """Return ``(file name, bytes)`` of an encoded image other tools can open.

    The root's PNG/JPEG bytes as they are; pixel members (``.npy.zst``) become PNG.
    """
    path = image["path"]
    if path.endswith("." + PIXEL_EXT):
        import io

        from ..format.codec import decode_image

        buf = io.BytesIO()
        decode_image(image["bytes"]).save(buf, format="PNG")
        return path[: -len(PIXEL_EXT)] + "png", buf.getvalue()
    return path, image["bytes"]


def _fingerprint(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _read_json(path: Path, what: str) -> dict:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BuildError(f"{path}: cannot read {what} ({e}); fix or move the file, then "
                         "export again") from None
    if not isinstance(data, dict):
        raise BuildError(f"{path}: {what} is not a JSON object; fix or move the file, then "
                         "export again")
    return data


def _write_json(path: Path, data: Any) -> None:
    write_atomic(path, (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


def _check_out(out: Path, entry: str, finals: Iterable[str], exports: Mapping[str, Any],
               parts: str | None = None) -> None:
    """Refuse to overwrite files of the same names that this package did not write."""
    if out.exists() and not out.is_dir():
        raise BuildError(f"out={str(out)!r} is a file; pass a folder (new, or one exports "
                         "were written to)")
    ours = set(exports.get(entry, {}).get("files", [])) | {
        exports.get(entry, {}).get("ids_file")}
    finals = list(finals)
    if parts is not None and out.is_dir():
        finals += [p.name for p in out.glob(parts)]
    for name in finals:
        if (out / name).exists() and name not in ours:
            raise BuildError(
                f"{out / name}: exists and was not written by an export of {entry!r}; move it, "
                "or export into another folder (--out), or under another name (--name)")


class _State:
    """The resume state of one export: rows and bytes done and the stream's position."""

    def __init__(self, out: Path, entry: str, fingerprint: str) -> None:
        self.path = out / STATE_DIR / f"{entry}.json"
        self.fingerprint = fingerprint
        self.data = _read_json(self.path, "an export's resume state")
        if self.data and self.data.get("fingerprint") != fingerprint:
            raise BuildError(
                f"{out}: holds an unfinished export {entry!r} of other arguments (another "
                f"config, split, layout, filters or root); rerun it with the same arguments to "
                f"finish it, or delete {self.path} to start this one")

    def save(self, **data: Any) -> None:
        self.data = {"fingerprint": self.fingerprint, **data}
        _write_json(self.path, self.data)

    def done(self) -> None:
        if self.path.exists():
            self.path.unlink()
        try:
            self.path.parent.rmdir()
        except OSError:
            pass  # other exports' states are still there


def _bar(total: int | None, initial: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="rows", disable=not enabled,
                dynamic_ncols=True)


# --------------------------------------------------------------------------- parquet parts


class ParquetParts:
    """Rows -> parquet part files of about ``file_bytes``, row groups of ``group_rows``.

    Part ``n`` is written to ``{stem}-{n:05d}.parquet`` under a temporary name and renamed when
    it is closed; the same rows give the same bytes.
    """

    def __init__(self, folder: Path, stem: str, features: Any, *, file_bytes: int = FILE_BYTES,
                 group_rows: int = ROW_GROUP_ROWS, first: int = 0) -> None:
        self.folder = folder
        self.stem = stem
        self.features = features
        self.schema = features.arrow_schema
        self.file_bytes = file_bytes
        self.group_rows = group_rows
        self.n = first
        self._writer: Any = None
        self._tmp: Path | None = None
        self._rows: list[dict[str, Any]] = []
        self._bytes = 0
        self._part_rows = 0

    def name(self, n: int) -> str:
        """Return the file name of part ``n``."""
        return f"{self.stem}-{n:05d}.parquet"

    def add(self, row: dict[str, Any], size: int) -> dict[str, Any] | None:
        """Add a row (``size``: about its bytes); return the closed part's entry, if any."""
        self._rows.append(row)
        self._bytes += size
        if len(self._rows) >= self.group_rows:
            self._flush()
        if self._bytes >= self.file_bytes:
            return self.close_part()
        return None

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._rows:
            return
        if self._writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._tmp = self.folder / (self.name(self.n) + PARTIAL_SUFFIX)
            self._writer = pq.ParquetWriter(self._tmp, self.schema)
        self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self.schema),
                                 row_group_size=self.group_rows)
        self._part_rows += len(self._rows)
        self._rows = []

    def close_part(self) -> dict[str, Any] | None:
        """Close the open part file (if it has rows) and return its entry."""
        self._flush()
        if self._writer is None:
            return None
        self._writer.close()
        final = self.folder / self.name(self.n)
        digest = hashlib.sha256()
        with open(self._tmp, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        os.replace(self._tmp, final)
        entry = {"path": final.name, "rows": self._part_rows, "bytes": final.stat().st_size,
                 "sha256": digest.hexdigest()}
        self._writer, self._tmp = None, None
        self._bytes = self._part_rows = 0
        self.n += 1
        return entry

    def abort(self) -> None:
        """Drop the open part (its rows are written again on resume)."""
        if self._writer is not None:
            self._writer.close()
            self._tmp.unlink(missing_ok=True)
        self._writer, self._tmp, self._rows = None, None, []


# --------------------------------------------------------------------------- export


def export(
    config: str,
    *,
    out: str | os.PathLike,
    data: str | None = None,
    split: str = "train",
    format: str = "llamafactory",  # noqa: A002 - the CLI's --format
    name: str | None = None,
    chat_format: str | None = None,
    chat_group: str | None = None,
    max_turns: int | None = None,
    cities: str | Iterable[str] | None = None,
    tiers: str | Iterable[str] | None = None,
    sources: str | Iterable[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    progress: bool = True,
    checkpoint_rows: int = 1000,
    file_bytes: int = FILE_BYTES,
) -> ExportReport:
    """Export the rows of a config and split as a LLaMA-Factory folder or parquet files.

    See the module docstring for the files. Rows stream in order from ``data`` (any root:
    local, ``https://``, ``s3://``, ``hf://datasets/ORG/NAME``), every row once, images
    as the root's bytes; a rerun after an interruption resumes.

    Args:
        config: config name; ``llamafactory`` needs a text config (``chat``, captions, ``vqa``,
            a VQA task).
        out: the folder to write (new, or one exports were written to: entries of other names
            stay).
        data: the dataset root (None: ``$SARLANG_DATA`` or the bundled preview).
        split: ``train`` or ``test``.
        format: ``llamafactory`` or ``parquet``.
        name: the export's name (default ``sarlang_{config}_{split}``): the dataset_info.json
            entry and the files' stem.
        chat_format: parquet only: chat rows in ``trl`` or ``llamafactory`` layout (None: the
            config's default).
        chat_group: ``text`` (one conversation per text) or ``image`` (per image).
        max_turns: with ``chat_group="image"``, the most turns in one row.
        cities: keep these cities.
        tiers: keep these tiers.
        sources: keep these sources.
        storage_options: fsspec options for the root.
        progress: show a progress bar.
        checkpoint_rows: llamafactory: save the resume state every this many rows.
        file_bytes: parquet: close a part file at about this many bytes.

    Returns:
        An :class:`ExportReport`.

    Raises:
        ConfigError: unknown names, or options that do not fit the format or config.
        BuildError: ``out`` is a file, holds files of the same names this package did not
            write, or an unfinished export of other arguments.
        ManifestError: no dataset root at ``data``.

    """
    from .hf import DATASET_ALIAS, load_dataset, resolve_root

    t0 = time.monotonic()
    if format not in FORMATS:
        from ..errors import unknown_name

        raise unknown_name("format", format, FORMATS, "format")
    if not isinstance(checkpoint_rows, int) or checkpoint_rows < 1:
        raise ConfigError(f"checkpoint_rows={checkpoint_rows!r}: must be an integer >= 1")
    layout = _layout(format, config, chat_format, chat_group, max_turns)
    entry = name or f"sarlang_{config}_{split}"
    out = Path(out)
    ds = load_dataset(data or DATASET_ALIAS, config, split=split, streaming=True, decode=False,
                      distributed=False, chat_format=layout.chat_format,
                      chat_group=layout.group if layout.chat else None,
                      max_turns=layout.max_turns, cities=cities, tiers=tiers, sources=sources,
                      storage_options=storage_options)
    split_info = ds.info.splits.get(split) if ds.info.splits else None
    total = split_info.num_examples if split_info is not None else None
    root = resolve_root(data or DATASET_ALIAS)
    fingerprint = _fingerprint(
        config=config, split=split, format=format, layout=[layout.chat_format, layout.group,
                                                           layout.max_turns],
        cities=cities, tiers=tiers, sources=sources, root=root,
        index=_index_sha(root, storage_options), package=__version__)
    exports = _read_json(out / EXPORTS_NAME, f"the {EXPORTS_NAME} of earlier exports")
    state = _State(out, entry, fingerprint)
    # the parts an interrupted run of this export finished are ours too
    exports = {**exports, entry: {**exports.get(entry, {}), "files": [
        *exports.get(entry, {}).get("files", []),
        *(p["path"] for p in state.data.get("parts", []))]}}
    report = ExportReport(format=format, config=config, split=split, entry=entry, out=out)
    report.ids_file = f"{entry}.ids.txt"
    if format == "llamafactory":
        report.files = [f"{entry}.jsonl"]
        _check_out(out, entry, [*report.files, report.ids_file], exports)
        # other entries of an existing dataset_info.json stay; an entry of this name that
        # this package did not write is not replaced
        info = _read_json(out / INFO_NAME, "LLaMA-Factory's dataset_info.json")
        if entry in info and entry not in exports:
            raise BuildError(
                f"{out / INFO_NAME}: already has an entry {entry!r} that was not written by an "
                "export; export under another name (--name) or into another folder (--out)")
    else:
        _check_out(out, entry, [report.ids_file], exports, parts=f"{entry}-*.parquet")
    out.mkdir(parents=True, exist_ok=True)
    if state.data.get("stream") is not None:
        ds.load_state_dict(state.data["stream"])
    if format == "llamafactory":
        _write_llamafactory(ds, out, entry, state, report, total, progress, checkpoint_rows)
    else:
        features = _features(config, layout)
        _write_parquet(ds, out, entry, state, report, total, progress, file_bytes, features)
    if get_config(config).is_text:
        _write_ids(out, report)
    else:
        report.ids_file = ""  # image-centric rows have no text ids
    for old in exports.get(entry, {}).get("files", []):
        if old not in report.files and (out / old).is_file():
            (out / old).unlink()  # a part of our own earlier export of this entry
    if format == "llamafactory":
        info = _read_json(out / INFO_NAME, "LLaMA-Factory's dataset_info.json")
        info[entry] = {"file_name": report.files[0], **LLAMAFACTORY_ENTRY}
        _write_json(out / INFO_NAME, info)
    exports = _read_json(out / EXPORTS_NAME, f"the {EXPORTS_NAME} of earlier exports")
    exports[entry] = {
        "format": format, "config": config, "split": split,
        "layout": {"chat_format": layout.chat_format, "group": layout.group,
                   "max_turns": layout.max_turns},
        "filters": {"cities": cities, "tiers": tiers, "sources": sources},
        "rows": report.rows, "files": report.files, "ids_file": report.ids_file,
        "root": root, "index_sha256": _index_sha(root, storage_options),
        "package": __version__,
    }
    _write_json(out / EXPORTS_NAME, exports)
    state.done()
    report.seconds = time.monotonic() - t0
    return report


def _index_sha(root: str, storage_options: Mapping[str, Any] | None) -> str:
    from ..format.manifest import read_manifest

    return read_manifest(root, dict(storage_options or {}) or None)["index"]["sha256"]


def _features(config: str, layout: Layout) -> Any:
    from .hf.features import features_for

    return features_for(config, decode=True, layout=layout)


def _row_ids(row: Mapping[str, Any]) -> str:
    return " ".join(row["ids"]) if "ids" in row else row["id"]


def _write_llamafactory(ds: Any, out: Path, entry: str, state: _State, report: ExportReport,
                        total: int | None, progress: bool, checkpoint_rows: int) -> None:
    data = out / report.files[0]
    tmp = data.with_name(data.name + PARTIAL_SUFFIX)
    done = int(state.data.get("rows", 0))
    offset = int(state.data.get("bytes", 0))
    images_dir = out / IMAGES_DIR
    images_dir.mkdir(parents=True, exist_ok=True)
    report.resumed_rows = done
    mode = "r+b" if done and tmp.exists() else "wb"
    if mode == "wb":
        done = offset = 0
        report.resumed_rows = 0
        if state.data:  # the state without its file: start again
            ds.load_state_dict(_fresh(ds))
    last_key = None
    bar = _bar(total, done, entry, progress)
    try:
        with open(tmp, mode) as f:
            f.seek(offset)
            f.truncate()
            n = done
            for row in ds:
                files = []
                for image in row["images"]:
                    file_name, raw = _portable(image)
                    rel = f"{IMAGES_DIR}/{file_name}"
                    if row["key"] != last_key:
                        dest = out / rel
                        if not dest.is_file() or dest.stat().st_size != len(raw):
                            write_atomic(dest, raw)
                            report.images += 1
                    files.append(rel)
                last_key = row["key"]
                ident = {"ids": row["ids"]} if "ids" in row else {"id": row["id"]}
                line = {**ident, "messages": row["messages"], "images": files}
                f.write((json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8"))
                n += 1
                bar.update(1)
                if n % checkpoint_rows == 0:
                    f.flush()
                    os.fsync(f.fileno())
                    state.save(rows=n, bytes=f.tell(), stream=ds.state_dict())
            f.flush()
            os.fsync(f.fileno())
    finally:
        bar.close()
    os.replace(tmp, data)
    report.rows = n


def _fresh(ds: Any) -> dict:
    """Return the state of a stream at its start (``state_dict`` before iterating)."""
    return ds.state_dict()


def _write_parquet(ds: Any, out: Path, entry: str, state: _State, report: ExportReport,
                   total: int | None, progress: bool, file_bytes: int, features: Any) -> None:
    parts_done = [p for p in state.data.get("parts", []) if (out / p["path"]).is_file()]
    if len(parts_done) != len(state.data.get("parts", [])):
        parts_done = []  # a finished part went missing: start again
        ds.load_state_dict(_fresh(ds))
    done = sum(p["rows"] for p in parts_done)
    report.resumed_rows = done
    writer = ParquetParts(out, entry, features, file_bytes=file_bytes, first=len(parts_done))
    parts = list(parts_done)
    bar = _bar(total, done, entry, progress)
    n = done
    try:
        for row in _portable_rows(ds):
            size = sum(len(v["bytes"]) for v in _images(row))
            report.images += len(_images(row))
            closed = writer.add(row, size + 512)
            n += 1
            bar.update(1)
            if closed is not None:
                parts.append(closed)
                state.save(rows=n, parts=parts, stream=ds.state_dict())
        closed = writer.close_part()
        if closed is not None:
            parts.append(closed)
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    report.files = [p["path"] for p in parts]
    report.rows = n


def _images(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    if "image" in row:
        return [row["image"]]
    return list(row.get("images") or ())


def _portable_rows(ds: Any) -> Iterator[dict[str, Any]]:
    """Rows with pixel-member images turned into PNG (as other tools must read them)."""
    for row in ds:
        for column in ("image", "images"):
            if column not in row:
                continue
            values = row[column] if column == "images" else [row[column]]
            fixed = []
            for v in values:
                file_name, raw = _portable(v)
                fixed.append(v if raw is v["bytes"] else {"bytes": raw, "path": file_name})
            row[column] = fixed if column == "images" else fixed[0]
        yield row


def _write_ids(out: Path, report: ExportReport) -> None:
    """Write the ids file from the data files, in row order."""
    lines: list[str] = []
    if report.format == "llamafactory":
        with open(out / report.files[0], encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                lines.append(_row_ids(row))
    else:
        import pyarrow.parquet as pq

        for part in report.files:
            pf = pq.ParquetFile(out / part)
            column = "ids" if "ids" in pf.schema_arrow.names else "id"
            for batch in pf.iter_batches(columns=[column], batch_size=10_000):
                for v in batch.column(0).to_pylist():
                    lines.append(" ".join(v) if isinstance(v, list) else v)
    write_atomic(out / report.ids_file, "".join(f"{x}\n" for x in lines).encode("utf-8"))
