"""Report a leak: Rotor contains it (denylist), rotates and revokes, and keeps the record."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from .conftest import Target
from .scenario import rotator, tenant, wait_for


def test_reported_leak_is_contained_and_audited(target: Target) -> None:
    with tenant(target) as t:
        t.write("db", {"password": "leaked-password"})
        t.secret_source("db", "db", target={"name": "db-credentials"}, refresh={"interval": "2s", "jitter": 0})
        wait_for(lambda: t.ready("db"), 90, "SecretSource db Ready")
        role = rotator(t)
        t.custom.create_namespaced_custom_object("rotor.dev", "v1alpha1", t.namespace, "rotationpolicies", {
            "apiVersion": "rotor.dev/v1alpha1", "kind": "RotationPolicy", "metadata": {"name": "db"},
            "spec": {"secretSourceRef": {"name": "db"}, "strategy": "overlap", "schedule": {"interval": "720h"},
                     "identity": {"serviceAccountName": "rotator", "role": role},
                     "overlap": {"window": "2s"}}})
        # As an SRE would: one command.
        report = subprocess.run(
            [sys.executable, "-m", "rotor", "leak", "report", f"{t.namespace}/db", "--where", "ci-logs",
             "--ref", "https://ci.example/build/1"], capture_output=True, text=True, timeout=60,
            env={**os.environ, "KUBECONFIG": target.kubeconfig})
        assert report.returncode == 0, report.stderr

        def prevented() -> dict[str, Any] | None:
            items = t.custom.list_namespaced_custom_object("rotor.dev", "v1alpha1", t.namespace,
                                                           "leakincidents")["items"]
            status = (items[0].get("status") or {}) if items else {}
            return status if status.get("phase") == "Prevented" else None

        status = wait_for(prevented, 180, "the runbook to reach Prevented")
        assert status["denylist"], "the leaked value is denylisted"
        assert (t.secret("db-credentials") or {})["password"] != b"leaked-password"
        assert "leaked-password" not in str(status)
        # Writing the leaked value back into Vault never delivers it again.
        t.write("db", {"password": "leaked-password"})
        wait_for(lambda: any(c["reason"] == "Denylisted" for c in (t.custom.get_namespaced_custom_object(
            "rotor.dev", "v1alpha1", t.namespace, "secretsources", "db").get("status") or {}).get("conditions", [])),
            60, "the SecretSource to refuse the leaked value")
        assert (t.secret("db-credentials") or {})["password"] != b"leaked-password"
