"""The benchmark half: predict with a model, score as the paper does, print its table.

:mod:`.metrics` (the VQA rule and caption scores: the one owner of every score),
:mod:`.judge` (judges for the VQA pairs the rule leaves undecided), :mod:`.inference`
(``predict``: a model over a split, local or on Ray), :mod:`.predictions` (prediction files
joined to the rows' ids), :mod:`.report` (``evaluate`` and the paper-style table) and
:mod:`.lmms` (the lmms-eval task folder; its functions are in :mod:`.lmms_eval_tasks`).
"""

from .inference import predict
from .lmms import write_task
from .report import evaluate, format_table

__all__ = ["evaluate", "format_table", "predict", "write_task"]
