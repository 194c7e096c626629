"""AWS error codes as status reasons: messages name the operation, the secret and the code."""

from __future__ import annotations

import pytest

from rotor.api import keys
from rotor.backends.aws.errors import StaleCredentials, error_code, translate

WHO = "role arn:aws:iam::123456789012:role/r (ServiceAccount ns/app)"


@pytest.mark.parametrize(("code", "status", "reason"), [
    ("ResourceNotFoundException", 400, keys.NOT_FOUND),
    ("ParameterNotFound", 400, keys.NOT_FOUND),
    ("ParameterVersionNotFound", 400, keys.NOT_FOUND),
    ("AccessDeniedException", 400, keys.PERMISSION_DENIED),
    ("AccessDenied", 403, keys.PERMISSION_DENIED),
    ("403", 403, keys.PERMISSION_DENIED),  # an XML error body to a JSON call: the status is all there is
    ("DecryptionFailure", 400, keys.PERMISSION_DENIED),
    ("ThrottlingException", 400, keys.BACKEND_UNAVAILABLE),
    ("TooManyRequestsException", 429, keys.BACKEND_UNAVAILABLE),
    ("InternalServiceError", 500, keys.BACKEND_UNAVAILABLE),
    ("503", 503, keys.BACKEND_UNAVAILABLE),
    ("ValidationException", 400, keys.INVALID_SPEC),
    ("InvalidRequestException", 400, keys.NOT_FOUND),
])
def test_codes_map_to_reasons(code: str, status: int, reason: str) -> None:
    err = translate(code, status, "GetSecretValue", "Secrets Manager secret app/db (version AWSCURRENT)", WHO)
    assert err.reason == reason
    assert code in err.message and "app/db" in err.message


def test_expired_or_revoked_session_credentials_are_stale_and_a_denial() -> None:
    err = translate("ExpiredTokenException", 400, "GetParameter", "SSM parameter /x", WHO)
    assert isinstance(err, StaleCredentials) and err.reason == keys.PERMISSION_DENIED


def test_a_denial_names_the_role() -> None:
    err = translate("AccessDeniedException", 400, "GetSecretValue", "Secrets Manager secret s", WHO)
    assert "arn:aws:iam::123456789012:role/r" in err.message


def test_error_code_reads_botocore_responses() -> None:
    assert error_code({"Error": {"Code": "ParameterNotFound"}, "ResponseMetadata": {"HTTPStatusCode": 400}}) == (
        "ParameterNotFound", 400)
    assert error_code({"Error": {"Code": "403"}, "ResponseMetadata": {"HTTPStatusCode": 403}}) == ("403", 403)
    assert error_code({}) == ("unknown", 0)
