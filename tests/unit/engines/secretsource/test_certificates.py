"""SecretSources with spec.vault.pki on the fakes: a certificate is issued once, written as a
kubernetes.io/tls Secret, left alone until renewAt, issued again when due; refusals name the field."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from cryptography import x509

from rotor.api import keys
from rotor.planning import times

from .harness import NS, Cluster


def pki_spec(**pki: Any) -> dict[str, Any]:
    return {"provider": "vault", "serviceAccountName": "app",
            "vault": {"role": "app", "pki": {"role": "web", "commonName": "api.example.test",
                                             "altNames": ["www.example.test"], "ipSans": ["10.0.0.7"],
                                             "ttl": "1h", **pki}}}


def started(**pki: Any) -> Cluster:
    cluster = Cluster(min_refresh=1.0)
    cluster.backend.add_pki_role("pki", "web", "example.test")
    cluster.add_source(spec=pki_spec(**pki))
    cluster.start()
    return cluster


def leaf(cluster: Cluster) -> x509.Certificate:
    data = cluster.data()
    assert data is not None
    return x509.load_pem_x509_certificates(data["tls.crt"])[0]


def test_a_certificate_is_issued_and_written_as_a_tls_secret_with_times_not_keys_in_status() -> None:
    cluster = started()
    delay = cluster.sync_now()
    secret = cluster.kube.secret(NS, "db")
    assert secret is not None and secret.type == "kubernetes.io/tls"
    assert set(secret.data) == {"tls.crt", "tls.key", "ca.crt"}
    cert = leaf(cluster)
    ca = x509.load_pem_x509_certificate(secret.data["ca.crt"])
    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["api.example.test", "www.example.test"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    status = cluster.status()
    certificate = status["certificate"]
    assert certificate["serial"] == status["syncedVersion"] == cluster.backend.pki_roles[("pki", "web")].issued[0]
    renew_at, not_after = times.parse(certificate["renewAt"]), times.parse(certificate["notAfter"])
    lifetime = 3600.0
    assert 0.61 * lifetime < lifetime - (not_after - renew_at).total_seconds() <= 2 / 3 * lifetime + 2
    assert delay is not None and 0.61 * lifetime < delay <= 2 / 3 * lifetime
    assert "PRIVATE KEY" not in str(status) and cluster.ready()["status"] == "True"


def test_before_renewal_nothing_is_issued_or_written_and_when_due_a_new_serial_arrives() -> None:
    cluster = started()
    cluster.sync_now()
    calls = len(cluster.backend.calls)
    cluster.kube.requests.clear()
    assert cluster.sync_now() is not None
    assert len(cluster.backend.calls) == calls and cluster.kube.requests == []
    first = cluster.status()["certificate"]["serial"]
    body = cluster.kube.get("secretsources", NS, "db")
    assert body is not None  # renewAt passed (as if time went by)
    past = times.iso(times.now() - datetime.timedelta(seconds=1))
    cluster.kube.put("secretsources", {**body, "status": {**body["status"],
                                                          "certificate": {**body["status"]["certificate"],
                                                                          "renewAt": past}}})
    cluster.sync_now()
    assert cluster.status()["certificate"]["serial"] != first
    assert leaf(cluster).serial_number != int(first.replace(":", ""), 16)


def test_an_edited_key_is_seen_from_the_digests_and_brings_a_new_certificate() -> None:
    cluster = started()
    cluster.sync_now()
    first = cluster.status()["certificate"]["serial"]
    summary = cluster.sync.secrets[(NS, "db")]
    assert summary.digests is not None
    cluster.sync.secrets[(NS, "db")] = dataclasses.replace(summary, digests={**summary.digests, "tls.key": "x"})
    cluster.sync_now()
    assert cluster.status()["certificate"]["serial"] != first


def test_a_deleted_secret_brings_a_new_certificate_at_once() -> None:
    cluster = started()
    cluster.sync_now()
    first = cluster.status()["certificate"]["serial"]
    cluster.sync.remember(NS, "db", None)  # as its DELETED event does
    cluster.sync_now()
    assert cluster.status()["certificate"]["serial"] != first and cluster.data() is not None


def test_a_name_the_role_does_not_allow_gives_ready_false_naming_the_field() -> None:
    cluster = started(altNames=["evil.example.com"])
    cluster.sync_now()
    ready = cluster.ready()
    assert (ready["status"], ready["reason"]) == ("False", keys.INVALID_SPEC)
    assert "spec.vault.pki.altNames" in ready["message"] and cluster.data() is None


def test_an_unknown_role_gives_ready_false_naming_the_field() -> None:
    cluster = started(role="nope")
    cluster.sync_now()
    ready = cluster.ready()
    assert ready["status"] == "False" and "spec.vault.pki.role" in ready["message"]


def test_a_ttl_over_the_roles_max_gives_ready_false_naming_the_field_and_the_capped_one_is_revoked() -> None:
    cluster = started(ttl="2h")  # the fake role's max TTL is 1h: it caps, as Vault does, without an error
    delay = cluster.sync_now()
    ready = cluster.ready()
    assert (ready["status"], ready["reason"]) == ("False", keys.INVALID_SPEC)
    assert ready["message"].startswith("spec.vault.pki.ttl: 2h is longer than PKI role web allows")
    issued = cluster.backend.pki_roles[("pki", "web")].issued
    assert cluster.data() is None and cluster.backend.revoked_serials == set(issued) and len(issued) == 1
    assert cluster.sync_now() == 3600.0 and len(issued) == 1  # not issued (and discarded) again and again
    assert delay is not None


def test_a_renewal_asked_for_by_a_rotation_policy_issues_once_and_makes_the_source_wait_for_the_backstop() -> None:
    cluster = started()
    cluster.sync_now()
    first = cluster.status()["certificate"]
    cluster.sync.certificate_requests[(NS, "db")] = "r1"  # the port's request_certificate, as the policy asks
    cluster.sync_asked()
    renewed = cluster.status()["certificate"]
    assert renewed["serial"] != first["serial"] and renewed["rotation"] == "r1"
    assert (NS, "db") not in cluster.sync.certificate_requests  # honoured
    cluster.sync.certificate_requests[(NS, "db")] = "r1"  # asked again after a crash: nothing new
    cluster.sync_asked()
    assert cluster.status()["certificate"]["serial"] == renewed["serial"]
    wait = cluster.sync_now()  # the policy renews at renewAt; the source itself only at its backstop
    not_after, renew_at = times.parse(renewed["notAfter"]), times.parse(renewed["renewAt"])
    backstop = renew_at + (not_after - renew_at) / 2
    assert wait is not None and abs(wait - (backstop - times.now()).total_seconds()) < 5


def test_a_leak_incidents_request_reissues_once_and_leaves_the_source_renewing_on_its_own() -> None:
    cluster = started()
    cluster.sync_now()
    first = cluster.status()["certificate"]
    cluster.sync.certificate_requests[(NS, "db")] = "leak-0123456789ab"
    cluster.sync_asked()
    renewed = cluster.status()["certificate"]
    assert renewed["serial"] != first["serial"] and "rotation" not in renewed  # no policy governs it now
    issued = len(cluster.backend.pki_roles[("pki", "web")].issued)
    cluster.sync_asked()
    assert len(cluster.backend.pki_roles[("pki", "web")].issued) == issued  # honoured once
