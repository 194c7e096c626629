"""plan_sync: from what the backend holds and what the cluster has, decide the one write (or none).

Everything here is plain data. Values are bytes in memory; nothing in a SyncPlan's `reason` or
`message` ever contains a value (only key names, policies and digests).
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from rotor.api import keys
from rotor.api.secretsource import SecretSourceSpec
from rotor.planning import sync_claims, template
from rotor.planning.compact import compact
from rotor.planning.hashing import data_hmac, value_hmac

# "read": the view's summary of the Secret cannot decide (metadata only, or a Merge that must write
# the others' keys back): the worker reads the Secret by name and plans again.
Action = Literal["create", "update", "recreate", "none", "fail", "read"]

# The API server refuses a Secret whose values add up to more than this (MaxSecretSize).
MAX_SECRET_BYTES = 1 << 20

# Keys the API server insists on for each Secret type (checked here to give a clear status).
REQUIRED_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    "kubernetes.io/tls": (("tls.crt",), ("tls.key",)),
    "kubernetes.io/dockerconfigjson": ((".dockerconfigjson",),),
    "kubernetes.io/basic-auth": (("username", "password"),),
}


@dataclass(frozen=True)
class Fetched:
    """What a backend returned: values as bytes, and the backend's version of them (if it has one)."""

    values: Mapping[str, bytes]
    version: str | None = None

    def __repr__(self) -> str:  # never print values, even by accident
        return f"Fetched(keys={sorted(self.values)}, version={self.version!r})"


@dataclass(frozen=True, slots=True)  # the view keeps one per managed Secret
class ObservedSecret:
    """The target Secret as the cluster has it: whole (read by name), or as the sync engine's view keeps
    it, without values: a summary (DIGESTS, one keyed digest per key) or metadata only (listed at
    start-up; neither values nor keys known). DATA is empty unless the Secret is whole."""

    name: str
    type: str
    data: Mapping[str, bytes]
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    owner_refs: tuple[Mapping[str, Any], ...] = ()
    resource_version: str | None = None
    digests: Mapping[str, str] | None = None  # a summary: value_hmac of each key's value
    metadata_only: bool = False

    @property
    def owner_uids(self) -> tuple[str, ...]:
        return tuple(str(ref.get("uid")) for ref in self.owner_refs)

    @property
    def whole(self) -> bool:
        return self.digests is None and not self.metadata_only

    def key_names(self) -> tuple[str, ...] | None:
        """Its keys (None: not known, listed as metadata only)."""
        if self.metadata_only:
            return None
        return tuple(sorted(self.digests if self.digests is not None else self.data))

    def holds(self, hmac_key: bytes, key: str, value: bytes) -> bool:
        """Whether KEY holds VALUE (False when not known)."""
        if self.digests is not None:
            return self.digests.get(key) == value_hmac(hmac_key, value)
        return not self.metadata_only and self.data.get(key) == value

    def summary(self, hmac_key: bytes) -> ObservedSecret:
        """This Secret without its values (what the view keeps): a keyed digest per key instead."""
        if not self.whole:
            return self
        return dataclasses.replace(self, data={}, digests={k: value_hmac(hmac_key, v) for k, v in self.data.items()})

    @classmethod
    def from_metadata(cls, item: Mapping[str, Any]) -> ObservedSecret:
        """From a metadata-only listing (Kube.list_secret_metadata): no values ever left the API server."""
        meta = item["metadata"]
        return cls(name=meta["name"], type=compact(item.get("type") or "Opaque"), data={},
                   labels=compact(meta.get("labels") or {}), annotations=compact(meta.get("annotations") or {}),
                   owner_refs=tuple(compact(r) for r in meta.get("ownerReferences") or ()),
                   resource_version=meta.get("resourceVersion"), metadata_only=True)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ObservedSecret:
        """From the Secret as the API server sends it (a watch event or a response body)."""
        meta = body["metadata"]
        return cls(
            name=meta["name"], type=compact(body.get("type") or "Opaque"),
            data={k: base64.b64decode(v) for k, v in (body.get("data") or {}).items()},
            labels=compact(meta.get("labels") or {}), annotations=compact(meta.get("annotations") or {}),
            owner_refs=tuple(compact(r) for r in meta.get("ownerReferences") or ()),
            resource_version=meta.get("resourceVersion"),
        )

    def __repr__(self) -> str:
        return f"ObservedSecret(name={self.name!r}, keys={self.key_names()}, rv={self.resource_version})"


