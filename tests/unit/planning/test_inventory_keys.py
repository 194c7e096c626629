"""Inventory rows for Transit keys: read from transit RotationPolicies' status, numbers and names only."""

from __future__ import annotations

import datetime
import json

from rotor.planning.inventory_keys import key_rows, render_csv, render_json, render_table

NOW = datetime.datetime(2026, 5, 1, 12, 0, tzinfo=datetime.UTC)


def _policy(name: str, spec: dict[str, object], status: dict[str, object] | None = None) -> dict[str, object]:
    return {"metadata": {"namespace": "shop", "name": name}, "spec": spec, "status": status or {}}


POLICIES = [
    _policy("signing", {"strategy": "transit", "transit": {"key": "shop-orders"}},
            {"phase": "Complete", "lastRotationTime": "2026-04-28T12:00:00Z",
             "nextRotationTime": "2026-05-28T12:00:00Z",
             "active": {"key": "transit/shop-orders", "keyVersion": "3", "minDecryptionVersion": "3",
                        "minEncryptionVersion": "3", "keyVersionCreated": "2026-04-28T11:59:00Z"}}),
    _policy("fresh", {"strategy": "transit", "transit": {"mount": "keys", "key": "shop-new"}}),
    _policy("db", {"strategy": "versioned"}, {"active": {"version": "7"}}),
]


def test_one_row_per_transit_policy_with_versions_and_the_latest_versions_age() -> None:
    rows = key_rows(POLICIES)
    assert [(r.rotation_policy, r.key, r.latest_version, r.min_decryption_version) for r in rows] == [
        ("fresh", "keys/shop-new", None, None), ("signing", "transit/shop-orders", 3, 3)]
    table = render_table(rows, NOW).splitlines()
    assert table[0].split() == ["NAMESPACE", "POLICY", "KEY", "LATEST", "MIN", "DECRYPT", "MIN", "ENCRYPT", "AGE",
                                "NEXT", "ROTATION", "DELIVERED", "PHASE"]
    assert table[2].split() == ["shop", "signing", "transit/shop-orders", "3", "3", "3", "3d", "in", "27d", "-",
                                "Complete"]
    assert table[1].split()[3:8] == ["-", "-", "-", "-", "-"]  # not rotated yet: nothing known
    found = json.loads(render_json(rows, NOW))
    assert found[1]["latestAgeSeconds"] == 3 * 86400 + 60 and found[1]["minEncryptionVersion"] == 3
    assert render_csv(rows, NOW).splitlines()[0].endswith(",latestAgeSeconds")


def test_a_key_whose_rotation_is_past_due_says_so() -> None:
    late = _policy("late", {"strategy": "transit", "transit": {"key": "k"}},
                   {"nextRotationTime": "2026-05-01T09:00:00Z"})
    [row] = key_rows([late])
    header, line = render_table([row], NOW).splitlines()
    assert line[header.index("NEXT ROTATION"):header.index("DELIVERED")].split() == ["overdue", "3h"]
    assert json.loads(render_json([row], NOW))[0]["nextRotation"] == "2026-05-01T09:00:00Z"
