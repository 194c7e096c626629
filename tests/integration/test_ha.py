"""High availability: two Rotor replicas peer through the chart's ClusterKopfPeering, one acts.

Both run as OS processes under the chart's ServiceAccount with the chart's rendered config (two
replicas: peering on, priority by start time). The active one is killed with SIGKILL (no goodbye);
the standby must take over within the peering lifetime, and a SecretSource created after the kill
must be delivered exactly once.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import hvac
import kubernetes
import pytest
import yaml

from tests.devenv import Stack

from .conftest import secret_data, secret_source, vault_role, wait_for, wait_ready
from .packaging.harness import (
    RELEASE,
    RELEASE_NAMESPACE,
    OperatorProcess,
    audit_events,
    chart_operator,
    install_chart,
    isolated_stack,
    of_kind,
    operator_config,
    render,
    sa_username,
)

RESUMED = "Resuming operations after the pause"
PAUSED = "Pausing operations in favour of"
SCHEDULERS_PAUSED = "Rotor's schedulers are paused too"


@pytest.fixture(scope="module")
def plane(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    return isolated_stack(pytestconfig, tmp_path_factory)


@pytest.fixture(scope="module")
def replicas(plane: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[OperatorProcess]]:
    docs = install_chart(plane)  # defaults: two replicas
    config = yaml.safe_load(operator_config(docs))
    assert config["standalone"] is False and "priority" not in config, "two replicas must peer, ranked by start"
    work = tmp_path_factory.mktemp("ha")
    # Debug level: Kopf logs its pause/resume decisions at INFO, which Rotor's info level hides.
    processes = [chart_operator(plane, docs, work, f"rotor-ha-{name}", ROTOR_LOG_LEVEL="debug",
                                 ROTOR_MIN_REFRESH_SECONDS="1")
                 for name in ("a", "b")]
    yield processes
    for process in processes:
        process.stop()


def synced_by(core: Any, namespace: str, source: str) -> list[str]:
    """Who posted each Synced Event for SOURCE (Events carry the replica as reportingInstance)."""
    return [e.reporting_instance for e in core.list_namespaced_event(namespace).items
            if e.reason == "Synced" and e.involved_object.name == source]


def peers(custom: Any) -> dict[str, Any]:
    body = custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", RELEASE)
    return dict(body.get("status") or {})


def test_standby_takes_over_after_the_active_replica_is_killed(plane: Stack,
                                                               replicas: list[OperatorProcess]) -> None:
    admin = kubernetes.config.new_client_from_config(config_file=plane.info.kubeconfig)
    core, custom = kubernetes.client.CoreV1Api(admin), kubernetes.client.CustomObjectsApi(admin)
    vault = hvac.Client(url=plane.info.vault_addr, token=plane.info.vault_root_token)
    namespace = f"ha-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": namespace}})
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "app"}})
    role = vault_role(vault, namespace)
    for name in ("before", "after"):
        vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/{name}", {"password": f"pw-{name}"},
                                                    mount_point="secret")

    def source(name: str) -> None:
        secret_source(custom, namespace, name, {"provider": "vault", "serviceAccountName": "app",
                                                "vault": {"path": f"{namespace}/{name}", "role": role}})

    active, standby = replicas
    active.start()
    active.wait_log(RESUMED, timeout=60)
    standby.start()
    standby.wait_log("Rotor started", timeout=60)
    wait_for(lambda: {active.name, standby.name} <= set(peers(custom)), timeout=30, what="both replicas peered")

    source("before")
    wait_ready(custom, namespace, "before", timeout=30)
    time.sleep(3)  # give a wrongly active standby the time to act too
    assert synced_by(core, namespace, "before") == [active.name], "only the active replica syncs"
    assert RESUMED not in standby.log(), f"the standby resumed while the active one lived:\n{standby.tail()}"
    before_rv = core.read_namespaced_secret("before", namespace).metadata.resource_version

    killed_at = time.monotonic()
    active.kill()
    source("after")  # created while nobody is active: the standby must pick it up when it takes over
    standby.wait_log(RESUMED, timeout=60)
    takeover = time.monotonic() - killed_at
    wait_ready(custom, namespace, "after", timeout=60)
    delivered = time.monotonic() - killed_at
    assert secret_data(core, namespace, "after") == {"password": b"pw-after"}
    lifetime = yaml.safe_load(operator_config(render()))["peering_lifetime"]
    print(f"\nHA: standby took over {takeover:.1f}s after SIGKILL of the active replica "
          f"(peering lifetime {lifetime}s); SecretSource created after the kill delivered at {delivered:.1f}s")
    assert takeover <= lifetime + 10, f"takeover took {takeover:.1f}s, beyond the {lifetime}s peering lifetime"

    time.sleep(3)  # any duplicate action would land now
    assert synced_by(core, namespace, "after") == [standby.name], "delivered exactly once, by the new active"
    writes = [(e["verb"], e["responseStatus"]["code"])
              for e in audit_events(plane, sa_username(RELEASE_NAMESPACE, RELEASE))
              if (e.get("objectRef") or {}).get("resource") == "secrets"
              and e["objectRef"].get("namespace") == namespace and e["objectRef"].get("name") == "after"
              and e["verb"] in ("create", "update", "patch", "delete")]
    assert writes == [("create", 201)], f"the Secret was written {writes}, not created once"
    # The takeover resumed the existing source without rewriting it (it compares, it does not replay).
    assert core.read_namespaced_secret("before", namespace).metadata.resource_version == before_rv
    assert active.name not in peers(custom), "the dead replica's keep-alive was cleaned up"
    assert of_kind(render(), "PodDisruptionBudget"), "two replicas come with a PodDisruptionBudget"


def credential_id(process: OperatorProcess) -> str:
    """How the audit log names this replica's token (its JWT ID): both replicas share one ServiceAccount."""
    token = json.loads(process.kubeconfig.read_text())["users"][0]["user"]["token"]
    payload = token.split(".")[1]
    return f"JTI={json.loads(base64.urlsafe_b64decode(payload + '=' * (-len(payload) % 4)))['jti']}"


