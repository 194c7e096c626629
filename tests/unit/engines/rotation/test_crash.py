"""Crash-adopt paths: the operator dies after an action and before its status write; a restarted one
(nothing in memory, status as stored) finishes the rotation without doing the action twice."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Mapping

import pytest

from rotor.backends.protocols import Unavailable
from rotor.planning.leases import fingerprint
from tests.fakes.backend import FakeSecret

from .harness import MOUNT, PATH, PLURAL, World


async def crash_during(w: World, phase: str) -> None:
    """Run to PHASE, then do its action and die before recording it; start a new operator."""
    await w.run(phase)
    w.kube.fail("patch", f"{PLURAL}/status", 500)
    assert await w.step() == 5.0  # the API server failed: the same step again soon
    assert w.status["phase"] == phase  # the action happened; the status does not say so
    w.start_operator()


def static_world(backend_skew: datetime.timedelta | None = None) -> World:
    w = World(backend_skew=backend_skew)
    w.backend.add_static_role("database", "blue", "app_blue")
    w.backend.add_static_role("database", "green", "app_green")
    w.backend.put(MOUNT, PATH, {"username": "app_blue", "password": w.backend.static_roles[("database",
                                                                                            "blue")].password})
    w.source()
    w.policy(overlap={"window": "10m", "staticRoles": ["blue", "green"]}, generator={"type": "backend"})
    return w


def dynamic_world() -> World:
    w = World()
    w.backend.add_lease_role("database", "app", ttl=3600, max_ttl=86400 * 30)
    w.source()
    w.policy(strategy="dynamic", dynamic={"role": "app"})
    return w


def test_a_generated_value_published_before_a_crash_is_adopted_not_written_again() -> None:
    async def main() -> None:
        w = World()
        w.source()
        w.policy()
        await crash_during(w, "Publishing")
        published = w.kv()
        await w.run()
        assert w.status["active"] == {"version": "2"} and w.kv() == published
        assert w.count("kv-write") == 1 and w.alive_versions() == [2]

    asyncio.run(main())


def test_a_static_role_published_before_a_crash_gets_no_second_password() -> None:
    async def main() -> None:
        w = static_world()
        await crash_during(w, "Publishing")
        green = w.backend.static_roles[("database", "green")].password
        await w.run()
        assert w.count("static-rotate", "/green") == 1 and w.count("kv-write") == 1
        assert w.kv()["password"] == green and w.status["active"] == {"version": "3", "role": "green"}

    asyncio.run(main())


def test_a_lease_issued_and_recorded_before_a_crash_is_adopted_not_issued_again() -> None:
    async def main() -> None:
        w = dynamic_world()
        await crash_during(w, "Publishing")
        await w.run()
        (lease,) = w.backend.leases
        assert w.count("dynamic-issue") == 1 and w.count("kv-write") == 1
        assert w.status["active"]["version"] == "2" and w.status["active"]["lease"] == fingerprint(lease)

    asyncio.run(main())


def test_a_write_whose_answer_was_lost_is_adopted() -> None:
    """The backend wrote the version but its answer never came (a timeout): the retry adopts it."""

    async def main() -> None:
        w = World()
        w.source()
        w.policy()
        write = FakeSecret.write_version

        async def lost(self: FakeSecret, data: Mapping[str, str], cas: str) -> str:
            await write(self, data, cas)
            FakeSecret.write_version = write  # type: ignore[method-assign]
            raise Unavailable("timed out waiting for the backend")

        FakeSecret.write_version = lost  # type: ignore[method-assign]
        try:
            await w.run("Publishing")
            assert await w.step() == 5.0 and w.ready["reason"] == "BackendUnavailable"
            assert w.status["phase"] == "Publishing"
        finally:
            FakeSecret.write_version = write  # type: ignore[method-assign]
        await w.run()
        assert w.count("kv-write") == 1 and w.status["active"] == {"version": "2"}

    asyncio.run(main())


def test_a_concurrent_writer_is_not_adopted_and_a_new_value_goes_on_top() -> None:
    async def main() -> None:
        w = World()
        w.source()
        w.policy()
        await w.run("Pending")
        w.backend.put(MOUNT, PATH, {"password": "someone"})  # version 2, one ahead of what was captured
        await w.run("Publishing")
        w.start_operator()  # a crash: only a version carrying this rotation's mark would be adopted
        await w.run()
        assert w.kv()["password"] not in ("someone", "first") and w.status["active"] == {"version": "3"}
        assert w.count("kv-write") == 1 and w.alive_versions() == [3]


def test_a_static_role_revoked_before_a_crash_is_not_revoked_again() -> None:
    async def main() -> None:
        w = static_world()
        await crash_during(w, "Revoking")
        await w.run()
        assert w.count("static-rotate", "/blue") == 1

    asyncio.run(main())


@pytest.mark.parametrize("skew", [datetime.timedelta(hours=1), -datetime.timedelta(hours=1)])
def test_static_role_revoke_compares_times_on_the_backends_clock(skew: datetime.timedelta) -> None:
    """The backend's clock an hour ahead of Rotor's (or behind): the old role is still revoked exactly
    once, also across a crash right after revoking."""

    async def main() -> None:
        w = static_world(backend_skew=skew)
        await w.run()
        assert w.count("static-rotate", "/blue") == 1  # ahead: blue's last password looked newer than Revoking

        w2 = static_world(backend_skew=skew)
        await crash_during(w2, "Revoking")
        await w2.run()
        assert w2.count("static-rotate", "/blue") == 1  # behind: the revoke looked older than Revoking

    asyncio.run(main())


def test_a_lease_revoked_before_a_crash_is_revoked_once() -> None:
    async def main() -> None:
        w = dynamic_world()
        await w.run()
        first = w.backend.live_leases()
        await w.rotate_now()
        await crash_during(w, "Revoking")
        await w.run()
        assert w.count("lease-revoke") == 1 and w.backend.leases[first[0]].revoked

    asyncio.run(main())
