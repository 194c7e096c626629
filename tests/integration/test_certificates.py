"""spec.vault.pki against the real Vault PKI engine: a source issues a certificate as its own identity
into a kubernetes.io/tls Secret whose leaf verifies against ca.crt with the asked-for SANs; it is renewed
(a new serial) at a fraction of its lifetime; names or roles Vault refuses give Ready=False naming the
field. Status shows serial and times, never key material."""

from __future__ import annotations

import ipaddress
import pathlib
import socket
import ssl
import tempfile
import threading
import time
import urllib.request
from typing import Any

import hvac
import kubernetes
import pytest
from cryptography import x509

from rotor.planning import times
from tests.devenv import StackInfo
from tests.integration.pki_setup import MOUNT, create_role, enable_pki

from .conftest import get_source, secret_data, secret_source, wait_for, wait_ready
from .test_incident import pod_spec
from .test_rotation import policy, status, wait_rotations

pytestmark = pytest.mark.usefixtures("operator")


def pki_env(core: Any, vault: hvac.Client, namespace: str) -> tuple[str, str]:
    """A PKI role for names under NAMESPACE.test, and a Kubernetes-auth role letting NAMESPACE/app issue
    from it and revoke (update on pki/issue/<role> and pki/revoke, nothing else); (pki role, login role)."""
    enable_pki(vault)
    pki_role = f"{namespace}-web"
    create_role(vault, pki_role, f"{namespace}.test")
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "app"}})
    login = f"{namespace}-app"
    vault.sys.create_or_update_policy(name=login, policy=f'path "{MOUNT}/issue/{pki_role}" '
                                      '{ capabilities = ["update"] }\n'
                                      f'path "{MOUNT}/revoke" {{ capabilities = ["update"] }}')
    vault.write(f"auth/kubernetes/role/{login}", bound_service_account_names=["app"],
                bound_service_account_namespaces=[namespace], policies=[login], audience="vault", ttl="1h")
    return pki_role, login


def source(namespace: str, login: str, pki_role: str, **pki: Any) -> dict[str, Any]:
    return {"provider": "vault", "serviceAccountName": "app",
            "vault": {"role": login, "pki": {"role": pki_role, "commonName": f"api.{namespace}.test",
                                             "altNames": [f"www.{namespace}.test"], "ipSans": ["10.1.2.3"], **pki}},
            "target": {"name": "tls"}}


def certificate(custom: Any, namespace: str, name: str = "cert") -> dict[str, str]:
    return dict((get_source(custom, namespace, name).get("status") or {}).get("certificate") or {})


def test_a_certificate_is_issued_verifies_against_ca_crt_and_is_renewed(
        custom: Any, core: Any, vault: hvac.Client, namespace: str) -> None:
    pki_role, login = pki_env(core, vault, namespace)
    secret_source(custom, namespace, "cert", source(namespace, login, pki_role, ttl="30s", renewFraction=0.5))
    wait_ready(custom, namespace, "cert")
    secret = core.read_namespaced_secret("tls", namespace)
    assert secret.type == "kubernetes.io/tls" and set(secret.data) == {"tls.crt", "tls.key", "ca.crt"}
    data = secret_data(core, namespace, "tls")
    assert data is not None
    chain = x509.load_pem_x509_certificates(data["tls.crt"])
    ca = x509.load_pem_x509_certificate(data["ca.crt"])
    chain[0].verify_directly_issued_by(ca)
    sans = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {f"api.{namespace}.test", f"www.{namespace}.test"}
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.1.2.3")]
    first = certificate(custom, namespace)
    assert first["serial"] and first["notAfter"] and first["renewAt"]
    assert "PRIVATE KEY" not in str(get_source(custom, namespace, "cert"))

    renewed = wait_for(lambda: (c := certificate(custom, namespace)).get("serial") not in (None, first["serial"])
                       and c, timeout=25, what="a renewed certificate")
    data = secret_data(core, namespace, "tls")
    assert data is not None
    leaf = x509.load_pem_x509_certificates(data["tls.crt"])[0]
    assert f"{leaf.serial_number:x}" == renewed["serial"].replace(":", "").lstrip("0")
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(data["ca.crt"]))


