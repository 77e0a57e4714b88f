"""Cohort files for the modelling recipes: per patient an image source, masks, seed, covariates, outcomes, split.

:func:`read_cohort` / :func:`load_cohort` validate a CSV or YAML cohort file as a whole (:mod:`.reader`,
:mod:`.schema`); :mod:`.phantom` writes a cohort file for a phantom cohort folder. (The segmentation-training
cohort of NIfTI cases is :mod:`oncohabitat_training.cohort`, a different thing.)
"""

from oncohabitat_training.cohorts.problems import CohortFileError, CohortProblem
from oncohabitat_training.cohorts.reader import Cohort, CohortCheck, CohortPatient, load_cohort, read_cohort

__all__ = ["Cohort", "CohortCheck", "CohortFileError", "CohortPatient", "CohortProblem", "load_cohort", "read_cohort"]
