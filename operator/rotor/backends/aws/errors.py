"""AWS errors as Rotor's status reasons. Messages name the operation, the secret, the role and AWS's error
code; never AWS's message text (it can quote request parameters) and never a value."""

from __future__ import annotations

from typing import Any

from rotor.backends.protocols import BackendError, InvalidSpec, NotFound, PermissionDenied, Unavailable

_NOT_FOUND = {"ResourceNotFoundException", "ParameterNotFound", "ParameterVersionNotFound", "NoSuchEntity"}
_DENIED = {"InvalidIdentityToken", "DecryptionFailure", "KMSAccessDeniedException", "AuthFailure",
           "SignatureDoesNotMatch", "MissingAuthenticationToken"}
# The session credentials are no longer good (expired or revoked early): one fresh login tells this apart
# from a denial.
_STALE = {"ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException"}
_BUSY = {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded",
         "ThrottledException", "IDPCommunicationError", "InternalServiceError", "InternalServerError",
         "InternalFailure", "ServiceUnavailable", "ServiceUnavailableException"}


class StaleCredentials(PermissionDenied):
    """AWS no longer accepts the session credentials (expired or revoked)."""


def error_code(response: Any) -> tuple[str, int]:
    """(AWS error code, HTTP status) of a botocore ClientError's response. Some servers answer a JSON
    protocol call with an XML error body, which botocore reports with the HTTP status as its code."""
    error = (response or {}).get("Error") or {}
    status = int(((response or {}).get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
    return str(error.get("Code") or status or "unknown"), status


def translate(code: str, status: int, operation: str, where: str, who: str) -> BackendError:
    """The BackendError for an answer with CODE/STATUS to OPERATION on WHERE by WHO (a role ARN)."""
    label = f"{code}" if code == str(status) else f"{code}, HTTP {status}"
    if code in _NOT_FOUND or status == 404:
        return NotFound(f"AWS has no {where} ({label}); check spec.aws")
    if code in _STALE:
        return StaleCredentials(f"AWS refused the session credentials of {who} for {operation} on {where} "
                                f"({label})")
    if code.startswith("AccessDenied") or code in _DENIED or status in (401, 403):
        return PermissionDenied(f"AWS denied {operation} on {where} to {who} ({label}); grant the role access")
    if code in _BUSY or status == 429 or status >= 500:
        return Unavailable(f"AWS failed {operation} on {where} ({label}); Rotor retries")
    if code == "InvalidRequestException":  # e.g. the secret is scheduled for deletion
        return NotFound(f"AWS refused {operation} on {where} ({label}): the secret may be scheduled for deletion")
    return InvalidSpec(f"AWS rejected {operation} on {where} ({label}); check spec.aws")
