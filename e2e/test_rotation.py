"""Rotate with overlap: a RotationPolicy publishes a new value, readers get it, then the old is revoked."""

from __future__ import annotations

import uuid
from typing import Any

from .conftest import Target
from .scenario import rotator, tenant, wait_for


def test_rotation_with_overlap_never_breaks_a_reader(target: Target) -> None:
    with tenant(target) as t:
        t.write("db", {"username": "app", "password": "before-rotation"})
        t.secret_source("db", "db", target={"name": "db-credentials"})
        wait_for(lambda: t.ready("db"), 90, "SecretSource db Ready")
        role = rotator(t)
        t.custom.create_namespaced_custom_object("rotor.dev", "v1alpha1", t.namespace, "rotationpolicies", {
            "apiVersion": "rotor.dev/v1alpha1", "kind": "RotationPolicy", "metadata": {"name": "db"},
            "spec": {"secretSourceRef": {"name": "db"}, "strategy": "overlap", "schedule": {"interval": "720h"},
                     "identity": {"serviceAccountName": "rotator", "role": role},
                     "generator": {"type": "password", "length": 24, "key": "password"},
                     "overlap": {"window": "3s"}}})
        t.custom.patch_namespaced_custom_object("rotor.dev", "v1alpha1", t.namespace, "rotationpolicies", "db", {
            "metadata": {"annotations": {"rotor.dev/rotate-now": uuid.uuid4().hex}}})

        def complete() -> dict[str, Any] | None:
            status = t.custom.get_namespaced_custom_object("rotor.dev", "v1alpha1", t.namespace,
                                                           "rotationpolicies", "db").get("status") or {}
            return status if status.get("phase") == "Complete" and status.get("rotations") == 1 else None

        status = wait_for(complete, 120, "the rotation to complete")
        phases = [step["phase"] for step in status["rotation"]["steps"]]
        assert phases[-5:] == ["Propagating", "Verifying", "Overlapping", "Revoking", "Complete"]
        secret = t.secret("db-credentials") or {}
        assert secret["username"] == b"app" and secret["password"] != b"before-rotation"
        assert len(secret["password"]) == 24
        versions = t.vault.secrets.kv.v2.read_secret_metadata(f"{t.namespace}/db", mount_point=target.kv_mount)[
            "data"]["versions"]
        assert versions["1"]["destroyed"], "after the overlap the old value is revoked in Vault"
        assert "before-rotation" not in str(status)
