"""Matplotlib figures of an evaluation (Agg backend, no display needed), written as PNG files.

PNGs are written without the "Software" metadata field so that the same figure data give the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from oncohabitat_training.modelling.decision_curve import DecisionCurve
from oncohabitat_training.modelling.evaluation import ClassifierEvaluation, SurvivalEvaluation

FIGSIZE = (5.0, 4.0)  # inches
DPI = 100


def save_png(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG at :data:`DPI` (no software metadata) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return path


def kaplan_meier_figure(ev: SurvivalEvaluation) -> Figure:
    """Kaplan-Meier curves of the risk groups with log-log 95 % bands and the log-rank p in the title."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for label, km in ev.groups.items():
        t = np.concatenate([[0.0], km.time])
        line = ax.step(t, np.concatenate([[1.0], km.survival]), where="post", label=f"{label} (n={km.n})")[0]
        ax.fill_between(
            t,
            np.concatenate([[1.0], km.lower]),
            np.concatenate([[1.0], km.upper]),
            step="post",
            alpha=0.15,
            color=line.get_color(),
        )
    ax.set_xlabel("time (outcome unit)")
    ax.set_ylabel("survival probability")
    ax.set_ylim(0.0, 1.02)
    ax.set_title(f"{ev.name}: Kaplan-Meier by risk group\nlog-rank p = {ev.logrank.p:.2g}", fontsize=10)
    ax.legend(loc="lower left")
    fig.tight_layout()
    return fig


def roc_figure(fpr: np.ndarray, tpr: np.ndarray, auc: float, title: str) -> Figure:
    """ROC curve (1 - specificity vs sensitivity) with the chance diagonal."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.plot(fpr, tpr, drawstyle="steps-post", label=f"AUC = {auc:.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def survival_roc_figure(ev: SurvivalEvaluation) -> Figure:
    """Cumulative/dynamic ROC at the horizon with the Youden cutoff point marked."""
    fig = roc_figure(1.0 - ev.roc.specificity, ev.roc.sensitivity, ev.roc.auc, f"{ev.name}: ROC at t = {ev.horizon:g}")
    ax = fig.axes[0]
    j = int(np.argmin(np.abs(ev.roc.thresholds - ev.cutoff)))
    ax.plot(1.0 - ev.roc.specificity[j], ev.roc.sensitivity[j], "o", label=f"cutoff {ev.cutoff:.4g}")
    ax.legend(loc="lower right")
    return fig


def calibration_figure(predicted: np.ndarray, observed: np.ndarray, title: str) -> Figure:
    """Mean predicted vs observed probability per risk group, with the identity line."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.plot(predicted, observed, "o-")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed probability")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def decision_curve_figure(dc: DecisionCurve, title: str) -> Figure:
    """Net benefit of the model, treat-all and treat-none over the threshold probabilities."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.plot(dc.thresholds, dc.model, label="model")
    ax.plot(dc.thresholds, dc.treat_all, label="treat all", linestyle=":")
    ax.plot(dc.thresholds, dc.treat_none, label="treat none", color="black", linewidth=0.8)
    top = float(np.nanmax(np.concatenate([dc.model, dc.treat_all])))
    ax.set_ylim(-0.05, max(top, 0.0) * 1.1 + 0.01)
    ax.set_xlabel("threshold probability")
    ax.set_ylabel("net benefit")
    ax.set_title(title)
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig


def coefficients_figure(coefficients: pd.Series, title: str = "coefficients") -> Figure:
    """Horizontal bar chart of model coefficients, largest magnitude at the top."""
    coef = coefficients.reindex(coefficients.abs().sort_values().index)
    fig, ax = plt.subplots(figsize=(7.0, 0.35 * len(coef) + 1.2))
    ax.barh(range(len(coef)), coef.to_numpy(), color=["#c0392b" if v > 0 else "#2471a3" for v in coef])
    ax.set_yticks(range(len(coef)), [str(i) for i in coef.index], fontsize=7)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("coefficient")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def survival_figures(ev: SurvivalEvaluation, directory: Path, prefix: str) -> dict[str, Path]:
    """Write the figures of a survival evaluation; returns caption -> PNG path."""
    out = {
        "Kaplan-Meier": save_png(kaplan_meier_figure(ev), directory / f"{prefix}_km.png"),
        "time-dependent ROC": save_png(survival_roc_figure(ev), directory / f"{prefix}_roc.png"),
    }
    if ev.calibration is not None:
        cal = ev.calibration
        title = f"{ev.name}: calibration at t = {ev.horizon:g}"
        out["calibration"] = save_png(
            calibration_figure(cal.predicted, cal.observed, title), directory / f"{prefix}_calibration.png"
        )
    if ev.decision_curve is not None:
        title = f"{ev.name}: decision curve at t = {ev.horizon:g}"
        out["decision curve"] = save_png(
            decision_curve_figure(ev.decision_curve, title), directory / f"{prefix}_decision.png"
        )
    return out


def classifier_figures(ev: ClassifierEvaluation, directory: Path, prefix: str) -> dict[str, Path]:
    """Write the figures of a classifier evaluation; returns caption -> PNG path."""
    return {
        "ROC": save_png(roc_figure(ev.fpr, ev.tpr, ev.auc.auc, f"{ev.name}: ROC"), directory / f"{prefix}_roc.png"),
        "calibration": save_png(
            calibration_figure(ev.calibration_predicted, ev.calibration_observed, f"{ev.name}: calibration"),
            directory / f"{prefix}_calibration.png",
        ),
        "decision curve": save_png(
            decision_curve_figure(ev.decision_curve, f"{ev.name}: decision curve"),
            directory / f"{prefix}_decision.png",
        ),
    }
