"""sidecar.client: the resource server's verification, pure and over HTTP against real servers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import ACTIVE_ANSWER, FakeAS, private_jwks
from interophelpers import EXTRA_TOKEN_CLAIMS, requires_node, sidecar_config
from jwcrypto import jwe, jwk, jws
from nodeinterop import NodeProvider

from sidecar.client import (
    BadSignature,
    DecryptionFailed,
    DisallowedAlgorithm,
    IntrospectionClient,
    IntrospectionError,
    IntrospectionRefused,
    IntrospectionUnavailable,
    JwksCache,
    JwksUnavailable,
    KeySet,
    MalformedResponse,
    StaleResponse,
    UnexpectedType,
    UnknownKey,
    VerificationPolicy,
    WrongAudience,
    WrongIssuer,
    verify_introspection_jwt,
)
from sidecar.keys import SIGNING_ALGS

ISSUER = "https://as.example.com"
AUDIENCE = "rs-1"
TYP = "token-introspection+jwt"
RFC9701 = "application/token-introspection+jwt"

# One private key per alg (kid "<alg>-key"), made once per session by conftest.
SIGNING_KEYS = {
    member["kid"]: jwk.JWK(**member) for member in json.loads(private_jwks(*SIGNING_ALGS))["keys"]
}
PUBLIC_JWKS = {"keys": [key.export_public(as_dict=True) for key in SIGNING_KEYS.values()]}
ENCRYPTION_KEY = jwk.JWK.generate(kty="RSA", size=2048, kid="rs-1-enc", use="enc")
OTHER_ENCRYPTION_KEY = jwk.JWK.generate(kty="RSA", size=2048, kid="rs-1-enc", use="enc")


def b64(data: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**changes: Any) -> dict[str, Any]:
    """RFC 9701 claims issued now, with ``changes`` applied (None removes a claim)."""
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": int(time.time()),
        "token_introspection": ACTIVE_ANSWER,
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def sign(
    payload: dict[str, Any] | bytes, alg: str = "ES256", *, key: str | None = None, **header: Any
) -> str:
    """A compact JWS made with ``key`` (default: the key for ``alg``); ``header`` overrides.

    A header member set to None is left out.
    """
    key = key or f"{alg.lower()}-key"
    protected = {"alg": alg, "kid": key, "typ": TYP, **header}
    protected = {name: value for name, value in protected.items() if value is not None}
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    token = jws.JWS(raw)
    token.add_signature(SIGNING_KEYS[key], alg=None, protected=json.dumps(protected))
    return str(token.serialize(compact=True))


def encrypt(inner: str, key: jwk.JWK = ENCRYPTION_KEY, **header: Any) -> str:
    """A nested JWT: ``inner`` encrypted to ``key`` (RSA-OAEP-256, A128CBC-HS256, cty JWT)."""
    protected = {"alg": "RSA-OAEP-256", "enc": "A128CBC-HS256", "cty": "JWT", **header}
    protected = {name: value for name, value in protected.items() if value is not None}
    envelope = jwe.JWE(inner.encode(), json.dumps(protected))
    envelope.add_recipient(jwk.JWK(**key.export_public(as_dict=True)))
    return str(envelope.serialize(compact=True))


def policy(**changes: Any) -> VerificationPolicy:
    """The test policy: our issuer and audience, every alg, the RS decryption key."""
    settings: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "decrypt_keys": KeySet.from_document(ENCRYPTION_KEY.export(as_dict=True)),
    }
    settings.update(changes)
    return VerificationPolicy(**settings)


def swap_segment(token: str, index: int, replacement: str) -> str:
    """``token`` with one dot-separated segment replaced."""
    parts = token.split(".")
    parts[index] = replacement
    return ".".join(parts)


def hs256_with_public_key() -> str:
    """The classic confusion: HS256 keyed with the bytes of the AS's public RSA key."""
    secret = SIGNING_KEYS["rs256-key"].export_to_pem(private_key=False, password=None)
    head = b64(json.dumps({"alg": "HS256", "kid": "rs256-key", "typ": TYP}).encode())
    body = b64(json.dumps(claims()).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def unsigned() -> str:
    """alg "none" with an empty signature (RFC 7519 §6)."""
    head = b64(json.dumps({"alg": "none", "typ": TYP}).encode())
    return f"{head}.{b64(json.dumps(claims()).encode())}."


def embedded_jwk() -> str:
    """Signed by an attacker's key that the header itself offers as ``jwk`` (RFC 7515 §4.1.3)."""
    attacker = jwk.JWK.generate(kty="EC", crv="P-256", kid="es256-key")
    header = {"alg": "ES256", "kid": "es256-key", "typ": TYP,
              "jwk": attacker.export_public(as_dict=True)}  # fmt: skip
    token = jws.JWS(json.dumps(claims()).encode())
    token.add_signature(attacker, alg=None, protected=json.dumps(header))
    return str(token.serialize(compact=True))


def der_signature() -> str:
    """An ES256 signature in DER form instead of RFC 7518 §3.4's fixed-size R || S."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = SIGNING_KEYS["es256-key"].get_op_key("sign")
    head = b64(json.dumps({"alg": "ES256", "kid": "es256-key", "typ": TYP}).encode())
    body = b64(json.dumps(claims()).encode())
    signature = key.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
    return f"{head}.{body}.{b64(signature)}"


ACCEPTED: list[tuple[str, Callable[[], str], dict[str, Any]]] = [
    *[(f"alg-{alg}", lambda alg=alg: sign(claims(), alg), {}) for alg in SIGNING_ALGS],
    ("typ-with-application-prefix", lambda: sign(claims(), typ="application/" + TYP), {}),
    ("typ-upper-case", lambda: sign(claims(), typ="Token-Introspection+JWT"), {}),
    ("aud-list-with-ours", lambda: sign(claims(aud=["rs-0", AUDIENCE])), {}),
    ("iat-within-leeway-ahead", lambda: sign(claims(iat=int(time.time()) + 3)), {}),
    ("no-kid-any-fitting-key", lambda: sign(claims(), "RS256", kid=None), {}),
    ("inactive", lambda: sign(claims(token_introspection={"active": False})), {}),
    ("nested-jwe", lambda: encrypt(sign(claims())), {}),
    ("nested-jwe-replicated-claims", lambda: encrypt(sign(claims()), iss=ISSUER), {}),
    ("max-age-off", lambda: sign(claims(iat=1_000_000_000)), {"max_age": None}),
    (
        "draft08-flat",
        lambda: sign(claims(token_introspection=None, active=True)),
        {"draft08": True},
    ),
    ("custom-typ", lambda: sign(claims(), typ="JWT"), {"typ": "jwt"}),
]


@pytest.mark.parametrize(
    ("make", "changes"), [(make, changes) for _, make, changes in ACCEPTED],
    ids=[name for name, _, _ in ACCEPTED],
)  # fmt: skip
def test_accepts(make: Callable[[], str], changes: dict[str, Any]) -> None:
    """A well-formed answer verifies and yields its introspection object."""
    verified = verify_introspection_jwt(make(), PUBLIC_JWKS, policy(**changes))
    assert isinstance(verified.token_introspection["active"], bool)
    assert verified.claims["iss"] == ISSUER


REFUSED: list[tuple[str, Callable[[], str], dict[str, Any], type[IntrospectionError]]] = [
    ("tampered-payload",
     lambda: swap_segment(sign(claims()), 1, b64(json.dumps(claims(aud="rs-evil")).encode())),
     {}, BadSignature),
    ("tampered-signature",
     lambda: swap_segment(sign(claims()), 2, b64(bytes(64))), {}, BadSignature),
    ("der-ecdsa-signature", der_signature, {}, BadSignature),
    ("stale-iat", lambda: sign(claims(iat=int(time.time()) - 3600)), {}, StaleResponse),
    ("iat-in-the-future", lambda: sign(claims(iat=int(time.time()) + 3600)), {}, StaleResponse),
    ("iat-missing", lambda: sign(claims(iat=None)), {}, MalformedResponse),
    ("iat-not-a-number", lambda: sign(claims(iat="now")), {}, MalformedResponse),
    ("expired-exp", lambda: sign(claims(exp=int(time.time()) - 3600)), {}, StaleResponse),
    ("future-nbf", lambda: sign(claims(nbf=int(time.time()) + 3600)), {}, StaleResponse),
    ("typ-access-token", lambda: sign(claims(), typ="at+jwt"), {}, UnexpectedType),
    ("typ-plain-jwt", lambda: sign(claims(), typ="JWT"), {}, UnexpectedType),
    ("typ-missing", lambda: sign(claims(), typ=None), {}, UnexpectedType),
    ("typ-not-a-string", lambda: sign(claims(), typ=["token-introspection+jwt"]), {},
     UnexpectedType),
    ("wrong-aud", lambda: sign(claims(aud="rs-2")), {}, WrongAudience),
    ("aud-list-without-ours", lambda: sign(claims(aud=["rs-2", "rs-3"])), {}, WrongAudience),
    ("aud-missing", lambda: sign(claims(aud=None)), {}, WrongAudience),
    ("wrong-iss", lambda: sign(claims(iss="https://evil.example.com")), {}, WrongIssuer),
    ("iss-missing", lambda: sign(claims(iss=None)), {}, WrongIssuer),
    ("alg-not-allowed", lambda: sign(claims(), "ES256"), {"algorithms": ("RS256",)},
     DisallowedAlgorithm),
    ("alg-none", unsigned, {}, DisallowedAlgorithm),
    ("hs256-with-public-key", hs256_with_public_key, {}, DisallowedAlgorithm),
    ("rs256-header-on-ec-key", lambda: swap_segment(
        sign(claims(), "ES256"), 0,
        b64(json.dumps({"alg": "RS256", "kid": "es256-key", "typ": TYP}).encode())),
     {}, BadSignature),
    ("ps256-under-rs256-key", lambda: sign(claims(), "PS256", key="rs256-key"), {},
     BadSignature),
    ("unknown-kid", lambda: sign(claims(), kid="rotated-away"), {}, UnknownKey),
    ("embedded-jwk-header", embedded_jwk, {}, BadSignature),
    ("crit-header", lambda: swap_segment(sign(claims()), 0, b64(json.dumps(
        {"alg": "ES256", "kid": "es256-key", "typ": TYP, "crit": ["x"], "x": 1}).encode())),
     {}, MalformedResponse),
    ("kid-not-a-string", lambda: swap_segment(sign(claims()), 0, b64(json.dumps(
        {"alg": "ES256", "kid": 7, "typ": TYP}).encode())), {}, MalformedResponse),
    ("no-token-introspection", lambda: sign(claims(token_introspection=None, active=True)),
     {}, MalformedResponse),
    ("active-not-boolean", lambda: sign(claims(token_introspection={"active": "true"})), {},
     MalformedResponse),
    ("draft08-without-active", lambda: sign(claims(token_introspection=None)),
     {"draft08": True}, MalformedResponse),
    ("duplicate-claim", lambda: sign(b'{"iss":"%s","aud":"rs-1","aud":"rs-1","iat":%d}' % (
        ISSUER.encode(), int(time.time()))), {}, MalformedResponse),
    ("payload-not-json", lambda: sign(b"not json"), {}, MalformedResponse),
    ("not-a-jwt", lambda: "hello", {}, MalformedResponse),
    ("four-segments", lambda: sign(claims()) + ".x", {}, MalformedResponse),
    ("padded-base64", lambda: swap_segment(sign(claims()), 2, "AAAA===="), {},
     MalformedResponse),
    ("non-ascii", lambda: sign(claims()) + "é", {}, MalformedResponse),
    ("jwe-without-decrypt-key", lambda: encrypt(sign(claims())),
     {"decrypt_keys": KeySet()}, DecryptionFailed),
    ("jwe-for-another-key", lambda: encrypt(sign(claims()), OTHER_ENCRYPTION_KEY), {},
     DecryptionFailed),
    ("jwe-tampered-ciphertext", lambda: swap_segment(encrypt(sign(claims())), 3, b64(bytes(64))),
     {}, DecryptionFailed),
    ("jwe-rsa1_5", lambda: swap_segment(encrypt(sign(claims())), 0, b64(json.dumps(
        {"alg": "RSA1_5", "enc": "A128CBC-HS256", "cty": "JWT"}).encode())), {},
     DisallowedAlgorithm),
    ("jwe-without-cty", lambda: encrypt(sign(claims()), cty=None), {}, UnexpectedType),
    ("jwe-zip", lambda: encrypt(sign(claims()), zip="DEF"), {}, MalformedResponse),
    ("jwe-replicated-iss-differs", lambda: encrypt(sign(claims()), iss="https://evil"), {},
     MalformedResponse),
    ("jwe-holding-no-jws", lambda: encrypt("just text"), {}, MalformedResponse),
    ("encryption-required-but-plain", lambda: sign(claims()), {"require_encryption": True},
     DecryptionFailed),
]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "changes", "expected"),
    [(make, changes, expected) for _, make, changes, expected in REFUSED],
    ids=[name for name, *_ in REFUSED],
)
def test_refuses(
    make: Callable[[], str], changes: dict[str, Any], expected: type[IntrospectionError]
) -> None:
    """A forged, confused, stale or misaddressed answer raises its own exception type."""
    with pytest.raises(expected) as raised:
        verify_introspection_jwt(make(), PUBLIC_JWKS, policy(**changes))
    assert type(raised.value) is expected
    assert "eyJ" not in str(raised.value)  # no token material in the message


@pytest.mark.parametrize(
    "changes",
    [{"algorithms": ("HS256",)}, {"algorithms": ("none",)}, {"algorithms": ()},
     {"algorithms": "RS256"}, {"encryption_algs": ("RSA1_5",)}, {"max_age": -1},
     {"leeway": -1}, {"require_encryption": True, "decrypt_keys": KeySet()}, {"audience": ""}],
)  # fmt: skip
def test_unsafe_policy_is_refused(changes: dict[str, Any]) -> None:
    """A policy allowing symmetric or unknown algorithms, or with nonsense limits, is an error."""
    with pytest.raises(ValueError, match=r"\w"):
        policy(**changes)


@pytest.mark.parametrize(
    "restriction",
    [{"use": "enc"}, {"key_ops": ["encrypt"]}, {"alg": "PS256"}, {"kid": "another"}],
)
def test_key_that_may_not_verify_is_not_used(restriction: dict[str, Any]) -> None:
    """A JWK marked for another use, operation, alg or kid does not verify (RFC 7517 §4)."""
    member = {**SIGNING_KEYS["rs256-key"].export_public(as_dict=True), **restriction}
    with pytest.raises(BadSignature):
        verify_introspection_jwt(sign(claims(), "RS256"), {"keys": [member]}, policy())


def test_short_rsa_key_is_not_used() -> None:
    """An RSA key under 2048 bits never verifies, even a correct signature (RFC 7518 §3.3)."""
    short = jwk.JWK.generate(kty="RSA", size=1024, kid="short", alg="RS256")
    token = jws.JWS(json.dumps(claims()).encode())
    token.add_signature(short, alg=None, protected=json.dumps(
        {"alg": "RS256", "kid": "short", "typ": TYP}))  # fmt: skip
    public = {"keys": [short.export_public(as_dict=True)]}
    with pytest.raises(BadSignature, match="no key"):
        verify_introspection_jwt(token.serialize(compact=True), public, policy())


def test_ed25519_alg_name_is_accepted() -> None:
    """An answer signed with RFC 9864's "Ed25519" alg verifies with an Ed25519 key."""
    token = sign(claims(), "Ed25519", key="eddsa-key")
    verified = verify_introspection_jwt(token, PUBLIC_JWKS, policy(algorithms=("Ed25519",)))
    assert verified.header["alg"] == "Ed25519"


def test_symmetric_and_unknown_jwks_members_are_ignored() -> None:
    """An oct key or an unknown kty in the AS's set is skipped, not an error (RFC 7517 §5)."""
    noisy = {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "es256-key"},
                      {"kty": "AKP", "alg": "ML-DSA-44", "kid": "pq"},
                      *PUBLIC_JWKS["keys"]]}  # fmt: skip
    assert verify_introspection_jwt(sign(claims()), noisy, policy()).active is True
    with pytest.raises(ValueError, match="JWK Set"):
        KeySet.from_document({"keys": "all of them"})


