"""Least privilege, proven: Rotor runs under the chart's ServiceAccount with exactly the chart's RBAC,
delivers a Vault secret, and the API server's audit log of its calls must match a reviewed allow-list,
which must in turn equal what the chart grants (no more, no less).

Rotor runs as its own process (`python -m rotor run --config <the chart's rendered config>`) with a
TokenRequest token of the chart's ServiceAccount: not the admin kubeconfig.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import kubernetes
import pytest

from tests.devenv import Stack

from ..conftest import secret_data, secret_source, vault_role, wait_for, wait_ready
from .harness import (
    RELEASE,
    RELEASE_NAMESPACE,
    OperatorProcess,
    audit_events,
    chart_operator,
    install_chart,
    isolated_stack,
    of_kind,
    render,
    sa_username,
)

Grant = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)

# The reviewed allow-list: every permission Rotor holds, and why. The chart must grant exactly these
# (cluster mode: one ClusterRole), and the audited run must use them (see NOT_EXERCISED).
ALLOWED: dict[Grant, str] = {
    ("rotor.dev", "secretsources", "list"): "Rotor's SecretSource feed lists them when its watch starts",
    ("rotor.dev", "secretsources", "watch"): "Rotor's SecretSource feed watches them",
    ("rotor.dev", "secretsources", "patch"): "Rotor adds/removes its cleanup finalizer",
    ("rotor.dev", "secretsources/status", "patch"): "Rotor writes conditions and the synced version",
    ("", "secrets", "get"): "read the target Secret before writing; read the HMAC key; kubernetes backend",
    ("", "secrets", "list"): "managed Secrets (label-selected): loaded at start-up, and when the drift watch starts",
    ("", "secrets", "watch"): "managed Secrets (label-selected): drift and deletion are restored",
    ("", "secrets", "create"): "deliver a new Secret; create the HMAC key once",
    ("", "secrets", "update"): "replace a Secret on its observed resourceVersion (no blind patch)",
    ("", "secrets", "delete"): "deletionPolicy Delete, and recreate when the type changes",
    ("", "serviceaccounts/token", "create"): "TokenRequest: log in to Vault as the workload's own identity",
    ("", "events", "create"): "Events on SecretSources (Synced, PermissionDenied, ...)",
    ("rotor.dev", "rotationpolicies", "list"): "Kopf lists RotationPolicies when its watch starts",
    ("rotor.dev", "rotationpolicies", "watch"): "Kopf watches RotationPolicies",
    ("rotor.dev", "rotationpolicies", "patch"): "Kopf's finalizer and progress annotations on RotationPolicies",
    ("rotor.dev", "rotationpolicies/status", "patch"): "Rotor writes a RotationPolicy's phase and versions",
    ("rotor.dev", "leakincidents", "list"): "Kopf lists LeakIncidents when its watch starts",
    ("rotor.dev", "leakincidents", "watch"): "Kopf watches LeakIncidents",
    ("rotor.dev", "leakincidents", "patch"): "Kopf's finalizer and progress annotations on LeakIncidents",
    ("rotor.dev", "leakincidents/status", "patch"): "Rotor records the leak runbook's steps in the status",
    **{("apps", kind, verb): f"{verb} {kind}: consumers of a Secret, rolled on change by a pod-template annotation"
       for kind in ("deployments", "statefulsets", "daemonsets") for verb in ("list", "watch", "patch")},
    **{("batch", "cronjobs", verb): f"{verb} cronjobs: consumers of a Secret, their job template re-annotated"
       for verb in ("list", "watch", "patch")},
    ("rotor.dev", "rotationpolicies", "create"): "a LeakIncident's emergency rotation for a secret without a policy",
    ("rotor.dev", "rotationpolicies", "delete"): "the emergency RotationPolicy is deleted after the incident",
    ("", "pods", "list"): "a LeakIncident's blast radius: Pods reading the leaked Secret",
    ("batch", "jobs", "list"): "a LeakIncident's blast radius: Jobs reading the leaked Secret",
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"): "Kopf resource discovery",
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"): "Kopf notices CRDs appearing or going",
    ("kopf.dev", "clusterkopfpeerings", "list"): "HA: Kopf lists the peering object",
    ("kopf.dev", "clusterkopfpeerings", "watch"): "HA: Kopf watches the other replicas' keep-alives",
    ("kopf.dev", "clusterkopfpeerings", "patch"): "HA: Kopf writes this replica's keep-alive",
}
# Calls Rotor makes and is refused on purpose (it tolerates the refusal): not granted.
EXPECTED_DENIED: dict[Grant, str] = {
    ("", "namespaces", "create"): "Rotor tries to create its own namespace; Helm creates it, so no grant",
}
# Allowed but not exercised by this scenario; each with the reason it is still needed.
# (Their use is proven by the delivery and rotation integration tests, which run with admin rights.)
NOT_EXERCISED: dict[Grant, str] = {
    ("rotor.dev", "rotationpolicies", "patch"): "only with a RotationPolicy (tests/integration rotation tests)",
    ("rotor.dev", "rotationpolicies/status", "patch"): "only with a RotationPolicy",
    ("rotor.dev", "leakincidents", "patch"): "only with a LeakIncident (the leak incident tests)",
    ("rotor.dev", "leakincidents/status", "patch"): "only with a LeakIncident",
    **{("apps", kind, "patch"): "only when a consuming workload must restart (tests/integration/test_delivery.py)"
       for kind in ("deployments", "statefulsets", "daemonsets")},
    ("batch", "cronjobs", "patch"): "only when a consuming CronJob must restart",
    ("rotor.dev", "rotationpolicies", "create"): "only for a LeakIncident on a secret without a policy",
    ("rotor.dev", "rotationpolicies", "delete"): "only after such an emergency rotation",
    ("", "pods", "list"): "only while a LeakIncident identifies its blast radius (e2e leak scenario)",
    ("batch", "jobs", "list"): "only while a LeakIncident identifies its blast radius (e2e leak scenario)",
}


def chart_grants(rules: list[dict[str, Any]]) -> set[Grant]:
    return {(group, resource, verb) for rule in rules for group in rule.get("apiGroups", [])
            for resource in rule.get("resources", []) for verb in rule.get("verbs", [])}


def observed(stack: Stack, username: str) -> tuple[set[Grant], set[Grant]]:
    """(granted calls, refused calls) the user made, from the audit log."""
    used: set[Grant] = set()
    refused: set[Grant] = set()
    for event in audit_events(stack, username):
        ref = event.get("objectRef")
        if not ref:
            continue  # non-resource URLs (discovery: /api, /apis) are open to every authenticated user
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        grant = (ref.get("apiGroup", ""), resource, event["verb"])
        # A refusal by RBAC, as the authorizer recorded it; a 403 for another cause (e.g. creating in a
        # namespace another test is deleting) is not a missing grant, and the call was still authorized.
        decision = (event.get("annotations") or {}).get("authorization.k8s.io/decision")
        (refused if decision == "forbid" else used).add(grant)
    return used, refused


@pytest.fixture(scope="module")
def plane(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    return isolated_stack(pytestconfig, tmp_path_factory)


@pytest.fixture(scope="module")
def admin(plane: Stack) -> kubernetes.client.ApiClient:
    return kubernetes.config.new_client_from_config(config_file=plane.info.kubeconfig)


@pytest.fixture(scope="module")
def rotor(plane: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """The chart's objects applied (server-side), Rotor running as their ServiceAccount."""
    docs = install_chart(plane)
    process = chart_operator(plane, docs, tmp_path_factory.mktemp("rbac"), "rotor-rbac-0").start()
    process.wait_log("Rotor started", timeout=60)
    yield process
    process.stop()


