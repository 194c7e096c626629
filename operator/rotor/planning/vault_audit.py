"""Reads of a secret, found in a Vault/OpenBao file audit log (JSON lines). Pure: lines in, rows out."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable
from typing import Any

from rotor.planning import times


def audit_paths(mount: str, path: str) -> frozenset[str]:
    """The request paths that read a KV secret (v2 data path and v1 path)."""
    return frozenset({f"{mount}/data/{path}", f"{mount}/{path}"})


def audit_reads(lines: Iterable[str], *, paths: frozenset[str], start: datetime.datetime,
                end: datetime.datetime | None, limit: int = 100) -> tuple[list[dict[str, Any]], int]:
    """Reads of PATHS between START and END from Vault/OpenBao file-audit JSON lines: (first LIMIT, total).
    Response entries only (one per request, with the outcome); values in the log are HMACed by Vault
    and none is copied here anyway."""
    found: list[dict[str, Any]] = []
    total = 0
    for line in lines:
        if '"response"' not in line or not any(p in line for p in paths):
            continue  # cheap pre-filter: the log holds every request of the server
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        request = entry.get("request") or {}
        if entry.get("type") != "response" or request.get("operation") != "read" or request.get("path") not in paths:
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
        found.append({"time": times.iso(when, millis=True), "operation": "read", "path": str(request.get("path")),
                      "serviceAccount": account, "role": meta.get("role"),
                      "displayName": auth.get("display_name"), "remoteAddress": request.get("remote_address"),
                      "denied": bool(entry.get("error"))})
    return found, total
