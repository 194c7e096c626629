"""The secret inventory: what secrets exist, who owns them, where they are used. Pure.

Input is plain data as the API server returns it (dicts of SecretSources, RotationPolicies,
LeakIncidents, Pods and workloads, Namespaces) plus Secret *metadata* (never data); output is rows
and their rendering as a table, JSON or CSV.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from rotor.api.aws import AwsSource
from rotor.api.keys import MANAGED_BY, MANAGED_BY_VALUE, OWNER_LABEL, READY
from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.api.secretsource import PkiCertificate, VaultSource
from rotor.planning import podspec, times
from rotor.planning.rotation import next_due

# On a Namespace the owner may also be written the way many clusters already do.
NAMESPACE_OWNER_KEYS = (OWNER_LABEL, "owner", "team")
UNOWNED = "unowned"
# Secrets the cluster or Helm manages; hidden from --unmanaged unless asked for.
SYSTEM_TYPES = frozenset({"kubernetes.io/service-account-token", "helm.sh/release.v1"})


@dataclass(frozen=True)
class SecretMeta:
    """A Secret as the inventory sees it: metadata and type only."""

    namespace: str
    name: str
    type: str = "Opaque"
    labels: Mapping[str, str] = field(default_factory=dict)
    created: str | None = None


@dataclass(frozen=True)
class Consumer:
    kind: str
    namespace: str
    name: str
    secrets: frozenset[str]

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class ManagedRow:
    namespace: str
    secret_source: str
    owner: str
    backend: str
    target: str
    consumers: tuple[str, ...]
    last_sync: str | None
    ready: str | None
    rotation_policy: str | None
    last_rotation: str | None
    next_rotation: str | None  # as the rotation controller planned it (retries included)
    due: str | None  # by the secret's age against the policy's schedule
    overdue: bool | None
    open_incidents: int
    # spec.vault.pki: when the certificate in the Secret expires (never its serial); its age is lastChange's
    not_after: str | None = None


@dataclass(frozen=True)
class UnmanagedRow:
    namespace: str
    secret: str
    type: str
    owner: str
    consumers: tuple[str, ...]
    created: str | None
    open_incidents: int


# -- consumers ------------------------------------------------------------------------------------

def _controller(obj: Mapping[str, Any]) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return str(ref.get("kind"))
    return None


def consumers(objects: Mapping[str, Iterable[Mapping[str, Any]]]) -> list[Consumer]:
    """Consumers from Pods and workloads (kind -> objects). A pod or Job run by a controller whose
    template Rotor also read is represented by that controller, so a Deployment is one consumer,
    not one per replica."""
    found = []
    for kind, items in objects.items():
        for obj in items:
            controller = _controller(obj)
            if kind == "Pod" and controller in podspec.TEMPLATED_POD_OWNERS:
                continue
            if kind == "Job" and controller == "CronJob":
                continue
            secrets = frozenset(podspec.secret_references(podspec.pod_spec(kind, obj)))  # image pulls too
            if secrets:
                meta = obj.get("metadata") or {}
                found.append(Consumer(kind, str(meta.get("namespace", "")), str(meta.get("name", "")), secrets))
    return found


def _consumer_index(found: Iterable[Consumer]) -> dict[tuple[str, str], list[str]]:
    index: dict[tuple[str, str], list[str]] = defaultdict(list)
    order = {kind.kind: i for i, kind in enumerate(podspec.WORKLOAD_KINDS)}
    for consumer in sorted(found, key=lambda c: (order.get(c.kind, len(order)), c.name)):
        for secret in consumer.secrets:
            index[consumer.namespace, secret].append(str(consumer))
    return index


# -- owners, backends, rotation, incidents --------------------------------------------------------

def owner(*labels: Mapping[str, str] | None, namespace: Mapping[str, Any] | None = None) -> str:
    """rotor.dev/owner on the first object that has it, else the namespace's owner label or
    annotation, else "unowned"."""
    for found in labels:
        if found and found.get(OWNER_LABEL):
            return found[OWNER_LABEL]
    meta = (namespace or {}).get("metadata") or {}
    for key in NAMESPACE_OWNER_KEYS:
        for where in (meta.get("labels") or {}, meta.get("annotations") or {}):
            if where.get(key):
                return str(where[key])
    return UNOWNED


def backend(spec: Mapping[str, Any]) -> str:
    """Where the secret lives, as the backends describe it (vault:<connection>/<mount>/<path>,
    aws:<connection>/secretsmanager/<id>)."""
    provider = spec.get("provider", "")
    if provider == "vault":
        vault = spec.get("vault") or {}
        fields = VaultSource.model_fields
        connection = vault.get("connection") or fields["connection"].default
        pki = vault.get("pki")
        if isinstance(pki, Mapping):  # a certificate: the PKI role issuing it
            return f"vault:{connection}/{pki.get('mount') or PkiCertificate.model_fields['mount'].default}/issue/" \
                   f"{pki.get('role', '')}"
        mount = vault.get("mount") or fields["mount"].default
        return f"vault:{connection}/{mount}/{vault.get('path', '')}"
    if provider == "kubernetes":
        source = spec.get("kubernetes") or {}
        return f"kubernetes:{source.get('namespace', '')}/{source.get('name', '')}"
    if provider == "aws":
        return aws_location(spec.get("aws") or {})
    return str(provider) or "unknown"


def aws_location(aws: Mapping[str, Any]) -> str:
    """An aws source's location as its backend describes it: aws:<connection>/secretsmanager/<secret id>
    or aws:<connection>/ssm/<parameter name or path>."""
    connection = aws.get("connection") or AwsSource.model_fields["connection"].default
    manager, store = aws.get("secretsManager"), aws.get("parameterStore") or {}
    what = (f"secretsmanager/{manager.get('secretId', '')}" if manager
            else f"ssm/{str(store.get('name') or store.get('path') or '').lstrip('/')}")
    return f"aws:{connection}/{what}"


def rotation_due(policy: Mapping[str, Any]) -> datetime | None:
    """When the secret is due for rotation by its age: the policy's schedule applied to its last
    successful rotation (or to its creation, if it never rotated), as the rotation controller
    computes it. Failed attempts and retries do not move it, so a stuck rotation shows as overdue."""
    try:
        spec = RotationPolicySpec.model_validate(policy.get("spec") or {})
    except ValidationError:
        return None
    created = times.parse_optional((policy.get("metadata") or {}).get("creationTimestamp"))
    if created is None:
        return None
    return next_due(spec, times.parse_optional((policy.get("status") or {}).get("lastRotationTime")), created)


def incident_open(incident: Mapping[str, Any]) -> bool:
    return not (incident.get("spec") or {}).get("resolved") and \
        (incident.get("status") or {}).get("phase") != "Resolved"


def _ready(source: Mapping[str, Any]) -> str | None:
    for condition in (source.get("status") or {}).get("conditions") or ():
        if condition.get("type") == READY:
            return str(condition.get("reason") or condition.get("status"))
    return None


def _target(source: Mapping[str, Any]) -> str:
    spec = source.get("spec") or {}
    meta = source.get("metadata") or {}
    return str((spec.get("target") or {}).get("name") or meta.get("name", ""))


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


# -- rows -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cluster:
    """Everything the inventory reads, as plain data."""

    sources: Sequence[Mapping[str, Any]] = ()
    secrets: Sequence[SecretMeta] = ()
    workloads: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    policies: Sequence[Mapping[str, Any]] = ()
    incidents: Sequence[Mapping[str, Any]] = ()
    namespaces: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def managed(cluster: Cluster, now: datetime) -> list[ManagedRow]:
    """One row per SecretSource."""
    used_by = _consumer_index(consumers(cluster.workloads))
    secrets = {(s.namespace, s.name): s for s in cluster.secrets}
    policies = {(_key(p)[0], ((p.get("spec") or {}).get("secretSourceRef") or {}).get("name", "")): p
                for p in sorted(cluster.policies, key=_key)}
    rows = []
    for source in cluster.sources:
        namespace, name = _key(source)
        target = _target(source)
        status = source.get("status") or {}
        policy = policies.get((namespace, name))
        due = rotation_due(policy) if policy else None
        planned = ((policy or {}).get("status") or {}).get("nextRotationTime")
        secret = secrets.get((namespace, target))
        rows.append(ManagedRow(
            namespace=namespace, secret_source=name,
            owner=owner((source.get("metadata") or {}).get("labels"), secret.labels if secret else None,
                        namespace=cluster.namespaces.get(namespace)),
            backend=backend(source.get("spec") or {}), target=target,
            consumers=tuple(used_by.get((namespace, target), ())),
            last_sync=status.get("lastSyncTime"), ready=_ready(source),
            rotation_policy=_key(policy)[1] if policy else None,
            last_rotation=((policy or {}).get("status") or {}).get("lastRotationTime"),
            next_rotation=planned or (times.iso(due) if due else None), due=times.iso(due) if due else None,
            overdue=(now >= due) if due else None,
            open_incidents=_incidents(cluster.incidents, namespace, source=name, secret=target),
            not_after=(status.get("certificate") or {}).get("notAfter"),
        ))
    return sorted(rows, key=lambda r: (r.namespace, r.secret_source))


def unmanaged(cluster: Cluster, *, include_system: bool = False) -> list[UnmanagedRow]:
    """Secrets no SecretSource manages: not labelled managed-by=rotor and no source's target."""
    used_by = _consumer_index(consumers(cluster.workloads))
    targets = {(_key(s)[0], _target(s)) for s in cluster.sources}
    rows = []
    for secret in cluster.secrets:
        if secret.labels.get(MANAGED_BY) == MANAGED_BY_VALUE or (secret.namespace, secret.name) in targets:
            continue
        if secret.type in SYSTEM_TYPES and not include_system:
            continue
        rows.append(UnmanagedRow(
            namespace=secret.namespace, secret=secret.name, type=secret.type,
            owner=owner(secret.labels, namespace=cluster.namespaces.get(secret.namespace)),
            consumers=tuple(used_by.get((secret.namespace, secret.name), ())), created=secret.created,
            open_incidents=_incidents(cluster.incidents, secret.namespace, secret=secret.name),
        ))
    return sorted(rows, key=lambda r: (r.namespace, r.secret))


