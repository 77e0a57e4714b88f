"""Statistics core of the modelling recipes (issue 17): selection steps, models, cutoffs, evaluation, report.

Every function works on a plain feature table (:class:`pandas.DataFrame`, one row per patient, columns named by
the canonical feature grammar ``<region>/<image>/<feature>`` plus outcome columns), so the recipes plug into the
extraction output. Everything random takes an explicit integer ``seed``; the same inputs and seed give the same
result. scikit-survival (GPL) is imported only here, inside the training distribution, never by a service.
"""
