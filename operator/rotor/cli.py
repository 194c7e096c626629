"""The `rotor` command: run the operator, write the CRDs, print the version."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from rotor import __version__


def _cmd_crds(args: argparse.Namespace) -> int:
    from rotor.api.crd import render_all

    rendered = render_all()
    if str(args.output) == "-":
        sys.stdout.write("---\n".join(rendered.values()))
        return 0
    args.output.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        (args.output / name).write_text(text)
        print(f"wrote {args.output / name}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from rotor import config

    try:
        settings = config.load(
            args.config,
            namespaces=[] if args.all_namespaces else (args.namespace or None),
            log_format=args.log_format,
            log_level=args.log_level,
            metrics_port=args.metrics_port,
        )
    except (ValidationError, ValueError) as exc:
        print(f"rotor: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    # Kopf imports the kubernetes client and pykube whenever they are installed, only to recognise their
    # objects, which Rotor never hands it; Rotor uses neither (rotor.kube speaks plain JSON). They are test
    # dependencies (the tests' client; pytest-kind's), so a development environment has them and the image
    # does not: about 30 MiB of RSS the image does not carry, so the benchmarks measure what it runs.
    for unused in ("kubernetes", "pykube"):
        sys.modules.setdefault(unused, None)  # type: ignore[arg-type]
    # asyncio gives every TLS connection a 256 KiB read buffer, zero-filled, so resident: 12 MiB for the API
    # server's and Vault's connection pools. A TLS record is at most 16 KiB; reading up to 64 KiB at a time
    # costs a few more reads of a large list page and nothing else.
    import asyncio.sslproto

    asyncio.sslproto.SSLProtocol.max_size = min(asyncio.sslproto.SSLProtocol.max_size, 64 * 1024)
    from rotor.handlers.app import run

    run(settings)
    return 0


def _cmd_inventory(args: argparse.Namespace) -> int:
    from rotor.engines.inventory.command import main

    return main(namespaces=args.namespace, all_namespaces=args.all_namespaces, output=args.output,
                unmanaged=args.unmanaged, include_system=args.include_system, kubeconfig=args.kubeconfig,
                keys=args.keys)


def _cmd_rotate(args: argparse.Namespace) -> int:
    """`rotor rotate NS/POLICY`: ask for a rotation now (the annotation rotor.dev/rotate-now)."""
    return _ask_now("rotate", "rotationpolicies", args.policy, "rotor.dev/rotate-now", "rotation", "rp")


def _cmd_refresh(args: argparse.Namespace) -> int:
    """`rotor refresh NS/SOURCE`: read the backend now, not at the next interval (rotor.dev/refresh-now)."""
    return _ask_now("refresh", "secretsources", args.source, "rotor.dev/refresh-now", "refresh", "ss")


def _ask_now(command: str, plural: str, ref: str, annotation: str, what: str, short: str) -> int:
    """Set ANNOTATION to a new timestamp on the object REF (<namespace>/<name>): Rotor acts on a new value."""
    import asyncio
    import datetime

    from rotor.kube import Kube, KubeError

    namespace, _, name = ref.partition("/")
    if not namespace or not name:
        print(f"{_prog()} {command}: name the object as <namespace>/<name>", file=sys.stderr)
        return 2
    token = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S.%fZ")

    async def request() -> None:
        kube = Kube()
        try:
            await kube.annotate(plural, namespace, name, {annotation: token})
        finally:
            await kube.close()

    try:
        asyncio.run(request())
    except KubeError as err:
        print(f"{_prog()} {command}: {namespace}/{name}: {err.message or err.reason}", file=sys.stderr)
        return 1
    print(f"{what} of {namespace}/{name} requested ({token}); watch: kubectl get {short} -n {namespace} {name} -w")
    return 0


def _cmd_leak(args: argparse.Namespace) -> int:
    """`rotor leak report NS/SOURCE`: create the LeakIncident that starts the runbook, print its name."""
    import asyncio
    import datetime
    from typing import Any

    from rotor.kube import Kube, KubeError, load_config

    namespace, _, source = args.source.partition("/")
    if not namespace or not source:
        print(f"{_prog()} leak report: name the secret as <namespace>/<SecretSource>", file=sys.stderr)
        return 2
    response: dict[str, str] = {}
    if args.order:
        response["order"] = args.order
    if args.tighten_interval:
        response["tightenInterval"] = args.tighten_interval
    body: dict[str, Any] = {"apiVersion": "rotor.dev/v1alpha1", "kind": "LeakIncident",
            "metadata": {"generateName": f"{source[:40]}-leak-"},
            "spec": {"secretSourceRef": {"name": source}, "severity": args.severity, "response": response,
                     "exposure": {"where": args.where, "reference": args.ref or "",
                                  "detectedAt": datetime.datetime.now(datetime.UTC).isoformat(
                                      timespec="seconds").replace("+00:00", "Z")}}}
    if args.version:
        body["spec"]["version"] = args.version

    async def create() -> dict[str, Any]:
        kube = Kube(load_config(args.kubeconfig))
        try:
            return await kube.create_object("leakincidents", namespace, body, field_manager="rotor-cli")
        finally:
            await kube.close()

    try:
        created = asyncio.run(create())
    except KubeError as err:
        print(f"{_prog()} leak report: {err.status} {err.reason}: {err.message}", file=sys.stderr)
        return 1
    name = (created.get("metadata") or {}).get("name")
    print(f"leakincident {namespace}/{name} reported; follow it with:\n"
          f"  kubectl -n {namespace} get leakincident {name} -o yaml")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    """`rotor status NS/NAME`: one SecretSource's, RotationPolicy's or LeakIncident's state, readable."""
    import asyncio
    import json
    from typing import Any

    from rotor.api.kinds import KINDS, Kind
    from rotor.kube import Kube, KubeError, load_config
    from rotor.planning import status_view, times

    command = f"{_prog()} status"
    namespace, _, name = args.object.partition("/")
    if not namespace or not name:
        print(f"{command}: name the object as <namespace>/<name>", file=sys.stderr)
        return 2
    # Without --kind, the first kind with an object of that name (SecretSource first).
    kinds = [k for k in KINDS if args.kind in (None, k.singular)]

    async def find() -> tuple[Kind, dict[str, Any]] | None:
        kube = Kube(load_config(args.kubeconfig))
        try:
            for kind in kinds:
                found = await kube.get_object(kind.plural, namespace, name)
                if found is not None:
                    return kind, found
            return None
        finally:
            await kube.close()

    try:
        result = asyncio.run(find())
    except KubeError as err:
        print(f"{command}: {namespace}/{name}: {err.status} {err.message or err.reason}", file=sys.stderr)
        return 1
    if result is None:
        names = [k.kind for k in kinds]
        either = " or ".join(filter(None, [", ".join(names[:-1]), names[-1]]))
        print(f"{command}: no {either} named {namespace}/{name}", file=sys.stderr)
        return 1
    kind, found = result
    if args.output == "json":
        print(json.dumps(status_view.summary(kind.kind, found), indent=2))
        return 0
    # Colour only for a terminal, and never when NO_COLOR is set (no-color.org).
    color = sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
    sys.stdout.write(status_view.render(kind.kind, found, now=times.now(), color=color))
    return 0


