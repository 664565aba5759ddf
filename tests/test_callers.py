"""Caller identification as a table (SPEC §5, RFC 6749 §2.3); no event loop needed."""

from __future__ import annotations

import base64
import json

import pytest

from sidecar.callers import assertion_client_id, basic_client_id, identify_caller
from sidecar.errors import CallerError

FORM = "application/x-www-form-urlencoded"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def assertion(claims: dict[str, str]) -> str:
    segment = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJSUzI1NiJ9.{segment}.c2ln"


@pytest.mark.parametrize(
    ("credentials", "client_id"),
    [
        ("czZCaGRSa3F0MzpnWDFmQmF0M2JW", "s6BhdRkqt3"),  # RFC 6749 §2.3.1 example
        (b64("+%25%26%2B%C2%A3%E2%82%AC:secret"), " %&+£€"),  # Appendix B vector
        (b64("rs%3Aone:pa:ss"), "rs:one"),  # split at the first colon, then decode
        (b64("rs-1:"), "rs-1"),  # empty secret
    ],
)
def test_basic_client_id(credentials: str, client_id: str) -> None:
    """Basic user parts are split at the first colon and form-decoded."""
    assert basic_client_id(credentials) == client_id


@pytest.mark.parametrize("credentials", ["!!!", b64("no-colon"), b64(":secret"), "", "w6k="])
def test_basic_malformed(credentials: str) -> None:
    """Malformed Basic credentials are invalid_client."""
    with pytest.raises(CallerError) as raised:
        basic_client_id(credentials)
    assert raised.value.error == "invalid_client"


@pytest.mark.parametrize(
    ("claims", "client_id"),
    [
        ({"iss": "rs-a", "sub": "rs-a"}, "rs-a"),
        ({"iss": "rs-iss"}, "rs-iss"),
        ({"sub": "rs-sub", "iss": "other"}, "rs-sub"),
    ],
)
def test_assertion_client_id(claims: dict[str, str], client_id: str) -> None:
    """A client assertion names its client by sub, else iss."""
    assert assertion_client_id(assertion(claims)) == client_id


@pytest.mark.parametrize("value", ["a.b", "x.!!!.y", assertion({"aud": "as"}), "a.W10.c"])
def test_assertion_malformed(value: str) -> None:
    """An assertion that is not a JWT naming a client is invalid_client."""
    with pytest.raises(CallerError) as raised:
        assertion_client_id(value)
    assert raised.value.error == "invalid_client"


@pytest.mark.parametrize(
    ("authorization", "body", "client_id"),
    [
        ("Basic " + b64("rs-1:s"), "token=t", "rs-1"),
        ("basic " + b64("rs-1:s"), "token=t", "rs-1"),  # scheme is case-insensitive
        ("Basic " + b64("rs-1:s"), "token=t&client_id=rs-1", "rs-1"),  # agreeing field
        (None, "token=t&client_id=rs-post&client_secret=s", "rs-post"),
        (None, "token=t&client_id=rs-mtls", "rs-mtls"),  # tls_client_auth or none
        (None, f"token=t&client_assertion={assertion({'sub': 'rs-j'})}", "rs-j"),
        (None, f"token=t&client_id=rs-j&client_assertion={assertion({'sub': 'rs-j'})}", "rs-j"),
        (None, "token=t&client_id=rs%20space", "rs space"),
    ],
)
def test_identify_caller(authorization: str | None, body: str, client_id: str) -> None:
    """Exactly one source names the caller."""
    assert identify_caller(authorization, FORM, body.encode()) == client_id


@pytest.mark.parametrize(
    ("authorization", "content_type", "body", "error"),
    [
        (None, FORM, "token=t", "invalid_client"),
        (None, FORM, "", "invalid_client"),
        (None, "application/json", '{"client_id": "rs-1"}', "invalid_client"),
        (None, FORM, "token=t&client_id=", "invalid_client"),
        ("Basic " + b64("rs-1:s"), FORM, "token=t&client_id=rs-2", "invalid_request"),
        (None, FORM, "token=t&client_id=a&client_id=b", "invalid_request"),
        (None, FORM, f"client_id=x&client_assertion={assertion({'sub': 'y'})}", "invalid_request"),
        ("Basic " + b64("rs-1:s"), FORM, f"client_assertion={assertion({'sub': 'rs-1'})}",
         "invalid_request"),
        (None, FORM, f"client_assertion=a.b.c&client_assertion={assertion({'sub': 'x'})}",
         "invalid_request"),
        ("Bearer abc", FORM, "token=t", "invalid_client"),
        ("Bearer abc", FORM, "token=t&client_id=rs-1", "invalid_client"),
        ("Digest x", FORM, "token=t", "invalid_client"),
    ],
)  # fmt: skip
def test_identify_caller_refusals(
    authorization: str | None, content_type: str, body: str, error: str
) -> None:
    """No caller, two disagreeing callers, or a Bearer caller: refused before forwarding."""
    with pytest.raises(CallerError) as raised:
        identify_caller(authorization, content_type, body.encode())
    assert raised.value.error == error
    assert raised.value.status == 400


def test_non_utf8_body_is_invalid_request() -> None:
    """A form body that is not UTF-8 is an invalid_request, not a crash."""
    with pytest.raises(CallerError) as raised:
        identify_caller(None, FORM, b"client_id=\xff\xfe")
    assert raised.value.error == "invalid_request"
