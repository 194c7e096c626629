"""The refresh scheduler: due order, no concurrent runs of one key, re-run on request."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

from rotor.api import keys
from rotor.engines.scheduler import RefreshScheduler, crash_reporter
from tests.fakes.kube import FakeKube


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


def test_keys_scheduled_while_every_worker_is_idle_run_in_parallel() -> None:
    """One idle worker watches the clock, the others wait to be handed the watch: a burst of keys still
    gets every worker, and keys due later run on time."""
    running, peak, done = 0, 0, []

    async def work(key: Hashable) -> float | None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.2)
        running -= 1
        done.append(key)
        return None

    async def main() -> None:
        s = RefreshScheduler(work, workers=8)
        s.start()
        await asyncio.sleep(0.05)  # every worker idle
        for i in range(8):
            s.schedule(i, 0.0)
        s.schedule("later", 0.3)
        await asyncio.sleep(0.25)
        assert peak == 8 and len(done) == 8
        await asyncio.sleep(0.35)
        assert "later" in done
        await s.stop()

    asyncio.run(main())


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


# -- fair shares: round-robin across namespaces among due keys (a fake clock, no workers) -------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _drain(s: RefreshScheduler) -> list[Hashable]:
    """Every key due now, in the order workers would take them (each run finishes at once)."""
    order: list[Hashable] = []
    while (key := s.take_due()) is not None:
        order.append(key)
        s._running.discard(key)
    return order


def test_a_noisy_namespace_delays_a_quiet_one_by_at_most_a_round() -> None:
    clock = FakeClock()

    async def work(key: Hashable) -> float | None:
        return None

    s = RefreshScheduler(work, clock=clock)
    for i in range(2000):
        s.schedule(("noisy", f"s{i}"), 0.0)  # all due first
    clock.now += 1
    for i in range(10):
        s.schedule(("quiet", f"s{i}"), 0.0)
    clock.now += 1
    order = _drain(s)
    assert len(order) == 2010
    quiet = [i for i, key in enumerate(order) if key[0] == "quiet"]  # type: ignore[index]
    # The quiet tenant's ten go one per round of two: all of them within the first 20 taken.
    assert max(quiet) < 20, quiet
    # Within a namespace, due order is kept.
    assert [k for k in order if k[0] == "noisy"][:3] == [("noisy", "s0"), ("noisy", "s1"), ("noisy", "s2")]  # type: ignore[index]


def test_round_robin_covers_every_busy_namespace_and_not_yet_due_keys_wait() -> None:
    clock = FakeClock()

    async def work(key: Hashable) -> float | None:
        return None

    s = RefreshScheduler(work, clock=clock)
    for ns in ("a", "b", "c"):
        for i in range(3):
            s.schedule((ns, str(i)), 0.0)
    s.schedule(("d", "later"), 30.0)
    s.schedule("housekeeping", 0.0)  # not a (namespace, name) key: its own group
    order = _drain(s)
    assert [k[0] if isinstance(k, tuple) else k for k in order[:4]] == ["a", "b", "c", "housekeeping"]
    assert len(order) == 10 and ("d", "later") not in order
    clock.now += 30
    assert _drain(s) == [("d", "later")]


def test_a_removed_or_rescheduled_key_leaves_no_stale_turn() -> None:
    clock = FakeClock()

    async def work(key: Hashable) -> float | None:
        return None

    s = RefreshScheduler(work, clock=clock)
    s.schedule(("a", "x"), 0.0)
    s.schedule(("b", "y"), 0.0)
    s.remove(("a", "x"))
    s.schedule(("b", "z"), 50.0)
    s.schedule(("b", "z"), 0.0)  # earlier due time wins
    assert sorted(_drain(s)) == [("b", "y"), ("b", "z")]  # type: ignore[type-var]
    clock.now += 100
    assert _drain(s) == [] and len(s) == 0


def test_workers_take_keys_fairly_end_to_end() -> None:
    clock = FakeClock()
    seen: list[Hashable] = []

    async def work(key: Hashable) -> float | None:
        seen.append(key)
        return None

    async def main() -> None:
        s = RefreshScheduler(work, workers=1, clock=clock)
        for i in range(500):
            s.schedule(("noisy", str(i)), 0.0)
        for i in range(5):
            s.schedule(("quiet", str(i)), 0.0)
        await _run(s, 0.3)

    asyncio.run(main())
    assert len(seen) == 505
    assert max(i for i, key in enumerate(seen) if key[0] == "quiet") < 10  # type: ignore[index]


# -- a run that raises: logged, retried, reported through the crash hook -------------------------------


def test_a_crashing_run_is_reported_and_retried() -> None:
    reported: list[tuple[Hashable, str]] = []
    runs = 0

    async def work(key: Hashable) -> float | None:
        nonlocal runs
        runs += 1
        raise OverflowError("date value out of range")

    async def crashed(key: Hashable, error: BaseException) -> None:
        reported.append((key, type(error).__name__))

    async def main() -> RefreshScheduler:
        s = RefreshScheduler(work, workers=1)
        s.report_crashes(crashed)
        s.schedule(("team", "db"), 0.0)
        await _run(s, 0.1)
        return s

    s = asyncio.run(main())
    assert runs == 1 and reported == [(("team", "db"), "OverflowError")]
    assert len(s) == 1, "retried later (CRASH_RETRY), not dropped"


def test_a_failing_crash_hook_does_not_stop_the_worker() -> None:
    seen: list[Hashable] = []

    async def work(key: Hashable) -> float | None:
        seen.append(key)
        if key == "bad":
            raise RuntimeError("bug")
        return None

    async def crashed(key: Hashable, error: BaseException) -> None:
        raise RuntimeError("the API server is away")

    async def main() -> None:
        s = RefreshScheduler(work, workers=1)
        s.report_crashes(crashed)
        s.schedule("bad", 0.0)
        s.schedule("good", 0.01)
        await _run(s, 0.1)

    asyncio.run(main())
    assert seen == ["bad", "good"]


def test_internal_error_sets_ready_false_naming_the_object_never_the_message() -> None:
    kube = FakeKube()
    kube.put("secretsources", {"metadata": {"namespace": "team", "name": "db"}, "spec": {},
                               "status": {"conditions": [
                                   {"type": "Ready", "status": "True", "reason": "Synced", "message": "ok"},
                                   {"type": "Other", "status": "True", "reason": "Fine", "message": ""}]}})
    hook = crash_reporter(kube, "SecretSource", "secretsources")
    asyncio.run(hook(("team", "db"), ValueError("hunter2 is not a number")))
    asyncio.run(hook(("team", "gone"), ValueError("x")))  # deleted meanwhile: nothing to report on
    asyncio.run(hook("housekeeping", ValueError("x")))  # not an object
    status = kube.get("secretsources", "team", "db")["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == keys.INTERNAL_ERROR
    assert "SecretSource team/db" in ready["message"] and "ValueError" in ready["message"]
    assert "hunter2" not in str(status) and "hunter2" not in str(kube.events)
    assert any(c["type"] == "Other" for c in status["conditions"]), "other conditions are kept"
    assert [e["reason"] for e in kube.events] == [keys.INTERNAL_ERROR]
    assert not [r for r in kube.requests if r[0] == "get"], "Rotor's RBAC has no get on its own kinds: it lists"
