"""The registry of Rotor kinds: names, models and printer columns, in one place."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from rotor import GROUP, VERSION
from rotor.api.leakincident import LeakIncidentSpec, LeakIncidentStatus
from rotor.api.rotationpolicy import RotationPolicySpec, RotationPolicyStatus
from rotor.api.secretsource import SecretSourceSpec, SecretSourceStatus


@dataclass(frozen=True)
class Column:
    name: str
    json_path: str
    type: str = "string"
    format: str | None = None
    priority: int = 0


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel]
    key_column: Column
    description: str

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def api_version(self) -> str:
        return f"{GROUP}/{VERSION}"


_READY = '.status.conditions[?(@.type=="Ready")]'

SECRET_SOURCE = Kind(
    kind="SecretSource",
    plural="secretsources",
    short_names=("ss", "secsrc"),
    spec=SecretSourceSpec,
    status=SecretSourceStatus,
    key_column=Column("Last Sync", ".status.lastSyncTime", "date"),
    description="Where a secret lives (a backend) and the Kubernetes Secret Rotor keeps in sync with it.",
)
ROTATION_POLICY = Kind(
    kind="RotationPolicy",
    plural="rotationpolicies",
    short_names=("rp", "rotpol"),
    spec=RotationPolicySpec,
    status=RotationPolicyStatus,
    key_column=Column("Next Rotation", ".status.nextRotationTime", "date"),
    description="How and when the secret behind a SecretSource rotates, without breaking its readers.",
)
LEAK_INCIDENT = Kind(
    kind="LeakIncident",
    plural="leakincidents",
    short_names=("leak", "li"),
    spec=LeakIncidentSpec,
    status=LeakIncidentStatus,
    key_column=Column("Phase", ".status.phase"),
    description="A suspected leak of one secret, carried out as a runbook with its timeline in status.",
)

KINDS: tuple[Kind, ...] = (SECRET_SOURCE, ROTATION_POLICY, LEAK_INCIDENT)


def printer_columns(kind: Kind) -> list[Column]:
    return [
        Column("Ready", f"{_READY}.status"),
        Column("Reason", f"{_READY}.reason"),
        kind.key_column,
        Column("Age", ".metadata.creationTimestamp", "date"),
    ]
