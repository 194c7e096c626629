"""Inventory rows of SecretSources issuing certificates (spec.vault.pki): the PKI role as the backend, when
the certificate expires and how old it is, never its serial."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

from rotor.planning.inventory import Cluster, managed, render_csv, render_json, render_table

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
PKI = {"provider": "vault", "vault": {"role": "web", "pki": {"role": "shop-web", "commonName": "web.shop.test"}},
       "target": {"name": "web-tls"}}
STATUS: dict[str, Any] = {"lastChangeTime": "2025-06-01T10:00:00Z", "lastSyncTime": "2025-06-01T10:00:00Z",
          "certificate": {"serial": "4a:1f:9c", "notAfter": "2025-06-02T10:00:00Z", "renewAt": "2025-06-01T12:00:00Z"}}


def test_a_certificate_row_names_the_issuing_role_and_its_expiry_not_its_serial() -> None:
    source = {"metadata": {"namespace": "shop", "name": "web-tls"}, "spec": PKI, "status": STATUS}
    [row] = managed(Cluster(sources=[source]), NOW)
    assert row.backend == "vault:default/pki/issue/shop-web"
    assert row.not_after == "2025-06-02T10:00:00Z" and row.last_sync == "2025-06-01T10:00:00Z"
    header, shown = render_table([row], NOW).splitlines()
    assert shown[header.index("EXPIRES"):header.index("OVERDUE")].split() == ["in", "22h"]  # notAfter, in the table
    assert "2h" in shown  # its age: since the certificate in the Secret was written
    [item] = json.loads(render_json([row]))
    assert item["notAfter"] == "2025-06-02T10:00:00Z"
    [line] = list(csv.DictReader(io.StringIO(render_csv([row]))))
    assert line["notAfter"] == "2025-06-02T10:00:00Z"
    for rendered in (render_table([row], NOW), render_json([row]), render_csv([row])):
        assert "4a:1f" not in rendered


def test_a_kv_source_has_no_expiry() -> None:
    kv = {"provider": "vault", "vault": {"path": "shop/db", "role": "r"}}
    [row] = managed(Cluster(sources=[{"metadata": {"namespace": "shop", "name": "db"}, "spec": kv}]), NOW)
    assert row.not_after is None and row.backend == "vault:default/secret/shop/db"


def test_the_table_says_how_soon_a_certificate_expires_or_that_it_has() -> None:
    def shown(not_after: str) -> list[str]:
        status = {**STATUS, "certificate": {"serial": "4a:1f:9c", "notAfter": not_after}}
        source = {"metadata": {"namespace": "shop", "name": "web-tls"}, "spec": PKI, "status": status}
        header, line = render_table(managed(Cluster(sources=[source]), NOW), NOW).splitlines()
        return line[header.index("EXPIRES"):header.index("OVERDUE")].split()

    assert shown("2025-06-30T12:00:00Z") == ["in", "29d"]
    assert shown("2025-06-01T09:00:00Z") == ["expired", "3h", "ago"]
    kv = {"metadata": {"namespace": "shop", "name": "db"}, "spec": {"provider": "vault", "vault": {"path": "shop/db"}}}
    header, line = render_table(managed(Cluster(sources=[kv]), NOW), NOW).splitlines()
    assert line[header.index("EXPIRES"):header.index("OVERDUE")].split() == ["-"]
