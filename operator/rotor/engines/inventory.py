"""`rotor inventory`: read what the inventory needs from any cluster (rotor.kube), plan, print.

Reads metadata only for Secrets (the API server sends a Table of PartialObjectMetadata, so no value
crosses the wire); everything else is listed page by page as plain JSON, concurrently.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO, TypeVar

from rotor import GROUP, VERSION
from rotor.kube import Kube, KubeError, load_config
from rotor.planning import inventory as plan

T = TypeVar("T")
# kind -> (group, version, plural) of everything that can consume a Secret.
WORKLOADS = {
    "Pod": ("", "v1", "pods"),
    "Deployment": ("apps", "v1", "deployments"),
    "StatefulSet": ("apps", "v1", "statefulsets"),
    "DaemonSet": ("apps", "v1", "daemonsets"),
    "Job": ("batch", "v1", "jobs"),
    "CronJob": ("batch", "v1", "cronjobs"),
}


@dataclass
class Read:
    """What one inventory run read, and what it could not (named in warnings, never fatal)."""

    cluster: plan.Cluster
    warnings: list[str] = field(default_factory=list)


async def collect(kube: Kube, namespaces: Sequence[str] | None) -> Read:
    """Everything in NAMESPACES (None: the whole cluster)."""
    warnings: list[str] = []

    async def listed(what: str, call: Awaitable[list[T]]) -> list[T]:
        try:
            return await call
        except KubeError as err:
            if err.status == 404:
                warnings.append(f"{what}: not served by this cluster (CRDs not installed?)")
            elif err.status in (401, 403):
                warnings.append(f"{what}: not allowed to list ({err.reason}); results are incomplete")
            else:
                raise
            return []

    scopes: Sequence[str | None] = list(namespaces) if namespaces is not None else [None]
    secrets, sources, policies, incidents = [], [], [], []
    workloads: dict[str, list[dict[str, Any]]] = {kind: [] for kind in WORKLOADS}
    for scope in scopes:
        where = f" in {scope}" if scope else ""
        rotor_kinds = [listed(f"{plural}{where}", kube.list_objects(GROUP, VERSION, plural, scope))
                       for plural in ("secretsources", "rotationpolicies", "leakincidents")]
        kinds = [listed(f"{plural}{where}", kube.list_objects(group, version, plural, scope))
                 for group, version, plural in WORKLOADS.values()]
        found = await asyncio.gather(listed(f"secrets{where}", kube.list_secret_metadata(scope)), *rotor_kinds,
                                     *kinds)
        secrets.extend(found[0])
        sources.extend(found[1])
        policies.extend(found[2])
        incidents.extend(found[3])
        for kind, items in zip(WORKLOADS, found[4:], strict=True):
            workloads[kind].extend(items)
    if namespaces is None:
        listed_ns = await listed("namespaces", kube.list_objects("", "v1", "namespaces"))
    else:
        each = await asyncio.gather(*(listed(f"namespace {n}", _namespace(kube, n)) for n in namespaces))
        listed_ns = [ns for found in each for ns in found]
    return Read(plan.Cluster(
        sources=sources, policies=policies, incidents=incidents, workloads=workloads,
        secrets=[_secret(s) for s in secrets],
        namespaces={str(ns["metadata"]["name"]): ns for ns in listed_ns},
    ), warnings)


async def _namespace(kube: Kube, name: str) -> list[dict[str, Any]]:
    found = await kube.get_namespace(name)
    return [found] if found else []


def _secret(item: dict[str, Any]) -> plan.SecretMeta:
    meta = item.get("metadata") or {}
    return plan.SecretMeta(namespace=str(meta.get("namespace", "")), name=str(meta.get("name", "")),
                           type=str(item.get("type") or "Opaque"), labels=dict(meta.get("labels") or {}),
                           created=meta.get("creationTimestamp"))


def render(read: Read, *, output: str, unmanaged: bool, include_system: bool, now: datetime) -> str:
    rows: Sequence[plan.Row] = (plan.unmanaged(read.cluster, include_system=include_system) if unmanaged
                                else plan.managed(read.cluster, now))
    if output == "json":
        return plan.render_json(rows)
    if output == "csv":
        return plan.render_csv(rows, unmanaged=unmanaged)
    return plan.render_table(rows, now, unmanaged=unmanaged)


def main(*, namespaces: Sequence[str] | None, all_namespaces: bool, output: str, unmanaged: bool,
         include_system: bool, kubeconfig: str | None = None, out: TextIO = sys.stdout,
         err: TextIO = sys.stderr) -> int:
    kube = Kube(load_config(kubeconfig))
    try:
        scope = None if all_namespaces else (list(namespaces or ()) or [kube.context_namespace()])
        read = asyncio.run(collect(kube, scope))
    except KubeError as error:
        print(f"rotor inventory: {error}", file=err)
        return 1
    finally:
        kube.close()
    for warning in read.warnings:
        print(f"warning: {warning}", file=err)
    out.write(render(read, output=output, unmanaged=unmanaged, include_system=include_system,
                     now=datetime.now(UTC)))
    return 0
