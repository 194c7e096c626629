"""SecretSource: where a secret lives (a backend) and where it goes (a Kubernetes Secret)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

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


# A DNS name a certificate may carry (a leading wildcard label allowed); the PKI role decides which.
_DNS_NAME = r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
DNSName = Annotated[str, Field(min_length=1, max_length=253, pattern=_DNS_NAME)]
IPAddress = Annotated[str, Field(min_length=2, max_length=45, pattern=r"^[0-9A-Fa-f:.]+$")]


class PkiCertificate(Model):
    """Issue a certificate from a Vault PKI role as the source's identity, written as a kubernetes.io/tls
    Secret (tls.crt: leaf and chain; tls.key; ca.crt) and renewed at a fraction of its lifetime."""

    mount: MountPath = Field(default="pki", description="Path of the PKI secrets engine mount.")
    role: VaultName = Field(description="PKI role to issue from (it decides which names and TTLs are allowed).")
    common_name: DNSName = Field(description="Common name of the certificate.")
    alt_names: list[DNSName] = Field(default_factory=list, max_length=100, description="DNS subject alternative "
                                     "names.")
    ip_sans: list[IPAddress] = Field(default_factory=list, max_length=100, description="IP subject alternative "
                                     "names.")
    ttl: Duration = Field(default="24h", description="Lifetime asked for (the role's max TTL caps it).")
    key_type: Literal["rsa", "ec", "ed25519"] | None = Field(default=None, description="Key type (default: "
                                                                "the role's).")
    key_bits: int | None = Field(default=None, ge=0, le=8192, description="Key size (default: the role's).")
    renew_fraction: float = Field(default=2 / 3, gt=0, lt=1, description="Renew once this fraction of the "
                                  "lifetime has passed (jittered a little).")


class VaultSource(Model):
    """A secret in Vault or OpenBao, read through a named connection from the operator's config."""

    model_config = Model.model_config | {
        "json_schema_extra": validations(
            cel("!has(self.version) || self.kvVersion != '1'", "version pins need KV version 2 (or auto)",
                ".version"),
            cel("has(self.path) != has(self.pki)", "set exactly one of spec.vault.path and spec.vault.pki"),
            cel("!has(self.pki) || !has(self.version)", "spec.vault.version does not apply to pki", ".version"),
        )
    }

    connection: DNSLabel = Field(
        default="default",
        description="Name of a backend connection in the operator's configuration (not an address: "
        "tenants cannot point Rotor at their own servers).",
    )
    mount: MountPath = Field(default="secret", description="Path of the KV secrets engine mount.")
    path: str | None = Field(default=None, min_length=1, max_length=512,
                             pattern=rf"^{_PATH_SEGMENT}(/{_PATH_SEGMENT})*$",
                             description="Path of the secret inside the mount, without the mount (not with pki).")
    kv_version: Literal["auto", "1", "2"] = Field(
        default="auto", description="KV engine version; auto asks the server."
    )
    version: int | None = Field(default=None, ge=1, le=2**31 - 1, description="Pin a KV v2 version (default: latest).")
    role: VaultName = Field(description="Vault Kubernetes auth role the ServiceAccount logs in with.")
    auth_mount: MountPath = Field(default="kubernetes", description="Mount path of the Kubernetes auth method.")
    audience: str = Field(default="vault", min_length=1, max_length=253, pattern=r"^[!-~]+$",
                          description="Audience of the ServiceAccount token requested for the login (printable "
                          "ASCII, no spaces).")
    pki: PkiCertificate | None = Field(default=None, description="Issue a certificate instead of reading a "
                                       "KV secret (spec.vault.mount and path are then not used).")

    @model_validator(mode="after")
    def _path_or_pki(self) -> VaultSource:
        if (self.path is None) == (self.pki is None):
            raise ValueError("set exactly one of spec.vault.path and spec.vault.pki")
        if self.pki is not None and self.version is not None:
            raise ValueError("spec.vault.version does not apply to pki")
        return self


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
    jitter: float = Field(default=0.1, ge=0, le=0.5, description=(
        "Fraction of the interval to spread refreshes over, only ever earlier: each refresh comes between "
        "interval*(1-jitter) and interval after the last, so the interval bounds how stale a value can be."))


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

    @model_validator(mode="before")
    @classmethod
    def _certificates_are_tls(cls, data: Any) -> Any:
        """spec.vault.pki always writes a kubernetes.io/tls Secret, whatever spec.target.type says."""
        if not isinstance(data, dict):
            return data
        vault = data.get("vault")
        pki = vault.get("pki") if isinstance(vault, dict) else getattr(vault, "pki", None)
        target = data.get("target") or {}
        if pki is None or not isinstance(target, dict):
            return data
        return {**data, "target": {**target, "type": "kubernetes.io/tls"}}


class CertificateStatus(Model):
    serial: str | None = Field(default=None, description="Serial number of the certificate in the Secret.")
    not_after: str | None = Field(default=None, description="When it expires.")
    renew_at: str | None = Field(default=None, description="When Rotor issues the next one.")
    rotation: str | None = Field(default=None, description="The RotationPolicy rotation that asked for the last "
                                 "renewal: once set, renewals come from that policy, and the source renews on its "
                                 "own only as a backstop (halfway from renewAt to notAfter).")


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
    certificate: CertificateStatus | None = Field(
        default=None, description="The certificate last issued (spec.vault.pki): serial and times, never key "
        "material.")
    consumers: dict[str, int] | None = Field(
        default=None, description="Workloads reading the Secret: current (on the synced value) and stale.")
