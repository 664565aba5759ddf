"""Encrypted answers: nested JWTs for clients that ask, their keys inline, on file or by URI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from conftest import ACTIVE_ANSWER, DRAFT08, ISSUER, RFC9701, FakeAS, Running, verify_jwt
from jwcrypto import jwk
from keyhelpers import client_key, closed_port, decrypt_both, jose_header, public_set

from sidecar.clientkeys import (
    DEFAULT_TTL,
    MAX_TTL,
    MIN_TTL,
    RETRY_AFTER,
    RemoteKeys,
    cache_lifetime,
    choose_recipient,
)
from sidecar.errors import EncryptionKeysUnavailable
from sidecar.server import StartupError

CLIENT = "rs-enc"

# (alg, client key kind, enc or None for the default A128CBC-HS256)
MATRIX = [
    ("RSA-OAEP", "RSA", "A128CBC-HS256"),
    ("RSA-OAEP-256", "RSA", "A256GCM"),
    ("ECDH-ES", "P-256", "A128GCM"),
    ("ECDH-ES", "X25519", "A192CBC-HS384"),
    ("ECDH-ES+A128KW", "P-384", "A256CBC-HS512"),
    ("ECDH-ES+A256KW", "P-521", "A192GCM"),
    ("ECDH-ES+A256KW", "X25519", None),
]


async def encrypting_sidecar(
    make_config: Any,
    start_sidecar: Any,
    policy: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Running:
    """A sidecar where ``CLIENT`` has ``policy``."""
    running: Running = await start_sidecar(
        make_config({"clients": {CLIENT: policy}, **(extra or {})})
    )
    return running


def open_answer(body: bytes, key: jwk.JWK, jwks: dict[str, Any], **verify: Any) -> dict[str, Any]:
    """Decrypt (joserfc and jwcrypto), then verify the inner JWS with PyJWT; the claims."""
    inner = decrypt_both(body, key)
    _, claims = verify_jwt(inner, jwks, audience=CLIENT, **verify)
    return claims


@pytest.mark.parametrize(("alg", "kind", "enc"), MATRIX)
async def test_nested_jwt_for_every_alg_and_enc(
    make_config: Any, start_sidecar: Any, alg: str, kind: str, enc: str | None
) -> None:
    """The answer is a JWE (cty JWT, the client key's kid) around the signed JWT, both shapes."""
    key = client_key(kind, kid=f"{kind}-enc")
    policy: dict[str, Any] = {"encrypted_response_alg": alg, "jwks": public_set(key)}
    if enc is not None:
        policy["encrypted_response_enc"] = enc
    running = await encrypting_sidecar(make_config, start_sidecar, policy)
    jwks = await running.public_jwks()
    for accept, media_type in ((RFC9701, RFC9701), (DRAFT08, DRAFT08)):
        status, headers, body = await running.introspect(client=CLIENT, accept=accept)
        assert status == 200
        assert headers["Content-Type"] == media_type
        assert headers["Cache-Control"] == "no-store"
        header = jose_header(body)
        assert len(body.split(b".")) == 5
        assert {k: v for k, v in header.items() if k != "epk"} == {
            "alg": alg, "enc": enc or "A128CBC-HS256", "cty": "JWT", "kid": f"{kind}-enc",
        }  # fmt: skip
        assert ("epk" in header) == alg.startswith("ECDH")
        claims = open_answer(body, key, jwks)
        if accept == RFC9701:
            assert claims["token_introspection"] == ACTIVE_ANSWER
        else:
            assert claims["sub"] == "alice" and claims["iss"] == ISSUER
    encrypted = running.sample(
        "sidecar_introspection_requests_total", {"format": "rfc9701", "outcome": "encrypted"}
    )
    assert encrypted == 1
    assert running.sample("sidecar_encryption_duration_seconds_count", {"alg": alg}) == 2


async def test_other_clients_get_signed_only(make_config: Any, start_sidecar: Any) -> None:
    """Only the client that asked for encryption gets a JWE; a JSON request stays JSON."""
    key = client_key("RSA", kid="rsa-enc")
    running = await encrypting_sidecar(
        make_config,
        start_sidecar,
        {"encrypted_response_alg": "RSA-OAEP-256", "jwks": public_set(key)},
    )
    _, _, body = await running.introspect(client="rs-1")
    verify_jwt(body, await running.public_jwks(), audience="rs-1")
    status, _, body = await running.introspect(client=CLIENT, accept="application/json")
    assert status == 200 and json.loads(body) == ACTIVE_ANSWER


async def test_inactive_and_refused_answers(
    make_config: Any, start_sidecar: Any, fake_as: FakeAS
) -> None:
    """An inactive answer is encrypted too; an upstream refusal passes unsigned, unencrypted."""
    key = client_key("P-256", kid="ec-enc")
    running = await encrypting_sidecar(
        make_config, start_sidecar, {"encrypted_response_alg": "ECDH-ES", "jwks": public_set(key)}
    )
    fake_as.answer({"active": False, "sub": "alice"})
    _, _, body = await running.introspect(client=CLIENT)
    assert open_answer(body, key, await running.public_jwks())["token_introspection"] == {
        "active": False
    }
    fake_as.answer({"error": "invalid_client"}, status=401)
    status, _, body = await running.introspect(client=CLIENT)
    assert status == 401 and json.loads(body) == {"error": "invalid_client"}


async def test_key_that_fits_the_alg_is_chosen(make_config: Any, start_sidecar: Any) -> None:
    """Signature keys, keys of the wrong type or alg are passed over; use=enc keys come first."""
    rsa_sig = client_key("RSA", kid="sig")
    ec = client_key("P-256", kid="ec")
    other_alg = client_key("RSA", kid="oaep-only", alg="RSA-OAEP")
    no_use = client_key("RSA", kid="no-use")
    enc = client_key("RSA", kid="enc")
    document = {
        "keys": [
            {**json.loads(rsa_sig.export_public()), "use": "sig"},
            json.loads(ec.export_public()),
            {**json.loads(other_alg.export_public()), "alg": "RSA-OAEP"},
            json.loads(no_use.export_public()),
            {**json.loads(enc.export_public()), "use": "enc", "key_ops": ["wrapKey"]},
        ]
    }
    running = await encrypting_sidecar(
        make_config, start_sidecar, {"encrypted_response_alg": "RSA-OAEP-256", "jwks": document}
    )
    _, _, body = await running.introspect(client=CLIENT)
    assert jose_header(body)["kid"] == "enc"
    open_answer(body, enc, await running.public_jwks())


async def test_keys_from_a_jwks_file(make_config: Any, start_sidecar: Any, tmp_path: Path) -> None:
    """clients.<id>.jwks_file is read at start-up."""
    key = client_key("X25519", kid="x-file")
    path = tmp_path / "rs-enc.jwks.json"
    path.write_text(json.dumps(public_set(key)))
    running = await encrypting_sidecar(
        make_config,
        start_sidecar,
        {"encrypted_response_alg": "ECDH-ES+A128KW", "jwks_file": str(path)},
    )
    _, _, body = await running.introspect(client=CLIENT)
    open_answer(body, key, await running.public_jwks())


async def test_keys_from_a_jwks_uri_are_fetched_once_and_cached(
    make_config: Any, start_sidecar: Any, fake_as: FakeAS
) -> None:
    """A jwks_uri is fetched at the first encrypted answer and reused for the next ones."""
    key = client_key("RSA", kid="rsa-remote")
    fake_as.answer(public_set(key), path="/rs/jwks.json")
    running = await encrypting_sidecar(
        make_config,
        start_sidecar,
        {"encrypted_response_alg": "RSA-OAEP", "jwks_uri": f"{fake_as.url}/rs/jwks.json"},
    )
    assert not [r for r in fake_as.received if r.path == "/rs/jwks.json"]  # lazy
    answers = await asyncio.gather(*(running.introspect(client=CLIENT) for _ in range(5)))
    jwks = await running.public_jwks()
    for status, _, body in answers:
        assert status == 200
        open_answer(body, key, jwks)
    assert len([r for r in fake_as.received if r.path == "/rs/jwks.json"]) == 1
    assert running.sample("sidecar_client_jwks_fetches_total", {"outcome": "ok"}) == 1


def assert_keys_unavailable(status: int, headers: dict[str, str], body: bytes) -> None:
    """A clear 502 JSON error, never a JWT of any kind."""
    assert status == 502
    assert headers["Content-Type"] == "application/json"
    document = json.loads(body)
    assert document["error"] == "server_error"
    assert "encryption keys of this client" in document["error_description"]


async def test_unreachable_jwks_uri_is_a_502_and_not_retried_at_once(
    make_config: Any, start_sidecar: Any, fake_as: FakeAS
) -> None:
    """A jwks_uri nobody answers: 502, nothing unencrypted; failing again at once, not refetched."""
    running = await encrypting_sidecar(
        make_config,
        start_sidecar,
        {
            "encrypted_response_alg": "RSA-OAEP-256",
            "jwks_uri": f"http://127.0.0.1:{closed_port()}/jwks.json",
        },
    )
    for _ in range(3):
        assert_keys_unavailable(*await running.introspect(client=CLIENT))
    assert running.sample("sidecar_client_jwks_fetches_total", {"outcome": "unavailable"}) == 1
    failed = running.sample(
        "sidecar_introspection_requests_total",
        {"format": "rfc9701", "outcome": "encryption_keys_unavailable"},
    )
    assert failed == 3


async def test_slow_jwks_uri_times_out(
    make_config: Any, start_sidecar: Any, fake_as: FakeAS
) -> None:
    """A jwks_uri slower than upstream.timeout: 502 after the timeout, not a hang."""
    fake_as.answer(public_set(client_key("RSA")), path="/rs/jwks.json", delay=0.8)
    running = await encrypting_sidecar(
        make_config,
        start_sidecar,
        {"encrypted_response_alg": "RSA-OAEP", "jwks_uri": f"{fake_as.url}/rs/jwks.json"},
        {"upstream": {"url": fake_as.url, "timeout": 0.3}},
    )
    started = time.monotonic()
    status, headers, body = await running.introspect(client=CLIENT)
    assert time.monotonic() - started < 1.5
    assert_keys_unavailable(status, headers, body)
    assert "not fetched within 0.3 s" in json.loads(body)["error_description"]
    assert running.sample("sidecar_client_jwks_fetches_total", {"outcome": "timeout"}) == 1


BAD_REMOTE_SETS = {
    "not JSON": (b"<html>oops</html>", 200),
    "keys not a list": (b'{"keys": "none"}', 200),
    "private members": (json.dumps(public_set(client_key("RSA"), d="AAAA")).encode(), 200),
    "signature keys only": (json.dumps(public_set(client_key("RSA"), use="sig")).encode(), 200),
    "wrong key type": (json.dumps(public_set(client_key("P-256"))).encode(), 200),
    "HTTP 404": (b'{"keys": []}', 404),
}


@pytest.mark.parametrize("case", sorted(BAD_REMOTE_SETS))
async def test_malformed_remote_jwk_set_is_a_502(
    make_config: Any, start_sidecar: Any, fake_as: FakeAS, case: str
) -> None:
    """A jwks_uri answer that holds no usable key: 502, never an unencrypted answer."""
    body, status = BAD_REMOTE_SETS[case]
    fake_as.answer(body, status=status, path="/rs/jwks.json")
    running = await encrypting_sidecar(
        make_config,
        start_sidecar,
        {"encrypted_response_alg": "RSA-OAEP-256", "jwks_uri": f"{fake_as.url}/rs/jwks.json"},
    )
    status, headers, answer = await running.introspect(client=CLIENT)
    assert_keys_unavailable(status, headers, answer)
    assert b"oops" not in answer and b"AAAA" not in answer  # fetched bytes are not echoed


BAD_STATIC = {
    "no keys": ({"jwks": {"keys": []}}, "clients.rs-enc.jwks: no key fits RSA-OAEP-256"),
    "not a set": ({"jwks": {"kty": "RSA"}}, "clients.rs-enc.jwks: expected a JWK Set"),
    "private": (
        {"jwks": public_set(client_key("RSA"), d="AAAA")},
        "clients.rs-enc.jwks: key 0 holds private key members",
    ),
    "broken key": (
        {"jwks": {"keys": [{"kty": "RSA", "n": "AQAB"}]}},
        "clients.rs-enc.jwks: key 0 is not a valid JWK",
    ),
    "small RSA": (
        {"jwks": {"keys": [json.loads(jwk.JWK.generate(kty="RSA", size=1024).export_public())]}},
        "clients.rs-enc.jwks: no key fits",
    ),
    "missing file": (
        {"jwks_file": "/nonexistent/rs.json"},
        "clients.rs-enc.jwks_file: cannot read",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_STATIC))
async def test_bad_inline_or_file_keys_stop_the_start(
    make_config: Any, start_sidecar: Any, case: str
) -> None:
    """An unusable jwks or jwks_file is a start-up error naming its YAML path."""
    source, message = BAD_STATIC[case]
    config = make_config(
        {"clients": {CLIENT: {"encrypted_response_alg": "RSA-OAEP-256", **source}}}
    )
    with pytest.raises(StartupError) as raised:
        await start_sidecar(config)
    assert message in str(raised.value)
    assert "AAAA" not in str(raised.value)


def test_check_config_reports_bad_client_keys(tmp_path: Path, keys_file: Path) -> None:
    """``sidecar check-config`` lists every bad client key set with its YAML path; exit 2."""
    bad_file = tmp_path / "bad.json"
    bad_file.write_text("not json")
    config = tmp_path / "cli.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "issuer": ISSUER,
                "upstream": {"url": "http://127.0.0.1:9"},
                "signing": {"keys_file": str(keys_file)},
                "clients": {
                    "rs-a": {"encrypted_response_alg": "ECDH-ES", "jwks": {"keys": []}},
                    "rs-b": {"encrypted_response_alg": "RSA-OAEP", "jwks_file": str(bad_file)},
                },
            }
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "clients.rs-a.jwks: no key fits ECDH-ES" in result.stderr
    assert f"clients.rs-b.jwks_file: {bad_file}: not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        """The current (test) time."""
        return self.now


@pytest.fixture
async def remote(fake_as: FakeAS) -> Any:
    """A ``RemoteKeys`` for ``<fake AS>/rs/jwks.json`` with a hand-moved clock."""
    clock = Clock()
    fetched: list[str] = []
    async with aiohttp.ClientSession() as session:
        keys = RemoteKeys(
            f"{fake_as.url}/rs/jwks.json",
            alg="RSA-OAEP-256",
            enc="A128CBC-HS256",
            client_id=CLIENT,
            timeout=1.0,
            session=lambda: session,
            on_fetch=fetched.append,
            clock=clock,
        )
        yield keys, clock, fetched


def fetches(fake_as: FakeAS) -> int:
    """How many times the fake AS served the client's JWK Set."""
    return len([r for r in fake_as.received if r.path == "/rs/jwks.json"])


