"""Discovery metadata with the introspection algorithms, and the AS's JWK Set merged with ours."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import ISSUER, FakeAS, Running, verify_jwt
from keyhelpers import SecretVolume, client_key, key_set, public_set, signing_key, wait_for

from sidecar.config import ENCRYPTION_ALGS, ENCRYPTION_ENCS, ConfigError
from sidecar.keys import PRIVATE_MEMBERS

METADATA_PATHS = ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"]
DISCOVERY = {"issuer": ISSUER, "introspection_endpoint": f"{ISSUER}/token/introspect"}
AS_KEY = {"kty": "EC", "crv": "P-256", "kid": "as-1", "use": "sig", "alg": "ES256",
          "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
          "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}  # fmt: skip


async def get(running: Running, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    """GET ``path`` through the sidecar."""
    async with running.session.get(running.url + path, headers=headers) as response:
        return response.status, dict(response.headers), await response.read()


@pytest.mark.parametrize("path", METADATA_PATHS)
async def test_discovery_gains_the_signing_algs(
    sidecar: Running, fake_as: FakeAS, path: str
) -> None:
    """Both discovery documents keep every upstream member and gain the signing algs only."""
    fake_as.answer(DISCOVERY, path=path)
    status, headers, body = await get(sidecar, path)
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert json.loads(body) == {
        **DISCOVERY,
        "introspection_signing_alg_values_supported": ["ES256", "RS256"],
    }


@pytest.mark.parametrize("path", METADATA_PATHS)
async def test_discovery_gains_encryption_algs_when_a_client_encrypts(
    make_config: Any, start_sidecar: Any, fake_as: FakeAS, path: str
) -> None:
    """With an encrypting client, the JWE alg and enc values are advertised too."""
    running = await start_sidecar(
        make_config(
            {
                "clients": {
                    "rs-enc": {
                        "encrypted_response_alg": "ECDH-ES",
                        "jwks": public_set(client_key("P-256")),
                    }
                }
            }
        )
    )
    fake_as.answer(DISCOVERY, path=path)
    _, _, body = await get(running, path)
    document = json.loads(body)
    assert document["introspection_encryption_alg_values_supported"] == list(ENCRYPTION_ALGS)
    assert document["introspection_encryption_enc_values_supported"] == list(ENCRYPTION_ENCS)
    assert document["issuer"] == ISSUER


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (404, b'{"error": "not_found"}', "application/json"),
        (500, b"internal error", "text/plain"),
        (200, b"<html>not json</html>", "text/html"),
        (200, b'["an", "array"]', "application/json"),
    ],
)
async def test_other_discovery_answers_pass_unchanged(
    sidecar: Running, fake_as: FakeAS, status: int, body: bytes, content_type: str
) -> None:
    """Upstream errors and anything but a JSON object come back exactly as sent."""
    path = METADATA_PATHS[0]
    fake_as.answer(body, status=status, headers={"Content-Type": content_type}, path=path)
    got_status, headers, got_body = await get(sidecar, path)
    assert (got_status, got_body) == (status, body)
    assert headers["Content-Type"] == content_type


async def test_amended_document_drops_validators(sidecar: Running, fake_as: FakeAS) -> None:
    """Conditional headers are not forwarded; the amended answer carries no upstream ETag."""
    path = METADATA_PATHS[0]
    fake_as.answer(
        DISCOVERY,
        path=path,
        headers={"Content-Type": "application/json", "ETag": '"v1"', "Cache-Control": "max-age=60"},
    )
    status, headers, _ = await get(sidecar, path, **{"If-None-Match": '"v1"'})
    assert status == 200
    assert "ETag" not in headers and headers["Cache-Control"] == "max-age=60"
    assert "If-None-Match" not in fake_as.received[-1].headers


async def test_discovery_follows_a_key_reload(
    make_config: Any, start_sidecar: Any, fake_as: FakeAS, tmp_path: Path
) -> None:
    """After the key file changes, the advertised signing algs are those of the new keys."""
    volume = SecretVolume(tmp_path / "secret")
    volume.write(key_set(signing_key("ES256", "key-a")))
    running = await start_sidecar(
        make_config({"signing": {"keys_file": str(volume.path), "reload_interval": 0.05}})
    )
    path = METADATA_PATHS[1]
    fake_as.answer(DISCOVERY, path=path)
    volume.write(key_set(signing_key("EdDSA", "key-b"), signing_key("ES256", "key-a")))
    await wait_for(
        lambda: running.sample("sidecar_signing_keys_reloads_total", {"outcome": "loaded"}) == 1
    )
    _, _, body = await get(running, path)
    assert json.loads(body)["introspection_signing_alg_values_supported"] == ["EdDSA", "ES256"]


@pytest.fixture
async def merging(make_config: Any, start_sidecar: Any) -> Running:
    """The sidecar with jwks.merge_into_upstream: /oauth/jwks."""
    running: Running = await start_sidecar(
        make_config({"jwks": {"merge_into_upstream": "/oauth/jwks"}})
    )
    return running


async def test_upstream_jwk_set_lists_our_keys(merging: Running, fake_as: FakeAS) -> None:
    """The AS's own set gains our public keys whose kid it lacks; a JWT verifies against it."""
    upstream_copy = {**AS_KEY, "kid": "es256-key"}  # the AS already lists one of our kids
    fake_as.answer(
        {"keys": [AS_KEY, upstream_copy]},
        path="/oauth/jwks",
        headers={"Content-Type": "application/jwk-set+json"},
    )
    status, headers, body = await get(merging, "/oauth/jwks")
    assert status == 200 and headers["Content-Type"] == "application/jwk-set+json"
    merged = json.loads(body)
    assert [key["kid"] for key in merged["keys"]] == ["as-1", "es256-key", "rs256-key"]
    assert merged["keys"][:2] == [AS_KEY, upstream_copy]
    ours = (await merging.public_jwks())["keys"]
    assert merged["keys"][2] == ours[1]
    for key in merged["keys"]:
        assert not PRIVATE_MEMBERS & key.keys()

    fake_as.answer({"keys": [AS_KEY]}, path="/oauth/jwks")
    _, _, body = await get(merging, "/oauth/jwks")
    _, _, token = await merging.introspect()
    verify_jwt(token, json.loads(body), audience="rs-1")


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, b"oops"), (200, b"not json"), (200, b'{"no_keys": true}'), (304, b"")],
)
async def test_other_jwk_set_answers_pass_unchanged(
    merging: Running, fake_as: FakeAS, status: int, body: bytes
) -> None:
    """An upstream JWK Set answer that is not a 200 JSON set is passed through unchanged."""
    fake_as.answer(body, status=status, path="/oauth/jwks")
    got_status, _, got_body = await get(merging, "/oauth/jwks")
    assert (got_status, got_body) == (status, body)


