"""LeakIncident watches. Thin: decode, hand to the incident engine, schedule its next step.

Also wakes incidents when the SecretSource or RotationPolicy they depend on changes, so a step that
waits on them (a source appearing, a rotation finishing, a refused value) runs without polling delay.
"""

from __future__ import annotations

from typing import Any

import kopf

from rotor import GROUP, VERSION
from rotor.api.kinds import LEAK_INCIDENT
from rotor.handlers.guard import guarded
from rotor.handlers.memo import runtime_of

PLURAL = "leakincidents"


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
@guarded(LEAK_INCIDENT, retry=True)
async def incident_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime = runtime_of(memo)
    runtime.incident_scheduler.schedule(runtime.incidents.upsert(body), 0.0)


@kopf.on.event(GROUP, VERSION, PLURAL)
@guarded(LEAK_INCIDENT)
async def incident_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    runtime = runtime_of(memo)
    meta = event["object"]["metadata"]
    if event.get("type") == "DELETED":
        runtime.incidents.forget((meta["namespace"], meta["name"]))
        runtime.incident_scheduler.remove((meta["namespace"], meta["name"]))
    elif event.get("type") is not None:
        runtime.incidents.observe(event["object"])


@kopf.on.event(GROUP, VERSION, "rotationpolicies")
@guarded(None)
async def policy_event_for_incidents(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    runtime = runtime_of(memo)
    meta = event["object"]["metadata"]
    for key in runtime.incidents.for_policy(meta["namespace"], meta["name"]):
        runtime.incident_scheduler.schedule(key, 0.0)