async def test_remote_keys_refresh_after_max_age(remote: Any, fake_as: FakeAS) -> None:
    """A fetched set is used for its max-age, then fetched again (a rotated client key is seen)."""
    keys, clock, _ = remote
    first, second = client_key("RSA", kid="first"), client_key("RSA", kid="second")
    cache = {"Content-Type": "application/json", "Cache-Control": "public, max-age=120"}
    fake_as.answer(public_set(first), path="/rs/jwks.json", headers=cache)
    assert (await keys.recipient()).kid == "first"
    fake_as.answer(public_set(second), path="/rs/jwks.json", headers=cache)
    clock.now += 119
    assert (await keys.recipient()).kid == "first"
    assert fetches(fake_as) == 1
    clock.now += 2
    assert (await keys.recipient()).kid == "second"
    assert fetches(fake_as) == 2


async def test_remote_keys_expired_while_the_uri_is_down(remote: Any, fake_as: FakeAS) -> None:
    """Once the cached set expired and the jwks_uri fails, the caller gets an error: no old keys."""
    keys, clock, fetched = remote
    fake_as.answer(public_set(client_key("RSA", kid="first")), path="/rs/jwks.json")
    await keys.recipient()
    fake_as.answer(b"down", status=503, path="/rs/jwks.json")
    clock.now += DEFAULT_TTL - 1
    assert (await keys.recipient()).kid == "first"  # still fresh: no fetch
    clock.now += 2
    with pytest.raises(EncryptionKeysUnavailable, match="answered HTTP 503"):
        await keys.recipient()
    assert fetched == ["ok", "unavailable"]


