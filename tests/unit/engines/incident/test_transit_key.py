"""A LeakIncident on a Transit key, on the fakes: its SecretSource is rotated by a transit
RotationPolicy, so the response rotates the key and raises its minimums at once (no overlap), once
however often a step is re-entered; an exported key's Secret keeps only the new version."""

from __future__ import annotations

import asyncio
import json

from rotor.engines.incident.steps.transit import key_policy, revoke_key, rotate_key
from rotor.planning import times
from tests.fakes.transit import FakeKey

from .harness import NS, World


def key_world(*, export: bool = False, order: str | None = "afterRotation") -> tuple[World, FakeKey]:
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
    world.incident({"response": {"order": order}} if order else {})
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


def _timeline(world: World, action: str) -> str:
    return next(str(e["message"]) for e in world.stored().get("timeline") or () if e["action"] == action)


def _use(world: World, path: str, account: str | None, version: int | None = None, **extra: object) -> None:
    """One request in the fake audit log, as Vault logs its response entry."""
    row: dict[str, object] = {"time": world.clock(), "path": path, "operation": "update", "serviceAccount": account,
                              "role": "r", "denied": False, **extra}
    if version is not None:
        row["keyVersion"] = version
    world.backend.audit.append(row)


def test_a_key_used_in_place_reaches_no_workload_and_audit_lists_who_used_it_with_which_versions() -> None:
    async def main() -> None:
        world, key = key_world(order=None)  # no workload holds the key: nothing to wait for
        key.latest, key.clock = 2, world.clock  # version 2 made on the backend's clock, as the audit log's
        container = {"name": "c", "envFrom": [{"secretRef": {"name": "db-creds"}}]}
        world.workload("deployments", "api", {"containers": [container]})  # reads the key's name only
        await world.until("contained")
        world.clock.advance(1)
        _use(world, "transit/sign/orders/sha2-256", f"{NS}/app", 2)
        _use(world, "transit/encrypt/orders", f"{NS}/app", 2)
        _use(world, "transit/decrypt/orders", f"{NS}/worker")
        _use(world, "transit/export/encryption-key/orders/2", None, 2, displayName="root", operation="read")
        _use(world, "transit/encrypt/orders-old", f"{NS}/app", 1)  # another key
        _use(world, "transit/keys/orders/rotate", f"{NS}/rotator")  # managing the key, not using it
        status = await world.until("identified")
        assert status["blastRadius"]["consumers"] == [] and status["blastRadius"]["rotationPolicy"] == "db"
        assert status["order"] == "immediate"
        assert status["blastRadius"]["exposureWindow"]["start"] == times.iso(key.created[2], millis=True)
        identified = _timeline(world, "Identified")
        assert "Transit key transit/orders version 2 used in place" in identified and "no workload" in identified
        status = await world.until("audited")
        assert {(r["operation"], r["serviceAccount"] or r["displayName"], r.get("keyVersion"))
                for r in status["auditReads"]} == {("sign", f"{NS}/app", 2), ("encrypt", f"{NS}/app", 2),
                                                   ("decrypt", f"{NS}/worker", None), ("export", "root", 2)}
        audited = _timeline(world, "Audited")
        assert status["auditNote"].startswith("4 request(s): uses, exports and backups of Transit key transit/orders")
        assert f"by {NS}/app (encrypt 1, sign 1), {NS}/worker (decrypt 1), root (export 1)" in audited
        assert audited.endswith("key version(s) used: 2")

    asyncio.run(main())


def test_an_exported_keys_blast_radius_is_the_workloads_reading_its_secret() -> None:
    async def main() -> None:
        world, _ = key_world(export=True, order=None)
        container = {"name": "c", "volumeMounts": [{"name": "k", "mountPath": "/k"}]}
        world.workload("deployments", "signer", {"containers": [container],
                                                 "volumes": [{"name": "k", "secret": {"secretName": "db-creds"}}]})
        status = await world.until("identified")
        assert [c["name"] for c in status["blastRadius"]["consumers"]] == ["signer"]
        assert status["order"] == "afterRotation"
        identified = _timeline(world, "Identified")
        assert "exported to Secret db-creds (exposed material in key-v1): 1 consumer(s): Deployment/signer" \
            in identified

    asyncio.run(main())
