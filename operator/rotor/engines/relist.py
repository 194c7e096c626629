"""After a watch gap, the views forget what is gone: each is reconciled with a fresh list.

Kopf re-lists a kind after its watch expired (410 Gone), after a dropped connection and when a paused
replica resumes; a re-list brings no DELETED event for what went meanwhile. So a managed Secret deleted
in the gap stayed in the sync view (status said Synced, no write ever came), and a RotationPolicy
deleted in the gap kept running. The Relister lists every kind it is given and makes up the missing
DELETED events: whatever a view held before the list, the list does not have, and the view still
holds unchanged (the same object: a view replaces its entry on every re-creation), is handed to the
kind's `gone` callback, which does what its DELETED watch event would have done.

It reconciles shortly after a re-list is seen (`soon`: a listing's event after start-up, a resume
after a peering pause) and every INTERVAL seconds as a backstop (a kind whose every object went
lists nothing to notice). It works only while this replica is active (the peering gate is set).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("rotor.engines.relist")

Key = tuple[str, ...]  # (namespace, name); a workload's (kind, namespace, name)
RETRY_SECONDS = 30.0  # a list that failed (the API server away): try again after this


@dataclass(frozen=True)
class Relisted:
    """One kind a view folds from a watch."""

    kind: str  # for logs: "SecretSource", "managed Secret"...
    held: Callable[[], Mapping[Any, object]]  # the view's entries now, by key
    # A fresh list: every key, with the listed object (None when only keys are listed).
    listed: Callable[[], Awaitable[Mapping[Key, object | None]]]
    gone: Callable[[Key, object], None]  # what its DELETED event does; gets the entry the view held
    present: Callable[[Key, object], None] | None = None  # a listed object the watch may not have brought
    periodic: bool = True  # False: only after a re-list (a kind too costly to list every INTERVAL)


class Relister:
    def __init__(self, kinds: Sequence[Relisted], *, interval: float, gate: asyncio.Event | None = None,
                 settle: float = 1.0, quiet: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        """INTERVAL: seconds between reconciles (0: only when asked); SETTLE: wait after being asked,
        so the re-lists of every kind (they come together) cost one pass; QUIET: seconds after start
        whose listings are the start-up's own (not a re-list)."""
        self.kinds = tuple(kinds)
        self.interval, self.settle, self.quiet = interval, settle, quiet
        self._gate, self._clock = gate, clock
        self._asked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._started = clock()
        self.passes = 0  # reconciles done (tests and logs)

    def relisted(self) -> None:
        """A watch delivered a listing (an event of type None): after start-up, that is a re-list."""
        if self._clock() - self._started >= self.quiet:
            self.soon()

    def soon(self) -> None:
        """Reconcile shortly (a watch re-listed, or this replica resumed after a pause)."""
        self._asked.set()

    def start(self) -> None:
        self._started = self._clock()
        self._task = asyncio.create_task(self._run(), name="rotor-relist")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def reconcile(self, *, asked: bool = True) -> dict[str, int]:
        """One pass (ASKED: after a re-list, over every kind; else the periodic ones); how many entries
        each forgot. Raises what a list raised."""
        forgotten: dict[str, int] = {}
        for kind in self.kinds:
            if not (asked or kind.periodic):
                continue
            before = dict(kind.held())
            listed = await kind.listed()
            now = kind.held()
            gone = [(key, entry) for key, entry in before.items() if key not in listed and now.get(key) is entry]
            for key, entry in gone:
                kind.gone(key, entry)
            if kind.present is not None:
                for key, body in listed.items():
                    if body is not None:
                        kind.present(key, body)
            forgotten[kind.kind] = len(gone)
            if gone:
                log.info("re-list: %d %s(s) gone while the watch was away, forgotten: %s", len(gone), kind.kind,
                         ", ".join("/".join(key) for key, _ in gone[:10]) + (" ..." if len(gone) > 10 else ""))
        self.passes += 1
        return forgotten

    async def _run(self) -> None:
        delay: float | None = self.interval or None
        while True:
            try:
                await asyncio.wait_for(self._asked.wait(), delay)
                await asyncio.sleep(self.settle)
            except TimeoutError:
                pass
            if self._gate is not None and not self._gate.is_set():
                await self._gate.wait()  # a standby lists nothing
            asked = self._asked.is_set()
            self._asked.clear()  # this pass answers every ask so far (a resume asks as it activates)
            try:
                forgotten = await self.reconcile(asked=asked)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the API server away, a bug: the next pass tries again
                log.warning("re-list reconcile failed (%s); again in %.0fs", type(exc).__name__, RETRY_SECONDS)
                delay = min(RETRY_SECONDS, self.interval) if self.interval else RETRY_SECONDS
                continue
            log.debug("re-list reconcile done: %s", forgotten)
            delay = self.interval or None
