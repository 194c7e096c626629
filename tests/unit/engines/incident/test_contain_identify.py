"""Contain and identify, on the fakes: the denylist, and the blast radius."""

from __future__ import annotations

import asyncio
import json

from rotor.engines.incident.steps.contain import contain
from rotor.planning import times
from rotor.planning.hashing import value_hmac
from rotor.planning.incident_denylist import Scope
from rotor.planning.leases import fingerprint

from .harness import HMAC_KEY, NS, World


def test_contain_denylists_the_digests_of_exactly_the_leaked_values() -> None:
    async def main() -> None:
        world = World()
        world.source({"password": "leaked-pw", "endpoint": "https://api.example"})
        key = world.incident({})
        assert await world.step() == 0.0  # contain ran and finished in one step
        status = world.stored()
        leaked = value_hmac(HMAC_KEY, b"leaked-pw")
        assert set(status["denylist"]) == {leaked, "sha256:delivered"}  # the delivered Secret's digest too
        assert value_hmac(HMAC_KEY, b"https://api.example") not in status["denylist"]
        uid = world.uid(key)
        assert world.sources.denylists[("incident", uid)] == frozenset(status["denylist"])
        # Scoped to the sources of this namespace reading this location, and kept in Rotor's own record.
        assert world.sources.scopes[("incident", uid)] == Scope(NS, f"vault:default/secret/{NS}/db")
        assert status["denylistScope"] == f"SecretSources of namespace {NS} reading vault:default/secret/{NS}/db"
        assert world.record()[uid] == {"incident": f"{NS}/leak", "digests": sorted(status["denylist"]),
                                       "scope": {"namespace": NS, "where": f"vault:default/secret/{NS}/db"},
                                       "since": world.record()[uid]["since"]}
        assert status["exposedVersion"] == "1" and status["source"] == "db" and status["timestamps"]["contained"]
        assert status["blastRadius"] == {"backend": "vault:default/secret/a/db", "versions": ["1"],
                                         "keys": ["password"], "targetSecret": f"{NS}/db-creds"}
        assert world.actions() == ["Reported", "Contained"]
        assert status["timeline"][0]["actor"] == "unverified: kubectl-create"  # no webhook record
        assert status["timeline"][1]["actor"] == "rotor (as a/app)"  # the SecretSource's own identity
        assert [e["reason"] for e in world.kube.events] == ["Contained"]
        assert world.ready()["reason"] == "InProgress"
        assert "leaked-pw" not in json.dumps(status) + json.dumps(world.kube.events)

    asyncio.run(main())


def test_contain_reads_as_the_identity_the_policy_names() -> None:
    async def main() -> None:
        world = World()
        world.source({"token": "t0-9f8e7d6c", "password": "not-rotated"})
        world.policy({"strategy": "versioned", "generator": {"key": "token"}})
        world.incident({})
        await world.step()
        status = world.stored()
        assert status["denylist"] == sorted({value_hmac(HMAC_KEY, b"t0-9f8e7d6c"), "sha256:delivered"})
        assert status["blastRadius"]["keys"] == ["token"]  # what the rotation replaces, nothing else
        assert status["timeline"][-1]["actor"] == "rotor (as a/rotator)"

    asyncio.run(main())


def test_a_secret_without_a_clear_credential_asks_for_spec_response_key() -> None:
    async def main() -> None:
        world = World()
        world.source({"a": "1", "b": "2"})
        world.incident({})
        assert await world.step() == 30.0
        ready = world.ready()
        assert ready["reason"] == "CannotFingerprint" and "spec.response.key" in ready["message"]
        assert "contained" not in world.stored()["timestamps"] and world.stored()["step"] == "contain"

    asyncio.run(main())


def test_a_destroyed_version_carries_over_the_digests_of_the_incident_that_revoked_it() -> None:
    async def main() -> None:
        world = World()
        world.source({"password": "leaked-5e6f7a8b"})
        first = world.incident({}, name="first", created="2026-01-01T00:00:00Z")
        await world.step(first)
        digests = world.stored(first)["denylist"]
        world.kube.put("leakincidents", {**(world.kube.get("leakincidents", NS, "first") or {}), "status": {
            **world.stored(first), "phase": "Prevented", "timestamps": {**world.stored(first)["timestamps"],
                                                                         "revoked": "2026-01-01T00:01:00Z"}}})
        world.backend.secrets[("secret", f"{NS}/db")].versions[1].destroyed = True
        second = world.incident({"version": "1"}, name="second", created="2026-01-01T00:05:00Z")
        await world.step(second)
        status = world.stored(second)
        assert status["denylist"] == digests
        assert world.sources.denylists[("incident", world.uid(second))] == frozenset(digests)
        contained = next(c for c in status["conditions"] if c["type"] == "Contained")
        assert contained["reason"] == "AlreadyDestroyed" and "carried over from LeakIncident first" in \
            contained["message"]

    asyncio.run(main())


