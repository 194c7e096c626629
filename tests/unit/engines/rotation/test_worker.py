"""The rotation engine's state machine on the fakes: rollback, dry run, capability checks, errors."""

from __future__ import annotations

import asyncio
import datetime

import pytest

from rotor.api import keys
from rotor.api.capabilities import Capability
from rotor.planning import times
from tests.fakes.backend import FakeBackend

from .harness import MOUNT, PATH, World

HOUR = datetime.timedelta(hours=1)
ROLLED_BACK = ["Pending", "Publishing", "Propagating", "Verifying", "RollingBack", "RolledBack"]


def _strategies(w: World) -> dict[str, dict[str, object]]:
    w.backend.add_lease_role("database", "app", ttl=3600, max_ttl=86400)
    w.backend.add_static_role("database", "blue", "app_blue")
    w.backend.add_static_role("database", "green", "app_green")
    w.backend.put(MOUNT, PATH, {"username": "app_blue", "password": w.backend.static_roles[("database",
                                                                                            "blue")].password})
    return {"overlap": {},
            "versioned": {"strategy": "versioned"},
            "static": {"overlap": {"window": "10m", "staticRoles": ["blue", "green"]},
                       "generator": {"type": "backend"}},
            "dynamic": {"strategy": "dynamic", "dynamic": {"role": "app"}}}


@pytest.mark.parametrize("strategy", ["overlap", "versioned", "static", "dynamic"])
def test_readers_that_do_not_become_ready_roll_back_to_the_old_version(strategy: str) -> None:
    async def main() -> None:
        w = World()
        spec = _strategies(w)[strategy]
        old = w.kv()
        w.source()
        w.workload(ready=False)
        w.policy(**spec)
        await w.run("RolledBack")
        assert w.phases == ROLLED_BACK
        assert w.kv() == old and w.alive_versions() == [1, 2, 4]  # old data again as version 4; 3 destroyed
        assert w.sources.synced[-1] == ("a", "db")  # readers get it back at once
        assert w.ready["status"] == "False" and w.ready["reason"] == keys.ROLLED_BACK
        assert "consumers did not become Ready" in w.ready["message"]
        assert [(e["type"], e["reason"]) for e in w.kube.events] == [("Warning", keys.ROLLED_BACK)]
        status = w.status
        assert "lastRotationTime" not in status or status["lastRotationTime"] is None
        assert status["nextRotationTime"] == times.iso(w.clock() + HOUR)  # retried in an hour
        if strategy == "dynamic":
            assert w.backend.live_leases() == [] and w.backend.secrets[(MOUNT, PATH)].metadata == {}
        if strategy == "static":
            assert w.count("static-rotate", "/green") == 2  # published, then reset by the rollback
            assert w.count("static-rotate", "/blue") == 0  # readers' role untouched

    asyncio.run(main())


def test_a_rollout_the_controller_gave_up_on_rolls_back_at_once_but_an_older_failure_does_not() -> None:
    async def main() -> None:
        w = World()
        w.source()
        stale = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                 "lastTransitionTime": times.iso(w.clock() - HOUR)}
        w.workload(ready=False, conditions=[stale])
        w.policy()
        await w.run("Verifying")
        await w.step()
        assert w.status["phase"] == "Verifying"  # a failure from before this rotation: keep waiting
        w.workload(ready=False, conditions=[{**stale, "lastTransitionTime": times.iso(w.clock())}])
        await w.step()
        assert w.status["phase"] == "RollingBack"

    asyncio.run(main())


def test_propagation_that_never_happens_rolls_back_after_the_deadline_or_fails_without_rollback() -> None:
    async def main() -> None:
        for rollback, end in ((True, "RolledBack"), (False, "Failed")):
            w = World()
            w.source()
            w.sources.deliver = False
            w.policy(rollback=rollback, deadline="6m")
            await w.run(end)
            assert w.ready["reason"] == (keys.ROLLED_BACK if rollback else keys.ROTATION_FAILED)
            assert "did not reach the Secret" in w.ready["message"]
            if not rollback:
                assert w.kv()["password"] != "first"  # the new value stays; the old one stays valid too
                assert w.alive_versions() == [1, 2]

    asyncio.run(main())


