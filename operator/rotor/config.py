"""Operator settings: from flags, ROTOR_* environment variables and an optional YAML file.

Backend connections live here, not in tenants' manifests: a SecretSource names a connection, so a
tenant can never point Rotor (and the ServiceAccount tokens it presents) at a server of theirs.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_HOST_PORT = r"^([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$"  # one host, one port


class ChangeFeed(BaseModel):
    """Rotor as the sink of this connection's socket audit device: a KV change syncs the SecretSources
    reading it at once (docs/secretsource.md, "Instant updates"). Vault cannot speak TLS to a socket
    device: allowed_sources, the token and the chart's NetworkPolicy are what keep others out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen: str = Field(pattern=r"^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$",
                        description="host:port to listen on (0.0.0.0:9444); the device's address points here")
    allowed_sources: tuple[str, ...] = Field(default=(), description="CIDRs the audit device connects from "
                                             "(Vault's pods or nodes); others are closed at once. Empty: any")
    token_file: Path | None = Field(default=None, description="File holding a shared token, also set as the "
                                    "device's prefix option: a record without it closes its connection")
    healthy_interval_seconds: float = Field(default=86400.0, gt=0, le=366 * 86400, description="Backstop "
                                            "refresh interval while the feed is healthy (polling is still on)")
    idle_seconds: float = Field(default=300.0, ge=5, le=86400, description="No record for this long counts "
                                "as an outage (a disabled device keeps its connection open, silent)")
    debounce_seconds: float = Field(default=0.1, ge=0, le=10, description="Changes within this quiet window "
                                    "are acted on together (at most 5x this after the first)")
    buffer_bytes: int = Field(default=16 << 20, ge=1 << 16, le=1 << 30, description="Records read but not yet "
                              "looked at, per connection; past it records are dropped (fallback to polling)")

    @field_validator("allowed_sources")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)  # a ValueError names the bad one
        return value


# Audiences the Kubernetes API server accepts by default (its service-account issuer URL and the
# in-cluster names): Rotor never mints a tenant token for one of these and hands it to a backend.
API_SERVER_AUDIENCES = frozenset({"https://kubernetes.default.svc.cluster.local", "https://kubernetes.default.svc",
                                  "https://kubernetes.default", "kubernetes.default.svc", "kubernetes.default",
                                  "kubernetes", "api"})


