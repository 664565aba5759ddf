"""Who is calling: the resource server's client_id, the future JWT ``aud`` (SPEC §5)."""

from __future__ import annotations

import base64
import binascii
import json
from urllib.parse import parse_qsl, unquote_plus

from sidecar.encoding import b64url_decode
from sidecar.errors import CallerError

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


def identify_caller(authorization: str | None, content_type: str | None, body: bytes) -> str:
    """Return the caller's client_id, or raise ``CallerError`` when it is absent or ambiguous.

    Sources, of which exactly one method may be used (RFC 6749 §2.3): HTTP Basic
    (client_secret_basic), a ``client_assertion`` (client_secret_jwt, private_key_jwt), or the
    form field ``client_id`` (client_secret_post, tls_client_auth, none). A ``client_id`` field
    next to another method must name the same client. Nothing here is verified: the upstream
    authenticates the caller, and the identity is used only once it answered 2xx.
    """
    form = _form_fields(content_type, body)
    body_client_ids = form.get("client_id", [])
    if len(set(body_client_ids)) > 1:
        raise CallerError("invalid_request", "the client_id parameter is given more than once")
    body_client_id = body_client_ids[0] if body_client_ids else None

    scheme, _, credentials = (authorization or "").strip().partition(" ")
    scheme = scheme.lower()
    assertions = form.get("client_assertion", [])

    if scheme == "bearer":
        # RFC 7662 §2.1 allows a bearer token that does not name the caller, and no upstream
        # checks a client_id field against it: no trustworthy aud, so no JWT (RFC 9701 §4).
        raise CallerError(
            "invalid_client",
            "a JWT introspection answer needs client authentication; "
            "Bearer-authorized callers are not supported",
        )
    if scheme == "basic":
        if assertions:
            raise CallerError("invalid_request", "more than one client authentication method")
        caller_id = basic_client_id(credentials)
    elif assertions:
        if len(assertions) > 1:
            raise CallerError("invalid_request", "the client_assertion parameter is repeated")
        caller_id = assertion_client_id(assertions[0])
    elif body_client_id:
        return body_client_id
    else:
        raise CallerError(
            "invalid_client", "a JWT introspection answer needs an authenticated caller"
        )

    if body_client_id is not None and body_client_id != caller_id:
        raise CallerError(
            "invalid_request", "the client_id parameter does not match the client authentication"
        )
    return caller_id


def basic_client_id(credentials: str) -> str:
    """The client_id in HTTP Basic credentials, with RFC 6749 §2.3.1 form-encoding undone."""
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise CallerError("invalid_client", "malformed Basic credentials") from None
    user, colon, _ = decoded.partition(":")
    client_id = unquote_plus(user)
    if not colon or not client_id:
        raise CallerError("invalid_client", "malformed Basic credentials")
    return client_id


def assertion_client_id(assertion: str) -> str:
    """The ``sub`` (else ``iss``) of a client assertion JWT; its signature is the upstream's job."""
    parts = assertion.split(".")
    if len(parts) != 3:
        raise CallerError("invalid_client", "malformed client_assertion")
    try:
        payload = json.loads(b64url_decode(parts[1]))
    except (ValueError, binascii.Error):
        raise CallerError("invalid_client", "malformed client_assertion") from None
    if isinstance(payload, dict):
        for claim in ("sub", "iss"):
            value = payload.get(claim)
            if isinstance(value, str) and value:
                return value
    raise CallerError("invalid_client", "the client_assertion names no client (sub or iss)")


def _form_fields(content_type: str | None, body: bytes) -> dict[str, list[str]]:
    """The form fields of an ``application/x-www-form-urlencoded`` body (RFC 7662 §2.1)."""
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type != FORM_CONTENT_TYPE or not body:
        return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise CallerError("invalid_request", "the request body is not UTF-8") from None
    fields: dict[str, list[str]] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        fields.setdefault(name, []).append(value)
    return fields