def work_by(plane: Stack, process: OperatorProcess, namespace: str) -> list[tuple[str, str, str]]:
    """What PROCESS asked the API server for in NAMESPACE (Secret reads and writes, TokenRequests,
    SecretSource status writes): its peering keep-alive is cluster-scoped, not counted here."""
    jti = credential_id(process)
    found = []
    for event in audit_events(plane, sa_username(RELEASE_NAMESPACE, RELEASE)):
        ref = event.get("objectRef") or {}
        extra = (event.get("user") or {}).get("extra") or {}
        if ref.get("namespace") == namespace and jti in extra.get("authentication.kubernetes.io/credential-id", ()):
            found.append((event["verb"], ref.get("resource", ""), ref.get("subresource", "")))
    return found


def vault_reads(plane: Stack, path: str) -> list[str]:
    """The Vault token accessor of each read of PATH, in order (Vault's file audit device). A replica
    logs in once per identity and caches the token, so an accessor stands for one replica."""
    accessors = []
    with open(plane.info.vault_audit_log) as log:
        for line in log:
            entry = json.loads(line)
            request = entry.get("request") or {}
            if entry.get("type") == "request" and request.get("path") == path and request.get("operation") == "read":
                accessors.append(str((entry.get("auth") or {}).get("accessor")))
    return accessors


