"""Channel targets/service config and PHI-free JSON logging."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from oncohabitat.common.channels import channel_target, service_config
from oncohabitat.common.log_setup import JsonFormatter, PhiRedactingFilter, StackOnlyFormatter


def test_single_and_multiple_addresses() -> None:
    assert channel_target("localhost:50055") == "ipv4:127.0.0.1:50055"
    assert channel_target("10.0.0.1:1,10.0.0.2:2") == "ipv4:10.0.0.1:1,10.0.0.2:2"
    assert channel_target(["::1:5"]) == "ipv6:[::1]:5"
    assert channel_target("scoring.svc:50055") == "dns:///scoring.svc:50055"
    assert channel_target("dns:///scoring-headless:50055") == "dns:///scoring-headless:50055"
    with pytest.raises(ValueError, match="HOST:PORT"):
        channel_target("nohostport")
    with pytest.raises(ValueError, match="DNS name"):
        channel_target("a.example:1,b.example:2")


def test_service_config_retries_unavailable_only_and_sets_deadline() -> None:
    config = json.loads(service_config("oncohabitat.v1.Scoring", timeout_s=12.5))
    method = config["methodConfig"][0]
    assert method["name"] == [{"service": "oncohabitat.v1.Scoring"}]
    assert method["timeout"] == "12.500s"
    assert method["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]


def _format(record: logging.LogRecord) -> dict[str, object]:
    assert PhiRedactingFilter().filter(record)
    return json.loads(JsonFormatter("test").format(record))  # type: ignore[no-any-return]


def test_json_log_line_redacts_patient_fields_and_names() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "stored instance for %s", ("DOE^JANE",), None)
    record.PatientName = "DOE^JANE"
    record.patient_id = "12345"
    record.AccessionNumber = "A1"
    record.study_key = "ab" * 16
    line = _format(record)
    text = json.dumps(line)
    assert "DOE" not in text and "12345" not in text
    assert line["AccessionNumber"] == "[redacted]"
    assert line["PatientName"] == "[redacted]"
    assert line["patient_id"] == "[redacted]"
    assert line["study_key"] == "ab" * 16
    assert line["service"] == "test"
    assert line["message"] == "stored instance for [redacted]"


def test_values_quoted_by_dicom_libraries_and_warnings_are_masked() -> None:
    raw_uid = "1.2.840.99999.123456789"
    for name in ("pydicom", "pydicom.valuerep", "pynetdicom.dsutils", "py.warnings"):
        record = logging.LogRecord(name, logging.WARNING, __file__, 1, "Invalid value for VR UI: %r", (raw_uid,), None)
        line = _format(record)
        assert raw_uid not in json.dumps(line), name
        assert line["message"] == "Invalid value for VR UI: '[redacted]'"
    ours = logging.LogRecord(
        "oncohabitat.listener", logging.INFO, __file__, 1, "setting 'keep_first' applied", (), None
    )
    assert _format(ours)["message"] == "setting 'keep_first' applied"  # our own messages carry no values


def test_text_log_lines_show_an_exception_without_its_message() -> None:
    formatter = StackOnlyFormatter("%(levelname)s %(message)s")
    value = "^".join(("DOE", "JANE")) + " " + ".".join(("1.2.840", "99999.1"))  # not in any source line
    try:
        raise ValueError(f"Invalid value {value!r}")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = formatter.format(record)
    assert "DOE" not in text and "1.2.840.99999.1" not in text
    assert "Traceback" in text and text.rstrip().endswith("ValueError")
    assert "test_text_log_lines_show_an_exception_without_its_message" in text  # the stack is kept


def test_text_log_lines_show_a_chain_of_exceptions_cause_first_without_messages() -> None:
    formatter = StackOnlyFormatter("%(message)s")
    value = "^".join(("DOE", "JANE"))
    try:
        try:
            raise KeyError(value)
        except KeyError as cause:
            raise RuntimeError(f"wrapped {value}") from cause
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = formatter.format(record)
    assert "DOE" not in text
    assert text.index("KeyError") < text.index("which led to:") < text.index("RuntimeError")
