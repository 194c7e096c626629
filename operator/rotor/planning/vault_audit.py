"""Requests on a secret, a certificate or a key, found in a Vault/OpenBao file audit log (JSON lines).
Pure: lines in, rows out.

A KV secret is read at its path. A certificate's private key leaks with the certificate, so what
matters is who issued from its PKI role (`<pki>/issue/<role>`, `<pki>/sign/<role>`) and who fetched it
by serial (`<pki>/cert/<serial>`). A Transit key never leaves Vault unless exported: who used it is
who asked Vault to encrypt, decrypt, sign, verify, ... with it, or exported or backed it up.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from rotor.planning import times

# Transit endpoints that use a key in place: <mount>/<op>/<key>[/<algorithm or hash>].
KEY_USES = frozenset({"encrypt", "decrypt", "rewrap", "sign", "verify", "hmac"})


@dataclass(frozen=True)
class Requests:
    """Which audit entries to list: a line must contain one of NEEDLES (a cheap pre-filter: the log holds
    every request of the server); ACTION says what a request path does (None: not one of these)."""

    needles: frozenset[str]
    action: Callable[[str, str], str | None]  # (path, Vault operation) -> the word shown in status


def audit_paths(mount: str, path: str) -> frozenset[str]:
    """The request paths that read a KV secret (v2 data path and v1 path)."""
    return frozenset({f"{mount}/data/{path}", f"{mount}/{path}"})


def reads_of(paths: frozenset[str]) -> Requests:
    """Reads of PATHS (a KV secret: audit_paths)."""
    return Requests(paths, lambda p, op: "read" if op == "read" and p in paths else None)


def serial_forms(serial: str) -> frozenset[str]:
    """A serial as Vault accepts it in cert/<serial>: colon- or hyphen-separated, any case."""
    plain = serial.strip().lower()
    return frozenset({plain, plain.replace(":", "-"), plain.replace("-", ":"), plain.upper(),
                      plain.replace(":", "-").upper()})


def certificate_requests(mount: str, role: str, serial: str) -> Requests:
    """Issuance from the PKI role (issue, sign) and fetches of the certificate by serial."""
    issuing = {f"{mount}/issue/{role}": "issue", f"{mount}/sign/{role}": "sign"}
    fetching = {f"{mount}/cert/{form}": "cert" for form in serial_forms(serial)} if serial else {}
    wanted = {**issuing, **fetching}
    return Requests(frozenset(wanted), lambda p, op: wanted.get(p))


def key_action(mount: str, key: str, path: str) -> str | None:
    """What PATH does with Transit key MOUNT/KEY: a use (encrypt, sign, ...), datakey, export, backup;
    None for anything else (another key, or managing this one: Rotor's own rotate and config)."""
    if not path.startswith(f"{mount}/"):
        return None
    parts = path[len(mount) + 1:].split("/")
    if parts[0] in KEY_USES and len(parts) >= 2 and parts[1] == key:
        return parts[0]
    if parts[0] in ("datakey", "export") and len(parts) >= 3 and parts[2] == key:
        return parts[0]
    if parts[0] == "backup" and parts[1:] == [key]:
        return "backup"
    return None


def key_requests(mount: str, key: str) -> Requests:
    """Every request that used, exported or backed up Transit key MOUNT/KEY."""
    return Requests(frozenset({f"/{key}"}), lambda p, op: key_action(mount, key, p))


def audit_reads(lines: Iterable[str], *, paths: frozenset[str], start: datetime.datetime,
                end: datetime.datetime | None, limit: int = 100) -> tuple[list[dict[str, Any]], int]:
    """Reads of PATHS between START and END (see audit_requests)."""
    return audit_requests(lines, requests=reads_of(paths), start=start, end=end, limit=limit)


def audit_requests(lines: Iterable[str], *, requests: Requests, start: datetime.datetime,
                   end: datetime.datetime | None, limit: int = 100) -> tuple[list[dict[str, Any]], int]:
    """The REQUESTS between START and END from Vault/OpenBao file-audit JSON lines: (first LIMIT, total).
    Response entries only (one per request, with the outcome); values in the log are HMACed by Vault
    and none is copied here anyway (a key version is a number, kept)."""
    found: list[dict[str, Any]] = []
    total = 0
    for line in lines:
        if '"response"' not in line or not any(n in line for n in requests.needles):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        request = entry.get("request") or {}
        path = str(request.get("path") or "")
        action = requests.action(path, str(request.get("operation") or "")) if entry.get("type") == "response" \
            else None
        if action is None:
            continue
        try:
            when = times.parse(str(entry.get("time") or ""))
        except ValueError:
            continue
        if when < start or (end is not None and when > end):
            continue
        total += 1
        if len(found) >= limit:
            continue
        auth = entry.get("auth") or {}
        meta = auth.get("metadata") or {}
        account = None
        if meta.get("service_account_name"):
            account = f"{meta.get('service_account_namespace', '')}/{meta['service_account_name']}"
        row: dict[str, Any] = {
            "time": times.iso(when, millis=True), "operation": action, "path": path, "serviceAccount": account,
            "role": meta.get("role"), "displayName": auth.get("display_name"),
            "remoteAddress": request.get("remote_address"), "denied": bool(entry.get("error"))}
        version = _key_version(entry, action, path)
        if version is not None:
            row["keyVersion"] = version
        found.append(row)
    return found, total


def _key_version(entry: dict[str, Any], action: str, path: str) -> int | None:
    """The Transit key version a request used, where the log says: Vault answers encrypt, sign, hmac,
    ... with key_version (a number, so not HMACed); an export names it in its path."""
    data = (entry.get("response") or {}).get("data") or {}
    version = data.get("key_version") if isinstance(data, dict) else None
    if isinstance(version, int) and not isinstance(version, bool):
        return version
    parts = path.split("/")
    if action == "export" and len(parts) >= 5 and parts[-4] == "export" and parts[-1].isdigit():
        return int(parts[-1])
    return None
