"""List, then watch: the loop under Rotor's own watches (rotor.engines.secretfeed, rotor.engines.sourcefeed).

Per scope (a namespace; None: every namespace): list, deliver each item with type None (as Kopf passed
a listing's items), then watch from the list's resourceVersion, going on from the last version seen
each time the server ends a watch (bookmarks move the version on and are not delivered). A 410 Gone
(the version was compacted away) lists again at once; any other error lists again after a backoff
(1 s, doubling up to 30 s). After a re-list, not the first list, RELISTED is called: a re-list brings
no DELETED event for what went meanwhile, and rotor.engines.relist makes those up.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

log = logging.getLogger("rotor.engines.listwatch")

MAX_BACKOFF_SECONDS = 30.0


class ListWatch(ABC):
    """One list-and-watch task per scope; a subclass says what it lists, watches and delivers."""

    what = "object"  # in logs and task names: "managed-Secret watch in team-a expired"

    def __init__(self, scopes: Sequence[str | None], *, relisted: Callable[[], None],
                 timeout_seconds: int = 300) -> None:
        self.scopes = tuple(scopes) or (None,)
        self.relisted, self.timeout_seconds = relisted, timeout_seconds
        self.listed = asyncio.Event()  # set once every scope's first list is delivered
        self._first_lists = len(self.scopes)
        self._tasks: list[asyncio.Task[None]] = []

    @abstractmethod
    def list_scope(self, scope: str | None) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        """Every object of SCOPE a page at a time, with the list's resourceVersion."""

    @abstractmethod
    def watch_scope(self, scope: str | None, version: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(type, object) for each change of SCOPE after VERSION, until the server ends the watch."""

    @abstractmethod
    async def deliver(self, event_type: str | None, obj: dict[str, Any]) -> None:
        """One object, listed (None) or watched; what it raises lists again after a backoff."""

    def start(self) -> None:
        name = self.what.lower().replace(" ", "-")
        self._tasks = [asyncio.create_task(self._run(scope), name=f"rotor-{name}-feed-{scope or 'all'}")
                       for scope in self.scopes]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _run(self, scope: str | None) -> None:
        first, backoff = True, 1.0
        where = scope or "all namespaces"
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
                if getattr(err, "status", None) == 410:  # the version is too old to watch from: list again at once
                    log.info("%s watch in %s expired; listing again", self.what, where)
                    continue
                log.warning("%s watch in %s failed (%s: %s); listing again in %.0fs", self.what, where,
                            type(err).__name__, getattr(err, "reason", ""), backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def _list(self, scope: str | None) -> str:
        listed = ""
        async for items, version in self.list_scope(scope):  # delivered as they come: work starts at once
            listed = version
            for item in items:
                await self.deliver(None, item)
        return listed

    async def _watch(self, scope: str | None, version: str) -> str:
        async for event_type, obj in self.watch_scope(scope, version):
            version = (obj.get("metadata") or {}).get("resourceVersion") or version
            if event_type != "BOOKMARK":
                await self.deliver(event_type, obj)
        return version
