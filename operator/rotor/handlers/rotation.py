"""RotationPolicy watches. Thin: decode, hand to the rotator, schedule its next step."""

from __future__ import annotations

from typing import Any

import kopf

from rotor import GROUP, VERSION

PLURAL = "rotationpolicies"


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def policy_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    key = memo.rotator.upsert(body)
    memo.rotation_scheduler.schedule(key, 0.0)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def policy_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    # Keeps the rotator's copy of status current across its own writes and other replicas'.
    if event.get("type") == "DELETED":
        meta = event["object"]["metadata"]
        memo.rotator.forget((meta["namespace"], meta["name"]))
        memo.rotation_scheduler.remove((meta["namespace"], meta["name"]))
    elif event.get("type") is not None and memo.rotator.observe(event["object"]):
        # A new rotor.dev/rotate-now value (an annotation: not part of Kopf's spec diff).
        meta = event["object"]["metadata"]
        memo.rotation_scheduler.schedule((meta["namespace"], meta["name"]), 0.0)
