"""Hostile tenants against LeakIncidents, on the real API server, Vault and PostgreSQL with Rotor running
(its admission webhook on).

A tenant may create LeakIncidents in their own namespace. Each case asserts what a VICTIM would
notice: another namespace's SecretSource still Ready and delivering, a Secret's bytes unchanged, a
leaked value still refused after the incident object is gone, a port nobody dialled, the name of the
person who really acted; and what the operator notices when its HMAC key is lost.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import hvac
import kubernetes
import pytest

from rotor.api import keys
from rotor.planning.hashing import value_hmac
from tests.devenv import StackInfo

from ..conftest import (
    OperatorLogs,
    RunningOperator,
    operator_settings,
    secret_data,
    secret_source,
    vault_role,
    wait_for,
    wait_ready,
)

G, V = "rotor.dev", "v1alpha1"
OPERATOR_NS, KEY_SECRET = "rotor-system", "rotor-hmac-key"


@pytest.fixture(scope="module")
def rotor(info: StackInfo, operator_aside: None, operator_logs: OperatorLogs,
          api_client: kubernetes.client.ApiClient) -> Iterator[RunningOperator]:
    """Rotor with its webhook (who reported and resolved incidents), in place of the session operator."""
    admission = kubernetes.client.AdmissionregistrationV1Api(api_client)
    try:
        with RunningOperator(operator_settings(info, webhook_enabled=True, webhook_port=0)) as running:
            wait_for(lambda: _actor_webhook(admission), 30, what="the LeakIncident actor webhook registered")
            yield running
    finally:
        for delete in (admission.delete_mutating_webhook_configuration,
                       admission.delete_validating_webhook_configuration):
            try:
                delete("rotor.dev")
            except kubernetes.client.ApiException:
                pass


def _actor_webhook(admission: Any) -> bool:
    try:
        hooks = admission.read_mutating_webhook_configuration("rotor.dev").webhooks or []
    except kubernetes.client.ApiException:
        return False
    return any(h.name.startswith("record-incident-actors") and h.client_config.ca_bundle for h in hooks)


Tenant = Callable[[], tuple[str, str]]


@pytest.fixture
def tenant(make_namespace: Callable[[str | None], str], core: Any, vault: hvac.Client) -> Tenant:
    """tenant() -> (namespace, Vault role): a namespace whose ServiceAccount app reads secret/<ns>/*."""
    def make() -> tuple[str, str]:
        namespace = make_namespace(None)
        core.create_namespaced_service_account(namespace, {"metadata": {"name": "app"}})
        return namespace, vault_role(vault, namespace)

    return make


def source(custom: Any, vault: hvac.Client, namespace: str, role: str, name: str, data: dict[str, str]) -> None:
    """NAMESPACE's secret NAME in Vault and the SecretSource delivering it to Secret NAME-creds (Ready)."""
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/{name}", data, mount_point="secret")
    secret_source(custom, namespace, name, {
        "provider": "vault", "serviceAccountName": "app", "vault": {"path": f"{namespace}/{name}", "role": role},
        "target": {"name": f"{name}-creds"}, "refresh": {"interval": "1h"}})
    wait_ready(custom, namespace, name)


def resync(custom: Any, namespace: str, name: str) -> None:
    custom.patch_namespaced_custom_object(G, V, namespace, "secretsources", name, {
        "metadata": {"annotations": {keys.REFRESH_NOW: uuid.uuid4().hex}}})


def delivers(custom: Any, core: Any, vault: hvac.Client, namespace: str, name: str, data: dict[str, str]) -> None:
    """The victim changes their secret in Vault: their SecretSource delivers it and stays Ready."""
    revision = uuid.uuid4().hex[:8]
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/{name}", {**data, "rev": revision},
                                                mount_point="secret")
    resync(custom, namespace, name)
    wait_for(lambda: (secret_data(core, namespace, f"{name}-creds") or {}).get("rev") == revision.encode(), 30,
             what=f"{namespace}/{name} delivers its new version")
    wait_ready(custom, namespace, name, "True", "Synced")


def refused(custom: Any, core: Any, logs: OperatorLogs, namespace: str, name: str) -> bytes:
    """A sync of the source, now, refuses the leaked value: Denylisted, its Secret untouched. Returns the
    Secret's bytes."""
    before = core.read_namespaced_secret(f"{name}-creds", namespace)
    mark = len(logs.lines)
    resync(custom, namespace, name)
    wait_for(lambda: any(f"SecretSource {namespace}/{name} failed: Denylisted" in line for line in logs.lines[mark:]),
             30, what=f"a sync of {namespace}/{name} refusing the leaked value")
    wait_ready(custom, namespace, name, "False", "Denylisted")
    after = core.read_namespaced_secret(f"{name}-creds", namespace)
    assert (after.data, after.metadata.resource_version) == (before.data, before.metadata.resource_version)
    return base64.b64decode(after.data["password"])


def report(custom: Any, namespace: str, name: str, source_name: str, **spec: Any) -> None:
    custom.create_namespaced_custom_object(G, V, namespace, "leakincidents", {
        "apiVersion": f"{G}/{V}", "kind": "LeakIncident", "metadata": {"name": name},
        "spec": {"secretSourceRef": {"name": source_name}, "exposure": {"where": "ci-logs"}, **spec}})


def incident(custom: Any, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = custom.get_namespaced_custom_object(G, V, namespace, "leakincidents", name)
    return result


def contained(custom: Any, namespace: str, name: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        status = incident(custom, namespace, name).get("status") or {}
        return status if (status.get("timestamps") or {}).get("contained") else None

    result: dict[str, Any] = wait_for(check, 30, what=f"incident {namespace}/{name} contained")
    return result


def record(core: Any) -> dict[str, Any]:
    """Rotor's own record of the denylists (in its HMAC key Secret)."""
    data = core.read_namespaced_secret(KEY_SECRET, OPERATOR_NS).data or {}
    raw = base64.b64decode(data.get("denylists") or "") or b'{"entries": {}}'
    entries: dict[str, Any] = json.loads(raw)["entries"]
    return entries


def hmac_key(core: Any) -> bytes:
    return base64.b64decode(core.read_namespaced_secret(KEY_SECRET, OPERATOR_NS).data["hmac-key"])


# -- denylists stay where the leak is ----------------------------------------------------------------------

def test_an_incident_on_a_shared_value_leaves_other_namespaces_and_locations_delivering(
        rotor: RunningOperator, custom: Any, core: Any, vault: hvac.Client, tenant: Tenant,
        operator_logs: OperatorLogs) -> None:
    shared = f"Shared-{uuid.uuid4().hex[:12]}"
    attacker, attacker_role = tenant()
    victim, victim_role = tenant()
    source(custom, vault, attacker, attacker_role, "db", {"password": shared})
    source(custom, vault, attacker, attacker_role, "other", {"password": shared})  # same namespace, other path
    source(custom, vault, victim, victim_role, "db", {"password": shared})
    report(custom, attacker, "leak", "db")
    status = contained(custom, attacker, "leak")
    assert value_hmac(hmac_key(core), shared.encode()) in status["denylist"]
    where = f"vault:default/secret/{attacker}/db"
    assert status["denylistScope"] == f"SecretSources of namespace {attacker} reading {where}"
    # The reported secret itself: refused, its Secret kept as it was.
    assert refused(custom, core, operator_logs, attacker, "db") == shared.encode()
    # The victim in another namespace, and another location of the same namespace: still delivering.
    delivers(custom, core, vault, victim, "db", {"password": shared})
    assert (secret_data(core, victim, "db-creds") or {})["password"] == shared.encode()
    delivers(custom, core, vault, attacker, "other", {"password": shared})


def test_a_common_value_is_not_denylisted_and_the_status_names_the_key_and_why(
        rotor: RunningOperator, custom: Any, core: Any, vault: hvac.Client, tenant: Tenant) -> None:
    attacker, attacker_role = tenant()
    victim, victim_role = tenant()
    source(custom, vault, attacker, attacker_role, "db", {"password": "postgres"})
    source(custom, vault, victim, victim_role, "db", {"password": "postgres"})
    report(custom, attacker, "leak", "db")
    status = contained(custom, attacker, "leak")
    assert status["denylist"] == []
    condition = next(c for c in status["conditions"] if c["type"] == keys.DENYLIST_REFUSED)
    assert condition["reason"] == keys.NOT_IDENTIFYING
    assert condition["message"].endswith("password: a common value (a default user, password, host or word)")
    events = [e for e in core.list_namespaced_event(attacker).items if e.reason == keys.DENYLIST_REFUSED]
    assert events and events[0].type == "Warning"
    assert '"postgres"' not in json.dumps(status) and all("postgres" not in (e.message or "") for e in events)
    delivers(custom, core, vault, victim, "db", {"password": "postgres"})
    delivers(custom, core, vault, attacker, "db", {"password": "postgres"})


def test_only_an_incident_in_rotors_namespace_denylists_cluster_wide_until_resolved(
        rotor: RunningOperator, custom: Any, core: Any, vault: hvac.Client, tenant: Tenant,
        operator_logs: OperatorLogs) -> None:
    leaked = f"Fleetwide-{uuid.uuid4().hex[:12]}"
    victim, victim_role = tenant()
    source(custom, vault, victim, victim_role, "db", {"password": leaked})
    name = f"fleet-{uuid.uuid4().hex[:6]}"
    try:
        core.create_namespaced_service_account(OPERATOR_NS, {"metadata": {"name": "app"}})
    except kubernetes.client.ApiException as exc:
        if exc.status != 409:
            raise
    role = vault_role(vault, OPERATOR_NS)
    try:
        source(custom, vault, OPERATOR_NS, role, name, {"password": leaked})
        report(custom, OPERATOR_NS, name, name)
        status = contained(custom, OPERATOR_NS, name)
        assert status["denylistScope"] == "cluster-wide: every SecretSource in every namespace"
        # The operator's word reaches every namespace.
        assert refused(custom, core, operator_logs, victim, "db") == leaked.encode()
        custom.patch_namespaced_custom_object(G, V, OPERATOR_NS, "leakincidents", name, {"spec": {"resolved": True}})
        wait_for(lambda: (incident(custom, OPERATOR_NS, name).get("status") or {}).get("phase") == "Resolved", 30,
                 what="resolved")
        assert incident(custom, OPERATOR_NS, name)["metadata"]["uid"] not in record(core)
        delivers(custom, core, vault, victim, "db", {"password": leaked})  # resolving lifts it
    finally:
        made = (("leakincidents", name), ("secretsources", name), ("rotationpolicies", f"{name}-emergency"))
        for plural, obj in made:
            try:
                custom.delete_namespaced_custom_object(G, V, OPERATOR_NS, plural, obj)
            except kubernetes.client.ApiException:
                pass


def test_deleting_the_incident_does_not_lift_its_denylist_not_even_across_a_restart(
        rotor: RunningOperator, custom: Any, core: Any, vault: hvac.Client, tenant: Tenant,
        operator_logs: OperatorLogs) -> None:
    leaked = f"Leaked-{uuid.uuid4().hex[:12]}"
    namespace, role = tenant()
    source(custom, vault, namespace, role, "db", {"password": leaked})
    report(custom, namespace, "leak", "db")
    status = contained(custom, namespace, "leak")
    uid = incident(custom, namespace, "leak")["metadata"]["uid"]
    digest = value_hmac(hmac_key(core), leaked.encode())
    assert record(core)[uid]["digests"] == status["denylist"] and digest in status["denylist"]
    assert leaked not in json.dumps(record(core))  # digests only
    custom.delete_namespaced_custom_object(G, V, namespace, "leakincidents", "leak")
    wait_for(lambda: not custom.list_namespaced_custom_object(G, V, namespace, "leakincidents")["items"], 30,
             what="incident gone")
    assert refused(custom, core, operator_logs, namespace, "db") == leaked.encode()
    rotor.restart()  # loaded from Rotor's record before the first sync
    assert refused(custom, core, operator_logs, namespace, "db") == leaked.encode()
    assert uid in record(core)


def test_resolving_lifts_the_denylist_for_the_sources_it_covered(
        rotor: RunningOperator, custom: Any, core: Any, vault: hvac.Client, tenant: Tenant,
        operator_logs: OperatorLogs) -> None:
    leaked = f"Leaked-{uuid.uuid4().hex[:12]}"
    namespace, role = tenant()
    source(custom, vault, namespace, role, "db", {"password": leaked})
    report(custom, namespace, "leak", "db")
    contained(custom, namespace, "leak")
    refused(custom, core, operator_logs, namespace, "db")
    custom.patch_namespaced_custom_object(G, V, namespace, "leakincidents", "leak", {"spec": {"resolved": True}})
    delivers(custom, core, vault, namespace, "db", {"password": leaked})


# -- the revocation check dials only allow-listed hosts ------------------------------------------------------------

class Listener:
    """A TCP port on this machine that counts who connects (the host a hostile secret names)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.mark.parametrize(("host", "check"), [
    ("127.0.0.1", "not confirmed: host not allow-listed (operator setting "
                  "vault_connections.default.login_check_hosts)"),
    ("127.0.0.1,127.0.0.1", "not confirmed: a host list is refused (one host per attempt)"),
])
def test_the_revocation_check_never_dials_a_host_the_operator_did_not_allow_list(
        rotor: RunningOperator, custom: Any, core: Any, vault: hvac.Client, tenant: Tenant, host: str,
        check: str) -> None:
    namespace, role = tenant()
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "rotator"}})
    writer = f"{namespace}-rotator"
    vault.sys.create_or_update_policy(name=writer, policy="\n".join(
        f'path "secret/{p}/{namespace}/*" {{ capabilities = ["create", "update", "read"] }}'
        for p in ("data", "metadata", "destroy")))
    vault.write(f"auth/kubernetes/role/{writer}", bound_service_account_names=["rotator"],
                bound_service_account_namespaces=[namespace], policies=[writer], audience="vault", ttl="1h")
    probe = Listener()
    try:
        source(custom, vault, namespace, role, "db", {"username": "app", "password": f"Pw-{uuid.uuid4().hex[:12]}",
                                                      "host": host, "port": str(probe.port)})
        report(custom, namespace, "leak", "db", response={"identity": {"serviceAccountName": "rotator", "role": writer},
                                                          "emergencyWindow": "1s"})

        def revoked() -> dict[str, Any] | None:
            status = incident(custom, namespace, "leak").get("status") or {}
            return status if (status.get("timestamps") or {}).get("revoked") else None

        status = wait_for(revoked, 90, what="revoked")
        assert status["revocation"]["check"] == check and status["revocation"].get("confirmed") is None
        assert probe.connections == 0  # nothing was dialled
        assert str(probe.port) not in json.dumps(status)
    finally:
        probe.close()


# -- who did it ------------------------------------------------------------------------------------------------

def as_user(info: StackInfo, user: str) -> Any:
    api = kubernetes.config.new_client_from_config(config_file=info.kubeconfig)
    api.set_default_header("Impersonate-User", user)
    return kubernetes.client.CustomObjectsApi(api)


def test_actors_are_the_users_the_api_server_authenticated_not_the_names_clients_chose(
        rotor: RunningOperator, info: StackInfo, custom: Any, vault: hvac.Client, api_client: Any,
        tenant: Tenant) -> None:
    namespace, role = tenant()
    rbac = kubernetes.client.RbacAuthorizationV1Api(api_client)
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "incidents"}, "rules": [{
        "apiGroups": [G], "resources": ["leakincidents"], "verbs": ["create", "get", "list", "patch", "update"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "incidents"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "incidents"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                     for user in ("alice", "bob")]})
    source(custom, vault, namespace, role, "db", {"password": f"Pw-{uuid.uuid4().hex[:12]}"})
    forged = json.dumps({"user": "root", "at": "2026-01-01T00:00:00.000Z", "name": "leak", "uid": "", "mac": "0"})
    as_user(info, "alice").create_namespaced_custom_object(G, V, namespace, "leakincidents", {
        "apiVersion": f"{G}/{V}", "kind": "LeakIncident",
        "metadata": {"name": "leak", "annotations": {keys.REPORTED_BY: forged}},
        "spec": {"secretSourceRef": {"name": "db"}, "exposure": {"where": "chat"}}}, field_manager="sre-bob")
    created = incident(custom, namespace, "leak")
    assert json.loads(created["metadata"]["annotations"][keys.REPORTED_BY])["user"] == "alice"  # overwritten

    def timeline() -> list[dict[str, Any]] | None:
        return (incident(custom, namespace, "leak").get("status") or {}).get("timeline")

    assert wait_for(timeline, 30, what="reported")[0]["actor"] == "alice"
    as_user(info, "bob").patch_namespaced_custom_object(G, V, namespace, "leakincidents", "leak",
                                                        {"spec": {"resolved": True}}, field_manager="alice")

    def resolved() -> dict[str, Any] | None:
        status = incident(custom, namespace, "leak").get("status") or {}
        return status if status.get("phase") == "Resolved" else None

    status = wait_for(resolved, 30, what="resolved")
    assert status["resolvedBy"] == "bob" and status["timeline"][-1]["actor"] == "bob"


# -- the HMAC key ------------------------------------------------------------------------------------------------

def test_a_lost_hmac_key_stops_rotor_until_restored_and_every_denylist_still_matches(
        rotor: RunningOperator, info: StackInfo, custom: Any, core: Any, vault: hvac.Client, tenant: Tenant,
        operator_logs: OperatorLogs) -> None:
    leaked = f"Leaked-{uuid.uuid4().hex[:12]}"
    namespace, role = tenant()
    source(custom, vault, namespace, role, "db", {"password": leaked})
    report(custom, namespace, "leak", "db")
    contained(custom, namespace, "leak")
    refused(custom, core, operator_logs, namespace, "db")
    backup = core.read_namespaced_secret(KEY_SECRET, OPERATOR_NS)  # what docs/incident.md tells to keep
    rotor.stop()
    core.delete_namespaced_secret(KEY_SECRET, OPERATOR_NS)
    try:
        mark = len(operator_logs.lines)
        lost = RunningOperator(rotor.settings)
        lost.thread.start()

        def said() -> str | None:
            return next((line for line in operator_logs.lines[mark:] if "Restore the Secret from your backup" in line),
                        None)

        message = wait_for(said, 60, what="the start-up failure saying how to restore the key")
        assert f"{OPERATOR_NS}/{KEY_SECRET} is missing" in message
        assert not lost.ready_flag.is_set()
        with pytest.raises(kubernetes.client.ApiException) as gone:
            core.read_namespaced_secret(KEY_SECRET, OPERATOR_NS)
        assert gone.value.status == 404  # no new key was made
        lost.stop()
    finally:
        try:
            core.create_namespaced_secret(OPERATOR_NS, {"metadata": {"name": KEY_SECRET,
                                                                     "labels": backup.metadata.labels},
                                                        "type": backup.type, "data": backup.data})
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise
        rotor.start()
    assert core.read_namespaced_secret(KEY_SECRET, OPERATOR_NS).data == backup.data
    # With the restored key, the list still matches.
    assert refused(custom, core, operator_logs, namespace, "db") == leaked.encode()
