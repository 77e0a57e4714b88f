"""DCE study understanding: dynamic series, phase order and times, vendor conventions, explicit refusals."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from oncohabitat.dicomio.dce import (
    DceReason,
    DceRules,
    DceRulesError,
    PhaseRole,
    SeriesRole,
    classify_dce,
    classify_study_files,
    rules_as_json,
)
from oncohabitat.dicomio.scan import InstanceInfo, scan_instances
from oncohabitat.phantom import PhantomStudy, generate_study


@pytest.fixture(scope="module")
def per_phase(tmp_path_factory: pytest.TempPathFactory) -> PhantomStudy:
    return generate_study(tmp_path_factory.mktemp("pp") / "s", size="small", seed=5, layout="per-phase")


@pytest.fixture(scope="module")
def multi_phase(tmp_path_factory: pytest.TempPathFactory) -> PhantomStudy:
    return generate_study(
        tmp_path_factory.mktemp("mp") / "s", size="small", seed=6, layout="multi-phase", trigger_time=True
    )


def infos_of(study: PhantomStudy) -> list[InstanceInfo]:
    return scan_instances(sorted(study.dicom_dir.rglob("*.dcm")))


def expected_times(study: PhantomStudy) -> tuple[list[float], list[float]]:
    from_pre = list(study.phase_times_s)
    return from_pre, [t - study.injection_time_s for t in from_pre]


def edit(infos: Sequence[InstanceInfo], when: Callable[[InstanceInfo], bool], **changes: object) -> list[InstanceInfo]:
    return [dataclasses.replace(i, **changes) if when(i) else i for i in infos]  # type: ignore[arg-type]


def test_one_series_per_phase(per_phase: PhantomStudy) -> None:
    result = classify_dce(infos_of(per_phase))
    assert result.eligible and result.reason_code is DceReason.ELIGIBLE and result.layout == "per-phase"
    from_pre, after_injection = expected_times(per_phase)
    assert [p.time_from_pre_s for p in result.phases] == pytest.approx(from_pre)
    assert [p.time_after_injection_s for p in result.phases] == pytest.approx(after_injection)
    assert result.injection_time_source == "ContrastBolusStartTime"
    assert [p.role for p in result.phases] == [PhaseRole.PRE_CONTRAST] + [PhaseRole.POST_CONTRAST] * 5
    for phase, files in zip(result.phases, per_phase.phase_files, strict=True):
        assert sorted(phase.paths) == sorted(files)
        assert list(phase.paths) == list(files)  # ordered inferior to superior, as the phantom lists them
    assert {s.role for s in result.series} == {SeriesRole.DYNAMIC_PHASE}


def test_multi_phase_series_split_by_temporal_position(multi_phase: PhantomStudy) -> None:
    result = classify_dce(infos_of(multi_phase))
    assert result.eligible and result.layout == "multi-phase"
    (series,) = result.series
    assert series.role is SeriesRole.DYNAMIC_MULTIPHASE and "TemporalPositionIdentifier" in series.reason
    assert [p.time_from_pre_s for p in result.phases] == pytest.approx(expected_times(multi_phase)[0])
    assert [list(p.paths) for p in result.phases] == [list(f) for f in multi_phase.phase_files]


@pytest.mark.parametrize(
    ("strip", "split"),
    [
        ({"temporal_position": None}, "TriggerTime"),
        ({"temporal_position": None, "trigger_time_ms": None}, "AcquisitionTime rank per position"),
    ],
)
def test_multi_phase_without_temporal_tags_splits_by_the_next_attribute(
    multi_phase: PhantomStudy, strip: dict[str, object], split: str
) -> None:
    infos = edit(infos_of(multi_phase), lambda i: True, **strip, number_of_temporal_positions=None)
    result = classify_dce(infos)
    assert result.eligible, result.reason
    assert split in result.series[0].reason
    assert [p.time_from_pre_s for p in result.phases] == pytest.approx(expected_times(multi_phase)[0])


def test_trigger_time_orders_phases_when_clock_times_are_missing(multi_phase: PhantomStudy) -> None:
    infos = edit(infos_of(multi_phase), lambda i: True, acquisition_time_s=None, content_time_s=None)
    result = classify_dce(infos)
    assert result.eligible and result.phases[0].time_source == "TriggerTime"
    assert [p.time_from_pre_s for p in result.phases] == pytest.approx(expected_times(multi_phase)[0])
    # injection time: ContrastBolusStartTime is a clock time; without AcquisitionTime it cannot be related
    assert result.injection_time_source.startswith("assumed")
    assert result.phases[1].time_after_injection_s == pytest.approx(result.phases[1].time_from_pre_s)


def test_configured_injection_delay_is_used_without_bolus_start(per_phase: PhantomStudy) -> None:
    infos = edit(infos_of(per_phase), lambda i: True, contrast_start_time_s=None)
    result = classify_dce(infos, DceRules(default_injection_delay_s=20.0))
    assert result.eligible
    assert [p.time_after_injection_s for p in result.phases] == pytest.approx(
        [t - 20.0 for t in per_phase.phase_times_s]
    )


@pytest.mark.parametrize(
    ("description", "image_type", "role"),
    [
        ("Ph1/VIBRANT SUB", (), SeriesRole.SUBTRACTION),  # GE
        ("t1_fl3d_tra_dyn_SUB", (), SeriesRole.SUBTRACTION),  # Siemens naming
        ("DYN eTHRIVE", ("DERIVED", "PRIMARY", "SUBTRACTION"), SeriesRole.SUBTRACTION),  # Philips ImageType
        ("3-plane localizer", (), SeriesRole.LOCALIZER),
        ("AAHead_Scout", ("ORIGINAL", "PRIMARY", "LOCALIZER"), SeriesRole.LOCALIZER),
        ("ax T2 FSE", (), SeriesRole.T2),
        ("ep2d_diff_b50_800", (), SeriesRole.DWI),
        ("MIP dyn 2", (), SeriesRole.DERIVED),
    ],
)
def test_vendor_series_that_are_not_phases_are_marked(
    per_phase: PhantomStudy, description: str, image_type: tuple[str, ...], role: SeriesRole
) -> None:
    infos = infos_of(per_phase)
    # an extra series on the dynamic grid: same geometry as phase 2, other UID, description and ImageType
    extra_uid = "1.2.826.0.1.3680043.8.498.99"
    second = {i.sop_instance_uid for i in infos if i.series_instance_uid == infos[40].series_instance_uid}
    copies = [
        dataclasses.replace(
            i,
            series_instance_uid=extra_uid,
            sop_instance_uid=i.sop_instance_uid + ".9",
            series_description=description,
            image_type=image_type or i.image_type,
        )
        for i in infos
        if i.sop_instance_uid in second
    ]
    result = classify_dce([*infos, *copies])
    assert result.eligible and len(result.phases) == 6, result.reason
    (extra,) = [s for s in result.series if s.series_uid == extra_uid]
    assert extra.role is role and extra.phase_indices == ()
    assert extra_uid not in {p.series_uid for p in result.phases}


@pytest.mark.parametrize(
    ("vendor", "describe"),
    [
        ("GE", lambda n: (f"Ph{n}/Ax VIBRANT MPh", "VIBRANT MPh BREAST")),
        ("Siemens", lambda _n: ("t1_fl3d_tra_dynaVIEWS_spair", "t1_fl3d_tra_dynaVIEWS_spair")),  # identical names
        ("Philips", lambda n: (f"DYN_eTHRIVE_{n}", "DYN eTHRIVE SENSE")),
    ],
)
def test_vendor_named_phase_series_are_ordered_by_time(
    per_phase: PhantomStudy, vendor: str, describe: Callable[[int], tuple[str, str]]
) -> None:
    """One series per phase, named as GE, Siemens and Philips scanners name them: the phases are found
    and ordered by acquisition time, whatever the names say (the phantom's body part stays BREAST)."""
    phase_of = {path: n for n, files in enumerate(per_phase.phase_files, start=1) for path in files}
    renamed = [
        dataclasses.replace(
            i, series_description=describe(phase_of[i.path])[0], protocol_name=describe(phase_of[i.path])[1]
        )
        for i in infos_of(per_phase)
    ]
    result = classify_dce(renamed)
    assert result.eligible and len(result.phases) == 6, (vendor, result.reason)
    assert [p.time_from_pre_s for p in result.phases] == pytest.approx(expected_times(per_phase)[0])
    assert [p.role for p in result.phases] == [PhaseRole.PRE_CONTRAST] + [PhaseRole.POST_CONTRAST] * 5
    for phase, files in zip(result.phases, per_phase.phase_files, strict=True):
        assert sorted(phase.paths) == sorted(files)


def test_philips_multi_phase_series_is_split_by_temporal_position(multi_phase: PhantomStudy) -> None:
    renamed = [
        dataclasses.replace(i, series_description="DYN_eTHRIVE SENSE", protocol_name="DYN eTHRIVE")
        for i in infos_of(multi_phase)
    ]
    result = classify_dce(renamed)
    assert result.eligible and result.layout == "multi-phase" and len(result.phases) == 6, result.reason
    assert [p.time_from_pre_s for p in result.phases] == pytest.approx(expected_times(multi_phase)[0])


def test_study_without_dynamic_series_says_why(shared_data: Path) -> None:
    mr = sorted((shared_data / "ibsi/ibsi_validation/dicom/STS_001/MR_T1").rglob("*.dcm"))
    result = classify_study_files(mr)
    assert not result.eligible and result.reason_code is DceReason.NO_DYNAMIC_SERIES
    roles = {s.role for s in result.series}
    assert roles == {SeriesRole.NON_DYNAMIC, SeriesRole.RTSTRUCT}
    ct = sorted((shared_data / "ibsi/ibsi_validation/dicom/STS_001/CT").rglob("*.dcm"))
    assert classify_study_files(ct).reason_code is DceReason.NO_MR_IMAGES


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda infos, uids: [i for i in infos if i.series_instance_uid in uids[:2]], DceReason.TOO_FEW_PHASES),
        (lambda infos, uids: edit(infos, lambda i: True, body_part="CHEST", protocol_name="DCE"), DceReason.NOT_BREAST),
        (
            lambda infos, uids: edit(
                infos,
                lambda i: True,
                acquisition_time_s=None,
                content_time_s=None,
                series_time_s=None,
                trigger_time_ms=None,
            ),
            DceReason.PHASE_TIMES_UNKNOWN,
        ),
        (
            lambda infos, uids: edit(infos, lambda i: i.series_instance_uid == uids[0], series_description="post 0"),
            DceReason.NO_PRE_CONTRAST,
        ),
        (
            lambda infos, uids: edit(
                infos,
                lambda i: i.series_instance_uid == uids[1],
                acquisition_time_s=next(x.acquisition_time_s for x in infos if x.series_instance_uid == uids[0]),
            ),
            DceReason.PHASE_TIMES_NOT_DISTINCT,
        ),
        (
            # two groups of series on two grids: which one is the dynamic acquisition is not guessed
            lambda infos, uids: edit(infos, lambda i: i.series_instance_uid in uids[4:], rows=32),
            DceReason.AMBIGUOUS_DYNAMIC,
        ),
        (
            lambda infos, uids: [i for i in infos if i.image_position_mm is not None and i.image_position_mm[2] < -125],
            DceReason.TOO_FEW_SLICES,
        ),
    ],
    ids=["too-few-phases", "not-breast", "no-times", "no-pre", "same-time", "ambiguous", "too-few-slices"],
)
def test_ineligible_studies_end_with_an_explicit_reason(
    per_phase: PhantomStudy,
    mutate: Callable[[list[InstanceInfo], list[str]], list[InstanceInfo]],
    code: DceReason,
) -> None:
    infos = infos_of(per_phase)
    uids = list(dict.fromkeys(i.series_instance_uid for i in sorted(infos, key=lambda i: i.series_number or 0)))
    result = classify_dce(mutate(infos, uids))
    assert not result.eligible
    assert result.reason_code is code, result.reason
    assert result.reason


