"""Defense in depth, proven against the real API server: the chart's ValidatingAdmissionPolicies confine
Rotor's own ServiceAccount whatever its RBAC allows. Requests are made with a TokenRequest token of
that ServiceAccount (what the operator's pod uses), after the chart was rendered by helm and applied.

As Rotor: an unlabelled Secret of a tenant is neither overwritten, taken over, nor deleted (its bytes
are checked as the victim would see them), a Rotor-managed one is written as before, its HMAC key is
created, Secret types Rotor must never write are refused, and no token is minted for a ServiceAccount
of kube-system or of Rotor's own namespace.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import kubernetes
import pytest
from kubernetes.client import ApiException, CoreV1Api

from tests.devenv import Stack

from ..conftest import wait_for
from ..packaging.harness import (
    RELEASE,
    RELEASE_NAMESPACE,
    ensure_namespace,
    install_chart,
    isolated_stack,
    sa_username,
    service_account_kubeconfig,
)

MANAGED = {"app.kubernetes.io/managed-by": "rotor"}
SECRET_POLICY, TOKEN_POLICY = f"{RELEASE}-secret-writes", f"{RELEASE}-tokens"


@pytest.fixture(scope="module")
def plane(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    return isolated_stack(pytestconfig, tmp_path_factory)


@pytest.fixture(scope="module")
def admin(plane: Stack) -> CoreV1Api:
    return CoreV1Api(kubernetes.config.new_client_from_config(config_file=plane.info.kubeconfig))


@pytest.fixture(scope="module")
def docs(plane: Stack) -> list[dict[str, Any]]:
    """The chart, as `helm install` would create it (the admission policies on by default)."""
    return install_chart(plane)


@pytest.fixture(scope="module")
def rotor(plane: Stack, docs: list[dict[str, Any]], admin: CoreV1Api,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreV1Api]:
    """Rotor's ServiceAccount, once the API server enforces the policies (they load asynchronously)."""
    kubeconfig = service_account_kubeconfig(plane, RELEASE_NAMESPACE, RELEASE,
                                            tmp_path_factory.mktemp("vap") / "rotor.kubeconfig")
    api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    core = CoreV1Api(api)
    probe = f"vap-probe-{uuid.uuid4().hex[:8]}"
    ensure_namespace(admin, probe)

    def enforced() -> bool:
        try:
            core.create_namespaced_secret(probe, {"metadata": {"name": "probe"}}, dry_run="All")
        except ApiException as exc:
            return exc.status == 403 and SECRET_POLICY in str(exc.body)
        return False

    wait_for(enforced, timeout=30, what="the Secret policy enforced")
    yield core
    admin.delete_namespace(probe)


@pytest.fixture
def tenant(admin: CoreV1Api) -> Iterator[str]:
    name = f"tenant-{uuid.uuid4().hex[:8]}"
    ensure_namespace(admin, name)
    yield name
    admin.delete_namespace(name)


def refused_by(policy: str, call: Callable[[], Any]) -> str:
    """The API server's message when CALL is refused by POLICY (not by RBAC, not for another reason)."""
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status == 403, caught.value.body
    body = str(caught.value.body)
    assert f"ValidatingAdmissionPolicy '{policy}'" in body, body
    return body


def snapshot(admin: CoreV1Api, namespace: str, name: str) -> tuple[str, dict[str, str], dict[str, str]]:
    secret = admin.read_namespaced_secret(name, namespace)
    return secret.metadata.resource_version, dict(secret.data or {}), dict(secret.metadata.labels or {})


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def test_rotor_cannot_overwrite_take_over_or_delete_an_unlabelled_secret(rotor: CoreV1Api, admin: CoreV1Api,
                                                                         tenant: str) -> None:
    """The victim's Secret (a cert-manager TLS Secret, say) keeps its bytes whatever Rotor attempts."""
    admin.create_namespaced_secret(tenant, {"metadata": {"name": "tls", "labels": {"app": "web"}},
                                            "type": "kubernetes.io/tls",
                                            "data": {"tls.crt": b64(b"victim-cert"), "tls.key": b64(b"victim-key")}})
    before = snapshot(admin, tenant, "tls")
    current = rotor.read_namespaced_secret("tls", tenant)  # RBAC lets Rotor read it: the policy guards writes
    merged = {"metadata": {"name": "tls", "resourceVersion": current.metadata.resource_version,
                           "labels": {"app": "web", **MANAGED, "rotor.dev/secret-source": "attacker"}},
              "type": "kubernetes.io/tls", "data": {**current.data, "tls.key": b64(b"attacker-key")}}
    refused_by(SECRET_POLICY, lambda: rotor.replace_namespaced_secret("tls", tenant, merged))  # Merge / Owner
    refused_by(SECRET_POLICY, lambda: rotor.delete_namespaced_secret("tls", tenant))  # a type change recreates
    assert snapshot(admin, tenant, "tls") == before

    message = refused_by(SECRET_POLICY, lambda: rotor.create_namespaced_secret(
        tenant, {"metadata": {"name": "planted"}, "data": {"k": b64(b"v")}}))
    assert "managed-by=rotor" in message
    with pytest.raises(ApiException) as missing:
        admin.read_namespaced_secret("planted", tenant)
    assert missing.value.status == 404


