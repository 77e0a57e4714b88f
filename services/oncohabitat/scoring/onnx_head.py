"""ONNX heads: an exported estimator (random forest, gradient boosting, ...) run by onnxruntime.

The bundle's ONNX file is read from the verified bundle directory (its SHA-256 was checked by the loader) and
run on CPU with one thread per call; the input is a (1, n_columns) float64 tensor of the scaled columns. Nothing
is unpickled and no training library is imported. onnxruntime is imported only when such a bundle is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from oncohabitat.bundles import errors as bundle_errors
from oncohabitat.bundles.errors import BundleError
from oncohabitat.bundles.scoring_parts import OnnxModel
from oncohabitat.scoring import errors
from oncohabitat.scoring.errors import FeatureValidationError
from oncohabitat.scoring.heads import HeadOutput, scaler_terms


class OnnxHead:
    """A compiled :class:`~oncohabitat.bundles.scoring_parts.OnnxModel`."""

    model_type = "onnx"

    def __init__(self, model: OnnxModel, bundle_dir: Path, label: str) -> None:
        """Open the session and check its signature against the manifest.

        Raises:
            BundleError: ``MODEL_UNLOADABLE`` when onnxruntime cannot open the file or its input/output names,
                element type or width do not match the manifest.
        """
        import onnxruntime as ort  # only services that load an ONNX bundle need it

        self._model = model
        self._columns = list(model.columns)
        terms = scaler_terms(model.scaler, self._columns)
        self._mean = np.array([m for m, _ in terms], dtype=np.float64)
        self._std = np.array([s for _, s in terms], dtype=np.float64)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self._session: Any = ort.InferenceSession(
                str(bundle_dir / model.file), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            message = f"{label}: onnxruntime cannot open {model.file!r}"
            raise BundleError(bundle_errors.MODEL_UNLOADABLE, message) from exc
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name for o in self._session.get_outputs()}
        declared = inputs.get(model.input_name)
        if declared is None or model.output_name not in outputs:
            raise BundleError(
                bundle_errors.MODEL_UNLOADABLE,
                f"{label}: {model.file!r} has no input {model.input_name!r} or no output {model.output_name!r}",
            )
        if declared.type != "tensor(double)":
            raise BundleError(bundle_errors.MODEL_UNLOADABLE, f"{label}: {model.file!r} input must be double")
        width = declared.shape[-1] if declared.shape else None
        if isinstance(width, int) and width != len(self._columns):
            raise BundleError(
                bundle_errors.MODEL_UNLOADABLE,
                f"{label}: {model.file!r} takes {width} columns, the manifest declares {len(self._columns)}",
            )

    def run(self, row: Mapping[str, float]) -> HeadOutput:
        """The probability of ``class_index`` or the predicted value, as a float64.

        Raises:
            FeatureValidationError: ``SCORE_NOT_FINITE`` when the model returns inf/NaN.
        """
        values = np.array([[row[c] for c in self._columns]], dtype=np.float64)
        scaled = (values - self._mean) / self._std
        (result,) = self._session.run([self._model.output_name], {self._model.input_name: scaled})
        array = np.asarray(result, dtype=np.float64)
        if self._model.output == "probability":
            value = float(array.reshape(1, -1)[0, self._model.class_index])
        else:
            value = float(array.reshape(-1)[0])
        if not math.isfinite(value):
            raise FeatureValidationError(errors.SCORE_NOT_FINITE, None, "the model returned a non-finite output")
        if self._model.output == "probability":
            return HeadOutput(score=value, probability=value)
        return HeadOutput(score=value, predicted_value=value)