def _incidents(incidents: Iterable[Mapping[str, Any]], namespace: str, *, source: str | None = None,
               secret: str) -> int:
    count = 0
    for incident in incidents:
        if _key(incident)[0] != namespace or not incident_open(incident):
            continue
        spec = incident.get("spec") or {}
        named_source = (spec.get("secretSourceRef") or {}).get("name")
        named_secret = (spec.get("targetSecretRef") or {}).get("name")
        if (source is not None and named_source == source) or named_secret == secret:
            count += 1
    return count


# -- rendering ------------------------------------------------------------------------------------

def age(since: str | None, now: datetime) -> str:
    """kubectl-style age ("45s", "12m", "5h", "3d"); "-" when unknown."""
    moment = times.parse_optional(since)
    if moment is None:
        return "-"
    return _span(now - moment)


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{sign}{seconds // size}{unit}"
    return f"{sign}{seconds}s"


def until(when: str | None, now: datetime, *, past: str = "{} ago") -> str:
    """How far WHEN is: "in 29d", or PAST with the span ("3h ago"); "-" when unknown."""
    moment = times.parse_optional(when)
    if moment is None:
        return "-"
    return f"in {_span(moment - now)}" if moment >= now else past.format(_span(now - moment))


def _overdue(row: ManagedRow, now: datetime) -> str:
    if row.overdue is None:
        return "-" if row.rotation_policy is None else "unknown"
    due = times.parse_optional(row.due)
    if not row.overdue:
        return "no"
    return f"yes ({_span(now - due)})" if due else "yes"


def _consumers_cell(names: Sequence[str], limit: int = 3) -> str:
    if not names:
        return "-"
    shown = ",".join(names[:limit])
    return shown + (f",+{len(names) - limit}" if len(names) > limit else "")


Row = ManagedRow | UnmanagedRow


def table_cells(rows: Sequence[Row], now: datetime, *, unmanaged: bool = False) -> tuple[list[str], list[list[str]]]:
    if unmanaged:
        header = ["NAMESPACE", "SECRET", "TYPE", "OWNER", "CONSUMERS", "AGE", "INCIDENTS"]
        cells = [[r.namespace, r.secret, r.type, r.owner, _consumers_cell(r.consumers), age(r.created, now),
                  str(r.open_incidents)] for r in rows if isinstance(r, UnmanagedRow)]
        return header, cells
    header = ["NAMESPACE", "SOURCE", "OWNER", "BACKEND", "TARGET", "CONSUMERS", "READY", "LAST SYNC",
              "LAST ROTATION", "EXPIRES", "OVERDUE", "INCIDENTS"]
    cells = [[r.namespace, r.secret_source, r.owner, r.backend, r.target, _consumers_cell(r.consumers),
              r.ready or "-", age(r.last_sync, now), age(r.last_rotation, now) if r.rotation_policy else "-",
              until(r.not_after, now, past="expired {} ago"), _overdue(r, now), str(r.open_incidents)]
             for r in rows if isinstance(r, ManagedRow)]
    return header, cells


def render_table(rows: Sequence[Row], now: datetime, *, unmanaged: bool = False) -> str:
    header, cells = table_cells(rows, now, unmanaged=unmanaged)
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]
    lines = ("   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
             for line in [header, *cells])
    return "\n".join(lines) + "\n"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def records(rows: Iterable[Row]) -> Iterator[dict[str, Any]]:
    for row in rows:
        yield {_camel(k): (list(v) if isinstance(v, tuple) else v) for k, v in asdict(row).items()}


def render_json(rows: Sequence[Row]) -> str:
    return json.dumps(list(records(rows)), indent=2) + "\n"


def render_csv(rows: Sequence[Row], *, unmanaged: bool = False) -> str:
    out = io.StringIO()
    columns = [_camel(f.name) for f in fields(UnmanagedRow if unmanaged else ManagedRow)]
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for item in records(rows):
        writer.writerow({k: ";".join(v) if isinstance(v, list) else ("" if v is None else v)
                         for k, v in item.items()})
    return out.getvalue()
