"""The pure parts of the incident's tenant guarantees: denylist scope, which values may be entries, Rotor's
record of the lists, the evidence that the HMAC key was used, the revocation check's allow-list, and
the signed record of who reported and resolved an incident."""

from __future__ import annotations

import datetime

import pytest

from rotor.api import keys
from rotor.planning import incident as plan
from rotor.planning import incident_actors as actors
from rotor.planning import incident_denylist as denylist
from rotor.planning import times
from rotor.planning.incident_denylist import EVERYWHERE, Entry, Scope

KEY = b"k" * 32
WHERE = "vault:default/secret/team-a/db"


# -- scope ----------------------------------------------------------------------------------------------

def test_a_tenants_list_reaches_only_its_namespace_and_location_the_operators_every_source() -> None:
    tenant = denylist.scope_for("team-a", WHERE, "rotor-system")
    assert tenant == Scope("team-a", WHERE)
    assert tenant.covers("team-a", WHERE)
    assert not tenant.covers("team-b", WHERE) and not tenant.covers("team-a", "vault:default/secret/team-a/other")
    assert denylist.scope_for("rotor-system", WHERE, "rotor-system") == EVERYWHERE
    lists = [(tenant, frozenset({"sha256:a"})), (EVERYWHERE, frozenset({"sha256:all"}))]
    assert denylist.applicable(lists, "team-a", WHERE) == {"sha256:a", "sha256:all"}
    assert denylist.applicable(lists, "team-b", WHERE) == {"sha256:all"}
    assert denylist.applicable([], "team-b", None) == frozenset()


# -- which values may be entries ---------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "why"), [
    ("5432", "shorter than 8 characters"),
    ("true", "shorter than 8 characters"),
    ("postgres", "a common value"),
    ("Administrator", "a common value"),
    ("127.0.0.1", "a common value"),
    ("123456789012", "a number"),
    ("aaaaaaaaaaaaaaaa", "low entropy"),
    ("abababababababab", "low entropy"),
    ("-----BEGIN CERTIFICATE-----\nMIIB...", "public certificate"),
])
def test_values_too_short_or_common_to_identify_a_credential_are_refused(value: str, why: str) -> None:
    reason = denylist.not_identifying(value)
    assert reason is not None and why in reason and value not in reason


@pytest.mark.parametrize("value", ["pw-0f9e8d7c", "Summer2024!", "tok-a1b2c3d4e5", "xK9#mP2q"])
def test_credentials_are_accepted(value: str) -> None:
    assert denylist.not_identifying(value) is None


def test_screen_names_keys_and_reasons_never_values() -> None:
    accepted, refused = denylist.screen({"password": "administrator", "token": "tok-a1b2c3d4e5"})
    assert accepted == ["token"] and refused == [("password", "a common value (a default user, password, host or "
                                                              "word)")]
    message = denylist.refused_message(refused)
    assert message.startswith("not denylisted") and "password: a common value" in message
    assert "administrator" not in message


# -- Rotor's record ---------------------------------------------------------------------------------------

def test_the_record_round_trips_and_a_corrupt_one_is_never_taken_as_empty() -> None:
    since = "2026-01-01T00:00:00Z"
    entries = {"u1": Entry("u1", "team-a/leak", Scope("team-a", WHERE), frozenset({"sha256:a"}), since),
               "u2": Entry("u2", "rotor-system/x", EVERYWHERE, frozenset({"sha256:b"}), since)}
    assert denylist.decode_store(denylist.encode_store(entries)) == entries
    assert denylist.decode_store(None) == {} and denylist.decode_store(b"") == {}
    for corrupt in (b"{", b'{"entries": [1]}', b'{"version": 1}', b'{"entries": {"u": {"scope": 1}}}'):
        with pytest.raises(denylist.StoreCorrupt):
            denylist.decode_store(corrupt)


def test_an_unresolved_incidents_status_list_is_scoped_as_contain_would() -> None:
    body = {"metadata": {"namespace": "team-a", "name": "leak", "uid": "u1"}, "spec": {},
            "status": {"denylist": ["sha256:a"], "blastRadius": {"backend": WHERE}}}
    entry = denylist.from_status(body, "rotor-system", "now")
    assert entry == Entry("u1", "team-a/leak", Scope("team-a", WHERE), frozenset({"sha256:a"}), "now")
    assert denylist.from_status({**body, "spec": {"resolved": True}}, "rotor-system", "now") is None
    assert denylist.from_status({**body, "status": {"phase": "Resolved", "denylist": ["x"]}}, "rotor-system",
                                "now") is None
    assert denylist.from_status({**body, "status": {}}, "rotor-system", "now") is None


def test_a_digest_in_any_status_is_evidence_that_the_key_was_used() -> None:
    unused = [{"metadata": {"namespace": "a", "name": "new"}, "status": {}}]
    assert denylist.key_use("SecretSource", unused) is None
    used = [*unused, {"metadata": {"namespace": "a", "name": "db"}, "status": {"dataHmac": "sha256:x"}}]
    assert denylist.key_use("SecretSource", used) == "SecretSource a/db"
    message = denylist.key_lost_message("rotor-system", "rotor-hmac-key", "SecretSource a/db")
    assert "Restore the Secret from your backup" in message and "hmac_key_allow_new" in message


# -- the revocation check's allow-list ------------------------------------------------------------------------

