"""Export back to PACS: one SEG with a segment per region on the source grid, one TID 1500 SR with every model
output and the region volumes, the key-image PDF; job-derived UIDs, malformed patient modules, dciodvfy."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset

from oncohabitat.bundles.plan import ExtractionPlan
from oncohabitat.common.blobstore import BlobStore
from oncohabitat.common.codec import VolumeCodec
from oncohabitat.dicomio import load_series
from oncohabitat.dicomio.coding import private_code_value
from oncohabitat.dicomio.key_image import WARNING_TEXT
from oncohabitat.orchestrator.export_stage import ExportObjects, build_export_objects
from oncohabitat.orchestrator.feature_stages import regions_stage
from oncohabitat.orchestrator.jobs import Job
from oncohabitat.orchestrator.results import SCORE_STAGE, SEGMENT_STAGE
from oncohabitat.orchestrator.served_models import ModelSet
from oncohabitat.regions.servicer import RegionsServicer
from oncohabitat.v1 import common_pb2
from tests.conftest import require_tool
from tests.support.served_models import served_model
from tests.unit.test_features_stages import _Call
from tests.unit.test_regions_phantom_support import LoadedPhantom, load_phantom

pytestmark = pytest.mark.filterwarnings("ignore:the load_module\\(\\) method is deprecated:DeprecationWarning")

PROFILE = {"stroma_width_mm": 20}
DEMO_USE = "Pipeline demonstration and research only; not for clinical use."
MODELS: list[dict[str, Any]] = [
    {
        "model_id": "seed001-logistic",
        "model_version": "1.0.0",
        "intended_use": DEMO_USE,
        "score": 0.8125,
        "probability": 0.6926,
        "predicted_value": None,
        "risk_group": "high",
        "cutoff": 0.5,
        "risk_rule": {"applies_to": "probability", "cutoffs": [0.5], "labels": ["low", "high"]},
        "survival": [],
        "time_unit": "",
        "features": {"tumour/S0/original_shape_Sphericity": 0.731, "habitat_1/PE/original_firstorder_Mean": 12.5},
        "contributions": {"tumour/S0/original_shape_Sphericity": 0.25, "habitat_1/PE/original_firstorder_Mean": -0.5},
    },
    {
        "model_id": "seed004-cox",
        "model_version": "2.0.1",
        "intended_use": "Prognosis of disease-free survival in adults.",
        "score": -0.375,
        "probability": None,
        "predicted_value": 41.5,
        "risk_group": "low",
        "cutoff": 0.1,
        "risk_rule": None,
        "survival": [[12.0, 0.95], [60.0, 0.81]],
        "time_unit": "months",
        "features": {"stroma_band_20mm/S0/original_firstorder_Median": 3.25},
        "contributions": {"stroma_band_20mm/S0/original_firstorder_Median": -0.375},
    },
]


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> LoadedPhantom:
    return load_phantom(tmp_path_factory.mktemp("phantom"), "small", seed=4)


def _context(tmp_path: Path, store: Path) -> Any:
    blobs = BlobStore(tmp_path / "blobs")
    codec = VolumeCodec(blobs)
    plan = ExtractionPlan.model_validate(
        {"features": ["tumour/S0/original_shape_Sphericity"], "region_profile": PROFILE}
    )
    model = served_model(plan, id="b", phases=())
    context = SimpleNamespace(
        blobs=blobs,
        codec=codec,
        dicom_store=store,
        served_models=ModelSet([model]),
        regions=SimpleNamespace(BuildRegions=_Call(RegionsServicer(codec).BuildRegions)),
        rpc_timeout_s=60.0,
    )
    context.save_message = lambda message: blobs.put(message.SerializeToString())
    context.load_volume = lambda digest: common_pb2.Volume.FromString(blobs.get(digest))
    return context


def _job(job_id: str = "job-0001") -> Job:
    return cast(Job, SimpleNamespace(job_id=job_id, request={}))


def _previous(context: Any, phantom: LoadedPhantom, store: Path) -> dict[str, Any]:
    codec: VolumeCodec = context.codec
    reference_files = phantom.study.phase_files[1]
    loaded = {
        "modality": "MR",
        "series_paths": [str(p.relative_to(store)) for p in reference_files],
        "image_volume": context.save_message(codec.encode_image(load_series(reference_files).image)),
        "phases": [
            {
                "index": phase.index,
                "pre_contrast": phase.index == 0,
                "time_from_pre_s": phase.time_s,
                "volume": context.save_message(codec.encode_array(phase.array, phase.geometry)),
            }
            for phase in phantom.phases
        ],
    }
    segment = {
        "mask_volume": context.save_message(
            codec.encode_array(phantom.tumour.astype("uint8"), phantom.phases[0].geometry)
        ),
        "volume_ml": 1.0,
    }
    previous: dict[str, Any] = {"load_study": loaded, SEGMENT_STAGE: segment}
    regions = regions_stage(context, _job(), previous)
    assert regions.reason == ""
    previous["regions"] = regions.result
    previous[SCORE_STAGE] = {"models": MODELS}
    return previous


@pytest.fixture(scope="module")
def built(
    phantom: LoadedPhantom, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Any, dict[str, Any], ExportObjects]:
    store = phantom.study.phase_files[0][0].parents[2]
    context = _context(tmp_path_factory.mktemp("export"), store)
    previous = _previous(context, phantom, store)
    return context, previous, build_export_objects(context, _job(), previous)


def _sorted_source_uids(context: Any, previous: dict[str, Any]) -> list[str]:
    paths = [context.dicom_store / p for p in previous["load_study"]["series_paths"]]
    return list(load_series(paths).sop_instance_uids)


def _expected_full_grid(context: Any, previous: dict[str, Any], reference: sitk.Image) -> dict[str, np.ndarray]:
    """Each stored crop label map placed into the full grid by its index offset (independent of the export)."""
    expected: dict[str, np.ndarray] = {}
    for stored in previous["regions"]["profiles"].values():
        for digest in stored["label_maps"].values():
            label_map = common_pb2.LabelMap.FromString(context.blobs.get(digest))
            crop = context.codec.decode_image(label_map.volume)
            start = reference.TransformPhysicalPointToIndex(crop.GetOrigin())
            array = sitk.GetArrayFromImage(crop)
            full = np.zeros(sitk.GetArrayFromImage(reference).shape, dtype=np.uint8)
            z, y, x = start[2], start[1], start[0]
            full[z : z + array.shape[0], y : y + array.shape[1], x : x + array.shape[2]] = array
            for label in label_map.labels:
                expected.setdefault(label.name, full == label.value)
    return expected


def test_seg_has_a_segment_per_region_with_the_pixels_on_the_source_grid(
    built: tuple[Any, dict[str, Any], ExportObjects], phantom: LoadedPhantom
) -> None:
    context, previous, objects = built
    seg = objects.seg
    labels = [str(item.SegmentLabel) for item in seg.SegmentSequence]
    habitats = [label for label in labels if label.startswith("Habitat")]
    assert labels[0] == "Tumour" and len(habitats) >= 2
    assert labels == ["Tumour", *habitats, "Peritumoral ring 5 mm", "Stroma band 20 mm"]
    assert [int(item.SegmentNumber) for item in seg.SegmentSequence] == list(range(1, len(labels) + 1))
    first = seg.SegmentSequence[0]
    assert first.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Neoplasm"
    assert seg.SegmentSequence[1].SegmentedPropertyCategoryCodeSequence[0].CodeMeaning == "Tissue"
    assert "least perfused" in seg.SegmentSequence[1].SegmentDescription
    assert "20 mm" in seg.SegmentSequence[-1].SegmentDescription

    reference = context.codec.decode_image(context.load_volume(previous["load_study"]["image_volume"]))
    expected = _expected_full_grid(context, previous, reference)
    names = ["tumour", *[f"habitat_{h.split()[-1]}" for h in habitats], "peritumoral_ring_5mm", "stroma_band_20mm"]
    read = hd.seg.Segmentation.from_dataset(pydicom.dcmread(_save(seg, context.blobs.root / "seg.dcm")))
    pixels = read.get_pixels_by_source_instance(
        source_sop_instance_uids=_sorted_source_uids(context, previous),
        segment_numbers=list(range(1, len(labels) + 1)),
    )
    assert pixels.shape[:3] == phantom.tumour.shape
    np.testing.assert_array_equal(pixels[..., 0] > 0, phantom.tumour)
    for number, name in enumerate(names):
        np.testing.assert_array_equal(pixels[..., number] > 0, expected[name], err_msg=name)


def _save(dataset: Dataset, path: Path) -> Path:
    dataset.save_as(path, enforce_file_format=True)
    return path


def _walk(items: Any) -> Iterator[Dataset]:
    for item in items:
        yield item
        yield from _walk(item.get("ContentSequence", []))


def _groups(sr: Dataset) -> dict[str, Dataset]:
    """Measurement groups by tracking identifier."""
    groups = {}
    for item in _walk(sr.ContentSequence):
        if item.ValueType == "CONTAINER" and item.ConceptNameCodeSequence[0].CodeMeaning == "Measurement Group":
            for child in item.ContentSequence:
                if child.ConceptNameCodeSequence[0].CodeMeaning == "Tracking Identifier":
                    groups[str(child.TextValue)] = item
    return groups


def _numbers(group: Dataset) -> dict[tuple[str, bool], float]:
    """(code meaning or value, is contribution) -> numeric value of a group's NUM items."""
    numbers = {}
    for item in group.ContentSequence:
        if item.ValueType != "NUM":
            continue
        code = item.ConceptNameCodeSequence[0]
        derived = any(c.ConceptNameCodeSequence[0].CodeMeaning == "Derivation" for c in item.get("ContentSequence", []))
        numbers[(str(code.CodeValue), derived)] = float(item.MeasuredValueSequence[0].NumericValue)
        numbers[(str(code.CodeMeaning), derived)] = float(item.MeasuredValueSequence[0].NumericValue)
    return numbers


