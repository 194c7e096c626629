"""Read what the inventory needs from any cluster (rotor.kube), as plain data.

Reads metadata only for Secrets (the API server sends a Table of PartialObjectMetadata, so no value
crosses the wire); everything else is listed page by page as plain JSON, concurrently. The kinds
that can consume a Secret are the podspec table's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rotor import GROUP, VERSION
from rotor.api.kinds import LEAK_INCIDENT, ROTATION_POLICY, SECRET_SOURCE
from rotor.kube import Kube, KubeError
from rotor.planning import inventory as plan
from rotor.planning.podspec import WORKLOAD_KINDS

T = TypeVar("T")


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
    workloads: dict[str, list[dict[str, Any]]] = {kind.kind: [] for kind in WORKLOAD_KINDS}
    for scope in scopes:
        where = f" in {scope}" if scope else ""
        rotor_kinds = [listed(f"{kind.plural}{where}", kube.list_objects(GROUP, VERSION, kind.plural, scope))
                       for kind in (SECRET_SOURCE, ROTATION_POLICY, LEAK_INCIDENT)]
        kinds = [listed(f"{kind.plural}{where}", kube.list_objects(kind.group, kind.version, kind.plural, scope))
                 for kind in WORKLOAD_KINDS]
        found = await asyncio.gather(listed(f"secrets{where}", kube.list_secret_metadata(scope)), *rotor_kinds,
                                     *kinds)
        secrets.extend(found[0])
        sources.extend(found[1])
        policies.extend(found[2])
        incidents.extend(found[3])
        for kind, items in zip(WORKLOAD_KINDS, found[4:], strict=True):
            workloads[kind.kind].extend(items)
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
