"""`rotor status`: one SecretSource, RotationPolicy or LeakIncident as text a person reads at a glance.

Pure: a plain object (as the API server returns it) in, text out. Only status and a few spec fields
are shown; neither holds a secret value (status has names, versions, digests and times), and the one
spec field that could (a template) is never printed.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rotor.api import keys
from rotor.planning.conditions import get_condition
from rotor.planning.inventory import aws_location
from rotor.planning.times import parse_optional

Cell = tuple[str, str]  # (text, style); styles: "" plain, "bold", "good", "bad", "warn", "dim"
_ANSI = {"bold": "1", "good": "32", "bad": "31", "warn": "33", "dim": "2"}
_PHASE_TONE = {
    "Complete": "good", "Prevented": "good", "Resolved": "good",
    "Failed": "bad", "RolledBack": "bad", "RollingBack": "warn", "Waiting": "warn",
}
_INCIDENT_STAMPS = ("detected", "contained", "identified", "rotated", "revoked", "audited", "prevented", "resolved")
_LIST_LIMIT = 20  # audit reads shown before "... and N more" (-o json has them all)


def summary(kind: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """What `rotor status -o json` prints: the object's identity and its status (no spec, no annotations)."""
    meta = obj.get("metadata") or {}
    return {"kind": kind, "namespace": meta.get("namespace"), "name": meta.get("name"),
            "generation": meta.get("generation"), "status": dict(obj.get("status") or {})}


def render(kind: str, obj: Mapping[str, Any], *, now: datetime.datetime, color: bool = False) -> str:
    """The object as text; COLOR adds ANSI colours (only for a terminal)."""
    view = _View(now, color)
    body = {"SecretSource": _secret_source, "RotationPolicy": _rotation_policy,
            "LeakIncident": _leak_incident}[kind]
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    view.line(view.paint(f"{kind} {meta.get('namespace')}/{meta.get('name')}", "bold"))
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    if generation and observed is not None and int(observed) < int(generation):
        view.line(view.paint(f"spec changed (generation {generation}); Rotor has seen generation {observed}", "warn"))
    if not status:
        view.line(view.paint("no status yet: Rotor has not handled this object (is it running?)", "warn"))
        return view.text()
    ready = get_condition(status.get("conditions"), keys.READY)
    if ready:
        view.field("Ready", f"{view.paint(str(ready.get('status')), _tone_of(ready))} ({ready.get('reason') or '-'})")
    body(view, obj.get("spec") or {}, status)
    view.conditions(status.get("conditions") or ())
    if kind == "LeakIncident":
        _timeline(view, status.get("timeline") or ())
    return view.text()


