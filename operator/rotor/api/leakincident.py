"""LeakIncident: a suspected leak of one secret, run as a runbook.

Rotor contains the leak (the exposed value goes on a denylist the sync path enforces), identifies the
blast radius, rotates and revokes in the chosen order, audits who read the secret while it was exposed,
and applies guardrails. Every step is a timestamp, a condition, a timeline entry and an Event. The
status holds names, versions, digests and fingerprints, never a value.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic.config import JsonDict

from rotor.api.common import Condition, Duration, LocalRef, Model, cel, validations
from rotor.api.rotationpolicy import Identity

IncidentPhase = Literal["Open", "Waiting", "Contained", "Identified", "Rotated", "Revoked", "Audited",
                        "Prevented", "Resolved"]
Order = Literal["immediate", "afterRotation"]
_TIME: JsonDict = {"format": "date-time"}


class Exposure(Model):
    where: Literal["ci-logs", "git", "image", "log", "chat", "other"]
    reference: str = Field(default="", max_length=2048, description="Where exactly (a URL, a commit, an image).")
    detected_at: str | None = Field(default=None, json_schema_extra=_TIME,
                                    description="When the leak was detected (default: when the incident was created).")


class Response(Model):
    order: Order | None = Field(
        default=None,
        description="immediate: revoke first (readers fail until rotated); afterRotation: overlap rotation first, "
        "then revoke. Default: afterRotation when workloads consume the secret, immediate when none do.",
    )
    tighten_interval: Duration | None = Field(
        default=None, description="Afterwards, shorten the RotationPolicy's schedule to this interval.")
    identity: Identity | None = Field(
        default=None, description="Who revokes and rotates when the secret has no RotationPolicy naming one "
        "(needs write access); default: the SecretSource's identity.")
    key: str | None = Field(
        default=None, min_length=1, max_length=253,
        description="Property holding the leaked credential, when there is no RotationPolicy to tell "
        "(default: the one named like a password, token or key).")
    emergency_window: Duration = Field(
        default="30s", description="Overlap window of the emergency rotation used when there is no RotationPolicy.")


class LeakIncidentSpec(Model):
    model_config = Model.model_config | {
        "json_schema_extra": validations(
            cel("has(self.secretSourceRef) || has(self.targetSecretRef)",
                "name the exposed secret: set secretSourceRef or targetSecretRef"),
        )
    }

    secret_source_ref: LocalRef | None = None
    target_secret_ref: LocalRef | None = None
    version: str | None = Field(default=None, max_length=64, description="Exposed version (default: current).")
    exposure: Exposure
    severity: Literal["low", "medium", "high", "critical"] = "high"
    response: Response = Field(default_factory=Response)
    resolved: bool = Field(default=False, description="Set true to close the incident (the denylist stays).")


class Timestamps(Model):
    """When each phase completed (the headline numbers: detected -> contained -> rotated -> revoked)."""

    model_config = Model.model_config | {"extra": "ignore"}

    detected: str | None = Field(default=None, json_schema_extra=_TIME)
    contained: str | None = Field(default=None, json_schema_extra=_TIME)
    identified: str | None = Field(default=None, json_schema_extra=_TIME)
    rotated: str | None = Field(default=None, json_schema_extra=_TIME)
    revoked: str | None = Field(default=None, json_schema_extra=_TIME)
    audited: str | None = Field(default=None, json_schema_extra=_TIME)
    prevented: str | None = Field(default=None, json_schema_extra=_TIME)
    resolved: str | None = Field(default=None, json_schema_extra=_TIME)


class Consumer(Model):
    """A workload or pod that reads the exposed Secret."""

    model_config = Model.model_config | {"extra": "ignore"}

    kind: str
    namespace: str
    name: str
    service_account: str = Field(default="default", description="ServiceAccount its pods run as.")
    via: list[Literal["env", "envFrom", "volume", "projected"]] = Field(default_factory=list)
    owner: str | None = Field(default=None, description="Controlling owner (kind/name), for pods and jobs.")


class Window(Model):
    model_config = Model.model_config | {"extra": "ignore"}

    start: str | None = Field(default=None, json_schema_extra=_TIME,
                              description="When the exposed version came to exist in the backend.")
    end: str | None = Field(default=None, json_schema_extra=_TIME,
                            description="When it was revoked (unset while it is still valid).")


class BlastRadius(Model):
    model_config = Model.model_config | {"extra": "ignore"}

    backend: str = Field(description="Backend and path, e.g. vault:default/secret/team-a/db.")
    versions: list[str] = Field(default_factory=list, description="Exposed backend versions.")
    keys: list[str] = Field(default_factory=list, description="Properties whose values leaked (names only).")
    target_secret: str = Field(description="namespace/name of the Kubernetes Secret holding the value.")
    source_identity: str = Field(default="", description="ServiceAccount and Vault role that read the secret.")
    consumers: list[Consumer] = Field(default_factory=list)
    namespaces: list[str] = Field(default_factory=list)
    service_accounts: list[str] = Field(default_factory=list, description="namespace/name of every reader.")
    leases: list[str] = Field(default_factory=list, description="Fingerprints (sha256) of the leases involved.")
    static_role: str | None = Field(default=None, description="Vault database static role whose password leaked.")
    rotation_policy: str | None = None
    exposure_window: Window = Field(default_factory=Window)


class TimelineEntry(Model):
    model_config = Model.model_config | {"extra": "ignore"}

    time: str = Field(json_schema_extra=_TIME)
    actor: str = Field(max_length=256, description="Who acted (Rotor and the backend identity it used, or the "
                       "field manager of a person's change).")
    action: str = Field(max_length=64)
    message: str = Field(default="", max_length=1024)


class AuditRead(Model):
    """One read of the exposed path from the backend's audit device during the exposure window."""

    model_config = Model.model_config | {"extra": "ignore"}

    time: str = Field(json_schema_extra=_TIME)
    operation: str
    path: str
    service_account: str | None = Field(default=None, description="namespace/name of the Kubernetes identity.")
    role: str | None = None
    display_name: str | None = Field(default=None, description="The requesting entity as the backend names it.")
    remote_address: str | None = None
    denied: bool = False


