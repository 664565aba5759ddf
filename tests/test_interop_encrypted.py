"""Nested JWT (sign, then encrypt; SPEC §7): the sidecar's JWE against node-oidc-provider's.

The provider refuses plain JSON to a client registered for encrypted answers, so the
sidecar's upstream caller is a plain twin of that client (``<id>-legacy``), and the sidecar's
``clients.<id>-legacy`` policy names the original as ``audience`` and encrypts to its key.
Both servers then answer the same resource server, for the same token, with a nested JWT.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import Running, private_jwks
from interophelpers import (
    DEFAULT_CLIENTS,
    PYTHON_VERIFIERS,
    jose_job,
    public_jwk,
    requires_node,
    rs_client,
    sidecar_config,
)
from nodeinterop import JWT_MEDIA_TYPE, NodeProvider, jose_verify_async

from sidecar.client import KeySet, VerificationPolicy, verify_introspection_jwt
from sidecar.compact import b64decode, json_object

pytestmark = requires_node

# Resource server → (JWE alg, JWE enc) it registered at the provider.
ENCRYPTING = {
    "rs-enc": ("RSA-OAEP-256", "A128CBC-HS256"),
    "rs-enc-ecdh": ("ECDH-ES", "A256GCM"),
}


@pytest.fixture(scope="module")
def provider() -> Iterator[NodeProvider]:
    """The default clients, an ECDH-ES one, and a plain twin of each encrypting client."""
    clients = [client for client in DEFAULT_CLIENTS if client["client_id"] != "rs-enc"]
    for client_id, (alg, enc) in ENCRYPTING.items():
        clients.append(
            rs_client(
                client_id,
                "ES256",
                introspection_encrypted_response_alg=alg,
                introspection_encrypted_response_enc=enc,
            )
        )
        clients.append(rs_client(f"{client_id}-legacy", "ES256"))
    with NodeProvider({"clients": clients}) as started:
        yield started


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for the test."""
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def sidecar(provider: NodeProvider, start_sidecar: Any, tmp_path: Path) -> Running:
    """The sidecar in front of the provider, encrypting for each legacy twin (SPEC §7)."""
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(private_jwks("ES256", "RS256"))
    clients = {
        f"{client_id}-legacy": {
            "audience": client_id,
            "signed_response_alg": "ES256",
            "encrypted_response_alg": alg,
            "encrypted_response_enc": enc,
            "jwks": {"keys": [public_jwk(provider.decrypt_key(client_id))]},
        }
        for client_id, (alg, enc) in ENCRYPTING.items()
    }
    config = sidecar_config(
        tmp_path,
        upstream_url=provider.base_url,
        issuer=provider.issuer,
        keys_file=keys_file,
        extra={"clients": clients},
    )
    running: Running = await start_sidecar(config)
    return running


async def both_answers(
    provider: NodeProvider,
    session: aiohttp.ClientSession,
    sidecar: Running,
    client_id: str,
    token: str,
) -> tuple[str, str]:
    """The provider's native answer to ``client_id`` and the sidecar's to its legacy twin."""
    status, _, native = await provider.introspect(session, token, client_id, accept=JWT_MEDIA_TYPE)
    assert status == 200, native
    status, headers, ours = await provider.introspect(
        session, token, f"{client_id}-legacy", accept=JWT_MEDIA_TYPE, url=sidecar.introspect_url
    )
    assert status == 200, ours
    assert headers["Content-Type"] == JWT_MEDIA_TYPE
    return native.decode(), ours.decode()


def jwe_header(token: str) -> dict[str, Any]:
    """The protected header of a compact JWE."""
    assert token.count(".") == 4, "not a compact JWE"
    return json_object(b64decode(token.split(".")[0], "JWE header"), "JWE header")


@pytest.mark.parametrize("state", ["active", "revoked"])
@pytest.mark.parametrize("client_id", ENCRYPTING)
async def test_sidecar_jwe_equals_provider_jwe(
    provider: NodeProvider,
    session: aiohttp.ClientSession,
    sidecar: Running,
    client_id: str,
    state: str,
) -> None:
    """Decrypted with the RS key, the sidecar's nested JWT says what the provider's says."""
    token = await provider.get_token(session, scope="read write")
    if state == "revoked":
        await provider.revoke(session, token)
    native, ours = await both_answers(provider, session, sidecar, client_id, token)
    alg, enc = ENCRYPTING[client_id]
    for answer in (native, ours):
        header = jwe_header(answer)
        assert (header["alg"], header["enc"], header["cty"]) == (alg, enc, "JWT")

    sidecar_jwks = await sidecar.public_jwks()
    policy = VerificationPolicy(
        issuer=provider.issuer,
        audience=client_id,
        algorithms=("ES256",),
        decrypt_keys=KeySet.from_document(provider.decrypt_key(client_id)),
        require_encryption=True,
    )
    reference = verify_introspection_jwt(native, provider.jwks, policy)
    result = verify_introspection_jwt(ours, sidecar_jwks, policy)
    assert result.token_introspection == reference.token_introspection
    assert result.claims["aud"] == reference.claims["aud"] == client_id
    assert set(result.claims) == set(reference.claims)
    assert (result.header["alg"], result.header["typ"]) == ("ES256", "token-introspection+jwt")


@pytest.mark.parametrize("client_id", ENCRYPTING)
async def test_every_verifier_opens_the_sidecar_jwe(
    provider: NodeProvider, session: aiohttp.ClientSession, sidecar: Running, client_id: str
) -> None:
    """PyJWT (after jwcrypto decrypts), joserfc, jwcrypto, sidecar.client and jose all accept it."""
    token = await provider.get_token(session)
    _, ours = await both_answers(provider, session, sidecar, client_id, token)
    jwks = await sidecar.public_jwks()
    decrypt_key = provider.decrypt_key(client_id)
    for name, verify in PYTHON_VERIFIERS.items():
        header, claims = verify(
            ours, jwks, provider.issuer, client_id, "ES256", decrypt_key=decrypt_key
        )
        assert header["typ"] == "token-introspection+jwt", name
        assert claims["token_introspection"]["active"] is True, name
    job = jose_job(ours, jwks, provider.issuer, client_id, "ES256", decrypt_key=decrypt_key)
    [result] = await jose_verify_async([job])
    assert result["ok"] is True, result
    assert result["jweHeader"]["cty"] == "JWT"
