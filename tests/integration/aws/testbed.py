"""moto in server mode, in the test process, on a free loopback port, with IAM authorization enforced.

What it emulates and what it does not (the tests check Rotor's side of the latter):
- IAM enforcement (moto's INITIAL_NO_AUTH_ACTION_COUNT, switched on through /moto-api/reset-auth once
  the administrator exists): every request is signature-checked and its action checked against the
  caller's policies, assumed-role sessions included. moto evaluates actions, not resources: a policy
  must grant on "*" to take effect here (AWS also scopes by ARN).
- AssumeRoleWithWebIdentity is unsigned in AWS (the web identity token is the credential); moto's
  enforcement does not know that and would refuse it, so the testbed marks it public, as AWS does.
  moto neither verifies the token nor evaluates the role's trust policy (issuer, sub, aud): it
  hands out a session for any token. The testbed records the STS requests so tests can check what
  Rotor presents: the token's audience and subject (and its validity, by TokenReview) and the
  session name.
- stop() refuses connections (every request uses its own connection, so none outlives the stop);
  start() again on the same port keeps moto's state, which lives in this process.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

import boto3
import requests
from moto.core.authorization import ActionAuthenticatorMixin
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
ADMIN = "rotor-testbed-admin"


class _OneRequestPerConnection(MotoRequestHandler):
    protocol_version = "HTTP/1.0"  # no keep-alive: a stopped server answers no one


class _RecordSts:
    """WSGI middleware: keeps the form of every AssumeRoleWithWebIdentity request."""

    def __init__(self, app: Any, seen: list[dict[str, str]]) -> None:
        self.app = app
        self.seen = seen

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if environ.get("REQUEST_METHOD") == "POST" and length:
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
            if form.get("Action") == "AssumeRoleWithWebIdentity":
                self.seen.append(form)
        result: Iterable[bytes] = self.app(environ, start_response)
        return result


def _web_identity_is_public() -> Callable[[], None]:
    """Let AssumeRoleWithWebIdentity through moto's IAM enforcement unsigned; returns the undo."""
    original = ActionAuthenticatorMixin._authenticate_and_authorize_action

    def authenticate(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        if self._get_action() == "AssumeRoleWithWebIdentity":
            return
        original(self, iam_request_cls, resource)

    ActionAuthenticatorMixin._authenticate_and_authorize_action = authenticate  # type: ignore[method-assign]

    def undo() -> None:
        ActionAuthenticatorMixin._authenticate_and_authorize_action = original  # type: ignore[method-assign]

    return undo


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoTestbed:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sts_requests: list[dict[str, str]] = []
        self.admin_keys: tuple[str, str] = ("", "")
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._undo: Callable[[], None] | None = None
        self._app = _RecordSts(DomainDispatcherApplication(create_backend_app), self.sts_requests)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> MotoTestbed:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
        self._server = make_server("127.0.0.1", self.port, self._app, threaded=True,
                                   request_handler=_OneRequestPerConnection)
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the port: connections are refused until start()."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)

    def enforce_iam(self) -> None:
        """Make the administrator (with IAM not yet enforced), then enforce IAM for every request."""
        self._undo = _web_identity_is_public()
        self._reset_auth("inf")
        iam = boto3.client("iam", endpoint_url=self.url, region_name=REGION, aws_access_key_id="testbed",
                           aws_secret_access_key="testbed")
        iam.create_user(UserName=ADMIN)
        iam.put_user_policy(UserName=ADMIN, PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName=ADMIN)["AccessKey"]
        self.admin_keys = (key["AccessKeyId"], key["SecretAccessKey"])
        self._reset_auth("0")

    def close(self) -> None:
        self._reset_auth("inf")
        if self._undo is not None:
            self._undo()
        self.stop()

    def _reset_auth(self, count: str) -> None:
        requests.post(f"{self.url}/moto-api/reset-auth", data=count.encode(), timeout=10).raise_for_status()

    # -- as the administrator -------------------------------------------------------------------

    def admin(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=self.admin_keys[0], aws_secret_access_key=self.admin_keys[1])

    def role(self, name: str, actions: list[str], *, namespace: str, service_account: str,
             issuer: str, audience: str = "sts.amazonaws.com") -> str:
        """An IAM role with the IRSA trust policy of docs/aws.md and ACTIONS granted; its ARN. (moto
        keeps the trust policy but does not evaluate it for web identities.)"""
        provider = issuer.removeprefix("https://")
        trust = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity",
            "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{provider}"},
            "Condition": {"StringEquals": {
                f"{provider}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                f"{provider}:aud": audience}}}]}
        iam = self.admin("iam")
        arn = str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"])
        if actions:
            iam.put_role_policy(RoleName=name, PolicyName="read", PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
        return arn

    def logins(self, role_arn: str) -> list[dict[str, str]]:
        """The AssumeRoleWithWebIdentity requests made for ROLE_ARN so far."""
        return [form for form in list(self.sts_requests) if form.get("RoleArn") == role_arn]
