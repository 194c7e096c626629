"""What a Transit key read gives Rotor: numbers and the latest version's creation time, whichever form
Vault writes it in (Unix seconds for symmetric keys, RFC 3339 for asymmetric ones); never a key."""

from __future__ import annotations

import datetime

from rotor.backends.vault.keys import versions_of


def test_symmetric_and_asymmetric_keys_tell_when_their_latest_version_was_made() -> None:
    symmetric = versions_of({"latest_version": 2, "min_decryption_version": 1, "min_encryption_version": 0,
                             "keys": {"1": 1764800000, "2": 1764806400}})
    assert (symmetric.latest, symmetric.min_decryption, symmetric.min_encryption) == (2, 1, 0)
    assert symmetric.latest_created == datetime.datetime.fromtimestamp(1764806400, tz=datetime.UTC)
    asymmetric = versions_of({"latest_version": 1, "min_decryption_version": 1, "keys": {"1": {
        "creation_time": "2026-12-04T02:00:00.123456789Z", "public_key": "-----BEGIN PUBLIC KEY-----..."}}})
    assert asymmetric.latest_created == datetime.datetime(2026, 12, 4, 2, 0, 0, 123456, tzinfo=datetime.UTC)
    assert versions_of({"latest_version": 3}).latest_created is None
