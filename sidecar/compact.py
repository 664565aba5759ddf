"""Compact JOSE serialization on the receiving side: strict decoding and signature checks."""

from __future__ import annotations

import binascii
import json
import math
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from sidecar.clienterrors import MalformedResponse
from sidecar.encoding import b64url_decode

MAX_JWT_BYTES = 1_048_576

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_B64URL_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def same_typ(found: Any, expected: str) -> bool:
    """RFC 7515 §4.1.9: compare case-insensitively, with or without ``application/``."""
    if not isinstance(found, str):
        return False
    return bare_media_type(found) == bare_media_type(expected)


def bare_media_type(value: str) -> str:
    """The media type lower-cased, without an ``application/`` prefix."""
    value = value.strip().lower()
    return value.removeprefix("application/")


def signature_ok(public_key: Any, alg: str, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` over ``data`` verifies with ``public_key`` under JWS ``alg``."""
    try:
        if alg in ("EdDSA", "Ed25519"):
            if not isinstance(public_key, ed25519.Ed25519PublicKey):
                return False
            public_key.verify(signature, data)
            return True
        hash_algorithm = _HASHES[alg[2:]]()
        if alg.startswith("RS") and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
            return True
        if alg.startswith("PS") and isinstance(public_key, rsa.RSAPublicKey):
            # RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash output.
            pss = padding.PSS(padding.MGF1(hash_algorithm), hash_algorithm.digest_size)
            public_key.verify(signature, data, pss, hash_algorithm)
            return True
        if alg.startswith("ES") and isinstance(public_key, ec.EllipticCurvePublicKey):
            # RFC 7518 §3.4: R and S as fixed-size big-endian octets, not DER.
            size = math.ceil(public_key.curve.key_size / 8)
            if len(signature) != 2 * size:
                return False
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            public_key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hash_algorithm))
            return True
    except (InvalidSignature, ValueError):
        return False
    return False


def compact_text(token: str | bytes) -> str:
    """The compact serialization as text, within the size limit."""
    if len(token) > MAX_JWT_BYTES:
        raise MalformedResponse(f"the answer is over {MAX_JWT_BYTES} bytes")
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedResponse("the answer is not ASCII") from None
    return token.strip()


def b64decode(segment: str, what: str) -> bytes:
    """Strict base64url without padding (RFC 7515 §2)."""
    if not set(segment) <= _B64URL_ALPHABET or len(segment) % 4 == 1:
        raise MalformedResponse(f"the {what} is not base64url")
    try:
        return b64url_decode(segment)
    except (binascii.Error, ValueError):
        raise MalformedResponse(f"the {what} is not base64url") from None


def json_object(raw: bytes, what: str) -> dict[str, Any]:
    """A JSON object with unique member names (RFC 7515 §4, RFC 7519 §4)."""
    try:
        document = json.loads(raw, object_pairs_hook=_unique_members)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise MalformedResponse(f"the {what} is not a JSON object") from None
    if not isinstance(document, dict):
        raise MalformedResponse(f"the {what} is not a JSON object")
    return document


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Refuse duplicate member names instead of silently keeping the last one."""
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("duplicate member name")
    return document


def show(value: Any) -> str:
    """A short, printable rendering of an untrusted header or claim value for a message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
