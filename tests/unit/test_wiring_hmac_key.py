"""The HMAC key at start-up (rotor.wiring.hmac_key), on the in-memory Kubernetes layer: made once, never
silently replaced once digests made with it exist."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rotor.config import Settings
from rotor.kube import Kube
from rotor.wiring import HmacKeyLost, hmac_key
from tests.fakes.kube import FakeKube

SETTINGS = Settings(metrics_port=0)


def _key(kube: FakeKube, settings: Settings = SETTINGS) -> bytes:
    fake: Any = kube  # the fake stands in for Kube
    real: Kube = fake
    return asyncio.run(hmac_key(real, settings))


def test_a_key_is_made_once_and_then_kept() -> None:
    kube = FakeKube()
    first = _key(kube)
    assert len(first) == 32 and _key(kube) == first


def test_a_lost_key_that_was_used_stops_the_start_up_saying_how_to_restore_it() -> None:
    kube = FakeKube()
    _key(kube)
    kube.put("secretsources", {"metadata": {"name": "db", "namespace": "team-a"}, "spec": {},
                               "status": {"dataHmac": "sha256:x"}})
    kube.objects.pop(("secrets", "rotor-system", "rotor-hmac-key"))
    with pytest.raises(HmacKeyLost) as lost:
        _key(kube)
    assert "SecretSource team-a/db carries a digest" in str(lost.value)
    assert "Restore the Secret from your backup" in str(lost.value)
    assert kube.get("secrets", "rotor-system", "rotor-hmac-key") is None  # no new key
    assert len(_key(kube, Settings(metrics_port=0, hmac_key_allow_new=True))) == 32  # on purpose only


def test_a_lost_key_nothing_used_is_simply_made_again() -> None:
    kube = FakeKube()
    _key(kube)
    kube.put("secretsources", {"metadata": {"name": "new", "namespace": "team-a"}, "spec": {}})
    kube.objects.pop(("secrets", "rotor-system", "rotor-hmac-key"))
    assert len(_key(kube)) == 32
