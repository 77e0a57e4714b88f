"""Statistics core of the modelling recipes (issue 17): selection steps, models, cutoffs, evaluation, report.

Every function works on a plain feature table (:class:`pandas.DataFrame`, one row per patient, columns named by
the canonical feature grammar ``<region>/<image>/<feature>`` plus outcome columns), so the recipes plug into the
extraction output. Everything random takes an explicit integer ``seed``; the same inputs and seed give the same
result. scikit-survival (GPL) is imported only here, inside the training distribution, never by a service.

Modules
-------
data                outcome columns -> scikit-survival structured arrays; feature matrix with checks
selection           ICC(2,1), z-score fitted on training rows, univariable Cox / Mann-Whitney screens,
                    |r| filter, VIF
resampling          SMOTE (training rows / folds only)
cox                 Cox fit (Efron ties), Wald SE / HR CI, Breslow baseline S0(t) at horizons
partial_likelihood  vectorised Breslow log partial likelihood (CV deviance)
lasso_cox           LASSO-Cox path with stratified K-fold CV: lambda_min, lambda_1se
signature           recipe 000/003 steps: z-score -> Cox screen -> LASSO-Cox -> radscore (+ Cox calibration)
logistic            LASSO-logistic with K-fold CV (SMOTE inside folds) and the unpenalised logistic refit
elastic_net         elastic net on a continuous target: CV-tuned penalties, recursive feature elimination
forest              seeded random-forest classifier
cutoffs             time-dependent ROC + Youden cutoff, maximally selected log-rank, cutoff rule
survival_metrics    Harrell / Uno C, time-dependent AUC, Kaplan-Meier, log-rank, HR, calibration at a horizon
classifier_metrics  AUC with DeLong CI, DeLong test, sensitivity / specificity at a cutoff
decision_curve      net benefit (binary and survival at a horizon)
bootstrap           seeded percentile bootstrap CIs
evaluation          SurvivalEvaluation / ClassifierEvaluation result objects for one patient set
figures, report     PNG figures (matplotlib Agg) and the offline HTML report
synthetic           seeded planted-signal feature table for checks and demonstrations
"""
