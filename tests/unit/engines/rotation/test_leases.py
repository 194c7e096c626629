"""Dynamic leases on the fakes: renewed at renewFraction, replaced before their max TTL, recorded before
use (a lease nobody recorded dies within its grace), revoked when the policy is deleted, and timed on
the backend's clock."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest

from rotor.api import keys
from rotor.backends.protocols import ISSUE_GRACE_SECONDS, Unavailable
from rotor.engines.rotation.worker import Rotator
from rotor.planning import times
from rotor.planning.leases import fingerprint, held_leases, lease_ids, lease_key

from .harness import KEY, MOUNT, PATH, PLURAL, World


def dynamic(w: World, *, ttl: int, max_ttl: int, **spec: Any) -> None:
    w.backend.add_lease_role("database", "app", ttl=ttl, max_ttl=max_ttl)
    w.source()
    w.policy(strategy="dynamic", dynamic={"role": "app", **spec.pop("dynamic", {})}, **spec)


def status_leases(w: World) -> set[str]:
    return {values["lease"] for values in held_leases(w.status).values()}


def live_leases(w: World) -> set[str]:
    return {fingerprint(lease) for lease in w.backend.live_leases()}


def delivered_lease_live(w: World) -> bool:
    """What readers have (the version last delivered) still logs in: its lease is live."""
    source = w.sources.sources[KEY]
    lease = w.backend.secrets[(MOUNT, PATH)].metadata.get(lease_key(source.status["syncedVersion"]))
    return lease is not None and w.backend.lease_live(lease)


@pytest.mark.parametrize("skew", [None, datetime.timedelta(minutes=10), -datetime.timedelta(minutes=10)])
def test_leases_are_renewed_at_the_renew_fraction_and_replaced_before_their_max_ttl(
        skew: datetime.timedelta | None) -> None:
    """TTL 10 s, max TTL 40 s, for more than three max TTLs, stepping as the scheduler would: readers
    always hold a live lease, and Vault holds exactly the leases status names. The backend's clock ten
    minutes off Rotor's changes nothing (lease times are the backend's)."""

    async def main() -> None:
        w = World(backend_skew=skew)
        dynamic(w, ttl=10, max_ttl=40, overlap={"window": "2s"}, dynamic={"renewFraction": 0.5})
        await w.run()
        end = w.clock() + datetime.timedelta(seconds=130)
        samples = 0
        while w.clock() < end:
            wait = await w.step()
            assert wait is not None
            assert delivered_lease_live(w), w.status
            assert live_leases(w) == status_leases(w), (w.status.get("phase"), w.status)
            samples += 1
            w.clock.advance(min(wait, 1.0) or 0.001)
        assert w.status["rotations"] >= 4  # a new lease about every 30 s
        renewals = w.count("lease-renew")
        assert renewals >= 2 * w.status["rotations"], renewals  # each lease renewed at 5 s, 10 s, ...
        expires = times.parse(w.status["active"]["leaseExpires"])
        (lease,) = (w.backend.leases[i] for i in w.backend.live_leases())
        assert abs(expires - lease.expires) <= datetime.timedelta(seconds=1)  # on the backend's clock

    asyncio.run(main())


def test_a_lease_issued_but_never_recorded_dies_within_its_grace() -> None:
    """The operator dies between Vault issuing a lease and Rotor recording it: nobody holds that lease,
    so it ends with its token after the grace; the restarted operator issues and records another."""

    async def main() -> None:
        w = World()
        dynamic(w, ttl=3600, max_ttl=86400)
        await w.run("Publishing")
        w.backend.fail_next["kv-metadata-write"] = Unavailable("connection reset")  # the record, after the issue
        await w.step()
        (unrecorded,) = w.backend.live_leases()
        issued = w.clock()
        w.start_operator()
        await w.run()
        assert unrecorded not in lease_ids(w.backend.secrets[(MOUNT, PATH)].metadata).values()
        w.clock.now = max(w.clock(), issued + datetime.timedelta(seconds=ISSUE_GRACE_SECONDS))
        assert unrecorded not in w.backend.live_leases()
        assert live_leases(w) == status_leases(w) == {w.status["active"]["lease"]}
        assert w.count("dynamic-issue") == 2

    asyncio.run(main())


def test_deleting_the_policy_revokes_every_lease_it_holds_then_lets_it_go() -> None:
    async def main() -> None:
        w = World()
        dynamic(w, ttl=3600, max_ttl=86400)
        await w.run()
        await w.rotate_now()
        await w.run("Overlapping")
        assert len(w.backend.live_leases()) == 2
        await w.kube.delete_object(PLURAL, "a", "db")
        assert w.rotator.policy("a", "db").deleting  # type: ignore[union-attr]
        assert await w.step() is None
        assert w.backend.live_leases() == [] and lease_ids(w.backend.secrets[(MOUNT, PATH)].metadata) == {}
        assert w.kube.get(PLURAL, "a", "db") is None and w.deleted == ["db"]

    asyncio.run(main())


def test_a_policy_that_holds_no_lease_gets_no_finalizer() -> None:
    async def main() -> None:
        w = World()
        w.source()
        w.policy()
        await w.run()
        assert keys.CLEANUP_FINALIZER not in (w.kube.get(PLURAL, "a", "db") or {})["metadata"].get("finalizers", [])

    asyncio.run(main())


def test_a_lease_that_ran_out_while_rotor_was_down_is_replaced_at_once() -> None:
    async def main() -> None:
        w = World()
        dynamic(w, ttl=60, max_ttl=3600)
        await w.run()
        w.clock.advance(120)  # nobody renewed it
        w.start_operator()
        assert not delivered_lease_live(w)
        await w.step()
        assert w.status["phase"] == "Pending"
        await w.run()
        assert delivered_lease_live(w) and w.status["rotations"] == 2

    asyncio.run(main())


def test_a_lease_renewed_up_to_its_max_is_not_renewed_again() -> None:
    async def main() -> None:
        w = World()
        dynamic(w, ttl=100, max_ttl=150, overlap={"window": "1s"})
        await w.run()
        w.clock.advance(67)
        await w.step()  # renewed: until its max TTL (150 s), capped
        active = w.status["active"]
        assert active["leaseExpires"] == active["leaseMaxExpires"]
        renewals = w.count("lease-renew")
        w.clock.advance(30)
        await w.step()
        assert w.count("lease-renew") == renewals and w.status["rotations"] == 1

    asyncio.run(main())


def test_a_lease_recorded_before_renewals_were_is_renewed_once_and_then_on_schedule() -> None:
    async def main() -> None:
        w = World()
        dynamic(w, ttl=600, max_ttl=86400)
        await w.run()
        legacy = {k: v for k, v in w.status["active"].items() if k != "leaseTtl"}
        w.kube.put(PLURAL, {**(w.kube.get(PLURAL, "a", "db") or {}), "status": {**w.status, "active": legacy}})
        w.start_operator()
        before = w.count("lease-renew")
        await w.step()
        assert w.count("lease-renew") == before + 1 and w.status["active"]["leaseTtl"] == "600"
        assert await w.step() == pytest.approx(0.67 * 600, abs=1) and w.count("lease-renew") == before + 1

    asyncio.run(main())


def test_a_policy_deleted_while_rotor_was_down_releases_its_leases_once_its_source_is_known() -> None:
    """Rotor restarts and sees the policy only as a listing event with its deletion already requested
    (Kopf resumes no object being deleted), possibly before the SecretSource engine knows its source."""

    async def main() -> None:
        w = World()
        dynamic(w, ttl=3600, max_ttl=86400)
        await w.run()
        source = w.sources.sources.pop(KEY)
        w.rotator = Rotator(w.kube, {w.backend.provider: w.backend}, w.sources, clock=w.clock)  # nothing seen yet
        await w.kube.delete_object(PLURAL, "a", "db")
        assert w.rotator.policy("a", "db") is not None  # the deletion event made it known
        assert await w.step() == 5.0 and len(w.backend.live_leases()) == 1  # its source not seen yet: wait
        w.sources.sources[KEY] = source
        assert await w.step() is None
        assert w.backend.live_leases() == [] and w.kube.get(PLURAL, "a", "db") is None

        w2 = World()
        dynamic(w2, ttl=3600, max_ttl=86400)
        await w2.run()
        del w2.sources.sources[KEY]  # deleted for good
        await w2.kube.delete_object(PLURAL, "a", "db")
        assert await w2.step() == 5.0
        w2.clock.advance(60)
        assert await w2.step() is None and w2.kube.get(PLURAL, "a", "db") is None
        assert len(w2.backend.live_leases()) == 1  # not renewed any more: it ends at its TTL

    asyncio.run(main())
