"""Differential: the sidecar in front of node-oidc-provider answers as the provider itself does.

node-oidc-provider plays both parts for the same token and the same caller: its plain-JSON
introspection is the sidecar's legacy upstream, and its native RFC 9701 answer is the
reference. The sidecar's issuer is set to the provider's; iat, kid and the signature may
differ, nothing else may.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import private_jwks
from interophelpers import EXTRA_TOKEN_CLAIMS, requires_node, sidecar_config, verify_pyjwt
from nodeinterop import JWT_MEDIA_TYPE, NodeProvider, basic_auth

pytestmark = requires_node

# The provider's resource-server clients and the alg each one's answers are signed with.
CALLERS = {"RS256": "rs-rs256", "ES256": "rs-es256", "EdDSA": "rs-eddsa"}
STATES = ("active", "revoked", "unknown")


@pytest.fixture(scope="module")
def provider() -> Iterator[NodeProvider]:
    """The provider; its tokens carry unicode and nested claims that must survive."""
    with NodeProvider({"extra_token_claims": EXTRA_TOKEN_CLAIMS}) as started:
        yield started


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for the test."""
    async with aiohttp.ClientSession() as client:
        yield client


async def front(
    provider: NodeProvider, start_sidecar: Any, tmp_path: Path, alg: str = "ES256"
) -> tuple[str, dict[str, Any]]:
    """Start a sidecar signing with ``alg`` in front of the provider; its URL and JWK Set."""
    keys_file = tmp_path / f"{alg}.json"
    keys_file.write_text(private_jwks(alg))
    config = sidecar_config(
        tmp_path, upstream_url=provider.base_url, issuer=provider.issuer, keys_file=keys_file
    )
    running = await start_sidecar(config)
    return running.introspect_url, await running.public_jwks()


async def token_in_state(provider: NodeProvider, session: aiohttp.ClientSession, state: str) -> str:
    """An active token, a revoked one, or one the provider never issued."""
    if state == "unknown":
        return secrets.token_urlsafe(32)
    token = await provider.get_token(session, scope="read write")
    if state == "revoked":
        await provider.revoke(session, token)
    return token


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("alg", CALLERS)
async def test_same_answer_as_the_provider(
    provider: NodeProvider,
    session: aiohttp.ClientSession,
    start_sidecar: Any,
    tmp_path: Path,
    alg: str,
    state: str,
) -> None:
    """For one token and one caller, the sidecar's JWT equals the provider's but for iat and kid."""
    url, jwks = await front(provider, start_sidecar, tmp_path, alg)
    caller = CALLERS[alg]
    token = await token_in_state(provider, session, state)

    status, native_headers, native = await provider.introspect(
        session, token, caller, accept=JWT_MEDIA_TYPE
    )
    assert status == 200
    status, our_headers, ours = await provider.introspect(
        session, token, caller, accept=JWT_MEDIA_TYPE, url=url
    )
    assert status == 200

    native_header, native_claims = verify_pyjwt(
        native.decode(), provider.jwks, provider.issuer, caller, alg
    )
    our_header, our_claims = verify_pyjwt(ours.decode(), jwks, provider.issuer, caller, alg)
    assert our_claims["token_introspection"] == native_claims["token_introspection"]
    assert our_claims["aud"] == native_claims["aud"] == caller
    assert our_claims["iss"] == native_claims["iss"]
    assert set(our_claims) == set(native_claims) == {"iss", "aud", "iat", "token_introspection"}
    assert abs(our_claims["iat"] - native_claims["iat"]) <= 5
    assert set(our_header) == set(native_header) == {"alg", "typ", "kid"}
    assert (our_header["alg"], our_header["typ"]) == (native_header["alg"], native_header["typ"])
    if state == "active":
        assert our_claims["token_introspection"]["ext"] == EXTRA_TOKEN_CLAIMS["ext"]
    else:
        assert our_claims["token_introspection"] == {"active": False}
    # The one header difference: the provider adds "; charset=utf-8" to the media type.
    assert native_headers["Content-Type"] == JWT_MEDIA_TYPE + "; charset=utf-8"
    assert our_headers["Content-Type"] == JWT_MEDIA_TYPE
    assert our_headers["Cache-Control"] == native_headers["Cache-Control"] == "no-store"


async def test_plain_json_is_the_provider_json(
    provider: NodeProvider, session: aiohttp.ClientSession, start_sidecar: Any, tmp_path: Path
) -> None:
    """Without the JWT Accept header, the sidecar relays the provider's bytes unchanged."""
    url, _ = await front(provider, start_sidecar, tmp_path)
    for state in STATES:
        token = await token_in_state(provider, session, state)
        direct = await provider.introspect(session, token, "rs-es256")
        relayed = await provider.introspect(session, token, "rs-es256", url=url)
        assert relayed[0] == direct[0] == 200
        assert relayed[2] == direct[2]
        assert relayed[1]["Content-Type"] == direct[1]["Content-Type"]


