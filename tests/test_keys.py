"""Key files: JWK Sets and PEM, refusals, and a public JWK Set without private members."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import private_jwks
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from sidecar.keys import PRIVATE_MEMBERS, KeyFileError, generate_key, load_key_ring, parse_key_ring

TYP = "token-introspection+jwt"


def ring_from(text: str | bytes, kid: str | None = None):  # type: ignore[no-untyped-def]
    raw = text.encode() if isinstance(text, str) else text
    return parse_key_ring(raw, active_kid=kid, typ=TYP, source="keys.json")


def test_jwks_lists_every_key_public_only() -> None:
    """The public set holds every key with kid, alg and use=sig, and no private member."""
    ring = ring_from(private_jwks("ES256", "RS256", "EdDSA", "PS384"))
    published = json.loads(ring.jwks_json)["keys"]
    assert [k["kid"] for k in published] == ["es256-key", "rs256-key", "eddsa-key", "ps384-key"]
    for key in published:
        assert key["use"] == "sig" and key["alg"]
        assert not PRIVATE_MEMBERS & set(key)
    assert ring.active.kid == "es256-key"
    assert ring.algs == ["ES256", "RS256", "EdDSA", "PS384"]


def test_signing_kid_selects_the_active_key() -> None:
    """signing.kid picks the active key; the first key is the default."""
    ring = ring_from(private_jwks("ES256", "RS256"), kid="rs256-key")
    assert ring.active.kid == "rs256-key"
    assert ring.for_alg("ES256") is not None and ring.for_alg("ES256").kid == "es256-key"  # type: ignore[union-attr]
    assert ring.for_alg("PS512") is None


def _pem(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize(
    ("key", "alg"),
    [
        (rsa.generate_private_key(65537, 2048), "RS256"),
        (ec.generate_private_key(ec.SECP256R1()), "ES256"),
        (ec.generate_private_key(ec.SECP384R1()), "ES384"),
        (ed25519.Ed25519PrivateKey.generate(), "EdDSA"),
    ],
)
def test_pem_keys(tmp_path: Path, key: object, alg: str) -> None:
    """A PEM private key loads with the default alg for its type and a thumbprint kid."""
    path = tmp_path / "key.pem"
    path.write_bytes(_pem(key))
    ring = load_key_ring(path, active_kid=None, typ=TYP)
    assert ring.active.alg == alg
    assert len(ring.active.kid) == 43  # RFC 7638 SHA-256 thumbprint, base64url


def _jwk(key_alg: str, **changes: object) -> dict[str, object]:
    member: dict[str, object] = json.loads(private_jwks(key_alg))["keys"][0]
    member.update(changes)
    return {k: v for k, v in member.items() if v is not None}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ('{"keys": [{"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}]}', "symmetric"),
        ({"keys": [_jwk("ES256", alg="HS256")]}, "alg 'HS256'"),
        ({"keys": [_jwk("ES256", alg="none")]}, "alg 'none'"),
        ({"keys": [_jwk("ES256", alg="RS256")]}, "does not fit"),
        ({"keys": [_jwk("RS256", alg="ES256")]}, "does not fit"),
        ({"keys": [_jwk("ES256", d=None)]}, "no private part"),
        ({"keys": [_jwk("ES256", use="enc")]}, "use='enc'"),
        ({"keys": []}, "no keys"),
        ({"keys": [_jwk("ES256"), _jwk("ES256")]}, "duplicate kid"),
        ({"keys": "nope"}, "must be a list"),
        ({"keys": [42]}, "not a JSON object"),
        ({"keys": [{"kty": "EC", "crv": "P-256", "x": "bad"}]}, "not a valid JWK"),
        ("[1, 2]", "expected a JWK Set"),
        ("{not json", "not valid JSON"),
        ("hello", "neither a JWK Set"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "PEM"),
    ],
)
def test_refused_key_files(document: object, message: str) -> None:
    """Symmetric, none, mismatched, public-only and malformed keys are refused, saying why."""
    text = document if isinstance(document, str) else json.dumps(document)
    with pytest.raises(KeyFileError) as raised:
        ring_from(text)
    assert message in str(raised.value)


def test_small_rsa_key_refused(tmp_path: Path) -> None:
    """RSA keys under 2048 bits are refused (RFC 7518 §3.3)."""
    path = tmp_path / "small.pem"
    path.write_bytes(_pem(rsa.generate_private_key(65537, 1024)))
    with pytest.raises(KeyFileError, match="1024 bits"):
        load_key_ring(path, active_kid=None, typ=TYP)


def test_unknown_kid_refused() -> None:
    """A signing.kid that is not in the file is refused."""
    with pytest.raises(KeyFileError, match="no key with kid 'missing'"):
        ring_from(private_jwks("ES256"), kid="missing")


def test_unreadable_file(tmp_path: Path) -> None:
    """A missing key file is refused with its path."""
    with pytest.raises(KeyFileError, match="cannot read"):
        load_key_ring(tmp_path / "absent.json", active_kid=None, typ=TYP)


def test_errors_never_echo_key_material() -> None:
    """A refusal message does not contain the private key."""
    member = _jwk("ES256", alg="HS256")
    with pytest.raises(KeyFileError) as raised:
        ring_from(json.dumps({"keys": [member]}))
    assert str(member["d"]) not in str(raised.value)


def test_generate_key_kid_is_thumbprint() -> None:
    """Generated keys carry alg, use=sig and the thumbprint kid unless one is given."""
    key = generate_key("EdDSA")
    assert key.get("kid") == key.thumbprint()
    assert generate_key("ES256", kid="k1").get("kid") == "k1"
    with pytest.raises(KeyFileError):
        generate_key("RS256", bits=1024)
    with pytest.raises(KeyFileError):
        generate_key("HS256")
