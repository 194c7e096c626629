"""The SecretSource feed: Rotor's own list and watch of SecretSources, whole objects (not Kopf's).

Kopf's machinery around each watch event (a queue worker per object, per-event state and kwargs) was a
quarter of the operator's CPU at a cold start of 1,000 SecretSources (issue 18), and each first sync
brings three events (the listing, Rotor's finalizer patch, its status patch). Here an event costs one
call: each object goes to HANDLE in order, as (type, body), type None for a listing's items (as Kopf
passed them), "ADDED", "MODIFIED", "DELETED". A handler that raises is logged and the feed goes on
with the next event. The loop (list, watch, 410, backoff, RELISTED after a re-list) is
rotor.engines.listwatch's.

The feed runs on a standby replica too (peering): the views stay current, and what the handler
schedules waits behind the schedulers' gate.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

from rotor import GROUP, VERSION
from rotor.api.kinds import SECRET_SOURCE
from rotor.engines.listwatch import ListWatch

log = logging.getLogger("rotor.engines.sourcefeed")

Handler = Callable[[str | None, dict[str, Any]], Awaitable[None]]


class BodyWatch(Protocol):
    def body_pages(self, group: str, version: str, plural: str, namespace: str | None = None, *,
                   label_selector: str = "", page: int = 500) -> AsyncIterator[tuple[list[dict[str, Any]], str]]: ...

    def watch_bodies(self, group: str, version: str, plural: str, namespace: str | None,
                     resource_version: str, *, label_selector: str = "",
                     timeout_seconds: int = 300) -> AsyncIterator[tuple[str, dict[str, Any]]]: ...


class SourceFeed(ListWatch):
    what = SECRET_SOURCE.kind

    def __init__(self, kube: BodyWatch, scopes: Sequence[str | None], *, handle: Handler,
                 relisted: Callable[[], None], timeout_seconds: int = 300) -> None:
        super().__init__(scopes, relisted=relisted, timeout_seconds=timeout_seconds)
        self.kube, self.handle = kube, handle

    def list_scope(self, scope: str | None) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        return self.kube.body_pages(GROUP, VERSION, SECRET_SOURCE.plural, scope)

    def watch_scope(self, scope: str | None, version: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        return self.kube.watch_bodies(GROUP, VERSION, SECRET_SOURCE.plural, scope, version,
                                      timeout_seconds=self.timeout_seconds)

    async def deliver(self, event_type: str | None, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        if not meta.get("name") or not meta.get("namespace"):
            return
        try:
            await self.handle(event_type, obj)
        except Exception:  # a bug about one object must not stop the events of every other
            log.exception("the handler failed on %s %s/%s", self.what, meta["namespace"], meta["name"])
