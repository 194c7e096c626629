"""One refresh scheduler for every SecretSource: due times per namespace, drained by workers, fairly.

Thousands of sources cost one heap entry each instead of one timer task each. A key is never
worked on by two workers at once; asking for a key while it runs re-runs it right after.

Fair shares: each namespace (a key's first part) has its own heap, and the workers take due keys
round-robin across the namespaces that have any: a tenant with 2,000 sources due delays another
tenant's 10 by at most one round (one key per busy namespace), not by its whole backlog.

An optional gate (an asyncio.Event) holds the workers while it is clear: no key is taken, keys stay
scheduled and run once it is set again. A run already under way finishes. The operator clears it
while this replica is a standby (peering); without a gate the scheduler always works.

A run that raises is a bug: it is logged, retried after CRASH_RETRY seconds, and reported to the
crash hook (report_crashes), which the wiring points at the object's Ready condition (InternalError).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable

from rotor import GROUP, VERSION
from rotor.api import keys
from rotor.kube import Kube, KubeError
from rotor.observability.metrics import QUEUE_DEPTH, QUEUE_DUE
from rotor.planning import times
from rotor.planning.conditions import set_condition

log = logging.getLogger("rotor.engines.scheduler")

# work(key) -> seconds until the key is due again, or None to drop it.
Work = Callable[[Hashable], Awaitable[float | None]]
# crashed(key, error): tell the key's owner that its run failed unexpectedly.
CrashHook = Callable[[Hashable, BaseException], Awaitable[None]]
CRASH_RETRY = 60.0
_Entry = tuple[float, int, Hashable]


def namespace_of(key: Hashable) -> str:
    """The fair-share group of a key: its namespace for (namespace, name) keys, "" for any other."""
    if isinstance(key, tuple) and key and isinstance(key[0], str):
        return key[0]
    return ""


class RefreshScheduler:
    def __init__(self, work: Work, *, workers: int = 16, clock: Callable[[], float] = time.monotonic,
                 gate: asyncio.Event | None = None, gauges: bool = True) -> None:
        self._work = work
        self._gauges = gauges  # the queue gauges describe the SecretSource scheduler only
        self._gate = gate
        self._workers = workers
        self._clock = clock
        self._queues: dict[str, list[_Entry]] = {}  # namespace -> its keys by due time (stale entries too)
        self._wakeups: list[tuple[float, int, str]] = []  # (due, seq, namespace): when a namespace has work
        self._ready: deque[str] = deque()  # namespaces with a due key, in round-robin order
        self._in_ready: set[str] = set()
        self._due: dict[Hashable, float] = {}
        self._running: set[Hashable] = set()
        self._rerun: set[Hashable] = set()
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._keeper = False  # an idle worker watches the clock (the others wait in _idle)
        self._sleep_until = float("inf")  # when the keeper wakes unless schedule() wakes it earlier
        self._idle: deque[asyncio.Future[None]] = deque()
        self._tasks: list[asyncio.Task[None]] = []
        self._due_gauge_at = float("-inf")
        self._crashed: CrashHook | None = None

    def __len__(self) -> int:
        return len(self._due)

    def report_crashes(self, hook: CrashHook) -> None:
        """Call HOOK(key, error) when a run raises (after logging it)."""
        self._crashed = hook

    def schedule(self, key: Hashable, delay: float = 0.0) -> None:
        """Run KEY after DELAY seconds; an earlier existing due time wins."""
        if key in self._running and delay <= 0:
            self._rerun.add(key)
            return
        due = self._clock() + max(0.0, delay)
        current = self._due.get(key)
        if current is not None and current <= due and key not in self._running:
            return
        self._due[key] = due
        namespace, seq = namespace_of(key), next(self._seq)
        heapq.heappush(self._queues.setdefault(namespace, []), (due, seq, key))
        heapq.heappush(self._wakeups, (due, seq, namespace))
        if self._gauges:
            QUEUE_DEPTH.set(len(self._due))
        if due < self._sleep_until:  # a refresh rescheduled an interval ahead wakes no one
            self._wake.set()

    def remove(self, key: Hashable) -> None:
        self._due.pop(key, None)  # its heap entry becomes stale and is skipped
        self._rerun.discard(key)
        if self._gauges:
            QUEUE_DEPTH.set(len(self._due))

    def due_count(self) -> int:
        now = self._clock()
        return sum(1 for due in self._due.values() if due <= now)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(), name=f"rotor-refresh-{i}") for i in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    # -- taking keys, fairly ------------------------------------------------------------------------

    def take_due(self) -> Hashable | None:
        """The next due key to run (round-robin across namespaces), marked running; None if none is due."""
        now = self._clock()
        while self._wakeups and self._wakeups[0][0] <= now:
            namespace = heapq.heappop(self._wakeups)[2]
            if namespace not in self._in_ready:
                self._in_ready.add(namespace)
                self._ready.append(namespace)
        while self._ready:
            namespace = self._ready.popleft()
            key = self._pop_due(namespace, now)
            if key is None or not self._has_due(namespace, now):
                self._in_ready.discard(namespace)
            else:
                self._ready.append(namespace)  # back of the line: every other busy namespace goes first
            if key is not None:
                return key
        return None

    def _pop_due(self, namespace: str, now: float) -> Hashable | None:
        queue = self._queues.get(namespace)
        while queue and queue[0][0] <= now:
            due, _, key = heapq.heappop(queue)
            if self._due.get(key) != due:
                continue  # stale: rescheduled or removed since
            if key in self._running:
                self._rerun.add(key)
                continue
            del self._due[key]
            self._running.add(key)
            if self._gauges:
                QUEUE_DEPTH.set(len(self._due))
            return key
        if queue is not None and not queue:
            del self._queues[namespace]
        return None

    def _has_due(self, namespace: str, now: float) -> bool:
        queue = self._queues.get(namespace) or []
        while queue and self._due.get(queue[0][2]) != queue[0][0]:
            heapq.heappop(queue)  # stale entries at the top hide nothing
        return bool(queue) and queue[0][0] <= now

    async def _next(self) -> Hashable:
        """The next due key. One idle worker (the keeper) watches the clock and schedule(); the other
        idle ones wait to be handed the watch: a key scheduled or due wakes one worker, not all of them
        (with 32 workers, waking all cost each refresh 31 timed waits, about 1 ms of CPU)."""
        while True:
            if self._gate is not None and not self._gate.is_set():
                await self._gate.wait()
                continue
            key = self.take_due()
            if key is not None:
                now = self._clock()
                if self._gauges and now - self._due_gauge_at >= 1.0:  # counting is O(keys): once a second
                    self._due_gauge_at = now
                    QUEUE_DUE.set(self.due_count())
                if not self._keeper:
                    self._hand_over()  # an idle worker takes the watch (more may be due)
                return key
            if self._gauges:
                QUEUE_DUE.set(0)  # nothing left is due before the next wake-up
            if self._keeper:  # another worker watches: wait until it hands over
                waiting = asyncio.get_running_loop().create_future()
                self._idle.append(waiting)
                await waiting
                continue
            self._keeper = True
            until = self._wakeups[0][0] if self._wakeups else None
            self._sleep_until = until if until is not None else float("inf")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), None if until is None else until - self._clock())
            except TimeoutError:
                pass
            finally:
                self._keeper, self._sleep_until = False, float("inf")

    def _hand_over(self) -> None:
        """Wake one idle worker (it watches the clock, or takes a due key)."""
        while self._idle:
            waiting = self._idle.popleft()
            if not waiting.done():  # a cancelled worker's is done
                waiting.set_result(None)
                return

    async def _worker(self) -> None:
        while True:
            key = await self._next()
            delay: float | None = CRASH_RETRY
            crash: Exception | None = None
            try:
                delay = await self._work(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                crash = exc
                log.exception("refresh of %s failed unexpectedly; retrying in %.0fs", key, CRASH_RETRY)
            finally:
                self._running.discard(key)
            if key in self._rerun:
                self._rerun.discard(key)
                self.schedule(key, 0.0)
            elif delay is not None:
                self.schedule(key, delay)
            if crash is not None and self._crashed is not None:
                try:
                    await self._crashed(key, crash)
                except Exception:  # the report is best effort; the log line above stands
                    log.warning("the failure of %s could not be reported in its status", key, exc_info=True)


# -- telling the owner: Ready=False, InternalError ----------------------------------------------------


def internal_error_message(kind: str, namespace: str, name: str, error: BaseException) -> str:
    """Names the object and the error's type; never the error's text (it might quote a value)."""
    return (f"Rotor failed unexpectedly on {kind} {namespace}/{name} ({type(error).__name__}); it retries in "
            f"{CRASH_RETRY:.0f}s. This is a bug in Rotor, not in the spec: the operator log has the details")


async def report_internal_error(kube: Kube, kind: str, plural: str, key: Hashable, error: BaseException) -> None:
    """Set Ready=False (InternalError) on the object KEY names, keeping its other conditions; post an Event."""
    if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(part, str) for part in key)):
        return  # not an object (an engine's own housekeeping key): the log line is all there is
    namespace, name = key
    try:
        # Listed, not read: Rotor's RBAC has no get on its own kinds (a crash is rare; the list is one page).
        body = next((b for b in await kube.list_objects(GROUP, VERSION, plural, namespace)
                     if (b.get("metadata") or {}).get("name") == name), None)
        if body is None:
            return
        meta = body.get("metadata") or {}
        message = internal_error_message(kind, namespace, name, error)
        conditions = set_condition((body.get("status") or {}).get("conditions") or [], type=keys.READY,
                                   status="False", reason=keys.INTERNAL_ERROR, message=message, now=times.now_iso(),
                                   generation=meta.get("generation"))
        await kube.patch_status(plural, namespace, name, {"conditions": conditions}, missing_ok=True)
        await kube.post_event(kind=kind, namespace=namespace, name=name, uid=str(meta.get("uid") or ""),
                              type="Warning", reason=keys.INTERNAL_ERROR, message=message)
    except KubeError as err:
        log.warning("status of %s %s/%s not written: %s", kind, namespace, name, err.reason)


def crash_reporter(kube: Kube, kind: str, plural: str) -> CrashHook:
    """The crash hook for a scheduler of KIND objects (keys (namespace, name))."""
    async def crashed(key: Hashable, error: BaseException) -> None:
        await report_internal_error(kube, kind, plural, key, error)

    return crashed
