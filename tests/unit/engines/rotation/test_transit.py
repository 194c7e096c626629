"""strategy transit on the fakes: a Transit key rotated in place through the state machine, its
minimum versions raised only after the overlap, crash-adopt, dry run, and the capability check."""

from __future__ import annotations

import asyncio
import datetime

from rotor.api import keys
from rotor.api.capabilities import Capability
from rotor.backends.protocols import Unavailable
from tests.fakes.backend import FakeBackend
from tests.fakes.transit import FakeKey

from .harness import PLURAL, World

TRANSIT = {"strategy": "transit", "transit": {"key": "orders"}, "overlap": {"window": "10m"}}


def transit_world(backend: FakeBackend | None = None, **spec: object) -> tuple[World, FakeKey]:
    w = World(backend=backend)
    key = w.backend.add_transit_key("transit", "orders")
    key.clock = w.backend.clock  # versions are stamped on the backend's clock
    w.source()
    w.policy(**{**TRANSIT, **spec})
    return w, key


def test_a_rotation_makes_one_version_and_raises_the_minimums_only_after_the_overlap() -> None:
    async def main() -> None:
        w, key = transit_world()
        await w.run("Overlapping")
        assert (key.latest, key.min_decryption, key.min_encryption) == (2, 1, 0)  # the old version still works
        assert w.status["rotation"]["old"] == {"key": "transit/orders", "keyVersion": "1",
                                               "minDecryptionVersion": "1", "minEncryptionVersion": "0",
                                               "keyVersionCreated": "2026-03-01T12:00:00Z"}
        published = w.clock().isoformat().replace("+00:00", "Z")  # when version 2 was made
        entered = w.clock()
        await w.run()
        assert w.clock() - entered >= datetime.timedelta(minutes=10)
        assert (key.latest, key.min_decryption, key.min_encryption, key.rotations) == (2, 2, 2, 1)
        assert w.phases == ["Pending", "Publishing", "Propagating", "Verifying", "Overlapping", "Revoking",
                            "Complete"]
        assert w.status["active"] == {"key": "transit/orders", "keyVersion": "2", "minDecryptionVersion": "2",
                                      "minEncryptionVersion": "2", "keyVersionCreated": published}
        assert w.count("kv-write") == 0 and w.count("kv-metadata-write") == 0  # the source's secret is untouched

    asyncio.run(main())


def test_readers_need_nothing_delivered_so_no_rollout_is_awaited() -> None:
    async def main() -> None:
        w, key = transit_world()
        w.workload(ready=False)  # a reader of the source's Secret that never becomes Ready
        w.sources.deliver = False
        await w.run()
        assert key.rotations == 1 and w.status["rotations"] == 1

    asyncio.run(main())


def test_a_version_made_before_a_crash_is_adopted_not_rotated_again() -> None:
    async def main() -> None:
        w, key = transit_world()
        await w.run("Publishing")
        w.kube.fail("patch", f"{PLURAL}/status", 500)
        assert await w.step() == 5.0  # the status write failed: the same step again soon
        assert key.latest == 2 and w.status["phase"] == "Publishing"
        w.start_operator()
        await w.run()
        assert key.rotations == 1 and w.status["active"]["keyVersion"] == "2" and key.min_decryption == 2

    asyncio.run(main())


def test_a_revoke_done_before_a_crash_is_not_repeated_and_nothing_is_lowered() -> None:
    async def main() -> None:
        w, key = transit_world()
        await w.run("Revoking")
        w.kube.fail("patch", f"{PLURAL}/status", 500)
        assert await w.step() == 5.0  # the status write failed: the same step again soon
        assert key.min_decryption == 2
        w.start_operator()
        await w.run()
        assert w.count("transit-config") == 1 and (key.min_decryption, key.min_encryption) == (2, 2)

    asyncio.run(main())


def test_a_minimum_an_administrator_set_higher_stays_where_it_is() -> None:
    async def main() -> None:
        w, key = transit_world()
        await w.run("Overlapping")
        key.latest, key.min_decryption, key.min_encryption = 4, 3, 0  # rotated twice more by hand, 3 minimum
        await w.run()
        assert (key.min_decryption, key.min_encryption) == (3, 3)

    asyncio.run(main())


def test_a_backend_down_while_rotating_retries_the_same_phase() -> None:
    async def main() -> None:
        w, key = transit_world()
        await w.run("Publishing")
        w.backend.fail_next["transit-rotate"] = Unavailable("fake backend down")
        assert await w.step() == 5.0 and w.ready["reason"] == keys.BACKEND_UNAVAILABLE
        await w.run()
        assert key.rotations == 1 and key.min_decryption == 2

    asyncio.run(main())


def test_dry_run_walks_every_phase_and_touches_the_key_not() -> None:
    async def main() -> None:
        w, key = transit_world(dryRun=True)
        await w.run()
        assert (key.latest, key.min_decryption, key.rotations) == (1, 1, 0) and "active" not in w.status
        assert w.count("transit-rotate") == 0 and w.count("transit-config") == 0

    asyncio.run(main())


def test_an_unknown_key_says_so_and_names_the_field() -> None:
    async def main() -> None:
        w = World()
        w.source()
        w.policy(**{**TRANSIT, "transit": {"key": "missing"}})
        await w.step()
        assert w.ready["status"] == "False" and w.ready["reason"] == keys.NOT_FOUND
        assert "spec.transit.key" in w.ready["message"]

    asyncio.run(main())


def test_a_backend_without_transit_keys_gets_invalid_spec_naming_spec_transit() -> None:
    async def main() -> None:
        backend = FakeBackend()
        backend.capabilities = frozenset(Capability) - {Capability.KEY_VERSIONS}  # type: ignore[misc]
        w, _ = transit_world(backend)
        await w.step()
        assert w.ready["reason"] == keys.INVALID_SPEC and w.ready["message"].startswith("spec.transit:")
        assert "phase" not in w.status

    asyncio.run(main())