def test_contain_keeps_a_database_login_in_memory_only() -> None:
    async def main() -> None:
        world = World()
        world.source({"username": "u", "password": "p", "host": "db", "port": "5432"})
        key = world.incident({})
        outcome = await contain(world.context())
        assert world.engine.view.logins[key] == {"username": "u", "password": "p", "host": "db", "port": "5432"}
        assert outcome.patch["blastRadius"]["keys"] == ["password"]
        world.engine.forget(key)
        assert key not in world.engine.view.logins

    asyncio.run(main())


def test_identify_finds_every_consumer_image_pull_secrets_included() -> None:
    async def main() -> None:
        world = World()
        world.source({"password": "leaked"})

        def reads(via: str, secret: str = "db-creds") -> dict[str, object]:
            container: dict[str, object] = {"name": "c"}
            spec: dict[str, object] = {"serviceAccountName": "app", "containers": [container]}
            if via == "env":
                container["env"] = [{"name": "P", "valueFrom": {"secretKeyRef": {"name": secret, "key": "k"}}}]
            elif via == "envFrom":
                container["envFrom"] = [{"secretRef": {"name": secret}}]
            elif via == "volume":
                spec["volumes"] = [{"name": "v", "secret": {"secretName": secret}}]
            elif via == "projected":
                spec["volumes"] = [{"name": "v", "projected": {"sources": [{"secret": {"name": secret}}]}}]
            else:
                spec["imagePullSecrets"] = [{"name": secret}]
            return spec

        world.workload("deployments", "api", reads("env"))
        world.workload("deployments", "unrelated", reads("env", "other"))
        world.workload("statefulsets", "worker", reads("envFrom"))
        world.workload("daemonsets", "agent", reads("volume"))
        world.workload("jobs", "migrate", reads("projected"))
        world.workload("cronjobs", "report", reads("imagePullSecrets"))
        world.workload("pods", "debug", reads("imagePullSecrets"))
        world.incident({})
        status = await world.until("identified")
        radius = status["blastRadius"]
        assert [(c["kind"], c["name"], c["via"]) for c in radius["consumers"]] == [
            ("CronJob", "report", ["imagePullSecrets"]), ("DaemonSet", "agent", ["volume"]),
            ("Deployment", "api", ["env"]), ("Job", "migrate", ["projected"]), ("Pod", "debug", ["imagePullSecrets"]),
            ("StatefulSet", "worker", ["envFrom"])]
        assert radius["serviceAccounts"] == [f"{NS}/app"] and radius["namespaces"] == [NS]
        assert radius["sourceIdentity"] == f"{NS}/app (Vault role reader)"
        # The window opens when the exposed version was written (the backend's clock), not at detection.
        created = world.backend.secrets[("secret", f"{NS}/db")].versions[1].created
        assert radius["exposureWindow"] == {"start": times.iso(created, millis=True), "end": None}
        assert radius["versions"] == ["1"]  # containment's part is kept
        assert status["order"] == "afterRotation"  # readers get an overlap
        assert world.actions()[-1] == "Identified"

    asyncio.run(main())


def test_identify_with_no_consumers_revokes_first_and_finds_the_leaked_lease() -> None:
    async def main() -> None:
        world = World()
        world.source({"username": "u", "password": "p", "host": "db"})
        world.policy({"strategy": "dynamic", "dynamic": {"role": "app"}})
        world.backend.secrets[("secret", f"{NS}/db")].metadata["rotor-lease-1"] = "database/creds/app/77"
        world.incident({})
        status = await world.until("identified")
        assert status["order"] == "immediate"
        assert status["blastRadius"]["leases"] == [fingerprint("database/creds/app/77")]
        assert status["blastRadius"]["rotationPolicy"] == "db"

    asyncio.run(main())