@dataclass(frozen=True)
class Owner:
    namespace: str
    name: str
    uid: str
    api_version: str = "rotor.dev/v1alpha1"
    kind: str = "SecretSource"


@dataclass(frozen=True)
class DesiredSecret:
    name: str
    type: str
    data: Mapping[str, bytes]
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    owned: bool

    def __repr__(self) -> str:
        return f"DesiredSecret(name={self.name!r}, type={self.type!r}, keys={sorted(self.data)})"


@dataclass(frozen=True)
class SyncPlan:
    action: Action
    target: str
    reason: str = keys.SYNCED
    message: str = ""
    secret: DesiredSecret | None = None
    data_hmac: str | None = None
    version: str | None = None


class PlanError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def target_name(spec: SecretSourceSpec, source_name: str) -> str:
    return spec.target.name or source_name


def managed_keys(annotations: Mapping[str, str]) -> list[str]:
    """The keys Rotor wrote into a Secret, as its rotor.dev/managed-keys annotation lists them."""
    return [k for k in annotations.get(keys.MANAGED_KEYS, "").split(",") if k]


def select_values(spec: SecretSourceSpec, fetched: Fetched) -> dict[str, bytes]:
    """The keys the target gets: every fetched key, or the mapped properties."""
    if not spec.data:
        return dict(fetched.values)
    out: dict[str, bytes] = {}
    for mapping in spec.data:
        if mapping.property not in fetched.values:
            available = ", ".join(sorted(fetched.values)) or "none"
            raise PlanError(keys.NOT_FOUND, f"spec.data: property {mapping.property!r} is not in the backend secret "
                                            f"(it has: {available}); fix the mapping or the backend secret")
        out[mapping.key] = fetched.values[mapping.property]
    return out


def render_templates(spec: SecretSourceSpec, values: Mapping[str, bytes],
                     limits: template.TemplateLimits = template.DEFAULT_LIMITS) -> dict[str, bytes]:
    """VALUES with spec.target.template.data rendered over them, in this thread (the operator renders
    in a sandbox process instead: rotor.engines.secretsource.sandbox). Errors never quote a value."""
    templates = spec.target.template.data if spec.target.template is not None else {}
    if not templates:
        return dict(values)
    try:
        return {**values, **template.render(templates, values, limits)}
    except template.TemplateFailure as err:
        raise PlanError(keys.TEMPLATE_ERROR, err.message) from None


def check_size(data: Mapping[str, bytes], what: str) -> None:
    """Refuse, before any write, what the API server would refuse: values over 1 MiB in all."""
    size = sum(len(v) for v in data.values())
    if size > MAX_SECRET_BYTES:
        raise PlanError(keys.INVALID_SPEC, f"{what} holds {size} bytes of values; a Secret holds at most "
                                           f"{MAX_SECRET_BYTES} (1 MiB); nothing was written")


def check_type(secret_type: str, data: Mapping[str, bytes]) -> None:
    for alternatives in REQUIRED_KEYS.get(secret_type, ()):
        if not any(k in data for k in alternatives):
            need = " or ".join(alternatives)
            raise PlanError(keys.INVALID_SPEC, f"spec.target.type {secret_type} needs key {need}; map it with "
                                               f"spec.data or render it with spec.target.template (have: "
                                               f"{', '.join(sorted(data))})")


