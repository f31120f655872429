"""Public path of the ``datasets`` integration, as published loading scripts import it.

The code is in :mod:`sarlang_data.adapters.hf`; this module only re-exports it.
"""

from .adapters.hf import SarlangBuilder, SarlangConfig, features_for, load_dataset

__all__ = ["SarlangBuilder", "SarlangConfig", "features_for", "load_dataset"]
