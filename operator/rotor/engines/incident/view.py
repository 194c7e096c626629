"""The LeakIncidents Rotor knows, folded from watch events, and the denylists they hold.

An incident's denylist (keyed digests of the leaked value, scoped to where the leak reaches) is kept
by denylists.Denylists in Rotor's own record until the incident is resolved: deleting the object
does not lift it.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from rotor import GROUP, VERSION
from rotor.api.kinds import LEAK_INCIDENT
from rotor.api.leakincident import LeakIncidentSpec
from rotor.engines.incident.denylists import STORE, Denylists
from rotor.engines.ports import Sources, Wake
from rotor.kube import Kube
from rotor.observability.metrics import INCIDENTS_OPEN

log = logging.getLogger("rotor.engines.incident.view")

Key = tuple[str, str]  # (namespace, name)
SEVERITIES = ("low", "medium", "high", "critical")


@dataclass
class IncidentState:
    namespace: str
    name: str
    uid: str
    generation: int
    created: str
    spec: LeakIncidentSpec | None
    spec_error: str | None
    status: dict[str, Any] = field(default_factory=dict)
    managed_fields: list[dict[str, Any]] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    generate_name: str = ""

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)

    @property
    def meta(self) -> dict[str, Any]:
        """The metadata the actor records are bound to (rotor.planning.incident_actors)."""
        return {"namespace": self.namespace, "name": self.name, "uid": self.uid, "generateName": self.generate_name,
                "creationTimestamp": self.created, "annotations": self.annotations}


def parse_spec(raw: Mapping[str, Any]) -> tuple[LeakIncidentSpec | None, str | None]:
    try:
        return LeakIncidentSpec.model_validate(dict(raw)), None
    except ValidationError as exc:
        return None, "; ".join(f"spec.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                               for e in exc.errors(include_input=False))


class IncidentView:
    """Incidents by key, fed by the handlers. WAKE runs an incident's next step now."""

    def __init__(self, kube: Kube, sources: Sources, wake: Wake, denylists: Denylists) -> None:
        self._kube, self._sources, self._wake = kube, sources, wake
        self.denylists = denylists
        self.incidents: dict[Key, IncidentState] = {}
        # The leaked database login, for the one check that it no longer works. Memory only: after a
        # restart it is re-read from the backend if still there, else the check says it could not run.
        self.logins: dict[Key, dict[str, str]] = {}

    def get(self, key: Hashable) -> IncidentState | None:
        return self.incidents.get(key) if isinstance(key, tuple) else None

    def upsert(self, body: Mapping[str, Any]) -> Key:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        spec, error = parse_spec(body.get("spec") or {})
        previous = self.incidents.get(key)
        # Rotor is the only writer of an incident's status, and its in-memory copy is never older than
        # a watch event's (which may lag behind its own writes): keep it for a known incident.
        status = previous.status if previous is not None and previous.uid == meta["uid"] else dict(
            body.get("status") or {})
        state = IncidentState(meta["namespace"], meta["name"], meta["uid"], int(meta.get("generation") or 0),
                              str(meta.get("creationTimestamp") or ""), spec, error, status,
                              list(meta.get("managedFields") or []), dict(meta.get("annotations") or {}),
                              str(meta.get("generateName") or ""))
        self.incidents[key] = state
        if self.denylists.observe({**body, "status": state.status}):
            self._wake(STORE)  # a list Rotor's record does not hold yet: record it
        self.update_gauge()
        return key

    def observe(self, body: Mapping[str, Any]) -> None:
        """A watch event: who changed what (managedFields). Status is not taken from events (see upsert)."""
        meta = body["metadata"]
        state = self.incidents.get((meta["namespace"], meta["name"]))
        if state is not None and state.uid == meta.get("uid"):
            state.managed_fields = list(meta.get("managedFields") or [])
            state.annotations = dict(meta.get("annotations") or {})

    def forget(self, key: Key) -> None:
        """The incident was deleted. Its denylist stays (until it is resolved or removed from Rotor's
        record): deleting the object is not resolving the leak."""
        state = self.incidents.pop(key, None)
        self.logins.pop(key, None)
        if state is not None and state.status.get("source"):
            self.wake_peers(key[0], state.status["source"])
        self.update_gauge()

    def source_name(self, state: IncidentState) -> str | None:
        """The SecretSource the incident is about: the one it resolved to, else the one its spec names."""
        if state.status.get("source"):
            return str(state.status["source"])
        if state.spec is None:
            return None
        if state.spec.secret_source_ref is not None:
            return state.spec.secret_source_ref.name
        if state.spec.target_secret_ref is not None:
            return self._sources.source_for_target(state.namespace, state.spec.target_secret_ref.name)
        return None

    def for_source(self, namespace: str, source: str) -> list[Key]:
        """Incidents about this SecretSource (to re-check them when it changes)."""
        return [k for k, s in self.incidents.items() if k[0] == namespace and self.source_name(s) == source]

    def for_policy(self, namespace: str, policy: str) -> list[Key]:
        """Unfinished incidents waiting on this RotationPolicy's rotation."""
        return [k for k, s in self.incidents.items() if k[0] == namespace
                and (s.status.get("rotation") or {}).get("policy") == policy
                and not (s.status.get("timestamps") or {}).get("prevented")]

    def wake_peers(self, namespace: str, source: str) -> None:
        """Incidents on the same secret run one at a time: the next one may start now."""
        for key in self.for_source(namespace, source):
            self._wake(key)

    async def load_denylists(self, namespaces: Sequence[str]) -> int:
        """At start-up, before any sync: every denylist in Rotor's record, and those of unresolved
        LeakIncidents (in NAMESPACES, all if empty) it does not hold yet.

        Kopf re-reads the incidents and the SecretSources in parallel after a restart; a source synced
        before its incident would deliver the leaked value again. The incidents themselves are left to
        Kopf. Returns how many incidents' lists are enforced (deleted, unresolved ones included)."""
        listed: list[dict[str, Any]] = []
        scopes: list[str | None] = [*namespaces] or [None]
        for namespace in scopes:
            listed.extend(await self._kube.list_objects(GROUP, VERSION, LEAK_INCIDENT.plural, namespace))
        loaded, count = await self.denylists.load(listed)
        log.info("denylists of %d LeakIncident(s) loaded (%d digest(s)) before the first sync", loaded, count)
        return loaded

    def update_gauge(self) -> None:
        """rotor_leak_incidents_open: incidents not yet resolved, by severity."""
        counts = dict.fromkeys(SEVERITIES, 0)
        for state in self.incidents.values():
            if state.spec is not None and state.status.get("phase") != "Resolved":
                counts[state.spec.severity] += 1
        for severity, count in counts.items():
            INCIDENTS_OPEN.labels(severity).set(count)
