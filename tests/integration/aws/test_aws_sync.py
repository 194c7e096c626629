"""provider: aws end to end: moto (IAM enforced) -> Rotor (as the tenant's role) -> the target Secret.

The real API server and Rotor's real process; moto in server mode for AWS (tests/integration/aws/
testbed.py says what it does not emulate, and these tests check Rotor's side of it).
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import kubernetes
import pytest

from ..conftest import OperatorLogs, get_source, secret_data, secret_source, wait_for, wait_ready
from .conftest import AwsTenant
from .testbed import MotoTestbed

pytestmark = pytest.mark.usefixtures("aws_rotor")


def aws_spec(tenant: AwsTenant, role_arn: str | None = None, **aws: Any) -> dict[str, Any]:
    return {"provider": "aws", "serviceAccountName": tenant.service_account,
            "aws": {"roleArn": role_arn or tenant.role_arn, **aws}}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_secrets_manager_json_becomes_the_secret(moto_server: MotoTestbed, tenant: AwsTenant, core: Any,
                                                 custom: Any, operator_logs: OperatorLogs) -> None:
    name = unique(f"{tenant.namespace}/db")
    created = moto_server.admin("secretsmanager").create_secret(
        Name=name, SecretString=json.dumps({"username": "app", "password": "pw-Xq7#kL9", "port": 5432}))
    secret_source(custom, tenant.namespace, "all", aws_spec(tenant, secretsManager={"secretId": name}))
    secret_source(custom, tenant.namespace, "mapped", {
        **aws_spec(tenant, secretsManager={"secretId": created["ARN"]}),
        "data": [{"key": "DB_PASSWORD", "property": "password"}]})

    wait_ready(custom, tenant.namespace, "all")
    assert secret_data(core, tenant.namespace, "all") == {"username": b"app", "password": b"pw-Xq7#kL9",
                                                          "port": b"5432"}
    assert get_source(custom, tenant.namespace, "all")["status"]["syncedVersion"] == created["VersionId"]
    wait_ready(custom, tenant.namespace, "mapped")
    assert secret_data(core, tenant.namespace, "mapped") == {"DB_PASSWORD": b"pw-Xq7#kL9"}
    # Rotor (and botocore in its process) logged neither the value nor the token it presented to STS.
    [login] = moto_server.logins(tenant.role_arn)
    ours = [line for line in operator_logs.lines if not line.split(" ", 2)[1].startswith(("moto", "werkzeug"))]
    assert not [line for line in ours if "pw-Xq7#kL9" in line or login["WebIdentityToken"] in line]


def test_plaintext_and_binary_secrets_are_taken_whole(moto_server: MotoTestbed, tenant: AwsTenant, core: Any,
                                                      custom: Any) -> None:
    sm = moto_server.admin("secretsmanager")
    text, binary = unique("token"), unique("keystore")
    sm.create_secret(Name=text, SecretString="plain token, not JSON")
    sm.create_secret(Name=binary, SecretBinary=b"\x00\x01\xfe\xffkeystore")
    secret_source(custom, tenant.namespace, "text", aws_spec(tenant, secretsManager={"secretId": text,
                                                                                      "format": "Raw"}))
    secret_source(custom, tenant.namespace, "binary", {
        **aws_spec(tenant, secretsManager={"secretId": binary, "format": "Raw"}),
        "data": [{"key": "keystore.p12", "property": "value"}]})
    secret_source(custom, tenant.namespace, "as-json", aws_spec(tenant, secretsManager={"secretId": text}))

    wait_ready(custom, tenant.namespace, "text")
    assert secret_data(core, tenant.namespace, "text") == {"value": b"plain token, not JSON"}
    wait_ready(custom, tenant.namespace, "binary")
    assert secret_data(core, tenant.namespace, "binary") == {"keystore.p12": b"\x00\x01\xfe\xffkeystore"}
    refused = wait_ready(custom, tenant.namespace, "as-json", "False", "InvalidSpec")
    assert "format Raw" in refused["message"] and "plain token" not in refused["message"]


def test_ssm_by_name_and_by_path(moto_server: MotoTestbed, tenant: AwsTenant, core: Any, custom: Any) -> None:
    ssm = moto_server.admin("ssm")
    root = f"/{tenant.namespace}/app"
    ssm.put_parameter(Name=f"{root}/password", Value="ssm-pw-9vQ2", Type="SecureString")
    ssm.put_parameter(Name=f"{root}/user", Value="app", Type="String")
    ssm.put_parameter(Name=f"{root}/db/host", Value="db.internal", Type="String")
    ssm.put_parameter(Name=f"/{tenant.namespace}/other/x", Value="not under the path", Type="String")
    secret_source(custom, tenant.namespace, "one", aws_spec(tenant, parameterStore={"name": f"{root}/password"}))
    secret_source(custom, tenant.namespace, "tree", {
        **aws_spec(tenant, parameterStore={"path": f"{root}/"}),
        "data": [{"key": "password", "property": "password"}, {"key": "user", "property": "user"},
                 {"key": "db-host", "property": "db/host"}]})
    secret_source(custom, tenant.namespace, "nested", aws_spec(tenant, parameterStore={"path": root}))

    wait_ready(custom, tenant.namespace, "one")
    assert secret_data(core, tenant.namespace, "one") == {"password": b"ssm-pw-9vQ2"}  # SecureString, decrypted
    assert get_source(custom, tenant.namespace, "one")["status"]["syncedVersion"] == "1"
    wait_ready(custom, tenant.namespace, "tree")
    assert secret_data(core, tenant.namespace, "tree") == {"password": b"ssm-pw-9vQ2", "user": b"app",
                                                           "db-host": b"db.internal"}
    refused = wait_ready(custom, tenant.namespace, "nested", "False", "InvalidSpec")
    assert "db/host" in refused["message"] and "spec.data" in refused["message"]
    assert secret_data(core, tenant.namespace, "nested") is None


def test_version_pins(moto_server: MotoTestbed, tenant: AwsTenant, core: Any, custom: Any) -> None:
    sm, ssm = moto_server.admin("secretsmanager"), moto_server.admin("ssm")
    name, parameter = unique("pinned"), f"/{tenant.namespace}/pinned"
    first = sm.create_secret(Name=name, SecretString='{"v": "one"}')["VersionId"]
    sm.put_secret_value(SecretId=name, SecretString='{"v": "two"}')
    ssm.put_parameter(Name=parameter, Value="one", Type="SecureString")
    ssm.put_parameter(Name=parameter, Value="two", Type="SecureString", Overwrite=True)
    cases: dict[str, tuple[dict[str, Any], bytes]] = {
        "current": ({"secretsManager": {"secretId": name}}, b"two"),
        "by-id": ({"secretsManager": {"secretId": name, "versionId": first}}, b"one"),
        "by-stage": ({"secretsManager": {"secretId": name, "versionStage": "AWSPREVIOUS"}}, b"one"),
        "ssm-v1": ({"parameterStore": {"name": parameter, "version": 1}}, b"one"),
    }
    for source, (aws, _) in cases.items():
        secret_source(custom, tenant.namespace, source, aws_spec(tenant, **aws))
    for source, (_, expected) in cases.items():
        wait_ready(custom, tenant.namespace, source)
        assert list((secret_data(core, tenant.namespace, source) or {}).values()) == [expected], source
    assert get_source(custom, tenant.namespace, "by-id")["status"]["syncedVersion"] == first


def test_unknown_secret_is_not_found_and_nothing_is_written(tenant: AwsTenant, core: Any, custom: Any) -> None:
    secret_source(custom, tenant.namespace, "missing", aws_spec(tenant, secretsManager={"secretId": "no/such"}))
    secret_source(custom, tenant.namespace, "missing-ssm", aws_spec(tenant, parameterStore={"name": "/no/such"}))
    condition = wait_ready(custom, tenant.namespace, "missing", "False", "NotFound")
    assert "no/such" in condition["message"] and "ResourceNotFoundException" in condition["message"]
    wait_ready(custom, tenant.namespace, "missing-ssm", "False", "NotFound")
    assert secret_data(core, tenant.namespace, "missing") is None
    assert secret_data(core, tenant.namespace, "missing-ssm") is None


def test_a_role_without_access_is_denied_and_nothing_is_written(moto_server: MotoTestbed, tenant: AwsTenant,
                                                                  core: Any, custom: Any) -> None:
    """moto enforces IAM for the assumed role's session (its policies grant nothing here). Rotor's own
    process environment holds the moto administrator's keys: were they used, the read would succeed."""
    name = unique("guarded")
    moto_server.admin("secretsmanager").create_secret(Name=name, SecretString='{"k": "guarded-value-1"}')
    moto_server.admin("ssm").put_parameter(Name=f"/{tenant.namespace}/guarded", Value="v", Type="SecureString")
    secret_source(custom, tenant.namespace, "denied", aws_spec(tenant, tenant.denied_arn,
                                                               secretsManager={"secretId": name}))
    secret_source(custom, tenant.namespace, "denied-ssm", aws_spec(
        tenant, tenant.denied_arn, parameterStore={"name": f"/{tenant.namespace}/guarded"}))
    condition = wait_ready(custom, tenant.namespace, "denied", "False", "PermissionDenied")
    assert tenant.denied_arn in condition["message"] and name in condition["message"]
    wait_ready(custom, tenant.namespace, "denied-ssm", "False", "PermissionDenied")
    assert secret_data(core, tenant.namespace, "denied") is None
    assert secret_data(core, tenant.namespace, "denied-ssm") is None