# -- over HTTP ------------------------------------------------------------------------------


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for the test."""
    async with aiohttp.ClientSession() as client:
        yield client


def fake_client(
    fake_as: FakeAS, session: aiohttp.ClientSession, **options: Any
) -> IntrospectionClient:
    """A client of the fake AS: introspection at /introspect, keys at /jwks."""
    return IntrospectionClient(
        fake_as.url + "/introspect",
        client_id=AUDIENCE,
        client_secret="s3cret +/&",
        policy=policy(),
        session=session,
        **{"jwks": fake_as.url + "/jwks", **options},
    )


def serve_answer(fake_as: FakeAS, token: str) -> None:
    """Script the fake AS to answer ``token`` as an RFC 9701 response."""
    fake_as.answer(token.encode(), headers={"Content-Type": RFC9701}, path="/introspect")


async def test_client_request_and_result(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    """The client asks for RFC 9701 with Basic auth and returns the verified object."""
    fake_as.answer(PUBLIC_JWKS, path="/jwks")
    serve_answer(fake_as, sign(claims()))
    client = fake_client(fake_as, session)
    introspection = await client.introspect("tok en", token_type_hint="access_token")
    assert introspection == ACTIVE_ANSWER
    [request] = [r for r in fake_as.received if r.path == "/introspect"]
    assert request.headers["Accept"] == RFC9701
    assert base64.b64decode(request.headers["Authorization"][6:]) == b"rs-1:s3cret+%2B%2F%26"
    assert request.body == b"token=tok+en&token_type_hint=access_token"


async def test_client_owns_its_session_when_given_none(fake_as: FakeAS) -> None:
    """Without a session the client makes one, and closes it on leaving ``async with``."""
    fake_as.answer(PUBLIC_JWKS, path="/jwks")
    serve_answer(fake_as, sign(claims()))
    async with IntrospectionClient(
        fake_as.url + "/introspect", client_id=AUDIENCE, client_secret="s",
        jwks=fake_as.url + "/jwks", policy=policy(),
    ) as client:  # fmt: skip
        assert (await client.introspect("tok"))["active"] is True
    assert client._session.closed


async def test_client_secret_post(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    """With client_secret_post the credentials go in the form, not in a header."""
    fake_as.answer(PUBLIC_JWKS, path="/jwks")
    serve_answer(fake_as, sign(claims()))
    client = fake_client(fake_as, session, auth_method="client_secret_post")
    await client.introspect("tok")
    [request] = [r for r in fake_as.received if r.path == "/introspect"]
    assert "Authorization" not in request.headers
    assert b"client_id=rs-1" in request.body and b"client_secret=" in request.body


async def test_json_answer_is_a_downgrade(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    """A plain JSON answer to an RFC 9701 request is refused, never trusted as is."""
    fake_as.answer(ACTIVE_ANSWER, path="/introspect")
    with pytest.raises(UnexpectedType, match="application/json"):
        await fake_client(fake_as, session).introspect("tok")


async def test_error_status_is_refused(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    """A 401 from the AS becomes IntrospectionRefused with its status and error code."""
    fake_as.answer({"error": "invalid_client"}, status=401, path="/introspect")
    with pytest.raises(IntrospectionRefused) as raised:
        await fake_client(fake_as, session).introspect("tok")
    assert (raised.value.status, raised.value.error) == (401, "invalid_client")


async def test_unreachable_as(session: aiohttp.ClientSession) -> None:
    """A closed port yields IntrospectionUnavailable."""
    client = IntrospectionClient(
        "http://127.0.0.1:9/introspect", client_id="rs-1", client_secret="x",
        jwks="http://127.0.0.1:9/jwks", policy=policy(), session=session, timeout=2,
    )  # fmt: skip
    with pytest.raises(IntrospectionUnavailable):
        await client.introspect("tok")


async def test_jwks_unavailable(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    """A JWK Set URI that fails, or serves no JWK Set, yields JwksUnavailable."""
    serve_answer(fake_as, sign(claims()))
    fake_as.answer({"error": "oops"}, status=500, path="/jwks")
    with pytest.raises(JwksUnavailable, match="500"):
        await fake_client(fake_as, session).introspect("tok")
    fake_as.answer(b"[1, 2]", path="/jwks")
    with pytest.raises(JwksUnavailable, match="JWK Set"):
        await fake_client(fake_as, session).introspect("tok")


async def test_key_rotation_refetches_once(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    """An unknown kid refetches the JWK Set; made-up kids cannot force more than one a minute."""
    now = [1000.0]
    cache = JwksCache(session, fake_as.url + "/jwks", min_refresh_interval=60, clock=lambda: now[0])
    client = fake_client(fake_as, session, jwks=cache)
    fake_as.answer({"keys": [SIGNING_KEYS["es256-key"].export_public(as_dict=True)]}, path="/jwks")
    serve_answer(fake_as, sign(claims(), "ES256"))
    await client.introspect("tok")
    now[0] += 61
    fake_as.answer({"keys": [SIGNING_KEYS["rs256-key"].export_public(as_dict=True)]}, path="/jwks")
    serve_answer(fake_as, sign(claims(), "RS256"))  # the AS rotated to its RSA key
    await client.introspect("tok")
    assert cache.fetches == 2

    serve_answer(fake_as, sign(claims(), "EdDSA"))  # a kid the AS never published
    results = await asyncio.gather(
        *(client.introspect("tok") for _ in range(20)), return_exceptions=True
    )
    assert all(isinstance(result, UnknownKey) for result in results)
    assert cache.fetches == 2
    now[0] += 61
    with pytest.raises(UnknownKey):
        await client.introspect("tok")
    assert cache.fetches == 3


async def test_unknown_kid_refetch_is_single_flight(
    fake_as: FakeAS, session: aiohttp.ClientSession
) -> None:
    """Concurrent answers with a new kid share one refetch of the JWK Set."""
    fake_as.answer({"keys": [SIGNING_KEYS["es256-key"].export_public(as_dict=True)]}, path="/jwks")
    client = fake_client(fake_as, session, jwks_min_refresh_interval=0)
    serve_answer(fake_as, sign(claims(), "ES256"))
    await client.introspect("tok")
    fake_as.answer(PUBLIC_JWKS, path="/jwks", delay=0.05)
    serve_answer(fake_as, sign(claims(), "PS256"))
    results = await asyncio.gather(*(client.introspect("tok") for _ in range(10)))
    assert all(result == ACTIVE_ANSWER for result in results)
    assert client.jwks.fetches == 2


async def test_failed_refresh_keeps_known_keys(
    fake_as: FakeAS, session: aiohttp.ClientSession
) -> None:
    """When a periodic refetch fails, the keys already known keep verifying answers."""
    fake_as.answer(PUBLIC_JWKS, path="/jwks")
    client = fake_client(fake_as, session, jwks_max_age=0, jwks_min_refresh_interval=0)
    serve_answer(fake_as, sign(claims()))
    await client.introspect("tok")
    fake_as.answer({"error": "down"}, status=503, path="/jwks")
    assert (await client.introspect("tok"))["active"] is True
    assert client.jwks.fetches == 2


# -- against the sidecar and node-oidc-provider ---------------------------------------------


@pytest.fixture(scope="module")
def provider() -> Iterator[NodeProvider]:
    """node-oidc-provider with the default clients; tokens carry unicode and nested claims."""
    with NodeProvider({"extra_token_claims": EXTRA_TOKEN_CLAIMS}) as started:
        yield started


def provider_policy(provider: NodeProvider, audience: str, **changes: Any) -> VerificationPolicy:
    """Verify as ``audience`` against the provider's issuer."""
    return VerificationPolicy(issuer=provider.issuer, audience=audience, **changes)


