"""Audit and prevent, on the fakes; and the whole runbook through an emergency RotationPolicy."""

from __future__ import annotations

import asyncio
import json

import pytest

from rotor.api import keys
from rotor.backends.protocols import Actor, AuditLogUnreadable
from rotor.engines.incident.steps.audit import audit
from rotor.planning.hashing import value_hmac
from tests.fakes.backend import FakeSecret

from .harness import HMAC_KEY, NS, World


async def _to_audit(world: World) -> None:
    """A versioned policy, no readers (immediate): contain, identify, revoke and rotate done."""
    world.policy({"strategy": "versioned", "generator": {"key": "token"}})
    world.incident({"response": {"tightenInterval": "24h"}})
    await world.until("identified")
    await world.step()  # revoke: asks for the rotation
    world.backend.put("secret", f"{NS}/db", {"token": "t1"})
    world.rotation("db", "Overlapping", old="1", new="2")
    await world.until("rotated")


def test_audit_lists_who_read_the_secret_while_it_was_exposed() -> None:
    async def main() -> None:
        world = World()
        world.source({"token": "tok-0f9e8d7c"})
        spec = world.sources.sources[(NS, "db")].spec
        assert spec is not None
        await world.backend.bind(NS, spec, Actor("intruder")).read_version()  # a leaked token at work
        await _to_audit(world)
        status = await world.until("audited")
        readers = {r["serviceAccount"] for r in status["auditReads"]}
        assert {f"{NS}/intruder", f"{NS}/rotator"} <= readers
        assert status["auditReadsTotal"] == len(status["auditReads"])
        assert status["auditNote"].startswith(f"{len(status['auditReads'])} read(s) of secret/{NS}/db between ")
        assert status["auditNote"].endswith(" in fake audit log")
        assert world.actions()[-1] == "Audited"

        world.rotation("db", "Complete", old="1", new="2")
        status = await world.until("prevented")
        assert any(f"{NS}/intruder" in r for r in status["recommendations"])  # not a consumer: investigate
        assert not any(f"{NS}/rotator" in r for r in status["recommendations"])  # Rotor itself
        assert any("masking" in r and "build/42" in r for r in status["recommendations"])
        assert status["guardrails"][0] == ("denylist kept: 2 digest(s) of the leaked value stay refused (SecretSources "
                                           f"of namespace {NS} reading vault:default/secret/{NS}/db) until this "
                                           "incident is resolved")
        assert "rotation interval tightened: 720h -> 24h (RotationPolicy db)" in status["guardrails"]
        policy = world.kube.get("rotationpolicies", NS, "db") or {}
        assert policy["spec"]["schedule"] == {"interval": "24h"}
        ready = world.ready()
        assert ready["status"] == "True" and ready["reason"] == keys.PREVENTED
        assert status["phase"] == "Prevented" and status["step"] is None

    asyncio.run(main())


def test_no_audit_trail_is_said_in_the_status() -> None:
    async def main() -> None:
        world = World()
        world.backend.audit_trail = False
        world.source({"token": "t0"})
        await _to_audit(world)
        status = await world.until("audited")
        assert status["auditReads"] == [] and status["auditReadsTotal"] is None
        assert "no audit log configured for Vault connection 'default'" in status["auditNote"]
        audited = next(c for c in status["conditions"] if c["type"] == "Audited")
        assert audited["reason"] == keys.NO_AUDIT_LOG

    asyncio.run(main())


def test_an_unreadable_audit_log_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    async def unreadable(*_: object, **__: object) -> None:
        raise AuditLogUnreadable("cannot read the Vault audit log /var/log/vault.log: Permission denied")

    async def main() -> None:
        world = World()
        world.source({"token": "t0"})
        await _to_audit(world)
        monkeypatch.setattr(FakeSecret, "audit_reads", unreadable)
        assert await world.step() == 30.0
        ready = world.ready()
        assert ready["reason"] == keys.AUDIT_LOG_UNREADABLE and ready["message"].startswith("audit: cannot read")
        assert "audited" not in world.stored()["timestamps"]
        with pytest.raises(Exception, match="Permission denied"):
            await audit(world.context())

    asyncio.run(main())


def test_the_whole_runbook_through_an_emergency_policy_that_prevent_removes() -> None:
    async def main() -> None:
        world = World()
        world.source({"password": "pw-0f9e8d7c"})
        world.incident({"response": {"identity": {"serviceAccountName": "rotator", "role": "writer"},
                                     "emergencyWindow": "1s"}})
        status = await world.until("identified")
        assert status["order"] == "immediate"  # no RotationPolicy, no readers: revoke first

        assert await world.step() == 1.0  # revoke: a replacement must exist first; the emergency policy is made
        body = world.kube.get("rotationpolicies", NS, "leak-emergency")
        assert body is not None
        assert body["metadata"]["labels"] == {keys.LEAK_INCIDENT_LABEL: "leak"}
        assert body["metadata"]["ownerReferences"][0]["kind"] == "LeakIncident"
        assert body["spec"]["generator"]["key"] == "password" and body["spec"]["overlap"]["window"] == "1s"
        assert body["spec"]["identity"] == {"serviceAccountName": "rotator", "role": "writer"}
        assert world.stored()["rotation"]["emergency"] is True
        assert await world.step() == 1.0  # again before the rotation engine saw it: the 409 is no error
        assert world.ready()["message"] == "revoke: waiting for RotationPolicy leak-emergency"
        assert world.actions().count("RotationRequested") == 1

        world.adopt_emergency("leak-emergency")
        world.backend.put("secret", f"{NS}/db", {"password": "pw-new-1a2b"})
        world.rotation("leak-emergency", "Propagating", old="1", new="2")
        status = await world.until("revoked")  # published: the exposed version can go
        assert world.backend.secrets[("secret", f"{NS}/db")].versions[1].destroyed
        assert "rotated" not in status["timestamps"]
        world.rotation("leak-emergency", "Overlapping", old="1", new="2")
        await world.until("audited")
        assert await world.step() == 1.0  # prevent waits for the rotation to complete
        world.rotation("leak-emergency", "Complete", old="1", new="2")
        status = await world.until("prevented")
        assert world.kube.get("rotationpolicies", NS, "leak-emergency") is None
        assert "emergency RotationPolicy leak-emergency removed after its rotation" in status["guardrails"]
        assert any("add a RotationPolicy" in r for r in status["recommendations"])
        assert world.actions() == ["Reported", "Contained", "Identified", "RotationRequested", "Revoked", "Rotated",
                                   "Audited", "Prevented"]
        assert [e["reason"] for e in world.kube.events] == ["Contained", "Identified", "Revoked", "Rotated", "Audited",
                                                            "Prevented"]
        assert value_hmac(HMAC_KEY, b"pw-0f9e8d7c") in status["denylist"]
        assert value_hmac(HMAC_KEY, b"pw-new-1a2b") not in status["denylist"]
        everything = json.dumps(world.stored()) + json.dumps(world.kube.events)
        assert "pw-0f9e8d7c" not in everything and "pw-new-1a2b" not in everything

    asyncio.run(main())