class VaultConnection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = Field(pattern=r"^https?://[^\s/]+(:[0-9]+)?/?$", description="Vault/OpenBao base URL")
    ca_file: Path | None = Field(default=None, description="PEM bundle to verify the server (https only)")
    namespace: str | None = Field(default=None, description="Vault Enterprise / OpenBao namespace")
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    max_concurrency: int = Field(default=16, ge=1, le=1024, description="Requests in flight at once")
    rate_per_second: float = Field(default=100.0, gt=0, description="Sustained request rate limit")
    audit_log_file: Path | None = Field(default=None, description="The server's file audit device log, readable "
                                        "by Rotor: LeakIncidents list the reads of the exposed path from it")
    # The revocation check logs in to the leaked credential's database: only these hosts are ever dialled
    # (a tenant's secret names the host, and Rotor's pod must not probe whatever it names).
    login_check_hosts: tuple[Annotated[str, StringConstraints(pattern=_HOST_PORT)], ...] = Field(
        default=(), description="host:port of the databases a LeakIncident may log in to, to confirm "
        "a leaked credential of this connection's secrets is revoked; others are not checked")
    change_feed: ChangeFeed | None = Field(default=None, description="Opt in to instant updates from this "
                                           "server's socket audit device")
    # Rotor mints a token for a tenant's ServiceAccount and sends it to this server: only audiences the
    # server expects, never one the API server accepts (that token would be a key to the cluster).
    allowed_audiences: tuple[str, ...] = Field(default=("vault",), min_length=1, description="Token audiences a "
                                               "SecretSource may ask for (spec.vault.audience)")

    @field_validator("allowed_audiences")
    @classmethod
    def _no_api_server_audience(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        refused = sorted(set(value) & API_SERVER_AUDIENCES)
        if refused:
            raise ValueError(f"allowed_audiences must not include the API server's own audience {refused}: a token "
                             "for it would let the backend act as the tenant's ServiceAccount in the cluster")
        return value


_URL = r"^https?://[^\s/]+(:[0-9]+)?/?$"


class AwsConnection(BaseModel):
    """AWS as tenants' workloads reach it: each read assumes the tenant's role with its ServiceAccount's
    token (IRSA), never with Rotor's own credentials. role_arn_pattern bounds which roles a namespace
    may name; each role's trust policy still decides which ServiceAccounts may assume it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]+$", description="AWS region, e.g. eu-west-1")
    endpoint_url: str | None = Field(default=None, pattern=_URL, description="One endpoint for Secrets Manager, "
                                     "SSM and STS (an emulator such as moto, a proxy); unset: AWS's regional "
                                     "endpoints, where VPC endpoints with private DNS answer too")
    sts_endpoint_url: str | None = Field(default=None, pattern=_URL, description="STS endpoint, overriding "
                                         "endpoint_url for STS")
    ca_file: Path | None = Field(default=None, description="PEM bundle to verify the endpoints (https only)")
    role_arn_pattern: str = Field(min_length=1, description="Regular expression a SecretSource's "
                                  "spec.aws.roleArn must match in full; {namespace} stands for its namespace, "
                                  "e.g. arn:aws:iam::123456789012:role/rotor-{namespace}-.+")
    audience: str = Field(default="sts.amazonaws.com", min_length=1, max_length=253,
                          description="Audience of the ServiceAccount tokens presented to STS")
    session_seconds: int = Field(default=3600, ge=900, le=43200,
                                 description="Lifetime asked for the assumed-role sessions")
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    max_concurrency: int = Field(default=16, ge=1, le=1024, description="Requests in flight at once")
    rate_per_second: float = Field(default=50.0, gt=0, description="Sustained request rate limit")

    @model_validator(mode="after")
    def _pattern_compiles(self) -> AwsConnection:
        try:
            re.compile(self.role_arn_pattern.replace("{namespace}", "ns"))
        except re.error as err:
            raise ValueError(f"role_arn_pattern is not a regular expression: {err}") from None
        return self


class Settings(BaseSettings):
    """Everything `rotor run` needs; each field is also ROTOR_<FIELD> (ROTOR_VAULT_CONNECTIONS and
    ROTOR_AWS_CONNECTIONS as JSON)."""

    model_config = SettingsConfigDict(env_prefix="ROTOR_", extra="forbid", frozen=True)

    # NoDecode: the environment gives "team-a,team-b" (split by the validator below), not JSON.
    namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list,
                                                      description="Namespaces to watch; empty watches all")
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    metrics_port: int = Field(default=8080, ge=0, le=65535, description="0 disables /metrics")
    operator_namespace: str = Field(default="rotor-system", description="Where Rotor keeps its own state")
    vault_connections: dict[str, VaultConnection] = Field(default_factory=dict)
    aws_connections: dict[str, AwsConnection] = Field(default_factory=dict)
    hmac_key_secret: str = Field(default="rotor-hmac-key", description="Secret holding the HMAC key")
    standalone: bool = Field(default=True, description="No peering (single replica)")
    peering_name: str = "rotor"
    # Unset: earlier-started replicas rank higher, so a newcomer (rolling update, restart) never
    # pre-empts the active replica and no two replicas share a priority (which freezes both).
    priority: int | None = Field(default=None, description="Peering priority; unset ranks by start time")
    peering_lifetime: int = Field(default=15, ge=5, le=600,
                                  description="Seconds a silent peer counts as alive (takeover bound)")
    sync_workers: int = Field(default=16, ge=1, le=512, description="Concurrent SecretSource syncs")
    # -- bounds on what one tenant can make Rotor do (issue: no input stalls Rotor)
    min_refresh_seconds: float = Field(default=10.0, ge=1, le=86400, description="Shortest refresh interval: a "
                                       "SecretSource asking for less is refreshed this often (its status says so); "
                                       "also the rate of refresh-now requests and drift restores per source, after "
                                       "a burst of 3")
    template_seconds: float = Field(default=1.0, gt=0, le=30, description="CPU time a SecretSource's templates "
                                    "may take per sync; over it, TemplateError")
    template_output_bytes: int = Field(default=1 << 20, ge=1024, le=1 << 20, description="Bytes a "
                                       "SecretSource's templates may render per sync; over it, TemplateError")
    template_workers: int = Field(default=2, ge=1, le=64, description="Child processes rendering templates "
                                  "(killed and replaced when a render runs past its CPU time)")
    metrics_secret_names: bool = Field(default=False, description="Export per-object metrics (namespace, name "
                                       "labels): secret age, rotation times, lease expiry")
    # -- delivery into workloads: the pod-injection webhook and restarts on change
    webhook_enabled: bool = Field(default=False, description="Serve the pod-injection admission webhook")
    webhook_addr: str = Field(default="127.0.0.1", pattern=r"^[A-Za-z0-9.:-]+$",
                              description="Address the webhook listens on")
    webhook_port: int = Field(default=9443, ge=0, le=65535, description="Webhook port; 0 picks a free one")
    webhook_host: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.:-]+$",
                                     description="Host the API server calls the webhook at (default: "
                                     "webhook_addr); also the serving certificate's name")
    webhook_cert_dir: Path | None = Field(default=None, description="Serve tls.crt/tls.key from here (a mounted "
                                          "Secret, cert-manager) and leave the webhook configuration to its "
                                          "installer; unset: Rotor makes its own CA and manages it")
    webhook_failure_mode: Literal["reject", "warn"] = Field(
        default="reject", description="A pod naming a missing or not-Ready SecretSource: reject it, or admit "
        "it with a warning")
    reload_batch_seconds: float = Field(default=5.0, gt=0, le=300, description="Changes within this quiet "
                                        "window cause one restart per workload")
    restarts_per_namespace: int = Field(default=10, ge=1, description="Restarts per namespace per limit window")
    restarts_cluster: int = Field(default=50, ge=1, description="Restarts cluster-wide per limit window")
    restart_limit_window_seconds: float = Field(default=60.0, gt=0, le=86400, description="Rate-limit window")
    reload_poll_seconds: float = Field(default=30.0, ge=0, le=3600, description="How often Secrets Rotor does "
                                       "not manage are re-read for rotor.dev/reload workloads; 0 disables")
    # -- LeakIncidents: the revocation check and the HMAC key
    login_check_timeout_seconds: int = Field(default=5, ge=2, le=60, description="Bound on one revocation check "
                                             "(a database login with a leaked credential)")
    login_check_workers: int = Field(default=2, ge=1, le=16, description="Threads for revocation checks, apart "
                                     "from every other pool")
    hmac_key_allow_new: bool = Field(default=False, description="Start with a new HMAC key although the lost one "
                                     "was in use (every denylist and digest made with it stops matching)")

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


def load(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the YAML file (if any), then environment, then explicit overrides (flags)."""
    from_file: dict[str, Any] = {}
    if config_file is not None:
        loaded = yaml.safe_load(config_file.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{config_file}: expected a mapping of settings at the top level")
        from_file = {k.replace("-", "_"): v for k, v in loaded.items()}
    from_env = Settings().model_dump(exclude_unset=True)
    merged = {**from_file, **from_env,
              **{k: v for k, v in overrides.items() if v is not None}}
    return Settings.model_validate(merged)
