"""charts/rotor with the real helm: lint, render for each mode, package; applied to the real API server.

No control plane is needed to render; the apply tests use the packaging tests' own control plane.
"""

from __future__ import annotations

import json
import tarfile
import uuid
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from rotor.config import load

from .harness import CHART, REPO, apply, ensure_namespace, helm, isolated_stack, of_kind, operator_config, render

VAULT = "vaultConnections.default.address=https://vault.vault.svc:8200"
NAMESPACED = ("watchNamespaces={team-a,team-b}",)


@pytest.mark.parametrize("values", [(), NAMESPACED, ("webhook.enabled=true", "webhook.certificate.mode=cert-manager",
                                                    "replicas=1")],
                         ids=["default", "namespaced", "cert-manager-single"])
def test_lint(values: tuple[str, ...]) -> None:
    args = ["lint", "--strict", str(CHART), "--set", VAULT]
    for item in values:
        args += ["--set", item]
    result = helm(*args)
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_default_render_is_hardened_and_highly_available(tmp_path: Path) -> None:
    docs = render(VAULT)
    (deployment,) = of_kind(docs, "Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    hardened = container["securityContext"]
    assert hardened["readOnlyRootFilesystem"] is True and hardened["allowPrivilegeEscalation"] is False
    assert hardened["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in container["env"]
    (account,) = of_kind(docs, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False and pod["automountServiceAccountToken"] is True
    (pdb,) = of_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    (peering,) = of_kind(docs, "ClusterKopfPeering")
    # The operator reads the rendered file exactly as `rotor run --config` does.
    (tmp_path / "config.yaml").write_text(operator_config(docs))
    settings = load(tmp_path / "config.yaml")
    assert settings.standalone is False and settings.peering_name == peering["metadata"]["name"]
    assert settings.priority is None, "replicas rank by start time unless a priority is pinned"
    assert settings.namespaces == [] and settings.operator_namespace == "rotor-system"
    assert str(settings.vault_connections["default"].address) == "https://vault.vault.svc:8200"
    assert of_kind(docs, "ClusterRole") and not of_kind(docs, "Role")
    assert not of_kind(docs, "NetworkPolicy"), "the NetworkPolicy is opt-in"
    assert not of_kind(docs, "MutatingWebhookConfiguration"), "the webhook is opt-in until the operator serves it"


def test_single_replica_runs_standalone(tmp_path: Path) -> None:
    docs = render(VAULT, "replicas=1", "highAvailability.enabled=false")
    (tmp_path / "config.yaml").write_text(operator_config(docs))
    assert load(tmp_path / "config.yaml").standalone is True
    assert not of_kind(docs, "ClusterKopfPeering") and not of_kind(docs, "PodDisruptionBudget")


def test_namespaced_mode_uses_roles_and_no_cluster_wide_secret_access(tmp_path: Path) -> None:
    docs = render(VAULT, *NAMESPACED)
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in of_kind(docs, "Role")}
    assert roles == {("team-a", "rotor"), ("team-b", "rotor"), ("rotor-system", "rotor-self")}
    bindings = {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in of_kind(docs, "RoleBinding")}
    assert bindings == roles
    (discovery,) = of_kind(docs, "ClusterRole")
    cluster_resources = {res for rule in discovery["rules"] for res in rule["resources"]}
    assert cluster_resources == {"customresourcedefinitions"}, "only discovery is cluster-wide"
    (self_role,) = [r for r in of_kind(docs, "Role") if r["metadata"]["name"] == "rotor-self"]
    assert {"resources": ["secrets"], "resourceNames": ["rotor-hmac-key"], "verbs": ["get", "update"],
            "apiGroups": [""]} \
        in self_role["rules"]
    assert {p["metadata"]["namespace"] for p in of_kind(docs, "KopfPeering")} == {"team-a", "team-b"}
    (tmp_path / "config.yaml").write_text(operator_config(docs))
    assert load(tmp_path / "config.yaml").namespaces == ["team-a", "team-b"]


def test_webhook_sends_only_opted_in_pods_and_takes_the_failure_policy() -> None:
    for policy in ("Fail", "Ignore"):
        docs = render(VAULT, "webhook.enabled=true", f"webhook.failurePolicy={policy}")
        (config,) = of_kind(docs, "MutatingWebhookConfiguration")
        hook, actors = config["webhooks"]
        assert hook["failurePolicy"] == policy
        assert hook["objectSelector"] == {"matchLabels": {"rotor.dev/inject": "true"}}
        assert hook["rules"][0]["resources"] == ["pods"] and hook["sideEffects"] == "None"
        (tls,) = [s for s in of_kind(docs, "Secret") if s["metadata"]["name"] == "rotor-webhook-tls"]
        assert hook["clientConfig"]["caBundle"] == tls["data"]["ca.crt"], "self-signed: the chart's CA is trusted"
        # Who reported or resolved a LeakIncident is recorded by Rotor, failing open: a leak can always be filed.
        assert actors["rules"][0]["resources"] == ["leakincidents"] and actors["failurePolicy"] == "Ignore"
        assert actors["clientConfig"]["service"]["path"] == "/record-incident-actors"
        assert actors["clientConfig"]["caBundle"] == tls["data"]["ca.crt"]
    with pytest.raises(AssertionError, match="failurePolicy must be Fail or Ignore"):
        render(VAULT, "webhook.enabled=true", "webhook.failurePolicy=Maybe")


def test_cert_manager_mode_injects_the_ca_and_ships_no_key() -> None:
    docs = render(VAULT, "webhook.enabled=true", "webhook.certificate.mode=cert-manager")
    (certificate,) = of_kind(docs, "Certificate")
    assert certificate["spec"]["secretName"] == "rotor-webhook-tls"
    assert certificate["spec"]["issuerRef"] == {"kind": "Issuer", "name": "rotor-webhook"}
    assert of_kind(docs, "Issuer")
    (config,) = of_kind(docs, "MutatingWebhookConfiguration")
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "rotor-system/rotor-webhook"
    assert not [s for s in of_kind(docs, "Secret") if s["metadata"]["name"] == "rotor-webhook-tls"]


def test_monitoring_objects_only_where_the_prometheus_operator_api_exists() -> None:
    without = render(VAULT)
    assert not of_kind(without, "ServiceMonitor") and not of_kind(without, "PrometheusRule")
    docs = render(VAULT, api_versions=("monitoring.coreos.com/v1",))
    (monitor,) = of_kind(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    alerts = CHART / "files" / "alerts.yaml"
    rules = of_kind(docs, "PrometheusRule")
    if alerts.exists():  # written with the alerting issue (#7); the template tolerates its absence
        assert [r["spec"]["groups"] for r in rules] == [yaml.safe_load(alerts.read_text())["groups"]]
    else:
        assert not rules


def test_dashboard_config_map_for_the_grafana_sidecar() -> None:
    dashboard = CHART / "files" / "dashboard.json"
    maps = [m for m in of_kind(render(VAULT), "ConfigMap") if m["metadata"]["name"] == "rotor-dashboard"]
    if dashboard.exists():  # written with the dashboard issue (#7); the template tolerates its absence
        (config_map,) = maps
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(config_map["data"]["rotor.json"]) == json.loads(dashboard.read_text())
    else:
        assert not maps


def test_vault_ca_from_a_secret_is_mounted_where_the_config_points() -> None:
    docs = render(VAULT, "vaultConnections.default.caSecret.name=vault-ca")
    config = yaml.safe_load(operator_config(docs))
    assert config["vault_connections"]["default"]["ca_file"] == "/etc/rotor/vault-ca/default/ca.crt"
    (deployment,) = of_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["vault-ca-default"] == "/etc/rotor/vault-ca/default"
    (volume,) = [v for v in pod["volumes"] if v["name"] == "vault-ca-default"]
    assert volume["secret"]["secretName"] == "vault-ca"


def test_packaged_chart_carries_the_crds_themselves(tmp_path: Path) -> None:
    """crds/ in the chart are symlinks to the repository's crds/: the package must hold their content."""
    helm("package", str(CHART), "--destination", str(tmp_path))
    (package,) = tmp_path.glob("rotor-*.tgz")
    with tarfile.open(package) as archive:
        packaged = {Path(m.name).name: archive.extractfile(m).read().decode()  # type: ignore[union-attr]
                    for m in archive.getmembers() if "/crds/" in m.name and m.isfile()}
    for source in (REPO / "crds").glob("*.yaml"):
        assert packaged.get(source.name) == source.read_text(), f"{source.name} missing or different in the package"
    assert "kopf.dev_peerings.yaml" in packaged


@pytest.fixture(scope="module")
def admin(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> kubernetes.client.ApiClient:
    stack = isolated_stack(pytestconfig, tmp_path_factory)
    return kubernetes.config.new_client_from_config(config_file=stack.info.kubeconfig)


@pytest.mark.parametrize("mode", ["default", "namespaced"])
def test_rendered_manifests_apply_server_side(admin: kubernetes.client.ApiClient, mode: str) -> None:
    suffix = uuid.uuid4().hex[:6]
    watched = [f"team-a-{suffix}", f"team-b-{suffix}"]
    values = [VAULT, "metrics.enabled=true", "networkPolicy.enabled=true", "webhook.enabled=true"]
    if mode == "namespaced":
        values.append("watchNamespaces={" + ",".join(watched) + "}")
    docs = render(*values)
    core = kubernetes.client.CoreV1Api(admin)
    for namespace in ["rotor-system", *watched]:
        ensure_namespace(core, namespace)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "ServiceAccount", "ConfigMap", "Service", "MutatingWebhookConfiguration",
            "CustomResourceDefinition", "PodDisruptionBudget", "NetworkPolicy"} <= kinds
    # The Deployment is validated by the API server (dry run): there is no kubelet here to run it.
    try:
        applied: list[Any] = apply(admin, [d for d in docs if d["kind"] != "Deployment"])
        applied += apply(admin, of_kind(docs, "Deployment"), dry_run=True)
    finally:
        # The chart's webhook (failurePolicy Fail) points at a Service no pod backs here: left on the shared
        # plane, it would refuse every opted-in pod that later tests create.
        registration = kubernetes.client.AdmissionregistrationV1Api(admin)
        for config in of_kind(docs, "MutatingWebhookConfiguration"):
            try:
                registration.delete_mutating_webhook_configuration(config["metadata"]["name"])
            except kubernetes.client.ApiException as exc:
                if exc.status != 404:
                    raise
    assert len(applied) == len(docs)
    if mode == "namespaced":
        rbac = kubernetes.client.RbacAuthorizationV1Api(admin)
        assert {r.metadata.namespace for r in rbac.list_role_for_all_namespaces(
            label_selector="app.kubernetes.io/instance=rotor").items} >= set(watched)
