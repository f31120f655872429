"""Seeing the data: one sample with its boxes, statistics charts, the contact sheet.

:mod:`.figures` (``plot`` of a sample, a row of any config or a ``SARLANG1M`` item; ``save``;
``show_sample``, behind ``sarlang-data show``), :mod:`.charts` (``sarlang-data stats --plot``).
The card's own pictures (contact sheet, main chart) are drawn in
:mod:`sarlang_data.format.pictures`, one layer down, because the build writes them.
"""

from ..format.pictures import contact_sheet, stretch
from .charts import CHARTS, stats_figures, write_stats_plots
from .figures import plot, position_cell, save, show_sample

__all__ = ["CHARTS", "contact_sheet", "plot", "position_cell", "save", "show_sample",
           "stats_figures", "stretch", "write_stats_plots"]
