"""Predictions in, joined to the split's text rows by their stable ``id``.

Three inputs are read:

- JSON lines ``{"id": ..., "prediction": ...}`` (what ``sarlang-data predict`` writes);
- LLaMA-Factory's ``generated_predictions.jsonl`` (``{"prompt", "predict", "label"}`` in the
  order of the dataset it predicted), for a dataset written by ``sarlang-data export``: line
  ``i`` is the export's row ``i``, whose id the export lists in ``{split}.ids.txt``;
- the authors' result CSV (``image, prediction, question, ground truth`` by position, the file
  ``Evaluate_VQA.py`` reads), joined on the image's key, the question and the ground truth.

The ground truth comes from ``index.parquet`` (which holds every text) turned into rows by the
same views as every loader, so no image shard is read and the ids are the rows' own.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SarlangError
from ..schema import key_for_stem
from .metrics import normalize_answer

log = logging.getLogger(__name__)

#: the configs whose rows an evaluation scores
VQA_CONFIG, CAPTION_CONFIG = "vqa", "captions"
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


class PredictionsError(SarlangError):
    """A predictions file cannot be read or joined to the split's rows."""


def text_rows(root: str, split: str, config: str,
              storage_options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Return the rows of a text config in a split, without images, from ``index.parquet``.

    Args:
        root: dataset root (path or URL).
        split: ``test`` or ``train``.
        config: ``vqa`` or ``captions`` (any text config).
        storage_options: fsspec options for the root.

    Returns:
        The rows :func:`sarlang_data.load_dataset` gives for ``(config, split)``, less their
        ``image``, in index order.
    """
    import pyarrow.compute as pc

    from ..configs import get_config
    from ..format.manifest import read_index
    from ..stream.views import rows

    cfg = get_config(config)
    table = read_index(root, None, storage_options)
    table = table.filter(pc.equal(table["split"], split))
    out = []
    for rec in table.to_pylist():
        sample = {"__key__": rec["key"], "json": rec, "image": b"",
                  "image_ext": rec.get("image_ext") or "png"}
        for row in rows(cfg, sample):
            row.pop("image", None)
            out.append(row)
    return out


@dataclass
class Predictions:
    """Predictions read from one or more files.

    Attributes:
        by_id: row id -> prediction text (None: the file had the id without a prediction).
        by_text: authors' CSV rows still to join: ``(key, question, ground truth, prediction)``.
        lines: prediction lines read.
        duplicates: lines repeating an id with the same prediction (ignored).
        files: the files read, with their format.
    """

    by_id: dict[str, str | None] = field(default_factory=dict)
    by_text: list[tuple[str, str, str, str]] = field(default_factory=list)
    lines: int = 0
    duplicates: int = 0
    files: list[dict[str, str]] = field(default_factory=list)

    def add(self, ident: str, prediction: str | None, where: str, *, line: bool = True
            ) -> None:
        """Record one prediction, refusing a second, different one for the same id."""
        self.lines += line
        if ident in self.by_id:
            if self.by_id[ident] != prediction:
                raise PredictionsError(
                    f"{where}: id {ident!r} again with another prediction "
                    f"({self.by_id[ident]!r} then {prediction!r}); keep one line per id")
            self.duplicates += 1
            return
        self.by_id[ident] = prediction

    def join_texts(self, vqa_rows: Sequence[Mapping[str, Any]]) -> int:
        """Give the CSV rows the ids of the VQA rows they answer; return how many found none.

        A CSV row matches a row of the same image key and question (case and a trailing
        period aside), and the same ground truth when several match; rows repeating the same
        question and answer on one image are matched in order.
        """
        if not self.by_text:
            return 0
        index: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
        for row in vqa_rows:
            index[(row["key"], normalize_answer(row["question"]))].append(row)
        used: set[str] = set()
        unknown = 0
        for key, question, truth, prediction in self.by_text:
            cands = [r for r in index.get((key, normalize_answer(question)), ())
                     if r["id"] not in used]
            if len(cands) > 1:
                same = [r for r in cands if normalize_answer(r["answer"]) ==
                        normalize_answer(truth)]
                cands = same or cands
            if not cands:
                unknown += 1
                continue
            used.add(cands[0]["id"])
            self.add(cands[0]["id"], prediction, "authors' CSV", line=False)
        self.by_text = []
        return unknown


def export_ids(export: str | Path, lines: int) -> list[str]:
    """Return the row ids of a ``sarlang-data export`` folder, in row order.

    Args:
        export: the export's folder (holds ``dataset_info.json`` and ``{split}.ids.txt``).
        lines: how many prediction lines are to be joined (picks the ids file when there
            are several).

    Returns:
        The ids, one per exported row.

    Raises:
        PredictionsError: no ids file, or none with ``lines`` ids.
    """
    folder = Path(export)
    files = sorted(folder.glob("*.ids.txt"))
    if not files:
        raise PredictionsError(f"export={str(folder)!r}: no *.ids.txt; pass the folder "
                               "`sarlang-data export ... --format llamafactory` wrote")
    lists = {f: f.read_text(encoding="utf-8").split() for f in files}
    fits = [f for f, ids in lists.items() if len(ids) == lines]
    if len(fits) != 1:
        sizes = ", ".join(f"{f.name}: {len(ids)}" for f, ids in lists.items())
        raise PredictionsError(
            f"export={str(folder)!r}: {lines} prediction lines, but the ids files hold "
            f"{sizes}; predict on the export's whole data file, or pass its own export folder")
    return lists[fits[0]]


def read_predictions(paths: Iterable[str | Path], *, export: str | Path | None = None
                     ) -> Predictions:
    """Read prediction files of any of the three formats (see the module docstring).

    Args:
        paths: files; ``.csv`` is the authors' result CSV, anything else JSON lines.
        export: the export folder LLaMA-Factory predicted on (needed for its
            ``generated_predictions.jsonl``).

    Returns:
        The predictions.

    Raises:
        PredictionsError: an unreadable line, a LLaMA-Factory file without ``export``, a
            conflicting duplicate id.
    """
    preds = Predictions()
    for path in map(Path, paths):
        if not path.is_file():
            raise PredictionsError(f"predictions={str(path)!r}: no such file")
        if path.suffix.lower() == ".csv":
            _read_csv(path, preds)
        else:
            _read_jsonl(path, preds, export)
    return preds


def _read_jsonl(path: Path, preds: Predictions, export: str | Path | None) -> None:
    records = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    raise ValueError("not an object")
            except ValueError as e:
                raise PredictionsError(f"{path}:{n}: not a JSON object ({e}); every line must "
                                       'be {"id": ..., "prediction": ...}') from None
            records.append((n, rec))
    if not records:
        preds.files.append({"path": str(path), "format": "empty"})
        return
    if "id" in records[0][1]:
        for n, rec in records:
            ident, pred = rec.get("id"), rec.get("prediction")
            if not isinstance(ident, str) or not (pred is None or isinstance(pred, str)):
                raise PredictionsError(f"{path}:{n}: needs a string 'id' and a string (or null) "
                                       f"'prediction', got {json.dumps(rec)[:120]}")
            preds.add(ident, pred, f"{path}:{n}")
        preds.files.append({"path": str(path), "format": "jsonl"})
        return
    if "predict" in records[0][1]:
        if export is None:
            raise PredictionsError(
                f"{path}: LLaMA-Factory predictions (predict/label lines) carry no ids; pass "
                "--export DIR, the folder `sarlang-data export` wrote for that run")
        ids = export_ids(export, len(records))
        for (n, rec), ident in zip(records, ids, strict=True):
            preds.add(ident, rec.get("predict"), f"{path}:{n}")
        preds.files.append({"path": str(path), "format": "llamafactory",
                            "export": str(export)})
        return
    raise PredictionsError(f"{path}:{records[0][0]}: lines have neither 'id' nor 'predict' "
                           f"(keys {sorted(records[0][1])}); write "
                           '{"id": ..., "prediction": ...} lines')


def _read_csv(path: Path, preds: Predictions) -> None:
    with open(path, encoding="utf-8", newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    if rows and not rows[0][0].strip().lower().endswith(_IMAGE_SUFFIXES):
        rows = rows[1:]  # a header line
    for n, row in enumerate(rows, 1):
        if len(row) < 4:
            raise PredictionsError(f"{path}: row {n} has {len(row)} columns; the authors' "
                                   "result CSV has image, prediction, question, ground truth")
        image, prediction, question, truth = (c.strip() for c in row[:4])
        try:
            key = key_for_stem(Path(image).stem)
        except ValueError as e:
            raise PredictionsError(f"{path}: row {n}: {e}") from None
        preds.by_text.append((key, question, truth, prediction))
        preds.lines += 1
    preds.files.append({"path": str(path), "format": "authors-csv"})
