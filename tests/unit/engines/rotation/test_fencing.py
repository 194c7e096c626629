"""Fencing on the fakes: guarded status writes, one replica acting on a rotation at a time, only Rotor's
own marked versions adopted, and times compared on the clock that wrote them."""

from __future__ import annotations

import asyncio
import datetime
import inspect
import random
from typing import Any

import pytest

from rotor.engines.rotation.view import RotationView
from rotor.engines.rotation.worker import Rotator
from rotor.planning import times
from rotor.planning.leases import rotation_key

from .harness import KEY, MOUNT, PATH, PLURAL, World

HOUR = datetime.timedelta(hours=1)


def static_world() -> World:
    w = World()
    w.backend.add_static_role("database", "blue", "app_blue")
    w.backend.add_static_role("database", "green", "app_green")
    w.backend.put(MOUNT, PATH, {"username": "app_blue", "password": w.backend.static_roles[("database",
                                                                                            "blue")].password})
    w.source()
    w.policy(overlap={"window": "10s", "staticRoles": ["blue", "green"]}, generator={"type": "backend"})
    return w


class Yielding:
    """A backend (or a handle of one) whose every call lets the event loop run something else first, as
    a network call does (a random number of times, from RANDOM): two replicas' steps interleave call by
    call, in ever other orders."""

    def __init__(self, inner: Any, rng: random.Random) -> None:
        self._inner, self._rng = inner, rng

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._inner, name)
        if name == "bind":
            return lambda *args, **kwargs: Yielding(found(*args, **kwargs), self._rng)
        if not inspect.iscoroutinefunction(found):
            return found

        async def call(*args: Any, **kwargs: Any) -> Any:
            for _ in range(self._rng.randrange(4)):
                await asyncio.sleep(0)
            return await found(*args, **kwargs)

        return call


def replicas(w: World, seed: int = 0) -> list[Rotator]:
    """Two replicas acting at once (both believe they are active) on one API server and backend, fed by
    the same watch; their calls interleave (in an order SEED picks)."""
    w.kube.yielding = True
    rng = random.Random(seed)
    found = []
    for _ in range(2):
        replica = Rotator(w.kube, {w.backend.provider: Yielding(w.backend, rng)}, w.sources, clock=w.clock)
        for (plural, _, _), body in list(w.kube.objects.items()):
            if plural == PLURAL:
                replica.upsert(body)
        found.append(replica)
    w.rotator = found[0]  # the harness's watch feeds it; the other gets its own
    w.kube.subscribe(lambda kind, plural, body: plural == PLURAL and kind != "DELETED" and found[1].observe(body))
    return found


def second(w: World) -> Rotator:
    """Another replica acting at once (both believe they are active), fed by the same watch."""
    other = w.another_operator()
    w.kube.subscribe(lambda kind, plural, body: plural == PLURAL and kind != "DELETED" and other.observe(body))
    return other


async def both(w: World, replicas: list[Rotator], until: int, *, steps: int = 500) -> None:
    """Step every replica at once, as their schedulers would, until UNTIL rotations completed. A replica
    whose step asks to run again at once does so before the round ends (it may be a step ahead)."""

    async def steps_of(replica: Rotator) -> float | None:
        wait = await replica.step(KEY)
        while wait == 0.0 and w.status.get("phase") != "Complete":
            wait = await replica.step(KEY)
        return wait

    for _ in range(steps):
        waits = await asyncio.gather(*(steps_of(replica) for replica in replicas))
        if w.status.get("rotations") == until and w.status.get("phase") == "Complete":
            return
        w.clock.advance(min((wait for wait in waits if wait is not None), default=1.0) or 0.001)
    raise AssertionError(f"stuck in {w.status.get('phase')}: {w.ready}")


@pytest.mark.parametrize("seed", range(20))
def test_two_active_replicas_rotate_exactly_once(seed: int) -> None:
    async def main() -> None:
        w = static_world()
        active = replicas(w, seed)
        for n in (1, 2, 3):
            if n > 1:
                await w.rotate_now(str(n))
            await both(w, active, n)
        assert w.count("static-rotate") == 6  # per rotation: the standby published, the old one reset
        assert w.count("kv-write") == 3 and w.status["rotations"] == 3
        assert [s["phase"] for s in w.status["rotation"]["steps"]].count("Publishing") == 1

    asyncio.run(main())


def test_a_stalled_replica_that_wakes_after_a_takeover_does_not_act_again() -> None:
    async def main() -> None:
        w = static_world()
        stalled, other = w.rotator, second(w)
        await w.run("Publishing")  # entered by the replica that then stalls
        assert await other.step(KEY) == pytest.approx(10.0)  # not its turn yet
        w.clock.advance(10)
        await other.step(KEY)  # claims, publishes
        assert "carried on by this replica" in w.ready["message"] or w.status["phase"] != "Publishing"
        assert w.status["phase"] == "Propagating"
        await stalled.step(KEY)  # wakes: what it wrote is not what status holds any more
        assert w.count("static-rotate", "/green") == 1 and w.count("kv-write") == 1
        await both(w, [other, stalled], 1)
        assert w.count("static-rotate", "/green") == 1 and w.count("static-rotate", "/blue") == 1

    asyncio.run(main())


