"""The SecretSource watch. Thin: decode, hand to the engine, schedule."""

from __future__ import annotations

from typing import Any

import kopf

from rotor import GROUP, VERSION
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


# Managed Secrets are not watched through Kopf (it would list and queue their data; the label can be
# forged): rotor.engines.secretfeed watches their metadata and reads one by name when it must.
