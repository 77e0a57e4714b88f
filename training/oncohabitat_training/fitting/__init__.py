"""Modelling recipes (issue 17 items 3, 5): declarative YAML recipe + feature table -> evaluated scoring bundle v2.

Modules
-------
schema      the recipe (pydantic, unknown keys refused), its extraction plan, candidate checks
table       the feature table (extraction layout): splits, outcomes, covariate encoding, errors naming the cell
inputs      checked table split by split, handed to the fitters
steps       ICC -> z-score -> univariable screen -> |r| filter -> top k (training rows only)
cutoff      cutoff rules: time-dependent ROC Youden, maximally selected log-rank, Youden, fixed, median
heads       the fitted heads (linear with z-score scaler; forest) and their own predictions; risk rules
survival    model ``cox``: LASSO-Cox CV -> Cox refit or calibrated radscore; nomogram with covariates
classifier  models ``logistic`` (SMOTE in folds, VIF, fusion with covariates) and ``random_forest``
regression  model ``elastic_net``: CV'd penalties, RFE, log-rank cutoff on the predicted value
export      manifest, test vectors, ONNX, HTML report under ``report/``, provenance; byte-deterministic
run         ``fit_recipe`` / ``fit_only``: the whole run
cli         the ``oncohabitat-train fit`` subcommand
"""
