"""The managed-Secret feed: Rotor's own metadata-only list and watch of Secrets labelled managed-by=rotor.

Anyone who may create a Secret may put that label on it, so what the label brings must cost nothing:
the feed lists and watches metadata only (no value leaves the API server) and reads a Secret by name
only when a view asks for its data: a Secret some SecretSource writes into whose resourceVersion is
not the one Rotor wrote last (someone else changed it: drift). A forged label costs a few hundred
bytes of metadata and no read. Reads happen one at a time, so a burst of edits cannot pile bodies up.

Events go to each observer in order (type, body, whole): type None for a listing's items (as Kopf
passes them), "ADDED", "MODIFIED", "DELETED"; BODY has "metadata" only unless WHOLE (read by name).
After a re-list (a watch expired, the API server restarted) RELISTED is called; the loop (list,
watch, 410, backoff) is rotor.engines.listwatch's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Protocol

from rotor.engines.listwatch import ListWatch

log = logging.getLogger("rotor.engines.secretfeed")

Body = Mapping[str, Any]
Observer = Callable[[str | None, Body, bool], None]


class MetadataWatch(Protocol):
    def metadata_pages(self, group: str, version: str, plural: str, namespace: str | None = None, *,
                       label_selector: str = "", page: int = 500
                       ) -> AsyncIterator[tuple[list[dict[str, Any]], str]]: ...

    def watch_metadata(self, group: str, version: str, plural: str, namespace: str | None,
                       resource_version: str, *, label_selector: str = "",
                       timeout_seconds: int = 300) -> AsyncIterator[tuple[str, dict[str, Any]]]: ...

    async def read_secret_body(self, namespace: str, name: str) -> dict[str, Any] | None: ...


class SecretFeed(ListWatch):
    what = "managed-Secret"

    def __init__(self, kube: MetadataWatch, selector: str, scopes: Sequence[str | None], *,
                 wants_data: Callable[[Body], bool], observers: Sequence[Observer],
                 relisted: Callable[[], None], gate: asyncio.Event | None = None,
                 timeout_seconds: int = 300) -> None:
        """WANTS_DATA(metadata): whether to read the Secret whole before telling the observers. GATE (peering):
        while it is clear this replica is paused and reads nothing; the views keep metadata, and a sync
        after the resume reads what it needs."""
        super().__init__(scopes, relisted=relisted, timeout_seconds=timeout_seconds)
        self.kube, self.selector = kube, selector
        self.wants_data, self.observers, self.gate = wants_data, tuple(observers), gate
        self.reads = 0  # Secrets read whole (tests, benchmarks)

    def list_scope(self, scope: str | None) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        return self.kube.metadata_pages("", "v1", "secrets", scope, label_selector=self.selector)

    def watch_scope(self, scope: str | None, version: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        return self.kube.watch_metadata("", "v1", "secrets", scope, version, label_selector=self.selector,
                                        timeout_seconds=self.timeout_seconds)

    async def deliver(self, event_type: str | None, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        if not meta.get("name") or not meta.get("namespace"):
            return
        body: Body = {"metadata": meta}
        whole = False
        active = self.gate is None or self.gate.is_set()
        if active and event_type != "DELETED" and self.wants_data(meta):
            read = await self.kube.read_secret_body(meta["namespace"], meta["name"])
            self.reads += 1
            if read is None:
                return  # gone since: its DELETED event follows
            body, whole = read, True
        for observe in self.observers:
            try:
                observe(event_type, body, whole)
            except Exception:  # one view's bug must not stop the other's events
                log.exception("a view failed on Secret %s/%s", meta["namespace"], meta["name"])
