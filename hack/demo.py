"""The story `make run` tells once Rotor is up, in four steps, each with the kubectl command to see it:

  1. deliver  the sample SecretSource writes Secret demo/db-credentials (timed from `make run`)
  2. inject   a pod of the sample Deployment, created through Rotor's webhook, gets the Secret mounted
  3. rotate   the sample RotationPolicy moves the login blue -> green with overlap, while a reader
              logs in to PostgreSQL every second with whatever the Secret holds (0 failed logins)
  4. leak     `rotor leak report` runs the runbook to Prevented (another rotation, same reader)

The local stack has no scheduler, kubelet or controller-manager: pods never run and Deployments
never roll. The demo says so where it matters and shows what Rotor did (the mutated pod spec, the
Deployment's new pod-template annotation); the reader thread stands in for the app's pods. After
the story the reader keeps going and says when its login changes or fails, for rotations you ask for.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
from tests.devenv import Stack

NS, SOURCE, SECRET, POLICY, DEPLOYMENT = "demo", "db", "db-credentials", "db", "web"
ROTOR = "/apis/rotor.dev/v1alpha1/namespaces/demo"
APPLIED, HASH = "rotor.dev/applied-secrets", "rotor.dev/secrets-hash"  # what Rotor rolled the workload to
BOLD = "\033[1m" if sys.stderr.isatty() and not os.environ.get("NO_COLOR") else ""
PLAIN = "\033[0m" if BOLD else ""


class Stopped(Exception):
    """make run is stopping: the story ends where it is."""


def say(line: str = "", *, header: bool = False) -> None:
    print(f"{BOLD}== {line}{PLAIN}" if header else f"   {line}", file=sys.stderr, flush=True)


class Reader(threading.Thread):
    """What an app's pods do, standing in for them: every second, read the Secret and log in to
    PostgreSQL with the login it holds now. Counts logins per user and failures (never a password)."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(name="demo-reader", daemon=True)
        self.stack = stack
        self.stop_flag = threading.Event()
        self.logins: Counter[str] = Counter()
        self.failed: list[str] = []
        self.announce = False  # after the story: say when the login changes or fails (a rotation you ask for)
        self.last_user: str | None = None

    def run(self) -> None:
        info = self.stack.info
        while not self.stop_flag.wait(1.0):
            try:
                data = self.stack.api_request("GET", f"/api/v1/namespaces/{NS}/secrets/{SECRET}")["data"]
            except (RuntimeError, OSError):
                continue  # the API server, not the login, is what failed (make run stopping)
            user = base64.b64decode(data["username"]).decode()
            try:
                with psycopg.connect(host=info.pg_host, port=info.pg_port, dbname="postgres", user=user,
                                     password=base64.b64decode(data["password"]).decode(), connect_timeout=3) as c:
                    c.execute("SELECT 1")
                self.logins[user] += 1
                if self.announce and user != self.last_user:
                    say(f"reader: now logging in as {user}; {self.counts()}")
                self.last_user = user
            except psycopg.OperationalError as exc:
                if not self.stop_flag.is_set():
                    self.failed.append(f"{user}: {str(exc).strip().splitlines()[-1][:160]}")
                    if self.announce:
                        say(f"reader: login as {user} FAILED: {self.failed[-1]}")

    def __enter__(self) -> Reader:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_flag.set()
        self.join(10)

    def counts(self) -> str:
        users = ", ".join(f"{user} {n}" for user, n in sorted(self.logins.items()))
        return f"{sum(self.logins.values())} logins ({users}), {len(self.failed)} failed"

    def summary(self) -> str:
        return f"reader: {self.counts()}"


