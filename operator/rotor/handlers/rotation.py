"""RotationPolicy watches. Thin: decode, hand to the rotator, schedule its next step."""

from __future__ import annotations

from typing import Any

import kopf

from rotor import GROUP, VERSION
from rotor.api.kinds import ROTATION_POLICY
from rotor.handlers.guard import guarded
from rotor.handlers.memo import runtime_of

PLURAL = "rotationpolicies"


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
@guarded(ROTATION_POLICY, retry=True)
async def policy_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime = runtime_of(memo)
    runtime.rotation_scheduler.schedule(runtime.rotator.upsert(body), 0.0)


@kopf.on.event(GROUP, VERSION, PLURAL)
@guarded(ROTATION_POLICY)
async def policy_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    # Keeps the rotator's copy of status current across its own writes and other replicas'.
    runtime = runtime_of(memo)
    meta = event["object"]["metadata"]
    key = (meta["namespace"], meta["name"])
    if event.get("type") == "DELETED":
        runtime.rotator.forget(key)
        runtime.rotation_scheduler.remove(key)
    elif runtime.rotator.observe(event["object"]):
        # A new rotor.dev/rotate-now value (an annotation: not part of Kopf's spec diff), or a policy
        # being deleted seen in a listing (type None): Kopf resumes no such object, its leases need revoking.
        runtime.rotation_scheduler.schedule(key, 0.0)
