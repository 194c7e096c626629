"""Rotate and revoke, on the fakes: the rotation request, destroyed versions, revoked leases, new
static-role passwords, and the check that the leaked credential no longer works."""

from __future__ import annotations

import asyncio

from rotor.api import keys
from rotor.backends.protocols import Actor
from rotor.planning.leases import fingerprint

from .harness import NS, World


def _reader(world: World) -> None:
    container = {"name": "c", "envFrom": [{"secretRef": {"name": "db-creds"}}]}
    world.workload("deployments", "api", {"containers": [container]})


def test_rotate_requests_the_policys_rotation_once_and_revoke_destroys_the_exposed_version() -> None:
    async def main() -> None:
        world = World()
        world.source({"token": "t0"})
        world.policy({"strategy": "versioned", "generator": {"key": "token"}})
        _reader(world)
        world.incident({})
        assert (await world.until("identified"))["order"] == "afterRotation"

        assert await world.step() == 1.0  # asked; the rotation runs in the rotation engine
        status = world.stored()
        token = status["rotation"]["token"]
        assert status["rotation"]["policy"] == "db" and not status["rotation"]["emergency"]
        assert token.startswith("leak-") and token.endswith("-leak")
        policy = world.kube.get("rotationpolicies", NS, "db") or {}
        assert policy["metadata"]["annotations"][keys.ROTATE_NOW] == token
        assert world.actions()[-1] == "RotationRequested"
        assert world.ready()["message"] == "rotate: RotationPolicy db rotating (requested)"
        await world.step()
        assert world.actions().count("RotationRequested") == 1  # persisted before it was made: asked once

        world.backend.put("secret", f"{NS}/db", {"token": "t1"})  # what the rotation writes
        world.rotation("db", "Overlapping", old="1", new="2")
        status = await world.until("rotated")
        assert status["rotation"]["newVersion"] == "2" and status["rotation"]["rotationId"] == "r1"
        assert (NS, "db") in world.sources.synced

        assert await world.step() == 1.0  # afterRotation: revoke waits for the rotation to complete
        assert "revoked" not in world.stored()["timestamps"]
        world.rotation("db", "Complete", old="1", new="2")
        status = await world.until("revoked")
        secret = world.backend.secrets[("secret", f"{NS}/db")]
        assert secret.versions[1].destroyed and not secret.versions[2].destroyed
        assert status["revocation"] == {"method": "version 1 destroyed", "confirmed": True, "check": (
            "version 1 no longer exists in Vault (a value outside Vault is not checkable)")}
        assert status["blastRadius"]["exposureWindow"]["end"]
        assert status["timeline"][-1]["actor"] == "rotor (as a/rotator)"

    asyncio.run(main())


def test_a_failed_rotation_holds_the_runbook_with_reason_rotation_failed() -> None:
    async def main() -> None:
        world = World()
        world.source({"token": "t0"})
        world.policy({"strategy": "versioned", "generator": {"key": "token"}})
        _reader(world)
        world.incident({})
        await world.until("identified")
        await world.step()
        world.rotation("db", "RolledBack", old="1")
        assert await world.step() == 10.0
        ready = world.ready()
        assert ready["reason"] == keys.ROTATION_FAILED and keys.ROTATE_NOW in ready["message"]

    asyncio.run(main())


def test_immediate_revoke_revokes_the_leaked_lease_before_any_rotation() -> None:
    async def main() -> None:
        world = World()
        world.source({"host": "db.example", "port": "5432"})
        world.policy({"strategy": "dynamic", "dynamic": {"role": "app"}})
        world.backend.add_lease_role("database", "app")
        spec = world.sources.sources[(NS, "db")].spec
        assert spec is not None
        handle = world.backend.bind(NS, spec, Actor("rotator"))
        lease = await handle.issue_lease("database", "app")
        world.backend.put("secret", f"{NS}/db", {**lease.data, "host": "db.example", "port": "5432"})
        await handle.set_custom_metadata({"rotor-lease-2": lease.lease_id})
        world.incident({"version": "2"})
        status = await world.until("revoked")
        assert status["order"] == "immediate" and "rotated" not in status["timestamps"]
        assert lease.lease_id not in world.backend.live_leases()
        assert "rotor-lease-2" not in world.backend.secrets[("secret", f"{NS}/db")].metadata
        assert status["revocation"]["method"] == f"lease {fingerprint(lease.lease_id)} revoked"
        assert status["revocation"]["confirmed"] is True and "refused" in status["revocation"]["check"]
        assert world.logins.tried == [("db.example", 5432, "postgres", lease.data["username"])]
        assert world.actions()[-1] == "Revoked" and "rotation" not in status  # the rotation comes next

    asyncio.run(main())


def test_a_leaked_login_the_database_still_accepts_is_reported_still_valid() -> None:
    async def main() -> None:
        world = World()
        world.source({"username": "u", "password": "p", "host": "db"})
        world.policy({"strategy": "dynamic", "dynamic": {"role": "app"}})
        world.logins.accepted.add(("u", "p"))
        world.incident({})
        status = await world.until("revoked")
        revoked = next(c for c in status["conditions"] if c["type"] == "Revoked")
        assert revoked["status"] == "False" and revoked["reason"] == keys.STILL_VALID
        assert status["revocation"]["confirmed"] is False
        assert any(e["reason"] == "Revoked" and e["type"] == "Warning" for e in world.kube.events)

    asyncio.run(main())


def test_revoke_gives_the_leaked_static_role_a_new_password() -> None:
    async def main() -> None:
        world = World()
        world.backend.add_static_role("database", "blue", "app_blue")
        world.backend.add_static_role("database", "green", "app_green")
        blue = world.backend.static_roles[("database", "blue")]
        world.source({"username": "app_blue", "password": blue.password, "host": "db"})
        world.policy({"strategy": "overlap", "overlap": {"staticRoles": ["blue", "green"], "window": "1m"}})
        world.incident({})
        status = await world.until("identified")
        assert status["blastRadius"]["staticRole"] == "blue" and status["order"] == "immediate"
        leaked, green = blue.password, world.backend.static_roles[("database", "green")].password
        status = await world.until("revoked")
        assert blue.password != leaked  # the backend set a new one; the other role is untouched
        assert world.backend.static_roles[("database", "green")].password == green
        assert [op for op, _ in world.backend.calls].count("static-rotate") == 1
        assert status["revocation"]["method"] == "static role blue given a new password"

    asyncio.run(main())
