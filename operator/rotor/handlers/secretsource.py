"""SecretSource and managed-Secret watches. Thin: decode, hand to the engine, schedule."""

from __future__ import annotations

from typing import Any

import kopf

from rotor import GROUP, VERSION
from rotor.planning.labels import MANAGED_BY, MANAGED_BY_VALUE


@kopf.on.resume(GROUP, VERSION, "secretsources")
@kopf.on.create(GROUP, VERSION, "secretsources")
@kopf.on.update(GROUP, VERSION, "secretsources", field="spec")
async def source_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    key = memo.engine.upsert_source(body)
    memo.scheduler.schedule(key, 0.0)


@kopf.on.event(GROUP, VERSION, "secretsources")
async def source_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    # Keeps the engine's copy of status current (it writes status only when it changes).
    if event.get("type") != "DELETED":
        memo.engine.observe_status(event["object"])


@kopf.on.delete(GROUP, VERSION, "secretsources")
async def source_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await memo.engine.delete_source(body)
    memo.scheduler.remove((body.metadata.namespace, body.metadata.name))


# Managed Secrets only (label selector), and only an event handler: no create/update handler may
# touch core Secrets, or Kopf would copy their data into its last-handled-configuration annotation.
@kopf.on.event("", "v1", "secrets", labels={MANAGED_BY: MANAGED_BY_VALUE})
async def managed_secret_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    drifted = memo.engine.observe_secret(event.get("type"), event["object"])
    if drifted is not None:
        memo.scheduler.schedule(drifted, 0.0)
