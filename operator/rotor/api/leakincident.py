"""LeakIncident: a suspected leak of one secret, run as a runbook.

Rotor contains the leak (the exposed value goes on a denylist the sync path enforces), identifies the
blast radius, rotates and revokes in the chosen order, audits who read the secret while it was exposed,
and applies guardrails. Every step is a timestamp, a condition, a timeline entry and an Event. The
status holds names, versions, digests and fingerprints, never a value.
"""

from __future__ import annotations

import datetime
import re
from typing import Literal

from pydantic import Field, field_validator
from pydantic.config import JsonDict

from rotor.api.common import Condition, Duration, LocalRef, Model, cel, validations
from rotor.api.rotationpolicy import Identity

IncidentPhase = Literal["Open", "Waiting", "Contained", "Identified", "Rotated", "Revoked", "Audited",
                        "Prevented", "Resolved"]
Order = Literal["immediate", "afterRotation"]
_TIME: JsonDict = {"format": "date-time"}
# RFC 3339 as Kubernetes writes it (upper-case T and Z, up to nanoseconds): what every reader of a time parses.
TIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$"
VERSION_PATTERN = r"^[1-9][0-9]{0,17}$"  # a backend version number (KV v2 versions count from 1)


def check_time(text: str) -> str | None:
    """Why TEXT is not a usable time (naming the fix), or None."""
    if not re.fullmatch(TIME_PATTERN, text):
        return "is not an RFC 3339 time: use e.g. 2026-01-31T12:00:00Z"
    head, _, rest = text.replace("Z", "+00:00").partition(".")
    zone = rest.lstrip("0123456789")
    try:
        moment = datetime.datetime.fromisoformat(head + zone if rest else head).astimezone(datetime.UTC)
    except (ValueError, OverflowError):
        return "is not a time that exists: use e.g. 2026-01-31T12:00:00Z"
    if not 1970 <= moment.year <= 2999:
        return "is out of range: use a time between 1970 and 2999, e.g. 2026-01-31T12:00:00Z"
    return None


class Exposure(Model):
    """Where and when the secret was exposed."""

    where: Literal["ci-logs", "git", "image", "log", "chat", "other"] = Field(
        description="Where it leaked to (the recommendations depend on it).")
    reference: str = Field(default="", max_length=2048, description="Where exactly (a URL, a commit, an image).")
    # The pattern is the API server's; the model's check says how to fix a time (check_time).
    detected_at: str | None = Field(default=None, max_length=64, json_schema_extra={**_TIME, "pattern": TIME_PATTERN},
                                    description="When the leak was detected (default: when the incident was created).")

    @field_validator("detected_at")
    @classmethod
    def _usable_time(cls, value: str | None) -> str | None:
        problem = check_time(value) if value is not None else None
        if problem:
            raise ValueError(f"detectedAt {problem}")
        return value


class Response(Model):
    """How Rotor responds."""

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
    version: str | None = Field(default=None, max_length=18, pattern=VERSION_PATTERN,
                                description="Exposed version, a backend version number such as 3 (default: current).")
    exposure: Exposure
    severity: Literal["low", "medium", "high", "critical"] = Field(
        default="high", description="high and critical make the open-incident alert critical, others a warning.")
    response: Response = Field(default_factory=Response)
    resolved: bool = Field(default=False, description="Set true to close the incident; its denylist is lifted "
                           "(deleting the incident does not lift it).")


class Timestamps(Model):
    """When each phase completed (the headline numbers: detected -> contained -> rotated -> revoked)."""

    model_config = Model.model_config | {"extra": "ignore"}

    detected: str | None = Field(default=None, json_schema_extra=_TIME,
                                 description="spec.exposure.detectedAt, or when the incident was created.")
    contained: str | None = Field(default=None, json_schema_extra=_TIME, description="Leaked value denylisted.")
    identified: str | None = Field(default=None, json_schema_extra=_TIME, description="Blast radius known.")
    rotated: str | None = Field(default=None, json_schema_extra=_TIME, description="Readers on a new value.")
    revoked: str | None = Field(default=None, json_schema_extra=_TIME, description="Leaked credential revoked.")
    audited: str | None = Field(default=None, json_schema_extra=_TIME, description="Audit reads collected.")
    prevented: str | None = Field(default=None, json_schema_extra=_TIME, description="Guardrails in place.")
    resolved: str | None = Field(default=None, json_schema_extra=_TIME, description="spec.resolved set.")