@requires_node
async def test_client_via_sidecar(
    provider: NodeProvider, session: aiohttp.ClientSession, tmp_path: Path, start_sidecar: Any
) -> None:
    """Through the sidecar in front of the provider, active and revoked tokens verify."""
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(private_jwks("ES384"))
    config = sidecar_config(
        tmp_path, upstream_url=provider.base_url, issuer=provider.issuer, keys_file=keys_file
    )
    running = await start_sidecar(config)
    client = IntrospectionClient(
        running.introspect_url, client_id="rs-es256", client_secret=provider.secret("rs-es256"),
        jwks=running.url + config.jwks.path, session=session,
        policy=provider_policy(provider, "rs-es256", algorithms=("ES384",)),
    )  # fmt: skip
    token = await provider.get_token(session, scope="read")
    _, _, plain = await provider.introspect(session, token, "rs-es256")
    assert await client.introspect(token) == json.loads(plain)
    await provider.revoke(session, token)
    assert await client.introspect(token) == {"active": False}

    wrong = IntrospectionClient(
        running.introspect_url, client_id="rs-es256", client_secret="wrong",
        jwks=running.url + config.jwks.path, session=session, policy=client.policy,
    )  # fmt: skip
    with pytest.raises(IntrospectionRefused) as raised:
        await wrong.introspect(token)
    assert (raised.value.status, raised.value.error) == (401, "invalid_client")


