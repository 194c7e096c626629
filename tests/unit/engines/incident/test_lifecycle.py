"""The incident's life around the steps, on the fakes: the view, opening, waiting, errors, unsupported
backends, resolving, aftercare, and resuming after a restart without repeating a step."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from rotor.api import keys
from rotor.api.capabilities import Capability
from rotor.engines.incident.worker import Incidents
from rotor.observability.metrics import INCIDENTS_OPEN
from rotor.planning import times
from tests.fakes.backend import FakeBackend

from .harness import NS, World


def _gauge(severity: str) -> float:
    return float(INCIDENTS_OPEN.labels(severity)._value.get())


def test_an_invalid_spec_is_reported_and_not_retried() -> None:
    async def main() -> None:
        world = World()
        body = world.kube.put("leakincidents", {"metadata": {"name": "leak", "namespace": NS, "uid": "u"},
                                                "spec": {"exposure": {"where": "nowhere"}}})
        world.engine.upsert(body)
        assert await world.step() is None
        ready = world.ready()
        assert ready["reason"] == keys.INVALID_SPEC and "spec.exposure.where" in ready["message"]

    asyncio.run(main())


def test_an_unknown_source_is_reported_and_rechecked() -> None:
    async def main() -> None:
        world = World()
        world.incident({"secretSourceRef": None, "targetSecretRef": {"name": "missing"}})
        assert await world.step() == 15.0
        status = world.stored()
        assert status["phase"] == "Open" and world.actions() == ["Reported"]
        assert status["timeline"][0]["message"] == "leak of ? in ci-logs: build/42 (severity high)"
        ready = world.ready()
        assert ready["reason"] == keys.SOURCE_NOT_FOUND and "no SecretSource delivers Secret missing" in \
            ready["message"]

    asyncio.run(main())


class ReadOnly(FakeBackend):
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.READ})


def test_a_backend_without_versions_stops_the_runbook_as_unsupported() -> None:
    async def main() -> None:
        world = World(ReadOnly(provider="kubernetes"))
        world.source({"password": "p"}, provider="kubernetes")
        world.incident({})
        assert await world.step() == 300.0
        ready = world.ready()
        assert ready["reason"] == keys.UNSUPPORTED
        assert ready["message"].startswith("SecretSource db: spec.secretSourceRef: the SecretSource's backend "
                                           "(provider kubernetes) cannot list, read or destroy versions")
        assert world.backend.calls == []  # nothing was asked of it

    asyncio.run(main())


def test_backend_and_kubernetes_errors_are_conditions_and_retried() -> None:
    async def main() -> None:
        world = World()
        world.source({"password": "p"})
        world.incident({})
        world.backend.down = True
        assert await world.step() == 5.0
        ready = world.ready()
        assert ready["reason"] == keys.BACKEND_UNAVAILABLE and ready["message"].startswith("contain: ")
        world.backend.down = False
        await world.until("contained")
        world.kube.fail("list", "deployments", 403, "forbidden")
        assert await world.step() == 5.0
        ready = world.ready()
        assert ready["reason"] == "KubernetesForbidden" and ready["message"] == "identify: 403 forbidden"
        await world.until("identified")

    asyncio.run(main())


def test_incidents_on_one_secret_go_one_at_a_time_and_the_next_is_woken() -> None:
    async def main() -> None:
        world = World()
        world.source({"password": "p"})
        first = world.incident({}, name="first", created="2026-01-01T00:00:00Z")
        second = world.incident({}, name="second", created="2026-01-01T00:00:05Z")
        await world.until("contained", first)
        assert await world.step(second) == 5.0
        status = world.stored(second)
        assert status["phase"] == "Waiting" and status["waitingFor"] == "first"
        assert world.ready(second)["reason"] == keys.WAITING and "first" in world.ready(second)["message"]
        assert world.engine.for_source(NS, "db") == [first, second]

        world.engine.upsert({**(world.kube.get("leakincidents", *first) or {}), "spec": {
            **(world.kube.get("leakincidents", *first) or {})["spec"], "resolved": True}})
        assert len(world.engine.scheduler) == 0
        assert await world.step(first) is None
        assert world.stored(first)["phase"] == "Resolved"
        assert len(world.engine.scheduler) == 2  # its peers (itself included) are woken
        await world.until("contained", second)
        assert world.stored(second).get("waitingFor") is None  # cleared

    asyncio.run(main())


def test_resolving_records_who_and_when_and_keeps_the_denylist() -> None:
    async def main() -> None:
        world = World()
        world.source({"password": "p"})
        key = world.incident({"severity": "critical"})
        before = _gauge("critical")
        await world.until("contained")
        body = world.kube.get("leakincidents", *key) or {}
        body["spec"]["resolved"] = True
        body["metadata"]["managedFields"].append({"manager": "sre-alice", "operation": "Update",
                                                  "time": "2026-12-01T10:00:00Z",
                                                  "fieldsV1": {"f:spec": {"f:resolved": {}}}})
        world.engine.upsert(body)
        assert await world.step() is None
        status = world.stored()
        assert status["phase"] == "Resolved" and status["resolvedBy"] == "sre-alice"
        assert status["resolvedAt"] == "2026-12-01T10:00:00.000Z"
        ready = world.ready()
        assert ready["status"] == "True" and ready["reason"] == keys.RESOLVED
        assert ready["message"] == ("resolved by sre-alice before the runbook finished (step identify not done); "
                                    "the denylist stays")
        assert ("incident", *key) in world.sources.denylists
        assert _gauge("critical") == before - 1
        assert await world.step() is None  # resolved for good

    asyncio.run(main())


def _finished(world: World) -> None:
    stamps = {s: "2026-01-01T00:00:01.000Z" for s in ("detected", "contained", "identified", "rotated", "revoked",
                                                      "audited", "prevented")}
    body = world.kube.put("leakincidents", {
        "metadata": {"name": "leak", "namespace": NS, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"secretSourceRef": {"name": "db"}, "exposure": {"where": "git"}},
        "status": {"phase": "Prevented", "source": "db", "exposedVersion": "1", "order": "immediate",
                   "timestamps": stamps, "denylist": ["sha256:x"]}})
    world.engine.upsert(body)


def test_after_the_runbook_a_refused_leaked_value_is_reported_once() -> None:
    async def main() -> None:
        world = World()
        world.source({"password": "p"})
        _finished(world)
        source = world.sources.sources[(NS, "db")]
        source.status["conditions"] = [{"type": "Ready", "status": "False", "reason": keys.DENYLISTED}]
        assert await world.step() == 60.0
        assert await world.step() == 60.0
        refused = next(c for c in world.stored()["conditions"] if c["type"] == keys.LEAKED_VALUE_REFUSED)
        assert refused["status"] == "True" and refused["reason"] == keys.DENYLISTED
        assert world.actions() == [keys.LEAKED_VALUE_REFUSED]
        assert [(e["type"], e["reason"]) for e in world.kube.events] == [("Warning", keys.LEAKED_VALUE_REFUSED)]
        source.status["conditions"] = [{"type": "Ready", "status": "True", "reason": keys.SYNCED}]
        await world.step()
        refused = next(c for c in world.stored()["conditions"] if c["type"] == keys.LEAKED_VALUE_REFUSED)
        assert refused["status"] == "False" and refused["reason"] == keys.DELIVERING

    asyncio.run(main())


def test_denylists_are_loaded_before_the_first_sync_and_lifted_on_deletion() -> None:
    async def main() -> None:
        world = World()
        world.source({"password": "p"})
        _finished(world)
        world.kube.put("leakincidents", {"metadata": {"name": "empty", "namespace": NS}, "spec": {}})
        fresh = World()
        fresh.kube = world.kube
        engine = Incidents(world.kube, {"vault": world.backend}, fresh.sources, fresh.policies, fresh.logins)
        assert await engine.load_denylists([]) == 1
        assert fresh.sources.denylists == {("incident", NS, "leak"): frozenset({"sha256:x"})}
        world.engine.forget((NS, "leak"))
        assert ("incident", NS, "leak") not in world.sources.denylists
        assert world.sources.synced == [(NS, "db")]  # the source is checked again without it

    asyncio.run(main())


def test_a_restarted_engine_resumes_at_the_unfinished_step_without_repeating_one() -> None:
    async def main() -> None:
        world = World()
        world.source({"password": "p"})
        key = world.incident({})
        await world.until("contained")
        state = world.engine.incidents[key]
        await world.engine.journal.write(state, {"step": "identify"})  # persisted, then the operator died
        restarted = Incidents(world.kube, {"vault": world.backend}, world.sources, world.policies, world.logins)
        body = world.kube.get("leakincidents", *key)
        assert body is not None
        restarted.upsert(body)
        assert restarted.incidents[key].status["step"] == "identify"
        await restarted.step(key)
        status: dict[str, Any] = (world.kube.get("leakincidents", *key) or {})["status"]
        assert status["timestamps"]["identified"] and status["timestamps"]["contained"] == \
            world.stored()["timestamps"]["contained"]
        assert [e["reason"] for e in world.kube.events] == ["Contained", "Identified"]

    asyncio.run(main())


def test_a_known_incidents_status_is_never_replaced_by_an_older_watch_event() -> None:
    world = World()
    key = world.incident({})
    world.engine.incidents[key].status["phase"] = "Contained"
    stale = world.kube.get("leakincidents", *key) or {}
    world.engine.upsert({**stale, "status": {"phase": "Open"}})
    assert world.engine.incidents[key].status["phase"] == "Contained"
    world.engine.observe({**stale, "metadata": {**stale["metadata"], "managedFields": []}})
    assert world.engine.incidents[key].managed_fields == []
    assert times.parse(world.engine.incidents[key].created)