def _codes(group: Dataset) -> dict[str, str]:
    return {
        str(item.ConceptNameCodeSequence[0].CodeMeaning): str(item.ConceptCodeSequence[0].CodeMeaning)
        for item in group.ContentSequence
        if item.ValueType == "CODE"
    }


def test_sr_holds_every_model_output_and_references_the_seg_and_the_source_series(
    built: tuple[Any, dict[str, Any], ExportObjects],
) -> None:
    context, previous, objects = built
    sr = pydicom.dcmread(_save(objects.sr, context.blobs.root / "sr.dcm"))
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    evidence = {
        str(series.SeriesInstanceUID): {str(i.ReferencedSOPInstanceUID) for i in series.ReferencedSOPSequence}
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
    }
    source_series = pydicom.dcmread(context.dicom_store / previous["load_study"]["series_paths"][0]).SeriesInstanceUID
    assert evidence[str(objects.seg.SeriesInstanceUID)] == {str(objects.seg.SOPInstanceUID)}
    assert evidence[str(source_series)] == set(_sorted_source_uids(context, previous))
    segment_references = [
        str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
        for item in _walk(sr.ContentSequence)
        if item.ValueType == "IMAGE" and "ReferencedSegmentNumber" in item.ReferencedSOPSequence[0]
    ]
    assert segment_references and set(segment_references) == {str(objects.seg.SOPInstanceUID)}

    groups = _groups(sr)
    logistic = _numbers(groups["Tumour: seed001-logistic@1.0.0"])
    assert logistic[("Prognostic risk score", False)] == pytest.approx(0.8125)
    assert logistic[("Predicted probability", False)] == pytest.approx(0.6926)
    assert logistic[("Risk group cut-off", False)] == pytest.approx(0.5)
    for name, value in MODELS[0]["features"].items():
        assert logistic[(private_code_value(name), False)] == pytest.approx(value)
        assert logistic[(private_code_value(name), True)] == pytest.approx(MODELS[0]["contributions"][name])
    assert _codes(groups["Tumour: seed001-logistic@1.0.0"])["Prognostic risk group"] == "high"
    assert (
        _codes(groups["Tumour: seed001-logistic@1.0.0"])["Intended use of the model"]
        == "Demonstration model, not for clinical use"
    )
    cox = _numbers(groups["Tumour: seed004-cox@2.0.1"])
    assert cox[("Predicted value", False)] == pytest.approx(41.5)
    assert cox[("Survival probability at 12 months", False)] == pytest.approx(0.95)
    assert cox[("Survival probability at 60 months", False)] == pytest.approx(0.81)
    assert cox[("Risk group cut-off", False)] == pytest.approx(0.1)
    assert "Intended use of the model" not in _codes(groups["Tumour: seed004-cox@2.0.1"])

    statistics = next(iter(previous["regions"]["profiles"].values()))["statistics"]
    fractions = []
    for label, group in groups.items():
        if label.startswith("Habitat"):
            numbers = _numbers(group)
            region = f"habitat_{label.split()[-1]}"
            assert numbers[("Volume", False)] == pytest.approx(statistics[region]["volume_ml"])
            fractions.append(numbers[("Fraction of tumour volume", False)])
    assert len(fractions) >= 2 and sum(fractions) == pytest.approx(1.0, abs=0.02)
    assert _numbers(groups["Stroma band 20 mm"])[("Volume", False)] == pytest.approx(
        statistics["stroma_band_20mm"]["volume_ml"]
    )


