"""Base64url (RFC 7515 §2) and the JWK integer members built on it (RFC 7518 §6.3)."""

from __future__ import annotations

import base64


def b64url_encode(data: bytes) -> bytes:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def b64url_decode(segment: str) -> bytes:
    """Base64url with its padding left off; ``binascii.Error`` when it is not base64."""
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def rsa_modulus_bits(modulus: str) -> int:
    """The size in bits of an RSA JWK's ``n`` member."""
    return int.from_bytes(b64url_decode(modulus), "big").bit_length()
