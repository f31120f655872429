"""Reading: shards -> samples, who reads what, order and resume, samples -> rows.

:mod:`.reader` (tar shards -> samples), :mod:`.partition` (ranks, workers, equalize),
:mod:`.shuffle` (shuffle buffer, exact resume state), :mod:`.views` (samples -> config rows).
"""
