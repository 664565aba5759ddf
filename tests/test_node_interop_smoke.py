"""Smoke tests of interop/: node-oidc-provider as upstream and reference, jose as verifier."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import jwt
import pytest
from nodeinterop import JWT_MEDIA_TYPE, NodeProvider, jose_verify, node_available

pytestmark = pytest.mark.skipif(
    not node_available(), reason="Node interop tools not installed: run `npm ci --prefix interop`"
)

SIGNING_CLIENTS = {"rs-rs256": "RS256", "rs-es256": "ES256", "rs-eddsa": "EdDSA"}
JWT_TYP = "token-introspection+jwt"


@pytest.fixture(scope="module")
def provider() -> Iterator[NodeProvider]:
    """One provider for the module: starting Node and generating keys is the slow part."""
    with NodeProvider() as started:
        yield started


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp client session per test (sessions are bound to the test's event loop)."""
    async with aiohttp.ClientSession() as client:
        yield client


def jose_job(provider: NodeProvider, token_jwt: str, audience: str, alg: str) -> dict[str, Any]:
    """Build a verify.mjs job that checks everything RFC 9701 §5 asks a resource server to."""
    return {
        "jwt": token_jwt,
        "jwks": provider.jwks,
        "issuer": provider.issuer,
        "audience": audience,
        "typ": JWT_TYP,
        "algorithms": [alg],
        "requiredClaims": ["iat", "token_introspection"],
        "maxTokenAge": "60s",
    }


def pyjwt_decode(provider: NodeProvider, token_jwt: str, audience: str, alg: str) -> Any:
    """Verify an introspection JWT with PyJWT against the provider's JWKS and return its claims."""
    header = jwt.get_unverified_header(token_jwt)
    assert header["typ"] == JWT_TYP
    key = jwt.PyJWKSet.from_dict(provider.jwks)[header["kid"]]
    return jwt.decode(
        token_jwt,
        key,
        algorithms=[alg],
        audience=audience,
        issuer=provider.issuer,
        options={"require": ["iss", "aud", "iat"]},
    )


async def test_native_json_introspection(
    provider: NodeProvider, session: aiohttp.ClientSession
) -> None:
    """Without an Accept header the provider answers a fresh opaque token as plain RFC 7662 JSON."""
    token = await provider.get_token(session, scope="read")
    assert token.count(".") == 0  # opaque, not a JWT access token

    status, headers, body = await provider.introspect(
        session, token, "rs-rs256", provider.secret("rs-rs256")
    )

    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert headers["Cache-Control"] == "no-store"
    introspection = json.loads(body)
    assert introspection["active"] is True
    assert introspection["client_id"] == "app"
    assert introspection["scope"] == "read"
    assert introspection["iss"] == provider.issuer
    assert {"exp", "iat", "token_type"} <= introspection.keys()


async def test_native_jwt_introspection_verifies(
    provider: NodeProvider, session: aiohttp.ClientSession
) -> None:
    """Under the RFC 9701 Accept header each RS gets a JWT that both jose and PyJWT verify."""
    token = await provider.get_token(session)
    jwts: dict[str, str] = {}
    for client_id in SIGNING_CLIENTS:
        status, headers, body = await provider.introspect(
            session, token, client_id, accept=JWT_MEDIA_TYPE
        )
        assert status == 200
        assert headers["Content-Type"].startswith(JWT_MEDIA_TYPE)
        jwts[client_id] = body.decode()

    results = jose_verify(
        [jose_job(provider, jwts[c], c, alg) for c, alg in SIGNING_CLIENTS.items()]
    )

    for (client_id, alg), result in zip(SIGNING_CLIENTS.items(), results, strict=True):
        assert result["ok"] is True, result
        assert result["header"]["alg"] == alg
        assert result["header"]["typ"] == JWT_TYP
        assert result["payload"]["aud"] == client_id
        assert result["payload"]["token_introspection"]["active"] is True
        assert result["payload"]["token_introspection"]["client_id"] == "app"
        claims = pyjwt_decode(provider, jwts[client_id], client_id, alg)
        assert claims == result["payload"]


async def test_revoked_token_is_inactive_in_both_shapes(
    provider: NodeProvider, session: aiohttp.ClientSession
) -> None:
    """A revoked token introspects as exactly {"active": false}, as JSON and inside the JWT."""
    token = await provider.get_token(session)
    await provider.revoke(session, token)

    status, _, body = await provider.introspect(session, token, "rs-es256")
    assert (status, body) == (200, b'{"active":false}')

    status, _, body = await provider.introspect(session, token, "rs-es256", accept=JWT_MEDIA_TYPE)
    assert status == 200
    [result] = jose_verify([jose_job(provider, body.decode(), "rs-es256", "ES256")])
    assert result["ok"] is True, result
    assert result["payload"]["token_introspection"] == {"active": False}
    assert pyjwt_decode(provider, body.decode(), "rs-es256", "ES256") == result["payload"]


