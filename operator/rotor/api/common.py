"""Types shared by every Rotor kind: durations, references, conditions."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# Go-style durations ("90s", "1h30m", "720h") plus days ("7d"), as Kubernetes users write them. Each
# number has at most 5 whole and 9 fractional digits: within 32 characters no duration the schema
# admits overflows a timedelta or a datetime; the model bounds the total exactly (MIN/MAX_DURATION).
DURATION_PATTERN = r"^([0-9]{1,5}(\.[0-9]{1,9})?(ms|s|m|h|d))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MIN_DURATION = timedelta(seconds=1)
MAX_DURATION = timedelta(days=3660)  # ten years and change: a longer schedule is a typo
# The API server's side of MIN_DURATION (its regexes have no lookahead): some part is a whole second or
# more, a fraction of a minute, hour or day, or 1000ms or more. ("1m" followed by "s" is milliseconds.)
_SECOND_OR_MORE = (r"(^|[a-z])(0*[1-9][0-9]*([.][0-9]+)?(s|h|d|m($|[0-9]))"
                   r"|[0-9]+[.][0-9]*[1-9][0-9]*(h|d|m($|[0-9]))|0*[1-9][0-9]{3,}([.][0-9]+)?ms)")
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Names that go into Vault URLs (roles, mounts): no empty, "." or ".." segment (path traversal).
_URL_SEGMENT = r"[A-Za-z0-9_.-]*[A-Za-z0-9_-][A-Za-z0-9_.-]*"
VAULT_NAME_PATTERN = rf"^{_URL_SEGMENT}$"
MOUNT_PATTERN = rf"^{_URL_SEGMENT}(/{_URL_SEGMENT})*$"


def parse_duration(text: str) -> timedelta:
    """Parse a duration such as "1h30m" or "7d" (1s to 3660d); raises ValueError naming the accepted form."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"invalid duration {text!r}: use a number (at most 5 digits) and a unit, e.g. 90s, 15m, "
                         "1h30m, 7d")
    total = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    if total < MIN_DURATION.total_seconds():
        raise ValueError(f"duration {text!r} is shorter than 1s: use 1s or more, e.g. 30s, 5m, 1h")
    if total > MAX_DURATION.total_seconds():
        raise ValueError(f"duration {text!r} is longer than 3660d: use at most 3660d (about ten years)")
    return timedelta(seconds=total)


def _check_duration(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[
    str,
    Field(pattern=DURATION_PATTERN, max_length=32, description="Duration such as 90s, 15m, 1h30m, 7d.",
          json_schema_extra={"x-kubernetes-validations": [{
              "rule": f"self.matches('{_SECOND_OR_MORE}')",
              "message": "must be at least 1s (e.g. 30s, 5m, 1h)"}]}),
    AfterValidator(_check_duration),
]
DNSLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]
VaultName = Annotated[str, Field(min_length=1, max_length=128, pattern=VAULT_NAME_PATTERN)]  # a role
MountPath = Annotated[str, Field(min_length=1, max_length=128, pattern=MOUNT_PATTERN)]  # a secrets engine mount


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
