"""Hugging Face ``datasets`` integration: the builder, ``load_dataset``, Features, the streams.

One builder class, :class:`SarlangBuilder` (:mod:`.builder`), serves every route:
:func:`load_dataset` (:mod:`.load`, datasets 3.x to 5.x), ``loading_script.py`` at the repo root
(datasets 3.x, ``trust_remote_code=True``), and through them TRL and LLaMA-Factory. The column
types of every config are in :mod:`.features`; streaming datasets are
:class:`SarlangIterableDataset` (:mod:`.iterable`).
"""

from .builder import (
    BUILDER_VERSION,
    DATASET_ALIAS,
    DATASET_NAME,
    ENV_ROOT,
    SarlangBuilder,
    SarlangConfig,
    preview_root,
    resolve_root,
)
from .features import features_for
from .load import load_dataset

__all__ = [
    "BUILDER_VERSION",
    "DATASET_ALIAS",
    "DATASET_NAME",
    "ENV_ROOT",
    "SarlangBuilder",
    "SarlangConfig",
    "features_for",
    "load_dataset",
    "preview_root",
    "resolve_root",
]
