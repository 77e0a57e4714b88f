"""An onnxruntime session for one verified segmentation bundle (CPU, bounded thread count)."""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from oncohabitat.bundles.errors import BundleError
from oncohabitat.segmentation.model_bundle import SegmentationBundle

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]


class OnnxSegmentationModel:
    """Runs a bundle's network on patches (1, C, z, y, x) -> probabilities (1, 1, z, y, x).

    ``intra_op_threads`` threads per inference (default 1 per replica: scale out with replicas, not threads).
    """

    def __init__(self, bundle: SegmentationBundle, intra_op_threads: int = 1) -> None:
        self.bundle = bundle
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.enable_cpu_mem_arena = False  # memory follows the patch, not the largest patch ever seen
        label = f"segmentation model {bundle.id} {bundle.version}"
        try:
            self._session = ort.InferenceSession(bundle.model_bytes, options, providers=["CPUExecutionProvider"])
        except (RuntimeError, ValueError) as exc:  # onnxruntime raises subclasses of these on a bad graph
            raise BundleError(
                "MODEL_INVALID", f"{label}: onnxruntime cannot load the model ({type(exc).__name__})"
            ) from exc
        inference = bundle.manifest.inference
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name for o in self._session.get_outputs()}
        if inference.input_name not in inputs or inference.output_name not in outputs:
            raise BundleError(
                "MODEL_INVALID",
                f"{label}: the model has no input {inference.input_name!r} or output {inference.output_name!r}",
            )
        declared = inputs[inference.input_name].shape
        channels = len(bundle.manifest.preprocessing.channels)
        if len(declared) != 5 or (isinstance(declared[1], int) and declared[1] != channels):
            raise BundleError("MODEL_INVALID", f"{label}: the model input is not (N, {channels}, z, y, x)")
        self._input = inference.input_name
        self._output = inference.output_name

    def predict(self, batch: FloatArray) -> FloatArray:
        """Probabilities for one batch of patches (float32)."""
        (result,) = self._session.run([self._output], {self._input: batch})
        return np.asarray(result, dtype=np.float32)