def test_rotor_works_with_exactly_the_permissions_the_chart_grants(
        plane: Stack, admin: kubernetes.client.ApiClient, rotor: OperatorProcess) -> None:
    core = kubernetes.client.CoreV1Api(admin)
    custom = kubernetes.client.CustomObjectsApi(admin)
    vault = hvac.Client(url=plane.info.vault_addr, token=plane.info.vault_root_token)
    namespace = f"rbac-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": namespace}})
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "app"}})
    role = vault_role(vault, namespace)
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "pw-1"}, mount_point="secret")

    # Deliver, restore drift, then delete (deletionPolicy Delete): every verb the chart grants.
    secret_source(custom, namespace, "db", {"provider": "vault", "serviceAccountName": "app",
                                            "vault": {"path": f"{namespace}/db", "role": role}})
    wait_ready(custom, namespace, "db", timeout=60)
    assert secret_data(core, namespace, "db") == {"password": b"pw-1"}
    core.patch_namespaced_secret("db", namespace, {"data": {"password": base64.b64encode(b"edited").decode()}})
    wait_for(lambda: secret_data(core, namespace, "db") == {"password": b"pw-1"}, timeout=20, what="drift restored")
    custom.delete_namespaced_custom_object("rotor.dev", "v1alpha1", namespace, "secretsources", "db")
    wait_for(lambda: secret_data(core, namespace, "db") is None, timeout=20, what="Secret deleted with its source")
    assert rotor.alive(), rotor.tail()

    user = sa_username(RELEASE_NAMESPACE, RELEASE)

    def settled() -> tuple[set[Grant], set[Grant]] | None:
        # Watches on kinds this scenario never touches start a little later under load: give them time.
        seen = observed(plane, user)
        return seen if not set(ALLOWED) - seen[0] - set(NOT_EXERCISED) else None

    try:
        used, refused = wait_for(settled, timeout=30, what="every granted call in the audit log")
    except AssertionError:
        used, refused = observed(plane, user)
    (cluster_role,) = of_kind(render(f"vaultConnections.default.address={plane.info.vault_addr}"), "ClusterRole")
    granted = chart_grants(cluster_role["rules"])
    print("\nAPI calls Rotor made under the chart's ServiceAccount:")
    for grant in sorted(used | refused):
        print(f"  {'DENIED ' if grant in refused else 'ok     '}{grant[0] or 'core'}/{grant[1]} {grant[2]}")
    assert granted == set(ALLOWED), (f"the chart grants {sorted(granted - set(ALLOWED))} beyond the allow-list "
                                     f"and lacks {sorted(set(ALLOWED) - granted)}")
    assert refused == set(EXPECTED_DENIED), f"refused calls: {sorted(refused)}; log:\n{rotor.tail()}"
    assert used <= set(ALLOWED), f"Rotor used permissions outside the allow-list: {sorted(used - set(ALLOWED))}"
    assert set(ALLOWED) - used <= set(NOT_EXERCISED), (
        f"granted but never used (drop them, or list them in NOT_EXERCISED with a reason): "
        f"{sorted(set(ALLOWED) - used - set(NOT_EXERCISED))}")


def test_the_service_account_cannot_read_what_it_was_not_granted(plane: Stack, rotor: OperatorProcess,
                                                                 tmp_path: Path) -> None:
    """The same token the operator uses is refused for pod reads, ConfigMaps, RBAC objects and Secret patches
    (it may list pods, to find a leaked Secret's readers, but not read one or its logs)."""
    kubeconfig = rotor.kubeconfig
    api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    for call in (lambda: kubernetes.client.CoreV1Api(api).read_namespaced_pod_log("any", "default"),
                 lambda: kubernetes.client.CoreV1Api(api).list_config_map_for_all_namespaces(),
                 lambda: kubernetes.client.CoreV1Api(api).delete_namespace(RELEASE_NAMESPACE),
                 lambda: kubernetes.client.RbacAuthorizationV1Api(api).list_cluster_role(),
                 lambda: kubernetes.client.CoreV1Api(api).patch_namespaced_secret(
                     "x", RELEASE_NAMESPACE, {"metadata": {"labels": {"a": "b"}}})):
        with pytest.raises(kubernetes.client.ApiException) as caught:
            call()
        assert caught.value.status == 403
