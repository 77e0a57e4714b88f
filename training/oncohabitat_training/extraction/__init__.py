"""Training extraction: a cohort file -> load -> segmentation -> regions -> full-extraction features -> one table.

:mod:`.profile` (what is extracted: ``dce-default`` or a profile / plan file), :mod:`.loading`, :mod:`.segment`,
:mod:`.patient` (one patient, in-process library calls), :mod:`.parts` (durable per-patient results: resume),
:mod:`.executors` (this process, local processes, Dask), :mod:`.table` (Parquet), :mod:`.run` (the run).
"""
