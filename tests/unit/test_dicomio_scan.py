"""Header inventory (oncohabitat.dicomio.scan) on the real STS_001 study."""

from __future__ import annotations

from pathlib import Path

from oncohabitat.dicomio import InstanceKind, group_by_series, scan_instances


def test_scan_groups_images_and_structure_sets_by_series(shared_data: Path, tmp_path: Path) -> None:
    study = shared_data / "ibsi/ibsi_validation/dicom/STS_001"
    junk = tmp_path / "README.txt"
    junk.write_text("not dicom")
    paths = [*sorted(p for p in study.rglob("*") if p.is_file()), junk]

    infos = scan_instances(paths)
    groups = group_by_series(infos)

    assert len(infos) == len(paths) - 1  # the junk file is skipped
    assert len(groups) == 4
    kinds = sorted((members[0].kind, members[0].modality, len(members)) for members in groups.values())
    assert kinds == [
        (InstanceKind.IMAGE, "CT", 59),
        (InstanceKind.IMAGE, "MR", 59),
        (InstanceKind.RTSTRUCT, "RTSTRUCT", 1),
        (InstanceKind.RTSTRUCT, "RTSTRUCT", 1),
    ]
    # grouped: every series' members are contiguous in the returned list
    runs = [
        uid
        for i, uid in enumerate(info.series_instance_uid for info in infos)
        if i == 0 or infos[i - 1].series_instance_uid != uid
    ]
    assert len(runs) == len(groups)

    ct_series = next(m for m in groups.values() if m[0].modality == "CT")
    ct_rtstruct = next(
        m[0] for m in groups.values() if m[0].kind == InstanceKind.RTSTRUCT and "CT" in m[0].series_description
    )
    assert ct_rtstruct.referenced_series_uids == (ct_series[0].series_instance_uid,)
    assert ct_rtstruct.frame_of_reference_uid == ct_series[0].frame_of_reference_uid
    assert ct_series[0].referenced_series_uids == ()
    assert ct_series[0].series_description == "IBSI_1_STS_001_CT_image"
    assert ct_series[0].number_of_frames == 1
    assert [i.instance_number for i in ct_series] == sorted(i.instance_number or 0 for i in ct_series)
    assert len({i.sop_instance_uid for i in ct_series}) == 59


def test_instance_info_carries_no_patient_attributes(sts_ct_dir: Path) -> None:
    info = scan_instances(sorted((sts_ct_dir / "image").iterdir())[:1])[0]
    fields = set(info.__dataclass_fields__)
    assert not {f for f in fields if "patient" in f.lower() or "accession" in f.lower() or "birth" in f.lower()}


def test_scan_of_nothing_is_empty() -> None:
    assert scan_instances([]) == []
