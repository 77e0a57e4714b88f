"""Listener settings: removed settings are refused with a message naming them and why they went."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from oncohabitat.listener.settings import REMOVED_SETTINGS, ListenerSettings


@pytest.mark.parametrize("name", sorted(REMOVED_SETTINGS))
def test_a_removed_setting_still_set_refuses_the_start_with_its_reason(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"ONCOHABITAT_LISTENER_{name}", "1")
    with pytest.raises(ValidationError, match=f"ONCOHABITAT_LISTENER_{name} \\("):
        ListenerSettings(data_dir=tmp_path)


def test_without_removed_settings_the_defaults_load(tmp_path: Path) -> None:
    settings = ListenerSettings(data_dir=tmp_path)
    assert settings.journal_layout == (8, 32 * 1024 * 1024)  # 256 MiB in 32 MiB segments
    assert settings.associations_per_peer == 4