@pytest.mark.parametrize("strategy", ["overlap", "versioned", "static", "dynamic"])
def test_dry_run_walks_every_phase_and_writes_nothing(strategy: str) -> None:
    async def main() -> None:
        w = World()
        spec = _strategies(w)[strategy]
        w.backend.calls.clear()
        w.source()
        w.policy(dryRun=True, **spec)
        await w.run()
        assert w.phases == ["Pending", "Publishing", "Propagating", "Verifying", "Overlapping", "Revoking",
                            "Complete"]
        assert w.writes() == []
        status = w.status
        assert "active" not in status and not status.get("rotations")
        assert w.ready["message"].endswith("(dry run: nothing changed)") and w.kube.events == []

    asyncio.run(main())


def test_a_backend_without_the_capabilities_gets_invalid_spec_naming_the_field() -> None:
    async def main() -> None:
        reader = FakeBackend(provider="kubernetes")
        reader.capabilities = frozenset({Capability.READ})  # type: ignore[misc]
        w = World(backend=reader)
        w.source({"provider": "kubernetes", "serviceAccountName": "app", "target": {"name": "db-creds"},
                  "kubernetes": {"namespace": "b", "name": "db"}})
        w.policy()
        assert await w.step() == 60.0
        assert w.ready["status"] == "False" and w.ready["reason"] == keys.INVALID_SPEC
        assert w.ready["message"].startswith("spec.strategy: the SecretSource's backend (provider kubernetes) "
                                             "cannot write a new version")
        assert "phase" not in w.status and w.backend.calls == []
        requests = len(w.kube.writes())
        assert await w.step() == 60.0 and len(w.kube.writes()) == requests  # no status write when nothing changed

    asyncio.run(main())


def test_a_dynamic_policy_on_a_backend_without_leases_names_spec_dynamic() -> None:
    async def main() -> None:
        backend = FakeBackend()
        backend.capabilities = frozenset(Capability) - {Capability.LEASES}  # type: ignore[misc]
        w = World(backend=backend)
        w.source()
        w.policy(strategy="dynamic", dynamic={"role": "app"})
        await w.step()
        assert w.ready["reason"] == keys.INVALID_SPEC and w.ready["message"].startswith("spec.dynamic:")

    asyncio.run(main())


def test_a_backend_down_mid_rotation_keeps_the_phase_and_retries() -> None:
    async def main() -> None:
        w = World()
        w.source()
        w.policy()
        await w.run("Publishing")
        w.backend.down = True
        assert await w.step() == 5.0
        assert w.status["phase"] == "Publishing"
        assert w.ready["reason"] == keys.BACKEND_UNAVAILABLE and w.ready["message"].startswith("Publishing: ")
        w.backend.down = False
        await w.run()
        assert w.count("kv-write") == 1

    asyncio.run(main())


def test_a_missing_or_unready_source_is_reported_and_nothing_starts() -> None:
    async def main() -> None:
        w = World()
        w.policy()
        assert await w.step() == 30
        assert w.ready["reason"] == keys.SOURCE_NOT_FOUND and "spec.secretSourceRef" in w.ready["message"]
        w.source(ready=False)
        assert await w.step() == 10
        assert "phase" not in w.status and w.backend.calls == []

    asyncio.run(main())


def test_a_source_deleted_mid_rotation_pauses_it() -> None:
    async def main() -> None:
        w = World()
        w.source()
        w.policy()
        await w.run("Publishing")
        del w.sources.sources[("a", "db")]
        assert await w.step() == 30.0
        assert w.status["phase"] == "Publishing" and w.ready["reason"] == keys.SOURCE_NOT_FOUND
        w.source()
        await w.run()

    asyncio.run(main())


def test_an_invalid_spec_is_reported_once() -> None:
    async def main() -> None:
        w = World()
        w.source()
        w.policy(schedule={"interval": "5m"})  # shorter than the overlap window
        assert await w.step() is None
        assert w.ready["reason"] == keys.INVALID_SPEC and "spec.overlap.window" in w.ready["message"]

    asyncio.run(main())
