"""How the CloudWatch Logs output treats each AWS error: retry, slow down, create, route to @ERROR.
Codes come from the `__type` of the JSON error body (or x-amzn-ErrorType) with any namespace removed.
"""

from __future__ import annotations

from dataclasses import dataclass

# The account/region TPS quota was hit (CloudWatch Logs API "Common Errors" + SDK retry tables):
# retry the same batch and back the whole output off (RetryableError(slow_down=True)).
THROTTLING_CODES = frozenset({
    "ThrottlingException", "Throttling", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "RequestLimitExceeded", "RequestThrottled", "SlowDown",
})
# Transient on the service side: retry the same batch later.
TRANSIENT_CODES = frozenset({
    "ServiceUnavailableException", "ServiceUnavailable", "InternalFailure", "InternalServerError",
    "InternalError", "RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete",
    "OperationAbortedException",   # CloudWatch Logs: concurrent updates of one resource conflicted
    "LimitExceededException",      # CreateLogGroup/Stream quota: may clear when resources are deleted
})
# Credentials expired, rotated (IRSA tokens) or refused: re-resolve credentials and retry; alert.
CREDENTIAL_CODES = frozenset({
    "UnrecognizedClientException", "AccessDeniedException", "AccessDenied", "ExpiredTokenException",
    "ExpiredToken", "InvalidClientTokenId", "InvalidSignatureException", "SignatureDoesNotMatch",
    "IncompleteSignature", "RequestExpired", "MissingAuthenticationToken",
})
# Of those: the identity is fine, its IAM policy lacks the action (a refresh does not help).
ACCESS_DENIED_CODES = frozenset({"AccessDeniedException", "AccessDenied"})
# The request itself is wrong (a client bug or data AWS will never take): never resend it as is.
INVALID_REQUEST_CODES = frozenset({
    "InvalidParameterException", "SerializationException", "ValidationException",
    "UnsupportedOperationException", "MalformedQueryException",
})
RESOURCE_NOT_FOUND = "ResourceNotFoundException"
RESOURCE_ALREADY_EXISTS = "ResourceAlreadyExistsException"
# Legacy sequence-token errors; AWS stopped returning them in January 2023. DataAlreadyAccepted means
# the batch is stored: count it as accepted, never resend.
DATA_ALREADY_ACCEPTED = "DataAlreadyAcceptedException"
INVALID_SEQUENCE_TOKEN = "InvalidSequenceTokenException"

# ResourceNotFoundException messages (as the Ruby plugin matches them, put_events) that say which
# resource is missing.
MISSING_STREAM_TEXT = "log stream"
MISSING_GROUP_TEXT = "log group"


@dataclass
class AwsApiError(Exception):
    """An error answer from the service (HTTP status + code + message)."""

    status: int
    code: str
    message: str
    request_id: str = ""

    def __str__(self) -> str:
        return f"{self.code}: {self.message} (HTTP {self.status})"

    @property
    def throttling(self) -> bool:
        return self.code in THROTTLING_CODES or self.status == 429

    @property
    def transient(self) -> bool:
        return self.code in TRANSIENT_CODES or self.status >= 500

    @property
    def credentials(self) -> bool:
        return self.code in CREDENTIAL_CODES

    @property
    def access_denied(self) -> bool:
        """The credentials are valid but their IAM policy does not allow the action."""
        return self.code in ACCESS_DENIED_CODES

    @property
    def invalid_request(self) -> bool:
        return self.code in INVALID_REQUEST_CODES

    @property
    def not_found(self) -> bool:
        return self.code == RESOURCE_NOT_FOUND

    @property
    def missing(self) -> str:
        """'group', 'stream' or '' (unknown) for a ResourceNotFoundException."""
        text = self.message.lower()
        if MISSING_STREAM_TEXT in text:
            return "stream"
        if MISSING_GROUP_TEXT in text:
            return "group"
        return ""


class TransportError(Exception):
    """No usable answer: connect/read timeout, reset, malformed response. Retry; it may have landed,
    unless `sent` is False: the connection could not be made (refused, DNS, TLS handshake, connect
    timeout), so no byte of the request left and nothing needs to be checked before resending."""

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


class SigningError(Exception):
    """The request could not be signed: no credentials (a refresh from STS, IMDS... failed). Nothing
    was sent. The output re-resolves its credentials before the next attempt (which says why)."""


def error_code(raw: str) -> str:
    """'com.amazonaws.logs#ThrottlingException:http://...' -> 'ThrottlingException'."""
    return raw.rsplit("#", 1)[-1].split(":", 1)[0].strip()
