"""The refresh scheduler: due order, no concurrent runs of one key, re-run on request."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

from rotor.engines.scheduler import RefreshScheduler


async def _run(scheduler: RefreshScheduler, seconds: float) -> None:
    scheduler.start()
    await asyncio.sleep(seconds)
    await scheduler.stop()


def test_runs_in_due_order_and_reschedules() -> None:
    seen: list[Hashable] = []

    async def work(key: Hashable) -> float | None:
        seen.append(key)
        return None if key == "b" else 0.05

    async def main() -> None:
        s = RefreshScheduler(work, workers=1)
        s.schedule("a", 0.02)
        s.schedule("b", 0.0)
        await _run(s, 0.2)

    asyncio.run(main())
    assert seen[:2] == ["b", "a"]
    assert seen.count("b") == 1 and seen.count("a") >= 3


def test_a_key_never_runs_twice_at_once_and_a_request_during_a_run_reruns_it() -> None:
    running = 0
    peak = 0
    runs = 0

    async def work(key: Hashable) -> float | None:
        nonlocal running, peak, runs
        running += 1
        runs += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        return None

    async def main() -> None:
        s = RefreshScheduler(work, workers=4)
        s.schedule("k", 0.0)
        s.start()
        await asyncio.sleep(0.01)
        for _ in range(5):
            s.schedule("k", 0.0)  # asked again while running: one re-run, not five parallel runs
        await asyncio.sleep(0.2)
        await s.stop()

    asyncio.run(main())
    assert peak == 1 and runs == 2


def test_removed_keys_do_not_run() -> None:
    seen: list[Hashable] = []

    async def work(key: Hashable) -> float | None:
        seen.append(key)
        return None

    async def main() -> None:
        s = RefreshScheduler(work, workers=2)
        s.schedule("gone", 0.05)
        s.schedule("kept", 0.05)
        s.remove("gone")
        await _run(s, 0.15)

    asyncio.run(main())
    assert seen == ["kept"]


def test_ten_thousand_keys_are_one_heap_not_ten_thousand_timers() -> None:
    count = 0

    async def work(key: Hashable) -> float | None:
        nonlocal count
        count += 1
        return None

    async def main() -> None:
        s = RefreshScheduler(work, workers=8)
        for i in range(10_000):
            s.schedule(i, 0.0)
        assert len(s) == 10_000
        tasks_before = len(asyncio.all_tasks())
        s.start()
        assert len(asyncio.all_tasks()) - tasks_before == 8
        await asyncio.sleep(0.5)
        await s.stop()

    asyncio.run(main())
    assert count == 10_000


def test_a_clear_gate_holds_every_key_and_setting_it_runs_them() -> None:
    seen: list[Hashable] = []

    async def work(key: Hashable) -> float | None:
        seen.append(key)
        return 0.02  # due again soon: a paused scheduler must not run it either

    async def main() -> None:
        gate = asyncio.Event()  # clear: paused
        s = RefreshScheduler(work, workers=2, gate=gate)
        s.schedule("a", 0.0)
        s.schedule("b", 0.01)
        s.start()
        await asyncio.sleep(0.1)
        assert seen == [] and len(s) == 2, "nothing runs while the gate is clear; the keys stay scheduled"
        gate.set()
        await asyncio.sleep(0.1)
        assert {"a", "b"} <= set(seen)
        gate.clear()  # paused again: what is due meanwhile waits
        await asyncio.sleep(0.03)  # a run that had already started when the gate closed may finish
        paused_at = len(seen)
        await asyncio.sleep(0.15)
        assert len(seen) == paused_at, "no new run while the gate is clear"
        assert len(s) == 2, "keys are kept while paused"
        gate.set()
        await asyncio.sleep(0.1)
        assert len(seen) > paused_at, "runs resume when the gate is set again"
        await s.stop()

    asyncio.run(main())


def test_a_run_under_way_when_the_gate_closes_finishes_and_is_rescheduled() -> None:
    finished: list[Hashable] = []
    started = asyncio.Event()

    async def work(key: Hashable) -> float | None:
        started.set()
        await asyncio.sleep(0.05)
        finished.append(key)
        return 0.0

    async def main() -> None:
        gate = asyncio.Event()
        gate.set()
        s = RefreshScheduler(work, workers=1, gate=gate)
        s.schedule("k", 0.0)
        s.start()
        await started.wait()
        gate.clear()
        await asyncio.sleep(0.2)
        assert finished == ["k"], "the run under way finished, and was not run again while paused"
        assert len(s) == 1, "it is scheduled again, to run on resume"
        gate.set()
        await asyncio.sleep(0.1)
        assert len(finished) >= 2, "it runs again once resumed"
        await s.stop()

    asyncio.run(main())


def test_without_a_gate_the_scheduler_always_works() -> None:
    seen: list[Hashable] = []

    async def work(key: Hashable) -> float | None:
        seen.append(key)
        return None

    async def main() -> None:
        s = RefreshScheduler(work, workers=1)
        s.schedule("k", 0.0)
        await _run(s, 0.05)

    asyncio.run(main())
    assert seen == ["k"]
