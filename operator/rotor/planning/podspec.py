"""The one pod-spec walker and the one table of workload kinds, used by inventory, reloads,
injection, rotation verification and incidents alike (so they never disagree on who reads what).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from rotor.planning import times

Via = Literal["env", "envFrom", "volume", "projected", "imagePullSecrets"]
VIA_ORDER: tuple[Via, ...] = ("env", "envFrom", "volume", "projected", "imagePullSecrets")
# What a running container reads (a change must restart it); image pulls happen before it runs.
RUNTIME_USES: frozenset[Via] = frozenset({"env", "envFrom", "volume", "projected"})
CONTAINER_KEYS = ("initContainers", "containers", "ephemeralContainers")


@dataclass(frozen=True)
class WorkloadKind:
    """A kind whose pods read Secrets, and where its pod template lives."""

    kind: str
    group: str  # API group ("" for core)
    plural: str
    template_path: tuple[str, ...]  # path to the pod template ({metadata, spec}); () for a Pod itself
    restartable: bool  # Rotor rolls it when a Secret it reads changes (a template annotation patch)
    version: str = "v1"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


WORKLOAD_KINDS: tuple[WorkloadKind, ...] = (
    WorkloadKind("Deployment", "apps", "deployments", ("spec", "template"), True),
    WorkloadKind("StatefulSet", "apps", "statefulsets", ("spec", "template"), True),
    WorkloadKind("DaemonSet", "apps", "daemonsets", ("spec", "template"), True),
    WorkloadKind("Job", "batch", "jobs", ("spec", "template"), False),
    WorkloadKind("CronJob", "batch", "cronjobs", ("spec", "jobTemplate", "spec", "template"), True),
    WorkloadKind("Pod", "", "pods", (), False),
)
BY_KIND: Mapping[str, WorkloadKind] = {k.kind: k for k in WORKLOAD_KINDS}
RESTARTABLE: tuple[str, ...] = tuple(k.kind for k in WORKLOAD_KINDS if k.restartable)
ROLLED_OUT: tuple[str, ...] = ("Deployment", "StatefulSet", "DaemonSet")  # have a rollout to verify
# Pods run by these controllers are counted as their workload (whose template names the Secret).
TEMPLATED_POD_OWNERS = frozenset({"ReplicaSet", "StatefulSet", "DaemonSet", "Job"})


def pod_template(kind: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The pod template ({metadata, spec}) of a workload; a Pod is its own."""
    node: Any = body
    for step in BY_KIND[kind].template_path if kind in BY_KIND else ("spec", "template"):
        node = (node or {}).get(step) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def pod_spec(kind: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = pod_template(kind, body).get("spec")
    return spec if isinstance(spec, Mapping) else {}


def secret_references(spec: Mapping[str, Any]) -> dict[str, frozenset[Via]]:
    """Every Secret a pod spec names, and how: env secretKeyRef, envFrom, secret and projected volumes
    (every container kind), and imagePullSecrets."""
    found: dict[str, set[Via]] = {}

    def add(name: Any, via: Via) -> None:
        if isinstance(name, str) and name:
            found.setdefault(name, set()).add(via)

    for key in CONTAINER_KEYS:
        for container in spec.get(key) or ():
            for env in container.get("env") or ():
                add(((env.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name"), "env")
            for source in container.get("envFrom") or ():
                add((source.get("secretRef") or {}).get("name"), "envFrom")
    for volume in spec.get("volumes") or ():
        add((volume.get("secret") or {}).get("secretName"), "volume")
        for projected in (volume.get("projected") or {}).get("sources") or ():
            add((projected.get("secret") or {}).get("name"), "projected")
    for pull in spec.get("imagePullSecrets") or ():
        add(pull.get("name"), "imagePullSecrets")
    return {name: frozenset(vias) for name, vias in found.items()}


def referenced_secrets(spec: Mapping[str, Any], uses: frozenset[Via] = frozenset(VIA_ORDER)) -> tuple[str, ...]:
    """Names of the Secrets a pod spec reads through any of USES, sorted."""
    return tuple(sorted(name for name, vias in secret_references(spec).items() if vias & uses))


def secret_uses(spec: Mapping[str, Any], secret: str) -> list[Via]:
    """How a pod spec reads SECRET, in a fixed order."""
    vias = secret_references(spec).get(secret, frozenset())
    return [v for v in VIA_ORDER if v in vias]


def rollout_complete(kind: str, body: Mapping[str, Any]) -> bool:
    """Whether the workload controller finished rolling out the current template."""
    meta, spec, status = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    if kind not in ROLLED_OUT:
        return True  # a CronJob's next Job uses the new template; nothing to wait for
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return False
    if kind == "Deployment":
        replicas = int(spec.get("replicas", 1))
        return int(status.get("updatedReplicas") or 0) >= replicas and int(status.get("replicas") or 0) <= replicas
    if kind == "StatefulSet":
        return bool(status.get("updateRevision")) and status.get("updateRevision") == status.get("currentRevision")
    return int(status.get("updatedNumberScheduled") or 0) >= int(status.get("desiredNumberScheduled") or 0)


def workload_ready(kind: str, body: Mapping[str, Any]) -> bool:
    """Every replica of the workload is available (Ready for minReadySeconds): verification needs
    readers that run, not only a finished rollout."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    if kind == "Deployment":
        return int(status.get("availableReplicas") or 0) >= int(spec.get("replicas", 1))
    if kind == "StatefulSet":
        return int(status.get("readyReplicas") or 0) >= int(spec.get("replicas", 1))
    if kind == "DaemonSet":
        return int(status.get("numberAvailable") or 0) >= int(status.get("desiredNumberScheduled") or 0)
    return True


def rollout_failed(kind: str, body: Mapping[str, Any], since: datetime.datetime | None = None) -> str | None:
    """Why the workload's rollout failed, or None: a Deployment whose Progressing condition says
    ProgressDeadlineExceeded (the controller gave up on the new pods). With SINCE (on the API server's
    clock, as the condition's lastTransitionTime is), only a failure recorded since then counts: one
    from before (an earlier rollout that a restart replaces) does not."""
    if kind != "Deployment":
        return None
    for condition in (body.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "Progressing" and condition.get("status") == "False" and \
                condition.get("reason") == "ProgressDeadlineExceeded":
            if since is not None:
                failed_at = times.parse_optional(condition.get("lastTransitionTime"))
                if failed_at is None or failed_at < since:
                    return None
            return f"Deployment {(body.get('metadata') or {}).get('name')}: ProgressDeadlineExceeded"
    return None
