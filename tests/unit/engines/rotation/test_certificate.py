"""strategy certificate on the fakes: the SecretSource's certificate renewed through the phases at its
renewAt, one certificate per rotation however often the operator restarts, the old serial revoked only
after the overlap (and not at all when told so or rolled back), dry run, and a source without pki."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest

from rotor.engines.rotation.strategies import certificate
from rotor.planning import times
from tests.fakes.backend import FakeBackend

from .harness import NAME, NS, Sources, World

PKI_SOURCE = {"provider": "vault", "serviceAccountName": "app", "target": {"name": "tls"},
              "vault": {"role": "app", "pki": {"role": "web", "commonName": "api.example.test", "ttl": "1h"}}}
CERTIFICATE = {"strategy": "certificate", "overlap": {"window": "2m"}, "schedule": {"interval": "2160h"}}


class IssuingSources(Sources):
    """The SecretSource engine as strategy certificate uses it: request_certificate issues a certificate
    (serial s<n>, an hour long, renewAt at 2/3) and writes it into the Secret at once, unless `deliver` is
    off; asking again for the same rotation issues nothing."""

    def __init__(self, backend: FakeBackend, clock: Any) -> None:
        super().__init__(backend)
        self.clock = clock
        self.issued: list[str] = []

    def issue(self, rotation: str | None = None) -> None:
        found = self.sources[(NS, NAME)]
        serial = f"s{len(self.issued) + 1}"
        self.issued.append(serial)
        now = self.clock()
        found.status["certificate"] = {"serial": serial, "notAfter": times.iso(now + datetime.timedelta(hours=1)),
                                       "renewAt": times.iso(now + datetime.timedelta(minutes=40)),
                                       **({"rotation": rotation} if rotation else {})}
        found.status["syncedVersion"] = serial

    def request_certificate(self, namespace: str, name: str, rotation_id: str) -> None:
        if self.deliver and self.sources[(namespace, name)].status["certificate"].get("rotation") != rotation_id:
            self.issue(rotation_id)

    def sync_now(self, namespace: str, name: str) -> None:
        self.synced.append((namespace, name))


def certificate_world(*, source: dict[str, Any] | None = None, **spec: Any) -> tuple[World, IssuingSources]:
    w = World()
    sources = IssuingSources(w.backend, w.clock)
    w.sources = sources
    w.rotator = w.start_operator()
    w.source(source or PKI_SOURCE)
    sources.issue()  # the source's first certificate, issued on its own
    w.policy(**{**CERTIFICATE, **spec})
    return w, sources


def test_renewal_waits_for_renew_at_then_publishes_overlaps_and_revokes_the_old_serial() -> None:
    async def main() -> None:
        w, sources = certificate_world()
        first_renew_at = times.parse_optional(sources.sources[(NS, NAME)].status["certificate"]["renewAt"])
        assert first_renew_at is not None
        await w.step()
        assert sources.issued == ["s1"] and w.status.get("phase") is None  # not due: the interval is 90 days
        assert w.status["nextRotationTime"] <= times.iso(first_renew_at)
        await w.run("Overlapping")
        assert first_renew_at - datetime.timedelta(minutes=5) <= w.clock() <= first_renew_at
        assert sources.issued == ["s1", "s2"] and w.backend.revoked_serials == set()  # the old one still valid
        await w.run()
        assert w.backend.revoked_serials == {"s1"}
        assert w.phases == ["Pending", "Publishing", "Propagating", "Verifying", "Overlapping", "Revoking",
                            "Complete"]
        active = w.status["active"]
        assert active["serial"] == "s2" and active["version"] == "s2" and active["notAfter"] and active["renewAt"]
        assert w.status["rotation"]["old"]["serial"] == "s1"
        assert "PRIVATE KEY" not in str(w.status)

    asyncio.run(main())


def test_a_publish_repeated_after_a_restart_adopts_the_certificate_issued_for_the_rotation() -> None:
    async def main() -> None:
        w, sources = certificate_world()
        await w.run("Publishing")
        await w.step()  # the source issued s2 for this rotation ...
        assert sources.issued == ["s1", "s2"]
        phase = w.status["phase"]
        w.start_operator()  # ... and the operator restarts before or after recording it
        await w.run()
        assert sources.issued == ["s1", "s2"] and w.status["active"]["serial"] == "s2", phase

    asyncio.run(main())


def test_a_crash_between_request_and_record_issues_once() -> None:
    async def main() -> None:
        w, sources = certificate_world()
        await w.run("Publishing")
        rotation = w.status["rotation"]["id"]
        sources.issue(rotation)  # issued for this rotation by the previous process, never recorded by the policy
        w.start_operator()
        await w.run()
        assert sources.issued == ["s1", "s2"] and w.status["rotation"]["new"]["serial"] == "s2"

    asyncio.run(main())


def test_revoke_after_overlap_off_leaves_the_old_serial_valid() -> None:
    async def main() -> None:
        w, _ = certificate_world(certificate={"revokeAfterOverlap": False})
        await w.run()
        assert w.backend.revoked_serials == set() and w.status["active"]["serial"] == "s2"

    asyncio.run(main())


def test_a_failed_rollout_rolls_back_without_revoking_anything() -> None:
    async def main() -> None:
        w, _ = certificate_world(verify={"timeout": "1m"}, deadline="10m")
        w.kube.put("deployments", {
            "metadata": {"namespace": NS, "name": "web", "generation": 1},
            "spec": {"replicas": 1, "template": {"spec": {"volumes": [{"name": "tls", "secret": {"secretName": "tls"}}],
                                                          "containers": [{"name": "web"}]}}},
            "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 0, "availableReplicas": 0}})
        await w.run("RolledBack")
        assert w.backend.revoked_serials == set()
        assert w.ready["status"] == "False" and "consumers" in w.ready["message"]

    asyncio.run(main())


def test_dry_run_asks_for_no_certificate_and_revokes_nothing() -> None:
    async def main() -> None:
        w, sources = certificate_world(dryRun=True)
        await w.run()
        assert sources.issued == ["s1"] and w.backend.revoked_serials == set()
        assert "dry run" in w.status["rotation"]["steps"][-1]["message"]

    asyncio.run(main())


def test_the_source_being_slow_keeps_the_policy_in_publishing_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(certificate, "PUBLISH_WAIT", 0.3)

    async def main() -> None:
        w, sources = certificate_world()
        sources.deliver = False
        await w.run("Publishing")
        await w.step()
        assert w.status["phase"] == "Publishing" and w.ready["status"] == "False"
        assert "has not issued this rotation's certificate yet" in w.ready["message"]
        sources.deliver = True
        await w.run()
        assert sources.issued == ["s1", "s2"]

    asyncio.run(main())


def test_a_source_without_pki_gives_ready_false_naming_the_field() -> None:
    async def main() -> None:
        w = World()
        w.sources = IssuingSources(w.backend, w.clock)
        w.rotator = w.start_operator()
        w.source()  # a KV source
        w.policy(**CERTIFICATE)
        await w.step()
        assert w.ready["status"] == "False" and w.ready["reason"] == "InvalidSpec"
        assert w.ready["message"].startswith("spec.secretSourceRef:") and "spec.vault.pki" in w.ready["message"]

    asyncio.run(main())