class _View:
    """Accumulates lines: labelled fields, sections and aligned tables."""

    def __init__(self, now: datetime.datetime, color: bool) -> None:
        self.now, self.color = now, color
        self.lines: list[str] = []
        self.indent = ""

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"

    def paint(self, text: str, style: str) -> str:
        if not self.color or not style or not text:
            return text
        return f"\x1b[{_ANSI[style]}m{text}\x1b[0m"

    def line(self, text: str = "") -> None:
        self.lines.append(f"{self.indent}{text}" if text else "")

    def field(self, label: str, value: Any) -> None:
        """`Label:` padded to a column, then the value; nothing when there is no value."""
        if value in (None, "", [], {}):
            return
        self.line(f"{label + ':':<17}{value}")

    def section(self, title: str) -> None:
        self.line()
        self.line(self.paint(title, "bold"))

    def when(self, text: Any) -> str:
        """A status time as written, with how long ago (or until) it is."""
        moment = parse_optional(text) if isinstance(text, str) else None
        if moment is None:
            return str(text) if text else ""
        seconds = (self.now - moment).total_seconds()
        relative = f"{_span(seconds)} ago" if seconds >= 0 else f"in {_span(-seconds)}"
        return f"{text} ({relative})"

    def phase(self, phase: Any) -> str:
        return self.paint(str(phase), _PHASE_TONE.get(str(phase), "warn")) if phase else ""

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> None:
        """Columns padded to their widest plain text (colour codes added after padding)."""
        widths = [max([len(h), *(len(row[i][0]) for row in rows)]) for i, h in enumerate(headers)]
        self.line("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
        for row in rows:
            cells = [self.paint(text, style) + " " * (width - len(text))
                     for (text, style), width in zip(row, widths, strict=True)]
            self.line("  ".join(cells).rstrip())

    def conditions(self, conditions: Sequence[Mapping[str, Any]]) -> None:
        if not conditions:
            return
        self.section("Conditions")
        rows = [[(str(c.get("type") or ""), ""), (str(c.get("status") or ""), _tone_of(c)),
                 (str(c.get("reason") or "-"), ""), (self._ago(c.get("lastTransitionTime")), "dim"),
                 (" ".join(str(c.get("message") or "").split()), "")] for c in conditions]
        self.nested(lambda: self.table(("TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"), rows))

    def nested(self, draw: Callable[[], None]) -> None:
        outer, self.indent = self.indent, self.indent + "  "
        try:
            draw()
        finally:
            self.indent = outer

    def _ago(self, text: Any) -> str:
        moment = parse_optional(text) if isinstance(text, str) else None
        return f"{_span((self.now - moment).total_seconds())} ago" if moment else "-"


def _tone_of(condition: Mapping[str, Any]) -> str:
    if condition.get("type") != keys.READY:
        return ""
    return {"True": "good", "False": "bad"}.get(str(condition.get("status")), "warn")


def _span(seconds: float) -> str:
    """A short human duration: 45s, 12m, 3h20m, 4d."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 2 * 86400:
        hours, minutes = divmod(seconds // 60, 60)
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    return f"{seconds // 86400}d"


def _pairs(values: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((values or {}).items()) if v not in (None, ""))


# -- SecretSource ------------------------------------------------------------------------------------


def _secret_source(view: _View, spec: Mapping[str, Any], status: Mapping[str, Any]) -> None:
    view.field("Backend", _backend(spec))
    target = spec.get("target") or {}
    policies = f"{target.get('creationPolicy') or 'Owner'}, deletion {target.get('deletionPolicy') or 'Delete'}"
    view.field("Target", f"Secret {status.get('targetSecret') or target.get('name') or '-'} ({policies})")
    view.field("Synced version", status.get("syncedVersion"))
    view.field("Data HMAC", status.get("dataHmac"))
    view.field("Last sync", view.when(status.get("lastSyncTime")))
    view.field("Last change", view.when(status.get("lastChangeTime")))
    view.field("Next sync", view.when(status.get("nextSyncTime")))
    consumers = status.get("consumers") or {}
    if consumers:
        stale = int(consumers.get("stale") or 0)
        counts = f"{int(consumers.get('current') or 0)} on the current version, {stale} on an older one"
        view.field("Consumers", view.paint(counts, "warn" if stale else ""))


def _backend(spec: Mapping[str, Any]) -> str:
    account = spec.get("serviceAccountName") or "default"
    if spec.get("provider") == "vault" and spec.get("vault"):
        vault = spec["vault"]
        pin = f"@{vault['version']}" if vault.get("version") else ""
        return (f"vault:{vault.get('connection') or 'default'}/{vault.get('mount') or 'secret'}/{vault.get('path')}"
                f"{pin} (role {vault.get('role')}, as ServiceAccount {account})")
    if spec.get("provider") == "kubernetes" and spec.get("kubernetes"):
        source = spec["kubernetes"]
        return f"kubernetes:{source.get('namespace')}/{source.get('name')}"
    if spec.get("provider") == "aws" and spec.get("aws"):
        aws = spec["aws"]
        ref = aws.get("secretsManager") or aws.get("parameterStore") or {}
        version = ref.get("versionId") or ref.get("versionStage") or ref.get("version")
        pin = f"@{version}" if version else ""
        return f"{aws_location(aws)}{pin} (role {aws.get('roleArn')}, as ServiceAccount {account})"
    return str(spec.get("provider") or "")


# -- RotationPolicy ----------------------------------------------------------------------------------


def _rotation_policy(view: _View, spec: Mapping[str, Any], status: Mapping[str, Any]) -> None:
    view.field("Source", f"SecretSource {(spec.get('secretSourceRef') or {}).get('name', '-')}")
    view.field("Strategy", _strategy(spec) + (" (dry run: touches nothing)" if spec.get("dryRun") else ""))
    view.field("Schedule", _schedule(spec.get("schedule") or {}))
    rotation = status.get("rotation") or {}
    since = f" since {view.when(rotation['phaseSince'])}" if rotation.get("phaseSince") else ""
    view.field("Phase", view.phase(status.get("phase")) + since)
    view.field("Rotations", f"{int(status.get('rotations') or 0)} completed")
    view.field("Last rotation", view.when(status.get("lastRotationTime")))
    view.field("Next rotation", view.when(status.get("nextRotationTime")))
    view.field("Active", _pairs(status.get("active")))
    if rotation:
        view.section(f"Rotation {rotation.get('id', '')}")
        view.nested(lambda: _rotation(view, rotation))


def _strategy(spec: Mapping[str, Any]) -> str:
    strategy = str(spec.get("strategy") or "")
    if strategy == "overlap":
        roles = (spec.get("overlap") or {}).get("staticRoles") or []
        window = (spec.get("overlap") or {}).get("window") or "10m"
        pair = f"static roles {' / '.join(roles)}, " if roles else ""
        return f"overlap ({pair}old value valid {window} after readers moved)"
    if strategy == "versioned":
        return f"versioned (keep {(spec.get('versioned') or {}).get('keep', 3)} KV versions)"
    if strategy == "dynamic":
        return f"dynamic (role {(spec.get('dynamic') or {}).get('role', '-')})"
    if strategy == "transit":
        transit = spec.get("transit") or {}
        window = (spec.get("overlap") or {}).get("window") or "10m"
        return (f"transit (key {transit.get('mount', 'transit')}/{transit.get('key', '-')}, old versions valid "
                f"{window} after rotation)")
    return strategy


def _schedule(schedule: Mapping[str, Any]) -> str:
    text = f"every {schedule['interval']}" if schedule.get("interval") else f"cron {schedule.get('cron', '-')} (UTC)"
    window = schedule.get("window")
    if window:
        text += f", in the window {window.get('start')} UTC for {window.get('duration')}"
    return text


def _rotation(view: _View, rotation: Mapping[str, Any]) -> None:
    view.field("Trigger", rotation.get("trigger"))
    view.field("Started", view.when(rotation.get("startedAt")))
    view.field("Old", _pairs(rotation.get("old")))
    view.field("New", _pairs(rotation.get("new")))
    view.field("Reason", rotation.get("reason"))
    steps = rotation.get("steps") or ()
    if steps:
        rows = [[(str(s.get("time") or ""), "dim"), (str(s.get("phase") or ""), _PHASE_TONE.get(s.get("phase"), "")),
                 (" ".join(str(s.get("message") or "").split()), "")] for s in steps]
        view.line()
        view.table(("TIME", "PHASE", "STEP"), rows)


# -- LeakIncident ------------------------------------------------------------------------------------


def _leak_incident(view: _View, spec: Mapping[str, Any], status: Mapping[str, Any]) -> None:
    step = f" (step in progress: {status['step']})" if status.get("step") else ""
    view.field("Phase", view.phase(status.get("phase")) + step)
    source = status.get("source") or (spec.get("secretSourceRef") or {}).get("name")
    view.field("Secret", f"SecretSource {source}" if source else
               f"Secret {(spec.get('targetSecretRef') or {}).get('name', '-')}")
    exposure = spec.get("exposure") or {}
    where = f"{exposure.get('where', '-')}" + (f" ({exposure['reference']})" if exposure.get("reference") else "")
    view.field("Exposure", f"{where}, severity {spec.get('severity') or 'high'}")
    view.field("Exposed version", status.get("exposedVersion"))
    view.field("Order", status.get("order"))
    view.field("Waiting for", status.get("waitingFor"))
    denylist = status.get("denylist") or ()
    view.field("Denylist", f"{len(denylist)} keyed digest(s) refused by every sync" if denylist else "")
    if spec.get("resolved") or status.get("resolvedBy"):
        view.field("Resolved", f"by {status.get('resolvedBy') or '?'} {view.when(status.get('resolvedAt'))}".strip())
    _progress(view, status.get("timestamps") or {})
    if status.get("blastRadius"):
        view.section("Blast radius")
        view.nested(lambda: _blast_radius(view, status["blastRadius"]))
    rotation, revocation = status.get("rotation") or {}, status.get("revocation") or {}
    if rotation or revocation:
        view.section("Rotation and revocation")
        view.nested(lambda: _rotation_and_revocation(view, rotation, revocation))
    _audit(view, status)
    for title in ("guardrails", "recommendations"):
        _bullets(view, title.capitalize(), status.get(title) or ())


def _bullets(view: _View, title: str, items: Sequence[Any]) -> None:
    if not items:
        return
    view.section(title)

    def draw() -> None:
        for item in items:
            view.line(f"- {item}")

    view.nested(draw)


def _progress(view: _View, stamps: Mapping[str, Any]) -> None:
    """Each phase reached, with the time it took from detection (the incident's headline numbers)."""
    detected = parse_optional(stamps.get("detected"))
    rows: list[list[Cell]] = []
    for name in _INCIDENT_STAMPS:
        moment = parse_optional(stamps.get(name))
        if moment is None:
            continue
        offset = f"+{(moment - detected).total_seconds():.1f}s" if detected and name != "detected" else ""
        rows.append([(name, "good"), (str(stamps[name]), "dim"), (offset, "")])
    if rows:
        view.section("Progress")
        view.nested(lambda: view.table(("PHASE", "AT", "AFTER DETECTION"), rows))


def _blast_radius(view: _View, radius: Mapping[str, Any]) -> None:
    versions = ", ".join(radius.get("versions") or ())
    view.field("Backend", str(radius.get("backend") or "") + (f" (versions {versions})" if versions else ""))
    view.field("Target Secret", radius.get("targetSecret"))
    view.field("Keys", ", ".join(radius.get("keys") or ()))
    view.field("Source identity", radius.get("sourceIdentity"))
    view.field("Static role", radius.get("staticRole"))
    view.field("Leases", ", ".join(radius.get("leases") or ()))
    view.field("RotationPolicy", radius.get("rotationPolicy"))
    view.field("Namespaces", ", ".join(radius.get("namespaces") or ()))
    view.field("ServiceAccounts", ", ".join(radius.get("serviceAccounts") or ()))
    window = radius.get("exposureWindow") or {}
    if window.get("start"):
        end = view.when(window.get("end")) if window.get("end") else view.paint("still valid", "warn")
        view.field("Exposed", f"from {window['start']} to {end}")
    consumers = radius.get("consumers") or ()
    view.field("Consumers", f"{len(consumers)}" if consumers else "none")
    if consumers:
        rows = [[(f"{c.get('kind')}/{c.get('name')}", ""), (", ".join(c.get("via") or ()), ""),
                 (str(c.get("serviceAccount") or "default"), ""), (str(c.get("owner") or "-"), "dim")]
                for c in consumers]
        view.nested(lambda: view.table(("WORKLOAD", "READS VIA", "SERVICEACCOUNT", "OWNER"), rows))


def _rotation_and_revocation(view: _View, rotation: Mapping[str, Any], revocation: Mapping[str, Any]) -> None:
    if rotation:
        emergency = " (emergency, created by this incident)" if rotation.get("emergency") else ""
        view.field("RotationPolicy", f"{rotation.get('policy')}{emergency}")
        view.field("Requested", view.when(rotation.get("requestedAt")))
        view.field("Rotation", rotation.get("rotationId"))
        view.field("New version", rotation.get("newVersion"))
    if revocation:
        confirmed = revocation.get("confirmed")
        verdict = ("not checkable" if confirmed is None else view.paint("confirmed", "good") if confirmed
                   else view.paint("NOT confirmed", "bad"))
        view.field("Revoked by", f"{revocation.get('method')} ({verdict})")
        view.field("Check", revocation.get("check"))


def _audit(view: _View, status: Mapping[str, Any]) -> None:
    reads = status.get("auditReads") or ()
    total = status.get("auditReadsTotal")
    if not reads and not status.get("auditNote") and total is None:
        return
    view.section(f"Audit: {total if total is not None else len(reads)} read(s) in the exposure window")

    def draw() -> None:
        view.field("Note", status.get("auditNote"))
        rows = [[(str(r.get("time") or ""), "dim"), (str(r.get("serviceAccount") or r.get("displayName") or "-"), ""),
                 (str(r.get("role") or "-"), ""), (f"{r.get('operation')} {r.get('path')}", ""),
                 (str(r.get("remoteAddress") or "-"), ""), ("denied" if r.get("denied") else "allowed",
                                                            "good" if r.get("denied") else "")]
                for r in reads[:_LIST_LIMIT]]
        if rows:
            view.table(("TIME", "WHO", "ROLE", "REQUEST", "FROM", "RESULT"), rows)
        if len(reads) > _LIST_LIMIT:
            view.line(view.paint(f"... and {len(reads) - _LIST_LIMIT} more (-o json lists them all)", "dim"))

    view.nested(draw)


def _timeline(view: _View, timeline: Sequence[Mapping[str, Any]]) -> None:
    if not timeline:
        return
    view.section("Timeline")
    rows = [[(str(e.get("time") or ""), "dim"), (str(e.get("action") or ""), "bold"), (str(e.get("actor") or ""), ""),
             (" ".join(str(e.get("message") or "").split()), "")] for e in timeline]
    view.nested(lambda: view.table(("TIME", "ACTION", "ACTOR", "MESSAGE"), rows))
