"""sarlang-data: SARLANG-1M as a streaming dataset package.

Public entry points are imported lazily (on first use) so ``import sarlang_data`` stays cheap;
:data:`_LAZY` says where each lives. The package's layers are described in
``docs/architecture.md``.
"""

from __future__ import annotations

import importlib

from ._version import __version__

#: public name -> the module that defines it
_LAZY = {
    "load_dataset": "sarlang_data.adapters.hf",
    "download": "sarlang_data.hub",
    "publish": "sarlang_data.hub",
    "verify": "sarlang_data.format.verify",
    "stats": "sarlang_data.format.stats",
    "plot": "sarlang_data.viz.figures",
    "SARLANG1M": "sarlang_data.adapters.torchgeo",
    "evaluate": "sarlang_data.benchmark",
    "predict": "sarlang_data.benchmark",
    "export": "sarlang_data.adapters.export",
    "write_stock": "sarlang_data.adapters.stock",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sarlang_data' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
