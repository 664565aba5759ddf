"""Five verifiers (PyJWT, joserfc, jwcrypto, jose in Node, sidecar.client) accept every answer.

The servers are the sidecar in front of node-oidc-provider, and node-oidc-provider itself;
every signing alg, RFC 9701 and draft-08, active and inactive tokens, plus nested JWE from
the provider. All JWTs are made once per module; jose checks them in one Node process.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt as pyjwt
import pytest
from conftest import private_jwks
from interophelpers import (
    PYTHON_VERIFIERS,
    TOKEN_CLIENT,
    jose_job,
    requires_node,
    rs_client,
    sidecar_config,
)
from joserfc.errors import BadSignatureError
from jwcrypto.common import JWKeyNotFound
from nodeinterop import JWT_MEDIA_TYPE, NodeProvider, jose_verify
from prometheus_client import CollectorRegistry

from sidecar.client import BadSignature
from sidecar.keys import SIGNING_ALGS
from sidecar.server import Server

pytestmark = requires_node

DRAFT08_MEDIA_TYPE = "application/jwt"
FORMATS = ("rfc9701", "draft-08")
STATES = ("active", "inactive")
# node-oidc-provider 9.13.3 refuses "Ed25519" (RFC 9864) as introspection_signed_response_alg.
PROVIDER_ALGS = SIGNING_ALGS
VERIFIERS = (*PYTHON_VERIFIERS, "jose")
# How each Python verifier reports a signature that does not verify. jwcrypto, given a key
# set, says JWKeyNotFound ("Missing Key") even when the key was found and the signature is bad.
SIGNATURE_FAILURES: dict[str, type[Exception]] = {
    "pyjwt": pyjwt.InvalidSignatureError,
    "joserfc": BadSignatureError,
    "jwcrypto": JWKeyNotFound,
    "sidecar.client": BadSignature,
}


def client_for(alg: str) -> str:
    """The provider client whose answers are signed with ``alg``."""
    return f"rs-{alg.lower()}"


@dataclass
class Answer:
    """One JWT from one server, what it should verify to, and jose's verdict on it."""

    jwt: str
    jwks: dict[str, Any]
    issuer: str
    audience: str
    alg: str
    draft08: bool
    decrypt_key: dict[str, Any] | None = None
    expected: dict[str, Any] | None = None  # the introspection, RFC 7662 JSON from the provider
    jose: dict[str, Any] | None = None

    def verify(self, verifier: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Verify with a Python verifier; (header, claims)."""
        return PYTHON_VERIFIERS[verifier](
            self.jwt, self.jwks, self.issuer, self.audience, self.alg,
            draft08=self.draft08, decrypt_key=self.decrypt_key,
        )  # fmt: skip

    def job(self) -> dict[str, Any]:
        """The verify.mjs job for this answer."""
        return jose_job(
            self.jwt, self.jwks, self.issuer, self.audience, self.alg,
            draft08=self.draft08, decrypt_key=self.decrypt_key,
        )  # fmt: skip


@pytest.fixture(scope="module")
def provider() -> Iterator[NodeProvider]:
    """A provider with one resource-server client per alg and one that encrypts."""
    clients = [TOKEN_CLIENT, *(rs_client(client_for(alg), alg) for alg in PROVIDER_ALGS)]
    for alg, enc in (("RSA-OAEP-256", "A128CBC-HS256"), ("ECDH-ES", "A256GCM")):
        clients.append(
            rs_client(
                f"rs-enc-{alg.lower()}",
                "ES256",
                introspection_encrypted_response_alg=alg,
                introspection_encrypted_response_enc=enc,
            )
        )
    with NodeProvider({"clients": clients}) as started:
        yield started


@pytest.fixture(scope="module")
def answers(provider: NodeProvider, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Answer]:
    """Every answer of the matrix by id, already judged by jose in one batch."""
    made = asyncio.run(_collect(provider, tmp_path_factory.mktemp("matrix")))
    for alg in SIGNING_ALGS:
        made[f"tampered-{alg}"] = _tampered(
            made[f"sidecar-{alg}-rfc9701-active"], made[f"sidecar-{alg}-rfc9701-inactive"]
        )
    results = jose_verify([answer.job() for answer in made.values()])
    for answer, result in zip(made.values(), results, strict=True):
        answer.jose = result
    return made


def _tampered(original: Answer, other: Answer) -> Answer:
    """``original`` with its claims swapped for ``other``'s, the signature left as it was."""
    head, _, signature = original.jwt.split(".")
    forged = f"{head}.{other.jwt.split('.')[1]}.{signature}"
    return Answer(**{**original.__dict__, "jwt": forged})


async def _collect(provider: NodeProvider, tmp_path: Path) -> dict[str, Answer]:
    """Ask the sidecar (one per alg, each with that alg's key) and the provider for every case."""
    made: dict[str, Answer] = {}
    async with aiohttp.ClientSession() as session:
        active = await provider.get_token(session, scope="read write")
        inactive = await provider.get_token(session)
        await provider.revoke(session, inactive)
        tokens = {"active": active, "inactive": inactive}
        expected = {}
        for state, token in tokens.items():
            _, _, body = await provider.introspect(session, token, "rs-es256")
            expected[state] = json.loads(body)

        for alg in SIGNING_ALGS:
            keys_file = tmp_path / f"{alg}.json"
            keys_file.write_text(private_jwks(alg))
            config = sidecar_config(
                tmp_path, upstream_url=provider.base_url, issuer=provider.issuer,
                keys_file=keys_file,
            )  # fmt: skip
            server = Server(config, registry=CollectorRegistry())
            await server.start()
            try:
                url = f"http://127.0.0.1:{server.proxy_port}"
                async with session.get(url + config.jwks.path) as response:
                    jwks = json.loads(await response.read())
                for fmt, accept in (("rfc9701", JWT_MEDIA_TYPE), ("draft-08", DRAFT08_MEDIA_TYPE)):
                    for state, token in tokens.items():
                        status, _, body = await provider.introspect(
                            session, token, client_for(alg), accept=accept,
                            url=url + config.introspection.path,
                        )  # fmt: skip
                        assert status == 200, body
                        made[f"sidecar-{alg}-{fmt}-{state}"] = Answer(
                            body.decode(), jwks, provider.issuer, client_for(alg), alg,
                            draft08=fmt == "draft-08", expected=expected[state],
                        )  # fmt: skip
            finally:
                await server.stop()

        for alg in PROVIDER_ALGS:
            for state, token in tokens.items():
                status, _, body = await provider.introspect(
                    session, token, client_for(alg), accept=JWT_MEDIA_TYPE
                )
                assert status == 200, body
                made[f"provider-{alg}-rfc9701-{state}"] = Answer(
                    body.decode(), provider.jwks, provider.issuer, client_for(alg), alg,
                    draft08=False, expected=expected[state],
                )  # fmt: skip
        for client_id in ("rs-enc-rsa-oaep-256", "rs-enc-ecdh-es"):
            status, _, body = await provider.introspect(
                session, active, client_id, accept=JWT_MEDIA_TYPE
            )
            assert status == 200, body
            made[f"provider-ES256-{client_id}-active"] = Answer(
                body.decode(), provider.jwks, provider.issuer, client_id, "ES256",
                draft08=False, decrypt_key=provider.decrypt_key(client_id),
                expected=expected["active"],
            )  # fmt: skip
    return made


SIDECAR_CASES = [
    f"sidecar-{alg}-{fmt}-{state}" for alg in SIGNING_ALGS for fmt in FORMATS for state in STATES
]
PROVIDER_CASES = [
    f"provider-{alg}-rfc9701-{state}" for alg in PROVIDER_ALGS for state in STATES
] + ["provider-ES256-rs-enc-rsa-oaep-256-active", "provider-ES256-rs-enc-ecdh-es-active"]


def _verified(answer: Answer, verifier: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) as ``verifier`` sees them; jose's come from the batch."""
    if verifier != "jose":
        return answer.verify(verifier)
    assert answer.jose is not None and answer.jose["ok"] is True, answer.jose
    return answer.jose["header"], answer.jose["payload"]


def _check(answer: Answer, header: dict[str, Any], claims: dict[str, Any]) -> None:
    """The header and claims are what the server was asked to produce."""
    assert header["alg"] == answer.alg
    assert header["typ"] == "token-introspection+jwt"
    assert claims["iss"] == answer.issuer and claims["aud"] == answer.audience
    assert isinstance(claims["iat"], int)
    assert answer.expected is not None
    if answer.draft08:
        introspection = {k: v for k, v in claims.items() if k not in ("iss", "aud", "iat")}
        expected = {k: v for k, v in answer.expected.items() if k not in ("iss", "aud", "iat")}
    else:
        assert "sub" not in claims and "exp" not in claims
        introspection, expected = claims["token_introspection"], answer.expected
    assert introspection == expected


@pytest.mark.parametrize("verifier", VERIFIERS)
@pytest.mark.parametrize("case", SIDECAR_CASES)
def test_verifier_accepts_sidecar_answer(
    answers: dict[str, Answer], case: str, verifier: str
) -> None:
    """Every verifier accepts the sidecar's answer for this alg, format and token state."""
    answer = answers[case]
    _check(answer, *_verified(answer, verifier))


@pytest.mark.parametrize("verifier", VERIFIERS)
@pytest.mark.parametrize("case", PROVIDER_CASES)
def test_verifier_accepts_provider_answer(
    answers: dict[str, Answer], case: str, verifier: str
) -> None:
    """Every verifier accepts node-oidc-provider's native answer (JWS or nested JWE)."""
    answer = answers[case]
    header, claims = _verified(answer, verifier)
    _check(answer, header, claims)
    if verifier == "jose" and answer.decrypt_key is not None:
        assert answer.jose is not None and answer.jose["jweHeader"]["cty"] == "JWT"


@pytest.mark.parametrize("verifier", VERIFIERS)
@pytest.mark.parametrize("alg", SIGNING_ALGS)
def test_verifier_refuses_tampered_answer(
    answers: dict[str, Answer], alg: str, verifier: str
) -> None:
    """A sidecar answer whose claims were swapped for another answer's fails every verifier."""
    answer = answers[f"tampered-{alg}"]
    if verifier == "jose":
        assert answer.jose is not None and answer.jose["ok"] is False
        assert answer.jose["code"] == "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"
        return
    with pytest.raises(SIGNATURE_FAILURES[verifier]):
        answer.verify(verifier)
