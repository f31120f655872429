"""Public path of the PyTorch helpers: ``sarlang_data.torch.collate`` and friends.

The code is in :mod:`sarlang_data.adapters.torch`; this module only re-exports it (importing it
does not import torch).
"""

from .adapters.torch import ImageList, ResizeNormalize, collate, image_tensor

__all__ = ["ImageList", "ResizeNormalize", "collate", "image_tensor"]
