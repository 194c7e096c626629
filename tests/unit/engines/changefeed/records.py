"""Audit records as Vault 1.21's socket device writes them: one JSON object per line, keys sorted, values
HMAC'd (unless raw), optionally after the device's prefix."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def _hmac(value: str) -> str:
    return "hmac-sha256:" + hashlib.sha256(value.encode()).hexdigest()


def _hashed(value: Any, raw: bool) -> Any:
    if isinstance(value, dict):
        return {k: _hashed(v, raw) for k, v in value.items()}
    if isinstance(value, list):
        return [_hashed(v, raw) for v in value]
    return value if raw or not isinstance(value, str) else _hmac(value)


def record(path: str, operation: str = "update", *, type: str = "response", data: dict[str, Any] | None = None,
           response: dict[str, Any] | None = None, raw: bool = False, error: str | None = None,
           namespace: str | None = None, prefix: str = "", sort: bool = True, mount_type: str = "kv") -> bytes:
    token = "hvs.CAESIJ-client-token" if raw else _hmac("hvs.CAESIJ-client-token")
    request: dict[str, Any] = {
        "client_id": "0DHqvq2D77kL2/JTPSZkTMJbkFVmUu0TzMi0jiXcFy8=", "client_token": token,
        "client_token_accessor": _hashed("accessor", raw), "headers": {"user-agent": ["Go-http-client/1.1"]},
        "id": "651efbad-256c-bcb7-788a-413e8ca77ace", "mount_accessor": "kv_482297e9", "mount_class": "secret",
        "mount_point": path.split("/", 1)[0] + "/", "mount_type": mount_type,
        "namespace": {"id": "root"} if namespace is None else {"id": "x1Y", "path": namespace},
        "operation": operation, "path": path, "remote_address": "10.0.0.7", "remote_port": 33472,
    }
    if data is not None:
        request["data"] = _hashed(data, raw)
    entry: dict[str, Any] = {
        "auth": {"accessor": _hashed("accessor", raw), "client_token": token, "display_name": "token",
                 "policies": ["root"], "policy_results": {"allowed": True}, "token_type": "service"},
        "request": request, "time": "2026-12-03T23:29:46.60748139Z", "type": type,
    }
    if type == "response":
        entry["response"] = {"data": _hashed(response or {"created_time": "2026-12-03T23:29:46Z", "version": 2,
                                                         "destroyed": False, "custom_metadata": None}, raw),
                             "mount_point": request["mount_point"], "mount_type": mount_type}
    if error is not None:
        entry["error"] = error
    return prefix.encode() + json.dumps(entry, sort_keys=sort, separators=(",", ":")).encode()


def write(path: str, **kwargs: Any) -> bytes:
    """The response entry of a KV write of a password."""
    return record(path, "create", data={"data": {"password": "pw-secret-1"}, "options": {}}, **kwargs)


def read(path: str, **kwargs: Any) -> bytes:
    """The response entry of a read: by far the most common record."""
    return record(path, "read", response={"data": {"password": "pw-secret-1"},
                                          "metadata": {"version": 2, "created_time": "2026-12-03T23:29:46Z"}},
                  **kwargs)


def login(**kwargs: Any) -> bytes:
    """The response entry of a Kubernetes-auth login: a write, of an auth mount."""
    return record("auth/kubernetes/login", "update", data={"jwt": "eyJ-service-account-token", "role": "app"},
                  response={}, mount_type="kubernetes", **kwargs)