def test_rotor_writes_secrets_it_manages_as_before(rotor: CoreV1Api, admin: CoreV1Api, tenant: str) -> None:
    """Create, replace, release (its label removed) and delete: the operator's ordinary writes."""
    created = rotor.create_namespaced_secret(tenant, {"metadata": {"name": "db", "labels": MANAGED},
                                                      "data": {"password": b64(b"v1")}})
    replaced = rotor.replace_namespaced_secret("db", tenant, {
        "metadata": {"name": "db", "labels": MANAGED, "resourceVersion": created.metadata.resource_version},
        "data": {"password": b64(b"v2")}})
    assert snapshot(admin, tenant, "db")[1] == {"password": b64(b"v2")}
    rotor.replace_namespaced_secret("db", tenant, {  # deletionPolicy Retain: Rotor lets go of it
        "metadata": {"name": "db", "resourceVersion": replaced.metadata.resource_version},
        "data": {"password": b64(b"v2")}})
    assert snapshot(admin, tenant, "db")[2] == {}
    refused_by(SECRET_POLICY, lambda: rotor.delete_namespaced_secret("db", tenant))  # released: no longer Rotor's

    # A Secret its owner labelled to opt in is written like one Rotor created.
    admin.create_namespaced_secret(tenant, {"metadata": {"name": "opted-in", "labels": MANAGED},
                                            "data": {"other": b64(b"kept")}})
    rotor.delete_namespaced_secret("opted-in", tenant)


def test_rotor_creates_its_hmac_key_but_nothing_else_unlabelled_in_its_namespace(rotor: CoreV1Api) -> None:
    try:
        rotor.create_namespaced_secret(RELEASE_NAMESPACE, {"metadata": {"name": "rotor-hmac-key"},
                                                           "data": {"hmac-key": b64(b"k" * 32)}}, dry_run="All")
    except ApiException as exc:
        assert exc.status == 409, exc.body  # another test's operator created it already: admitted all the same
    refused_by(SECRET_POLICY, lambda: rotor.create_namespaced_secret(
        RELEASE_NAMESPACE, {"metadata": {"name": "rotor-hmac-key-2"}, "data": {"k": b64(b"v")}}, dry_run="All"))


def test_secret_types_rotor_must_never_write_are_refused_even_labelled(rotor: CoreV1Api, tenant: str) -> None:
    message = refused_by(SECRET_POLICY, lambda: rotor.create_namespaced_secret(
        tenant, {"metadata": {"name": "sh.helm.release.v1.web.v1", "labels": MANAGED},
                 "type": "helm.sh/release.v1", "data": {"release": b64(b"H4sI")}}))
    assert "helm.sh/release.v1" in message


def test_no_token_for_service_accounts_of_kube_system_or_rotors_namespace(rotor: CoreV1Api, admin: CoreV1Api,
                                                                           plane: Stack, tenant: str) -> None:
    """RBAC grants serviceaccounts/token create cluster-wide (Rotor logs in to Vault as each workload);
    the policy refuses it where a token would be a privilege escalation."""
    for namespace, name in (("kube-system", "default"), (tenant, "app")):
        try:
            admin.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
        except ApiException as exc:
            assert exc.status == 409  # no controller-manager here: kube-system/default may not exist yet
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
               "spec": {"audiences": ["vault"], "expirationSeconds": 600}}
    # Asked by the admin: a review made as Rotor would show in the audit log test_rbac.py checks.
    review = kubernetes.client.AuthorizationV1Api(admin.api_client).create_subject_access_review(
        {"spec": {"user": sa_username(RELEASE_NAMESPACE, RELEASE),
                  "groups": ["system:serviceaccounts", f"system:serviceaccounts:{RELEASE_NAMESPACE}"],
                  "resourceAttributes": {"namespace": "kube-system", "verb": "create", "resource": "serviceaccounts",
                                         "subresource": "token", "name": "default"}}})
    assert review.status.allowed, "RBAC allows it: the refusal below is the policy's"
    for namespace, name in (("kube-system", "default"), (RELEASE_NAMESPACE, RELEASE)):
        message = refused_by(TOKEN_POLICY, partial(rotor.create_namespaced_service_account_token, name, namespace,
                                                   request))
        assert f"namespace {namespace}" in message
    issued = rotor.create_namespaced_service_account_token("app", tenant, request)  # a workload's own: allowed
    assert issued.status.token


def test_the_policy_confines_only_rotors_service_account(rotor: CoreV1Api, admin: CoreV1Api, tenant: str) -> None:
    admin.create_namespaced_secret(tenant, {"metadata": {"name": "plain"}, "data": {"k": b64(b"v")}})
    admin.delete_namespaced_secret("plain", tenant)
