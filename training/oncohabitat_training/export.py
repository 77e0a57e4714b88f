"""ONNX export of a trained network, checked against torch, and the segmentation bundle around it."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper

from oncohabitat.segmentation.model_bundle import SegmentationBundle, write_segmentation_bundle
from oncohabitat_training.model import ProbabilityHead, UNet3d

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "probability"
#: Largest tolerated |onnxruntime - torch| on the check volume.
EXPORT_TOLERANCE = 1e-4


class ExportCheckError(RuntimeError):
    """onnxruntime and torch disagree on the check volume."""


def export_onnx(net: UNet3d, channels: int, example_shape: tuple[int, int, int]) -> bytes:
    """Serialised ONNX model ``image`` (N, C, z, y, x) -> ``probability`` (N, 1, z, y, x), dynamic sizes."""
    head = ProbabilityHead(net).eval()
    example = torch.zeros((1, channels, *example_shape), dtype=torch.float32)
    dynamic = {0: "batch", 2: "z", 3: "y", 4: "x"}
    with tempfile.TemporaryDirectory(prefix="onnx-export-") as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter needs no onnxscript
        path = Path(scratch) / "model.onnx"
        torch.onnx.export(
            head,
            (example,),
            path,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: dynamic, OUTPUT_NAME: dynamic},
            opset_version=OPSET,
        )
        model = onnx.load(str(path))
    onnx.checker.check_model(model)
    model.doc_string = "OncoHabitat tumour segmentation 3D U-Net (probability of tumour per voxel)"
    return model.SerializeToString()


def check_export(net: UNet3d, model_bytes: bytes, volume: np.ndarray) -> float:
    """Max |onnxruntime - torch| on ``volume`` (1, C, z, y, x); ExportCheckError above the tolerance."""
    with torch.no_grad():
        expected = ProbabilityHead(net).eval()(torch.from_numpy(volume.astype(np.float32))).numpy()
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    (actual,) = session.run([OUTPUT_NAME], {INPUT_NAME: volume.astype(np.float32)})
    difference = float(np.max(np.abs(np.asarray(actual) - expected)))
    if not difference <= EXPORT_TOLERANCE:
        raise ExportCheckError(f"onnxruntime differs from torch by {difference:.3g} > {EXPORT_TOLERANCE:g}")
    return difference


def write_bundle(root: Path, manifest: dict[str, Any], model_bytes: bytes) -> SegmentationBundle:
    """Write ``<root>/segmentation/<id>/<version>/`` with ``model.onnx`` (hash listed) and verify it."""
    return write_segmentation_bundle(root, manifest, model_bytes)


def network_from_bundle(bundle: SegmentationBundle) -> UNet3d:
    """The torch network of a bundle written by this recipe, rebuilt from the ONNX weights (fine-tuning, checks).

    Raises:
        KeyError, RuntimeError: the bundle was not produced by this recipe's :class:`UNet3d`.
    """
    config = bundle.manifest.training["config"]
    net = UNet3d(len(bundle.manifest.preprocessing.channels), int(config["base_channels"]), int(config["levels"]))
    graph = onnx.load_from_string(bundle.model_bytes).graph
    state = {
        tensor.name.removeprefix("net."): torch.from_numpy(numpy_helper.to_array(tensor).copy())
        for tensor in graph.initializer
    }
    net.load_state_dict(state, strict=True)
    return net.eval()
