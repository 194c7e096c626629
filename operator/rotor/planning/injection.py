"""Pod injection: read the opt-in annotations and compute the pod changes that reference target Secrets.

Plain data in, plain data out. The result only ever names Secrets and keys: a secret value never
enters a pod spec (the kubelet reads the Secret itself).

An app team writes, on the pod template:

    labels:      {rotor.dev/inject: "true"}
    annotations: {rotor.dev/secrets: "db,api-key", rotor.dev/inject-as: volume}
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rotor.api.keys import CONTAINERS, ENV_PREFIX, INJECT_AS, INJECTED, SECRETS

MOUNT_ROOT = "/var/run/secrets/rotor"

InjectAs = Literal["volume", "env", "env-keys"]
_INJECT_AS: tuple[InjectAs, ...] = ("volume", "env", "env-keys")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_ENV_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


@dataclass(frozen=True)
class InjectionRequest:
    """What the pod asked for, parsed and validated."""

    sources: tuple[str, ...]
    inject_as: InjectAs = "volume"
    containers: tuple[str, ...] | None = None  # None: every (regular) container
    env_prefix: str = ""


@dataclass(frozen=True)
class SourceView:
    """What the webhook knows about one named SecretSource (nothing about its values)."""

    name: str
    exists: bool
    ready: bool = False
    target: str = ""
    reason: str = ""
    message: str = ""
    keys: tuple[str, ...] | None = None  # keys of the target Secret, when known (env-keys needs them)


@dataclass(frozen=True)
class InjectionPlan:
    """A merge patch for the pod (lists are whole), and the problems that should reject it."""

    patch: dict[str, Any]
    problems: tuple[str, ...]
    injected: tuple[str, ...]


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def parse_request(annotations: Mapping[str, str]) -> tuple[InjectionRequest | None, list[str]]:
    """The request from the pod's annotations, or the problems with them (each names the annotation)."""
    problems: list[str] = []
    sources = _split(annotations.get(SECRETS, ""))
    if not sources:
        problems.append(f"annotation {SECRETS} is missing or empty: name the SecretSources to inject, "
                        f'e.g. {SECRETS}: "db,api-key"')
    bad = [s for s in sources if not _NAME.match(s) or len(s) > 253]
    if bad:
        problems.append(f"annotation {SECRETS}: {', '.join(repr(b) for b in bad)} is not a valid SecretSource name")
    if len(set(sources)) != len(sources):
        problems.append(f"annotation {SECRETS} names a SecretSource twice")
    inject_as = annotations.get(INJECT_AS, "volume").strip() or "volume"
    if inject_as not in _INJECT_AS:
        problems.append(f"annotation {INJECT_AS}: {inject_as!r} is not one of {', '.join(_INJECT_AS)}")
    containers: tuple[str, ...] | None = None
    if CONTAINERS in annotations:
        containers = tuple(_split(annotations[CONTAINERS]))
        if not containers:
            problems.append(f"annotation {CONTAINERS} is empty: name containers or remove it")
    prefix = annotations.get(ENV_PREFIX, "")
    if prefix and not _ENV_PREFIX.match(prefix):
        problems.append(f"annotation {ENV_PREFIX}: {prefix!r} must start with a letter or '_' and hold only "
                        "letters, digits and '_'")
    if prefix and inject_as == "volume":
        problems.append(f"annotation {ENV_PREFIX} needs {INJECT_AS}: env or env-keys")
    if problems:
        return None, problems
    return InjectionRequest(tuple(sources), inject_as, containers, prefix), []  # type: ignore[arg-type]


def volume_name(source: str) -> str:
    """A DNS-label volume name for the source (source names may hold dots and be longer than 63)."""
    name = "rotor-" + source.replace(".", "-")
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(source.encode()).hexdigest()[:8]
    return name[:54].rstrip("-") + "-" + digest


def env_name(prefix: str, key: str) -> str:
    """DATABASE_URL from "database-url"; keys that are not valid variable names are made so."""
    name = prefix + _ENV_UNSAFE.sub("_", key).upper()
    return name if not name[:1].isdigit() else "_" + name


