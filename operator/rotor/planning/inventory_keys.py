"""Inventory rows for signing and encryption keys (RotationPolicies of strategy transit): which key,
its latest version, the minimum versions, the age of the latest version and when it is replaced (a
Transit key version has no expiry of its own: it is retired by the next rotation). Pure: read from the
policies' status (numbers and names only; `rotor inventory --keys`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from rotor.planning import inventory, times


@dataclass(frozen=True)
class KeyRow:
    namespace: str
    rotation_policy: str
    key: str  # <mount>/<key>
    latest_version: int | None  # None until the policy's first rotation recorded the key
    min_decryption_version: int | None
    min_encryption_version: int | None
    latest_created: str | None  # when the latest version was made (Vault's clock)
    delivered_versions: str | None  # exported into the Secret (spec.transit.export), e.g. "2,3"
    last_rotation: str | None
    phase: str | None
    next_rotation: str | None = None  # when the latest version is replaced (the policy's schedule)


def _number(text: Any) -> int | None:
    return int(text) if isinstance(text, str) and text.isdigit() else None


def key_rows(policies: Iterable[Mapping[str, Any]]) -> list[KeyRow]:
    """One row per transit RotationPolicy: what its last rotation recorded (status.active), or the key
    it names when it has not rotated yet."""
    rows = []
    for policy in policies:
        spec = policy.get("spec") or {}
        if spec.get("strategy") != "transit":
            continue
        meta, status = policy.get("metadata") or {}, policy.get("status") or {}
        active = status.get("active") or {}
        transit = spec.get("transit") or {}
        rows.append(KeyRow(
            namespace=str(meta.get("namespace", "")), rotation_policy=str(meta.get("name", "")),
            key=str(active.get("key") or f"{transit.get('mount') or 'transit'}/{transit.get('key', '')}"),
            latest_version=_number(active.get("keyVersion")),
            min_decryption_version=_number(active.get("minDecryptionVersion")),
            min_encryption_version=_number(active.get("minEncryptionVersion")),
            latest_created=active.get("keyVersionCreated"), delivered_versions=active.get("deliveredVersions"),
            last_rotation=status.get("lastRotationTime"), phase=status.get("phase"),
            next_rotation=status.get("nextRotationTime")))
    return sorted(rows, key=lambda r: (r.namespace, r.rotation_policy))


def _cell(value: int | str | None) -> str:
    return "-" if value is None or value == "" else str(value)


def render_table(rows: Sequence[KeyRow], now: datetime) -> str:
    header = ["NAMESPACE", "POLICY", "KEY", "LATEST", "MIN DECRYPT", "MIN ENCRYPT", "AGE", "NEXT ROTATION",
              "DELIVERED", "PHASE"]
    cells = [[r.namespace, r.rotation_policy, r.key, _cell(r.latest_version), _cell(r.min_decryption_version),
              _cell(r.min_encryption_version), inventory.age(r.latest_created, now),
              inventory.until(r.next_rotation, now, past="overdue {}"), _cell(r.delivered_versions), _cell(r.phase)]
             for r in rows]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in [header, *cells]) + "\n"


def records(rows: Iterable[KeyRow], now: datetime) -> list[dict[str, Any]]:
    """The rows as JSON objects (camelCase, as `rotor inventory -o json`), with the latest version's age."""
    out = []
    for row in rows:
        made = times.parse_optional(row.latest_created)
        out.append({**{_camel(k): v for k, v in asdict(row).items()},
                    "latestAgeSeconds": int((now - made).total_seconds()) if made is not None else None})
    return out


def render_json(rows: Sequence[KeyRow], now: datetime) -> str:
    return json.dumps(records(rows, now), indent=2) + "\n"


def render_csv(rows: Sequence[KeyRow], now: datetime) -> str:
    found = records(rows, now)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[*(_camel(f.name) for f in fields(KeyRow)), "latestAgeSeconds"],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in item.items()} for item in found)
    return out.getvalue()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
