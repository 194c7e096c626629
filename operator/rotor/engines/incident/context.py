"""What a runbook step works with: the incident, its SecretSource and RotationPolicy as the other
engines last saw them, and a handle on the secret in its backend, bound to the identity that acts.

Steps reach the backend only through the capability protocols (rotor.backends.protocols); a
capability the source's backend lacks stops the runbook with reason Unsupported, naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rotor import GROUP, VERSION
from rotor.api import keys
from rotor.api.capabilities import Capability
from rotor.api.kinds import LEAK_INCIDENT
from rotor.api.leakincident import LeakIncidentSpec
from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.api.secretsource import SecretSourceSpec
from rotor.backends.protocols import (
    Actor,
    AuditTrail,
    Backend,
    LeaseIssuer,
    LoginCheck,
    StaticCredentials,
    VersionStore,
)
from rotor.engines.incident.denylists import Denylists
from rotor.engines.incident.journal import ACTOR, Journal
from rotor.engines.incident.view import IncidentState, IncidentView, Key
from rotor.engines.ports import Policies, PolicyView, Sources, SourceView
from rotor.kube import Kube
from rotor.planning import incident as plan
from rotor.planning.capabilities import INCIDENT_NEEDS, missing
from rotor.planning.incident_response import is_emergency
from rotor.planning.sync import target_name

POLL = 1.0  # while a rotation the incident waits for is running


class StepPending(Exception):
    """The step cannot finish yet: say why in its condition and come back in WAIT seconds."""

    def __init__(self, message: str, wait: float = POLL, reason: str = keys.IN_PROGRESS) -> None:
        super().__init__(message)
        self.message, self.wait, self.reason = message, wait, reason


@dataclass
class Outcome:
    """A finished step: the status it adds, what the timeline, Event and audit log say."""

    message: str
    patch: dict[str, Any] = field(default_factory=dict)
    condition_status: str = "True"
    condition_reason: str = ""
    warning: bool = False


@dataclass(frozen=True)
class Deps:
    """The engine's collaborators, the same for every step."""

    kube: Kube
    backends: Mapping[str, Backend]
    sources: Sources
    policies: Policies
    login: LoginCheck
    view: IncidentView
    journal: Journal
    denylists: Denylists
    login_hosts: Mapping[str, frozenset[str]]  # host:port the revocation check may dial, by Vault connection


@dataclass
class Context:
    """One step of one incident, looked up fresh each time."""

    deps: Deps
    state: IncidentState
    spec: LeakIncidentSpec
    source: SourceView
    source_spec: SecretSourceSpec
    policy: PolicyView | None
    secret: VersionStore
    capabilities: frozenset[Capability]
    credential: plan.Credential

    @property
    def key(self) -> Key:
        return self.state.key

    @property
    def target(self) -> str:
        return target_name(self.source_spec, self.source.name)

    @property
    def acting(self) -> str:
        """Who acted on the backend, for the timeline."""
        return f"{ACTOR} (as {self.secret.actor})"

    def _unsupported(self, capability: Capability) -> StepPending:
        problem = missing({capability: "spec.secretSourceRef"}, self.source_spec.provider, frozenset(),
                          LEAK_INCIDENT.kind)
        return StepPending(f"SecretSource {self.source.name}: {problem}", 300.0, keys.UNSUPPORTED)

    def leases(self) -> LeaseIssuer:
        if Capability.LEASES in self.capabilities and isinstance(self.secret, LeaseIssuer):
            return self.secret
        raise self._unsupported(Capability.LEASES)

    def static_credentials(self) -> StaticCredentials:
        if Capability.STATIC_CREDENTIALS in self.capabilities and isinstance(self.secret, StaticCredentials):
            return self.secret
        raise self._unsupported(Capability.STATIC_CREDENTIALS)

    def audit_trail(self) -> AuditTrail | None:
        """None when the backend keeps no audit trail at all."""
        if Capability.AUDIT_TRAIL in self.capabilities and isinstance(self.secret, AuditTrail):
            return self.secret
        return None


