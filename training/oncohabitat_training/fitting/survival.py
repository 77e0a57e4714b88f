"""Recipe model ``cox`` (papers 000 / 003, seed-001 DFS): screen -> LASSO-Cox CV -> Cox model -> cutoff.

Training rows only: z-score and screen (:mod:`.steps`), LASSO-Cox with K-fold CV at lambda_min or lambda_1se;
then either an unpenalised Cox refit on the selected z-scored features (``refit: cox``) or the LASSO score
scaled by its Cox calibration (``refit: calibrate``, the radscore of 000/003). With covariates the nomogram
(Cox on the imaging linear predictor + covariates) is the primary head and the imaging model its fallback.
Baseline survival S0(t) (Breslow) at the recipe's horizons (outcome time unit).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from oncohabitat_training.fitting.cutoff import choose_cutoff
from oncohabitat_training.fitting.heads import FitResult, LinearFit, RiskRule
from oncohabitat_training.fitting.inputs import FitInputs
from oncohabitat_training.fitting.schema import CoxModel, SurvivalOutcome
from oncohabitat_training.fitting.steps import preselect
from oncohabitat_training.modelling.cox import CoxFit, fit_cox
from oncohabitat_training.modelling.evaluation import SurvivalEvaluation, evaluate_survival
from oncohabitat_training.modelling.lasso_cox import fit_lasso_cox_cv

LP_COLUMN = "imaging_lp"


def _baseline(fit: CoxFit, horizons: Sequence[float]) -> tuple[tuple[float, float], ...]:
    return tuple((float(t), float(s)) for t, s in zip(horizons, fit.baseline_at(horizons), strict=True))


def _imaging_head(inputs: FitInputs, spec: CoxModel, outcome: SurvivalOutcome) -> tuple[LinearFit, dict]:
    recipe = inputs.recipe
    y = inputs.survival("train", outcome)
    pre = preselect(inputs.train, inputs.candidates, recipe.selection, survival=y, second_reader=inputs.second_reader)
    z = pre.standardiser.transform(inputs.train)
    lasso = fit_lasso_cox_cv(z, pre.features, y, seed=recipe.seed, n_folds=spec.folds)
    coef = lasso.coefficients(spec.penalty)
    if coef.empty:
        coef = lasso.coefficients("min")
    if coef.empty:
        raise ValueError("LASSO-Cox selected no feature at lambda_min")
    selected = list(coef.index)
    if spec.refit == "cox":
        fit = fit_cox(z, selected, y)
        feature_coef = np.asarray(fit.coef, dtype=np.float64)
    else:
        score = z.loc[:, selected].to_numpy(dtype=np.float64) @ coef.to_numpy()
        fit = fit_cox(pd.DataFrame({LP_COLUMN: score}), [LP_COLUMN], y)
        feature_coef = coef.to_numpy() * float(fit.coef[0])
    index = [pre.standardiser.features.index(name) for name in selected]
    head = LinearFit(
        "cox",
        tuple(selected),
        pre.standardiser.mean[index],
        pre.standardiser.scale[index],
        feature_coef,
        baseline=_baseline(fit, outcome.horizons),
    )
    log = {
        **pre.log,
        "lasso": {
            "alpha_min": lasso.alpha_min,
            "alpha_1se": lasso.alpha_1se,
            "penalty": spec.penalty,
            "selected": {k: float(v) for k, v in coef.items()},
        },
        "refit": spec.refit,
    }
    return head, log


def _nomogram(inputs: FitInputs, imaging: LinearFit, outcome: SurvivalOutcome) -> LinearFit:
    y = inputs.survival("train", outcome)
    covariates = inputs.covariates["train"]
    data = covariates.copy()
    data.insert(0, LP_COLUMN, imaging.linear_predictor(inputs.train))
    fit = fit_cox(data, [LP_COLUMN, *covariates.columns], y)
    return LinearFit(
        "cox",
        imaging.features,
        imaging.mean,
        imaging.std,
        imaging.feature_coef * float(fit.coef[0]),
        tuple(covariates.columns),
        np.asarray(fit.coef[1:], dtype=np.float64),
        baseline=_baseline(fit, outcome.horizons),
    )


def evaluate_cox(
    inputs: FitInputs, head: LinearFit, rule: RiskRule, outcome: SurvivalOutcome, tag: str = ""
) -> tuple[list[SurvivalEvaluation], list[dict]]:
    """Evaluation of a Cox head on every split (C-indexes, td-AUC, KM / log-rank, HR, calibration)."""
    recipe = inputs.recipe
    horizon = outcome.horizons[0]
    y_train = inputs.survival("train", outcome)
    evaluations, figures = [], []
    for split, rows in inputs.splits.items():
        y = inputs.survival(split, outcome)
        predictions = head.predict(rows, inputs.covariates[split] if head.covariate_columns else None)
        event_prob = 1.0 - predictions.survival[:, 0] if predictions.survival is not None else None
        ev = evaluate_survival(
            f"{split}{tag}",
            y_train,
            y,
            predictions.score,
            cutoff=rule.cutoff,
            horizon=horizon,
            seed=recipe.seed,
            event_prob=event_prob,
            n_boot=recipe.n_boot,
        )
        evaluations.append(ev)
        figures += survival_figures(ev, f"{split}{tag}")
    return evaluations, figures


def survival_figures(ev: SurvivalEvaluation, dataset: str) -> list[dict]:
    """Manifest evaluation figures of one survival evaluation (NaN ones left out)."""
    values = [
        ("harrell_c_index", ev.harrell.estimate, None),
        ("uno_c_index", ev.uno, f"truncated at {ev.horizon:g}"),
        ("td_auc", ev.roc.auc, f"at {ev.horizon:g}"),
        ("logrank_p", ev.logrank.p, "risk groups at the training cutoff"),
        ("hazard_ratio", ev.hazard_ratio.hr, "high vs low risk group"),
    ]
    return [
        {"metric": m, "value": float(v), "dataset": dataset, **({"note": note} if note else {})}
        for m, v, note in values
        if np.isfinite(v)
    ]


def fit_cox_recipe(inputs: FitInputs) -> FitResult:
    """Fit the recipe's Cox model (see the module docstring)."""
    recipe = inputs.recipe
    spec, outcome = recipe.model, recipe.outcome
    assert isinstance(spec, CoxModel) and isinstance(outcome, SurvivalOutcome)
    imaging, log = _imaging_head(inputs, spec, outcome)
    y = inputs.survival("train", outcome)

    def rule_for(head: LinearFit, covariates: pd.DataFrame | None) -> RiskRule:
        score: npt.NDArray[np.float64] = head.predict(inputs.train, covariates).score
        cut = choose_cutoff(recipe.cutoff, score, survival=y)
        return RiskRule("score", cut, recipe.cutoff.labels, recipe.cutoff.direction)

    imaging_rule = rule_for(imaging, None)
    evaluations, figures = evaluate_cox(
        inputs, imaging, imaging_rule, outcome, "" if not recipe.covariates else " (imaging)"
    )
    if not recipe.covariates:
        return FitResult(imaging, imaging_rule, evaluations=evaluations, figures=figures, selection=log)
    nomogram = _nomogram(inputs, imaging, outcome)
    rule = rule_for(nomogram, inputs.covariates["train"])
    more, more_figures = evaluate_cox(inputs, nomogram, rule, outcome, " (nomogram)")
    return FitResult(
        nomogram,
        rule,
        fallback=imaging,
        fallback_rule=imaging_rule,
        evaluations=[*more, *evaluations],
        figures=[*more_figures, *figures],
        selection=log,
    )
