"""The `rotor inventory` command: collect, plan the rows, print them as a table, JSON or CSV."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import TextIO

from rotor.engines.inventory.collect import Read, collect
from rotor.kube import Kube, KubeError, load_config
from rotor.planning import inventory as plan
from rotor.planning import inventory_keys, times


def render(read: Read, *, output: str, unmanaged: bool, include_system: bool, now: datetime,
           keys: bool = False) -> str:
    if keys:  # Transit keys of transit RotationPolicies (planning.inventory_keys)
        found = inventory_keys.key_rows(read.cluster.policies)
        if output == "json":
            return inventory_keys.render_json(found, now)
        if output == "csv":
            return inventory_keys.render_csv(found, now)
        return inventory_keys.render_table(found, now)
    rows: Sequence[plan.Row] = (plan.unmanaged(read.cluster, include_system=include_system) if unmanaged
                                else plan.managed(read.cluster, now))
    if output == "json":
        return plan.render_json(rows)
    if output == "csv":
        return plan.render_csv(rows, unmanaged=unmanaged)
    return plan.render_table(rows, now, unmanaged=unmanaged)


def main(*, namespaces: Sequence[str] | None, all_namespaces: bool, output: str, unmanaged: bool,
         include_system: bool, kubeconfig: str | None = None, out: TextIO = sys.stdout,
         err: TextIO = sys.stderr, keys: bool = False) -> int:
    async def run(kube: Kube) -> Read:
        try:
            scope = None if all_namespaces else (list(namespaces or ()) or [kube.context_namespace()])
            return await collect(kube, scope)
        finally:
            await kube.close()

    try:
        read = asyncio.run(run(Kube(load_config(kubeconfig))))
    except KubeError as error:
        print(f"rotor inventory: {error}", file=err)
        return 1
    for warning in read.warnings:
        print(f"warning: {warning}", file=err)
    out.write(render(read, output=output, unmanaged=unmanaged, include_system=include_system, now=times.now(),
                     keys=keys))
    return 0
