"""Hostile tenants against SecretSource sync, on the real API server, Vault and a running Rotor.

Each case is what a tenant able to create SecretSources (and Secrets) in their namespace could try, and
each asserts what the VICTIM would notice: their Secret's bytes, labels, annotations and
resourceVersion; and for values, every place a reader without Secret rights sees (the status, the
Events, the operator's log lines).
"""

from __future__ import annotations

import base64
from typing import Any

import hvac
import kubernetes
import pytest

from rotor.api import keys

from ..conftest import OperatorLogs, get_source, secret_data, secret_source, wait_for, wait_ready

pytestmark = pytest.mark.usefixtures("operator")

CANARY = "canary-3f9b1c7e5d"


def vault_spec(namespace: str, role: str, **target: Any) -> dict[str, Any]:
    return {"provider": "vault", "serviceAccountName": "app", "vault": {"path": f"{namespace}/db", "role": role},
            "refresh": {"interval": "1h"}, "target": target}


def victim_secret(core: Any, namespace: str, name: str, *, type: str = "Opaque",
                  labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
                  data: dict[str, bytes] | None = None) -> Any:
    """A Secret someone other than Rotor made (cert-manager, Helm, a person)."""
    body = {"metadata": {"name": name, "labels": labels or {"team": "victim"},
                         "annotations": annotations or {"owner": "victim"}},
            "type": type, "data": {k: base64.b64encode(v).decode() for k, v in (data or {"key": b"victim"}).items()}}
    return core.create_namespaced_secret(namespace, body)


def victims_view(core: Any, namespace: str, name: str) -> tuple[Any, ...]:
    """What the victim would notice changing: bytes, type, labels, annotations, owners, resourceVersion."""
    secret = core.read_namespaced_secret(name, namespace)
    meta = secret.metadata
    return (secret.data, secret.type, meta.labels, meta.annotations, meta.owner_references, meta.resource_version)


@pytest.fixture
def db_secret(vault: hvac.Client, namespace: str, app_identity: str) -> str:
    """The tenant's own Vault secret; returns their Vault role."""
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": CANARY, "user": "app"},
                                                mount_point="secret")
    return app_identity


# -- no value in any message -------------------------------------------------------------------------

HOSTILE_TEMPLATES = {
    "value-indexed": "{{ values[values.password] }}",
    "attribute-of-value": "{{ values.password.missing }}",
    "filter-on-value": "{{ values.password | int + [] }}",
    "map-by-value": "{{ values.password | map(values.password) | list }}",
    "dict-by-value": "{{ {}[values.user ~ values.password] }}",
}


def test_hostile_templates_never_put_a_value_in_status_events_or_logs(
        custom: Any, core: Any, namespace: str, db_secret: str, operator_logs: OperatorLogs) -> None:
    first_line = len(operator_logs.lines)
    for name, text in HOSTILE_TEMPLATES.items():
        secret_source(custom, namespace, name, vault_spec(namespace, db_secret, template={"data": {"out": text}}))
    for name in HOSTILE_TEMPLATES:
        condition = wait_ready(custom, namespace, name, "False", "TemplateError")
        assert "spec.target.template.data['out']" in condition["message"]
        assert CANARY not in str(get_source(custom, namespace, name)["status"])
        assert secret_data(core, namespace, name) is None
    events = core.list_namespaced_event(namespace).items
    assert sum(e.reason == "TemplateError" for e in events) >= len(HOSTILE_TEMPLATES)
    assert not [e.message for e in events if CANARY in (e.message or "")]
    assert not [line for line in operator_logs.lines[first_line:] if CANARY in line]


# -- ownership -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["Merge", "Owner", "Orphan"])
def test_a_secret_that_did_not_opt_in_is_left_alone(custom: Any, core: Any, namespace: str, db_secret: str,
                                                    policy: str) -> None:
    victim_secret(core, namespace, "tls")
    before = victims_view(core, namespace, "tls")
    secret_source(custom, namespace, "attack", vault_spec(namespace, db_secret, name="tls", creationPolicy=policy))
    condition = wait_ready(custom, namespace, "attack", "False", "Conflict")
    assert keys.ALLOW_SOURCE in condition["message"]
    assert victims_view(core, namespace, "tls") == before


def test_forged_rotor_labels_grant_nothing(custom: Any, core: Any, namespace: str, db_secret: str) -> None:
    victim_secret(core, namespace, "app", labels={keys.MANAGED_BY: keys.MANAGED_BY_VALUE,
                                                  keys.SOURCE_LABEL: "attack"})
    before = victims_view(core, namespace, "app")
    secret_source(custom, namespace, "attack", vault_spec(namespace, db_secret, name="app"))
    wait_ready(custom, namespace, "attack", "False", "Conflict")
    assert victims_view(core, namespace, "app") == before


