"""A LeakIncident on a SecretSource that issues certificates (spec.vault.pki), on the fakes: the exposed
serial is recorded (no denylist: no certificate is delivered twice), a new certificate is asked for once
and at once, and the exposed serial is revoked."""

from __future__ import annotations

import asyncio

from rotor.api.secretsource import SecretSourceSpec
from rotor.planning.certificates import LEAK_REQUEST

from .harness import NS, Source, Sources, World

PKI = {"provider": "vault", "serviceAccountName": "app", "target": {"name": "db-creds"},
       "vault": {"role": "app", "pki": {"role": "web", "commonName": "api.example.test"}}}


class IssuingSources(Sources):
    """The SecretSource engine, issuing a certificate (serial s<n>) when asked (rotor.engines.ports
    CertificateRequests); `deliver` off: asked, not yet issued."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []
        self.deliver = True

    def request_certificate(self, namespace: str, name: str, rotation_id: str) -> None:
        self.requests.append(rotation_id)
        if self.deliver:
            source = self.sources[(namespace, name)]
            serial = f"s{int(source.status['certificate']['serial'][1:]) + 1}"
            source.status["certificate"] = {"serial": serial, "notAfter": "2030-01-01T00:00:00Z",
                                            "renewAt": "2029-01-01T00:00:00Z"}


def certificate_world() -> tuple[World, IssuingSources]:
    world = World()
    sources = IssuingSources()
    world.sources = sources
    world.engine = world.new_engine(sources)
    world.backend.add_pki_role("pki", "web", "example.test")
    sources.sources[(NS, "db")] = Source(NS, "db", SecretSourceSpec.model_validate(PKI), {
        "syncedVersion": "s1", "lastChangeTime": "2026-01-01T00:00:00Z",
        "certificate": {"serial": "s1", "notAfter": "2030-01-01T00:00:00Z", "renewAt": "2029-01-01T00:00:00Z"}})
    container = {"name": "c", "volumeMounts": [{"name": "tls", "mountPath": "/tls"}]}
    world.workload("deployments", "web", {"containers": [container],
                                          "volumes": [{"name": "tls", "secret": {"secretName": "db-creds"}}]})
    return world, sources


def test_a_leaked_certificate_is_reissued_once_and_its_serial_revoked() -> None:
    async def main() -> None:
        world, sources = certificate_world()
        sources.deliver = False
        world.incident({})
        status = await world.until("identified")
        assert status["exposedVersion"] == "s1" and status["denylist"] == []
        assert status["blastRadius"]["backend"] == "vault:default/pki/issue/web"
        assert [c["name"] for c in status["blastRadius"]["consumers"]] == ["web"]
        await world.step()
        await world.step()  # asked again while the source has not issued: nothing more is issued
        assert sources.requests and all(r.startswith(LEAK_REQUEST) for r in sources.requests)
        assert world.backend.revoked_serials == set()
        sources.deliver = True
        status = await world.until("revoked")
        assert sources.sources[(NS, "db")].status["certificate"]["serial"] == "s2"
        assert world.backend.revoked_serials == {"s1"}
        assert status["revocation"]["method"] == "certificate s1 revoked" and status["revocation"]["confirmed"]
        assert (await world.until("prevented"))["phase"] == "Prevented"  # the rest of the runbook runs too

    asyncio.run(main())


def _timeline(world: World, action: str) -> str:
    return next(str(e["message"]) for e in world.stored().get("timeline") or () if e["action"] == action)


def test_identify_names_the_workloads_mounting_the_tls_secret_and_audit_who_issued_from_the_role() -> None:
    async def main() -> None:
        world, _ = certificate_world()
        now = world.clock()
        world.backend.audit += [  # as Vault logs them (response entries): issuances and a fetch by serial
            {"time": now, "path": "pki/issue/web", "operation": "update", "serviceAccount": f"{NS}/app",
             "role": "app", "denied": False},
            {"time": now, "path": "pki/issue/web", "operation": "update", "serviceAccount": f"{NS}/intruder",
             "role": "app", "denied": False},
            {"time": now, "path": "pki/cert/s1", "operation": "read", "serviceAccount": None, "role": None,
             "displayName": "root", "denied": False},
            {"time": now, "path": "pki/issue/other", "operation": "update", "serviceAccount": f"{NS}/app",
             "role": "app", "denied": False},  # another role: not this certificate's
            {"time": now, "path": f"secret/data/{NS}/db", "serviceAccount": f"{NS}/app", "role": "app",
             "denied": False}]  # a KV read: not what a certificate leak is about
        world.incident({})
        status = await world.until("identified")
        identified = _timeline(world, "Identified")
        assert "certificate s1 (PKI role pki/web)" in identified
        assert "1 workload(s) mount its Secret db-creds: Deployment/web" in identified
        assert status["blastRadius"]["serviceAccounts"] == [f"{NS}/app", f"{NS}/default"]
        status = await world.until("audited")
        assert [(r["operation"], r["path"]) for r in status["auditReads"]] == [
            ("issue", "pki/issue/web"), ("issue", "pki/issue/web"), ("cert", "pki/cert/s1")]
        assert status["auditReadsTotal"] == 3
        assert status["auditNote"].startswith("3 request(s): issuances from pki/issue/web (and sign) and fetches "
                                              "of pki/cert/s1, between ")
        audited = _timeline(world, "Audited")
        assert f"by {NS}/app (issue 1), {NS}/intruder (issue 1), root (cert 1)" in audited
        assert "PRIVATE KEY" not in str(world.stored())

    asyncio.run(main())
