"""Start and stop the whole local control plane on free loopback ports.

    etcd  <-  kube-apiserver (RBAC, ServiceAccount issuer: TokenRequest + TokenReview work)
                   ^
    Vault (file storage, KV v1 + v2, Kubernetes auth pointed at the apiserver, file audit device)
    PostgreSQL (as an unprivileged user; Vault's database engine manages roles in it)
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tests.devenv import binaries
from tests.devenv.pki import CertificateAuthority, write_service_account_keys
from tests.devenv.process import Process, free_port, http_json, http_status

ISSUER = "https://kubernetes.default.svc.cluster.local"
REVIEWER_SA = ("kube-system", "vault-token-reviewer")


@dataclass(frozen=True)
class StackInfo:
    """Where everything is; written to <state>/stack.json for other processes (make run, e2e)."""

    state_dir: str
    kubeconfig: str
    api_url: str
    ca_file: str
    admin_token: str
    vault_addr: str
    vault_root_token: str
    vault_audit_log: str
    kube_audit_log: str
    pg_host: str
    pg_port: int
    pg_user: str
    pg_password: str

    @property
    def pg_dsn(self) -> str:
        return (f"host={self.pg_host} port={self.pg_port} user={self.pg_user} "
                f"password={self.pg_password} dbname=postgres")

    @classmethod
    def load(cls, state_dir: Path) -> StackInfo:
        return cls(**json.loads((state_dir / "stack.json").read_text()))


class Stack:
    def __init__(self, state_dir: Path, *, with_postgres: bool = True) -> None:
        self.dir = state_dir
        self.with_postgres = with_postgres
        self.procs: dict[str, Process] = {}
        self.timings: dict[str, float] = {}
        self._info: StackInfo | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> StackInfo:
        if self.dir.exists():
            shutil.rmtree(self.dir)
        (self.dir / "logs").mkdir(parents=True)
        self.dir.chmod(0o755)
        try:
            self._timed("etcd", self._start_etcd)
            self._timed("kube-apiserver", self._start_apiserver)
            self._timed("vault", self._start_vault)
            if self.with_postgres:
                self._timed("postgresql", self._start_postgres)
                self._configure_database()
        except BaseException:
            self.stop()
            raise
        info = self.info
        (self.dir / "stack.json").write_text(json.dumps(asdict(info), indent=2))
        (self.dir / "stack.json").chmod(0o600)
        return info

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            self.procs[name].stop()
        self.procs.clear()
        pg_dir = getattr(self, "_pg_dir", None)
        if pg_dir is not None:
            shutil.rmtree(pg_dir, ignore_errors=True)

    def __enter__(self) -> StackInfo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def info(self) -> StackInfo:
        if self._info is None:
            self._info = StackInfo(
                state_dir=str(self.dir), kubeconfig=str(self.dir / "kubeconfig"), api_url=self._api_url,
                ca_file=str(self.dir / "ca.crt"), admin_token=self._admin_token, vault_addr=self._vault_addr,
                vault_root_token=self._vault_root, vault_audit_log=str(self.dir / "logs" / "vault-audit.log"),
                kube_audit_log=str(self.dir / "logs" / "kube-audit.log"),
                pg_host="127.0.0.1", pg_port=getattr(self, "_pg_port", 0), pg_user="rotor",
                pg_password=getattr(self, "_pg_password", ""),
            )
        return self._info

    def _timed(self, name: str, step: Any) -> None:
        start = time.monotonic()
        step()
        self.timings[name] = time.monotonic() - start

    def _spawn(self, name: str, argv: list[str], **kwargs: Any) -> Process:
        proc = Process(name, argv, self.dir / "logs", **kwargs)
        proc.start()
        self.procs[name] = proc
        return proc

    # -- etcd -----------------------------------------------------------------------------------

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self._etcd_url = f"http://127.0.0.1:{client}"
        proc = self._spawn("etcd", [
            str(binaries.find("etcd")), "--name=default", f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls={self._etcd_url}", f"--advertise-client-urls={self._etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=default=http://127.0.0.1:{peer}", "--unsafe-no-fsync", "--log-level=warn",
        ])
        proc.wait_until(lambda: http_json("GET", f"{self._etcd_url}/health")["health"] == "true", 60, "healthy")

    # -- kube-apiserver -------------------------------------------------------------------------

    def _start_apiserver(self) -> None:
        ca = CertificateAuthority()
        ca_file = self.dir / "ca.crt"
        ca_file.write_bytes(ca.cert_pem)
        cert, key = ca.issue("kube-apiserver", ["127.0.0.1", "localhost", "kubernetes",
                                                 "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"])
        (self.dir / "apiserver.crt").write_bytes(cert)
        (self.dir / "apiserver.key").write_bytes(key)
        self.ca = ca
        sa_key, sa_pub = write_service_account_keys(self.dir)
        self._admin_token = secrets.token_urlsafe(32)
        tokens = self.dir / "tokens.csv"
        tokens.write_text(f'{self._admin_token},rotor-admin,rotor-admin,"system:masters"\n')
        tokens.chmod(0o600)
        # Audit every request at Metadata level: tests derive the operator's real API usage (RBAC)
        # and an auditor can see who touched which Secret, never the Secret's data.
        audit_policy = self.dir / "audit-policy.yaml"
        audit_policy.write_text(json.dumps({"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                                            "omitStages": ["RequestReceived"], "rules": [{"level": "Metadata"}]}))
        port = free_port()
        self._api_url = f"https://127.0.0.1:{port}"
        proc = self._spawn("kube-apiserver", [
            str(binaries.find("kube-apiserver")),
            f"--etcd-servers={self._etcd_url}", "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={port}", f"--tls-cert-file={self.dir / 'apiserver.crt'}",
            f"--tls-private-key-file={self.dir / 'apiserver.key'}", f"--client-ca-file={ca_file}",
            f"--token-auth-file={tokens}", "--authorization-mode=RBAC",
            f"--service-account-issuer={ISSUER}", f"--service-account-key-file={sa_pub}",
            f"--service-account-signing-key-file={sa_key}", "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true", "--endpoint-reconciler-type=none",
            # ROTOR_STACK_PROFILING=1: /debug/pprof on (where the API server's CPU goes, docs/benchmarks.md).
            f"--profiling={'true' if os.environ.get('ROTOR_STACK_PROFILING') == '1' else 'false'}",
            "--enable-priority-and-fairness=false", "--v=0",
            f"--audit-policy-file={audit_policy}", f"--audit-log-path={self.dir / 'logs' / 'kube-audit.log'}",
        ])
        proc.wait_until(lambda: http_status(f"{self._api_url}/readyz", ca_file=ca_file, headers={
            "Authorization": f"Bearer {self._admin_token}"}) == 200, 120, "ready")
        self._write_kubeconfig()

    def _api(self, method: str, path: str, body: Any = None) -> Any:
        return http_json(method, self._api_url + path, body=body, ca_file=self.dir / "ca.crt",
                         headers={"Authorization": f"Bearer {self._admin_token}"})

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "rotor-local",
            "clusters": [{"name": "rotor-local", "cluster": {
                "server": self._api_url, "certificate-authority": str(self.dir / "ca.crt")}}],
            "users": [{"name": "rotor-admin", "user": {"token": self._admin_token}}],
            "contexts": [{"name": "rotor-local", "context": {"cluster": "rotor-local", "user": "rotor-admin"}}],
        }
        path = self.dir / "kubeconfig"
        path.write_text(json.dumps(config, indent=2))  # JSON is valid YAML
        path.chmod(0o600)

    def service_account_token(self, namespace: str, name: str, audience: str, seconds: int = 3600) -> str:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [audience], "expirationSeconds": seconds}}
        result = self._api("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", body)
        return str(result["status"]["token"])

    # -- Vault ----------------------------------------------------------------------------------

    def _start_vault(self) -> None:
        port = free_port()
        self._vault_addr = f"http://127.0.0.1:{port}"
        data = self.dir / "vault-data"
        data.mkdir()
        config = self.dir / "vault.hcl"
        config.write_text(
            f'storage "file" {{\n  path = "{data}"\n}}\n'
            f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n  tls_disable = true\n}}\n'
            f'api_addr = "{self._vault_addr}"\ndisable_mlock = true\nui = false\n'
        )
        self._run_vault_server()
        init = self._vault("PUT", "/v1/sys/init", {"secret_shares": 1, "secret_threshold": 1})
        self._vault_root = init["root_token"]
        self._unseal_key = init["keys_base64"][0]
        self._unseal()
        self._configure_vault()

    def _run_vault_server(self) -> None:
        proc = self._spawn("vault", [str(binaries.find("vault")), "server", f"-config={self.dir / 'vault.hcl'}"],
                           env={"VAULT_LOG_LEVEL": "warn"})
        proc.wait_until(lambda: self._vault_status() in (200, 429, 472, 473, 501, 503), 60, "listening")

    def _vault_status(self) -> int:
        return http_status(f"{self._vault_addr}/v1/sys/health")

    def _unseal(self) -> None:
        self._vault("PUT", "/v1/sys/unseal", {"key": self._unseal_key})
        self.procs["vault"].wait_until(lambda: self._vault_status() == 200, 60, "unsealed and active")

    def _vault(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"X-Vault-Token": self._vault_root} if hasattr(self, "_vault_root") else {}
        return http_json(method, self._vault_addr + path, body=body, headers=headers)

    def _configure_vault(self) -> None:
        self._vault("POST", "/v1/sys/mounts/secret", {"type": "kv", "options": {"version": "2"}})
        self._vault("POST", "/v1/sys/mounts/kv1", {"type": "kv", "options": {"version": "1"}})
        audit_log = self.dir / "logs" / "vault-audit.log"
        self._vault("PUT", "/v1/sys/audit/file", {"type": "file", "options": {"file_path": str(audit_log)}})
        # Kubernetes auth: Vault reviews ServiceAccount tokens with a ServiceAccount of its own that
        # may call TokenReview (system:auth-delegator), exactly as in a real cluster.
        ns, name = REVIEWER_SA
        self._api("POST", f"/api/v1/namespaces/{ns}/serviceaccounts",
                  {"metadata": {"name": name}})
        self._api("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
            "metadata": {"name": "vault-token-reviewer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "system:auth-delegator"},
            "subjects": [{"kind": "ServiceAccount", "namespace": ns, "name": name}],
        })
        reviewer = self.service_account_token(ns, name, ISSUER, seconds=7 * 24 * 3600)
        self._vault("POST", "/v1/sys/auth/kubernetes", {"type": "kubernetes"})
        self._vault("POST", "/v1/auth/kubernetes/config", {
            "kubernetes_host": self._api_url, "kubernetes_ca_cert": self.ca.cert_pem.decode(),
            "token_reviewer_jwt": reviewer, "disable_local_ca_jwt": True,
        })

    def _configure_database(self) -> None:
        """Vault's database secrets engine, managing roles in the local PostgreSQL (dynamic + static)."""
        self._vault("POST", "/v1/sys/mounts/database", {"type": "database"})
        self._vault("POST", "/v1/database/config/postgres", {
            "plugin_name": "postgresql-database-plugin", "allowed_roles": "*", "verify_connection": True,
            "connection_url": f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{self._pg_port}/postgres"
                              "?sslmode=disable",
            "username": "rotor", "password": self._pg_password, "password_authentication": "scram-sha-256",
        })

    def stop_vault(self) -> None:
        """Take Vault down (tests of backend outages)."""
        self.procs.pop("vault").stop()

    def start_vault(self) -> None:
        """Bring Vault back on the same address, with its data, unsealed."""
        self._run_vault_server()
        self._unseal()

    # -- faults (tests of outages; every one is undone by its pair) --------------------------------

    def seal_vault(self) -> None:
        """Seal Vault: every request but health and unseal fails (503) until unseal_vault()."""
        self._vault("PUT", "/v1/sys/seal")

    def unseal_vault(self) -> None:
        self._unseal()

    def restart_apiserver(self, grace: float = 10.0) -> float:
        """Stop kube-apiserver (SIGTERM, SIGKILL after GRACE seconds: a watch whose client does not read
        holds it up; every connection and watch drops) and start it again on the same address and
        certificates, with an empty watch cache; seconds until it is ready again."""
        proc = self.procs["kube-apiserver"]
        began = time.monotonic()
        proc.stop(grace)
        proc.start()
        proc.wait_until(lambda: http_status(f"{self._api_url}/readyz", ca_file=self.dir / "ca.crt", headers={
            "Authorization": f"Bearer {self._admin_token}"}) == 200, 120, "ready")
        return time.monotonic() - began

    def pause(self, name: str) -> None:
        """SIGSTOP a process of the stack ("etcd", "vault", ...): it holds its connections, answers nothing."""
        popen = self.procs[name].popen
        assert popen is not None
        os.kill(popen.pid, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        popen = self.procs[name].popen
        assert popen is not None
        os.kill(popen.pid, signal.SIGCONT)

    def compact_etcd(self) -> int:
        """Compact etcd's history up to its current revision (returned): a watch resumed from an older
        resourceVersion that reaches etcd gets 410 Gone."""
        key = base64.b64encode(b"/registry").decode()
        revision = int(http_json("POST", f"{self._etcd_url}/v3/kv/range", body={"key": key})["header"]["revision"])
        http_json("POST", f"{self._etcd_url}/v3/kv/compaction", body={"revision": revision, "physical": True})
        return revision

    def vault_request(self, method: str, path: str, body: Any = None) -> Any:
        """A root-token call to Vault, for tests and bootstrapping (never used by the operator)."""
        return self._vault(method, path, body)

    def api_request(self, method: str, path: str, body: Any = None) -> Any:
        """An admin call to kube-apiserver, for tests and bootstrapping."""
        return self._api(method, path, body)

    # -- PostgreSQL -----------------------------------------------------------------------------

    def _start_postgres(self) -> None:
        bin_dir = binaries.find_postgres_bin()
        user = _unprivileged_user()
        # Outside the state dir: that may sit under a private (0700) directory the postgres user
        # cannot traverse, e.g. pytest's tmp_path.
        data = Path(tempfile.mkdtemp(prefix="rotor-pgdata-"))
        self._pg_dir = data
        self._pg_password = base64.urlsafe_b64encode(os.urandom(18)).decode()
        pwfile = data.parent / f"{data.name}.pwfile"
        pwfile.write_text(self._pg_password + "\n")
        if user is not None:
            pw = pwd.getpwnam(user)
            for path in (data, pwfile):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", "rotor", "--auth=scram-sha-256",
             f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True, user=user,
        )
        pwfile.unlink()
        self._pg_port = free_port()
        proc = self._spawn("postgresql", [
            str(bin_dir / "postgres"), "-D", str(data), "-p", str(self._pg_port),
            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={data}",
            "-c", "fsync=off", "-c", "max_connections=300", "-c", "password_encryption=scram-sha-256",
        ], user=user)
        ready = bin_dir / "pg_isready"
        proc.wait_until(lambda: subprocess.run(
            [str(ready), "-h", "127.0.0.1", "-p", str(self._pg_port)], capture_output=True).returncode == 0,
            60, "accepting connections")


def _unprivileged_user() -> str | None:
    """PostgreSQL refuses to run as root: use the postgres (or nobody) account when we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged user (postgres/nobody) exists for PostgreSQL")
