"""Recipe models ``logistic`` (paper 001) and ``random_forest`` (paper 004) on a binary outcome.

``logistic``: z-score -> Mann-Whitney screen -> |r| filter -> LASSO-logistic, K-fold CV with SMOTE on the
training folds only -> unpenalised logistic refit on the selected features (SMOTE-balanced training rows when
``smote``) -> VIF check (recorded; features are dropped, highest VIF first, until every VIF < limit). With
covariates the fusion model (imaging log-odds + covariates) is the primary head, the imaging model its fallback.
``random_forest``: screen -> r filter -> top-k -> seeded forest on raw values (exported to ONNX).
Probabilities are of outcome 1; cutoffs on the probability.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from oncohabitat_training.fitting.cutoff import choose_cutoff
from oncohabitat_training.fitting.heads import FitResult, ForestFit, LinearFit, RiskRule
from oncohabitat_training.fitting.inputs import FitInputs
from oncohabitat_training.fitting.schema import BinaryOutcome, LogisticModelSpec, RandomForestSpec
from oncohabitat_training.fitting.steps import preselect
from oncohabitat_training.fitting.table import binary_column
from oncohabitat_training.modelling.evaluation import ClassifierEvaluation, evaluate_classifier
from oncohabitat_training.modelling.forest import fit_random_forest
from oncohabitat_training.modelling.logistic import fit_lasso_logistic_cv, fit_logistic
from oncohabitat_training.modelling.selection import variance_inflation

LOGIT_COLUMN = "imaging_logit"


def _outcome(inputs: FitInputs, split: str) -> np.ndarray:
    outcome = inputs.recipe.outcome
    assert isinstance(outcome, BinaryOutcome)
    return binary_column(inputs.splits[split], outcome.column)


def _vif_prune(z: pd.DataFrame, features: list[str], limit: float | None) -> tuple[list[str], dict[str, float]]:
    kept = list(features)
    while limit is not None and len(kept) > 1:
        vif = variance_inflation(z, kept)
        if float(vif.max()) < limit:
            return kept, {k: float(v) for k, v in vif.items()}
        kept.remove(str(vif.idxmax()))
    vif = variance_inflation(z, kept) if len(kept) > 1 else pd.Series([1.0], index=kept)
    return kept, {k: float(v) for k, v in vif.items()}


def _logistic_head(inputs: FitInputs, spec: LogisticModelSpec) -> tuple[LinearFit, dict]:
    recipe = inputs.recipe
    y = _outcome(inputs, "train")
    pre = preselect(inputs.train, inputs.candidates, recipe.selection, binary=y, second_reader=inputs.second_reader)
    z = pre.standardiser.transform(inputs.train)
    lasso = fit_lasso_logistic_cv(z, pre.features, y, seed=recipe.seed, n_folds=spec.folds, use_smote=spec.smote)
    selected = lasso.selected(spec.penalty) or lasso.selected("min")
    if not selected:
        raise ValueError("LASSO-logistic selected no feature at lambda_min")
    selected, vif = _vif_prune(z, selected, spec.vif_limit)
    fit = fit_logistic(z, selected, y, seed=recipe.seed, use_smote=spec.smote)
    index = [pre.standardiser.features.index(name) for name in selected]
    head = LinearFit(
        "logistic",
        tuple(selected),
        pre.standardiser.mean[index],
        pre.standardiser.scale[index],
        np.asarray(fit.coef, dtype=np.float64),
        intercept=float(fit.intercept),
    )
    log = {**pre.log, "lasso_logistic": {"penalty": spec.penalty, "selected": lasso.selected(spec.penalty)}}
    return head, {**log, "vif": vif, "smote": spec.smote}


def _fusion(inputs: FitInputs, imaging: LinearFit, spec: LogisticModelSpec) -> LinearFit:
    y = _outcome(inputs, "train")
    covariates = inputs.covariates["train"]
    data = covariates.copy()
    data.insert(0, LOGIT_COLUMN, imaging.linear_predictor(inputs.train) - imaging.intercept)
    fit = fit_logistic(data, [LOGIT_COLUMN, *covariates.columns], y, seed=inputs.recipe.seed, use_smote=spec.smote)
    return LinearFit(
        "logistic",
        imaging.features,
        imaging.mean,
        imaging.std,
        imaging.feature_coef * float(fit.coef[0]),
        tuple(covariates.columns),
        np.asarray(fit.coef[1:], dtype=np.float64),
        intercept=float(fit.intercept),
    )


def evaluate_binary(
    inputs: FitInputs, head: LinearFit | ForestFit, rule: RiskRule, tag: str = ""
) -> tuple[list[ClassifierEvaluation], list[dict]]:
    """AUC (DeLong CI), sensitivity / specificity at the cutoff, calibration, net benefit per split."""
    evaluations, figures = [], []
    for split, rows in inputs.splits.items():
        uses_covariates = isinstance(head, LinearFit) and bool(head.covariate_columns)
        p = head.predict(rows, inputs.covariates[split] if uses_covariates else None).output("probability")
        y = _outcome(inputs, split)
        if y.min() == y.max():
            continue
        ev = evaluate_classifier(
            f"{split}{tag}", y, p, cutoff=rule.cutoff, seed=inputs.recipe.seed, n_boot=inputs.recipe.n_boot
        )
        evaluations.append(ev)
        for metric, value in (
            ("auc", ev.auc.auc),
            ("sensitivity", ev.confusion.sensitivity),
            ("specificity", ev.confusion.specificity),
        ):
            if np.isfinite(value):
                figures.append({"metric": metric, "value": float(value), "dataset": f"{split}{tag}"})
    return evaluations, figures


def _rule(inputs: FitInputs, head: LinearFit | ForestFit, covariates: pd.DataFrame | None) -> RiskRule:
    outcome = inputs.recipe.outcome
    assert isinstance(outcome, BinaryOutcome)
    p = head.predict(inputs.train, covariates).output("probability")
    cut = choose_cutoff(inputs.recipe.cutoff, p, binary=_outcome(inputs, "train"))
    return RiskRule("probability", cut, inputs.recipe.cutoff.labels, inputs.recipe.cutoff.direction)


def fit_logistic_recipe(inputs: FitInputs) -> FitResult:
    """Fit the recipe's logistic model (see the module docstring)."""
    spec = inputs.recipe.model
    assert isinstance(spec, LogisticModelSpec)
    imaging, log = _logistic_head(inputs, spec)
    imaging_rule = _rule(inputs, imaging, None)
    tag = " (imaging)" if inputs.recipe.covariates else ""
    evaluations, figures = evaluate_binary(inputs, imaging, imaging_rule, tag)
    if not inputs.recipe.covariates:
        return FitResult(imaging, imaging_rule, evaluations=evaluations, figures=figures, selection=log)
    fusion = _fusion(inputs, imaging, spec)
    rule = _rule(inputs, fusion, inputs.covariates["train"])
    more, more_figures = evaluate_binary(inputs, fusion, rule, " (fusion)")
    return FitResult(
        fusion,
        rule,
        fallback=imaging,
        fallback_rule=imaging_rule,
        evaluations=[*more, *evaluations],
        figures=[*more_figures, *figures],
        selection=log,
    )


def fit_forest_recipe(inputs: FitInputs) -> FitResult:
    """Fit the recipe's random forest (see the module docstring)."""
    recipe = inputs.recipe
    spec = recipe.model
    assert isinstance(spec, RandomForestSpec)
    y = _outcome(inputs, "train")
    pre = preselect(inputs.train, inputs.candidates, recipe.selection, binary=y, second_reader=inputs.second_reader)
    forest = fit_random_forest(
        inputs.train,
        pre.features,
        y,
        seed=recipe.seed,
        n_estimators=spec.n_estimators,
        min_samples_leaf=spec.min_samples_leaf,
    )
    if spec.max_depth is not None:
        forest.estimator.set_params(max_depth=spec.max_depth)
        forest.estimator.fit(inputs.train.loc[:, list(pre.features)].to_numpy(dtype=np.float64), y)
    head = ForestFit(tuple(pre.features), forest.estimator)
    rule = _rule(inputs, head, None)
    evaluations, figures = evaluate_binary(inputs, head, rule)
    log = {**pre.log, "importance": {k: float(v) for k, v in head.coefficients().items()}}
    return FitResult(head, rule, evaluations=evaluations, figures=figures, selection=log)