@requires_node
@pytest.mark.parametrize(("client_id", "alg"), [("rs-rs256", "RS256"), ("rs-eddsa", "EdDSA")])
async def test_client_against_provider(
    provider: NodeProvider, session: aiohttp.ClientSession, client_id: str, alg: str
) -> None:
    """The provider's native RFC 9701 answers verify against its /jwks."""
    client = IntrospectionClient(
        provider.introspection_url, client_id=client_id, client_secret=provider.secret(client_id),
        jwks=provider.base_url + "/jwks", session=session,
        policy=provider_policy(provider, client_id, algorithms=(alg,)),
    )  # fmt: skip
    token = await provider.get_token(session)
    response = await client.introspect_response(token)
    assert response.active and response.header["alg"] == alg
    assert response.token_introspection["ext"] == EXTRA_TOKEN_CLAIMS["ext"]
    assert await client.introspect("never-issued") == {"active": False}


@requires_node
async def test_client_decrypts_provider_jwe(
    provider: NodeProvider, session: aiohttp.ClientSession
) -> None:
    """The provider's nested JWT for rs-enc decrypts with the RS key and verifies."""
    decrypt_keys = KeySet.from_document(provider.decrypt_key("rs-enc"))
    client = IntrospectionClient(
        provider.introspection_url, client_id="rs-enc", client_secret=provider.secret("rs-enc"),
        jwks=provider.base_url + "/jwks", session=session,
        policy=provider_policy(provider, "rs-enc", decrypt_keys=decrypt_keys,
                               require_encryption=True),
    )  # fmt: skip
    response = await client.introspect_response(await provider.get_token(session))
    assert response.active
    assert response.encryption_header is not None
    assert response.encryption_header["alg"] == "RSA-OAEP-256"
    assert response.encryption_header["cty"] == "JWT"
    assert response.header["alg"] == "ES256"

    wrong_key = KeySet.from_document(OTHER_ENCRYPTION_KEY.export(as_dict=True))
    with pytest.raises(DecryptionFailed):
        verify_introspection_jwt(
            (await provider.introspect(session, "x", "rs-enc", accept=RFC9701))[2],
            provider.jwks,
            provider_policy(provider, "rs-enc", decrypt_keys=wrong_key),
        )
