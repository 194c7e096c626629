"""Where the API server is and who Rotor is to it: in a pod, the mounted ServiceAccount; elsewhere a kubeconfig.

Rotor talks to the API server with aiohttp (transport.py), not the kubernetes client, so it reads the
kubeconfig itself: the current context's cluster (server, CA, proxy-url, insecure-skip-tls-verify) and user
(bearer token or token file, client certificate and key as files or data, an exec credential plugin as
kubectl runs it). A user with a legacy auth-provider fails with a message that names the fix.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import os
import ssl
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rotor.kube.errors import KubeError

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Bound ServiceAccount tokens rotate (the kubelet rewrites the file): read it again this often.
TOKEN_FILE_REREAD_SECONDS = 60.0


class KubeConfigError(KubeError):
    """The kubeconfig cannot be used; the message names the field and the fix (a KubeError, so every
    command that reports the API's failures reports this one too)."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "InvalidKubeconfig", message)


@dataclass
class KubeConfig:
    server: str
    namespace: str = "default"
    ca_file: str | None = None
    ca_data: str | None = None  # PEM
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = field(default=None, repr=False)  # a credential: never in a repr, a log line or a traceback
    token_file: str | None = None
    insecure: bool = False
    proxy: str | None = None
    exec_plugin: Mapping[str, Any] | None = None  # users[].user.exec
    _token_read: tuple[float, str] | None = field(default=None, repr=False)
    _exec_token: tuple[float, str] | None = field(default=None, repr=False)

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What the connection verifies the server with and presents as the client (False: plain http)."""
        if self.server.startswith("http:"):
            return False
        context = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_data)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_file and self.key_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context

    async def authorization(self) -> str | None:
        """The Authorization header's value, or None (client certificates only)."""
        if self.exec_plugin is not None:
            return f"Bearer {await self._run_exec()}"
        if self.token_file:
            now = time.monotonic()
            if self._token_read is None or now - self._token_read[0] >= TOKEN_FILE_REREAD_SECONDS:
                self._token_read = (now, Path(self.token_file).read_text().strip())
            return f"Bearer {self._token_read[1]}"
        return f"Bearer {self.token}" if self.token else None

    async def _run_exec(self) -> str:
        """A token from the exec credential plugin (client.authentication.k8s.io), cached until it expires."""
        now = time.time()
        if self._exec_token is not None and now < self._exec_token[0]:
            return self._exec_token[1]
        plugin = self.exec_plugin or {}
        env = dict(os.environ)
        env.update({str(e["name"]): str(e["value"]) for e in plugin.get("env") or ()})
        env["KUBERNETES_EXEC_INFO"] = json.dumps({
            "apiVersion": plugin.get("apiVersion") or "client.authentication.k8s.io/v1",
            "kind": "ExecCredential", "spec": {"interactive": False}})
        process = await asyncio.create_subprocess_exec(
            str(plugin["command"]), *[str(a) for a in plugin.get("args") or ()], env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        out, _ = await process.communicate()
        if process.returncode != 0:
            raise KubeConfigError(f"users[].user.exec: {plugin['command']} exited with {process.returncode}")
        status = (json.loads(out or b"{}").get("status") or {})
        token = status.get("token")
        if not token:
            raise KubeConfigError(f"users[].user.exec: {plugin['command']} gave no status.token (Rotor takes a "
                                  "token from exec plugins, not a client certificate)")
        expires = status.get("expirationTimestamp")
        until = (datetime.datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp() - 30 if expires
                 else now + 300)
        self._exec_token = (until, str(token))
        return str(token)


def load_config(kubeconfig: str | None = None) -> KubeConfig:
    """In-cluster config when running in a pod, else the kubeconfig ($KUBECONFIG or ~/.kube/config)."""
    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or None
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        return in_cluster()
    paths = [p for p in (kubeconfig or str(Path.home() / ".kube" / "config")).split(os.pathsep) if p]
    return from_kubeconfig(_merged(paths))


def in_cluster() -> KubeConfig:
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    host = f"[{host}]" if ":" in host else host  # an IPv6 address
    namespace_file = SERVICE_ACCOUNT / "namespace"
    namespace = namespace_file.read_text().strip() if namespace_file.exists() else "default"
    return KubeConfig(server=f"https://{host}:{port}", namespace=namespace or "default",
                      ca_file=str(SERVICE_ACCOUNT / "ca.crt"), token_file=str(SERVICE_ACCOUNT / "token"))


def _merged(paths: list[str]) -> dict[str, Any]:
    """Several kubeconfig files as kubectl merges them: the first file to set a name wins."""
    merged: dict[str, Any] = {"clusters": [], "users": [], "contexts": []}
    seen: dict[str, set[str]] = {key: set() for key in merged}
    found = False
    for path in paths:
        if not Path(path).exists():
            continue
        found = True
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        base = Path(path).resolve().parent
        if not merged.get("current-context"):
            merged["current-context"] = loaded.get("current-context")
        for key in ("clusters", "users", "contexts"):
            for entry in loaded.get(key) or ():
                if entry.get("name") not in seen[key]:
                    seen[key].add(entry.get("name"))
                    merged[key].append({**entry, "_base": base})
    if not found:
        raise KubeConfigError(f"no kubeconfig at {os.pathsep.join(paths)}: set KUBECONFIG or --kubeconfig")
    return merged


def _named(config: Mapping[str, Any], key: str, name: str | None) -> tuple[dict[str, Any], Path]:
    for entry in config.get(key) or ():
        if entry.get("name") == name:
            return dict(entry.get(key[:-1]) or {}), entry["_base"]
    raise KubeConfigError(f"kubeconfig: no {key[:-1]} named {name!r} (the current context names it)")


def from_kubeconfig(config: Mapping[str, Any]) -> KubeConfig:
    current = config.get("current-context")
    if not current:
        raise KubeConfigError("kubeconfig: no current-context; set one with kubectl config use-context")
    context, _ = _named(config, "contexts", current)
    cluster, cluster_base = _named(config, "clusters", context.get("cluster"))
    user, user_base = _named(config, "users", context.get("user")) if context.get("user") else ({}, Path("."))
    if user.get("auth-provider"):
        raise KubeConfigError(
            f"kubeconfig user {context.get('user')!r}: auth-provider {user['auth-provider'].get('name')!r} is not "
            "supported (kubectl dropped it too): use an exec credential plugin (users[].user.exec)")
    if not cluster.get("server"):
        raise KubeConfigError(f"kubeconfig cluster {context.get('cluster')!r} has no server")
    return KubeConfig(
        server=str(cluster["server"]).rstrip("/"), namespace=str(context.get("namespace") or "default"),
        ca_file=_path(cluster.get("certificate-authority"), cluster_base),
        ca_data=_pem(cluster.get("certificate-authority-data")),
        cert_file=_path(user.get("client-certificate"), user_base) or _data_file(user.get("client-certificate-data")),
        key_file=_path(user.get("client-key"), user_base) or _data_file(user.get("client-key-data")),
        token=user.get("token"), token_file=_path(user.get("tokenFile"), user_base),
        insecure=bool(cluster.get("insecure-skip-tls-verify")), proxy=cluster.get("proxy-url"),
        exec_plugin=user.get("exec"))


def _path(value: str | None, base: Path) -> str | None:
    return str(base / value) if value else None


def _pem(data: str | None) -> str | None:
    return base64.b64decode(data).decode() if data else None


def _data_file(data: str | None) -> str | None:
    """Inline certificate or key data as a private file (ssl loads a chain from files only)."""
    if not data:
        return None
    handle, path = tempfile.mkstemp(prefix="rotor-kubeconfig-")  # mode 0600
    with os.fdopen(handle, "wb") as f:
        f.write(base64.b64decode(data))
    return path
