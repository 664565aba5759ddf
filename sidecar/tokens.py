"""The JWT: claims in the RFC 9701 and draft-08 shapes, and a lean compact-JWS signer (SPEC §6)."""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from sidecar.encoding import b64url_encode
from sidecar.errors import BadUpstreamAnswer
from sidecar.negotiate import Format

IntrospectionObject = dict[str, Any]

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}


def _reject_constant(name: str) -> None:
    """JSON has no NaN or Infinity (RFC 8259 §6); Python's parser would accept them."""
    raise ValueError(f"{name} is not JSON")


def parse_introspection_object(body: bytes) -> IntrospectionObject:
    """The upstream's RFC 7662 §2.2 answer, or ``BadUpstreamAnswer`` if it is not one.

    Only a JSON object with a boolean ``active`` is ever signed (SPEC §9).
    """
    try:
        document = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadUpstreamAnswer("the upstream answer is not JSON") from None
    if not isinstance(document, dict):
        raise BadUpstreamAnswer("the upstream answer is not a JSON object")
    if not isinstance(document.get("active"), bool):
        raise BadUpstreamAnswer("the upstream answer has no boolean 'active' member")
    return document


def rfc9701_claims(
    introspection_object: IntrospectionObject,
    *,
    issuer: str,
    audience: str,
    issued_at: int,
    include_jti: bool = False,
) -> dict[str, Any]:
    """RFC 9701 §5 claims: ``iss``, ``aud``, ``iat`` and the object in ``token_introspection``.

    Never a top-level ``sub`` or ``exp`` (RFC 9701 §5, §8.1): the answer must not pass for an
    access token.
    """
    if introspection_object["active"] is not True:
        # RFC 9701 §5: for an inactive token, "MUST NOT include other members".
        introspection_object = {"active": False}
    claims: dict[str, Any] = {"iss": issuer, "aud": audience, "iat": issued_at}
    if include_jti:
        claims["jti"] = secrets.token_urlsafe(16)
    claims["token_introspection"] = introspection_object
    return claims


def draft08_claims(
    introspection_object: IntrospectionObject, *, issuer: str, audience: str, issued_at: int
) -> dict[str, Any]:
    """draft-08 §5 claims: the upstream members flat, then ``iss``, ``aud``, ``iat`` set by us."""
    if introspection_object["active"] is not True:
        # RFC 7662 §2.2: say nothing more about an inactive token.
        return {"active": False, "iss": issuer, "aud": audience, "iat": issued_at}
    return {**introspection_object, "iss": issuer, "aud": audience, "iat": issued_at}


def build_claims(
    answer_format: Format,
    introspection_object: IntrospectionObject,
    *,
    issuer: str,
    audience: str,
    issued_at: int,
    include_jti: bool,
) -> dict[str, Any]:
    """The claims of ``answer_format`` (RFC 9701 or draft-08)."""
    if answer_format is Format.DRAFT08:
        return draft08_claims(
            introspection_object, issuer=issuer, audience=audience, issued_at=issued_at
        )
    return rfc9701_claims(
        introspection_object,
        issuer=issuer,
        audience=audience,
        issued_at=issued_at,
        include_jti=include_jti,
    )


def encode_claims(claims: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON; an upstream string that UTF-8 cannot hold is a bad upstream answer."""
    try:
        return json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadUpstreamAnswer("the upstream answer holds a string that is not Unicode") from None


PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


class Signer:
    """Signs compact JWS (RFC 7515 §7.1) with one key, its protected header encoded once.

    The ``cryptography`` key is used directly: building a fresh JWS object per answer costs
    more than an ES256 signature itself.
    """

    __slots__ = ("_header_segment", "_sign", "alg", "kid")

    def __init__(self, key: PrivateKey, *, alg: str, kid: str, typ: str) -> None:
        self.alg = alg
        self.kid = kid
        header = {"alg": alg, "kid": kid, "typ": typ}
        self._header_segment = b64url_encode(json.dumps(header, separators=(",", ":")).encode())
        self._sign = _signature_function(key, alg)

    def sign(self, payload: bytes) -> bytes:
        """The compact JWS of ``payload``: header.payload.signature, ASCII bytes."""
        signing_input = self._header_segment + b"." + b64url_encode(payload)
        return signing_input + b"." + b64url_encode(self._sign(signing_input))


def _signature_function(key: PrivateKey, alg: str) -> Callable[[bytes], bytes]:
    """The JWS signature for ``alg`` (RFC 7518 §3.3 to §3.5, RFC 8037 §3.1) made with ``key``."""
    if alg == "EdDSA" and isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign
    hash_algorithm = _HASHES[alg[2:]]()
    if alg.startswith("RS") and isinstance(key, rsa.RSAPrivateKey):
        rsa_key, pkcs1 = key, padding.PKCS1v15()
        return lambda data: rsa_key.sign(data, pkcs1, hash_algorithm)
    if alg.startswith("PS") and isinstance(key, rsa.RSAPrivateKey):
        # RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash output.
        rsa_key = key
        pss = padding.PSS(mgf=padding.MGF1(hash_algorithm), salt_length=hash_algorithm.digest_size)
        return lambda data: rsa_key.sign(data, pss, hash_algorithm)
    if alg.startswith("ES") and isinstance(key, ec.EllipticCurvePrivateKey):
        ec_key, ecdsa = key, ec.ECDSA(hash_algorithm)
        size = math.ceil(key.curve.key_size / 8)

        def sign_es(data: bytes) -> bytes:
            # RFC 7518 §3.4: R and S as fixed-size big-endian octets, not DER.
            r, s = decode_dss_signature(ec_key.sign(data, ecdsa))
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")

        return sign_es
    raise ValueError(f"alg {alg} does not fit a {type(key).__name__}")
