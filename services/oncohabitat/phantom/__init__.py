"""Synthetic breast DCE-MRI (and contrast CT) study generator with ground truth: the project's test asset.

Public API: :func:`generate_study`, :func:`generate_cohort`, :func:`generate_ct_study` and their result
dataclasses; the typer sub-app is :data:`oncohabitat.phantom.cli.app`.
"""

from oncohabitat.phantom.anatomy import Tissue
from oncohabitat.phantom.cohort import PhantomCohort, generate_cohort, linear_predictor
from oncohabitat.phantom.ct import PhantomCtStudy, generate_ct_study
from oncohabitat.phantom.errors import PhantomError
from oncohabitat.phantom.ground_truth import GroundTruthPaths
from oncohabitat.phantom.kinetics import COMPARTMENT_NAMES, EnhancementCurve, kinetic_parameters
from oncohabitat.phantom.lesion import LesionParams, LesionTruth
from oncohabitat.phantom.presets import SIZES, SizePreset, get_preset
from oncohabitat.phantom.study import PhantomStudy, generate_study

__all__ = [
    "COMPARTMENT_NAMES",
    "SIZES",
    "EnhancementCurve",
    "GroundTruthPaths",
    "LesionParams",
    "LesionTruth",
    "PhantomCohort",
    "PhantomCtStudy",
    "PhantomError",
    "PhantomStudy",
    "SizePreset",
    "Tissue",
    "generate_cohort",
    "generate_ct_study",
    "generate_study",
    "get_preset",
    "kinetic_parameters",
    "linear_predictor",
]
