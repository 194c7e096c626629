"""Rotor reads the kubeconfig itself (no kubernetes client): what kubectl would use is what it uses, and a
kubeconfig it cannot use fails naming the field and the fix."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from rotor.kube import KubeConfigError, load_config


def write(path: Path, user: dict[str, Any], *, cluster: dict[str, Any] | None = None, name: str = "dev",
          namespace: str | None = "team-a") -> Path:
    context: dict[str, Any] = {"cluster": name, "user": name}
    if namespace:
        context["namespace"] = namespace
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": name,
        "clusters": [{"name": name, "cluster": cluster or {"server": "https://10.0.0.1:6443/",
                                                          "certificate-authority": "ca.pem"}}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": context}]}))
    return path


def test_a_token_user_in_the_current_context(tmp_path: Path) -> None:
    config = load_config(str(write(tmp_path / "config", {"token": "t0k"})))
    assert config.server == "https://10.0.0.1:6443" and config.namespace == "team-a"
    assert config.ca_file == str(tmp_path / "ca.pem")  # relative to the kubeconfig, as kubectl reads it
    assert asyncio.run(config.authorization()) == "Bearer t0k"


def test_inline_client_certificate_data_becomes_a_private_file(tmp_path: Path) -> None:
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    config = load_config(str(write(tmp_path / "config", {
        "client-certificate-data": base64.b64encode(pem).decode(),
        "client-key-data": base64.b64encode(b"key").decode()})))
    assert config.cert_file is not None and Path(config.cert_file).read_bytes() == pem
    assert stat.S_IMODE(os.stat(config.cert_file).st_mode) == 0o600
    assert asyncio.run(config.authorization()) is None  # the certificate is the credential


def test_an_exec_plugin_gives_the_token_once_until_it_expires(tmp_path: Path) -> None:
    count = tmp_path / "runs"
    plugin = tmp_path / "plugin.py"
    plugin.write_text("import json, os, sys\n"
                      f"open({str(count)!r}, 'a').write('x')\n"
                      "assert json.loads(os.environ['KUBERNETES_EXEC_INFO'])['kind'] == 'ExecCredential'\n"
                      "print(json.dumps({'status': {'token': os.environ['TEAM'] + '-token',"
                      " 'expirationTimestamp': '2999-01-01T00:00:00Z'}}))\n")
    config = load_config(str(write(tmp_path / "config", {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable, "args": [str(plugin)],
        "env": [{"name": "TEAM", "value": "blue"}]}})))

    async def twice() -> list[str | None]:
        return [await config.authorization(), await config.authorization()]

    assert asyncio.run(twice()) == ["Bearer blue-token"] * 2
    assert count.read_text() == "x"


def test_an_auth_provider_user_fails_naming_the_fix(tmp_path: Path) -> None:
    path = write(tmp_path / "config", {"auth-provider": {"name": "oidc", "config": {}}})
    with pytest.raises(KubeConfigError) as failed:
        load_config(str(path))
    assert "auth-provider 'oidc'" in failed.value.message and "users[].user.exec" in failed.value.message


def test_several_files_merge_as_kubectl_merges_them(tmp_path: Path) -> None:
    first = write(tmp_path / "a", {"token": "from-a"}, name="a", namespace=None)
    second = write(tmp_path / "b", {"token": "from-b"}, name="b")
    config = load_config(f"{tmp_path / 'missing'}{os.pathsep}{first}{os.pathsep}{second}")
    assert asyncio.run(config.authorization()) == "Bearer from-a" and config.namespace == "default"


def test_no_kubeconfig_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError) as failed:
        load_config(str(tmp_path / "nowhere"))
    assert "set KUBECONFIG or --kubeconfig" in failed.value.message
    assert json.dumps(failed.value.reason) == '"InvalidKubeconfig"'


def test_in_a_pod_the_mounted_service_account_token_is_read_again_as_it_rotates(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rotor.kube import config as kubeconfig

    (tmp_path / "token").write_text("first\n")
    (tmp_path / "namespace").write_text("rotor-system")
    monkeypatch.setattr(kubeconfig, "SERVICE_ACCOUNT", tmp_path)
    monkeypatch.setattr(kubeconfig, "TOKEN_FILE_REREAD_SECONDS", 0.0)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    config = load_config()
    assert config.server == "https://[fd00::1]:443" and config.namespace == "rotor-system"
    assert config.ca_file == str(tmp_path / "ca.crt")
    assert asyncio.run(config.authorization()) == "Bearer first"
    (tmp_path / "token").write_text("second\n")  # the kubelet rotated it
    assert asyncio.run(config.authorization()) == "Bearer second"


def test_the_token_never_shows_in_the_config_s_repr(tmp_path: Path) -> None:
    config = load_config(str(write(tmp_path / "config", {"token": "t0k-secret-canary"})))
    assert "t0k-secret-canary" not in repr(config) and "t0k-secret-canary" not in str(config)
