"""Public path of the webdataset pipeline: ``sarlang_data.wds.pipeline``.

The code is in :mod:`sarlang_data.adapters.wds`; this module only re-exports it.
"""

from .adapters.wds import SarlangPipeline, pipeline

__all__ = ["SarlangPipeline", "pipeline"]
