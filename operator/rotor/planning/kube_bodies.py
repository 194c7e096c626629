"""The bodies Rotor sends to the API server for Secrets it writes or releases, and for Events.

Plain JSON in, plain JSON out: the kube layer sends them as they are, and the in-memory fake of it
(tests/fakes/kube.py) stores them, so both agree on what a write keeps of what others put there.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Mapping
from typing import Any

from rotor import GROUP, VERSION
from rotor.api.keys import ADDED_LABELS, DATA_HMAC, MANAGED_BY, MANAGED_KEYS, SOURCE_LABEL, SOURCE_UID, SOURCE_VERSION
from rotor.planning import times
from rotor.planning.sync import DesiredSecret, ObservedSecret, Owner, managed_keys

# The annotations Rotor writes on a target Secret (planning.sync); releasing it removes these only.
WRITTEN_ANNOTATIONS = frozenset({DATA_HMAC, SOURCE_VERSION, MANAGED_KEYS, SOURCE_UID, ADDED_LABELS})
_OWNER_REF_FIELDS = ("apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion")


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {"apiVersion": owner.api_version, "kind": owner.kind, "name": owner.name, "uid": owner.uid,
            "controller": True, "blockOwnerDeletion": True}


def encode(data: Mapping[str, bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v).decode() for k, v in data.items()}


def secret_body(namespace: str, desired: DesiredSecret, owner: Owner,
                existing: ObservedSecret | None = None) -> dict[str, Any]:
    """The Secret to create (EXISTING None) or to replace EXISTING with, on its resourceVersion.
    A replace keeps the labels, annotations and owners others put there; only Rotor's change."""
    metadata: dict[str, Any] = {"name": desired.name, "namespace": namespace, "labels": dict(desired.labels),
                                "annotations": dict(desired.annotations)}
    refs = [dict(r) for r in existing.owner_refs] if existing is not None else []
    if desired.owned and (existing is None or owner.uid not in existing.owner_uids):
        refs.append(owner_reference(owner))
    if refs:
        metadata["ownerReferences"] = refs
    if existing is not None:
        metadata["labels"] = {**existing.labels, **desired.labels}
        metadata["annotations"] = {**existing.annotations, **desired.annotations}
        metadata["resourceVersion"] = existing.resource_version
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": desired.type,
            "data": encode(desired.data)}


def released_secret(namespace: str, secret: ObservedSecret, owner_uid: str, *, delete: bool,
                    merge: bool) -> dict[str, Any] | None:
    """SECRET once its SecretSource (OWNER_UID) lets go of it (deleted, or its target renamed), by
    deletionPolicy; None: delete the Secret. MERGE: Rotor only merged keys into it (its owner opted
    in). Delete removes what Rotor wrote (in a Merge target: only its keys); Retain keeps the data.
    Either way Rotor's own labels, annotations and owner reference go, so nothing points at the gone
    source; what others set stays (their rotor.dev/allow-source opt-in, a label Rotor did not add)."""
    if delete and not merge:
        return None
    managed = set(managed_keys(secret.annotations))
    metadata: dict[str, Any] = {"name": secret.name, "namespace": namespace,
                                "resourceVersion": secret.resource_version}
    added = {k for k in secret.annotations.get(ADDED_LABELS, "").split(",") if k}
    rotors = {SOURCE_LABEL} | (added if merge else {MANAGED_BY})
    labels = {k: v for k, v in secret.labels.items() if k not in rotors}
    annotations = {k: v for k, v in secret.annotations.items() if k not in WRITTEN_ANNOTATIONS}
    refs = [{k: r[k] for k in _OWNER_REF_FIELDS if r.get(k) is not None}
            for r in secret.owner_refs if r.get("uid") != owner_uid]
    for field, value in (("labels", labels), ("annotations", annotations), ("ownerReferences", refs)):
        if value:
            metadata[field] = value
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": secret.type,
            "data": encode({k: v for k, v in secret.data.items() if not (delete and k in managed)})}


def event_body(*, kind: str, namespace: str, name: str, uid: str, type: str, reason: str, message: str,
               now: datetime.datetime, instance: str) -> dict[str, Any]:
    """A core/v1 Event about a Rotor object, reported by INSTANCE (the operator pod)."""
    stamp = times.iso(now)
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{name}.", "namespace": namespace},
        "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "name": name,
                           "namespace": namespace, "uid": uid},
        "type": type, "reason": reason, "message": message[:1024], "firstTimestamp": stamp,
        "lastTimestamp": stamp, "count": 1, "source": {"component": "rotor"},
        "reportingComponent": "rotor.dev/operator", "reportingInstance": instance,
    }
