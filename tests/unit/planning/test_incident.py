"""The leak runbook's decisions: step order, which values leak, blast radius, ordering, audit filtering."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from rotor.api import keys
from rotor.api.leakincident import AuditRead, BlastRadius, Consumer, LeakIncidentSpec
from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.planning import incident as plan
from rotor.planning import incident_radius as radius
from rotor.planning import incident_response as response
from rotor.planning import leases, vault_audit

UTC = datetime.UTC


def test_after_rotation_rotates_before_revoking_and_immediate_the_other_way() -> None:
    assert plan.steps("afterRotation") == ("contain", "identify", "rotate", "revoke", "audit", "prevent")
    assert plan.steps("immediate") == ("contain", "identify", "revoke", "rotate", "audit", "prevent")


def test_next_step_resumes_at_the_first_unfinished_one() -> None:
    done = {"detected": "t", "contained": "t", "identified": "t"}
    assert plan.next_step("immediate", done) == "revoke"
    assert plan.next_step("afterRotation", done) == "rotate"
    assert plan.next_step(None, {"detected": "t"}) == "contain"
    every = {stamp: "t" for stamp in plan.STAMP_OF.values()}
    assert plan.next_step("immediate", every) is None


def test_phase_is_the_last_phase_reached_in_runbook_order() -> None:
    assert plan.phase("immediate", {"contained": "t", "identified": "t", "revoked": "t"}, False) == "Revoked"
    # Rotated alone does not count in immediate order until Revoked (which comes first) is done.
    assert plan.phase("immediate", {"contained": "t", "identified": "t", "rotated": "t"}, False) == "Identified"
    assert plan.phase(None, {}, False) == "Open"
    assert plan.phase("afterRotation", {}, True) == "Resolved"


@pytest.mark.parametrize(("requested", "consumers", "expected"), [
    (None, 3, "afterRotation"), (None, 0, "immediate"), ("immediate", 3, "immediate"),
    ("afterRotation", 0, "afterRotation")])
def test_order_defaults_to_overlap_only_when_someone_reads_the_secret(requested: Any, consumers: int,
                                                                      expected: str) -> None:
    order, why = plan.choose_order(requested, consumers)
    assert order == expected and why


def test_only_the_rotated_properties_are_denylisted() -> None:
    kv = plan.credential_kind("versioned", [], "token")
    assert plan.leaked_keys({"token": "x", "endpoint": "y"}, kv, has_policy=True, requested=None) == (("token",),
                                                                                                      None)
    dynamic = plan.credential_kind("dynamic", [], "password")
    assert plan.leaked_keys({"username": "u", "password": "p", "host": "h"}, dynamic, has_policy=True,
                            requested=None) == (("password",), None)
    static = plan.credential_kind("overlap", ["blue", "green"], "password")
    assert static.kind == "static-role"
    # Without a RotationPolicy: the property named like a credential, password first.
    none = plan.credential_kind(None, [], None)
    assert plan.leaked_keys({"api_token": "a", "password": "b", "url": "c"}, none, has_policy=False,
                            requested=None)[0] == ("password",)
    assert plan.leaked_keys({"value": "a"}, none, has_policy=False, requested=None)[0] == ("value",)
    keys, problem = plan.leaked_keys({"a": "1", "b": "2"}, none, has_policy=False, requested=None)
    assert keys == () and problem is not None and "spec.response.key" in problem
    keys, problem = plan.leaked_keys({"a": "1"}, none, has_policy=False, requested="b")
    assert keys == () and problem is not None and "'b'" in problem
    assert plan.leaked_keys({"a": "1", "b": "2"}, none, has_policy=False, requested="b") == (("b",), None)


def test_db_target_needs_a_login_and_a_host() -> None:
    assert plan.db_target({"username": "u", "password": "p", "host": "db", "port": "6432"}) == ("db", 6432,
                                                                                                "postgres")
    assert plan.db_target({"username": "u", "password": "p"}) is None
    assert plan.db_target({"username": "u", "password": "p", "host": "db", "port": "x"}) is None


def _pod(**spec: Any) -> dict[str, Any]:
    return {"containers": [{"name": "c", **spec.pop("container", {})}], **spec}


def test_consumers_count_every_way_a_pod_names_the_secret_image_pulls_included() -> None:
    spec = _pod(container={"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "db", "key": "k"}}}],
                           "envFrom": [{"secretRef": {"name": "db"}}]},
                volumes=[{"name": "v", "secret": {"secretName": "db"}},
                         {"name": "p", "projected": {"sources": [{"secret": {"name": "db"}},
                                                                 {"serviceAccountToken": {"path": "t"}}]}}])
    init = {"initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "db"}}]}], "containers": []}
    pulls = {"containers": [{"name": "c"}], "imagePullSecrets": [{"name": "db"}]}
    objects = [("Pod", {"metadata": {"name": "all", "namespace": "a"}, "spec": spec}),
               ("Job", {"metadata": {"name": "init", "namespace": "a"}, "spec": {"template": {"spec": init}}}),
               ("Deployment", {"metadata": {"name": "pull", "namespace": "a"}, "spec": {"template": {"spec": pulls}}}),
               ("Pod", {"metadata": {"name": "other", "namespace": "a"}, "spec": _pod()})]
    found = {c["name"]: c["via"] for c in radius.consumers("db", objects)}
    assert found == {"all": ["env", "envFrom", "volume", "projected"], "init": ["envFrom"],
                     "pull": ["imagePullSecrets"]}
    assert radius.env_consumers(radius.consumers("db", objects)) == ["Job/init", "Pod/all"]
    for entry in radius.consumers("db", objects):
        Consumer.model_validate(entry)  # imagePullSecrets included: the CRD's status schema takes it


def test_consumers_lists_exactly_the_workloads_and_pods_reading_the_secret() -> None:
    def template(reads: str, account: str | None = None) -> dict[str, Any]:
        spec = _pod(volumes=[{"name": "v", "secret": {"secretName": reads}}])
        if account:
            spec["serviceAccountName"] = account
        return {"spec": spec}

    objects = [
        ("Deployment", {"metadata": {"name": "api", "namespace": "a"}, "spec": {"template": template("db", "api")}}),
        ("Deployment", {"metadata": {"name": "other", "namespace": "a"}, "spec": {"template": template("x")}}),
        ("CronJob", {"metadata": {"name": "cron", "namespace": "a"},
                     "spec": {"jobTemplate": {"spec": {"template": template("db")}}}}),
        ("Pod", {"metadata": {"name": "api-1", "namespace": "a", "ownerReferences": [
            {"kind": "ReplicaSet", "name": "api-rs", "controller": True}]}, "spec": template("db", "api")["spec"]}),
    ]
    found = radius.consumers("db", objects)
    assert [(c["kind"], c["name"], c["serviceAccount"]) for c in found] == [
        ("CronJob", "cron", "default"), ("Deployment", "api", "api"), ("Pod", "api-1", "api")]
    assert found[2]["owner"] == "ReplicaSet/api-rs"
    for entry in found:
        Consumer.model_validate(entry)  # what the engine writes fits the CRD's status schema
    namespaces, accounts = radius.readers(found, ("a", "reader"))
    assert namespaces == ["a"] and accounts == ["a/api", "a/default", "a/reader"]
    BlastRadius.model_validate({"backend": "vault:default/secret/a/db", "targetSecret": "a/db", "consumers": found})


def _peer(name: str, created: str, **kw: Any) -> plan.Peer:
    fields: dict[str, Any] = {"source": "db", "phase": None, "resolved": False, **kw}
    return plan.Peer(name, created, **fields)


def test_a_later_incident_on_the_same_secret_waits_for_the_earlier_one() -> None:
    first = _peer("first", "2026-01-01T00:00:00Z", phase="Identified")
    second = _peer("second", "2026-01-01T00:00:05Z")
    assert plan.blocker(second, [first, second]) == first
    assert plan.blocker(first, [first, second]) is None
    # Same second: by name, so exactly one of two goes first.
    twin = _peer("a-twin", "2026-01-01T00:00:05Z")
    assert plan.blocker(second, [twin, second]) == twin and plan.blocker(twin, [twin, second]) is None
    # Finished, resolved, or about another secret: no wait.
    assert plan.blocker(second, [_peer("first", "2026-01-01T00:00:00Z", phase="Prevented")]) is None
    assert plan.blocker(second, [_peer("first", "2026-01-01T00:00:00Z", resolved=True)]) is None
    assert plan.blocker(second, [_peer("first", "2026-01-01T00:00:00Z", source="other")]) is None


def test_merged_with_an_earlier_incident_that_revoked_the_same_version() -> None:
    me = _peer("second", "2026-01-01T00:00:05Z", exposed_version="3")
    done = _peer("first", "2026-01-01T00:00:00Z", exposed_version="3", revoked=True)
    assert plan.merged_with(me, [done, me]) == done
    assert plan.merged_with(me, [_peer("first", "2026-01-01T00:00:00Z", exposed_version="2", revoked=True)]) is None


def test_policy_progress_counts_only_a_rotation_that_replaces_the_exposed_version() -> None:
    status = {"phase": "Complete", "rotation": {"id": "r1", "startedAt": "2026-01-01T00:00:00Z",
                                                "old": {"version": "3"}, "new": {"version": "4"}}}
    assert plan.policy_progress(status, "2026-01-01T00:00:09Z", "3").complete  # already running, replaces v3
    # A rotation that was publishing the exposed version itself does not replace it.
    assert not plan.policy_progress(status, "2026-01-01T00:00:00Z", "4").ours
    # Without versions: started at or after the request (RotationPolicy times are whole seconds).
    bare = {"phase": "Complete", "rotation": {"id": "r1", "startedAt": "2026-01-01T00:00:00Z"}}
    assert not plan.policy_progress(bare, "2026-01-01T00:00:01.500Z", None).ours
    ours = plan.policy_progress(bare, "2026-01-01T00:00:00.700Z", None)
    assert ours.ours and ours.complete and ours.readers_moved and ours.published
    overlapping = plan.policy_progress({**status, "phase": "Overlapping"}, "2026-01-01T00:00:00Z", "3")
    assert overlapping.readers_moved and not overlapping.complete
    propagating = plan.policy_progress({**status, "phase": "Propagating"}, "2026-01-01T00:00:00Z", "3")
    assert propagating.published and not propagating.readers_moved
    failed = plan.policy_progress({**status, "phase": "RolledBack",
                                   "rotation": {**status["rotation"], "reason": "verify timed out"}},
                                  "2026-01-01T00:00:00Z", "3")
    assert failed.failed is not None and "verify timed out" in failed.failed


def _audit(time: str, path: str = "secret/data/a/db", operation: str = "read", kind: str = "response",
           account: str = "app", error: str | None = None) -> str:
    entry: dict[str, Any] = {"type": kind, "time": time, "request": {"path": path, "operation": operation,
                                                                     "remote_address": "10.0.0.7"},
                             "auth": {"display_name": f"kubernetes-a-{account}", "metadata": {
                                 "service_account_name": account, "service_account_namespace": "a", "role": "r"}}}
    if error:
        entry["error"] = error
    return json.dumps(entry)


def test_audit_reads_keeps_reads_of_the_path_inside_the_window() -> None:
    start = datetime.datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)
    end = datetime.datetime(2026, 1, 1, 0, 1, 0, tzinfo=UTC)
    lines = [
        _audit("2026-01-01T00:00:05.000000001Z"),  # before the exposed version existed
        _audit("2026-01-01T00:00:20.123456789Z", account="intruder"),
        _audit("2026-01-01T00:00:20.123456789Z", kind="request"),  # request half of the same exchange
        _audit("2026-01-01T00:00:30Z", path="secret/data/a/other"),
        _audit("2026-01-01T00:00:31Z", path="secret/metadata/a/db"),
        _audit("2026-01-01T00:00:32Z", operation="update"),
        _audit("2026-01-01T00:00:40Z", error="permission denied"),
        "not json", "",
        _audit("2026-01-01T00:01:30Z"),  # after revocation
    ]
    reads, total = vault_audit.audit_reads(lines, paths=vault_audit.audit_paths("secret", "a/db"), start=start, end=end)
    assert total == 2
    assert [(r["serviceAccount"], r["denied"]) for r in reads] == [("a/intruder", False), ("a/app", True)]
    assert reads[0]["time"] == "2026-01-01T00:00:20.123Z" and reads[0]["remoteAddress"] == "10.0.0.7"
    for read in reads:
        AuditRead.model_validate(read)
    paths = vault_audit.audit_paths("secret", "a/db")
    capped, total = vault_audit.audit_reads(lines, paths=paths, start=start, end=None, limit=1)
    assert len(capped) == 1 and total == 3


def test_the_exposure_window_runs_from_the_versions_creation_to_revocation() -> None:
    now = datetime.datetime(2026, 1, 2, tzinfo=UTC)
    status: dict[str, Any] = {"timestamps": {"detected": "2026-01-01T12:00:00.000Z"}}
    assert radius.exposure_window(status, now) == (datetime.datetime(2026, 1, 1, 12, tzinfo=UTC), now)
    status["blastRadius"] = radius.identified(
        radius.contained(where="vault:default/secret/a/db", versions=["3"], keys=["password"], namespace="a",
                         target="db-creds"),
        found=[], namespaces=["a"], accounts=["a/app"], leases=[], static_role=None,
        identity=radius.source_identity("a", "app", "reader"), policy=None, window_start="2026-01-01T00:00:00.123Z")
    start, end = radius.exposure_window(status, now)
    assert start == datetime.datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC) and end == now
    status["blastRadius"] = radius.revoked(status["blastRadius"], "2026-01-01T13:00:00.000Z")
    assert radius.exposure_window(status, now)[1] == datetime.datetime(2026, 1, 1, 13, tzinfo=UTC)
    blast = BlastRadius.model_validate(status["blastRadius"])  # fits the CRD's status schema
    assert blast.source_identity == "a/app (Vault role reader)" and blast.exposure_window.start


def test_audit_notes_and_unexpected_readers() -> None:
    reads = [{"serviceAccount": "a/app"}, {"serviceAccount": "a/intruder"}, {"serviceAccount": None},
             {"serviceAccount": "a/rotator"}]
    blast = {"serviceAccounts": ["a/app"]}
    assert radius.audit_readers(reads) == ["a/app", "a/intruder", "a/rotator"]
    assert radius.unexpected_readers(reads, blast, "a/rotator") == ["a/intruder"]
    start, end = datetime.datetime(2026, 1, 1, tzinfo=UTC), datetime.datetime(2026, 1, 1, 1, tzinfo=UTC)
    note = radius.audit_note(total=120, listed=100, subject="secret/a/db", start=start, end=end, found_in="/log")
    assert note == ("120 read(s) of secret/a/db between 2026-01-01T00:00:00.000Z and 2026-01-01T01:00:00.000Z "
                    "in /log (first 100 listed)")
    assert "vault_connections.<name>.audit_log_file" in radius.no_audit_note("vault:default/x", "default")
    assert "aws:x" in radius.no_audit_note("aws:x", None)


def test_peers_are_read_from_listed_incidents() -> None:
    body = {"metadata": {"name": "b", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"targetSecretRef": {"name": "db-creds"}, "resolved": True},
            "status": {"phase": "Revoked", "exposedVersion": "3", "timestamps": {"revoked": "t"}}}
    assert plan.peer_of(body, target="db-creds", source="db") == plan.Peer(
        "b", "2026-01-01T00:00:00Z", "db", "Revoked", True, "3", True)
    assert plan.peer_of(body, target="other", source="db").source is None
    named = {"metadata": {"name": "c"}, "spec": {"secretSourceRef": {"name": "x"}}}
    assert plan.peer_of(named, target="db-creds", source="db").source == "x"


def test_a_login_is_kept_only_when_it_can_be_tried() -> None:
    login = {"username": "u", "password": "p", "host": "db", "port": "5432", "note": "n"}
    assert plan.login_fields(login) == {"username": "u", "password": "p", "host": "db", "port": "5432"}
    assert plan.login_fields({"password": "p"}) is None


def test_lease_fingerprints_hide_the_id() -> None:
    assert leases.lease_key("7") == "rotor-lease-7"
    print_ = leases.fingerprint("database/creds/app/abc")
    assert print_.startswith("sha256:") and len(print_) == 23 and "abc" not in print_
    assert print_ == leases.fingerprint("database/creds/app/abc") != leases.fingerprint("database/creds/app/abd")


def test_the_rotation_request_and_the_emergency_policy() -> None:
    now = datetime.datetime(2026, 1, 1, 0, 0, 0, 250000, tzinfo=UTC)
    ref, message = response.rotation_request(None, incident="leak", uid="0123456789", now=now)
    assert ref == {"policy": "leak-emergency", "emergency": True, "requestedAt": "2026-01-01T00:00:00.250Z",
                   "token": "leak-01234567-leak"}
    assert message == "emergency RotationPolicy leak-emergency asked to rotate"
    own, message = response.rotation_request("db", incident="leak", uid="0123456789", now=now)
    assert own["policy"] == "db" and not own["emergency"] and message == "RotationPolicy db asked to rotate"
    assert len(response.emergency_name("x" * 300)) == 253 and response.is_emergency(response.emergency_name("x"))
    body = response.emergency_policy(ref, incident="leak", uid="u1", source="db", leaked=["token"], window="1s",
                                     identity={"serviceAccountName": "rotator", "role": "r"})
    meta = body["metadata"]
    assert body["kind"] == "RotationPolicy" and meta["name"] == "leak-emergency"
    assert meta["annotations"] == {keys.ROTATE_NOW: "leak-01234567-leak"}
    assert meta["labels"] == {keys.LEAK_INCIDENT_LABEL: "leak"}
    assert meta["ownerReferences"] == [{"apiVersion": "rotor.dev/v1alpha1", "kind": "LeakIncident", "name": "leak",
                                        "uid": "u1"}]
    spec = RotationPolicySpec.model_validate(body["spec"])  # a valid RotationPolicy
    assert spec.generator.key == "token" and spec.overlap.window == "1s" and spec.identity is not None
    bare = response.emergency_policy(ref, incident="leak", uid="u1", source="db", leaked=[], window="30s",
                                     identity=None)
    assert bare["spec"]["generator"]["key"] == "password" and "identity" not in bare["spec"]
    assert response.rotate_now_patch("t") == {"metadata": {"annotations": {keys.ROTATE_NOW: "t"}}}


def test_tightening_never_loosens_and_respects_the_overlap_window() -> None:
    patch, message = response.tightened_schedule({"interval": "720h"}, 600, "24h", 86400, 720 * 3600)
    assert patch == {"interval": "24h", "cron": None} and "720h -> 24h" in message
    patch, message = response.tightened_schedule({"interval": "1h"}, 600, "24h", 86400, 3600)
    assert patch is None and "kept" in message
    patch, _ = response.tightened_schedule({"cron": "0 3 * * 0"}, 600, "24h", 86400, None)
    assert patch == {"interval": "24h", "cron": None}
    patch, message = response.tightened_schedule({"interval": "720h"}, 600, "5m", 300, 720 * 3600)
    assert patch is None and "overlap window" in message


def test_recommendations_follow_the_exposure_and_the_findings() -> None:
    advice = response.recommendations(where="ci-logs", reference="https://ci/b/1", credential=plan.Credential("kv"),
                                  has_policy=False, database=True, env_consumers=["Deployment/api"],
                                  revocation_confirmed=False, unexpected_readers=["a/intruder"], unrotated=[])
    assert "still accepted" in advice[0]
    text = " | ".join(advice)
    assert "masking" in text and "https://ci/b/1" in text and "dynamic credentials" in text
    assert "a/intruder" in text and "RotationPolicy" in text and "Deployment/api" in text
    dynamic = response.recommendations(where="git", reference="", credential=plan.Credential("dynamic"),
                                   has_policy=True, database=True, env_consumers=[], revocation_confirmed=True,
                                   unexpected_readers=[], unrotated=[])
    assert len(dynamic) == 1 and "history" in dynamic[0]


def test_resolver_is_the_manager_that_last_set_spec_resolved() -> None:
    fields = [
        {"manager": "kubectl-create", "operation": "Update", "time": "2026-01-01T00:00:00Z",
         "fieldsV1": {"f:spec": {"f:exposure": {}, "f:resolved": {}}}},
        {"manager": "rotor", "operation": "Update", "subresource": "status", "time": "2026-01-01T00:00:09Z",
         "fieldsV1": {"f:status": {}}},
        {"manager": "sre-alice", "operation": "Update", "time": "2026-01-01T00:05:00Z",
         "fieldsV1": {"f:spec": {"f:resolved": {}}}},
    ]
    assert plan.resolver(fields) == ("sre-alice", "2026-01-01T00:05:00Z")
    assert plan.resolver([]) == (None, None)
    assert plan.reporter(fields) == "kubectl-create"


def test_spec_defaults_and_the_sample_is_valid() -> None:
    from pathlib import Path

    import yaml

    sample = yaml.safe_load((Path(__file__).resolve().parents[3] / "samples" / "leakincident.yaml").read_text())
    spec = LeakIncidentSpec.model_validate(sample["spec"])
    assert spec.response.order == "afterRotation" and spec.response.tighten_interval == "168h"
    default = LeakIncidentSpec.model_validate({"secretSourceRef": {"name": "db"}, "exposure": {"where": "git"}})
    assert default.response.order is None and default.response.emergency_window == "30s"
    assert not default.resolved and default.severity == "high"
