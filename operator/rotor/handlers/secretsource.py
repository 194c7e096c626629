"""The SecretSource handler. Thin: decode, hand to the engine's views, schedule.

Rotor's own watch calls it for every event (rotor.engines.sourcefeed, built in rotor.wiring), not Kopf:
Kopf's dispatch around each event cost more CPU than the views' own work (issue 18's profile). No
change handlers either: those would cost two extra patches per object (Kopf's finalizer, its diff-base
annotation) and a diff of every status write Rotor makes. The engine tells a spec change by
metadata.generation and keeps its own finalizer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rotor.api.kinds import SECRET_SOURCE
from rotor.engines.scheduler import report_internal_error

if TYPE_CHECKING:
    from rotor.wiring import Runtime

log = logging.getLogger("rotor.handlers")


async def source_event(runtime: Runtime, event_type: str | None, body: Mapping[str, Any]) -> None:
    """One event of a SecretSource (type None: listed) for every view of it: sync, reloader, incidents.

    It only updates views and schedules, so it writes nothing on a paused replica (its schedulers wait
    behind the gate). A bug is what rotor.handlers.guard makes of one in a Kopf handler: logged, and
    Ready=False (InternalError) on the source, written only while this replica is active.
    """
    try:
        _fan_out(runtime, event_type, body)
        key, action = runtime.sync.observe_source(event_type, body)
        if action == "sync":
            runtime.sync_scheduler.schedule(key, 0.0)
        elif action == "forget":
            runtime.sync_scheduler.remove(key)
    except Exception as exc:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        log.exception("handler source_event failed unexpectedly on %s %s/%s", SECRET_SOURCE.kind, *key)
        if runtime.gate is not None and not runtime.gate.is_set():
            return  # a standby writes nothing: the active replica sees the same event and reports it
        try:
            await report_internal_error(runtime.kube, SECRET_SOURCE.kind, SECRET_SOURCE.plural, key, exc)
        except Exception:  # best effort: the log line above stands
            log.warning("the failure on %s %s/%s could not be reported in its status", SECRET_SOURCE.kind, *key,
                        exc_info=True)


# Managed Secrets are not watched through Kopf either (it would list and queue their data; the label can
# be forged): rotor.engines.secretfeed watches their metadata and reads one by name when it must.


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
