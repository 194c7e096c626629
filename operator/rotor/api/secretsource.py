"""SecretSource: where a secret lives (a backend) and where it goes (a Kubernetes Secret)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from rotor.api.aws import AwsSource
from rotor.api.common import (
    Condition,
    DNSLabel,
    Duration,
    Model,
    MountPath,
    ObjectName,
    VaultName,
    cel,
    validations,
)
from rotor.api.keys import RESERVED_PREFIX

# Bounds on what a tenant may make Rotor store and render (label values are at most 63 characters).
TemplateText = Annotated[str, Field(max_length=16384)]
LabelValue = Annotated[str, Field(max_length=63)]
AnnotationValue = Annotated[str, Field(max_length=8192)]


def _is_reserved(key: str) -> bool:
    return key.startswith(RESERVED_PREFIX) or f".{RESERVED_PREFIX}" in key


def _unreserved(field: str) -> dict[str, str]:
    """The CEL rule keeping rotor.dev/ keys (Rotor's consent and ownership marks) out of a map."""
    return cel(f"self.all(k, !k.startsWith('{RESERVED_PREFIX}') && !k.contains('.{RESERVED_PREFIX}'))",
               f"{field}: keys under {RESERVED_PREFIX} (and its subdomains) are reserved for Rotor")


# A path segment inside a KV mount: not "." or ".." (Vault URLs are built from it).
_PATH_SEGMENT = r"[A-Za-z0-9_.@+=-]*[A-Za-z0-9_@+=-][A-Za-z0-9_.@+=-]*"

SecretType = Literal[
    "Opaque", "kubernetes.io/tls", "kubernetes.io/dockerconfigjson", "kubernetes.io/basic-auth"
]


class VaultSource(Model):
    """A secret in Vault or OpenBao, read through a named connection from the operator's config."""

    model_config = Model.model_config | {
        "json_schema_extra": validations(
            cel("!has(self.version) || self.kvVersion != '1'", "version pins need KV version 2 (or auto)",
                ".version"),
        )
    }

    connection: DNSLabel = Field(
        default="default",
        description="Name of a backend connection in the operator's configuration (not an address: "
        "tenants cannot point Rotor at their own servers).",
    )
    mount: MountPath = Field(default="secret", description="Path of the KV secrets engine mount.")
    path: str = Field(min_length=1, max_length=512, pattern=rf"^{_PATH_SEGMENT}(/{_PATH_SEGMENT})*$",
                      description="Path of the secret inside the mount, without the mount.")
    kv_version: Literal["auto", "1", "2"] = Field(
        default="auto", description="KV engine version; auto asks the server."
    )
    version: int | None = Field(default=None, ge=1, le=2**31 - 1, description="Pin a KV v2 version (default: latest).")
    role: VaultName = Field(description="Vault Kubernetes auth role the ServiceAccount logs in with.")
    auth_mount: MountPath = Field(default="kubernetes", description="Mount path of the Kubernetes auth method.")
    audience: str = Field(default="vault", min_length=1, max_length=253, pattern=r"^[!-~]+$",
                          description="Audience of the ServiceAccount token requested for the login (printable "
                          "ASCII, no spaces).")


class KubernetesSource(Model):
    """A Secret in another namespace whose owner allows this namespace to read it (annotation
    rotor.dev/allowed-namespaces on that Secret)."""

    namespace: DNSLabel = Field(description="Namespace of the source Secret.")
    name: ObjectName = Field(description="Name of the source Secret.")


class KeyMapping(Model):
    """Take one property of the backend secret and store it under a key of the target Secret."""

    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$",
                     description="Key in the target Secret.")
    property: str = Field(min_length=1, max_length=253, description="Property (field) of the backend secret.")


class Template(Model):
    """Render target keys from the fetched values with a sandboxed Jinja template ({{ values.password }})."""

    data: dict[str, TemplateText] = Field(
        default_factory=dict, max_length=64,
        description="Target key -> template. Rendered keys replace fetched ones. Rendering is bounded by the "
        "operator (CPU time and output size); a template over the bounds fails with TemplateError.")


