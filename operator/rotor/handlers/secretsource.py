"""The SecretSource watch. Thin: decode, hand to the engine, schedule."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import kopf

from rotor import GROUP, VERSION
from rotor.api.kinds import SECRET_SOURCE
from rotor.handlers.guard import guarded
from rotor.handlers.memo import runtime_of

if TYPE_CHECKING:
    from rotor.wiring import Runtime

log = logging.getLogger("rotor.handlers")


# One raw-event handler for every view of SecretSources (sync, reloader, incidents): Kopf's dispatch costs
# more CPU per handler than the views' own work (issue 18's profile). No Kopf change handlers: those would
# cost two extra patches per object (Kopf's finalizer, its diff-base annotation) and a diff of every status
# write Rotor makes. The engine tells a spec change by metadata.generation and keeps its own finalizer.
@kopf.on.event(GROUP, VERSION, "secretsources")
@guarded(SECRET_SOURCE)
async def source_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    runtime = runtime_of(memo)
    event_type, body = event.get("type"), event["object"]
    _fan_out(runtime, event_type, body)
    key, action = runtime.sync.observe_source(event_type, body)
    if action == "sync":
        runtime.sync_scheduler.schedule(key, 0.0)
    elif action == "forget":
        runtime.sync_scheduler.remove(key)


# Managed Secrets are not watched through Kopf (it would list and queue their data; the label can be
# forged): rotor.engines.secretfeed watches their metadata and reads one by name when it must.


def _fan_out(runtime: Runtime, event_type: str | None, body: Mapping[str, Any]) -> None:
    """The other views of a SecretSource: the reloader's (its target Secret, consumer counts) and the
    incidents that name it (woken). A bug in one is logged; it must not stop the sync's view."""
    meta = body["metadata"]
    try:
        runtime.reloader.view.observe_source(event_type, body)
        for incident in runtime.incidents.for_source(meta["namespace"], meta["name"]):
            runtime.incident_scheduler.schedule(incident, 0.0)
    except Exception:
        log.exception("a view failed on SecretSource %s/%s", meta.get("namespace"), meta.get("name"))
    if event_type is None:  # a listing: after start-up, a re-list that brings no DELETED events
        runtime.relist.relisted()