def test_only_one_allow_listed_host_is_ever_dialled() -> None:
    login = {"username": "u", "password": "p", "host": "db.internal", "port": "5432"}
    allowed = ["db.internal:5432"]
    assert plan.login_target(login, allowed, "s") == (("db.internal", 5432, "postgres"), None)
    assert plan.login_target({**login, "port": "5433"}, allowed, "s") == (
        None, "not confirmed: host not allow-listed (operator setting s)")
    assert plan.login_target({**login, "host": "db.internal,10.0.0.1"}, allowed, "s")[1] == (
        "not confirmed: a host list is refused (one host per attempt)")
    assert plan.login_target({**login, "port": "5432,5433"}, allowed, "s")[1] == (
        "not confirmed: a host list is refused (one host per attempt)")
    assert plan.login_target({**login, "host": "/var/run/postgresql"}, allowed, "s")[0] is None
    assert plan.login_target({**login, "dbname": "x host=evil"}, allowed, "s")[1] == (
        "not confirmed: the database name is not a plain name")
    assert plan.login_target({**login, "dbname": "x=evil"}, allowed, "s")[1] == (
        "not confirmed: the database name is not a plain name")
    assert plan.login_target({**login, "host": "::1"}, ["[::1]:5432"], "s")[0] == ("::1", 5432, "postgres")


# -- who reported and resolved ---------------------------------------------------------------------------------

NOW = times.parse("2026-12-01T10:00:00Z")
META = {"namespace": "team-a", "name": "leak", "uid": "uid-1", "creationTimestamp": "2026-12-01T10:00:00Z"}


def test_the_webhook_records_the_reporter_and_overwrites_what_the_client_sent() -> None:
    body = {"metadata": {**META, "uid": None, "annotations": {keys.REPORTED_BY: "forged", keys.RESOLVED_BY: "x"}},
            "spec": {}}
    changes = actors.admission_annotations(KEY, operation="CREATE", body=body, old=None, user="alice", now=NOW)
    assert changes[keys.RESOLVED_BY] is None  # removed: not resolved
    stored = {**META, "annotations": {keys.REPORTED_BY: changes[keys.REPORTED_BY]}}
    assert actors.reporter(KEY, stored, "kubectl-create") == "alice"


def test_an_update_keeps_the_recorded_reporter_and_records_a_new_resolver() -> None:
    reported = actors.signed(KEY, "reported", {**META, "uid": ""}, "alice", NOW)
    old = {"metadata": {**META, "annotations": {keys.REPORTED_BY: reported}}, "spec": {"resolved": False}}
    forged = {"metadata": {**META, "annotations": {keys.REPORTED_BY: "bob", keys.RESOLVED_BY: "bob"}},
              "spec": {"resolved": True}}
    later = NOW + datetime.timedelta(hours=1)
    changes = actors.admission_annotations(KEY, operation="UPDATE", body=forged, old=old, user="carol", now=later)
    assert changes[keys.REPORTED_BY] == reported
    stored = {**META, "annotations": {keys.REPORTED_BY: reported, keys.RESOLVED_BY: changes[keys.RESOLVED_BY]}}
    assert actors.resolver(KEY, stored, "bob-manager", times.iso(later)) == "carol"
    # Not within the window of the recorded write of spec.resolved: a stale record, not believed.
    assert actors.resolver(KEY, stored, "bob-manager", times.iso(later + datetime.timedelta(hours=1))) == \
        "unverified: bob-manager"
    # Another update leaves both as recorded.
    same = {"metadata": stored, "spec": {"resolved": True}}
    again = actors.admission_annotations(KEY, operation="UPDATE", body=same, old=same, user="mallory", now=later)
    assert again == {}


def test_records_are_bound_to_their_object_and_unforgeable() -> None:
    reported = actors.signed(KEY, "reported", {**META, "uid": ""}, "alice", NOW)
    elsewhere = {**META, "name": "other", "annotations": {keys.REPORTED_BY: reported}}
    assert actors.reporter(KEY, elsewhere, "m") == "unverified: m"  # copied to another incident
    recreated = {**META, "creationTimestamp": "2026-12-02T10:00:00Z", "annotations": {keys.REPORTED_BY: reported}}
    assert actors.reporter(KEY, recreated, "m") == "unverified: m"  # the same name a day later
    forged = reported.replace('"alice"', '"root"')
    assert actors.reporter(KEY, {**META, "annotations": {keys.REPORTED_BY: forged}}, "m") == "unverified: m"
    other_key = actors.signed(b"x" * 32, "reported", {**META, "uid": ""}, "alice", NOW)
    assert actors.reporter(KEY, {**META, "annotations": {keys.REPORTED_BY: other_key}}, "m") == "unverified: m"
    assert actors.reporter(KEY, {**META, "annotations": {keys.REPORTED_BY: "not json"}}, None or "") == \
        "unverified: unknown"
    resolved = actors.signed(KEY, "resolved", META, "bob", NOW)
    moved = {**META, "uid": "uid-2", "annotations": {keys.RESOLVED_BY: resolved}}
    assert actors.resolver(KEY, moved, "m", times.iso(NOW)) == "unverified: m"
    generated = {**META, "name": "", "generateName": "db-leak-"}
    named = actors.signed(KEY, "reported", {**generated, "uid": ""}, "alice", NOW)
    assert actors.reporter(KEY, {**META, "name": "db-leak-x7k2q", "generateName": "db-leak-",
                                 "annotations": {keys.REPORTED_BY: named}}, "m") == "alice"


def test_an_incident_created_resolved_records_its_resolver_at_creation() -> None:
    body = {"metadata": {**META, "uid": None}, "spec": {"resolved": True}}
    changes = actors.admission_annotations(KEY, operation="CREATE", body=body, old=None, user="alice", now=NOW)
    stored = {**META, "annotations": changes}
    assert actors.resolver(KEY, stored, "m", times.iso(NOW)) == "alice"
