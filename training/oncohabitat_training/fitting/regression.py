"""Recipe model ``elastic_net`` (paper 002): |r| filter -> elastic net on a continuous target -> RFE -> cutoff.

Training rows only: z-score, optional screen, |r| > threshold filter (:mod:`.steps`); penalties (alpha,
l1_ratio) grid-searched under K-fold CV, recursive feature elimination (RFECV, or a fixed count), refit. The
predicted value (target unit) is split into risk groups by the maximally selected log-rank statistic against the
survival columns the outcome names (minimum group fraction from the recipe), or by another cutoff rule.
"""

from __future__ import annotations

import numpy as np

from oncohabitat_training.fitting.cutoff import choose_cutoff
from oncohabitat_training.fitting.heads import FitResult, LinearFit, RiskRule
from oncohabitat_training.fitting.inputs import FitInputs
from oncohabitat_training.fitting.schema import ContinuousOutcome, ElasticNetSpec
from oncohabitat_training.fitting.steps import preselect
from oncohabitat_training.fitting.survival import survival_figures
from oncohabitat_training.fitting.table import outcome_column
from oncohabitat_training.modelling.elastic_net import fit_elastic_net
from oncohabitat_training.modelling.evaluation import evaluate_survival


def fit_elastic_net_recipe(inputs: FitInputs) -> FitResult:
    """Fit the recipe's elastic net (see the module docstring)."""
    recipe = inputs.recipe
    spec, outcome = recipe.model, recipe.outcome
    assert isinstance(spec, ElasticNetSpec) and isinstance(outcome, ContinuousOutcome)
    target = outcome_column(inputs.train, outcome.column)
    pre = preselect(inputs.train, inputs.candidates, recipe.selection, second_reader=inputs.second_reader)
    z = pre.standardiser.transform(inputs.train)
    model = fit_elastic_net(
        z,
        pre.features,
        target,
        seed=recipe.seed,
        n_folds=spec.folds,
        l1_ratios=spec.l1_ratios,
        n_features=spec.n_features,
    )
    index = [pre.standardiser.features.index(name) for name in model.features]
    head = LinearFit(
        "elastic_net",
        tuple(model.features),
        pre.standardiser.mean[index],
        pre.standardiser.scale[index],
        np.asarray(model.coef, dtype=np.float64),
        intercept=float(model.intercept),
    )
    y_train = inputs.survival("train", outcome.survival) if outcome.survival is not None else None
    predicted = head.predict(inputs.train).output("predicted_value")
    rule = RiskRule(
        "predicted_value",
        choose_cutoff(recipe.cutoff, predicted, survival=y_train),
        recipe.cutoff.labels,
        recipe.cutoff.direction,
    )
    evaluations, figures = [], []
    for split, rows in inputs.splits.items():
        value = head.predict(rows).output("predicted_value")
        truth = outcome_column(rows, outcome.column)
        residual = truth - value
        r2 = 1.0 - float(residual @ residual) / float(((truth - truth.mean()) ** 2).sum())
        figures += [
            {"metric": "r_squared", "value": r2, "dataset": split},
            {"metric": "rmse", "value": float(np.sqrt(np.mean(residual**2))), "dataset": split, "note": outcome.unit},
        ]
        if outcome.survival is not None and y_train is not None:
            ev = evaluate_survival(
                split,
                y_train,
                inputs.survival(split, outcome.survival),
                value,
                cutoff=rule.cutoff,
                horizon=outcome.survival.horizons[0],
                seed=recipe.seed,
                n_boot=recipe.n_boot,
            )
            evaluations.append(ev)
            figures += survival_figures(ev, split)
    log = {
        **pre.log,
        "elastic_net": {
            "alpha": model.alpha,
            "l1_ratio": model.l1_ratio,
            "cv_mse": model.cv_mse,
            "eliminated": list(model.eliminated),
        },
    }
    return FitResult(head, rule, evaluations=evaluations, figures=figures, selection=log)