async def test_remote_keys_retry_after_a_pause(remote: Any, fake_as: FakeAS) -> None:
    """A failed fetch is not repeated for RETRY_AFTER seconds; then the fixed set is used."""
    keys, clock, _ = remote
    fake_as.answer(b"{}", path="/rs/jwks.json")
    for _ in range(3):
        with pytest.raises(EncryptionKeysUnavailable, match="is not usable"):
            await keys.recipient()
    assert fetches(fake_as) == 1
    fake_as.answer(public_set(client_key("RSA", kid="fixed")), path="/rs/jwks.json")
    clock.now += RETRY_AFTER
    assert (await keys.recipient()).kid == "fixed"


async def test_remote_keys_one_fetch_for_concurrent_callers(remote: Any, fake_as: FakeAS) -> None:
    """Callers arriving while a fetch is under way wait for it instead of fetching again."""
    keys, _, _ = remote
    fake_as.answer(public_set(client_key("RSA", kid="k")), path="/rs/jwks.json", delay=0.1)
    recipients = await asyncio.gather(*(keys.recipient() for _ in range(10)))
    assert {recipient.kid for recipient in recipients} == {"k"}
    assert fetches(fake_as) == 1


@pytest.mark.parametrize(
    ("cache_control", "seconds"),
    [
        (None, DEFAULT_TTL),
        ("max-age=600", 600.0),
        ("public, max-age=1", MIN_TTL),
        ("max-age=99999999", MAX_TTL),
        ("no-store", MIN_TTL),
        ("no-cache, max-age=600", MIN_TTL),
        ("private", DEFAULT_TTL),
    ],
)
def test_cache_lifetime_of_a_fetched_set(cache_control: str | None, seconds: float) -> None:
    """A fetched set's lifetime follows its Cache-Control max-age within fixed bounds."""
    assert cache_lifetime(cache_control) == seconds


