"""Claims and signing without a server: shapes, refusals, and every algorithm verified by PyJWT."""

from __future__ import annotations

import json

import jwt
import pytest
from conftest import private_jwks

from sidecar.errors import BadUpstreamAnswer
from sidecar.keys import SIGNING_ALGS, parse_key_ring
from sidecar.negotiate import Format
from sidecar.tokens import (
    build_claims,
    draft08_claims,
    encode_claims,
    parse_introspection_object,
    rfc9701_claims,
)

ACTIVE = {"active": True, "sub": "alice", "exp": 1, "iss": "token-iss", "aud": "x", "iat": 5}


def test_rfc9701_claims_wrap_the_object() -> None:
    """RFC 9701 §5: iss, aud, iat on top; the object whole inside token_introspection."""
    claims = rfc9701_claims(ACTIVE, issuer="https://as", audience="rs", issued_at=10)
    assert claims == {"iss": "https://as", "aud": "rs", "iat": 10, "token_introspection": ACTIVE}


def test_rfc9701_inactive_is_exactly_active_false() -> None:
    """RFC 9701 §5: an inactive object becomes exactly {"active": false}."""
    claims = rfc9701_claims(
        {"active": False, "sub": "x"}, issuer="i", audience="a", issued_at=1, include_jti=True
    )
    assert claims["token_introspection"] == {"active": False}
    assert "sub" not in claims and "exp" not in claims


def test_include_jti() -> None:
    """include_jti adds a random top-level jti, different each time."""
    first = rfc9701_claims(ACTIVE, issuer="i", audience="a", issued_at=1, include_jti=True)
    second = rfc9701_claims(ACTIVE, issuer="i", audience="a", issued_at=1, include_jti=True)
    assert first["jti"] != second["jti"] and len(first["jti"]) >= 16


def test_draft08_claims_override_token_members() -> None:
    """draft-08: the members flat, with iss, aud and iat replaced by ours."""
    claims = draft08_claims(ACTIVE, issuer="https://as", audience="rs", issued_at=10)
    assert claims == {**ACTIVE, "iss": "https://as", "aud": "rs", "iat": 10}


def test_draft08_inactive() -> None:
    """draft-08 inactive: active false plus iss, aud, iat; nothing else."""
    claims = draft08_claims({"active": False, "sub": "s"}, issuer="i", audience="a", issued_at=2)
    assert claims == {"active": False, "iss": "i", "aud": "a", "iat": 2}


def test_build_claims_dispatches_on_format() -> None:
    """build_claims gives the RFC 9701 or draft-08 shape."""
    kwargs = {"issuer": "i", "audience": "a", "issued_at": 1, "include_jti": False}
    assert "token_introspection" in build_claims(Format.RFC9701, ACTIVE, **kwargs)
    assert "token_introspection" not in build_claims(Format.DRAFT08, ACTIVE, **kwargs)


@pytest.mark.parametrize(
    "body",
    [b"", b"null", b"[]", b'"x"', b"{}", b'{"active": null}', b'{"active": "false"}',
     b'{"active": 0}', b'{"active": true, "n": Infinity}', b"\xff\xfe", b"{" * 100_000],
)  # fmt: skip
def test_parse_refuses_non_introspection_objects(body: bytes) -> None:
    """Only a JSON object with a boolean active is an introspection object."""
    with pytest.raises(BadUpstreamAnswer):
        parse_introspection_object(body)


def test_encode_refuses_lone_surrogates() -> None:
    """A string UTF-8 cannot hold is a bad upstream answer, not a crash."""
    obj = parse_introspection_object(b'{"active": true, "x": "\\udc00"}')
    with pytest.raises(BadUpstreamAnswer):
        encode_claims(obj)


def test_encode_is_compact_utf8() -> None:
    """Claims are compact UTF-8 JSON."""
    assert encode_claims({"a": "é", "b": [1, 2]}) == '{"a":"é","b":[1,2]}'.encode()


@pytest.mark.parametrize("alg", SIGNING_ALGS)
def test_every_alg_verifies_with_pyjwt(alg: str) -> None:
    """Each supported algorithm produces a compact JWS that PyJWT verifies with the public key."""
    ring = parse_key_ring(
        private_jwks(alg).encode(), active_kid=None, typ="token-introspection+jwt", source="t"
    )
    key = ring.active
    token = key.signer.sign(b'{"iss":"i","aud":"a","iat":1}')
    header = jwt.get_unverified_header(token)
    assert header == {"alg": alg, "kid": f"{alg.lower()}-key", "typ": "token-introspection+jwt"}
    public = jwt.PyJWK(dict(key.public_jwk))
    assert jwt.decode(token, public.key, algorithms=[alg], audience="a") == {
        "iss": "i", "aud": "a", "iat": 1,
    }  # fmt: skip
    tampered = token[:-6] + (b"AAAAAA" if token[-6:] != b"AAAAAA" else b"BBBBBB")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(tampered, public.key, algorithms=[alg], audience="a")
    assert "d" not in json.loads(ring.jwks_json)["keys"][0]
