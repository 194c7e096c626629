"""A leaked certificate key or Transit key: which Vault audit entries count (issuances from the PKI role,
fetches by serial; uses, exports and backups of the key) and what Identify and Audit say about them."""

from __future__ import annotations

import datetime
import json
from typing import Any

from rotor.api.leakincident import AuditRead
from rotor.planning import incident_keys as keyed
from rotor.planning import vault_audit

UTC = datetime.UTC
START = datetime.datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)
END = datetime.datetime(2026, 1, 1, 0, 1, 0, tzinfo=UTC)


def line(path: str, *, operation: str = "update", account: str | None = "app", time: str = "2026-01-01T00:00:20Z",
         data: dict[str, Any] | None = None, error: str | None = None) -> str:
    """A response entry as Vault's file audit device writes it (strings in data are HMACed)."""
    auth: dict[str, Any] = {"display_name": "root"} if account is None else {
        "display_name": f"kubernetes-a-{account}",
        "metadata": {"service_account_name": account, "service_account_namespace": "a", "role": "r"}}
    entry: dict[str, Any] = {"type": "response", "time": time, "auth": auth,
                             "request": {"path": path, "operation": operation, "remote_address": "10.0.0.7"},
                             "response": {"data": data or {}}}
    if error:
        entry["error"] = error
    return json.dumps(entry)


def test_a_certificate_audit_lists_issuances_from_its_role_and_fetches_of_its_serial() -> None:
    serial = "1a:2b:3c"
    lines = [
        line("pki/issue/web", data={"serial_number": "hmac-sha256:0f", "certificate": "hmac-sha256:1e"}),
        line("pki/sign/web", account="ci"),
        line("pki/cert/1a-2b-3c", operation="read", account=None),  # Vault takes either separator
        line("pki/cert/1A:2B:3C", operation="read", account="intruder"),
        line("pki/issue/web", account="intruder", error="permission denied"),
        line("pki/issue/api"),  # another role
        line("pki/cert/ff:ff", operation="read"),  # another certificate
        line("pki/issue/web", time="2026-01-01T00:00:05Z"),  # before the certificate was issued
        line("pki/revoke", data={"serial_number": "hmac-sha256:0f"}),
    ]
    rows, total = vault_audit.audit_requests(lines, requests=vault_audit.certificate_requests("pki", "web", serial),
                                             start=START, end=END)
    assert total == 5
    assert [(r["operation"], r["path"], keyed.requester(r), r["denied"]) for r in rows] == [
        ("issue", "pki/issue/web", "a/app", False), ("sign", "pki/sign/web", "a/ci", False),
        ("cert", "pki/cert/1a-2b-3c", "root", False), ("cert", "pki/cert/1A:2B:3C", "a/intruder", False),
        ("issue", "pki/issue/web", "a/intruder", True)]
    assert "hmac-sha256" not in json.dumps(rows)  # nothing of the response is copied
    for row in rows:
        AuditRead.model_validate(row)


def test_a_key_audit_lists_uses_exports_and_backups_of_that_key_with_the_versions_vault_logged() -> None:
    lines = [
        line("transit/encrypt/orders", data={"ciphertext": "hmac-sha256:aa", "key_version": 3}),
        line("transit/sign/orders/sha2-256", account="signer", data={"signature": "hmac-sha256:bb", "key_version": 2}),
        line("transit/decrypt/orders", account="worker", data={"plaintext": "hmac-sha256:cc"}),
        line("transit/export/signing-key/orders/2", operation="read", account=None),
        line("transit/backup/orders", operation="read", account=None),
        line("transit/datakey/plaintext/orders", account="batch", data={"key_version": 3}),
        line("transit/encrypt/orders-v2"),  # another key, named alike
        line("transit/keys/orders/rotate"),  # managing the key, not using it
        line("transit/keys/orders", operation="read"),
        line("other/encrypt/orders"),  # another mount
    ]
    rows, total = vault_audit.audit_requests(lines, requests=vault_audit.key_requests("transit", "orders"),
                                             start=START, end=None)
    assert total == 6
    assert [(r["operation"], keyed.requester(r), r.get("keyVersion")) for r in rows] == [
        ("encrypt", "a/app", 3), ("sign", "a/signer", 2), ("decrypt", "a/worker", None), ("export", "root", 2),
        ("backup", "root", None), ("datakey", "a/batch", 3)]
    assert keyed.key_versions(rows) == [2, 3]
    assert "hmac-sha256" not in json.dumps(rows)
    for row in rows:
        AuditRead.model_validate(row)


