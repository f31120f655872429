"""SARLANG-1M loading script for ``datasets`` 3.x (the version LLaMA-Factory pins).

``datasets`` >= 4 no longer runs loading scripts; there, use ``sarlang_data.load_dataset``,
which runs the very same builder. This file only names it, so both routes give the same rows::

    import datasets
    ds = datasets.load_dataset("loading_script.py", "vqa", streaming=True,
                               trust_remote_code=True, data_dir="/path/to/root")

``data_dir`` is a dataset root (local path or fsspec URL); without it, ``$SARLANG_DATA`` or
the bundled preview is read. Configs are those of ``sarlang_data.configs.CONFIGS``; the filters
``cities``, ``tiers``, ``sources`` and the options ``decode``, ``on_error``, ``chat_format``,
``chat_group`` and ``max_turns`` are passed as keyword arguments. The ``sarlang-data`` package
must be importable (``pip install sarlang-data``).
"""

import datasets  # noqa: F401 - datasets 3.x checks that a script's imports are installed

from sarlang_data.adapters.hf import SarlangBuilder


class Sarlang1M(SarlangBuilder):
    """SARLANG-1M from tar shards: see ``sarlang_data.adapters.hf.SarlangBuilder``."""
