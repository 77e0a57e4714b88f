"""Every real DICOM file shipped in tests/data parses with pydicom (headers and pixel data)."""

from __future__ import annotations

from pathlib import Path

import pydicom

from oncohabitat.dicomio import InstanceKind, scan_instances


def test_every_shared_dicom_file_parses(shared_data: Path) -> None:
    files = sorted(p for p in shared_data.rglob("*.dcm"))
    assert len(files) == 60 + 59 + 59 + 3  # IBSI CT phantom, STS CT, STS MR slices + their 3 RTSTRUCTs
    kinds: dict[str, int] = {}
    for path in files:
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID and ds.SOPInstanceUID and ds.StudyInstanceUID, path
        if "PixelData" in ds:
            assert ds.pixel_array.shape == (ds.Rows, ds.Columns), path
        kinds[ds.Modality] = kinds.get(ds.Modality, 0) + 1
    assert kinds == {"CT": 119, "MR": 59, "RTSTRUCT": 3}
    infos = scan_instances(files)
    assert sum(info.kind == InstanceKind.RTSTRUCT for info in infos) == kinds["RTSTRUCT"]
    assert all(info.referenced_series_uids for info in infos if info.kind == InstanceKind.RTSTRUCT)