def test_key_action_reads_the_path_only_for_this_key_on_this_mount() -> None:
    action = vault_audit.key_action
    assert action("team/transit", "k", "team/transit/verify/k/sha2-512") == "verify"
    assert action("team/transit", "k", "team/transit/hmac/k") == "hmac"
    assert action("team/transit", "k", "transit/hmac/k") is None
    assert action("transit", "k", "transit/export/hmac-key/k") == "export"
    assert action("transit", "k", "transit/backup/k/extra") is None
    assert action("transit", "k", "transit/restore/k") is None


def test_the_kv_reads_keep_their_meaning() -> None:
    lines = [line("secret/data/a/db", operation="read"), line("secret/data/a/db"),
             line("secret/a/db", operation="read")]
    rows, total = vault_audit.audit_reads(lines, paths=vault_audit.audit_paths("secret", "a/db"), start=START, end=END)
    assert total == 2 and {r["operation"] for r in rows} == {"read"} and "keyVersion" not in rows[0]


def test_the_audited_message_counts_each_requesters_actions_and_names_the_key_versions() -> None:
    rows: list[dict[str, Any]] = [{"operation": "sign", "serviceAccount": "a/app", "keyVersion": 2},
            {"operation": "sign", "serviceAccount": "a/app", "keyVersion": 1},
            {"operation": "encrypt", "serviceAccount": "a/app"},
            {"operation": "export", "serviceAccount": None, "displayName": "root", "keyVersion": 1, "denied": True}]
    message = keyed.audited("4 request(s): x", rows, transit=True)
    assert message == ("4 request(s): x; by a/app (encrypt 1, sign 2), root (export 1); key version(s) used: 1, 2; "
                       "1 denied")
    assert keyed.audited("0 request(s): x", [], transit=True) == \
        "0 request(s): x; by none; key version(s) used: not in the log"
    assert keyed.audited("1 request(s): y", rows[2:3], transit=False) == "1 request(s): y; by a/app (encrypt 1)"


def test_a_long_list_is_cut_so_the_timeline_entry_fits() -> None:
    rows = [{"operation": "issue", "serviceAccount": f"a/sa-{n:02}"} for n in range(40)]
    message = keyed.audited("40 request(s): x", rows, transit=False)
    assert message.endswith("a/sa-09 (issue 1) and 30 more") and len(message) < 1024


def test_identify_messages_say_what_a_certificate_or_key_reaches() -> None:
    web = [{"kind": "Deployment", "name": "web"}, {"kind": "Pod", "name": "debug"}]
    cert = keyed.certificate_identified(serial="1a:2b", pki="pki/web", target="tls", found=web, order="afterRotation",
                                       why="2 consumer(s)")
    assert cert.startswith("certificate 1a:2b (PKI role pki/web): 2 workload(s) mount its Secret tls: "
                           "Deployment/web, Pod/debug;")
    in_place = keyed.key_identified(key="transit/orders", version="3", exported=False, delivered=[], target="orders",
                                    found=[], order="immediate", why="none")
    assert in_place.startswith("Transit key transit/orders version 3 used in place, no material delivered")
    exported = keyed.key_identified(key="transit/orders", version="3", exported=True, delivered=["key-v3"],
                                    target="orders", found=web[:1], order="afterRotation", why="1")
    assert "exported to Secret orders (exposed material in key-v3): 1 consumer(s): Deployment/web" in exported


def test_the_exposure_of_a_key_version_starts_when_vault_made_it_if_known() -> None:
    made = datetime.datetime(2026, 1, 1, 0, 0, 1, 500000, tzinfo=UTC)
    assert keyed.key_window_start(exposed=3, latest=3, latest_created=made, detected="2026-01-02T00:00:00Z") == \
        "2026-01-01T00:00:01.500Z"
    assert keyed.key_window_start(exposed=2, latest=3, latest_created=made, detected="2026-01-02T00:00:00Z") == \
        "2026-01-02T00:00:00Z"