async def test_without_merging_the_upstream_set_is_untouched(
    sidecar: Running, fake_as: FakeAS
) -> None:
    """Without jwks.merge_into_upstream the AS's set is plain passthrough."""
    fake_as.answer({"keys": [AS_KEY]}, path="/oauth/jwks")
    _, _, body = await get(sidecar, "/oauth/jwks")
    assert json.loads(body) == {"keys": [AS_KEY]}


def test_merge_path_must_not_be_ours(make_config: Any) -> None:
    """jwks.merge_into_upstream equal to jwks.path is a configuration problem."""
    with pytest.raises(ConfigError, match=r"jwks\.merge_into_upstream: must differ"):
        make_config({"jwks": {"merge_into_upstream": "/introspection/jwks.json"}})
    with pytest.raises(ConfigError, match=r"jwks\.merge_into_upstream: expected a path"):
        make_config({"jwks": {"merge_into_upstream": "oauth/jwks"}})


def test_merge_path_from_the_environment(make_config: Any) -> None:
    """SIDECAR_JWKS_MERGE_INTO_UPSTREAM sets the key; null by default."""
    assert make_config().jwks.merge_into_upstream is None
    config = make_config(SIDECAR_JWKS_MERGE_INTO_UPSTREAM="/jwks")
    assert config.jwks.merge_into_upstream == "/jwks"
