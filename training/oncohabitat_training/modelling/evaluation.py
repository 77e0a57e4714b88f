"""Evaluation of a fitted score on one patient set (training, internal validation or external), as result objects.

A survival score is summarised by Harrell's C (with a bootstrap CI), Uno's C, the cumulative/dynamic AUC and ROC at
the horizon, Kaplan-Meier curves of the low/high groups at the cutoff with their log-rank p, the high-vs-low hazard
ratio, calibration at the horizon and a decision curve. A classifier is summarised by its AUC (DeLong CI and a
bootstrap CI), ROC curve, sensitivity/specificity at the probability cutoff, a calibration curve and a decision
curve. The report writer (:mod:`~oncohabitat_training.modelling.report`) renders either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_curve

from oncohabitat_training.modelling.bootstrap import BootstrapInterval, bootstrap_ci
from oncohabitat_training.modelling.classifier_metrics import AucResult, ConfusionAtCutoff, confusion_at, delong_auc
from oncohabitat_training.modelling.cutoffs import TimeDependentRoc, apply_cutoff, time_dependent_roc
from oncohabitat_training.modelling.data import FloatArray, event_and_time
from oncohabitat_training.modelling.decision_curve import DecisionCurve, net_benefit, net_benefit_survival
from oncohabitat_training.modelling.survival_metrics import (
    Calibration,
    HazardRatio,
    KaplanMeier,
    LogRank,
    calibration_at,
    harrell_c,
    hazard_ratio,
    km_by_group,
    logrank,
    uno_c,
)

DEFAULT_THRESHOLDS = np.round(np.arange(0.01, 1.0, 0.01), 2)


@dataclass(frozen=True)
class SurvivalEvaluation:
    """Evaluation of a survival risk score on one set (``name``: e.g. "training", "validation", "external")."""

    name: str
    n: int
    events: int
    horizon: float
    cutoff: float
    harrell: BootstrapInterval
    uno: float
    roc: TimeDependentRoc
    groups: dict[str, KaplanMeier]
    logrank: LogRank
    hazard_ratio: HazardRatio
    calibration: Calibration | None
    decision_curve: DecisionCurve | None


def evaluate_survival(
    name: str,
    y_train: npt.NDArray[np.void],
    y: npt.NDArray[np.void],
    score: npt.ArrayLike,
    *,
    cutoff: float,
    horizon: float,
    seed: int,
    event_prob: npt.ArrayLike | None = None,
    n_boot: int = 200,
    thresholds: npt.ArrayLike = DEFAULT_THRESHOLDS,
) -> SurvivalEvaluation:
    """Evaluate a risk ``score`` (higher = worse) on outcome ``y``.

    Parameters
    ----------
    name : str
        Label of the set.
    y_train : structured array
        Training outcome (censoring distribution for Uno's C and the time-dependent ROC).
    y : structured array
        Outcome of the evaluated set.
    score : array-like
        Risk score of the evaluated patients.
    cutoff : float
        Fixed (on training) cutoff: high risk = score > cutoff.
    horizon : float
        Time (outcome unit) for the ROC, calibration and decision curve; Uno's C is truncated there too.
    seed : int
        Seed of the bootstrap.
    event_prob : array-like, optional
        Predicted probability of the event by ``horizon``; enables calibration and the decision curve.
    n_boot : int
        Bootstrap resamples for the C-index CI (stratified on the event indicator).
    thresholds : array-like
        Threshold probabilities of the decision curve.
    """
    s = np.asarray(score, dtype=np.float64)
    event, _ = event_and_time(y)

    def c_of(idx: npt.NDArray[np.int64]) -> float:
        return harrell_c(y[idx], s[idx])

    high = apply_cutoff(s, cutoff)
    labels = np.where(high, "high", "low")
    calib = dec = None
    if event_prob is not None:
        p = np.asarray(event_prob, dtype=np.float64)
        calib = calibration_at(y, p, horizon)
        dec = net_benefit_survival(y, p, horizon, thresholds)
    return SurvivalEvaluation(
        name=name,
        n=int(s.size),
        events=int(event.sum()),
        horizon=horizon,
        cutoff=cutoff,
        harrell=bootstrap_ci(c_of, s.size, seed=seed, n_boot=n_boot, strata=event),
        uno=uno_c(y_train, y, s, tau=horizon),
        roc=time_dependent_roc(y_train, y, s, horizon),
        groups=km_by_group(y, labels),
        logrank=logrank(y, labels) if 0 < high.sum() < s.size else LogRank(0.0, 1, float("nan")),
        hazard_ratio=hazard_ratio(y, high.astype(np.float64)) if 0 < high.sum() < s.size else _nan_hr(),
        calibration=calib,
        decision_curve=dec,
    )


def _nan_hr() -> HazardRatio:
    nan = float("nan")
    return HazardRatio(nan, nan, nan, nan, 0.95)


@dataclass(frozen=True)
class ClassifierEvaluation:
    """Evaluation of a predicted probability of a binary outcome on one set."""

    name: str
    n: int
    positives: int
    auc: AucResult
    auc_bootstrap: BootstrapInterval
    fpr: FloatArray
    tpr: FloatArray
    confusion: ConfusionAtCutoff
    calibration_predicted: FloatArray
    calibration_observed: FloatArray
    decision_curve: DecisionCurve


def evaluate_classifier(
    name: str,
    outcome: npt.ArrayLike,
    probability: npt.ArrayLike,
    *,
    cutoff: float,
    seed: int,
    n_boot: int = 200,
    n_bins: int = 10,
    thresholds: npt.ArrayLike = DEFAULT_THRESHOLDS,
) -> ClassifierEvaluation:
    """Evaluate ``probability`` of the positive class against ``outcome`` (0/1); positive = probability > cutoff."""
    y = np.asarray(outcome).astype(int)
    p = np.asarray(probability, dtype=np.float64)

    def auc_of(idx: npt.NDArray[np.int64]) -> float:
        return delong_auc(y[idx], p[idx]).auc

    fpr, tpr, _ = roc_curve(y, p)
    observed, predicted = calibration_curve(y, p, n_bins=n_bins, strategy="quantile")
    return ClassifierEvaluation(
        name=name,
        n=int(y.size),
        positives=int(y.sum()),
        auc=delong_auc(y, p),
        auc_bootstrap=bootstrap_ci(auc_of, y.size, seed=seed, n_boot=n_boot, strata=y),
        fpr=np.asarray(fpr, dtype=np.float64),
        tpr=np.asarray(tpr, dtype=np.float64),
        confusion=confusion_at(y, p, cutoff),
        calibration_predicted=np.asarray(predicted, dtype=np.float64),
        calibration_observed=np.asarray(observed, dtype=np.float64),
        decision_curve=net_benefit(y, p, thresholds),
    )
