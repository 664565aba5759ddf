"""JWK Sets on the resource server's side: which key may verify or decrypt what (RFC 7517)."""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jwcrypto import jwk
from jwcrypto.common import JWException

from sidecar.encoding import rsa_modulus_bits

# RFC 7518 §3.4: each ECDSA algorithm has exactly one curve.
_ES_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
# RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used with these algorithms."
MIN_RSA_BITS = 2048
# RFC 7517 §4.3: the operations under which a key may decrypt a JWE.
_DECRYPT_OPS = frozenset({"decrypt", "unwrapKey", "deriveKey", "deriveBits"})


@dataclass(frozen=True, slots=True)
class _Entry:
    """One usable JWK with the members the selection rules look at."""

    key: Any  # jwcrypto.jwk.JWK; jwcrypto ships no type information
    kid: str | None
    kty: str
    crv: str | None
    alg: str | None
    use: str | None
    key_ops: frozenset[str] | None
    rsa_bits: int
    public_key: Any  # the ``cryptography`` key that verifies, or None when it may not


class KeySet:
    """A parsed JWK Set; keys it cannot use are left out, as RFC 7517 §5 advises."""

    __slots__ = ("_entries",)

    def __init__(self, entries: Sequence[_Entry] = ()) -> None:
        """Hold already-parsed entries; build one with ``from_document`` or ``from_json``."""
        self._entries = tuple(entries)

    @classmethod
    def empty(cls) -> KeySet:
        """A set without keys."""
        return cls()

    @classmethod
    def from_json(cls, raw: str | bytes) -> KeySet:
        """Parse a JWK Set (or one JWK) from JSON text; ``ValueError`` if it is neither."""
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ValueError("not JSON") from None
        if not isinstance(document, dict):
            raise ValueError("not a JWK Set: expected a JSON object")
        return cls.from_document(document)

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> KeySet:
        """Parse a JWK Set document ``{"keys": [...]}`` or a single JWK.

        Members that are not JSON objects, fail to parse, or are symmetric are skipped
        (RFC 7517 §5: "ignore JWKs ... that use "kty" values that are not understood").
        """
        if not isinstance(document, Mapping):
            raise ValueError("not a JWK Set: expected a JSON object")
        members = document.get("keys", [document])
        if not isinstance(members, list):
            raise ValueError("not a JWK Set: 'keys' is not a list")
        entries = [entry for member in members if (entry := _entry(member)) is not None]
        return cls(entries)

    def __len__(self) -> int:
        """How many usable keys the set holds."""
        return len(self._entries)

    def has_kid(self, kid: str) -> bool:
        """Whether a key with this ``kid`` is in the set."""
        return any(entry.kid == kid for entry in self._entries)

    @property
    def kids(self) -> list[str]:
        """The key ids in the set, in order."""
        return [entry.kid for entry in self._entries if entry.kid is not None]

    def verification_keys(self, alg: str, kid: str | None) -> list[Any]:
        """The public keys (``cryptography`` objects) that may verify a JWS with ``alg``.

        A ``kid`` in the JWS header must match the key's exactly; a key that names an
        ``alg``, ``use`` or ``key_ops`` must allow this use (RFC 7517 §4.2 to §4.4). An
        RSA key must have at least 2048 bits (RFC 7518 §3.3).
        """
        found = []
        for entry in self._entries:
            if kid is not None and entry.kid != kid:
                continue
            if entry.public_key is None:
                continue
            if entry.alg is not None and _alg_name(entry.alg) != _alg_name(alg):
                continue
            if _fits_signing(alg, entry):
                found.append(entry.public_key)
        return found

    def decryption_keys(self, alg: str, kid: str | None) -> list[Any]:
        """The private JWKs that may decrypt a JWE with key management ``alg``."""
        found = []
        for entry in self._entries:
            if not entry.key.has_private:
                continue
            if kid is not None and entry.kid is not None and entry.kid != kid:
                continue
            if entry.use not in (None, "enc"):
                continue
            if entry.key_ops is not None and not entry.key_ops & _DECRYPT_OPS:
                continue
            if entry.alg is not None and entry.alg != alg:
                continue
            if _fits_decryption(alg, entry):
                found.append(entry.key)
        return found


def _alg_name(alg: str) -> str:
    """RFC 9864 names EdDSA over Ed25519 "Ed25519"; treat a key marked either way alike."""
    return "EdDSA" if alg == "Ed25519" else alg


def _fits_signing(alg: str, entry: _Entry) -> bool:
    """Whether the key's type and size can make ``alg`` signatures (RFC 7518 §3, RFC 8037)."""
    if alg[:2] in ("RS", "PS"):
        return entry.kty == "RSA" and entry.rsa_bits >= MIN_RSA_BITS
    if alg in _ES_CURVES:
        return entry.kty == "EC" and entry.crv == _ES_CURVES[alg]
    if alg in ("EdDSA", "Ed25519"):
        return entry.kty == "OKP" and entry.crv == "Ed25519"
    return False


def _fits_decryption(alg: str, entry: _Entry) -> bool:
    """Whether the key's type can unwrap a JWE with key management ``alg`` (RFC 7518 §4)."""
    if alg.startswith("RSA-OAEP"):
        return entry.kty == "RSA"
    if alg.startswith("ECDH-ES"):
        return entry.kty == "EC" or (entry.kty == "OKP" and entry.crv in ("X25519", "X448"))
    return False


def _entry(member: Any) -> _Entry | None:
    """Parse one JWK Set member, or None when it is unusable here."""
    if not isinstance(member, dict) or member.get("kty") in (None, "oct"):
        return None
    try:
        key = jwk.JWK(**member)
        rsa_bits = rsa_modulus_bits(str(member["n"])) if member["kty"] == "RSA" else 0
    except (JWException, ValueError, TypeError, binascii.Error):
        return None
    key_ops = member.get("key_ops")
    if key_ops is not None and not (
        isinstance(key_ops, list) and all(isinstance(op, str) for op in key_ops)
    ):
        return None
    use = _optional_str(member, "use")
    public_key = None
    # RFC 7517 §4.2, §4.3: a key marked for encryption, or not for verify, never verifies.
    if use in (None, "sig") and (key_ops is None or "verify" in key_ops):
        try:
            public_key = key.get_op_key("verify")
        except (JWException, ValueError, TypeError):
            public_key = None
    return _Entry(
        key=key,
        kid=_optional_str(member, "kid"),
        kty=str(member["kty"]),
        crv=_optional_str(member, "crv"),
        alg=_optional_str(member, "alg"),
        use=use,
        key_ops=frozenset(key_ops) if key_ops is not None else None,
        rsa_bits=rsa_bits,
        public_key=public_key,
    )


def _optional_str(member: Mapping[str, Any], name: str) -> str | None:
    """A string member, or None when absent or not a string."""
    value = member.get(name)
    return value if isinstance(value, str) else None
