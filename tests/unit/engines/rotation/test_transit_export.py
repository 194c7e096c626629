"""strategy transit with spec.transit.export on the fakes: an exportable key's versions in use are
delivered into the SecretSource's secret with overlap (old and new), the old one leaves only after the
overlap with the minimums raised; crash-adopt, rollback and dry run; status never holds key material."""

from __future__ import annotations

import asyncio
import json

from rotor.api import keys
from tests.fakes.transit import FakeKey

from .harness import PLURAL, World

EXPORT = {"strategy": "transit", "transit": {"key": "orders", "export": {"type": "signing-key"}},
          "overlap": {"window": "10m"}}


def export_world(*, exportable: bool = True, **spec: object) -> tuple[World, FakeKey]:
    w = World(data={"transitKey": "orders"})
    key = w.backend.add_transit_key("transit", "orders")
    key.exportable = exportable
    w.source()
    w.policy(**{**EXPORT, **spec})
    return w, key


def test_the_new_version_is_delivered_beside_the_old_which_leaves_only_after_the_overlap() -> None:
    async def main() -> None:
        w, key = export_world()
        await w.run("Overlapping")
        assert w.kv() == {"transitKey": "orders", "key-v1": key.material(1), "key-v2": key.material(2),
                          "key-vlatest": "2"}  # readers hold both; the app's own setting is kept
        assert w.sources.source("a", "db").status["syncedVersion"] == "2"  # type: ignore[union-attr]
        assert (key.min_decryption, key.min_encryption) == (1, 0)
        new = w.status["rotation"]["new"]
        assert (new["keyVersion"], new["deliveredVersions"], new["version"]) == ("2", "1,2", "2")
        await w.run()
        assert w.kv() == {"transitKey": "orders", "key-v2": key.material(2), "key-vlatest": "2"}
        assert (key.latest, key.min_decryption, key.min_encryption, key.rotations) == (2, 2, 2, 1)
        assert w.alive_versions() == [3]  # the KV versions holding version 1 are destroyed
        assert w.sources.source("a", "db").status["syncedVersion"] == "3"  # type: ignore[union-attr]
        shown = json.dumps(w.status)
        assert key.material(1) not in shown and key.material(2) not in shown

    asyncio.run(main())


def test_a_delivery_done_before_a_crash_is_adopted_neither_rotated_nor_written_again() -> None:
    async def main() -> None:
        w, key = export_world()
        await w.run("Publishing")
        w.kube.fail("patch", f"{PLURAL}/status", 500)
        assert await w.step() == 5.0  # rotated and delivered; the status write failed
        assert key.latest == 2 and w.count("kv-write") == 1
        w.start_operator()
        await w.run()
        assert key.rotations == 1 and w.count("kv-write") == 2  # the delivery, then the revoke's
        assert w.status["rotation"]["new"]["version"] == "2" and w.status["rotations"] == 1

    asyncio.run(main())


def test_a_revoke_done_before_a_crash_raises_nothing_and_writes_nothing_again() -> None:
    async def main() -> None:
        w, key = export_world()
        await w.run("Revoking")
        w.kube.fail("patch", f"{PLURAL}/status", 500)
        assert await w.step() == 5.0
        writes, configs = w.count("kv-write"), w.count("transit-config")
        w.start_operator()
        await w.run()
        assert (w.count("kv-write"), w.count("transit-config")) == (writes, configs) == (2, 1)
        assert w.kv() == {"transitKey": "orders", "key-v2": key.material(2), "key-vlatest": "2"}

    asyncio.run(main())


def test_readers_that_fail_on_the_new_version_get_the_old_ones_back() -> None:
    async def main() -> None:
        w, key = export_world()
        w.workload(ready=False)  # never Ready on the new Secret
        await w.run("RolledBack")
        assert w.kv() == {"transitKey": "orders", "key-v1": key.material(1), "key-vlatest": "1"}
        assert 2 not in w.alive_versions()  # the KV version holding the new material is destroyed
        assert (key.latest, key.min_decryption, key.min_encryption) == (2, 1, 0)  # nothing raised
        assert w.ready["reason"] == keys.ROLLED_BACK

    asyncio.run(main())


def test_dry_run_exports_and_writes_nothing() -> None:
    async def main() -> None:
        w, key = export_world(dryRun=True)
        await w.run()
        assert key.exports == 0 and w.count("kv-write") == 0 and key.rotations == 0

    asyncio.run(main())


def test_a_key_that_is_not_exportable_gets_ready_false_naming_the_field() -> None:
    async def main() -> None:
        w, key = export_world(exportable=False)
        for _ in range(5):
            await w.step()
        assert w.ready["status"] == "False" and w.ready["reason"] == keys.INVALID_SPEC
        assert w.ready["message"].startswith("start: spec.transit.export:") and "exportable" in w.ready["message"]
        assert "phase" not in w.status and key.rotations == 0 and w.count("kv-write") == 0  # nothing started

    asyncio.run(main())


def test_a_rollback_after_a_leak_retired_the_old_versions_keeps_the_ones_still_in_use() -> None:
    async def main() -> None:
        w, key = export_world()
        w.workload(ready=False)
        await w.run("Verifying")
        key.latest, key.min_decryption, key.min_encryption = 3, 3, 3  # a LeakIncident rotated and raised at once
        await w.run("RolledBack")
        assert w.kv() == {"transitKey": "orders", "key-v3": key.material(3), "key-vlatest": "3"}

    asyncio.run(main())
