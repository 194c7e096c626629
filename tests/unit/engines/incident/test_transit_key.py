"""A LeakIncident on a Transit key, on the fakes: its SecretSource is rotated by a transit
RotationPolicy, so the response rotates the key and raises its minimums at once (no overlap), once
however often a step is re-entered; an exported key's Secret keeps only the new version."""

from __future__ import annotations

import asyncio
import json

from rotor.engines.incident.steps.transit import key_policy, revoke_key, rotate_key
from tests.fakes.transit import FakeKey

from .harness import NS, World


def key_world(*, export: bool = False, order: str = "afterRotation") -> tuple[World, FakeKey]:
    world = World()
    key = world.backend.add_transit_key("transit", "orders")
    transit: dict[str, object] = {"key": "orders"}
    if export:
        key.exportable = True
        transit["export"] = {"type": "encryption-key"}
        world.source({"transitKey": "orders", "key-v1": key.material(1), "key-vlatest": "1"})
    else:
        world.source({"transitKey": "orders"})
    world.policy({"strategy": "transit", "transit": transit})
    world.incident({"response": {"order": order}})
    return world, key


def test_a_key_leak_rotates_and_raises_the_minimums_at_once() -> None:
    async def main() -> None:
        world, key = key_world()
        key.latest = 3  # the key's versions, not the source's KV version (1), are what leaked
        status = await world.until("contained")
        assert status["exposedVersion"] == "3" and status["denylist"] == []
        assert status["blastRadius"]["backend"] == "vault:default/transit/keys/orders"
        status = await world.until("rotated")
        assert (key.latest, key.min_decryption, key.min_encryption, key.rotations) == (4, 4, 4, 1)
        assert "rotation" not in status  # no RotationPolicy rotation was asked for: no overlap
        status = await world.until("revoked")
        assert key.rotations == 1  # revoke found the response done
        assert status["revocation"]["confirmed"] is True and "minimum decryption version" in status["revocation"][
            "check"]
        assert not [op for op, _, *_ in world.backend.calls if op == "kv-write"]  # the key is used in place

    asyncio.run(main())


def test_a_response_re_entered_after_a_crash_rotates_once() -> None:
    async def main() -> None:
        world, key = key_world(order="immediate")
        await world.until("identified")
        ctx = world.context()
        policy = key_policy(ctx)
        assert policy is not None and policy.name == "db"
        await revoke_key(ctx, policy)
        key.min_decryption, key.min_encryption = 1, 0  # as if the crash came between rotate and config
        await revoke_key(ctx, policy)  # the step re-entered after a restart
        await rotate_key(ctx, policy)  # and the next step of the runbook
        assert (key.latest, key.rotations, key.min_decryption, key.min_encryption) == (2, 1, 2, 2)

    asyncio.run(main())


def test_an_exported_keys_secret_keeps_only_the_new_version_and_the_leaked_one_is_denylisted() -> None:
    async def main() -> None:
        world, key = key_world(export=True)
        status = await world.until("contained")
        assert len(status["denylist"]) == 1 and status["blastRadius"]["keys"] == ["key-v1"]
        await world.until("revoked")
        secret = world.backend.secrets[("secret", f"{NS}/db")]
        latest = secret.versions[secret.current].data
        assert dict(latest) == {"transitKey": "orders", "key-v2": key.material(2), "key-vlatest": "2"}
        assert all(v.destroyed for n, v in secret.versions.items() if n != secret.current)
        assert (key.min_decryption, key.rotations) == (2, 1) and (NS, "db") in world.sources.synced
        shown = json.dumps(world.stored())
        assert key.material(1) not in shown and key.material(2) not in shown

    asyncio.run(main())
