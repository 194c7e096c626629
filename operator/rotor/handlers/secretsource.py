"""SecretSource and managed-Secret watches. Thin: decode, hand to the engine, schedule."""

from __future__ import annotations

from typing import Any

import kopf

from rotor import GROUP, VERSION
from rotor.api.keys import MANAGED_BY, MANAGED_BY_VALUE
from rotor.api.kinds import SECRET_SOURCE
from rotor.handlers.guard import guarded
from rotor.handlers.memo import runtime_of


# One raw-event handler, no Kopf change handlers: those would cost two extra patches per object
# (Kopf's finalizer, its diff-base annotation) and a diff of every status write Rotor makes.
# The engine tells a spec change by metadata.generation and keeps its own cleanup finalizer.
@kopf.on.event(GROUP, VERSION, "secretsources")
@guarded(SECRET_SOURCE)
async def source_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    runtime = runtime_of(memo)
    key, action = runtime.sync.observe_source(event.get("type"), event["object"])
    if action == "sync":
        runtime.sync_scheduler.schedule(key, 0.0)
    elif action == "forget":
        runtime.sync_scheduler.remove(key)


# Managed Secrets only (label selector), and only an event handler: no create/update handler may
# touch core Secrets, or Kopf would copy their data into its last-handled-configuration annotation.
@kopf.on.event("", "v1", "secrets", labels={MANAGED_BY: MANAGED_BY_VALUE})
@guarded(None)
async def managed_secret_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    runtime = runtime_of(memo)
    drifted = runtime.sync.observe_secret(event.get("type"), event["object"])
    if drifted is not None:
        runtime.sync_scheduler.schedule(drifted, 0.0)
