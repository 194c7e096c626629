"""High availability: two Rotor replicas peer through the chart's ClusterKopfPeering, one acts.

Both run as OS processes under the chart's ServiceAccount with the chart's rendered config (two
replicas: peering on, priority by start time). The active one is killed with SIGKILL (no goodbye);
the standby must take over within the peering lifetime, and a SecretSource created after the kill
must be delivered exactly once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import hvac
import kubernetes
import pytest
import yaml

from rotor.devenv import Stack

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
    processes = [chart_operator(plane, docs, work, f"rotor-ha-{name}", ROTOR_LOG_LEVEL="debug")
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
