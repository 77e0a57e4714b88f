"""Test vectors shipped in every scoring bundle and replayed at load (schema only; replay: scoring service).

File format (JSON, listed under the manifest's ``files`` and named by ``test_vectors``)::

    {"format": "oncohabitat.test-vectors", "format_version": 1,
     "cases": [{"features": {"tumour/S0/original_glcm_Correlation": 0.4, ...},
                "covariates": {"age": 52, "aln": "positive"},
                "expected": {"score": 0.31, "probability": null, "predicted_value": null,
                             "risk_group": "high", "survival": [0.9, 0.8], "fallback_used": false}}]}

Expected values are computed independently of the serving engine (the training environment, e.g.
scikit-learn, or a plain re-implementation of a published formula). ``null`` = not checked; every case checks
at least one number.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from oncohabitat.bundles.manifest import FiniteFloat, Strict

CovariateInput = Annotated[bool, Field(strict=True)] | FiniteFloat | Annotated[str, Field(min_length=1)]


class VectorExpectation(Strict):
    """What the engine must return for one case."""

    score: FiniteFloat | None = None
    probability: FiniteFloat | None = None
    predicted_value: FiniteFloat | None = None
    risk_group: str | None = None
    survival: list[FiniteFloat] | None = None
    fallback_used: bool = False

    @model_validator(mode="after")
    def _checks_a_number(self) -> VectorExpectation:
        if self.score is None and self.probability is None and self.predicted_value is None:
            raise ValueError("a test vector must expect at least one of score, probability, predicted_value")
        return self


class VectorCase(Strict):
    """One input (features keyed by canonical name, covariates by name) and its expected outputs."""

    features: dict[str, FiniteFloat]
    covariates: dict[str, CovariateInput] = Field(default_factory=dict)
    expected: VectorExpectation


class VectorFile(Strict):
    """The test-vector file of a scoring bundle."""

    format: Literal["oncohabitat.test-vectors"] = "oncohabitat.test-vectors"
    format_version: Literal[1] = 1
    cases: list[VectorCase] = Field(min_length=1)