def test_inconsistent_slice_spacing_makes_the_study_ineligible(per_phase: PhantomStudy) -> None:
    infos = infos_of(per_phase)
    target = infos[3]
    x, y, z = target.image_position_mm or (0.0, 0.0, 0.0)
    broken = edit(infos, lambda i: i.sop_instance_uid == target.sop_instance_uid, image_position_mm=(x, y, z + 0.4))
    result = classify_dce(broken)
    assert result.reason_code is DceReason.INCONSISTENT_GEOMETRY and "INCONSISTENT_SPACING" in result.reason


def test_rules_round_trip_through_json_and_reject_unknown_fields(tmp_path: Path) -> None:
    rules = DceRules(min_phases=4, time_sources=("TriggerTime", "AcquisitionTime"))
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(rules_as_json(rules)))
    assert DceRules.from_json_file(path) == rules
    for bad in ({"min_phase": 3}, {"subtraction_pattern": "("}, {"time_sources": ["Clock"]}, {"min_phases": 1}):
        with pytest.raises(DceRulesError):
            DceRules.from_mapping(bad)


def test_to_json_has_no_uids(per_phase: PhantomStudy) -> None:
    text = json.dumps(classify_dce(infos_of(per_phase)).to_json())
    assert per_phase.study_instance_uid not in text
    assert "1.2.840.10008.5.1.4.1.1.4" in text  # SOP class UIDs are not identifying
    assert not any(i.series_instance_uid in text for i in infos_of(per_phase))


def test_a_lone_series_on_another_grid_is_not_a_phase(per_phase: PhantomStudy) -> None:
    infos = infos_of(per_phase)
    last = infos[-1].series_instance_uid
    result = classify_dce(edit(infos, lambda i: i.series_instance_uid == last, rows=32))
    assert result.eligible and len(result.phases) == 5
    (lone,) = [s for s in result.series if s.series_uid == last]
    assert lone.role is SeriesRole.NON_DYNAMIC and "single acquisition" in lone.reason