def _cmd_version(_: argparse.Namespace) -> int:
    print(f"rotor {__version__}")
    return 0


def _prog() -> str:
    """How the user called us: `kubectl rotor` when kubectl runs us as its plugin kubectl-rotor."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "kubectl rotor" if name.startswith("kubectl-rotor") else "rotor"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog=_prog(), description="Deliver and rotate secrets in Kubernetes.")
    sub = top.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator (settings also from ROTOR_* variables)")
    run.add_argument("-n", "--namespace", action="append", help="namespace to watch (repeatable)")
    run.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (default)")
    run.add_argument("--log-format", choices=["text", "json"])
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.add_argument("--metrics-port", type=int, help="port for /metrics (0 disables)")
    run.add_argument("--config", type=Path, help="YAML settings file (backend connections live here)")
    run.set_defaults(func=_cmd_run)

    crds = sub.add_parser("crds", help="write the CRDs generated from the API models")
    crds.add_argument("-o", "--output", type=Path, default=Path("crds"), help="directory, or - for stdout")
    crds.set_defaults(func=_cmd_crds)

    inventory = sub.add_parser("inventory", help="list managed secrets: owner, backend, consumers, rotation, "
                               "incidents (metadata only, never a value)")
    scope = inventory.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", help="namespace (repeatable; default: the context's)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    inventory.add_argument("-o", "--output", choices=["table", "json", "csv"], default="table")
    inventory.add_argument("--unmanaged", action="store_true",
                           help="list the Secrets no SecretSource manages instead, with consumers and age")
    inventory.add_argument("--include-system", action="store_true",
                           help="with --unmanaged: also service-account token and Helm release Secrets")
    inventory.add_argument("--keys", action="store_true",
                           help="list the Transit keys RotationPolicies rotate instead: versions in use and age")
    inventory.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    inventory.set_defaults(func=_cmd_inventory)

    leak = sub.add_parser("leak", help="leak incidents: report a leaked secret to start the runbook")
    leak_sub = leak.add_subparsers(dest="leak_command", required=True)
    report = leak_sub.add_parser("report", help="create a LeakIncident: contain, identify, rotate, revoke, audit")
    report.add_argument("source", help="<namespace>/<SecretSource> of the exposed secret")
    report.add_argument("--where", required=True, choices=["ci-logs", "git", "image", "log", "chat", "other"],
                        help="where the value was exposed")
    report.add_argument("--ref", help="where exactly (a URL, a commit, an image)")
    report.add_argument("--severity", choices=["low", "medium", "high", "critical"], default="high")
    report.add_argument("--order", choices=["immediate", "afterRotation"],
                        help="revoke first, or rotate with overlap first (default: by whether readers exist)")
    report.add_argument("--version", help="exposed backend version (default: the one delivered now)")
    report.add_argument("--tighten-interval", help="afterwards, rotate this often (e.g. 24h)")
    report.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    report.set_defaults(func=_cmd_leak)

    rotate = sub.add_parser("rotate", help="rotate a RotationPolicy's secret now (rotor.dev/rotate-now)")
    rotate.add_argument("policy", help="<namespace>/<RotationPolicy>")
    rotate.set_defaults(func=_cmd_rotate)

    refresh = sub.add_parser("refresh", help="read a SecretSource's backend now (rotor.dev/refresh-now)")
    refresh.add_argument("source", help="<namespace>/<SecretSource>")
    refresh.set_defaults(func=_cmd_refresh)

    status = sub.add_parser("status", help="show a SecretSource's, RotationPolicy's or LeakIncident's state, "
                            "conditions, rotation steps or incident timeline (never a value)")
    status.add_argument("object", metavar="NAMESPACE/NAME", help="the object, e.g. team-a/db")
    status.add_argument("--kind", choices=["secretsource", "rotationpolicy", "leakincident"],
                        help="which kind (default: the first with this name: SecretSource, RotationPolicy, "
                        "LeakIncident)")
    status.add_argument("-o", "--output", choices=["text", "json"], default="text",
                        help="text (coloured on a terminal) or json (the object's status as stored)")
    status.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    status.set_defaults(func=_cmd_status)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_cmd_version)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