async def test_unknown_token_is_inactive(
    provider: NodeProvider, session: aiohttp.ClientSession
) -> None:
    """A token the provider never issued is answered active=false, not as an error."""
    status, _, body = await provider.introspect(session, "no-such-token", "rs-eddsa")
    assert (status, body) == (200, b'{"active":false}')

    status, _, body = await provider.introspect(
        session, "no-such-token", "rs-eddsa", accept=JWT_MEDIA_TYPE
    )
    assert status == 200
    [result] = jose_verify([jose_job(provider, body.decode(), "rs-eddsa", "EdDSA")])
    assert result["ok"] is True, result
    assert result["payload"]["token_introspection"] == {"active": False}


async def test_encrypted_jwt_decrypts_and_verifies(
    provider: NodeProvider, session: aiohttp.ClientSession
) -> None:
    """The rs-enc client gets a nested JWT (RSA-OAEP-256 JWE, cty JWT) around an ES256 JWS."""
    token = await provider.get_token(session)
    status, headers, body = await provider.introspect(
        session, token, "rs-enc", accept=JWT_MEDIA_TYPE
    )
    assert status == 200
    assert headers["Content-Type"].startswith(JWT_MEDIA_TYPE)
    assert body.count(b".") == 4  # compact JWE

    job = jose_job(provider, body.decode(), "rs-enc", "ES256")
    [result] = jose_verify([{**job, "decryptKey": provider.decrypt_key("rs-enc")}])

    assert result["ok"] is True, result
    assert result["jweHeader"]["alg"] == "RSA-OAEP-256"
    assert result["jweHeader"]["enc"] == "A128CBC-HS256"
    assert result["jweHeader"]["cty"] == "JWT"
    assert result["header"]["alg"] == "ES256"
    assert result["payload"]["token_introspection"]["active"] is True


async def test_errors_stay_json_when_a_jwt_was_requested(
    provider: NodeProvider, session: aiohttp.ClientSession
) -> None:
    """Wrong client credentials get a 401 JSON error with WWW-Authenticate, JWT asked or not."""
    token = await provider.get_token(session)
    status, headers, body = await provider.introspect(
        session, token, "rs-es256", "wrong-secret", accept=JWT_MEDIA_TYPE
    )
    assert status == 401
    assert headers["Content-Type"].startswith("application/json")
    assert headers["WWW-Authenticate"].startswith("Basic ")
    assert json.loads(body)["error"] == "invalid_client"


async def test_encrypting_client_must_ask_for_a_jwt(
    provider: NodeProvider, session: aiohttp.ClientSession
) -> None:
    """A client registered for encrypted responses gets 400 invalid_request when asking for JSON."""
    token = await provider.get_token(session)
    status, _, body = await provider.introspect(session, token, "rs-enc")
    assert status == 400
    assert json.loads(body)["error"] == "invalid_request"


async def test_jose_verify_reports_each_failed_check(
    provider: NodeProvider, session: aiohttp.ClientSession
) -> None:
    """jose_verify returns a coded failure per job for wrong aud, typ, alg, signature or input."""
    token = await provider.get_token(session)
    _, _, body = await provider.introspect(session, token, "rs-es256", accept=JWT_MEDIA_TYPE)
    good = jose_job(provider, body.decode(), "rs-es256", "ES256")
    head, payload, signature = good["jwt"].split(".")
    flipped = "B" if signature[0] == "A" else "A"  # changes the first bits of the signature
    tampered = f"{head}.{payload}.{flipped}{signature[1:]}"

    results = jose_verify(
        [
            good,
            {**good, "audience": "rs-other"},
            {**good, "typ": "at+jwt"},
            {**good, "algorithms": ["RS256"]},
            {**good, "jwt": tampered},
            {**good, "jwks": "not a JWK Set"},
        ]
    )

    assert results[0]["ok"] is True, results[0]
    assert [r.get("code") for r in results[1:]] == [
        "ERR_JWT_CLAIM_VALIDATION_FAILED",
        "ERR_JWT_CLAIM_VALIDATION_FAILED",
        "ERR_JOSE_ALG_NOT_ALLOWED",
        "ERR_JWS_SIGNATURE_VERIFICATION_FAILED",
        "ERR_BAD_JOB",
    ]
