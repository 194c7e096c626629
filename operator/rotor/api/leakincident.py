"""LeakIncident: a suspected leak of one secret, run as a runbook."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rotor.api.common import Condition, Duration, LocalRef, Model, cel, validations

IncidentPhase = Literal["Open", "Contained", "Identified", "Rotated", "Revoked", "Audited", "Prevented", "Resolved"]


class Exposure(Model):
    where: Literal["ci-logs", "git", "image", "log", "chat", "other"]
    reference: str = Field(default="", max_length=2048, description="Where exactly (a URL, a commit, an image).")
    detected_at: str | None = Field(default=None, json_schema_extra={"format": "date-time"})


class Response(Model):
    order: Literal["immediate", "afterRotation"] = Field(
        default="afterRotation",
        description="immediate: revoke first (readers fail until rotated); afterRotation: overlap rotation first.",
    )
    tighten_interval: Duration | None = Field(default=None, description="New, shorter rotation interval.")


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
    resolved: bool = False


class LeakIncidentStatus(Model):
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    phase: IncidentPhase | None = None
