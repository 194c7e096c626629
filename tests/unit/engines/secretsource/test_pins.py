"""A staged rotation's pin (ports.VersionPins): the source delivers the pending AWS version until dropped."""

from __future__ import annotations

from collections.abc import Hashable
from typing import cast

from rotor.engines.ports import VersionPins
from rotor.engines.scheduler import RefreshScheduler
from rotor.engines.secretsource.port import SourcesPort
from rotor.engines.secretsource.worker import SecretSync
from rotor.kube import Kube
from tests.fakes.kube import FakeKube
from tests.unit.engines.secretsource.harness import HMAC_KEY, NS, vault_spec

PENDING = "0" * 8 + "-" + "1" * 27


class Scheduler:
    def __init__(self) -> None:
        self.scheduled: list[Hashable] = []

    def schedule(self, key: Hashable, delay: float) -> None:
        self.scheduled.append(key)


def body(spec: dict[str, object]) -> dict[str, object]:
    return {"metadata": {"namespace": NS, "name": "db", "uid": "u1", "generation": 1}, "spec": spec}


AWS = {"provider": "aws", "serviceAccountName": "app", "target": {},
       "aws": {"roleArn": "arn:aws:iam::123456789012:role/team-a-app", "secretsManager": {"secretId": "db"}}}


def test_a_pin_reads_that_version_instead_of_awscurrent_until_dropped() -> None:
    sync = SecretSync(cast(Kube, FakeKube()), {}, HMAC_KEY)
    scheduler = Scheduler()
    port = SourcesPort(sync, cast(RefreshScheduler, scheduler))
    assert isinstance(port, VersionPins)
    sync.upsert_source(body(AWS))
    state = sync.sources[(NS, "db")]
    assert state.spec is not None
    port.pin_version(NS, "db", PENDING)
    port.pin_version(NS, "db", PENDING)  # asked again at every step: one sync, when it changes
    assert scheduler.scheduled == [(NS, "db")] and state.urgent
    pinned = sync._pinned(state, state.spec).aws
    assert pinned is not None and pinned.secrets_manager is not None
    assert pinned.secrets_manager.version_id == PENDING and pinned.secrets_manager.version_stage is None
    port.pin_version(NS, "db", None)
    assert sync._pinned(state, state.spec) is state.spec and len(scheduler.scheduled) == 2
    port.pin_version(NS, "db", PENDING)
    sync.forget_source((NS, "db"))  # a deleted source holds no pin
    assert sync.version_pins == {}


def test_a_pin_leaves_other_providers_alone() -> None:
    sync = SecretSync(cast(Kube, FakeKube()), {}, HMAC_KEY)
    sync.upsert_source(body(vault_spec()))
    state = sync.sources[(NS, "db")]
    assert state.spec is not None
    sync.version_pins[(NS, "db")] = PENDING
    assert sync._pinned(state, state.spec) is state.spec