def _rsa(**members: Any) -> dict[str, Any]:
    """The public RSA client key with ``members`` added."""
    return {**json.loads(client_key("RSA", kid="table").export_public()), **members}


@pytest.mark.parametrize(
    ("keys", "chosen"),
    [
        ([{"kty": "AKP", "alg": "ML-DSA-44"}, _rsa()], "table"),  # unknown kty: ignored
        ([_rsa(key_ops=["verify"]), _rsa(kid="ops", key_ops=["wrapKey"])], "ops"),
        ([_rsa(key_ops=[["odd"]]), _rsa(kid="second")], "second"),
        ([_rsa(alg="RSA-OAEP"), _rsa(kid="any-alg")], "any-alg"),
        ([_rsa(kid="plain"), _rsa(kid="enc", use="enc")], "enc"),
        ([_rsa(kid=7)], None),  # a kid that is not a string is not put in the header
    ],
)
def test_choose_recipient_table(keys: list[dict[str, Any]], chosen: str | None) -> None:
    """The client key for RSA-OAEP-256: right type, usable for encryption, use=enc first."""
    recipient = choose_recipient({"keys": keys}, "RSA-OAEP-256", "A128GCM")
    assert recipient.kid == chosen
    assert ("kid" in json.loads(recipient.protected)) == (chosen is not None)