def source_problem(view: SourceView, namespace: str) -> str | None:
    if not view.exists:
        return (f'SecretSource "{view.name}" does not exist in namespace "{namespace}": create it, or remove '
                f"it from the annotation {SECRETS}")
    if not view.ready:
        detail = f" ({view.reason}: {view.message})" if view.reason else " (not synced yet)"
        return (f'SecretSource "{view.name}" in namespace "{namespace}" is not Ready{detail}: fix it '
                f"(kubectl describe secretsource {view.name} -n {namespace}) and create the pod again")
    return None


def plan_injection(pod: Mapping[str, Any], request: InjectionRequest, sources: Mapping[str, SourceView],
                   namespace: str) -> InjectionPlan:
    """Add volumes + read-only mounts, or envFrom / per-key env, for every source that exists.

    Sources that do not exist are left out (nothing to reference); sources that exist but are not
    Ready are still referenced (the kubelet waits for the Secret). Both are reported as problems.
    """
    spec = pod.get("spec") or {}
    containers = [dict(c) for c in spec.get("containers") or []]
    init_containers = [dict(c) for c in spec.get("initContainers") or []]
    volumes = [dict(v) for v in spec.get("volumes") or []]
    problems: list[str] = []
    by_name = {c.get("name"): c for c in containers}
    by_name.update({c.get("name"): c for c in init_containers})
    if request.containers is None:
        chosen = containers
    else:
        unknown = [n for n in request.containers if n not in by_name]
        if unknown:
            problems.append(f"annotation {CONTAINERS}: no container named {', '.join(repr(u) for u in unknown)} "
                            f"(the pod has {', '.join(repr(n) for n in by_name)})")
        chosen = [by_name[n] for n in request.containers if n in by_name]

    injected: list[str] = []
    for name in request.sources:
        view = sources.get(name) or SourceView(name, exists=False)
        problem = source_problem(view, namespace)
        if problem:
            problems.append(problem)
        if not view.exists:
            continue
        target = view.target or name
        if request.inject_as == "volume":
            vol = volume_name(name)
            path = f"{MOUNT_ROOT}/{name}"
            if not any(v.get("name") == vol for v in volumes):
                volumes.append({"name": vol, "secret": {"secretName": target}})
            for container in chosen:
                mounts = [dict(m) for m in container.get("volumeMounts") or []]
                clash = next((m for m in mounts if m.get("mountPath") == path and m.get("name") != vol), None)
                if clash is not None:
                    problems.append(f'container "{container.get("name")}" already mounts {clash.get("name")!r} '
                                    f"at {path}")
                    continue
                if not any(m.get("name") == vol for m in mounts):
                    mounts.append({"name": vol, "mountPath": path, "readOnly": True})
                container["volumeMounts"] = mounts
        elif request.inject_as == "env":
            for container in chosen:
                env_from = [dict(e) for e in container.get("envFrom") or []]
                ref: dict[str, Any] = {"secretRef": {"name": target}}
                if request.env_prefix:
                    ref["prefix"] = request.env_prefix
                if ref not in env_from:
                    env_from.append(ref)
                container["envFrom"] = env_from
        else:
            if view.keys is None:
                problems.append(f'the keys of SecretSource "{name}" are not known yet (its Secret was not '
                                f"written): use {INJECT_AS}: env, or create the pod once it is Ready")
                continue
            for container in chosen:
                env = [dict(e) for e in container.get("env") or []]
                taken = {e.get("name") for e in env}
                for key in view.keys:
                    var = env_name(request.env_prefix, key)
                    if var in taken:
                        continue  # the pod's own definition wins
                    env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": target, "key": key}}})
                    taken.add(var)
                container["env"] = env
        injected.append(name)

    patch: dict[str, Any] = {}
    if injected:
        spec_patch: dict[str, Any] = {"containers": containers}
        if init_containers:
            spec_patch["initContainers"] = init_containers
        if request.inject_as == "volume":
            spec_patch["volumes"] = volumes
        patch = {"spec": spec_patch, "metadata": {"annotations": {
            INJECTED: f"{request.inject_as}:{','.join(injected)}"}}}
    return InjectionPlan(patch, tuple(problems), tuple(injected))


def describe(problems: Sequence[str]) -> str:
    """One admission message for every problem (the API server shows it to whoever created the pod)."""
    return "Rotor cannot inject secrets into this pod: " + "; ".join(problems)