def plan_sync(
    *,
    spec: SecretSourceSpec,
    owner: Owner,
    fetched: Fetched,
    existing: ObservedSecret | None,
    hmac_key: bytes,
    denylist: frozenset[str] = frozenset(),
    values: Mapping[str, bytes] | None = None,
) -> SyncPlan:
    """Decide how the target Secret must change so that it holds what the backend holds. VALUES: the
    keys already selected and rendered (the worker renders in a sandbox); None: select and render here."""
    name = target_name(spec, owner.name)
    try:
        if values is None:
            selected = select_values(spec, fetched)
            check_size(selected, "the backend secret")
            values = render_templates(spec, selected)
        values = dict(values)
        check_size(values, f"Secret {name}")
        check_type(spec.target.type, values)
    except PlanError as err:
        return SyncPlan("fail", name, err.reason, err.message)
    digest = data_hmac(hmac_key, values, spec.target.type)
    denied = sorted(k for k, v in values.items() if value_hmac(hmac_key, v) in denylist)
    if denied or digest in denylist:
        return SyncPlan("fail", name, keys.DENYLISTED,
                        f"the backend returned a value reported leaked (keys: {', '.join(denied) or 'all'}); "
                        "rotate it in the backend; the existing Secret is kept")

    policy = spec.target.creation_policy
    if existing is None and policy == "Merge":
        return SyncPlan("fail", name, keys.CONFLICT, f"Secret {name} does not exist and creationPolicy is Merge; "
                                                     "create it, or use creationPolicy Owner")
    refused = sync_claims.refusal(existing, owner, policy) if existing is not None else None
    if refused is not None:
        return SyncPlan("fail", name, keys.CONFLICT, refused)

    if existing is not None and existing.metadata_only:
        return SyncPlan("read", name)  # whether anything changed is not known without its data
    merging = existing is not None and not sync_claims.created_for(existing, owner)  # only ever opted in
    data = dict(values)
    if existing is not None and policy == "Merge" and existing.whole:
        previously = set(managed_keys(existing.annotations))
        data = {k: v for k, v in existing.data.items() if k not in previously} | values
        try:
            check_size(data, f"Secret {name} with the keys merged into it")
        except PlanError as err:
            return SyncPlan("fail", name, err.reason, err.message)
    annotations = {**spec.target.annotations, keys.DATA_HMAC: digest, keys.SOURCE_VERSION: fetched.version or "",
                   keys.MANAGED_KEYS: ",".join(sorted(values))}
    if existing is not None and merging:
        added = existing.annotations.get(keys.ADDED_LABELS) or ("" if keys.MANAGED_BY in existing.labels
                                                                 else keys.MANAGED_BY)
        if added:
            annotations[keys.ADDED_LABELS] = added  # release removes only what Rotor added
    else:
        annotations[keys.SOURCE_UID] = owner.uid
    desired = DesiredSecret(
        name=name,
        type=existing.type if (existing is not None and policy == "Merge") else spec.target.type,
        data=data,
        labels={**spec.target.labels, keys.MANAGED_BY: keys.MANAGED_BY_VALUE, keys.SOURCE_LABEL: owner.name},
        annotations=annotations,
        owned=policy == "Owner",
    )
    if existing is None:
        return SyncPlan("create", name, secret=desired, data_hmac=digest, version=fetched.version,
                        message=f"created Secret {name}")
    if existing.type != desired.type:  # only ever a Secret Rotor created for this source (refusal above)
        return SyncPlan("recreate", name, secret=desired, data_hmac=digest, version=fetched.version,
                        message=f"Secret {name} type changes {existing.type} -> {desired.type} (recreated)")
    unchanged = (
        all(existing.holds(hmac_key, k, v) for k, v in values.items())
        and existing.annotations.get(keys.DATA_HMAC) == digest
        and all(existing.labels.get(k) == v for k, v in desired.labels.items())
        and all(existing.annotations.get(k) == v for k, v in desired.annotations.items())
        and (not desired.owned or owner.uid in existing.owner_uids)
        and (policy == "Merge" or set(existing.key_names() or ()) == set(values))
    )
    if unchanged:
        return SyncPlan("none", name, data_hmac=digest, version=fetched.version, message="up to date")
    if policy == "Merge" and not existing.whole:
        return SyncPlan("read", name)  # the write carries the others' keys: their values are needed
    return SyncPlan("update", name, secret=desired, data_hmac=digest, version=fetched.version,
                    message=f"updated Secret {name}")
