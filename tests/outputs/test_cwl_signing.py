"""SigV4 of a PutLogEvents request by awscrt (CrtSigner): kawa hands awscrt the payload's SHA-256 as
a precalculated signed body value instead of the body. The signature must be the one awscrt
computes from the body itself, and the one botocore's own SigV4 gives."""

from __future__ import annotations

import datetime
import io
from typing import Any

import pytest

pytest.importorskip("awscrt")

from awscrt.auth import aws_sign_request  # noqa: E402
from awscrt.http import HttpHeaders, HttpRequest  # noqa: E402

from kawa.plugins.outputs.cloudwatch_logs.crt_client import CrtCredentials, CrtSigner  # noqa: E402

WHEN = datetime.datetime(2026, 11, 28, 9, 30, 0, tzinfo=datetime.timezone.utc)
URL = "https://logs.us-east-1.amazonaws.com/"
HEADERS = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Logs_20140328.PutLogEvents",
           "Host": "logs.us-east-1.amazonaws.com"}
BODY = b'{"logGroupName":"g","logStreamName":"s","logEvents":[{"timestamp":1,"message":"' + b"x" * 5000 + b'"}]}'


def _signer() -> CrtSigner:
    signer = CrtSigner(CrtCredentials.static("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
                       "us-east-1", "logs")
    signer._config = signer._config.replace(date=WHEN)     # a fixed signing time, for comparison
    return signer


def _signed_from_body(signer: CrtSigner, body: bytes) -> dict[str, str]:
    """awscrt reading the body itself (what kawa did before)."""
    request = HttpRequest("POST", "/", HttpHeaders(list(HEADERS.items())), io.BytesIO(body))
    return dict(aws_sign_request(request, signer._config).result(10).headers)


def test_precalculated_body_hash_signs_like_the_body_itself() -> None:
    signer = _signer()
    ours = signer.sign(URL, HEADERS, BODY)
    assert ours["Authorization"] == _signed_from_body(signer, BODY)["Authorization"]
    assert ours["Authorization"] != _signed_from_body(signer, BODY + b" ")["Authorization"]


def test_signature_equals_botocores_sigv4(monkeypatch: Any) -> None:
    botocore_auth = pytest.importorskip("botocore.auth")
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    # botocore takes the signing time from here
    monkeypatch.setattr(botocore_auth, "get_current_datetime", lambda: WHEN.replace(tzinfo=None))
    request = AWSRequest("POST", URL, headers=dict(HEADERS), data=BODY)
    botocore_auth.SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
                            "logs", "us-east-1").add_auth(request)
    ours = _signer().sign(URL, HEADERS, BODY)
    assert ours["X-Amz-Date"] == request.headers["X-Amz-Date"]
    assert ours["Authorization"] == request.headers["Authorization"]