@pytest.mark.parametrize(("pki", "field"), [
    ({"role": "no-such-role"}, "spec.vault.pki.role"),
    ({"altNames": ["evil.example.com"]}, "spec.vault.pki.altNames"),
    ({"ttl": "2h"}, "spec.vault.pki.ttl"),  # over the role's max_ttl (1h)
])
def test_a_refusal_gives_ready_false_naming_the_field(
        custom: Any, core: Any, vault: hvac.Client, namespace: str, pki: dict[str, Any], field: str) -> None:
    pki_role, login = pki_env(core, vault, namespace)
    if pki.get("role"):  # a role the login may use, that the PKI engine does not have
        vault.sys.create_or_update_policy(name=login, policy=f'path "{MOUNT}/issue/*" {{ capabilities = ["update"] }}')
    secret_source(custom, namespace, "cert", source(namespace, login, pki_role, **pki))
    condition = wait_ready(custom, namespace, "cert", status="False")
    assert field in condition["message"], condition
    assert secret_data(core, namespace, "tls") is None


class TlsServer(threading.Thread):
    """A TLS server on 127.0.0.1 that reloads its certificate from the Secret (polled every 0.2 s, as a
    server watching its mounted files would): each new connection gets the certificate loaded last."""

    def __init__(self, core: Any, namespace: str) -> None:
        super().__init__(daemon=True)
        self.core, self.namespace = core, namespace
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.serials: list[int] = []  # the leaves served, in order
        self.context = self._load()

    def _load(self) -> ssl.SSLContext | None:
        data = secret_data(self.core, self.namespace, "tls")
        if data is None:
            return None
        serial = x509.load_pem_x509_certificates(data["tls.crt"])[0].serial_number
        if self.serials and self.serials[-1] == serial:
            return self.context
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as tmp:  # ssl loads a key from files only
            cert, key = pathlib.Path(tmp, "tls.crt"), pathlib.Path(tmp, "tls.key")
            cert.write_bytes(data["tls.crt"])
            key.write_bytes(data["tls.key"])
            context.load_cert_chain(cert, key)
        self.serials.append(serial)
        return context

    def run(self) -> None:
        reloaded = time.monotonic()
        while not self.stopping.is_set():
            if time.monotonic() - reloaded > 0.2:
                self.context, reloaded = self._load(), time.monotonic()
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            try:
                assert self.context is not None
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (OSError, ssl.SSLError):
                conn.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)
        self.listener.close()


def handshake(port: int, ca: bytes, hostname: str) -> bool:
    """A client verifying the server's chain against CA and its name against HOSTNAME."""
    context = ssl.create_default_context(cadata=ca.decode())
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as raw, \
                context.wrap_socket(raw, server_hostname=hostname) as tls:
            return tls.recv(2) == b"ok"
    except (OSError, ssl.SSLError):
        return False


def crl_serials(info: StackInfo) -> set[int]:
    with urllib.request.urlopen(f"{info.vault_addr}/v1/{MOUNT}/crl/pem", timeout=5) as response:
        crl = x509.load_pem_x509_crl(response.read())
    return {revoked.serial_number for revoked in crl}


def serial_number(serial: str) -> int:
    return int(serial.replace(":", ""), 16)


def test_three_renewals_through_a_rotation_policy_with_zero_failed_handshakes_and_old_serials_on_the_crl(
        custom: Any, core: Any, vault: hvac.Client, namespace: str, info: StackInfo) -> None:
    pki_role, login = pki_env(core, vault, namespace)
    secret_source(custom, namespace, "cert", source(namespace, login, pki_role, ttl="24s"))
    wait_ready(custom, namespace, "cert")
    first = certificate(custom, namespace)
    policy(custom, namespace, "cert", {"secretSourceRef": {"name": "cert"}, "strategy": "certificate",
                                       "schedule": {"interval": "720h"}, "overlap": {"window": "2s"},
                                       "verify": {"timeout": "30s"}, "deadline": "5m"})
    data = secret_data(core, namespace, "tls")
    assert data is not None
    server = TlsServer(core, namespace)
    server.start()
    results: list[bool] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and int(status(custom, namespace, "cert").get("rotations") or 0) < 3:
            results.append(handshake(server.port, data["ca.crt"], f"api.{namespace}.test"))
            time.sleep(1)
        s = wait_rotations(custom, namespace, "cert", 3, timeout=30)
        for _ in range(2):  # on the certificate the last renewal left
            results.append(handshake(server.port, data["ca.crt"], f"api.{namespace}.test"))
            time.sleep(1)
    finally:
        server.stop()
    print(f"\n{len(results)} handshakes across 3 renewals, {results.count(False)} failed; "
          f"{len(server.serials)} certificates served")
    assert results.count(False) == 0 and len(results) >= 30
    assert len(set(server.serials)) >= 4  # the first and three renewals, each served in turn
    active = s["active"]
    assert active["serial"] == certificate(custom, namespace)["serial"] and active["notAfter"]
    assert s["nextRotationTime"] and "PRIVATE KEY" not in str(s)
    olds = set(server.serials) - {serial_number(active["serial"])}
    assert serial_number(first["serial"]) in olds and len(olds) == 3
    revoked = crl_serials(info)
    assert olds <= revoked, "an old serial is not on the CRL"
    assert serial_number(active["serial"]) not in revoked