def test_a_replica_paused_by_a_higher_priority_peer_does_no_work(plane: Stack, replicas: list[OperatorProcess],
                                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    for process in replicas:  # the replicas of the test above (if it ran): this test ranks its own
        process.stop()
    admin = kubernetes.config.new_client_from_config(config_file=plane.info.kubeconfig)
    core, custom = kubernetes.client.CoreV1Api(admin), kubernetes.client.CustomObjectsApi(admin)
    vault = hvac.Client(url=plane.info.vault_addr, token=plane.info.vault_root_token)
    docs = install_chart(plane)
    work = tmp_path_factory.mktemp("ha-pause")
    low = chart_operator(plane, docs, work, "rotor-ha-low", ROTOR_LOG_LEVEL="debug", ROTOR_MIN_REFRESH_SECONDS="1")
    # An explicit priority beats any start-time one (those are negative): it pre-empts the active replica.
    high = chart_operator(plane, docs, work, "rotor-ha-high", ROTOR_LOG_LEVEL="debug", ROTOR_PRIORITY="1000",
                          ROTOR_MIN_REFRESH_SECONDS="1")
    try:
        namespace = f"ha-{uuid.uuid4().hex[:8]}"
        core.create_namespace({"metadata": {"name": namespace}})
        core.create_namespaced_service_account(namespace, {"metadata": {"name": "app"}})
        role = vault_role(vault, namespace)
        vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "pw-1"}, mount_point="secret")

        low.start()
        low.wait_log(RESUMED, timeout=60)
        # Re-read every second: an active replica's scheduler works all the time.
        secret_source(custom, namespace, "db", {"provider": "vault", "serviceAccountName": "app",
                                                "vault": {"path": f"{namespace}/db", "role": role},
                                                "refresh": {"interval": "1s", "jitter": 0}})
        wait_ready(custom, namespace, "db", timeout=30)
        path = f"secret/data/{namespace}/db"
        wait_for(lambda: len(vault_reads(plane, path)) >= 2, what="the active replica refreshing")
        low_tokens = set(vault_reads(plane, path))  # only low runs yet
        assert len(vault_reads(plane, path)) >= 2 and len(low_tokens) == 1, "the active replica refreshes"

        high.start()
        low.wait_log(PAUSED, timeout=60)
        low.wait_log(SCHEDULERS_PAUSED, timeout=10)
        high.wait_log(RESUMED, timeout=60)
        time.sleep(1)  # a run already under way when the pause came may finish
        kube_before, vault_before = len(work_by(plane, low, namespace)), len(vault_reads(plane, path))

        vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "pw-2"}, mount_point="secret")
        wait_for(lambda: secret_data(core, namespace, "db") == {"password": b"pw-2"}, timeout=30,
                 what="the active replica delivers the new value")
        time.sleep(5)  # five refresh intervals: a paused replica that still worked would show here
        reads = vault_reads(plane, path)[vault_before:]
        assert reads and not low_tokens & set(reads), f"reads while paused: {reads}; the paused one's: {low_tokens}"
        paused_calls = work_by(plane, low, namespace)[kube_before:]
        assert paused_calls == [], f"the paused replica kept calling the API server: {paused_calls}"
        assert synced_by(core, namespace, "db").count(low.name) == 1, "the paused replica delivered nothing"
        assert high.name in synced_by(core, namespace, "db"), "the active replica delivered the new value"
        print(f"\nHA pause: {len(reads)} Vault reads by the active replica in 6s, none by the paused one")

        # The higher-priority replica goes away cleanly: the paused one resumes, its schedulers too (the
        # source stayed scheduled: Kopf does not hand it over again).
        high.stop()
        low.wait_log("Rotor's schedulers run again", timeout=60)
        vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "pw-3"}, mount_point="secret")
        wait_for(lambda: secret_data(core, namespace, "db") == {"password": b"pw-3"}, timeout=30,
                 what="the resumed replica delivers again")
        # The Synced Event is posted just after the Secret write: wait for it rather than race it.
        wait_for(lambda: synced_by(core, namespace, "db").count(low.name) == 2, timeout=10,
                 what="the resumed replica's Synced Event")
    finally:
        high.stop()
        low.stop()


def webhook_for(admission: Any, name: str, port: int, ca_pem: bytes, replica: str) -> None:
    """A MutatingWebhookConfiguration sending pods labelled ha-replica=REPLICA to one replica's webhook (no
    Service routing here: the API server calls the replica's address), failurePolicy Fail."""
    admission.create_mutating_webhook_configuration({
        "metadata": {"name": name},
        "webhooks": [{
            "name": f"{replica}.inject.rotor.dev", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": "Fail", "timeoutSeconds": 10,
            "clientConfig": {"url": f"https://127.0.0.1:{port}/inject-secrets",
                             "caBundle": base64.b64encode(ca_pem).decode()},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"],
                       "scope": "Namespaced"}],
            "objectSelector": {"matchLabels": {"rotor.dev/inject": "true", "ha-replica": replica}}}]})


def injected_pod(core: Any, namespace: str, name: str, replica: str) -> str | None:
    """Create a pod opted in to SecretSource db, sent to REPLICA; its injection annotation, or the refusal."""
    try:
        pod = core.create_namespaced_pod(namespace, {
            "metadata": {"name": name, "labels": {"rotor.dev/inject": "true", "ha-replica": replica},
                         "annotations": {"rotor.dev/secrets": "db"}},
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}})
    except kubernetes.client.ApiException as exc:
        return f"refused: {exc.status} {json.loads(exc.body or '{}').get('message', exc.reason)}"
    return str((pod.metadata.annotations or {}).get("rotor.dev/injected"))


