"""Offline HTML report of a fitted model's evaluation: metric tables plus PNG figures beside the HTML file.

The report is ``<directory>/report.html``; its figures are ``<directory>/figures/*.png`` referenced by relative
links, so the folder can be copied (e.g. beside a bundle) and opened in any browser without a network.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from oncohabitat_training.modelling.evaluation import ClassifierEvaluation, SurvivalEvaluation
from oncohabitat_training.modelling.figures import (
    classifier_figures,
    coefficients_figure,
    save_png,
    survival_figures,
)

REPORT_NAME = "report.html"
FIGURES_DIR = "figures"

_STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #bbb;padding:3px 8px;"
    "text-align:left;font-size:0.9em}figure{display:inline-block;margin:0.5em}figcaption{font-size:0.8em}"
)


@dataclass(frozen=True)
class EvaluationReport:
    """What a report shows: a title, the model's coefficients, one evaluation per patient set, free-text notes."""

    title: str
    evaluations: Sequence[SurvivalEvaluation | ClassifierEvaluation]
    coefficients: pd.Series | None = None
    notes: Mapping[str, str] = field(default_factory=dict)


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"  # NaN check without numpy


def _table(rows: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _survival_rows(ev: SurvivalEvaluation) -> list[tuple[str, str]]:
    c, hr = ev.harrell, ev.hazard_ratio
    return [
        ("patients / events", f"{ev.n} / {ev.events}"),
        ("Harrell's C (bootstrap 95 % CI)", f"{_fmt(c.estimate)} ({_fmt(c.lower)}-{_fmt(c.upper)}, n={c.n_valid})"),
        (f"Uno's C (tau = {ev.horizon:g})", _fmt(ev.uno)),
        (f"time-dependent AUC at {ev.horizon:g}", _fmt(ev.roc.auc)),
        ("cutoff (high = score > cutoff)", f"{ev.cutoff:.6g}"),
        ("group sizes", ", ".join(f"{k}: {km.n} ({km.events} events)" for k, km in ev.groups.items())),
        ("log-rank", f"chi2 = {_fmt(ev.logrank.chisq, 2)}, p = {ev.logrank.p:.3g}"),
        ("HR high vs low (95 % CI)", f"{_fmt(hr.hr, 2)} ({_fmt(hr.lower, 2)}-{_fmt(hr.upper, 2)}), p = {hr.p:.3g}"),
    ]


def _classifier_rows(ev: ClassifierEvaluation) -> list[tuple[str, str]]:
    a, b, m = ev.auc, ev.auc_bootstrap, ev.confusion
    return [
        ("patients / positives", f"{ev.n} / {ev.positives}"),
        ("AUC (DeLong 95 % CI)", f"{_fmt(a.auc)} ({_fmt(a.lower)}-{_fmt(a.upper)})"),
        ("AUC bootstrap 95 % CI", f"{_fmt(b.lower)}-{_fmt(b.upper)} (n={b.n_valid})"),
        ("cutoff (positive = probability > cutoff)", f"{m.cutoff:g}"),
        ("sensitivity / specificity", f"{_fmt(m.sensitivity)} / {_fmt(m.specificity)}"),
        ("PPV / NPV", f"{_fmt(m.ppv)} / {_fmt(m.npv)}"),
        ("TP / FP / TN / FN", f"{m.tp} / {m.fp} / {m.tn} / {m.fn}"),
    ]


def _figures_html(figures: Mapping[str, Path], root: Path) -> str:
    parts = []
    for caption, path in figures.items():
        rel = path.relative_to(root).as_posix()
        parts.append(
            f'<figure><img src="{html.escape(rel)}" alt="{html.escape(caption)}" width="500">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    return "".join(parts)


def write_report(report: EvaluationReport, directory: Path) -> Path:
    """Write ``report.html`` and its PNG figures under ``directory`` (created); returns the HTML path."""
    directory.mkdir(parents=True, exist_ok=True)
    fig_dir = directory / FIGURES_DIR
    sections = [f"<h1>{html.escape(report.title)}</h1>"]
    if report.notes:
        sections.append(_table(list(report.notes.items())))
    if report.coefficients is not None and not report.coefficients.empty:
        coef_png = save_png(coefficients_figure(report.coefficients), fig_dir / "coefficients.png")
        rows = [(str(k), f"{v:.6g}") for k, v in report.coefficients.items()]
        sections.append("<h2>Coefficients</h2>" + _table(rows) + _figures_html({"coefficients": coef_png}, directory))
    for i, ev in enumerate(report.evaluations):
        prefix = f"{i:02d}_{''.join(ch if ch.isalnum() else '_' for ch in ev.name)}"
        if isinstance(ev, SurvivalEvaluation):
            rows, figs = _survival_rows(ev), survival_figures(ev, fig_dir, prefix)
        else:
            rows, figs = _classifier_rows(ev), classifier_figures(ev, fig_dir, prefix)
        sections.append(f"<h2>{html.escape(ev.name)}</h2>" + _table(rows) + _figures_html(figs, directory))
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(report.title)}</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )
    path = directory / REPORT_NAME
    path.write_text(page, encoding="utf-8")
    return path