def test_a_leak_incident_on_a_certificate_reissues_it_and_puts_the_leaked_serial_on_the_crl(
        custom: Any, core: Any, api_client: Any, vault: hvac.Client, namespace: str, info: StackInfo) -> None:
    pki_role, login = pki_env(core, vault, namespace)
    secret_source(custom, namespace, "cert", source(namespace, login, pki_role, ttl="30m"))
    wait_ready(custom, namespace, "cert")
    leaked = certificate(custom, namespace)["serial"]
    kubernetes.client.AppsV1Api(api_client).create_namespaced_deployment(namespace, {  # serves the certificate
        "metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}}, "spec": pod_spec("tls", "volume")}}})
    vault.read(f"{MOUNT}/cert/{leaked}")  # someone fetches the leaked certificate by serial (as Vault's root)
    custom.create_namespaced_custom_object("rotor.dev", "v1alpha1", namespace, "leakincidents", {
        "apiVersion": "rotor.dev/v1alpha1", "kind": "LeakIncident", "metadata": {"name": "key-leak"},
        "spec": {"secretSourceRef": {"name": "cert"}, "exposure": {"where": "chat", "reference": "thread/7"}}})
    status = wait_for(lambda: (s := (custom.get_namespaced_custom_object(
        "rotor.dev", "v1alpha1", namespace, "leakincidents", "key-leak").get("status") or {})).get("phase")
        == "Prevented" and s, timeout=60, what="the runbook on the certificate")
    assert status["exposedVersion"] == leaked and status["revocation"]["confirmed"]
    renewed = certificate(custom, namespace)["serial"]
    assert renewed != leaked
    data = secret_data(core, namespace, "tls")
    assert data is not None
    assert x509.load_pem_x509_certificates(data["tls.crt"])[0].serial_number == serial_number(renewed)
    assert serial_number(leaked) in crl_serials(info) and serial_number(renewed) not in crl_serials(info)
    # What a responder reads: the workload serving the leaked key, then who issued from the role (the
    # source re-issuing, as its own identity) and who fetched the leaked certificate, in the window.
    timeline = {e["action"]: e["message"] for e in status["timeline"]}
    assert [(c["kind"], c["name"], c["via"]) for c in status["blastRadius"]["consumers"]] == \
        [("Deployment", "web", ["volume"])]
    assert f"certificate {leaked} (PKI role {MOUNT}/{pki_role})" in timeline["Identified"]
    assert "Secret tls: Deployment/web" in timeline["Identified"] and status["order"] == "afterRotation"
    found = {(r["operation"], r["path"], r.get("serviceAccount") or r["displayName"]) for r in status["auditReads"]}
    assert ("issue", f"{MOUNT}/issue/{pki_role}", f"{namespace}/app") in found
    assert ("cert", f"{MOUNT}/cert/{leaked}", "root") in found
    assert all(r["operation"] in ("issue", "sign", "cert") for r in status["auditReads"])
    window = status["blastRadius"]["exposureWindow"]
    start, end = times.parse(window["start"]), times.parse(window["end"])
    assert all(start <= times.parse(r["time"]) <= end for r in status["auditReads"])
    assert f"{namespace}/app (issue " in timeline["Audited"] and "root (cert 1)" in timeline["Audited"]
    assert "PRIVATE KEY" not in str(status)