class RotationRef(Model):
    model_config = Model.model_config | {"extra": "ignore"}

    policy: str
    emergency: bool = Field(default=False, description="Created by the incident (no RotationPolicy existed).")
    requested_at: str | None = Field(default=None, json_schema_extra=_TIME)
    token: str = Field(default="", description="The rotor.dev/rotate-now value the incident set.")
    rotation_id: str | None = None
    new_version: str | None = None


class Revocation(Model):
    model_config = Model.model_config | {"extra": "ignore"}

    method: str = Field(description="What revoked the value (destroy version, revoke lease, rotate role).")
    confirmed: bool | None = Field(default=None, description="Checked where possible; unset when not checkable.")
    check: str = Field(default="", max_length=1024, description="How revocation was checked, and the outcome.")


class LeakIncidentStatus(Model):
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    phase: IncidentPhase | None = None
    step: str | None = Field(default=None, description="The step in progress (persisted before it acts).")
    source: str | None = Field(default=None, description="The SecretSource the incident resolved to.")
    order: Order | None = Field(default=None, description="The order chosen (spec.response.order or derived).")
    waiting_for: str | None = Field(default=None, description="Earlier incident on the same secret this one waits for.")
    exposed_version: str | None = None
    denylist: list[str] = Field(default_factory=list,
                                description="Keyed digests (HMAC) of the leaked values; the sync path refuses them.")
    timestamps: Timestamps = Field(default_factory=Timestamps)
    blast_radius: BlastRadius | None = None
    rotation: RotationRef | None = None
    revocation: Revocation | None = None
    timeline: list[TimelineEntry] = Field(default_factory=list, max_length=200)
    audit_reads: list[AuditRead] = Field(default_factory=list, max_length=200)
    audit_reads_total: int | None = Field(default=None, ge=0, description="Reads found (the list is capped).")
    audit_note: str | None = Field(default=None, description="Where the reads came from, or why there are none.")
    guardrails: list[str] = Field(default_factory=list)
    recommendations: list[str] = Field(default_factory=list)
    resolved_by: str | None = Field(default=None, description="Field manager that set spec.resolved.")
    resolved_at: str | None = Field(default=None, json_schema_extra=_TIME)
