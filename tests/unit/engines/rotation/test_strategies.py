"""Every strategy's full rotation, Pending to Complete, on the fakes."""

from __future__ import annotations

import asyncio
import datetime

from rotor.api import keys
from rotor.planning import times
from rotor.planning.leases import fingerprint, lease_key, rotation_key

from .harness import MOUNT, PATH, PLURAL, World

EVERY_PHASE = ["Pending", "Publishing", "Propagating", "Verifying", "Overlapping", "Revoking", "Complete"]
HOUR = datetime.timedelta(hours=1)


def test_generated_overlap_publishes_a_new_value_and_keeps_only_it() -> None:
    async def main() -> None:
        w = World()
        w.source()
        w.policy()
        await w.run()
        assert w.phases == EVERY_PHASE
        assert w.kv()["username"] == "app" and w.kv()["password"] not in ("first", "")
        assert w.alive_versions() == [2]
        status = w.status
        assert status["active"] == {"version": "2"} and status["rotations"] == 1
        assert status["lastRotationTime"] == times.iso(w.clock())
        assert status["nextRotationTime"] == times.iso(w.clock() + 720 * HOUR)
        assert status["rotation"]["old"] == {"version": "1"} and status["rotation"]["trigger"] == "schedule"
        assert w.ready["status"] == "True" and w.ready["reason"] == keys.ROTATED
        assert [(e["type"], e["reason"]) for e in w.kube.events] == [("Normal", keys.ROTATED)]
        assert w.sources.synced  # the sync engine was asked to deliver the new version at once
        # Nothing more until the next rotation is due.
        calls, requests = len(w.backend.calls), len(w.kube.writes())
        assert await w.step() == 3600.0
        assert len(w.backend.calls) == calls and len(w.kube.writes()) == requests

    asyncio.run(main())


def test_versioned_keeps_the_newest_n_versions() -> None:
    async def main() -> None:
        w = World()
        for n in range(4):
            w.backend.put(MOUNT, PATH, {"token": f"t{n}"})  # versions 2..5
        w.source()
        w.policy(strategy="versioned", versioned={"keep": 3},
                 generator={"key": "token", "type": "bytes", "encoding": "hex", "length": 16})
        await w.run()
        assert w.phases == EVERY_PHASE
        assert w.alive_versions() == [4, 5, 6]
        assert len(w.kv()["token"]) == 32 and w.status["active"] == {"version": "6"}

    asyncio.run(main())


def test_static_role_pair_moves_readers_to_the_standby_role_then_resets_the_old_password() -> None:
    async def main() -> None:
        w = World()
        w.backend.add_static_role("database", "blue", "app_blue")
        w.backend.add_static_role("database", "green", "app_green")
        blue = w.backend.static_roles[("database", "blue")]
        w.backend.put(MOUNT, PATH, {"username": "app_blue", "password": blue.password})
        blue_before = blue.password
        w.source()
        w.policy(overlap={"window": "10m", "staticRoles": ["blue", "green"]}, generator={"type": "backend"})
        await w.run()
        green = w.backend.static_roles[("database", "green")]
        assert w.phases == EVERY_PHASE
        assert w.kv() == {"username": "app_green", "password": green.password}
        assert blue.password != blue_before  # what readers cached of blue stops working
        assert w.count("static-rotate", "/green") == 1 and w.count("static-rotate", "/blue") == 1
        assert w.status["active"] == {"version": "3", "role": "green"}
        assert w.status["rotation"]["old"] == {"version": "2", "role": "blue"}

        # The next rotation goes back to blue.
        await w.rotate_now()
        await w.run("Pending")
        await w.run()
        assert w.kv()["username"] == "app_blue" and w.status["active"]["role"] == "blue"
        assert w.count("static-rotate", "/green") == 2 and w.count("static-rotate", "/blue") == 2
        assert w.status["rotation"]["trigger"] == "manual" and w.status["handledRotateNow"] == "1"

    asyncio.run(main())


def test_dynamic_issues_a_lease_per_rotation_and_revokes_the_one_before() -> None:
    async def main() -> None:
        w = World()
        w.backend.add_lease_role("database", "app", ttl=3600, max_ttl=30 * 86400)
        w.source()
        w.policy(strategy="dynamic", dynamic={"role": "app"})
        await w.run()
        assert w.phases == EVERY_PHASE
        (first,) = w.backend.live_leases()
        active = w.status["active"]
        published = times.parse(w.status["rotation"]["steps"][1]["time"])  # entering Publishing
        assert active == {"version": "2", "lease": fingerprint(first), "leaseExpires": times.iso(published + HOUR),
                          "leaseMaxExpires": times.iso(published + 720 * HOUR), "leaseTtl": "3600"}
        rotation_id = w.status["rotation"]["id"]
        assert w.backend.secrets[(MOUNT, PATH)].metadata == {lease_key("2"): first, rotation_key("2"): rotation_id}
        assert w.kv()["username"].startswith("v-app-") and first not in str(w.status)
        assert w.kube.get(PLURAL, "a", "db")["metadata"]["finalizers"] == [keys.CLEANUP_FINALIZER]  # type: ignore[index]

        await w.rotate_now()
        await w.run("Pending")
        assert w.status["rotation"]["old"] == {"version": "2", "lease": fingerprint(first)}
        await w.run()
        (second,) = w.backend.live_leases()
        assert second != first and w.backend.leases[first].revoked
        # The revoked lease and the destroyed version's mark forgotten.
        assert w.backend.secrets[(MOUNT, PATH)].metadata == {lease_key("3"): second,
                                                             rotation_key("3"): w.status["rotation"]["id"]}

    asyncio.run(main())


def test_dynamic_rotates_again_before_the_lease_reaches_its_max_ttl() -> None:
    async def main() -> None:
        w = World()
        w.backend.add_lease_role("database", "app", ttl=3600, max_ttl=86400)
        w.source()
        w.policy(strategy="dynamic", dynamic={"role": "app"}, overlap={"window": "1h"})
        await w.run()
        max_expires = times.parse(w.status["active"]["leaseMaxExpires"])
        # Not while the lease can still outlive twice the overlap window (renewed meanwhile); then at once.
        await w.idle_until(max_expires - 2 * HOUR - datetime.timedelta(minutes=1))
        assert w.status["phase"] == "Complete" and w.status["rotations"] == 1
        w.clock.advance(120)
        await w.step()
        assert w.status["phase"] == "Pending" and w.status["rotation"]["trigger"] == "schedule"

    asyncio.run(main())
