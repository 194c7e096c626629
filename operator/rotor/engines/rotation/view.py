"""The RotationPolicies Rotor holds in memory, folded from watch events (the handlers feed it) and from
the answers to its own status writes.

A watch event older than what Rotor already holds (its own earlier write, delivered after a later
one) is ignored: status never goes back. It is also how other engines see policies
(rotor.engines.ports.Policies): read-only, by name or by namespace.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from rotor.api.keys import ROTATE_NOW
from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.planning import times
from rotor.planning.rotation import status_mark

Key = tuple[str, str]  # (namespace, name)


@dataclass
class PolicyState:
    """One RotationPolicy as last seen (a rotor.engines.ports.PolicyView)."""

    namespace: str
    name: str
    uid: str
    generation: int
    created: datetime.datetime
    spec: RotationPolicySpec | None
    spec_error: str | None  # why the spec does not parse, naming the field
    status: dict[str, Any] = field(default_factory=dict)
    rotate_now: str | None = None  # the rotor.dev/rotate-now annotation
    resource_version: str | None = None  # guards every status write
    finalizers: tuple[str, ...] = ()
    deleting: bool = False  # metadata.deletionTimestamp is set
    deleting_since: datetime.datetime | None = None  # when Rotor first saw it (Rotor's clock)
    seen_since: datetime.datetime | None = None  # when status_mark(status) last changed (Rotor's clock)


def newer(version: str | None, than: str | None) -> bool:
    """Whether resourceVersion VERSION is after THAN. They are etcd revisions: numbers in practice,
    though Kubernetes calls them opaque; anything else counts as newer (the watch is in order)."""
    if not version or not than:
        return True
    try:
        return int(version) > int(than)
    except ValueError:
        return version != than


class RotationView:
    def __init__(self, clock: Callable[[], datetime.datetime] = times.now) -> None:
        self.policies: dict[Key, PolicyState] = {}
        self._clock = clock

    def upsert(self, body: Mapping[str, Any]) -> Key:
        """A created or changed policy (its spec parsed now); its key. Status already held from a
        later write is kept."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        try:
            spec, error = RotationPolicySpec.model_validate(dict(body.get("spec") or {})), None
        except ValidationError as exc:
            spec, error = None, "; ".join(f"spec.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                          for e in exc.errors(include_input=False))
        held = self.policies.get(key)
        state = PolicyState(meta["namespace"], meta["name"], meta["uid"], int(meta.get("generation") or 0),
                            times.parse_optional(meta.get("creationTimestamp")) or self._clock(), spec, error)
        self.policies[key] = state
        if held is not None and held.uid == state.uid and not newer(meta.get("resourceVersion"),
                                                                    held.resource_version):
            state.status, state.resource_version, state.seen_since = held.status, held.resource_version, \
                held.seen_since
            state.rotate_now, state.finalizers, state.deleting = held.rotate_now, held.finalizers, held.deleting
            state.deleting_since = held.deleting_since
        else:
            self._fold(state, body)
        return key

    def observe(self, body: Mapping[str, Any]) -> bool:
        """A watch event (or a listing's): keep status, finalizers and the rotate-now annotation current;
        True if the policy needs a step now (a manual rotation was just requested, or its deletion)."""
        meta = body["metadata"]
        state = self.policies.get((meta["namespace"], meta["name"]))
        if state is None and meta.get("deletionTimestamp"):
            # Deleted while no handler took it up (Kopf resumes no object being deleted): Rotor still
            # has to release what it holds for it.
            self.upsert(body)
            return True
        if state is None or state.uid != meta.get("uid") or not newer(meta.get("resourceVersion"),
                                                                      state.resource_version):
            return False
        previous, was_deleting = state.rotate_now, state.deleting
        self._fold(state, body)
        requested = state.rotate_now
        new = requested is not None and requested != previous and requested != state.status.get("handledRotateNow")
        return new or (state.deleting and not was_deleting)

    def refresh(self, state: PolicyState, body: Mapping[str, Any]) -> None:
        """The object as the API server answered a write or a read of Rotor's (unless already newer)."""
        if newer((body.get("metadata") or {}).get("resourceVersion"), state.resource_version):
            self._fold(state, body)

    def _fold(self, state: PolicyState, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        status = dict(body.get("status") or {})
        if state.seen_since is None or status_mark(status) != status_mark(state.status):
            state.seen_since = self._clock()
        state.status, state.resource_version = status, meta.get("resourceVersion") or state.resource_version
        state.rotate_now = (meta.get("annotations") or {}).get(ROTATE_NOW)
        state.finalizers = tuple(meta.get("finalizers") or ())
        state.deleting = bool(meta.get("deletionTimestamp"))
        if state.deleting and state.deleting_since is None:
            state.deleting_since = self._clock()

    def forget(self, key: Key) -> None:
        self.policies.pop(key, None)

    def get(self, key: Hashable) -> PolicyState | None:
        return self.policies.get(key) if isinstance(key, tuple) else None

    # -- rotor.engines.ports.Policies ---------------------------------------------------------------

    def policy(self, namespace: str, name: str) -> PolicyState | None:
        return self.policies.get((namespace, name))

    def policies_in(self, namespace: str) -> list[PolicyState]:
        return [state for (ns, _), state in self.policies.items() if ns == namespace]
