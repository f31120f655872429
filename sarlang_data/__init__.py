"""sarlang-data: SARLANG-1M as a streaming dataset package.

Public entry points are imported lazily so ``import sarlang_data`` stays cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["load_dataset", "download", "__version__"]


def __getattr__(name: str):
    if name == "load_dataset":
        from .hf import load_dataset

        return load_dataset
    if name == "download":
        from .hub import download

        return download
    raise AttributeError(f"module 'sarlang_data' has no attribute {name!r}")
