"""The SecretSource view: how watch events of SecretSources become syncs, cleanups and forgets,
and how managed-Secret events become drift syncs. Folding an event does no I/O at all."""

from __future__ import annotations

import base64
from typing import Any

from rotor.api import keys
from rotor.api.keys import CLEANUP_FINALIZER, REFRESH_NOW
from rotor.engines.secretsource.view import SyncView
from rotor.planning.sync import ObservedSecret

SPEC = {"provider": "vault", "serviceAccountName": "app", "vault": {"path": "app/db", "role": "app"}}


def body(*, uid: str = "u1", generation: int = 1, rv: str = "1", finalizers: tuple[str, ...] = (),
         deleting: bool = False, status: dict[str, Any] | None = None, spec: dict[str, Any] | None = None,
         annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": "ns", "name": "db", "uid": uid, "generation": generation,
                            "resourceVersion": rv, "finalizers": list(finalizers), "annotations": annotations or {}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": spec or SPEC, "status": status or {}}


def engine() -> SyncView:
    return SyncView(b"k" * 32)


def test_a_new_source_is_synced_and_a_status_only_change_is_not() -> None:
    sync = engine()
    assert sync.observe_source(None, body()) == (("ns", "db"), "sync")  # the initial listing (type None)
    status = {"conditions": [{"type": "Ready", "status": "True"}]}
    assert sync.observe_source("MODIFIED", body(rv="2", status=status)) == (("ns", "db"), None)
    state = sync.sources[("ns", "db")]
    assert state.status == status and state.resource_version == "2"


def test_a_spec_change_is_told_by_generation_and_resyncs() -> None:
    sync = engine()
    sync.observe_source("ADDED", body())
    changed = {**SPEC, "vault": {"path": "app/other", "role": "app"}}
    assert sync.observe_source("MODIFIED", body(generation=2, rv="3", spec=changed))[1] == "sync"
    spec = sync.sources[("ns", "db")].spec
    assert spec is not None and spec.vault is not None and spec.vault.path == "app/other"


def test_a_recreated_source_with_a_new_uid_starts_over() -> None:
    sync = engine()
    sync.observe_source("ADDED", body())
    sync.sources[("ns", "db")].failures = 4
    assert sync.observe_source("ADDED", body(uid="u2"))[1] == "sync"
    assert sync.sources[("ns", "db")].failures == 0


def test_deletion_with_rotors_finalizer_is_cleaned_up_once() -> None:
    sync = engine()
    sync.observe_source("ADDED", body(finalizers=(CLEANUP_FINALIZER,)))
    assert sync.observe_source("MODIFIED", body(rv="5", finalizers=(CLEANUP_FINALIZER,), deleting=True))[1] == "sync"
    assert sync.sources[("ns", "db")].deleting
    # Further events during the cleanup do not queue it again.
    assert sync.observe_source("MODIFIED", body(rv="6", finalizers=(CLEANUP_FINALIZER,), deleting=True))[1] is None


def test_deletion_without_rotors_finalizer_leaves_it_to_kubernetes() -> None:
    sync = engine()
    sync.observe_source("ADDED", body(finalizers=("someone.else/keep",)))
    assert sync.observe_source("MODIFIED", body(rv="5", finalizers=("someone.else/keep",),
                                                deleting=True))[1] == "forget"
    assert sync.sources[("ns", "db")].deleting  # no more syncs, no finalizer to add to a deleting object


def test_deleted_is_forgotten() -> None:
    sync = engine()
    sync.observe_source("ADDED", body())
    assert sync.observe_source("DELETED", body()) == (("ns", "db"), "forget")
    assert ("ns", "db") not in sync.sources


def test_a_new_refresh_now_value_syncs_once() -> None:
    sync = engine()
    sync.observe_source("ADDED", body(annotations={REFRESH_NOW: "t1"}))  # there at creation: that sync covers it
    assert sync.observe_source("MODIFIED", body(rv="2", annotations={REFRESH_NOW: "t1"}))[1] is None
    assert sync.observe_source("MODIFIED", body(rv="3", annotations={REFRESH_NOW: "t2"}))[1] == "sync"
    assert sync.observe_source("MODIFIED", body(rv="4", annotations={REFRESH_NOW: "t2"}))[1] is None
    assert sync.observe_source("MODIFIED", body(rv="5"))[1] is None  # removing it asks for nothing


def _secret(rv: str, value: bytes, digest: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": "db", "resourceVersion": rv,
                         "labels": {keys.MANAGED_BY: keys.MANAGED_BY_VALUE, keys.SOURCE_LABEL: "db"},
                         "annotations": {keys.DATA_HMAC: digest}},
            "type": "Opaque", "data": {"password": base64.b64encode(value).decode()}}


def test_the_echo_of_rotors_own_write_is_no_drift_but_a_tenants_edit_is() -> None:
    sync = engine()
    sync.observe_source("ADDED", body(status={"dataHmac": "sha256:old"}))
    # Rotor wrote a new value (its response remembered, resourceVersion 7); its status still says "old".
    sync.remember("ns", "db", ObservedSecret.from_json(_secret("7", b"new", "sha256:new")))
    assert sync.observe_secret("MODIFIED", _secret("7", b"new", "sha256:new")) is None
    # A tenant's edit is a new resourceVersion: drift, whatever the status says.
    assert sync.observe_secret("MODIFIED", _secret("8", b"evil", "sha256:new")) == ("ns", "db")