class Consumer(Model):
    """A workload or pod that reads the exposed Secret."""

    model_config = Model.model_config | {"extra": "ignore"}

    kind: str = Field(description="Deployment, StatefulSet, DaemonSet, Job, CronJob or Pod.")
    namespace: str = Field(description="Its namespace (the Secret's).")
    name: str = Field(description="Its name.")
    service_account: str = Field(default="default", description="ServiceAccount its pods run as.")
    via: list[Literal["env", "envFrom", "volume", "projected", "imagePullSecrets"]] = Field(
        default_factory=list, description="How its pods read the Secret.")
    owner: str | None = Field(default=None, description="Controlling owner (kind/name), for pods and jobs.")


class Window(Model):
    """How long the exposed version was valid."""

    model_config = Model.model_config | {"extra": "ignore"}

    start: str | None = Field(default=None, json_schema_extra=_TIME,
                              description="When the exposed version came to exist in the backend.")
    end: str | None = Field(default=None, json_schema_extra=_TIME,
                            description="When it was revoked (unset while it is still valid).")


class BlastRadius(Model):
    """Everything the leaked value reaches: where it lives, who reads it, with which identities."""

    model_config = Model.model_config | {"extra": "ignore"}

    backend: str = Field(description="Backend and path, e.g. vault:default/secret/team-a/db.")
    versions: list[str] = Field(default_factory=list, description="Exposed backend versions.")
    keys: list[str] = Field(default_factory=list, description="Properties whose values leaked (names only).")
    target_secret: str = Field(description="namespace/name of the Kubernetes Secret holding the value.")
    source_identity: str = Field(default="", description="ServiceAccount and Vault role that read the secret.")
    consumers: list[Consumer] = Field(default_factory=list, description="Workloads and Pods reading the Secret.")
    namespaces: list[str] = Field(default_factory=list, description="Namespaces of every reader.")
    service_accounts: list[str] = Field(default_factory=list, description="namespace/name of every reader.")
    leases: list[str] = Field(default_factory=list, description="Fingerprints (sha256) of the leases involved.")
    static_role: str | None = Field(default=None, description="Vault database static role whose password leaked.")
    rotation_policy: str | None = Field(default=None, description="The RotationPolicy of the secret, if any.")
    exposure_window: Window = Field(default_factory=Window)


class TimelineEntry(Model):
    """One thing that happened, by whom."""

    model_config = Model.model_config | {"extra": "ignore"}

    time: str = Field(json_schema_extra=_TIME, description="When.")
    actor: str = Field(max_length=256, description="Who acted: Rotor and the backend identity it used, or the "
                       "user the API server authenticated for a person's change (recorded by Rotor's webhook; "
                       "without it, 'unverified: <field manager>').")
    action: str = Field(max_length=64, description="What, in a word (Reported, Contained, Resolved, ...).")
    message: str = Field(default="", max_length=1024, description="Details.")


class AuditRead(Model):
    """One request on the exposed secret in the backend's audit device during the exposure window."""

    model_config = Model.model_config | {"extra": "ignore"}

    time: str = Field(json_schema_extra=_TIME, description="When.")
    operation: str = Field(description="What it did: read (KV); issue, sign, cert (PKI); encrypt, decrypt, "
                           "rewrap, sign, verify, hmac, datakey, export, backup (Transit).")
    path: str = Field(description="The backend path.")
    service_account: str | None = Field(default=None, description="namespace/name of the Kubernetes identity.")
    role: str | None = Field(default=None, description="The backend role it logged in with.")
    display_name: str | None = Field(default=None, description="The requesting entity as the backend names it.")
    remote_address: str | None = Field(default=None, description="The client's address.")
    denied: bool = Field(default=False, description="The backend refused the request.")
    key_version: int | None = Field(default=None, description="The Transit key version used, where the log says.")