async def test_draft08_is_the_provider_json_made_flat(
    provider: NodeProvider, session: aiohttp.ClientSession, start_sidecar: Any, tmp_path: Path
) -> None:
    """The provider ignores draft-08's Accept and answers JSON; the sidecar signs that JSON flat."""
    url, jwks = await front(provider, start_sidecar, tmp_path)
    token = await token_in_state(provider, session, "active")
    _, headers, direct = await provider.introspect(
        session, token, "rs-es256", accept="application/jwt"
    )
    assert headers["Content-Type"].startswith("application/json")
    _, headers, ours = await provider.introspect(
        session, token, "rs-es256", accept="application/jwt", url=url
    )
    assert headers["Content-Type"] == "application/jwt"
    _, claims = verify_pyjwt(
        ours.decode(), jwks, provider.issuer, "rs-es256", "ES256", draft08=True
    )
    expected = json.loads(direct)
    assert {**claims, "iat": expected["iat"]} == {**expected, "aud": "rs-es256"}


async def test_errors_are_the_provider_errors(
    provider: NodeProvider, session: aiohttp.ClientSession, start_sidecar: Any, tmp_path: Path
) -> None:
    """Refusals the provider makes reach the caller unchanged and unsigned through the sidecar."""
    url, _ = await front(provider, start_sidecar, tmp_path)
    token = await token_in_state(provider, session, "active")
    accept = {"Accept": JWT_MEDIA_TYPE}
    cases = {
        "wrong secret": ({"token": token}, basic_auth("rs-es256", "wrong")),
        "no token": ({}, basic_auth("rs-es256", provider.secret("rs-es256"))),
    }
    for name, (form, authorization) in cases.items():
        answers = []
        headers = {**accept, "Authorization": authorization}
        for target in (provider.introspection_url, url):
            async with session.post(target, data=form, headers=headers) as response:
                answers.append(
                    (response.status, response.headers.get("WWW-Authenticate"),
                     response.content_type, await response.read())
                )  # fmt: skip
        assert answers[0] == answers[1], name
        assert answers[0][2] == "application/json" and answers[0][0] in (400, 401), name


async def test_unauthenticated_caller_is_refused_by_both(
    provider: NodeProvider, session: aiohttp.ClientSession, start_sidecar: Any, tmp_path: Path
) -> None:
    """No client authentication with a JWT asked for: 400 from both, with different error codes.

    RFC 9701 §4 asks for 400 and names no code. The provider says invalid_request (its
    generic "no client authentication mechanism provided"); the sidecar refuses before
    forwarding, as SPEC §5 says, with invalid_client.
    """
    url, _ = await front(provider, start_sidecar, tmp_path)
    token = await token_in_state(provider, session, "active")
    errors = []
    for target in (provider.introspection_url, url):
        async with session.post(
            target, data={"token": token}, headers={"Accept": JWT_MEDIA_TYPE}
        ) as response:
            errors.append((response.status, json.loads(await response.read())["error"]))
    assert errors == [(400, "invalid_request"), (400, "invalid_client")]


JSON, JWT, DRAFT08 = "application/json", JWT_MEDIA_TYPE, "application/jwt"
# Accept header → (provider's answer type, sidecar's answer type). The rows that differ are
# SPEC §3 decisions: equal q-values go to RFC 9701 whatever their order, media-type
# parameters are tolerated, and draft-08 is served; node-oidc-provider does none of these.
NEGOTIATION = [
    (None, JSON, JSON),
    ("*/*", JSON, JSON),
    ("application/*", JSON, JSON),
    ("text/html", JSON, JSON),
    (JWT, JWT, JWT),
    ("Application/Token-Introspection+JWT", JWT, JWT),
    (f"{JWT};q=0", JSON, JSON),
    (f"{JWT};q=0.5, {JSON}", JSON, JSON),
    (f"{JSON};q=0.5, {JWT}", JWT, JWT),
    (f"{JWT}, {JSON}", JWT, JWT),
    (f"{JSON}, {JWT}", JSON, JWT),
    (f"{JWT}; charset=utf-8", JSON, JWT),
    (DRAFT08, JSON, DRAFT08),
]


@pytest.mark.parametrize(("accept", "provider_type", "sidecar_type"), NEGOTIATION)
async def test_content_negotiation_compared(
    provider: NodeProvider,
    session: aiohttp.ClientSession,
    start_sidecar: Any,
    tmp_path: Path,
    accept: str | None,
    provider_type: str,
    sidecar_type: str,
) -> None:
    """Each Accept header gets the answer type this table records, from each server."""
    url, _ = await front(provider, start_sidecar, tmp_path)
    token = await token_in_state(provider, session, "active")
    found = []
    for target in (None, url):
        status, headers, _ = await provider.introspect(
            session, token, "rs-es256", accept=accept, url=target
        )
        assert status == 200
        found.append(headers["Content-Type"].split(";")[0])
    assert found == [provider_type, sidecar_type]