def test_a_role_outside_the_connection_pattern_is_invalid_and_never_assumed(
        moto_server: MotoTestbed, tenant: AwsTenant, core: Any, custom: Any, namespace: str) -> None:
    other = moto_server.role(unique("other-team"), ["secretsmanager:GetSecretValue"], namespace=namespace,
                             service_account="app", issuer="https://kubernetes.default.svc.cluster.local")
    secret_source(custom, tenant.namespace, "foreign", aws_spec(tenant, other, secretsManager={"secretId": "x"}))
    condition = wait_ready(custom, tenant.namespace, "foreign", "False", "InvalidSpec")
    assert "spec.aws.roleArn" in condition["message"]
    assert moto_server.logins(other) == []
    assert secret_data(core, tenant.namespace, "foreign") is None


def test_rotor_presents_the_service_account_token_for_sts_and_names_the_session(
        moto_server: MotoTestbed, tenant: AwsTenant, custom: Any, api_client: kubernetes.client.ApiClient) -> None:
    """moto does not verify the web identity token or evaluate the trust policy: check what Rotor sends.
    The token must be the ServiceAccount's, for audience sts.amazonaws.com (the API server says so by
    TokenReview), and the session must be named after the namespace and ServiceAccount. Two sources
    of one (ServiceAccount, role) share one login."""
    name = unique("identity")
    moto_server.admin("secretsmanager").create_secret(Name=name, SecretString='{"k": "v"}')
    for source in ("first", "second"):
        secret_source(custom, tenant.namespace, source, aws_spec(tenant, secretsManager={"secretId": name}))
    for source in ("first", "second"):
        wait_ready(custom, tenant.namespace, source)

    [login] = moto_server.logins(tenant.role_arn)
    assert login["RoleSessionName"] == f"rotor-{tenant.namespace}-app"
    assert login["DurationSeconds"] == "3600"
    claims = json.loads(base64.urlsafe_b64decode(login["WebIdentityToken"].split(".")[1] + "=="))
    assert claims["aud"] == ["sts.amazonaws.com"]
    assert claims["sub"] == f"system:serviceaccount:{tenant.namespace}:app"
    review = kubernetes.client.AuthenticationV1Api(api_client).create_token_review(
        {"spec": {"token": login["WebIdentityToken"], "audiences": ["sts.amazonaws.com"]}})
    assert review.status.authenticated, review.status.error
    assert review.status.user.username == f"system:serviceaccount:{tenant.namespace}:app"


def test_moto_outage_keeps_the_secret_and_recovers(moto_server: MotoTestbed, tenant: AwsTenant, core: Any,
                                                   custom: Any) -> None:
    name = unique("outage")
    sm = moto_server.admin("secretsmanager")
    sm.create_secret(Name=name, SecretString='{"password": "before-outage-1"}')
    secret_source(custom, tenant.namespace, "outage", {**aws_spec(tenant, secretsManager={"secretId": name}),
                                                       "refresh": {"interval": "2s", "jitter": 0}})
    wait_ready(custom, tenant.namespace, "outage")
    moto_server.stop()
    try:
        condition = wait_ready(custom, tenant.namespace, "outage", "False", "BackendUnavailable")
        assert "unreachable" in condition["message"]
        assert secret_data(core, tenant.namespace, "outage") == {"password": b"before-outage-1"}
    finally:
        moto_server.start()
    sm.put_secret_value(SecretId=name, SecretString='{"password": "after-outage-2"}')
    wait_for(lambda: secret_data(core, tenant.namespace, "outage") == {"password": b"after-outage-2"}, 60,
             what="the value written after the outage")
    wait_ready(custom, tenant.namespace, "outage")
