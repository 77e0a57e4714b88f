"""ListenerSCP over real associations with pynetdicom as the peer: echo, store and hostile UIDs, phantom and
pydicom-data pushes, deflate (access control and limits: test_listener_access.py; the SCU: test_dicomio_send.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, MRImageStorage, Verification  # type: ignore[attr-defined]

from oncohabitat.dicomio.identifiers import uid_key
from oncohabitat.listener import status
from oncohabitat.listener.classify import DceStudyClassifier
from oncohabitat.listener.scp import ListenerSCP
from oncohabitat.listener.storage import InstanceStore
from oncohabitat.phantom import generate_study
from tests.integration.test_dicomio_send import push
from tests.integration.test_listener_dcmtk import assert_stored_like_source

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:The value length:UserWarning"),
]


def associate(port: int, *contexts: str) -> object:
    ae = AE(ae_title="TESTSCU")
    for context in contexts:
        ae.add_requested_context(context, ImplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="ONCOTEST")
    assert assoc.is_established
    return assoc


def test_echo_store_and_hostile_uid_over_the_wire(scp: tuple[ListenerSCP, InstanceStore], sts_ct_dir: Path) -> None:
    listener, store = scp
    assert listener.port > 0
    ds = pydicom.dcmread(sts_ct_dir / "image" / "000001.dcm")
    assoc = associate(listener.port, Verification, CTImageStorage)
    try:
        assert assoc.send_c_echo().Status == 0x0000  # type: ignore[attr-defined]
        assert assoc.send_c_store(ds).Status == status.SUCCESS  # type: ignore[attr-defined]
        hostile = pydicom.dcmread(sts_ct_dir / "image" / "000002.dcm")
        with pydicom.config.disable_value_validation():
            hostile.StudyInstanceUID = "../../../etc"
        assert assoc.send_c_store(hostile).Status == status.INVALID_UID  # type: ignore[attr-defined]
    finally:
        assoc.release()  # type: ignore[attr-defined]
    assert store.index.get_instance(ds.SOPInstanceUID) is not None
    assert store.index.get_instance(hostile.SOPInstanceUID) is None
    assert [p.name for p in store.root.rglob("*.dcm")] == [f"{uid_key(ds.SOPInstanceUID)}.dcm"]


def test_unsupported_sop_class_is_not_accepted(scp: tuple[ListenerSCP, InstanceStore]) -> None:
    listener, _ = scp
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.7", ImplicitVRLittleEndian)  # Secondary Capture
    ae.add_requested_context(MRImageStorage, ImplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", listener.port, ae_title="ONCOTEST")
    try:
        accepted = {cx.abstract_syntax for cx in assoc.accepted_contexts}
        assert accepted == {MRImageStorage}
    finally:
        assoc.release()


# ---- pushes with pynetdicom ------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["per-phase", "multi-phase"])
def test_pynetdicom_pushes_dce_studies_of_both_layouts_and_they_are_classified(
    scp: tuple[ListenerSCP, InstanceStore], tmp_path: Path, layout: str
) -> None:
    listener, store = scp
    phantom = generate_study(tmp_path / layout, size="small", seed=31, layout=layout, trigger_time=True)
    files = sorted(phantom.dicom_dir.rglob("*.dcm"))
    report = push(files, "ONCOTEST", listener.port)
    assert report.sent == len(files)
    assert store.flush()
    assert_stored_like_sources(store, files)
    key = uid_key(phantom.study_instance_uid)
    verdict = DceStudyClassifier(store.index, store.root)(key)
    assert verdict.eligible, verdict.reason
    classification = json.loads(verdict.classification_json)
    assert classification["layout"] == layout
    phases = classification["phases"]
    assert [p["time_from_pre_s"] for p in phases] == pytest.approx(list(phantom.phase_times_s))
    assert [p["time_after_injection_s"] for p in phases] == pytest.approx(
        [t - phantom.injection_time_s for t in phantom.phase_times_s]
    )


def test_pynetdicom_pushes_the_real_mr_and_ct_series(scp: tuple[ListenerSCP, InstanceStore], sts_ct_dir: Path) -> None:
    """The shared STS_001 series (CT with its RTSTRUCT, T1 MR with its RTSTRUCT) are stored like their sources;
    the MR study, not dynamic, ends with its reason."""
    listener, store = scp
    mr_files = sorted((sts_ct_dir.parent / "MR_T1").rglob("*.dcm"))
    ct_files = sorted(sts_ct_dir.rglob("*.dcm"))
    report = push([*ct_files, *mr_files], "ONCOTEST", listener.port)
    assert report.sent == len(ct_files) + len(mr_files) and len(mr_files) > 4 and len(ct_files) > 4
    assert store.flush()
    assert_stored_like_sources(store, [*ct_files, *mr_files])
    mr_study = str(pydicom.dcmread(mr_files[0], stop_before_pixels=True).StudyInstanceUID)
    verdict = DceStudyClassifier(store.index, store.root)(uid_key(mr_study))
    assert (verdict.eligible, verdict.reason_code) == (False, "NO_DYNAMIC_SERIES")


def assert_stored_like_sources(store: InstanceStore, sources: list[Path]) -> None:
    """Every source is indexed; its stored data set equals the source's (pixel data bytes included)."""
    for path in sources:
        sop_uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        assert_stored_like_source(store.root, store.index, sop_uid, path)


