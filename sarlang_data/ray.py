"""The public path ``sarlang_data.ray.read``: Ray Data over a dataset root (re-exports only).

See :mod:`sarlang_data.adapters.ray`.
"""

from .adapters.ray import make_datasource, read

__all__ = ["make_datasource", "read"]
