"""UID validation, opaque keys and the study content digest."""

from __future__ import annotations

import hashlib

import pytest

from oncohabitat.dicomio.identifiers import content_digest, is_valid_uid, uid_key


@pytest.mark.parametrize("value", ["1.2.840.10008.5.1.4.1.1.2", "1", "0.0", "1.2.05", "1" * 64, "1." + "2" * 62])
def test_conformant_uids_are_accepted(value: str) -> None:
    assert is_valid_uid(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "../x",
        "/etc/x",
        "1" * 65,
        "1.2\x003",
        "1.2.abc",
        "1..2",
        ".1.2",
        "1.2.",
        "1.2\n",
        "1 .2",
        "1.2\\3",
        None,
        1.2,
    ],
)
def test_non_conformant_uids_are_refused(value: object) -> None:
    assert not is_valid_uid(value)


def test_uid_key_is_truncated_sha256() -> None:
    uid = "1.2.840.113619.2.55.3"
    assert uid_key(uid) == hashlib.sha256(uid.encode()).hexdigest()[:32]
    assert len(uid_key(uid)) == 32 and uid_key(uid) != uid_key(uid + "1")


def test_content_digest_is_order_independent_and_content_sensitive() -> None:
    pairs = [("1.2.3", "a" * 64), ("1.2.4", "b" * 64)]
    assert content_digest(pairs) == content_digest(list(reversed(pairs)))
    assert content_digest(pairs) == hashlib.sha256(f"1.2.3 {'a' * 64}\n1.2.4 {'b' * 64}\n".encode()).hexdigest()
    assert content_digest(pairs) != content_digest([("1.2.3", "a" * 64), ("1.2.4", "c" * 64)])
