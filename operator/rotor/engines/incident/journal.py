"""What an incident leaves behind for people: its status, timeline entries, conditions, Events and
one structured audit line per action (logger rotor.audit). Names, versions and digests only."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from rotor.api import keys
from rotor.api.kinds import LEAK_INCIDENT
from rotor.engines.incident.view import IncidentState
from rotor.kube import Kube
from rotor.planning import times
from rotor.planning.conditions import set_condition, status_unchanged

audit = logging.getLogger("rotor.audit")
ACTOR = "rotor"
TIMELINE_MAX = 200


class Journal:
    def __init__(self, kube: Kube) -> None:
        self._kube = kube

    def timeline(self, state: IncidentState, actor: str, action: str,
                 message: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A new entry, and the timeline with it (written with the step's status patch, never before)."""
        entry = {"time": times.iso(times.now(), millis=True), "actor": actor[:256], "action": action,
                 "message": message[:1024]}
        return entry, [*(state.status.get("timeline") or []), entry][-TIMELINE_MAX:]

    def condition(self, state: IncidentState, type: str, status: str, reason: str,
                  message: str) -> list[dict[str, Any]]:
        return set_condition(state.status.get("conditions") or [], type=type, status=status, reason=reason,
                             message=message[:32768], now=times.iso(times.now(), millis=True),
                             generation=state.generation)

    def ready(self, state: IncidentState, status: str, reason: str, message: str) -> list[dict[str, Any]]:
        return self.condition(state, keys.READY, status, reason, message)

    def audit_line(self, state: IncidentState, entry: Mapping[str, Any]) -> None:
        """One structured line per action for the audit trail outside the cluster (never a value)."""
        record = {"kind": LEAK_INCIDENT.kind, "incident": f"{state.namespace}/{state.name}", "uid": state.uid,
                  **entry}
        audit.info(json.dumps(record, sort_keys=True), extra={"namespace": state.namespace,
                                                              "kind": LEAK_INCIDENT.kind,
                                                              "phase": entry.get("action")})

    async def event(self, state: IncidentState, type: str, reason: str, message: str) -> None:
        await self._kube.post_event(kind=LEAK_INCIDENT.kind, namespace=state.namespace, name=state.name,
                                    uid=state.uid, type=type, reason=reason, message=message)

    async def write(self, state: IncidentState, patch: Mapping[str, Any]) -> None:
        """Merge PATCH into the status (skipped when it changes nothing); the in-memory copy follows."""
        full = {"observedGeneration": state.generation, **patch}
        if not status_unchanged(state.status, full) and await self._kube.patch_status(
                LEAK_INCIDENT.plural, state.namespace, state.name, full, missing_ok=True):
            state.status.update(full)

    async def record(self, state: IncidentState, actor: str, action: str, message: str,
                     patch: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A timeline entry written with PATCH, then its audit line; returns the entry."""
        entry, timeline = self.timeline(state, actor, action, message)
        await self.write(state, {**(patch or {}), "timeline": timeline})
        self.audit_line(state, entry)
        return entry
