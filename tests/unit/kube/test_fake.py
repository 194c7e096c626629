"""tests/fakes/kube.py stands in for rotor.kube.Kube: same methods, same signatures, same conflicts."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from rotor.kube import Kube, KubeError
from rotor.planning.sync import DesiredSecret, Owner
from tests.fakes.kube import FakeKube, matches

OWNER = Owner("ns", "db", "uid-src")


def public(cls: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(getattr(cls, name)) for name in dir(cls)
            if not name.startswith("_") and callable(getattr(cls, name))}


def test_every_public_method_of_kube_is_faked_with_the_same_signature() -> None:
    real, fake = public(Kube), public(FakeKube)
    for name, signature in real.items():
        assert name in fake, f"FakeKube lacks {name}"
        assert str(fake[name]) == str(signature), name
        assert inspect.iscoroutinefunction(getattr(FakeKube, name)) == inspect.iscoroutinefunction(getattr(Kube, name))


def desired(data: dict[str, bytes], **labels: str) -> DesiredSecret:
    return DesiredSecret("db", "Opaque", data, {"rotor.dev/secret-source": "db", **labels}, {}, owned=True)


def test_a_replace_on_a_stale_resource_version_conflicts() -> None:
    async def run() -> None:
        kube = FakeKube()
        first = await kube.write_secret("ns", "create", desired({"a": b"1"}), OWNER, None)
        assert first.owner_uids == ("uid-src",) and first.resource_version
        kube.put("secrets", {**kube.get("secrets", "ns", "db"), "data": {}})  # someone else writes
        with pytest.raises(KubeError) as err:
            await kube.write_secret("ns", "update", desired({"a": b"2"}), OWNER, first)
        assert err.value.conflict
        with pytest.raises(KubeError) as err:
            await kube.write_secret("ns", "create", desired({"a": b"2"}), OWNER, None)
        assert err.value.status == 409
        fresh = await kube.read_secret("ns", "db")
        written = await kube.write_secret("ns", "update", desired({"a": b"2"}, team="x"), OWNER, fresh)
        assert written.data == {"a": b"2"} and written.labels["team"] == "x"
        assert kube.writes() == [("create", "secrets", "db"), ("replace", "secrets", "db"),
                                 ("create", "secrets", "db"), ("replace", "secrets", "db")]

    asyncio.run(run())


def test_finalizers_hold_a_deletion_until_the_last_goes() -> None:
    async def run() -> None:
        kube = FakeKube()
        kube.put("secretsources", {"metadata": {"name": "db", "namespace": "ns"}, "spec": {}})
        rv = kube.get("secretsources", "ns", "db")["metadata"]["resourceVersion"]
        await kube.set_finalizers("secretsources", "ns", "db", ["rotor.dev/secret-cleanup"], rv)
        with pytest.raises(KubeError):  # rv moved on
            await kube.set_finalizers("secretsources", "ns", "db", [], rv)
        assert await kube.delete_object("secretsources", "ns", "db")
        held = kube.get("secretsources", "ns", "db")
        assert held is not None and held["metadata"]["deletionTimestamp"]
        await kube.set_finalizers("secretsources", "ns", "db", [], held["metadata"]["resourceVersion"])
        assert kube.get("secretsources", "ns", "db") is None
        assert not await kube.patch_status("secretsources", "ns", "db", {"x": 1}, missing_ok=True)

    asyncio.run(run())


def test_faults_status_merges_and_events() -> None:
    async def run() -> None:
        kube = FakeKube()
        kube.put("secretsources", {"metadata": {"name": "db", "namespace": "ns"}, "spec": {"a": 1}})
        await kube.patch_status("secretsources", "ns", "db", {"one": 1})
        await kube.patch_status("secretsources", "ns", "db", {"two": 2, "one": None})
        obj = kube.get("secretsources", "ns", "db")
        assert obj is not None and obj["status"] == {"two": 2} and obj["metadata"]["generation"] == 1
        kube.fail("get", "secrets", 403)
        with pytest.raises(KubeError) as err:
            await kube.read_secret("ns", "db")
        assert err.value.status == 403
        assert await kube.read_secret("ns", "db") is None  # once only
        await kube.post_event(kind="SecretSource", namespace="ns", name="db", uid="u", type="Normal",
                              reason="Synced", message="ok")
        assert [e["reason"] for e in kube.events] == ["Synced"]

    asyncio.run(run())


def test_label_selectors() -> None:
    labels = {"app.kubernetes.io/managed-by": "rotor", "a": "1"}
    assert matches("app.kubernetes.io/managed-by=rotor", labels)
    assert not matches("app.kubernetes.io/managed-by!=rotor", labels)
    assert matches("a,!b", labels) and not matches("b", labels) and matches("", labels)