class RotationRef(Model):
    """The rotation the incident asked for."""

    model_config = Model.model_config | {"extra": "ignore"}

    policy: str = Field(description="The RotationPolicy that rotates.")
    emergency: bool = Field(default=False, description="Created by the incident (no RotationPolicy existed).")
    requested_at: str | None = Field(default=None, json_schema_extra=_TIME, description="When it was asked for.")
    token: str = Field(default="", description="The rotor.dev/rotate-now value the incident set.")
    rotation_id: str | None = Field(default=None, description="The RotationPolicy's status.rotation.id.")
    new_version: str | None = Field(default=None, description="The version readers moved to.")


class Revocation(Model):
    """How the leaked value was revoked."""

    model_config = Model.model_config | {"extra": "ignore"}

    method: str = Field(description="What revoked the value (destroy version, revoke lease, rotate role).")
    confirmed: bool | None = Field(default=None, description="Checked where possible; unset when not checkable.")
    check: str = Field(default="", max_length=1024, description="How revocation was checked, and the outcome.")


class LeakIncidentStatus(Model):
    conditions: list[Condition] = Field(default_factory=list, description="Ready (the runbook's progress, or "
                                        "what blocks it) and one per step done, e.g. Contained.")
    observed_generation: int | None = Field(default=None, description="The metadata.generation Rotor last acted on.")
    phase: IncidentPhase | None = Field(default=None, description="The last runbook step completed.")
    step: str | None = Field(default=None, description="The step in progress (persisted before it acts).")
    source: str | None = Field(default=None, description="The SecretSource the incident resolved to.")
    order: Order | None = Field(default=None, description="The order chosen (spec.response.order or derived).")
    waiting_for: str | None = Field(default=None, description="Earlier incident on the same secret this one waits for.")
    exposed_version: str | None = Field(default=None, description="The backend version that leaked.")
    denylist: list[str] = Field(default_factory=list,
                                description="Keyed digests (HMAC) of the leaked values; the sync path refuses them "
                                "where denylistScope says, until the incident is resolved.")
    denylist_scope: str | None = Field(default=None, description="Which SecretSources refuse the denylist: those of "
                                       "the incident's namespace reading the leaked backend location (cluster-wide "
                                       "only for incidents in Rotor's own namespace).")
    timestamps: Timestamps = Field(default_factory=Timestamps)
    blast_radius: BlastRadius | None = None
    rotation: RotationRef | None = None
    revocation: Revocation | None = None
    timeline: list[TimelineEntry] = Field(default_factory=list, max_length=200, description="What happened, "
                                          "oldest first (the last 200 entries).")
    audit_reads: list[AuditRead] = Field(default_factory=list, max_length=200,
                                         description="Reads of the exposed path during the exposure window "
                                         "(certificates: issuances from the PKI role and fetches by serial; Transit "
                                         "keys: uses, exports and backups of the key).")
    audit_reads_total: int | None = Field(default=None, ge=0, description="Reads found (the list is capped).")
    audit_note: str | None = Field(default=None, description="Where the reads came from, or why there are none.")
    guardrails: list[str] = Field(default_factory=list, description="What Rotor put in place against a repeat.")
    recommendations: list[str] = Field(default_factory=list, description="What people should do next.")
    resolved_by: str | None = Field(default=None, description="The user the API server authenticated for setting "
                                    "spec.resolved (recorded by Rotor's webhook; without it, 'unverified: <field "
                                    "manager>').")
    resolved_at: str | None = Field(default=None, json_schema_extra=_TIME, description="When spec.resolved was set.")