def resolve(deps: Deps, state: IncidentState, spec: LeakIncidentSpec) -> Context:
    """The context of STATE's next step. StepPending when its SecretSource is missing or its backend
    cannot do what the runbook needs; BackendError when the secret cannot be bound."""
    name = deps.view.source_name(state)
    source = deps.sources.source(state.namespace, name) if name else None
    if source is None or source.spec is None:
        what = (f"SecretSource {spec.secret_source_ref.name}" if spec.secret_source_ref else
                f"no SecretSource delivers Secret {spec.target_secret_ref.name if spec.target_secret_ref else '?'}")
        raise StepPending(f"{what} not found in namespace {state.namespace}: create it or fix "
                          "spec.secretSourceRef / spec.targetSecretRef", 15.0, keys.SOURCE_NOT_FOUND)
    provider = source.spec.provider
    backend = deps.backends.get(provider)
    capabilities = backend.capabilities if backend is not None else frozenset()
    problem = missing(INCIDENT_NEEDS, provider, capabilities, LEAK_INCIDENT.kind)
    if backend is None or problem is not None:
        raise StepPending(f"SecretSource {source.name}: {problem or f'no backend for provider {provider}'}",
                          300.0, keys.UNSUPPORTED)
    policy = find_policy(deps.policies, state, source.name)
    policy_spec = policy.spec if policy is not None else None
    acting = policy_spec
    if acting is None:  # a leak of a Transit key: its policy's identity acts (steps/transit.py)
        key = key_policy(deps.policies, state.namespace, source.name)
        acting = key.spec if key is not None else None
    if acting is not None and acting.identity is not None:
        actor = Actor(acting.identity.service_account_name, acting.identity.role)
    elif spec.response.identity is not None:
        actor = Actor(spec.response.identity.service_account_name, spec.response.identity.role)
    else:
        actor = Actor()  # the SecretSource's own identity
    secret = backend.bind(state.namespace, source.spec, actor)
    if not isinstance(secret, VersionStore):  # declared, but not delivered: say the same
        problem = missing(INCIDENT_NEEDS, provider, frozenset(), LEAK_INCIDENT.kind)
        raise StepPending(f"SecretSource {source.name}: {problem}", 300.0, keys.UNSUPPORTED)
    credential = plan.credential_kind(
        policy_spec.strategy if policy_spec else None,
        policy_spec.overlap.static_roles if policy_spec else (),
        policy_spec.generator.key if policy_spec else None)
    return Context(deps, state, spec, source, source.spec, policy, secret, capabilities, credential)


def find_policy(policies: Policies, state: IncidentState, source: str) -> PolicyView | None:
    """The RotationPolicy rotating SOURCE: the emergency one this incident created, else the secret's own."""
    ref = state.status.get("rotation") or {}
    if ref.get("policy"):
        found = policies.policy(state.namespace, ref["policy"])
        if found is not None or ref.get("emergency"):
            return found
    return next((p for p in sorted(policies.policies_in(state.namespace), key=lambda p: p.name)
                 if p.spec is not None and _rotates_value(p.spec, source) and not p.spec.dry_run
                 and not is_emergency(p.name)), None)


def key_policy(policies: Policies, namespace: str, source: str) -> PolicyView | None:
    """The transit RotationPolicy of SOURCE (a key the source names), if any."""
    return next((p for p in sorted(policies.policies_in(namespace), key=lambda p: p.name)
                 if p.spec is not None and p.spec.strategy == "transit" and p.spec.transit is not None
                 and p.spec.secret_source_ref.name == source and not p.spec.dry_run), None)


def _rotates_value(spec: RotationPolicySpec, source: str) -> bool:
    """A policy that replaces SOURCE's value (a transit policy rotates a key the source only names)."""
    return spec.secret_source_ref.name == source and spec.strategy != "transit"


def own_policy(ctx: Context) -> PolicyView | None:
    """The secret's own RotationPolicy (not an emergency one), whatever rotated it this time."""
    ref = ctx.state.status.get("rotation") or {}
    if ref.get("policy") and not ref.get("emergency"):
        return ctx.deps.policies.policy(ctx.state.namespace, ref["policy"])
    if not ref.get("emergency"):
        return find_policy(ctx.deps.policies, ctx.state, ctx.source.name)
    return next((p for p in sorted(ctx.deps.policies.policies_in(ctx.state.namespace), key=lambda p: p.name)
                 if p.spec is not None and _rotates_value(p.spec, ctx.source.name) and not is_emergency(p.name)), None)


async def peers(ctx: Context) -> tuple[plan.Peer, list[plan.Peer]]:
    """This incident and every incident of its namespace, read from the API server (so a freshly
    restarted operator that has not seen them all yet still orders them right)."""
    listed = await ctx.deps.kube.list_objects(GROUP, VERSION, LEAK_INCIDENT.plural, ctx.state.namespace)
    found = [plan.peer_of(body, target=ctx.target, source=ctx.source.name) for body in listed]
    status = ctx.state.status
    me = plan.Peer(ctx.state.name, ctx.state.created, ctx.source.name, status.get("phase"), False,
                   status.get("exposedVersion"))
    return me, found