class Target(Model):
    """The Kubernetes Secret Rotor writes."""

    name: ObjectName | None = Field(default=None, description="Secret name (default: the SecretSource's name).")
    type: SecretType = Field(default="Opaque", description="Type of the Secret.")
    labels: dict[str, LabelValue] = Field(
        default_factory=dict, max_length=64,
        json_schema_extra=validations(_unreserved("spec.target.labels")),
        description="Labels on the Secret (Rotor's own labels take precedence; rotor.dev/ keys are reserved).")
    annotations: dict[str, AnnotationValue] = Field(
        default_factory=dict, max_length=64,
        json_schema_extra=validations(_unreserved("spec.target.annotations")),
        description="Annotations on the Secret (Rotor's own annotations take precedence; rotor.dev/ keys are "
        "reserved).")
    template: Template | None = None
    creation_policy: Literal["Owner", "Merge", "Orphan"] = Field(
        default="Owner",
        description="Owner: Rotor owns the Secret (garbage-collected with the source); Merge: write keys into "
        "an existing Secret; Orphan: create it without an owner reference.",
    )
    deletion_policy: Literal["Delete", "Retain"] = Field(
        default="Delete", description="What happens to the Secret when the SecretSource is deleted (or when "
        "spec.target.name changes, to the Secret of the old name)."
    )

    @field_validator("labels", "annotations")
    @classmethod
    def _no_reserved_keys(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = sorted(k for k in value if _is_reserved(k))
        if reserved:
            raise ValueError(f"keys under {RESERVED_PREFIX} are Rotor's own: {', '.join(reserved)}")
        return value


class Refresh(Model):
    """When Rotor reads the backend again: a backend change reaches the Secret at the next read."""

    interval: Duration = Field(default="1h", description="How often the backend is read again.")
    jitter: float = Field(default=0.1, ge=0, le=0.5, description="Fraction of the interval to randomise by.")


class SecretSourceSpec(Model):
    model_config = Model.model_config | {
        "json_schema_extra": validations(
            cel("self.provider != 'vault' || has(self.vault)", "provider vault needs spec.vault", ".vault"),
            cel("self.provider != 'kubernetes' || has(self.kubernetes)",
                "provider kubernetes needs spec.kubernetes", ".kubernetes"),
            cel("self.provider != 'aws' || has(self.aws)", "provider aws needs spec.aws", ".aws"),
            cel("(has(self.vault) ? 1 : 0) + (has(self.kubernetes) ? 1 : 0) + (has(self.aws) ? 1 : 0) <= 1",
                "set only one of spec.vault, spec.kubernetes and spec.aws"),
        )
    }

    provider: Literal["vault", "kubernetes", "aws"] = Field(description="Which backend holds the secret.")
    vault: VaultSource | None = None
    kubernetes: KubernetesSource | None = None
    aws: AwsSource | None = None
    service_account_name: ObjectName = Field(
        default="default",
        description="ServiceAccount in this namespace whose identity reads the secret (never another namespace).",
    )
    data: list[KeyMapping] = Field(default_factory=list, max_length=256,
                                   description="Keys to take; empty takes every key as is.")
    # default {} lets the API server fill in the nested defaults, so `kubectl get -o yaml` shows them.
    target: Target = Field(default_factory=Target, json_schema_extra={"default": {}})
    refresh: Refresh = Field(default_factory=Refresh, json_schema_extra={"default": {}})


class SecretSourceStatus(Model):
    conditions: list[Condition] = Field(default_factory=list, description="Ready: whether the last sync succeeded, "
                                        "and why not (the Secret keeps its last good value).")
    observed_generation: int | None = Field(default=None, description="The metadata.generation Rotor last synced.")
    synced_version: str | None = Field(default=None, description="Backend version last synced.")
    data_hmac: str | None = Field(default=None, description="Keyed HMAC of the synced data (never the data).")
    target_secret: str | None = Field(default=None, description="Name of the Secret Rotor writes.")
    last_sync_time: str | None = Field(
        default=None, description="When a successful sync last changed the Secret or this status (a refresh "
        "that finds nothing new writes nothing).")
    last_change_time: str | None = Field(
        default=None, description="When the synced value last changed (a new data HMAC); the secret's age counts "
        "from here.")
    next_sync_time: str | None = Field(default=None, description="When Rotor reads the backend next (or retries).")
    consumers: dict[str, int] | None = Field(
        default=None, description="Workloads reading the Secret: current (on the synced value) and stale.")
