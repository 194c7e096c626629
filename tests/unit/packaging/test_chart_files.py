"""The chart's files: every value documented, every operator setting reachable with the operator's
defaults, and the CRDs it ships are the repository's CRDs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from rotor.config import AwsConnection, ChangeFeed, Settings, VaultConnection

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "rotor"
# Values that are Kubernetes objects passed through as-is: documented once, at the top key.
PASSTHROUGH = {"resources", "podSecurityContext", "securityContext", "updateStrategy", "labels"}


def test_every_value_is_documented() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented: list[str] = []
    parents: list[tuple[int, str]] = []
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("- ") or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip())
        key, _, value = stripped.partition(":")
        while parents and parents[-1][0] >= indent:
            parents.pop()
        inherited = any(name in PASSTHROUGH for _, name in parents)
        is_group = value.strip() == ""
        above = lines[number - 1].strip() if number else ""
        if not is_group and not inherited and not above.startswith("#"):
            undocumented.append(f"line {number + 1}: {'.'.join([p for _, p in parents] + [key])}")
        parents.append((indent, key))
    assert not undocumented, "values without a comment above them:\n" + "\n".join(undocumented)


def test_values_parse_and_have_the_documented_defaults() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["replicas"] == 2 and values["highAvailability"]["enabled"] is True
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    assert isinstance(values["podSecurityContext"]["runAsUser"], int) and values["podSecurityContext"]["runAsUser"] > 0
    assert values["securityContext"]["readOnlyRootFilesystem"] is True
    assert values["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert values["podSecurityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert values["resources"]["limits"] and values["resources"]["requests"]


# Settings the chart does not render, and why.
NOT_RENDERED = {"webhook_host": "the chart owns the webhook configuration and its certificate's names"}
# Values rendered as one operator setting: their defaults are the operator's (values.yaml documents
# them as such). operator.logFormat is json on purpose (the operator's own default is text).
SAME_DEFAULTS = {
    "operator.logLevel": "log_level", "operator.syncWorkers": "sync_workers",
    "operator.hmacKeySecret": "hmac_key_secret", "operator.hmacKeyAllowNew": "hmac_key_allow_new",
    "operator.metricsSecretNames": "metrics_secret_names", "metrics.port": "metrics_port",
    "highAvailability.peeringLifetimeSeconds": "peering_lifetime", "webhook.port": "webhook_port",
    "webhook.failureMode": "webhook_failure_mode",
    "tenantLimits.minRefreshSeconds": "min_refresh_seconds", "tenantLimits.templateSeconds": "template_seconds",
    "tenantLimits.templateOutputBytes": "template_output_bytes",
    "tenantLimits.templateWorkers": "template_workers",
    "reload.batchSeconds": "reload_batch_seconds", "reload.restartsPerNamespace": "restarts_per_namespace",
    "reload.restartsCluster": "restarts_cluster", "reload.restartLimitWindowSeconds": "restart_limit_window_seconds",
    "reload.pollSeconds": "reload_poll_seconds",
    "leakIncidents.loginCheckTimeoutSeconds": "login_check_timeout_seconds",
    "leakIncidents.loginCheckWorkers": "login_check_workers",
}


def test_every_operator_setting_is_rendered_by_the_chart() -> None:
    """A setting added to rotor.config needs its value (or a reason here): configmap.yaml names each key."""
    template = (CHART / "templates" / "configmap.yaml").read_text()
    models: list[type[BaseModel]] = [Settings, VaultConnection, ChangeFeed, AwsConnection]
    missing = [f"{model.__name__}.{name}" for model in models for name in model.model_fields
               if f'"{name}"' not in template and name not in NOT_RENDERED]
    assert not missing, "operator settings charts/rotor/templates/configmap.yaml never renders: " + ", ".join(missing)


def test_chart_defaults_are_the_operators_defaults() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    defaults = Settings.model_fields
    for path, setting in SAME_DEFAULTS.items():
        value: Any = values
        for part in path.split("."):
            value = value[part]
        assert value == defaults[setting].get_default(call_default_factory=True), \
            f"values.yaml {path} is {value!r}; the operator's {setting} defaults to {defaults[setting].default!r}"


def test_chart_ships_exactly_the_repository_crds() -> None:
    """crds/ (generated from the models) is the one source: the chart links to it, file by file.

    A new CRD in crds/ needs its link: cd charts/rotor/crds && ln -s ../../../crds/NAME.yaml .
    """
    shipped = {p.name: p for p in (CHART / "crds").glob("rotor.dev_*.yaml")}
    source = {p.name: p for p in (REPO / "crds").glob("*.yaml")}
    assert set(shipped) == set(source), "charts/rotor/crds/ and crds/ list different CRDs"
    for name, path in shipped.items():
        assert path.read_text() == source[name].read_text(), f"charts/rotor/crds/{name} differs from crds/{name}"
        assert path.is_symlink(), f"charts/rotor/crds/{name} should be a link to crds/{name}, not a copy"


def test_chart_ships_kopf_peering_crds() -> None:
    docs = list(yaml.safe_load_all((CHART / "crds" / "kopf.dev_peerings.yaml").read_text()))
    assert {d["spec"]["names"]["kind"]: d["spec"]["scope"] for d in docs} == {
        "ClusterKopfPeering": "Cluster", "KopfPeering": "Namespaced"}
