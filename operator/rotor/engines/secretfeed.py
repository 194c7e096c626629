"""The managed-Secret feed: Rotor's own metadata-only list and watch of Secrets labelled managed-by=rotor.

Anyone who may create a Secret may put that label on it, so what the label brings must cost nothing:
the feed lists and watches metadata only (no value leaves the API server) and reads a Secret by name
only when a view asks for its data: a Secret some SecretSource writes into whose resourceVersion is
not the one Rotor wrote last (someone else changed it: drift). A forged label costs a few hundred
bytes of metadata and no read. Reads happen one at a time, so a burst of edits cannot pile bodies up.

Events go to each observer in order (type, body, whole): type None for a listing's items (as Kopf
passes them), "ADDED", "MODIFIED", "DELETED"; BODY has "metadata" only unless WHOLE (read by name).
After a re-list (a watch expired, the API server restarted) RELISTED is called: a re-list brings no
DELETED event for what went meanwhile, and the re-list reconciler makes those up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Protocol

log = logging.getLogger("rotor.engines.secretfeed")

Body = Mapping[str, Any]
Observer = Callable[[str | None, Body, bool], None]
MAX_BACKOFF_SECONDS = 30.0


class MetadataWatch(Protocol):
    async def list_metadata(self, group: str, version: str, plural: str, namespace: str | None = None, *,
                            label_selector: str = "", page: int = 500) -> tuple[list[dict[str, Any]], str]: ...

    def watch_metadata(self, group: str, version: str, plural: str, namespace: str | None,
                       resource_version: str, *, label_selector: str = "",
                       timeout_seconds: int = 300) -> AsyncIterator[tuple[str, dict[str, Any]]]: ...

    async def read_secret_body(self, namespace: str, name: str) -> dict[str, Any] | None: ...


class SecretFeed:
    def __init__(self, kube: MetadataWatch, selector: str, scopes: Sequence[str | None], *,
                 wants_data: Callable[[Body], bool], observers: Sequence[Observer],
                 relisted: Callable[[], None], gate: asyncio.Event | None = None,
                 timeout_seconds: int = 300) -> None:
        """WANTS_DATA(metadata): whether to read the Secret whole before telling the observers. GATE (peering):
        while it is clear this replica is paused and reads nothing; the views keep metadata, and a sync
        after the resume reads what it needs."""
        self.kube, self.selector, self.scopes = kube, selector, tuple(scopes) or (None,)
        self.wants_data, self.observers, self.relisted = wants_data, tuple(observers), relisted
        self.timeout_seconds, self.gate = timeout_seconds, gate
        self.reads = 0  # Secrets read whole (tests, benchmarks)
        self.listed = asyncio.Event()  # set once every scope's first list is delivered
        self._first_lists = len(self.scopes)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(scope), name=f"rotor-secret-feed-{scope or 'all'}")
                       for scope in self.scopes]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _run(self, scope: str | None) -> None:
        first, backoff = True, 1.0
        while True:
            try:
                version = await self._list(scope)
                if first:
                    first = False
                    self._first_lists -= 1
                    if self._first_lists <= 0:
                        self.listed.set()
                else:
                    self.relisted()
                backoff = 1.0
                while True:  # the server ends a watch after its timeout: go on from the last version seen
                    version = await self._watch(scope, version)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                gone = getattr(err, "status", None) == 410
                if gone:  # the version is too old to watch from: list again at once
                    log.info("managed-Secret watch in %s expired; listing again", scope or "all namespaces")
                    continue
                log.warning("managed-Secret watch in %s failed (%s: %s); listing again in %.0fs",
                            scope or "all namespaces", type(err).__name__, getattr(err, "reason", ""), backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def _list(self, scope: str | None) -> str:
        items, version = await self.kube.list_metadata("", "v1", "secrets", scope, label_selector=self.selector)
        for item in items:
            await self._deliver(None, item)
        return version

    async def _watch(self, scope: str | None, version: str) -> str:
        async for event_type, obj in self.kube.watch_metadata("", "v1", "secrets", scope, version,
                                                              label_selector=self.selector,
                                                              timeout_seconds=self.timeout_seconds):
            version = (obj.get("metadata") or {}).get("resourceVersion") or version
            if event_type != "BOOKMARK":
                await self._deliver(event_type, obj)
        return version

    async def _deliver(self, event_type: str | None, obj: Body) -> None:
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
