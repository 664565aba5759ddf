"""The resource server's side of RFC 9701: verify a JWT introspection answer, without HTTP.

What a resource server must check (RFC 9701 §5, §8.1; RFC 8725): the signature against the
AS's keys with an allow-listed algorithm, ``typ``, ``iss``, ``aud``, a fresh ``iat``, and,
for a nested JWT, the decryption with its own key (RFC 7519 §5.2). Only then is the
``token_introspection`` object worth reading.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jwcrypto import jwe
from jwcrypto.common import JWException

from sidecar.clienterrors import (
    BadSignature,
    DecryptionFailed,
    DisallowedAlgorithm,
    MalformedResponse,
    StaleResponse,
    UnexpectedType,
    UnknownKey,
    WrongAudience,
    WrongIssuer,
)
from sidecar.compact import (
    b64decode,
    bare_media_type,
    compact_text,
    json_object,
    same_typ,
    show,
    signature_ok,
)
from sidecar.keys import SIGNING_ALGS
from sidecar.keyset import KeySet

RFC9701_TYP = "token-introspection+jwt"

# What the sidecar signs with, plus "Ed25519", the fully-specified name RFC 9864 gives EdDSA
# over Ed25519 (node-oidc-provider can sign with it). HS* and "none" are never accepted: an
# AS's public key must not double as an HMAC secret (RFC 8725 §2.1, §3.1).
SUPPORTED_ALGS = (*SIGNING_ALGS, "Ed25519")

# RFC 7518 §4: asymmetric key management only (the resource server holds a private key);
# RSA1_5 is left out on purpose (RFC 8725 §3.2: padding-oracle attacks).
SUPPORTED_ENCRYPTION_ALGS = (
    "RSA-OAEP", "RSA-OAEP-256", "ECDH-ES", "ECDH-ES+A128KW", "ECDH-ES+A192KW", "ECDH-ES+A256KW",
)  # fmt: skip
SUPPORTED_ENCRYPTION_ENCS = (
    "A128CBC-HS256", "A192CBC-HS384", "A256CBC-HS512", "A128GCM", "A192GCM", "A256GCM",
)  # fmt: skip

DEFAULT_MAX_AGE = 60.0
DEFAULT_LEEWAY = 5.0


@dataclass(frozen=True, slots=True)
class VerificationPolicy:
    """What a resource server accepts; built once, validated at construction."""

    issuer: str
    audience: str
    algorithms: tuple[str, ...] = SUPPORTED_ALGS
    typ: str = RFC9701_TYP
    max_age: float | None = DEFAULT_MAX_AGE
    leeway: float = DEFAULT_LEEWAY
    decrypt_keys: KeySet = field(default_factory=KeySet.empty)
    encryption_algs: tuple[str, ...] = SUPPORTED_ENCRYPTION_ALGS
    encryption_encs: tuple[str, ...] = SUPPORTED_ENCRYPTION_ENCS
    require_encryption: bool = False
    draft08: bool = False

    def __post_init__(self) -> None:
        """Refuse a policy that could never be safe: unknown or symmetric algorithms."""
        _check_subset("algorithms", self.algorithms, SUPPORTED_ALGS)
        _check_subset("encryption_algs", self.encryption_algs, SUPPORTED_ENCRYPTION_ALGS)
        _check_subset("encryption_encs", self.encryption_encs, SUPPORTED_ENCRYPTION_ENCS)
        if not self.issuer or not self.audience:
            raise ValueError("issuer and audience are required")
        if self.max_age is not None and not self.max_age >= 0:
            raise ValueError("max_age must be zero or more seconds, or None")
        if not self.leeway >= 0:
            raise ValueError("leeway must be zero or more seconds")
        if self.require_encryption and not self.decrypt_keys:
            raise ValueError("require_encryption needs decrypt_keys")


def _check_subset(name: str, chosen: Sequence[str], supported: Sequence[str]) -> None:
    """Raise ``ValueError`` unless ``chosen`` is a non-empty subset of ``supported``."""
    if isinstance(chosen, str) or not chosen:
        raise ValueError(f"{name}: give a non-empty list of algorithm names")
    unknown = [name for name in chosen if name not in supported]
    if unknown:
        raise ValueError(f"{name}: not supported: {', '.join(unknown)}")


@dataclass(frozen=True, slots=True)
class VerifiedResponse:
    """A verified introspection answer: the JWS header, all claims, and the introspection."""

    header: dict[str, Any]
    claims: dict[str, Any]
    token_introspection: dict[str, Any]
    encryption_header: dict[str, Any] | None = None

    @property
    def active(self) -> bool:
        """Whether the AS says the token is active (RFC 7662 §2.2)."""
        return self.token_introspection.get("active") is True


@dataclass(frozen=True, slots=True)
class OpenedJws:
    """A JWS whose outer checks passed (decryption, ``alg``, ``typ``); signature not yet."""

    header: dict[str, Any]
    signing_input: bytes
    payload: bytes
    signature: bytes
    encryption_header: dict[str, Any] | None

    @property
    def alg(self) -> str:
        """The JWS algorithm, already on the allow-list."""
        return str(self.header["alg"])

    @property
    def kid(self) -> str | None:
        """The key id, if the header names one."""
        kid = self.header.get("kid")
        return kid if isinstance(kid, str) else None


def verify_introspection_jwt(
    token: str | bytes,
    jwks: KeySet | Mapping[str, Any],
    policy: VerificationPolicy,
    *,
    now: float | None = None,
) -> VerifiedResponse:
    """Verify one introspection JWT (JWS or nested JWE) against the AS's JWK Set.

    Raises an ``IntrospectionError`` subclass naming the first check that failed, and
    ``ValueError`` when ``jwks`` is not a JWK Set.
    """
    keys = jwks if isinstance(jwks, KeySet) else KeySet.from_document(jwks)
    return check_jws(open_response(token, policy), keys, policy, now=now)


def open_response(token: str | bytes, policy: VerificationPolicy) -> OpenedJws:
    """Decrypt if needed and check everything that comes before the signature."""
    text = compact_text(token)
    parts = text.split(".")
    encryption_header = None
    if len(parts) == 5:
        encryption_header, text = _decrypt(text, parts, policy)
        parts = text.split(".")
        if len(parts) != 3:
            raise MalformedResponse("the encrypted answer does not hold a compact JWS")
    elif len(parts) == 3:
        if policy.require_encryption:
            raise DecryptionFailed("the answer is not encrypted, but encryption is required")
    else:
        raise MalformedResponse("not a compact JWS or JWE")
    header = json_object(b64decode(parts[0], "header"), "header")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in policy.algorithms:
        # RFC 8725 §3.1: the algorithm comes from the allow-list, never from the token.
        raise DisallowedAlgorithm(f"JWS alg {show(alg)} is not allowed")
    if "crit" in header:
        # RFC 7515 §4.1.11: extensions we do not understand make the JWS invalid.
        raise MalformedResponse("the JWS header has critical extensions (crit)")
    if not same_typ(header.get("typ"), policy.typ):
        # RFC 9701 §8.1: the typ keeps other JWTs from passing for introspection answers.
        raise UnexpectedType(f"JWS typ {show(header.get('typ'))} is not {policy.typ!r}")
    if "kid" in header and not isinstance(header["kid"], str):
        raise MalformedResponse("the JWS kid is not a string")
    payload = b64decode(parts[1], "payload")
    signature = b64decode(parts[2], "signature")
    return OpenedJws(
        header=header,
        # Safe to encode: b64decode let only base64url characters through.
        signing_input=f"{parts[0]}.{parts[1]}".encode("ascii"),
        payload=payload,
        signature=signature,
        encryption_header=encryption_header,
    )


def check_jws(
    opened: OpenedJws, keys: KeySet, policy: VerificationPolicy, *, now: float | None = None
) -> VerifiedResponse:
    """Verify the signature of an opened JWS with ``keys``, then its claims."""
    candidates = keys.verification_keys(opened.alg, opened.kid)
    if not candidates:
        if opened.kid is not None and not keys.has_kid(opened.kid):
            raise UnknownKey(f"the AS has no key with kid {show(opened.kid)}")
        raise BadSignature(f"no key of the AS fits alg {opened.alg}")
    if not any(
        signature_ok(key, opened.alg, opened.signing_input, opened.signature) for key in candidates
    ):
        raise BadSignature("the signature does not verify")
    claims = json_object(opened.payload, "payload")
    _check_claims(claims, policy, time.time() if now is None else now)
    if opened.encryption_header is not None:
        _check_replicated_claims(opened.encryption_header, claims)
    # draft-08 §5: the members are flat; RFC 9701 §5: they sit in token_introspection.
    introspection = dict(claims) if policy.draft08 else claims.get("token_introspection")
    if not isinstance(introspection, dict):
        raise MalformedResponse("token_introspection is missing or not an object")
    if not isinstance(introspection.get("active"), bool):
        raise MalformedResponse("the introspection has no boolean 'active' member")
    return VerifiedResponse(opened.header, claims, introspection, opened.encryption_header)


def _check_claims(claims: Mapping[str, Any], policy: VerificationPolicy, now: float) -> None:
    """``iss``, ``aud``, ``iat`` (RFC 9701 §5) and, in RFC 9701 shape, ``exp``/``nbf``."""
    if claims.get("iss") != policy.issuer:
        raise WrongIssuer(f"iss {show(claims.get('iss'))} is not {policy.issuer!r}")
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    # RFC 7519 §4.1.3: aud is one string or an array of strings, one of which must be ours.
    if policy.audience not in [a for a in audiences if isinstance(a, str)]:
        raise WrongAudience(f"aud {show(audience)} does not name {policy.audience!r}")
    issued_at = _numeric_date(claims, "iat")
    if issued_at is None:
        raise MalformedResponse("iat is missing")
    if issued_at > now + policy.leeway:
        raise StaleResponse("iat is in the future")
    if policy.max_age is not None and now - issued_at > policy.max_age + policy.leeway:
        raise StaleResponse(f"issued {int(now - issued_at)} s ago, more than {policy.max_age:g} s")
    if policy.draft08:
        return  # draft-08 §5: a flat exp and nbf are the token's, not the answer's
    # RFC 9701 §5 discourages them, but an answer that carries them must honour them.
    expires = _numeric_date(claims, "exp")
    if expires is not None and now > expires + policy.leeway:
        raise StaleResponse("the answer has expired (exp)")
    not_before = _numeric_date(claims, "nbf")
    if not_before is not None and not_before > now + policy.leeway:
        raise StaleResponse("the answer is not valid yet (nbf)")


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    """A NumericDate claim (RFC 7519 §2), None when absent; anything else is malformed."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MalformedResponse(f"{name} is not a number of seconds")
    return float(value)