def test_a_status_write_that_conflicts_is_read_again_and_the_action_not_repeated() -> None:
    async def main() -> None:
        w = World()
        w.source()
        w.policy()
        await w.run("Publishing")
        w.kube.fail("patch", f"{PLURAL}/status", 409)
        assert await w.step() == 0.0  # published; entering Propagating lost: read again, step again
        assert w.status["phase"] == "Publishing" and ("list", PLURAL, "") in w.kube.requests
        await w.run()
        assert w.count("kv-write") == 1 and w.status["active"] == {"version": "2"}

    asyncio.run(main())


def test_a_restarted_operator_waits_before_carrying_on_a_rotation_in_progress() -> None:
    async def main() -> None:
        w = World()
        w.source()
        w.policy()
        await w.run("Overlapping")
        w.start_operator()
        assert await w.step() == pytest.approx(10.0)  # the replica that was rotating may still be alive
        w.clock.advance(10)
        await w.run()
        assert w.status["rotations"] == 1

    asyncio.run(main())


def test_a_manual_write_during_pending_is_not_adopted_and_our_version_carries_the_rotation_id() -> None:
    async def main() -> None:
        w = World()
        w.source()
        w.policy()
        await w.run("Pending")
        w.backend.put(MOUNT, PATH, {"username": "app", "password": "typed-by-hand"})
        w.start_operator()  # a crash right then: recovery must not take the manual version for ours
        await w.run()
        assert w.kv()["password"] not in ("typed-by-hand", "first") and w.kv()["username"] == "app"
        assert w.status["active"] == {"version": "3"}
        assert w.backend.secrets[(MOUNT, PATH)].metadata == {rotation_key("3"): w.status["rotation"]["id"]}

    asyncio.run(main())


def test_a_version_this_rotation_marked_is_adopted_after_a_crash() -> None:
    async def main() -> None:
        w = World()
        w.source()
        w.policy()
        await w.run("Publishing")
        w.kube.fail("patch", f"{PLURAL}/status", 500)  # published, then the operator dies
        assert await w.step() == 5.0
        w.start_operator()
        await w.run()
        assert w.count("kv-write") == 1 and w.status["active"] == {"version": "2"}

    asyncio.run(main())


@pytest.mark.parametrize("kube_skew", [10 * 60, -10 * 60])
def test_rollout_failures_are_timed_on_the_api_servers_clock(kube_skew: int) -> None:
    """The API server's clock ten minutes off Rotor's: a failure since the rotation started rolls it
    back at once; one from before it does not."""

    async def main() -> None:
        w = World(kube_skew=datetime.timedelta(seconds=kube_skew))
        w.source()

        def failed(at: datetime.datetime) -> list[dict[str, str]]:
            return [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                     "lastTransitionTime": times.iso(at)}]

        w.workload(ready=False, conditions=failed(w.kube.clock() - datetime.timedelta(minutes=1)))
        w.policy()
        await w.run("Verifying")
        await w.step()
        assert w.status["phase"] == "Verifying"  # the old failure: keep waiting
        w.workload(ready=False, conditions=failed(w.kube.clock()))
        await w.step()
        assert w.status["phase"] == "RollingBack"

    asyncio.run(main())


def test_a_watch_event_older_than_what_rotor_holds_is_ignored() -> None:
    """Rotor's own earlier write, delivered by the watch after a later one: status never goes back."""

    async def main() -> None:
        w = World()
        w.source()
        w.policy()
        await w.run("Pending")
        older = w.kube.get(PLURAL, "a", "db")
        await w.run("Publishing")
        state = w.rotator.policy("a", "db")
        assert state is not None and older is not None
        assert not w.rotator.observe(older) and state.status["phase"] == "Publishing"
        w.rotator.upsert(older)  # a handler's body from before (Kopf resuming): the newer status stays
        state = w.rotator.policy("a", "db")
        assert state is not None and state.status["phase"] == "Publishing"

    asyncio.run(main())


def test_the_deletion_of_a_policy_asks_for_a_step_at_once() -> None:
    view = RotationView()
    body = {"metadata": {"namespace": "a", "name": "db", "uid": "u1", "resourceVersion": "5"},
            "spec": {"secretSourceRef": {"name": "db"}, "strategy": "overlap", "schedule": {"interval": "720h"}}}
    view.upsert(body)
    deleting = {**body, "metadata": {**body["metadata"], "resourceVersion": "6",
                                     "deletionTimestamp": "2026-03-01T12:00:00Z"}}
    assert view.observe(deleting) is True
    assert view.observe({**deleting, "metadata": {**deleting["metadata"], "resourceVersion": "7"}}) is False
    assert view.observe({**body, "metadata": {**body["metadata"], "resourceVersion": "4"}}) is False  # stale


def test_a_rotate_now_whose_start_lost_a_write_race_still_starts() -> None:
    async def main() -> None:
        w = World()
        w.source()
        w.policy(schedule={"interval": "720h"})
        await w.run()
        await w.rotate_now("again")
        w.kube.fail("patch", f"{PLURAL}/status", 409)  # entering Pending loses to another writer
        assert await w.step() == 0.0
        await w.step()
        assert w.status["phase"] == "Pending" and w.status["handledRotateNow"] == "again"

    asyncio.run(main())
