"""The runbook on a certificate: a LeakIncident whose SecretSource issues certificates (spec.vault.pki) is
a leak of the private key of the certificate in its Secret. There is no overlap: the source is asked for
a new certificate at once, and the exposed serial is revoked (it goes on the CRL).

Contain records the exposed serial (the one the source's status says the Secret holds); nothing is
denylisted, since no certificate is ever delivered twice (each has a new key). Identify lists the
workloads mounting its kubernetes.io/tls Secret; audit lists who issued from its PKI role and who
fetched it by serial (Vault's audit log). Rotate asks the SecretSource engine for a new certificate
(CertificateRequests) until the source holds a serial other than the exposed one; revoke revokes the
exposed serial (CertificateIssuer, as the incident's acting identity). Both are safe to repeat: a source
already past the exposed serial is not asked again, and revoking a revoked serial is a no-op for Vault.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from rotor.api import keys
from rotor.api.capabilities import Capability
from rotor.api.kinds import LEAK_INCIDENT
from rotor.backends.protocols import CertificateIssuer
from rotor.engines.incident.context import Context, Outcome, StepPending
from rotor.engines.incident.steps.audit import audit_requests
from rotor.engines.incident.steps.identify import consumers
from rotor.engines.ports import CertificateRequests
from rotor.planning import incident as plan
from rotor.planning import incident_keys as keyed
from rotor.planning import incident_radius as radius
from rotor.planning import times
from rotor.planning.capabilities import missing
from rotor.planning.certificates import LEAK_REQUEST
from rotor.planning.vault_audit import certificate_requests

Step = Callable[[Context], Awaitable[Outcome]]


def on_certificate(step: Step, certificate_step: Step) -> Step:
    """STEP, or CERTIFICATE_STEP for an incident on a SecretSource that issues certificates."""
    async def run(ctx: Context) -> Outcome:
        vault = ctx.source_spec.vault
        return await (certificate_step(ctx) if vault is not None and vault.pki is not None else step(ctx))
    return run


def _serial(ctx: Context) -> str:
    return str((ctx.source.status.get("certificate") or {}).get("serial") or "")


def _pki(ctx: Context) -> tuple[str, str]:
    """(mount, role) of the source's PKI role."""
    pki = ctx.source_spec.vault.pki if ctx.source_spec.vault is not None else None
    assert pki is not None  # on_certificate checked
    return pki.mount, pki.role


def _where(ctx: Context) -> str:
    mount, role = _pki(ctx)
    return f"vault:{ctx.source_spec.vault.connection if ctx.source_spec.vault else ''}/{mount}/issue/{role}"


async def contain_certificate(ctx: Context) -> Outcome:
    exposed = _serial(ctx)
    if not exposed:
        raise StepPending(f"SecretSource {ctx.source.name} has issued no certificate yet", 15.0, keys.NOT_FOUND)
    blast = radius.contained(where=_where(ctx), versions=[exposed], keys=["tls.key"], namespace=ctx.state.namespace,
                             target=ctx.target)
    return Outcome(f"leak of the private key of certificate {exposed} (Secret {ctx.target}): nothing to denylist, "
                   "no certificate is delivered twice; it is re-issued and its serial revoked",
                   {"exposedVersion": exposed, "denylist": [], "denylistScope": None, "blastRadius": blast})


async def identify_certificate(ctx: Context) -> Outcome:
    namespace = ctx.state.namespace
    found = await consumers(ctx)
    status = ctx.state.status
    order, why = plan.choose_order(ctx.spec.response.order, len(found))
    account = ctx.source_spec.service_account_name
    namespaces, accounts = radius.readers(found, (namespace, account))
    role = ctx.source_spec.vault.role if ctx.source_spec.vault is not None else None
    blast = radius.identified(
        status.get("blastRadius") or {}, found=found, namespaces=namespaces, accounts=accounts, leases=[],
        static_role=None, identity=radius.source_identity(namespace, account, role), policy=None,
        window_start=(ctx.source.status.get("lastChangeTime") or status["timestamps"]["detected"]))
    mount, pki_role = _pki(ctx)
    message = keyed.certificate_identified(serial=str(status.get("exposedVersion") or ""), pki=f"{mount}/{pki_role}",
                                           target=ctx.target, found=found, order=order, why=why)
    return Outcome(message, {"blastRadius": blast, "order": order})


async def audit_certificate(ctx: Context) -> Outcome:
    """Who issued from the certificate's PKI role, and who fetched it by serial, while it was exposed."""
    mount, role = _pki(ctx)
    serial = str(ctx.state.status.get("exposedVersion") or "")
    return await audit_requests(ctx, certificate_requests(mount, role, serial),
                                keyed.certificate_subject(mount=mount, role=role, serial=serial), transit=False)


async def rotate_certificate(ctx: Context) -> Outcome:
    exposed = str(ctx.state.status.get("exposedVersion") or "")
    current = _serial(ctx)
    if current and current != exposed:
        return Outcome(f"certificate re-issued with no overlap: the Secret holds serial {current}, not the exposed "
                       f"{exposed}")
    if not isinstance(ctx.deps.sources, CertificateRequests):
        raise StepPending("this operator's SecretSource engine cannot renew certificates on request", 300.0,
                          keys.UNSUPPORTED)
    ctx.deps.sources.request_certificate(ctx.state.namespace, ctx.source.name, f"{LEAK_REQUEST}{ctx.state.uid[:12]}")
    raise StepPending(f"SecretSource {ctx.source.name} issuing a new certificate to replace {exposed}")


async def revoke_certificate(ctx: Context) -> Outcome:
    exposed = str(ctx.state.status.get("exposedVersion") or "")
    pki = ctx.source_spec.vault.pki if ctx.source_spec.vault is not None else None
    issuer = ctx.secret
    if pki is None or Capability.CERTIFICATES not in ctx.capabilities or not isinstance(issuer, CertificateIssuer):
        problem = missing({Capability.CERTIFICATES: "spec.secretSourceRef"}, ctx.source_spec.provider, frozenset(),
                          LEAK_INCIDENT.kind)
        raise StepPending(f"SecretSource {ctx.source.name}: {problem}", 300.0, keys.UNSUPPORTED)
    if exposed:
        await issuer.revoke_certificate(pki.mount, exposed)
    check = f"Vault revoked serial {exposed}: it is on the CRL of {pki.mount}"
    revocation = {"method": f"certificate {exposed} revoked", "confirmed": bool(exposed), "check": check}
    blast = radius.revoked(ctx.state.status.get("blastRadius") or {}, times.iso(times.now(), millis=True))
    return Outcome(f"{revocation['method']}; {check}", {"revocation": revocation, "blastRadius": blast})
