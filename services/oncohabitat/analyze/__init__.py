"""``oncohabitat analyze DIR``: the whole pipeline in one process on a folder of DICOM files, no servers.

:mod:`.inprocess` adapts each worker service's servicer to its stub; :mod:`.workers` builds them and the
pipeline context; :mod:`.run` runs the orchestrator's own stages through a job store and runner in the output
folder and writes ``result.json``, the SEG, the SR and the key-image PDF.
"""