def _check_replicated_claims(jwe_header: Mapping[str, Any], claims: Mapping[str, Any]) -> None:
    """RFC 7519 §5.3: claims copied into the JWE header must match the signed ones."""
    for name in ("iss", "aud", "sub"):
        if name in jwe_header and jwe_header[name] != claims.get(name):
            raise MalformedResponse(f"the JWE header's {name} differs from the signed claims")


def _decrypt(text: str, parts: list[str], policy: VerificationPolicy) -> tuple[dict[str, Any], str]:
    """Decrypt a nested JWT (RFC 7519 §5.2, RFC 9701 §5); its header and the inner JWS."""
    header = json_object(b64decode(parts[0], "JWE header"), "JWE header")
    alg, enc = header.get("alg"), header.get("enc")
    if not isinstance(alg, str) or alg not in policy.encryption_algs:
        raise DisallowedAlgorithm(f"JWE alg {show(alg)} is not allowed")
    if not isinstance(enc, str) or enc not in policy.encryption_encs:
        raise DisallowedAlgorithm(f"JWE enc {show(enc)} is not allowed")
    if "zip" in header:
        # RFC 8725 §3.6: compression before encryption leaks; it also invites zip bombs.
        raise MalformedResponse("compressed JWE (zip) is refused")
    if "crit" in header:
        raise MalformedResponse("the JWE header has critical extensions (crit)")
    cty = header.get("cty")
    if not isinstance(cty, str) or bare_media_type(cty) != "jwt":
        # RFC 7519 §5.2: a nested JWT says so with cty "JWT".
        raise UnexpectedType(f"JWE cty {show(cty)} is not 'JWT'")
    kid = header.get("kid") if isinstance(header.get("kid"), str) else None
    candidates = policy.decrypt_keys.decryption_keys(alg, kid)
    if not candidates:
        raise DecryptionFailed(f"no decryption key fits JWE alg {alg}")
    for key in candidates:
        envelope = jwe.JWE()
        envelope.allowed_algs = [alg, enc]
        try:
            envelope.deserialize(text, key=key)
        except (JWException, ValueError, TypeError):
            continue
        try:
            return header, bytes(envelope.payload).decode("ascii")
        except UnicodeDecodeError:
            raise MalformedResponse("the decrypted payload is not a compact JWS") from None
    raise DecryptionFailed("the answer does not decrypt with the resource server's key")