@pytest.mark.parametrize(("secret_type", "extra"), [
    ("kubernetes.io/service-account-token", {"kubernetes.io/service-account.name": "app"}),
    ("bootstrap.kubernetes.io/token", {}),
    ("helm.sh/release.v1", {}),
])
def test_types_rotor_never_writes_are_refused_even_when_opted_in(custom: Any, core: Any, namespace: str,
                                                                  db_secret: str, secret_type: str,
                                                                  extra: dict[str, str]) -> None:
    victim_secret(core, namespace, "special", type=secret_type, annotations={keys.ALLOW_SOURCE: "attack", **extra})
    before = victims_view(core, namespace, "special")
    secret_source(custom, namespace, "attack", vault_spec(namespace, db_secret, name="special",
                                                          creationPolicy="Merge"))
    condition = wait_ready(custom, namespace, "attack", "False", "Conflict")
    assert secret_type in condition["message"] and "never writes" in condition["message"]
    assert victims_view(core, namespace, "special") == before


def test_a_second_source_on_one_secret_is_conflict_and_the_first_keeps_it(custom: Any, core: Any, namespace: str,
                                                                          db_secret: str) -> None:
    secret_source(custom, namespace, "first", vault_spec(namespace, db_secret, name="shared"))
    wait_ready(custom, namespace, "first")
    before = victims_view(core, namespace, "shared")
    # Even with the Secret's owner naming it: one Secret has one SecretSource.
    core.patch_namespaced_secret("shared", namespace, {"metadata": {"annotations": {keys.ALLOW_SOURCE: "second"}}})
    before = victims_view(core, namespace, "shared")
    secret_source(custom, namespace, "second", vault_spec(namespace, db_secret, name="shared",
                                                          creationPolicy="Merge"))
    condition = wait_ready(custom, namespace, "second", "False", "Conflict")
    assert "one Secret has one SecretSource" in condition["message"]
    assert victims_view(core, namespace, "shared") == before
    wait_ready(custom, namespace, "first")


def test_merge_then_owner_never_takes_over_nor_recreates(custom: Any, core: Any, namespace: str,
                                                         db_secret: str) -> None:
    victim_secret(core, namespace, "config", annotations={keys.ALLOW_SOURCE: "app", "owner": "victim"})
    secret_source(custom, namespace, "app", vault_spec(namespace, db_secret, name="config", creationPolicy="Merge"))
    wait_ready(custom, namespace, "app")
    merged = victims_view(core, namespace, "config")
    uid = core.read_namespaced_secret("config", namespace).metadata.uid
    custom.patch_namespaced_custom_object("rotor.dev", "v1alpha1", namespace, "secretsources", "app", {
        "spec": {"data": [{"key": "username", "property": "user"}, {"key": "password", "property": "password"}],
                 "target": {"name": "config", "creationPolicy": "Owner", "type": "kubernetes.io/basic-auth"}}})
    condition = wait_ready(custom, namespace, "app", "False", "Conflict")
    assert "was not created by this SecretSource" in condition["message"]
    secret = core.read_namespaced_secret("config", namespace)
    assert secret.metadata.uid == uid  # never deleted and recreated for the type change
    assert victims_view(core, namespace, "config") == merged  # no owner reference, no data replaced


def test_reserved_keys_are_refused_at_admission_naming_the_field(custom: Any, namespace: str) -> None:
    for field, key in (("annotations", keys.ALLOWED_NAMESPACES), ("labels", keys.SOURCE_LABEL),
                       ("annotations", "x.rotor.dev/anything")):
        with pytest.raises(kubernetes.client.ApiException) as caught:
            secret_source(custom, namespace, "attack", {"provider": "vault", "vault": {"path": "a", "role": "r"},
                                                        "target": {field: {key: "*"}}})
        assert caught.value.status == 422 and f"spec.target.{field}" in caught.value.body


def test_releasing_a_merge_target_keeps_what_its_owner_set(custom: Any, core: Any, namespace: str,
                                                           db_secret: str) -> None:
    owners = {keys.ALLOW_SOURCE: "app", keys.ALLOWED_NAMESPACES: "other-team", "owner": "victim"}
    victim_secret(core, namespace, "config", annotations=owners, data={"mine": b"keep"})
    original = victims_view(core, namespace, "config")
    secret_source(custom, namespace, "app", vault_spec(namespace, db_secret, name="config", creationPolicy="Merge",
                                                       deletionPolicy="Delete"))
    wait_ready(custom, namespace, "app")
    assert secret_data(core, namespace, "config") == {"mine": b"keep", "password": CANARY.encode(), "user": b"app"}
    custom.delete_namespaced_custom_object("rotor.dev", "v1alpha1", namespace, "secretsources", "app")

    def released() -> bool:
        return secret_data(core, namespace, "config") == {"mine": b"keep"}

    wait_for(released, what="Rotor's keys removed")
    data, type_, labels, annotations, owners_refs, _ = victims_view(core, namespace, "config")
    assert (data, type_, labels, annotations, owners_refs) == original[:5]