def test_every_replica_answers_admission_from_what_exists(plane: Stack, replicas: list[OperatorProcess],
                                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    """Both replicas serve the webhook (as behind the chart's Service): a paused standby answers from the
    API server, not from its empty view. 30 pods alternate between active and standby, then the active
    one is killed and 20 more go to the standby while and after it takes over: none is refused."""
    for process in replicas:
        process.stop()
    from tests.devenv.pki import CertificateAuthority
    from tests.devenv.process import free_port

    admin = kubernetes.config.new_client_from_config(config_file=plane.info.kubeconfig)
    core, custom = kubernetes.client.CoreV1Api(admin), kubernetes.client.CustomObjectsApi(admin)
    admission = kubernetes.client.AdmissionregistrationV1Api(admin)
    vault = hvac.Client(url=plane.info.vault_addr, token=plane.info.vault_root_token)
    install_chart(plane)  # the cluster side as before; the operators' config has the webhook on
    docs = render(f"vaultConnections.default.address={plane.info.vault_addr}", "webhook.enabled=true")
    work = tmp_path_factory.mktemp("ha-webhook")
    ca = CertificateAuthority("ha-webhook-ca")
    cert, key = ca.issue("rotor-webhook", ["127.0.0.1"])
    (work / "tls.crt").write_bytes(cert)
    (work / "tls.key").write_bytes(key)
    ports = {"a": free_port(), "b": free_port()}
    active, standby = (chart_operator(plane, docs, work, f"rotor-hook-{r}", ROTOR_LOG_LEVEL="debug",
                                      ROTOR_WEBHOOK_PORT=str(ports[r]), ROTOR_WEBHOOK_ADDR="127.0.0.1",
                                      ROTOR_WEBHOOK_CERT_DIR=str(work)) for r in ("a", "b"))
    hooks = [f"ha-hook-{r}-{uuid.uuid4().hex[:6]}" for r in ("a", "b")]
    namespace = f"ha-{uuid.uuid4().hex[:8]}"
    try:
        core.create_namespace({"metadata": {"name": namespace}})
        for sa in ("app", "default"):  # the pods' own: no controller makes it here
            core.create_namespaced_service_account(namespace, {"metadata": {"name": sa}})
        role = vault_role(vault, namespace)
        vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "pw"}, mount_point="secret")
        active.start()
        active.wait_log(RESUMED, timeout=60)
        standby.start()
        standby.wait_log(SCHEDULERS_PAUSED, timeout=60)
        secret_source(custom, namespace, "db", {"provider": "vault", "serviceAccountName": "app",
                                                "vault": {"path": f"{namespace}/db", "role": role}})
        wait_ready(custom, namespace, "db", timeout=30)
        for name, replica in zip(hooks, ("a", "b"), strict=True):
            webhook_for(admission, name, ports[replica], ca.cert_pem, replica)
        # The API server picks up new webhook configurations asynchronously (and admits a pod without
        # mutation while a fail-open hook is not reachable yet): wait for both replicas' hooks to answer.
        for replica in ("a", "b"):
            wait_for(lambda r=replica: injected_pod(core, namespace, f"probe-{uuid.uuid4().hex[:6]}", r)
                     == "volume:db", timeout=90, what=f"replica {replica}'s webhook configuration in effect")

        answers = [injected_pod(core, namespace, f"p{i}", "ab"[i % 2]) for i in range(30)]
        assert RESUMED not in standby.log(), "the standby was not paused: the test would prove nothing"
        killed = time.monotonic()
        active.kill()
        answers += [injected_pod(core, namespace, f"q{i}", "b") for i in range(10)]
        standby.wait_log(RESUMED, timeout=60)
        took_over = time.monotonic() - killed
        answers += [injected_pod(core, namespace, f"r{i}", "b") for i in range(10)]
        refused = [a for a in answers if a != "volume:db"]
        print(f"\nHA webhook: {len(answers)} pod creations (30 alternating active/standby, 20 to the standby "
              f"across its takeover in {took_over:.1f}s), {len(refused)} refused")
        assert refused == [], refused[:5]
        assert "read from the API server (standby replica)" in standby.log()
    finally:
        for name in hooks:
            try:
                admission.delete_mutating_webhook_configuration(name)
            except kubernetes.client.ApiException:
                pass
        active.stop()
        standby.stop()
