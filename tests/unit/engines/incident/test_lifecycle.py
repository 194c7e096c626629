"""The incident's life around the steps, on the fakes: the view, opening, waiting, errors, unsupported
backends, resolving, aftercare, and resuming after a restart without repeating a step."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any, ClassVar

from rotor.api import keys
from rotor.api.capabilities import Capability
from rotor.observability.metrics import INCIDENTS_OPEN
from rotor.planning import incident_actors as actors
from rotor.planning import times
from rotor.planning.incident_denylist import Scope
from tests.fakes.backend import FakeBackend

from .harness import HMAC_KEY, NS, STATE, Sources, World


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


def test_resolving_lifts_the_denylist_and_records_who_as_unverified_without_the_webhook() -> None:
    async def main() -> None:
        world = World()
        world.source({"password": "pw-0f9e8d7c"})
        key = world.incident({"severity": "critical"})
        before = _gauge("critical")
        await world.until("contained")
        uid = world.uid(key)
        assert ("incident", uid) in world.sources.denylists and uid in world.record()
        body = world.kube.get("leakincidents", *key) or {}
        body["spec"]["resolved"] = True
        body["metadata"]["managedFields"].append({"manager": "sre-alice", "operation": "Update",
                                                  "time": "2026-12-01T10:00:00Z",
                                                  "fieldsV1": {"f:spec": {"f:resolved": {}}}})
        world.engine.upsert(body)
        assert await world.step() is None
        status = world.stored()
        # A field manager is whatever the client said: never presented as who did it.
        assert status["phase"] == "Resolved" and status["resolvedBy"] == "unverified: sre-alice"
        assert status["resolvedAt"] == "2026-12-01T10:00:00.000Z"
        ready = world.ready()
        assert ready["status"] == "True" and ready["reason"] == keys.RESOLVED
        assert ready["message"] == ("resolved by unverified: sre-alice before the runbook finished (step identify "
                                    "not done); the denylist is lifted")
        assert ("incident", uid) not in world.sources.denylists and uid not in world.record()
        assert world.sources.synced[-1] == (NS, "db")  # the source is checked again without it
        assert status["denylist"]  # the record of what was denylisted stays in the status
        assert _gauge("critical") == before - 1
        assert await world.step() is None  # resolved for good

    asyncio.run(main())


def test_reporter_and_resolver_come_from_the_webhooks_signed_record_of_the_authenticated_user() -> None:
    async def main() -> None:
        world = World()
        world.source({"password": "pw-0f9e8d7c"})
        created = times.iso(times.now())
        meta = {"namespace": NS, "name": "leak", "creationTimestamp": created}
        reported = actors.signed(HMAC_KEY, "reported", {**meta, "uid": ""}, "alice", times.now())
        key = world.incident({}, created=created, annotations={keys.REPORTED_BY: reported})
        await world.step()
        assert world.stored()["timeline"][0]["actor"] == "alice"  # not the field manager kubectl-create
        body = world.kube.get("leakincidents", *key) or {}
        resolved_at = times.now()
        body["spec"]["resolved"] = True
        body["metadata"]["annotations"][keys.RESOLVED_BY] = actors.signed(
            HMAC_KEY, "resolved", {**meta, "uid": world.uid(key)}, "bob", resolved_at)
        body["metadata"]["managedFields"].append({"manager": "alice-looking-manager", "operation": "Update",
                                                  "time": times.iso(resolved_at),
                                                  "fieldsV1": {"f:spec": {"f:resolved": {}}}})
        world.engine.upsert(body)
        await world.step()
        assert world.stored()["resolvedBy"] == "bob" and world.actions()[-1] == "Resolved"
        assert world.stored()["timeline"][-1]["actor"] == "bob"

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


def test_denylists_survive_deletion_of_the_incident_and_a_restart_until_resolved() -> None:
    async def main() -> None:
        world = World()
        world.source({"password": "pw-0f9e8d7c"})
        key = world.incident({})
        await world.until("contained")
        uid, digests = world.uid(key), frozenset(world.stored()["denylist"])
        # Deleting the object is not resolving the leak: the list stays enforced and recorded.
        secret = world.kube.get("secrets", *STATE) or {}
        record = json.loads(base64.b64decode(secret["data"]["denylists"]))
        record["entries"][uid]["since"] = "2026-01-01T00:00:00Z"  # recorded long ago
        secret["data"]["denylists"] = base64.b64encode(json.dumps(record).encode()).decode()
        world.kube.put("secrets", secret)
        restarted, recorded = Sources(), world.record()
        assert await world.new_engine(restarted).load_denylists([]) == 1  # with the incident still there
        assert world.record() == recorded and restarted.denylists == {("incident", uid): digests}
        world.kube.objects.pop(("leakincidents", NS, "leak"))
        world.engine.forget(key)
        assert world.sources.denylists[("incident", uid)] == digests and uid in world.record()
        # A restarted operator loads it from Rotor's record before the first sync, scoped as before, and
        # rewrites nothing (an incident's status never replaces what the record holds).
        fresh, recorded = Sources(), world.record()
        assert await world.new_engine(fresh).load_denylists([]) == 1
        assert world.record() == recorded
        assert fresh.denylists == {("incident", uid): digests}
        assert fresh.scopes[("incident", uid)] == Scope(NS, f"vault:default/secret/{NS}/db")

    asyncio.run(main())


def test_an_unresolved_incidents_status_list_is_adopted_into_the_record_at_start_up() -> None:
    async def main() -> None:
        world = World()
        world.source({"password": "pw-0f9e8d7c"})
        _finished(world)  # its list only in its status (before Rotor kept a record)
        world.kube.put("leakincidents", {"metadata": {"name": "empty", "namespace": NS}, "spec": {}})
        fresh = Sources()
        engine = world.new_engine(fresh)
        assert await engine.load_denylists([]) == 1
        uid = (world.kube.get("leakincidents", NS, "leak") or {})["metadata"]["uid"]
        assert fresh.denylists == {("incident", uid): frozenset({"sha256:x"})}
        assert world.record()[uid]["digests"] == ["sha256:x"]
        assert len(engine.scheduler) == 1  # the record is re-read every minute

    asyncio.run(main())


def test_a_restarted_engine_resumes_at_the_unfinished_step_without_repeating_one() -> None:
    async def main() -> None:
        world = World()
        world.source({"password": "pw-0f9e8d7c"})
        key = world.incident({})
        await world.until("contained")
        state = world.engine.incidents[key]
        await world.engine.journal.write(state, {"step": "identify"})  # persisted, then the operator died
        restarted = world.new_engine()
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
