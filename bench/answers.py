"""Check one answer of each scenario before timing it: a fast wrong answer is no result."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass

from jwcrypto import jwk, jwt
from loads import RequestSpec

CONTENT_TYPES = {
    "json": "application/json",
    "rfc9701": "application/token-introspection+jwt",
    "draft08": "application/jwt",
}


@dataclass(frozen=True, slots=True)
class Expectation:
    """What a correct answer looks like: its shape and, for a JWT, the signing alg."""

    shape: str  # json | rfc9701 | draft08
    alg: str | None = None
    encryption_alg: str | None = None  # set: a nested JWT (SPEC §7), decrypted with client_keys
    distinct: bool = False  # two answers in a row must carry different introspection objects


def fetch(url: str, spec: RequestSpec) -> tuple[int, str, bytes]:
    """POST the scenario's request once; status, Content-Type and body."""
    request = urllib.request.Request(  # noqa: S310 (a loopback URL the harness built)
        url, data=spec.body.encode(), headers=spec.headers(), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return answer.status, answer.headers.get("Content-Type", ""), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def check_answer(
    url: str,
    spec: RequestSpec,
    expected: Expectation,
    *,
    signing_keys: jwk.JWKSet,
    client_keys: jwk.JWKSet,
) -> str | None:
    """None when one answer is what the scenario claims to measure, else what is wrong.

    For a distinct scenario a second answer is fetched too: its introspection object must
    differ from the first one's, or the scenario would measure signature reuse after all.
    """
    first, problem = checked_claims(url, spec, expected, signing_keys, client_keys)
    if problem or not expected.distinct:
        return problem
    second, problem = checked_claims(url, spec, expected, signing_keys, client_keys)
    if problem:
        return problem
    if introspection_object(first, expected.shape) == introspection_object(second, expected.shape):
        return "two answers in a row carry the same introspection object: not distinct"
    return None


def introspection_object(claims: dict[str, object], shape: str) -> object:
    """RFC 9701 nests the introspection object; draft-08 and JSON keep it flat."""
    return claims.get("token_introspection") if shape == "rfc9701" else claims


def checked_claims(
    url: str,
    spec: RequestSpec,
    expected: Expectation,
    signing_keys: jwk.JWKSet,
    client_keys: jwk.JWKSet,
) -> tuple[dict[str, object], str | None]:
    """One answer's (decrypted, verified) claims, and what is wrong with it if anything."""
    try:
        status, content_type, body = fetch(url, spec)
    except OSError as error:
        return {}, f"request failed: {error}"
    if status != 200:
        return {}, f"status {status}: {body[:200]!r}"
    media_type = content_type.split(";")[0].strip().lower()
    if media_type != CONTENT_TYPES[expected.shape]:
        return {}, f"Content-Type {content_type!r}, expected {CONTENT_TYPES[expected.shape]}"
    try:
        claims = decode(body.decode(), expected, signing_keys, client_keys)
    except ValueError as error:
        return {}, str(error)
    except Exception as error:  # any decoding failure is a finding to report, not a crash
        return {}, f"{type(error).__name__}: {error}"
    return claims, shape_problem(claims, expected.shape)


def decode(
    body: str, expected: Expectation, signing_keys: jwk.JWKSet, client_keys: jwk.JWKSet
) -> dict[str, object]:
    """Parse JSON, or decrypt and/or verify the JWT with the expected algs only."""
    if expected.shape == "json":
        claims: dict[str, object] = json.loads(body)
        return claims
    if expected.encryption_alg:
        require_header(body, 5, "alg", expected.encryption_alg)
        outer = jwt.JWT(
            jwt=body,
            key=client_keys,
            algs=[expected.encryption_alg, "A128CBC-HS256"],
            expected_type="JWE",
        )
        body = outer.claims
    require_header(body, 3, "alg", expected.alg)
    signed = jwt.JWT(jwt=body, key=signing_keys, algs=[expected.alg], expected_type="JWS")
    claims = json.loads(signed.claims)
    return claims


def require_header(compact: str, parts: int, member: str, wanted: str | None) -> None:
    """Fail clearly when a compact JWS (3 parts) or JWE (5 parts) is not the expected kind."""
    found = compact.split(".")
    kind = {3: "JWS", 5: "JWE"}
    if len(found) != parts:
        raise ValueError(f"expected a {kind[parts]}, got {len(found)} parts")
    header = json.loads(base64.urlsafe_b64decode(found[0] + "=" * (-len(found[0]) % 4)))
    if header.get(member) != wanted:
        raise ValueError(f"{kind[parts]} {member} {header.get(member)!r}, expected {wanted!r}")


def shape_problem(claims: dict[str, object], shape: str) -> str | None:
    """An active introspection object where the shape puts it, or what is wrong."""
    inner = introspection_object(claims, shape)
    if not isinstance(inner, dict) or inner.get("active") is not True:
        return f"no active introspection object in the {shape} answer"
    return None
