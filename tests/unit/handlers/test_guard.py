"""The handlers' catch-all: a handler that raises sets Ready=False (InternalError) on its object, naming
the object and the error's type, never the error's text; change handlers ask Kopf to retry."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import kopf
import pytest

from rotor.api import keys
from rotor.api.kinds import ROTATION_POLICY, SECRET_SOURCE
from rotor.handlers import incident, rotation
from rotor.handlers.guard import guarded
from tests.fakes.kube import FakeKube

BODY = {"metadata": {"namespace": "team", "name": "db", "uid": "u1", "generation": 3}, "spec": {}}


def _memo(kube: FakeKube) -> SimpleNamespace:
    return SimpleNamespace(runtime=SimpleNamespace(kube=kube))


def _ready(kube: FakeKube, plural: str) -> dict[str, Any]:
    conditions = kube.get(plural, "team", "db")["status"]["conditions"]
    found: dict[str, Any] = next(c for c in conditions if c["type"] == keys.READY)
    return found


def test_an_event_handler_that_raises_sets_internal_error_and_returns(caplog: pytest.LogCaptureFixture) -> None:
    kube = FakeKube()
    kube.put("secretsources", BODY)

    @guarded(SECRET_SOURCE)
    async def handler(event: Any, memo: Any, **_: Any) -> None:
        raise OverflowError("date value out of range: s3cret")

    with caplog.at_level(logging.ERROR, logger="rotor.handlers"):
        assert asyncio.run(handler(event={"type": "MODIFIED", "object": BODY}, memo=_memo(kube))) is None
    ready = _ready(kube, "secretsources")
    assert ready["status"] == "False" and ready["reason"] == keys.INTERNAL_ERROR
    assert "SecretSource team/db" in ready["message"] and "OverflowError" in ready["message"]
    assert "s3cret" not in str(kube.get("secretsources", "team", "db")) and "s3cret" not in str(kube.events)
    assert "failed unexpectedly on SecretSource team/db" in caplog.text


def test_a_change_handler_that_raises_asks_kopf_to_retry() -> None:
    kube = FakeKube()
    kube.put("rotationpolicies", BODY)

    @guarded(ROTATION_POLICY, retry=True)
    async def handler(body: Any, memo: Any, **_: Any) -> None:
        raise KeyError("x")

    with pytest.raises(kopf.TemporaryError) as retry:
        asyncio.run(handler(body=BODY, memo=_memo(kube)))
    assert retry.value.delay == 60 and "RotationPolicy team/db: KeyError" in str(retry.value)
    assert _ready(kube, "rotationpolicies")["reason"] == keys.INTERNAL_ERROR
    stored = kube.get("rotationpolicies", "team", "db")["metadata"]["generation"]
    assert _ready(kube, "rotationpolicies")["observedGeneration"] == stored


def test_kopfs_own_errors_and_results_pass_through() -> None:
    @guarded(SECRET_SOURCE)
    async def temporary(**_: Any) -> None:
        raise kopf.TemporaryError("later", delay=5)

    @guarded(SECRET_SOURCE)
    async def fine(**_: Any) -> str:
        return "done"

    with pytest.raises(kopf.TemporaryError):
        asyncio.run(temporary(body=BODY, memo=_memo(FakeKube())))
    assert asyncio.run(fine(body=BODY, memo=_memo(FakeKube()))) == "done"


def test_a_handler_about_no_rotor_object_only_logs_and_a_failed_report_is_swallowed() -> None:
    @guarded(None)
    async def secret_handler(**_: Any) -> None:
        raise RuntimeError("bug")

    asyncio.run(secret_handler(event={"object": {"metadata": {"namespace": "team", "name": "s"}}}, memo=None))

    class Broken(FakeKube):
        async def list_objects(self, group: str, version: str, plural: str, namespace: str | None = None, *,
                               page: int = 500) -> list[dict[str, Any]]:
            raise ConnectionError("the API server is away")

    @guarded(SECRET_SOURCE)
    async def handler(**_: Any) -> None:
        raise RuntimeError("bug")

    asyncio.run(handler(body=BODY, memo=_memo(Broken())))


def test_every_rotor_handler_is_guarded_and_keeps_its_kopf_id() -> None:
    # SecretSources' handler is not Kopf's (rotor.engines.sourcefeed calls it): tests/unit/handlers/test_secretsource.py
    handlers: list[Callable[..., Any]] = [rotation.policy_changed, rotation.policy_event, incident.incident_changed,
                                          incident.incident_event, incident.policy_event_for_incidents]
    for handler in handlers:
        wrapped = getattr(handler, "__wrapped__", None)
        assert wrapped is not None, f"{handler.__name__} has no catch-all"
        assert handler.__qualname__ == wrapped.__qualname__  # Kopf's handler id (persisted) is unchanged
