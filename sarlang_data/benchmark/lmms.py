"""Write an lmms-eval task folder for a split: ``sarlang_vqa`` and ``sarlang_caption``.

lmms-eval loads a task's rows with ``datasets.load_dataset`` and scores them with the
functions of the task folder's ``utils.py``. :func:`write_task` streams the split's ``vqa``
and ``captions`` rows into parquet files in the folder (images embedded as ``datasets``
Image structs, each row with its ``id``), writes the two YAMLs naming those files, and a
``utils.py`` that re-exports :mod:`sarlang_data.benchmark.lmms_eval_tasks.utils`, so the scores
come from :mod:`sarlang_data.benchmark.metrics`, the same as ``sarlang-data evaluate``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .lmms_eval_tasks.utils import KINDS, _metric_name
from .metrics import CAPTION_METRICS

TASKS = {"sarlang_vqa": "vqa", "sarlang_caption": "captions"}
_UTILS = '''"""lmms-eval task functions: sarlang-data's own (the metrics of evaluate)."""
from sarlang_data.benchmark.lmms_eval_tasks.utils import *  # noqa: F401,F403
'''


def _yaml(task: str, data_file: Path, split: str, max_new_tokens: int) -> str:
    head = [
        f"task: {task}",
        "dataset_path: parquet",
        "dataset_kwargs:",
        "  data_files:",
        f"    {split}: {str(data_file)!r}",
        f"test_split: {split}",
        "output_type: generate_until",
        "doc_to_visual: !function utils.doc_to_visual",
        "doc_to_target: " + ("answer" if task == "sarlang_vqa" else "caption"),
        "generation_kwargs:",
        f"  max_new_tokens: {max_new_tokens}",
        "  temperature: 0",
        "  do_sample: false",
        "metric_list:",
    ]
    if task == "sarlang_vqa":
        head[7:7] = ["doc_to_text: !function utils.vqa_doc_to_text"]
        metrics = [("sarlang_vqa_accuracy", "vqa_accuracy"), ("sarlang_vqa_upper", "vqa_upper")]
        results = "utils.vqa_process_results"
    else:
        head[7:7] = ["doc_to_text: !function utils.caption_doc_to_text"]
        metrics = [(_metric_name(k, m), f"aggregate_{_metric_name(k, m)}")
                   for k in KINDS for m in CAPTION_METRICS]
        results = "utils.caption_process_results"
    for name, agg in metrics:
        head += [f"  - metric: {name}", f"    aggregation: !function utils.{agg}",
                 "    higher_is_better: true"]
    head += [f"process_results: !function {results}", "metadata:", "  - version: 1.0", ""]
    return "\n".join(head)


def write_task(root: str | None, out: str | os.PathLike, *, split: str = "test",
               limit: int | None = None, max_new_tokens: int = 64,
               storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the lmms-eval task folder of a split.

    Args:
        root: dataset root, URL or Hub id (None: ``$SARLANG_DATA`` or the preview).
        out: the folder (created; files are written under temporary names, then renamed).
        split: the split to evaluate.
        limit: keep only the first rows of each task (a smoke test).
        max_new_tokens: the tasks' generation limit.
        storage_options: fsspec options for the root.

    Returns:
        ``{"folder", "tasks": {task: {"data_file", "rows"}}}``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..adapters.hf import features_for, load_dataset, resolve_root

    root = resolve_root(root or "sarlang-1m")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {"folder": str(out), "tasks": {}}
    for task, config in TASKS.items():
        features = features_for(config, decode=True)
        schema = features.arrow_schema
        target = out / f"{task}_{split}.parquet"
        tmp = target.with_name(target.name + ".tmp")
        rows = load_dataset(root, config, split=split, streaming=True, decode=False,
                            distributed=False, storage_options=storage_options)
        n = 0
        with pq.ParquetWriter(tmp, schema) as writer:
            chunk: list[dict[str, Any]] = []
            for row in rows:
                if limit is not None and n >= limit:
                    break
                chunk.append(row)
                n += 1
                if len(chunk) == 256:
                    writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                    chunk = []
            if chunk:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
        os.replace(tmp, target)
        yaml_path = out / f"{task}.yaml"
        yaml_path.with_name(yaml_path.name + ".tmp").write_text(
            _yaml(task, target.resolve(), split, max_new_tokens), encoding="utf-8")
        os.replace(yaml_path.with_name(yaml_path.name + ".tmp"), yaml_path)
        info["tasks"][task] = {"data_file": str(target), "rows": n}
    (out / "utils.py").write_text(_UTILS, encoding="utf-8")
    return info