def test_key_image_pdf_carries_the_results_and_the_demonstration_warning(
    built: tuple[Any, dict[str, Any], ExportObjects], phantom: LoadedPhantom
) -> None:
    context, previous, objects = built
    pdf_object = objects.pdf
    assert pdf_object.SOPClassUID == "1.2.840.10008.5.1.4.1.1.104.1"
    assert pdf_object.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert pdf_object.StudyInstanceUID == objects.seg.StudyInstanceUID
    assert pdf_object.SourceInstanceSequence[0].ReferencedSOPInstanceUID == objects.seg.SOPInstanceUID
    pdf = bytes(pdf_object.EncapsulatedDocument)[: int(pdf_object.EncapsulatedDocumentLength)]
    assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF")
    assert WARNING_TEXT.encode() in pdf
    assert rb"seed001-logistic 1.0.0: score 0.8125; probability 0.693; risk group high \(cut-off 0.5\)" in pdf
    assert b"survival probability at 12 months: 0.950, 60 months: 0.810" in pdf
    assert b"Habitat 1: " in pdf
    # xref offsets point at the objects
    xref = int(pdf.rsplit(b"startxref", 1)[1].split()[0])
    entries = pdf[xref:].split(b"\n")[3:10]
    for number, entry in enumerate(entries, start=1):
        assert pdf[int(entry.split()[0]) :].startswith(f"{number} 0 obj".encode())

    without_demo = [{**model, "intended_use": "Prognosis in adults."} for model in MODELS]
    quiet = build_export_objects(context, _job(), {**previous, SCORE_STAGE: {"models": without_demo}})
    assert WARNING_TEXT.encode() not in bytes(quiet.pdf.EncapsulatedDocument)


