"""Types shared by every Rotor kind: durations, references, conditions."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# Go-style durations ("90s", "1h30m", "720h") plus days ("7d"), as Kubernetes users write them.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def parse_duration(text: str) -> timedelta:
    """Parse a duration such as "1h30m" or "7d"; raises ValueError naming the accepted form."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"invalid duration {text!r}: use a number and unit, e.g. 90s, 15m, 1h30m, 7d")
    total = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    return timedelta(seconds=total)


def _check_duration(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[
    str,
    Field(pattern=DURATION_PATTERN, max_length=32, description="Duration such as 90s, 15m, 1h30m, 7d."),
    AfterValidator(_check_duration),
]
DNSLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]


class Model(BaseModel):
    """Base of every spec model: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class LocalRef(Model):
    """A reference to an object by name in the same namespace."""

    name: ObjectName = Field(description="Name of the object in this namespace.")


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(Model):
    """A Kubernetes-convention condition."""

    model_config = ConfigDict(extra="ignore")

    type: str = Field(max_length=316, description="What the condition is about, e.g. Ready.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(default="", max_length=1024, description="Why, as one CamelCase word (e.g. Synced).")
    message: str = Field(default="", max_length=32768, description="Why, for people (never a secret value).")
    last_transition_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"},
                                             description="When status last changed.")
    observed_generation: int | None = Field(default=None, ge=0,
                                            description="The metadata.generation the condition was set for.")


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    """One x-kubernetes-validations entry (a CEL rule the API server enforces)."""
    entry: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def validations(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(rules)}


ReadyReason = Literal[
    "Synced",
    "BackendUnavailable",
    "PermissionDenied",
    "NotFound",
    "InvalidSpec",
    "TemplateError",
    "Conflict",
    "Denylisted",
]