# name -> (accepted?, reason when refused); every accepted file must decode like its source
PYDICOM_DATA = {
    "MR_small.dcm": (True, ""),
    "MR_small_jp2klossless.dcm": (True, ""),
    "MR_small_RLE.dcm": (True, ""),
    "MR_small_jpeg_ls_lossless.dcm": (True, ""),
    "MR_small_bigendian.dcm": (True, ""),
    "emri_small.dcm": (True, ""),  # Enhanced MR, 10 frames: stored; never a DCE phase (see classification)
    "emri_small_jpeg_2k_lossless.dcm": (True, ""),
    "emri_small_RLE.dcm": (True, ""),
    "CT_small.dcm": (True, ""),
    "liver.dcm": (True, ""),  # SEG
    "JPEG2000.dcm": (False, "sop_class_not_accepted"),  # Secondary Capture: no presentation context
    "SC_rgb_rle.dcm": (False, "sop_class_not_accepted"),
}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", sorted(PYDICOM_DATA))
def test_pydicom_data_files_are_accepted_or_refused_with_the_documented_reason(
    scp: tuple[ListenerSCP, InstanceStore], name: str
) -> None:
    from pydicom.data import get_testdata_file

    listener, store = scp
    path = get_testdata_file(name)
    assert path is not None
    source = pydicom.dcmread(path)
    accepted, reason = PYDICOM_DATA[name]
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(source.SOPClassUID, source.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", listener.port, ae_title="ONCOTEST")
    if not accepted:
        # the listener answers the context "abstract syntax not supported"; pynetdicom then aborts
        assert reason == "sop_class_not_accepted"
        assert not assoc.is_established and assoc.accepted_contexts == []
        assert store.index.list_studies() == []
        return
    try:
        assert assoc.is_established
        assert assoc.send_c_store(source).Status == status.SUCCESS  # type: ignore[attr-defined]
    finally:
        assoc.release()
    record = store.index.get_instance(str(source.SOPInstanceUID))
    assert record is not None and record.transfer_syntax == source.file_meta.TransferSyntaxUID
    stored = pydicom.dcmread(store.path_of(record))
    assert stored.PixelData == source.PixelData  # stored as received, compressed or not
    assert np.array_equal(stored.pixel_array, source.pixel_array)


def test_deflated_transfer_syntax_is_accepted_within_budget(scp: tuple[ListenerSCP, InstanceStore]) -> None:
    from pydicom.data import get_testdata_file
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    listener, store = scp
    source = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(MRImageStorage, DeflatedExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", listener.port, ae_title="ONCOTEST")
    try:
        source.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        assert assoc.send_c_store(source).Status == status.SUCCESS  # type: ignore[attr-defined]
    finally:
        assoc.release()
    record = store.index.get_instance(str(source.SOPInstanceUID))
    assert record is not None and record.transfer_syntax == DeflatedExplicitVRLittleEndian
    assert np.array_equal(pydicom.dcmread(store.path_of(record)).pixel_array, source.pixel_array)