def test_uids_derive_from_the_job_id(built: tuple[Any, dict[str, Any], ExportObjects]) -> None:
    context, previous, objects = built
    again = build_export_objects(context, _job(), previous)
    other = build_export_objects(context, _job("job-0002"), previous)
    for first, second, third in zip(objects.datasets, again.datasets, other.datasets, strict=True):
        assert first.SOPInstanceUID == second.SOPInstanceUID != third.SOPInstanceUID
        assert first.SeriesInstanceUID == second.SeriesInstanceUID != third.SeriesInstanceUID
    assert len({d.SOPInstanceUID for d in objects.datasets}) == 3
    assert len({d.SeriesInstanceUID for d in objects.datasets}) == 3


def _dciodvfy_errors(path: Path) -> list[str]:
    run = subprocess.run(
        [require_tool("dciodvfy"), "-new", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def _malformed_copy(store: Path, paths: list[str], target: Path) -> None:
    for relative in paths:
        dataset = pydicom.dcmread(store / relative)
        dataset.PatientBirthDate = "1970-13-45"
        dataset.PatientSex = "X"
        dataset.StudyTime = "25:61"
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        dataset.save_as(target / relative)


def test_malformed_patient_module_still_exports_and_every_object_passes_dciodvfy(
    built: tuple[Any, dict[str, Any], ExportObjects], tmp_path: Path
) -> None:
    context, previous, _objects = built
    _malformed_copy(context.dicom_store, previous["load_study"]["series_paths"], tmp_path)
    malformed = SimpleNamespace(**{**vars(context), "dicom_store": tmp_path})
    objects = build_export_objects(malformed, _job(), previous)
    for dataset in objects.datasets:
        assert dataset.PatientBirthDate == "" and dataset.PatientSex == "" and dataset.StudyTime == ""
        assert dataset.PatientID == pydicom.dcmread(tmp_path / previous["load_study"]["series_paths"][0]).PatientID
    for dataset, name in zip(objects.datasets, ("seg", "sr", "pdf"), strict=True):
        assert _dciodvfy_errors(_save(dataset, tmp_path / f"{name}.dcm")) == [], name


def test_single_phase_ct_study_keeps_a_tumour_only_seg(sts_ct_dir: Path, tmp_path: Path) -> None:
    from oncohabitat.dicomio import load_mask

    paths = sorted((sts_ct_dir / "image").iterdir())
    series = load_series(paths)
    tumour = load_mask(sts_ct_dir / "mask/RS.dcm", series).image
    context = _context(tmp_path, sts_ct_dir)
    codec: VolumeCodec = context.codec
    previous: dict[str, Any] = {
        "load_study": {
            "modality": "CT",
            "series_paths": [str(p.relative_to(sts_ct_dir)) for p in paths],
            "image_volume": context.save_message(codec.encode_image(series.image)),
            "phases": [],
        },
        SEGMENT_STAGE: {"mask_volume": context.save_message(codec.encode_image(tumour))},
        "regions": {"skipped": "single-phase study: no kinetic regions", "profiles": {}},
        SCORE_STAGE: {"models": [{**MODELS[1], "model_id": "seed003-ct-dfs"}]},
    }
    objects = build_export_objects(context, _job(), previous)
    assert [str(item.SegmentLabel) for item in objects.seg.SegmentSequence] == ["Tumour"]
    pixels = hd.seg.Segmentation.from_dataset(objects.seg).get_pixels_by_source_instance(
        source_sop_instance_uids=list(series.sop_instance_uids), segment_numbers=[1]
    )[..., 0]
    np.testing.assert_array_equal(pixels > 0, sitk.GetArrayFromImage(tumour) > 0)
    groups = _groups(pydicom.dcmread(_save(objects.sr, tmp_path / "sr.dcm")))
    assert set(groups) == {"Tumour", "Tumour: seed003-ct-dfs@2.0.1"}
    for dataset, name in zip(objects.datasets, ("seg", "sr", "pdf"), strict=True):
        assert _dciodvfy_errors(_save(dataset, tmp_path / f"{name}.dcm")) == [], name


def test_a_re_export_replaces_the_files_and_sends_the_same_instances(
    built: tuple[Any, dict[str, Any], ExportObjects], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oncohabitat.orchestrator import export_stage as module

    context, previous, _objects = built
    sent: list[list[str]] = []

    def fake_send(files: list[Path], *_args: Any, **_kwargs: Any) -> Any:
        sent.append(sorted(str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files))
        return SimpleNamespace(sent_keys=[f"key-{n}" for n in range(len(files))])

    monkeypatch.setattr(module, "send_instances", fake_send)
    exporting = SimpleNamespace(
        **vars(context),
        exports_dir=tmp_path,
        default_destination="PACS@127.0.0.1:104",
        calling_ae="OH",
        export_retries=0,
    )
    (tmp_path / "job-0001").mkdir()
    (tmp_path / "job-0001" / "03-sr.dcm").write_bytes(b"stale")
    for _ in range(2):
        outcome = module.export_stage(exporting, _job(), previous)
        assert outcome.reason == "" and outcome.result["sent"] == ["key-0", "key-1", "key-2"]
    assert sent[0] == sent[1] and len(set(sent[0])) == 3
    assert sorted(p.name for p in (tmp_path / "job-0001").iterdir()) == ["00-seg.dcm", "01-sr.dcm", "02-doc.dcm"]


def test_label_maps_on_a_sub_grid_are_placed_as_nearest_neighbour_resampling_places_them() -> None:
    from oncohabitat.dicomio.seg_export import on_reference_grid

    rng = np.random.default_rng(3)
    reference = sitk.Image([40, 36, 24], sitk.sitkFloat32)
    reference.SetSpacing([0.7, 0.7, 1.1])
    reference.SetOrigin([-20.3, 11.2, 5.5])
    angle = 0.1
    reference.SetDirection([np.cos(angle), -np.sin(angle), 0.0, np.sin(angle), np.cos(angle), 0.0, 0.0, 0.0, 1.0])
    for trial in range(40):
        size = [int(rng.integers(1, 20)) for _ in range(3)]
        start = [float(rng.integers(-3, 30)) + (0.5 if trial % 7 == 0 else 0.0) for _ in range(3)]  # some off-grid
        labels = sitk.GetImageFromArray(rng.integers(0, 4, size=size[::-1]).astype(np.uint8))
        labels.SetSpacing(reference.GetSpacing())
        labels.SetDirection(reference.GetDirection())
        labels.SetOrigin(reference.TransformContinuousIndexToPhysicalPoint(start))
        resampled = sitk.Resample(labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        assert np.array_equal(on_reference_grid(labels, reference), sitk.GetArrayFromImage(resampled)), trial
