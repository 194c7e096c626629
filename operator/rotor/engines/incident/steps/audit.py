"""Audit: who read the secret while it was exposed, from the backend's audit trail (names, times and
identities; never a value). A certificate or a Transit key is not read at a path: audit_requests lists
the requests that matter for it (certificate.py, transit.py say which)."""

from __future__ import annotations

from rotor.api import keys
from rotor.backends.protocols import AuditLogUnreadable, AuditReads, AuditRequests
from rotor.engines.incident.context import Context, Outcome, StepPending
from rotor.planning import incident_keys as keyed
from rotor.planning import incident_radius as radius
from rotor.planning import times
from rotor.planning.vault_audit import Requests


def _no_trail(ctx: Context) -> Outcome:
    vault = ctx.source_spec.vault
    note = radius.no_audit_note(ctx.secret.where, vault.connection if vault is not None else None)
    return Outcome(note, {"auditReads": [], "auditReadsTotal": None, "auditNote": note},
                   condition_reason=keys.NO_AUDIT_LOG)


async def audit(ctx: Context) -> Outcome:
    start, end = radius.exposure_window(ctx.state.status, times.now())
    trail = ctx.audit_trail()
    try:
        found = await trail.audit_reads(start, end) if trail is not None else None
    except AuditLogUnreadable as err:
        raise StepPending(err.message, 30.0, keys.AUDIT_LOG_UNREADABLE) from None
    if found is None:
        return _no_trail(ctx)
    vault = ctx.source_spec.vault
    subject = f"{vault.mount}/{vault.path}" if vault is not None else ctx.secret.where
    note = radius.audit_note(total=found.total, listed=len(found.reads), subject=subject, start=start, end=end,
                             found_in=found.source)
    return Outcome(f"{note}; by {', '.join(radius.audit_readers(found.reads)) or 'nobody'}",
                   {"auditReads": found.reads, "auditReadsTotal": found.total, "auditNote": note})


async def audit_requests(ctx: Context, requests: Requests, subject: str, *, transit: bool) -> Outcome:
    """The REQUESTS (SUBJECT, for the note) during the exposure window, with who made them how often."""
    start, end = radius.exposure_window(ctx.state.status, times.now())
    trail = ctx.audit_trail()
    found: AuditReads | None = None
    try:
        if isinstance(trail, AuditRequests):
            found = await trail.audit_requests(requests, start, end)
    except AuditLogUnreadable as err:
        raise StepPending(err.message, 30.0, keys.AUDIT_LOG_UNREADABLE) from None
    if found is None:
        return _no_trail(ctx)
    note = radius.audit_note(total=found.total, listed=len(found.reads), subject=f"{subject},", start=start,
                             end=end, found_in=found.source, counted="request(s):")
    return Outcome(keyed.audited(note, found.reads, transit=transit),
                   {"auditReads": found.reads, "auditReadsTotal": found.total, "auditNote": note})
