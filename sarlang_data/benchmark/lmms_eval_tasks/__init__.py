"""The lmms-eval task functions (:mod:`.utils`); :mod:`sarlang_data.benchmark.lmms` writes tasks.

``sarlang-data lmms-eval-task --data ROOT --out DIR`` writes a folder with the ``sarlang_vqa``
and ``sarlang_caption`` YAMLs, their parquet rows and a ``utils.py`` importing :mod:`.utils`;
``lmms-eval --include_path DIR --tasks sarlang_vqa,sarlang_caption`` then runs them.
"""
