"""planning.kube_bodies: what a Secret write keeps of others' metadata, and what a release leaves."""

from __future__ import annotations

import base64
import dataclasses
import datetime

from rotor.api import keys
from rotor.planning.kube_bodies import event_body, released_secret, secret_body
from rotor.planning.sync import DesiredSecret, ObservedSecret, Owner

OWNER = Owner("ns", "db", "uid-src")
OURS = {keys.MANAGED_BY: "rotor", keys.SOURCE_LABEL: "db"}
DESIRED = DesiredSecret("db", "Opaque", {"password": b"pw"}, OURS,
                        {keys.MANAGED_KEYS: "password", keys.DATA_HMAC: "sha256:a"}, owned=True)
THEIR_REF = {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "uid-x", "controller": None}


def test_a_create_is_owned_and_encoded() -> None:
    body = secret_body("ns", DESIRED, OWNER)
    assert body["data"] == {"password": base64.b64encode(b"pw").decode()}
    assert body["metadata"]["ownerReferences"][0]["uid"] == "uid-src" and "resourceVersion" not in body["metadata"]


def test_a_replace_keeps_what_others_put_there() -> None:
    existing = ObservedSecret("db", "Opaque", {"password": b"old"}, labels={"team": "a", **OURS},
                              annotations={"note": "x"}, owner_refs=(THEIR_REF,), resource_version="7")
    meta = secret_body("ns", DESIRED, OWNER, existing)["metadata"]
    assert meta["labels"] == {"team": "a", **OURS} and meta["annotations"]["note"] == "x"
    assert [r["uid"] for r in meta["ownerReferences"]] == ["uid-x", "uid-src"] and meta["resourceVersion"] == "7"
    again = dataclasses.replace(existing, owner_refs=(THEIR_REF, {"uid": "uid-src"}))
    assert len(secret_body("ns", DESIRED, OWNER, again)["metadata"]["ownerReferences"]) == 2


def test_release_by_policy() -> None:
    secret = ObservedSecret("db", "Opaque", {"password": b"pw", "other": b"o"}, labels={"team": "a", **OURS},
                            annotations={keys.MANAGED_KEYS: "password", "note": "x"},
                            owner_refs=(THEIR_REF, {"uid": "uid-src", "kind": "SecretSource"}), resource_version="9")
    assert released_secret("ns", secret, "uid-src", delete=True, merge=False) is None
    retained = released_secret("ns", secret, "uid-src", delete=False, merge=False)
    assert retained is not None
    assert retained["metadata"] == {"name": "db", "namespace": "ns", "resourceVersion": "9", "labels": {"team": "a"},
                                    "annotations": {"note": "x"},
                                    "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "x",
                                                         "uid": "uid-x"}]}
    assert set(retained["data"]) == {"password", "other"}
    merged = released_secret("ns", secret, "uid-src", delete=True, merge=True)
    assert merged is not None and set(merged["data"]) == {"other"}
    bare = released_secret("ns", ObservedSecret("db", "Opaque", {}, labels=OURS), "uid-src", delete=False, merge=False)
    assert bare is not None and set(bare["metadata"]) == {"name", "namespace", "resourceVersion"}


def test_events_are_capped_and_name_the_object() -> None:
    body = event_body(kind="SecretSource", namespace="ns", name="db", uid="u", type="Warning", reason="Conflict",
                      message="m" * 2000, now=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC), instance="pod-1")
    assert len(body["message"]) == 1024 and body["involvedObject"]["apiVersion"] == "rotor.dev/v1alpha1"
    assert body["firstTimestamp"] == "2026-01-01T00:00:00Z" and body["reportingInstance"] == "pod-1"
