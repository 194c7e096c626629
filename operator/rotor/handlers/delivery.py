"""Delivery into workloads: the pod-injection webhook, and the watches that feed restarts on change.

Thin: decode, ask rotor.planning.injection / hand watch events to the Reloader's view
(rotor.engines.delivery.view). No create/update/resume handler ever touches core Secrets (Kopf
would copy their data into an annotation): Secrets are only watched with event handlers.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import kopf

from rotor import GROUP, VERSION
from rotor.api.keys import INJECT_LABEL, MANAGED_BY, MANAGED_BY_VALUE
from rotor.api.kinds import SECRET_SOURCE
from rotor.config import Settings
from rotor.handlers.guard import guarded
from rotor.handlers.memo import runtime_of
from rotor.observability.metrics import WEBHOOK_ADMISSIONS
from rotor.planning.injection import describe, parse_request, plan_injection
from rotor.planning.podspec import BY_KIND, RESTARTABLE

WEBHOOK_CONFIGURATION = GROUP  # the MutatingWebhookConfiguration Kopf creates and keeps current


async def _no_webhook_server(fn: Any) -> AsyncIterator[Any]:
    # Kopf refuses to start with admission handlers and no server; with the webhook disabled,
    # this one never listens and never yields a client config (so nothing is registered).
    await asyncio.Event().wait()
    yield {}  # pragma: no cover - unreachable


def configure(settings: kopf.OperatorSettings, memo: kopf.Memo) -> None:
    """Called from the startup handler: the webhook server (when enabled) and the restart executor."""
    from rotor.servingcert import ServingCertificate

    config: Settings = memo.config
    if config.webhook_enabled and config.webhook_cert_dir is not None:
        # Installed by the chart: its Secret (or cert-manager) holds the certificate, Kopf re-reads it
        # when it changes, and the chart owns the MutatingWebhookConfiguration (served at /inject-secrets).
        settings.admission.server = kopf.WebhookServer(
            addr=config.webhook_addr, port=config.webhook_port or None, host=config.webhook_host,
            certfile=str(config.webhook_cert_dir / "tls.crt"), pkeyfile=str(config.webhook_cert_dir / "tls.key"))
    elif config.webhook_enabled:
        host = config.webhook_host or config.webhook_addr
        cert = ServingCertificate([host, config.webhook_addr])
        settings.admission.server = kopf.WebhookServer(
            addr=config.webhook_addr, port=config.webhook_port or None, host=host,
            certfile=str(cert.pem_file), pkeyfile=str(cert.pem_file), cafile=str(cert.ca_file))
        settings.admission.managed = WEBHOOK_CONFIGURATION
        memo.webhook_cert = cert
        memo.webhook_cert_task = asyncio.get_running_loop().create_task(cert.keep_renewed())
    else:
        settings.admission.server = _no_webhook_server


def shutdown(memo: kopf.Memo) -> None:
    task = getattr(memo, "webhook_cert_task", None)
    if task is not None:
        task.cancel()
    cert = getattr(memo, "webhook_cert", None)
    if cert is not None:
        shutil.rmtree(cert.dir, ignore_errors=True)


# Persistent: the configuration stays when Rotor stops, so a labelled pod is refused rather than
# started without its secrets; the objectSelector keeps every other pod away from Rotor.
@kopf.on.mutate("", "v1", "pods", id="inject-secrets", operations=["CREATE"], labels={INJECT_LABEL: "true"},
                persistent=True, side_effects=False)
async def inject(body: kopf.Body, patch: kopf.Patch, warnings: list[str], memo: kopf.Memo, **_: Any) -> None:
    config: Settings = memo.config
    namespace = str(body.get("metadata", {}).get("namespace") or "")
    annotations = dict(body.get("metadata", {}).get("annotations") or {})
    request, problems = parse_request(annotations)
    if request is None:
        _refuse_or_warn(config, problems, warnings)
        return
    views = {name: runtime_of(memo).sync.source_view(namespace, name) for name in request.sources}
    plan = plan_injection(body, request, views, namespace)
    if plan.problems:
        _refuse_or_warn(config, list(plan.problems), warnings)
    else:
        WEBHOOK_ADMISSIONS.labels("injected").inc()
    for key, value in plan.patch.items():
        patch[key] = value


def _refuse_or_warn(config: Settings, problems: list[str], warnings: list[str]) -> None:
    if config.webhook_failure_mode == "reject":
        WEBHOOK_ADMISSIONS.labels("rejected").inc()
        raise kopf.AdmissionError(describe(problems), code=403)
    WEBHOOK_ADMISSIONS.labels("warned").inc()
    warnings.extend(problems)


# -- restarts on change: every event goes to the Reloader's view, which compares digests ------------

@kopf.on.event("", "v1", "secrets", labels={MANAGED_BY: MANAGED_BY_VALUE}, id="reload-on-secret")
@guarded(None)
async def secret_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    runtime_of(memo).reloader.view.observe_secret(event.get("type"), event["object"])


@kopf.on.event(GROUP, VERSION, SECRET_SOURCE.plural, id="reload-on-source")
@guarded(None)
async def source_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    runtime_of(memo).reloader.view.observe_source(event.get("type"), event["object"])


def _workload_event(kind: str) -> Callable[..., Awaitable[None]]:
    async def workload_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        runtime_of(memo).reloader.view.observe_workload(kind, event.get("type"), event["object"])

    return workload_event


def _watch_workloads() -> None:
    """One watch per kind Rotor restarts (the podspec table), as reload-deployment, reload-cronjob..."""
    for kind in RESTARTABLE:
        table = BY_KIND[kind]
        kopf.on.event(table.group, table.version, table.plural, id=f"reload-{kind.lower()}")(
            guarded(None)(_workload_event(kind)))


_watch_workloads()