class Story(threading.Thread):
    def __init__(self, stack: Stack, *, started_at: float, operator_ready: threading.Event) -> None:
        super().__init__(name="demo-story", daemon=True)
        self.stack, self.started_at, self.operator_ready = stack, started_at, operator_ready
        self.stop_flag = threading.Event()
        self.reader = Reader(stack)

    def stop(self) -> None:
        self.stop_flag.set()
        self.reader.stop_flag.set()

    def run(self) -> None:
        try:
            self.wait(self.operator_ready.is_set, 120, "Rotor to start")
            ready_after = time.time() - self.started_at
            self.deliver(ready_after)
            self.inject()
            self.rotate()
            self.leak()
            say("the story is over; Rotor keeps running, and so does the reader: it says when its login "
                "changes or fails", header=True)
            say(f"try: kubectl rotor rotate {NS}/{POLICY}, or kubectl rotor leak report {NS}/{SOURCE} --where chat")
            say("Ctrl-C stops Rotor and every server")
            self.reader.announce = True
        except Stopped:
            pass
        except Exception as exc:  # a broken story must not take Rotor down; say where it broke
            self.reader.stop_flag.set()
            if not self.stop_flag.is_set():
                say(f"the demo stopped: {type(exc).__name__}: {exc}", header=True)

    # -- the steps ------------------------------------------------------------------------------

    def deliver(self, ready_after: float) -> None:
        secret = self.wait(lambda: self.get(f"/api/v1/namespaces/{NS}/secrets/{SECRET}"), 60,
                           f"Secret {NS}/{SECRET}")
        delivered_after = time.time() - self.started_at
        source = self.wait(lambda: self.ready(self.get(f"{ROTOR}/secretsources/{SOURCE}")), 30,
                           f"SecretSource {NS}/{SOURCE} Ready")
        say(f"1/4 deliver: Secret {NS}/{SECRET} delivered {delivered_after:.1f} s after `make run` started "
            f"(Rotor ready at {ready_after:.1f} s)", header=True)
        say(f"SecretSource {NS}/{SOURCE} read Vault secret/demo/db as ServiceAccount {NS}/app and wrote "
            f"version {source['status'].get('syncedVersion')}")
        say(f"keys: {', '.join(sorted(secret.get('data') or {}))} (values are never printed)")
        commands(f"kubectl get secretsource -n {NS} {SOURCE}", f"kubectl rotor status {NS}/{SOURCE}",
                 f"kubectl get secret -n {NS} {SECRET} -o yaml")

    def inject(self) -> None:
        self.wait(self.webhook_registered, 60, "Rotor's webhook to be registered")
        template = self.wait(lambda: self.get(f"/apis/apps/v1/namespaces/{NS}/deployments/{DEPLOYMENT}"), 30,
                             f"Deployment {NS}/{DEPLOYMENT}")["spec"]["template"]
        meta = template["metadata"]
        pod = self.stack.api_request("POST", f"/api/v1/namespaces/{NS}/pods", {
            "metadata": {"name": f"{DEPLOYMENT}-demo", "labels": meta.get("labels") or {},
                         "annotations": meta.get("annotations") or {}}, "spec": template["spec"]})
        volumes = {v["name"] for v in pod["spec"].get("volumes") or () if (v.get("secret") or {}).get("secretName")
                   == SECRET}
        mounts = [f"{m['mountPath']} in container {c['name']}" for c in pod["spec"]["containers"]
                  for m in c.get("volumeMounts") or () if m["name"] in volumes]
        say(f"2/4 inject: a pod of Deployment {NS}/{DEPLOYMENT} gets the Secret from Rotor's webhook", header=True)
        say(f"the pod template opts in with the label rotor.dev/inject and rotor.dev/secrets: "
            f"{meta.get('annotations', {}).get('rotor.dev/secrets')}; the Deployment stays as written")
        say("there is no scheduler or kubelet here, so the demo created the pod its ReplicaSet would create "
            f"({NS}/{pod['metadata']['name']}; it stays Pending)")
        say(f"the webhook mounted Secret {SECRET} read-only at {', '.join(mounts) or '(nowhere: see the pod)'} "
            f"(rotor.dev/injected: {pod['metadata'].get('annotations', {}).get('rotor.dev/injected')})")
        self.wait(lambda: self.annotation(APPLIED), 30, f"Rotor to adopt Deployment {NS}/{DEPLOYMENT}")
        say(f"Rotor adopted Deployment {NS}/{DEPLOYMENT}: {APPLIED} records the digest of the Secret its pods "
            "run (never a value); when the Secret changes, Rotor rolls it")
        commands(f"kubectl get pod -n {NS} {pod['metadata']['name']} -o yaml",
                 f"kubectl get deployment -n {NS} {DEPLOYMENT} -o yaml")

    def rotate(self) -> None:
        before = self.login()
        self.wait(lambda: self.get(f"{ROTOR}/rotationpolicies/{POLICY}"), 30, f"RotationPolicy {NS}/{POLICY}")
        say(f"3/4 rotate: RotationPolicy {NS}/{POLICY} moves the database login to the other user of the "
            f"blue/green pair, with overlap", header=True)
        say(f"a reader logs in to PostgreSQL every second as whatever Secret {NS}/{SECRET} holds "
            f"(now {before[0]}); it stands in for the app's pods")
        self.reader.start()
        self.wait(lambda: sum(self.reader.logins.values()) >= 3, 30, "the reader's first logins")
        deployment = self.get(f"/apis/apps/v1/namespaces/{NS}/deployments/{DEPLOYMENT}")
        rolled_before = template_hash(deployment)
        previous = ((self.get(f"{ROTOR}/rotationpolicies/{POLICY}").get("status") or {}).get("rotation") or {})
        self.cli("rotate", f"{NS}/{POLICY}")
        status = self.follow_rotation(previous=previous.get("id"))
        after = self.login()
        refused = not can_login(self.stack, *before)
        say(f"{status.get('phase')}: readers moved from {before[0]} to {after[0]}; the old login of {before[0]} "
            f"is {'refused' if refused else 'STILL ACCEPTED'} by PostgreSQL")
        say(self.reader.summary())
        rolled = self.wait(lambda: self.rolled(rolled_before), 30, f"Rotor to roll Deployment {NS}/{DEPLOYMENT}")
        say(f"Rotor rolled Deployment {NS}/{DEPLOYMENT}: its pod template now carries {HASH}="
            f"{rolled}; a Deployment controller would replace its pods now (none runs here)")
        commands(f"kubectl get rotationpolicy -n {NS} {POLICY}", f"kubectl rotor status {NS}/{POLICY} --kind "
                 "rotationpolicy", f"kubectl get deployment -n {NS} {DEPLOYMENT} "
                 "-o jsonpath='{.spec.template.metadata.annotations}'")

    def leak(self) -> None:
        say("4/4 leak: `rotor leak report` starts the runbook: contain, identify, rotate, revoke, audit, "
            "prevent", header=True)
        say("the reader keeps logging in: the runbook rotates through RotationPolicy demo/db, with its overlap")
        out = self.cli("leak", "report", f"{NS}/{SOURCE}", "--where", "ci-logs", "--ref", "build 1234 of the app "
                       "pipeline", "--order", "afterRotation", "--tighten-interval", "168h")
        name = next(w for w in out.split() if w.startswith(f"{NS}/")).split("/", 1)[1]
        start, shown = time.monotonic(), 0

        def prevented() -> dict[str, Any] | None:
            nonlocal shown
            status = self.get(f"{ROTOR}/leakincidents/{name}").get("status") or {}
            for entry in (status.get("timeline") or [])[shown:]:
                say(f"+{time.monotonic() - start:5.1f}s {entry['action']:<18} {entry.get('message', '')}")
                shown += 1
            return status if status.get("phase") == "Prevented" else None

        status = self.wait(prevented, 240, f"LeakIncident {NS}/{name} to reach Prevented")
        for line in status.get("guardrails") or ():
            say(f"guardrail: {line}")
        say(self.reader.summary())
        commands(f"kubectl get leakincident -n {NS} {name} -o yaml", f"kubectl rotor status {NS}/{name}")

    # -- helpers --------------------------------------------------------------------------------

    def follow_rotation(self, previous: str | None) -> dict[str, Any]:
        """Print each phase the rotation enters, with the reader's count, until it ends."""
        start, shown, rotation_id = time.monotonic(), 0, previous

        def ended() -> dict[str, Any] | None:
            nonlocal shown, rotation_id
            status = self.get(f"{ROTOR}/rotationpolicies/{POLICY}").get("status") or {}
            rotation = status.get("rotation") or {}
            if rotation.get("id") in (None, previous):
                return None
            if rotation["id"] != rotation_id:
                rotation_id, shown = rotation["id"], 0
            for step in (rotation.get("steps") or [])[shown:]:
                say(f"+{time.monotonic() - start:5.1f}s {step['phase']:<12} {step.get('message', '')}")
                say(f"        {self.reader.summary()}")
                shown += 1
            return status if status.get("phase") in ("Complete", "RolledBack", "Failed") else None

        result: dict[str, Any] = self.wait(ended, 180, f"the rotation of {NS}/{POLICY}")
        return result

    def annotation(self, key: str) -> str | None:
        """An annotation on the Deployment's own metadata."""
        deployment = self.get(f"/apis/apps/v1/namespaces/{NS}/deployments/{DEPLOYMENT}") or {}
        found = (deployment.get("metadata", {}).get("annotations") or {}).get(key)
        return str(found) if found else None

    def rolled(self, before: str | None) -> str | None:
        """The Deployment's rotor.dev/secrets-hash once Rotor wrote a new one (its restart)."""
        now = template_hash(self.get(f"/apis/apps/v1/namespaces/{NS}/deployments/{DEPLOYMENT}"))
        return now if now != before else None

    def login(self) -> tuple[str, str]:
        data = self.get(f"/api/v1/namespaces/{NS}/secrets/{SECRET}")["data"]
        return base64.b64decode(data["username"]).decode(), base64.b64decode(data["password"]).decode()

    def cli(self, *args: str) -> str:
        """Run `rotor ARGS` as a person would (KUBECONFIG points at this stack); show it and its output."""
        commands(f"kubectl rotor {' '.join(quote(a) for a in args)}")
        done = subprocess.run([sys.executable, "-m", "rotor", *args], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "NO_COLOR": "1"})
        if done.returncode != 0:
            raise RuntimeError(f"rotor {args[0]} failed: {done.stderr.strip()}")
        for line in done.stdout.strip().splitlines():
            say(f"  {line}")
        return done.stdout

    def webhook_registered(self) -> bool:
        found = self.get("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/rotor.dev")
        hooks = (found or {}).get("webhooks") or []
        return bool(hooks) and all(h["clientConfig"].get("caBundle") and h["clientConfig"].get("url") for h in hooks)

    @staticmethod
    def ready(body: dict[str, Any] | None) -> dict[str, Any] | None:
        conditions = ((body or {}).get("status") or {}).get("conditions") or ()
        return body if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) else None

    def get(self, path: str) -> Any:
        """GET an object as the admin; None when it does not exist (yet)."""
        try:
            return self.stack.api_request("GET", path)
        except RuntimeError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise

    def wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stop_flag.is_set():
                raise Stopped
            found = check()
            if found:
                return found
            self.stop_flag.wait(0.2)
        raise TimeoutError(f"no {what} after {timeout:.0f} s")


def template_hash(deployment: dict[str, Any] | None) -> str | None:
    annotations = (((deployment or {}).get("spec") or {}).get("template") or {}).get("metadata", {}).get(
        "annotations") or {}
    found = annotations.get(HASH)
    return str(found) if found else None


def can_login(stack: Stack, user: str, password: str) -> bool:
    info = stack.info
    try:
        with psycopg.connect(host=info.pg_host, port=info.pg_port, dbname="postgres", user=user, password=password,
                             connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


def commands(*lines: str) -> None:
    for line in lines:
        say(f"$ {line}")


def quote(arg: str) -> str:
    return f'"{arg}"' if " " in arg else arg
