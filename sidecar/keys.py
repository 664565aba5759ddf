"""Signing keys: load the key file, refuse unsafe keys, publish the public JWK Set (SPEC §6)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jwcrypto import jwk
from jwcrypto.common import JWException

from sidecar.encoding import rsa_modulus_bits
from sidecar.tokens import Signer

# RFC 7518 §3.1 and RFC 8037 §3.1; symmetric (HS*) and "none" are refused on purpose: a
# shared-secret signature is not non-repudiable, and "none" is no signature at all.
SIGNING_ALGS = (
    "RS256", "RS384", "RS512",
    "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512",
    "EdDSA",
)  # fmt: skip

_EC_CURVE_ALG = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}

# RFC 7517 §4 and RFC 7518 §6: the members that make a JWK private. Never published (SPEC §9).
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class KeyFileError(Exception):
    """The key file cannot be used; the message says why, without key material."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One private key of the key file, ready to sign."""

    kid: str
    alg: str
    signer: Signer
    public_jwk: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class KeyRing:
    """Every key of the key file, the active one first in mind, and the public JWK Set bytes."""

    keys: tuple[SigningKey, ...]
    active: SigningKey
    jwks_json: bytes

    def for_alg(self, alg: str) -> SigningKey | None:
        """The key that signs with ``alg``: the active key if it does, else the first that does."""
        if self.active.alg == alg:
            return self.active
        return next((key for key in self.keys if key.alg == alg), None)

    @property
    def algs(self) -> list[str]:
        """The signing algorithms on offer, in key-file order, each once."""
        return list(dict.fromkeys(key.alg for key in self.keys))


def load_key_ring(path: Path, *, active_kid: str | None, typ: str) -> KeyRing:
    """Read and check the key file at ``path``; the active key is ``active_kid`` or the first."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_key_ring(raw, active_kid=active_kid, typ=typ, source=str(path))


def parse_key_ring(raw: bytes, *, active_kid: str | None, typ: str, source: str) -> KeyRing:
    """Build a ``KeyRing`` from the bytes of a private JWK Set (JSON) or a PEM private key."""
    looks_like_json = raw.lstrip()[:1] in (b"{", b"[")
    jwks = _parse_jwks(raw, source) if looks_like_json else [_parse_pem(raw, source)]
    if not jwks:
        raise KeyFileError(f"{source}: no keys in the file")
    keys: list[SigningKey] = []
    for index, key in enumerate(jwks):
        keys.append(_signing_key(key, typ, f"{source}: key {index}"))
    kids = [key.kid for key in keys]
    duplicates = sorted({kid for kid in kids if kids.count(kid) > 1})
    if duplicates:
        raise KeyFileError(f"{source}: duplicate kid {', '.join(duplicates)}")
    if active_kid is None:
        active = keys[0]
    else:
        found = next((key for key in keys if key.kid == active_kid), None)
        if found is None:
            raise KeyFileError(f"{source}: no key with kid {active_kid!r} (signing.kid)")
        active = found
    public_set = {"keys": [dict(key.public_jwk) for key in keys]}
    return KeyRing(tuple(keys), active, json.dumps(public_set, separators=(",", ":")).encode())


def _parse_jwks(raw: bytes, source: str) -> list[jwk.JWK]:
    """The keys of a JWK Set document, or of a single JWK."""
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise KeyFileError(f"{source}: not valid JSON") from None
    if not isinstance(document, dict):
        raise KeyFileError(f"{source}: expected a JWK Set object")
    members = document.get("keys", [document])
    if not isinstance(members, list):
        raise KeyFileError(f"{source}: 'keys' must be a list")
    parsed = []
    for index, member in enumerate(members):
        if not isinstance(member, dict):
            raise KeyFileError(f"{source}: key {index} is not a JSON object")
        if member.get("kty") == "oct":
            raise KeyFileError(f"{source}: key {index} is symmetric (kty oct); use RSA, EC or OKP")
        try:
            parsed.append(jwk.JWK(**member))
        except (JWException, ValueError, TypeError) as exc:
            raise KeyFileError(f"{source}: key {index} is not a valid JWK ({exc})") from None
    return parsed


def _parse_pem(raw: bytes, source: str) -> jwk.JWK:
    """A PEM private key (PKCS#8 or traditional, unencrypted)."""
    if b"PRIVATE KEY" not in raw:
        raise KeyFileError(f"{source}: neither a JWK Set (JSON) nor a PEM private key")
    try:
        return jwk.JWK.from_pem(raw)
    except (JWException, ValueError, TypeError) as exc:
        raise KeyFileError(f"{source}: cannot load the PEM private key ({exc})") from None


def _signing_key(key: jwk.JWK, typ: str, where: str) -> SigningKey:
    """Check one JWK and make its signer."""
    exported: dict[str, Any] = json.loads(key.export(private_key=False))
    kty = exported.get("kty")
    if kty == "oct":
        raise KeyFileError(f"{where} is symmetric (kty oct); use RSA, EC or OKP")
    if not key.has_private:
        raise KeyFileError(f"{where} has no private part; the key file must hold private keys")
    if key.get("use") not in (None, "sig"):
        raise KeyFileError(f"{where} is marked use={key.get('use')!r}; signing keys need use=sig")
    alg = key.get("alg") or _default_alg(exported, where)
    if alg not in SIGNING_ALGS:
        raise KeyFileError(f"{where} has alg {alg!r}; supported: {', '.join(SIGNING_ALGS)}")
    _check_alg_fits(alg, exported, where)
    kid = key.get("kid") or key.thumbprint()
    public = {**exported, "kid": kid, "alg": alg, "use": "sig"}
    for member in PRIVATE_MEMBERS:
        public.pop(member, None)
    signer = Signer(key.get_op_key("sign"), alg=alg, kid=kid, typ=typ)
    return SigningKey(kid=kid, alg=alg, signer=signer, public_jwk=public)


def _default_alg(exported: Mapping[str, Any], where: str) -> str:
    """The algorithm a key without ``alg`` signs with: RS256, ES256/384/512 by curve, EdDSA."""
    kty, crv = exported.get("kty"), exported.get("crv")
    if kty == "RSA":
        return "RS256"
    if kty == "EC" and crv in _EC_CURVE_ALG:
        return _EC_CURVE_ALG[crv]
    if kty == "OKP" and crv == "Ed25519":
        return "EdDSA"
    raise KeyFileError(f"{where}: unsupported key type {kty} {crv or ''}".rstrip())


def _check_alg_fits(alg: str, exported: Mapping[str, Any], where: str) -> None:
    """Refuse an ``alg`` that the key cannot make (RFC 7518 §3.4: ES256 needs P-256, ...)."""
    kty, crv = exported.get("kty"), exported.get("crv")
    fits = (
        (alg[:2] in ("RS", "PS") and kty == "RSA")
        or (alg.startswith("ES") and kty == "EC" and _EC_CURVE_ALG.get(str(crv)) == alg)
        or (alg == "EdDSA" and kty == "OKP" and crv == "Ed25519")
    )
    if not fits:
        raise KeyFileError(f"{where}: alg {alg} does not fit a {kty} {crv or ''} key".rstrip())
    if kty == "RSA":
        bits = rsa_modulus_bits(str(exported.get("n", "")))
        if bits < 2048:
            # RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used".
            raise KeyFileError(f"{where}: RSA key of {bits} bits; at least 2048 are required")


def generate_key(alg: str, *, kid: str | None = None, bits: int = 2048) -> jwk.JWK:
    """A new private key for ``alg``; its kid is ``kid`` or the RFC 7638 thumbprint."""
    if alg not in SIGNING_ALGS:
        raise KeyFileError(f"unsupported alg {alg!r}; supported: {', '.join(SIGNING_ALGS)}")
    if alg[:2] in ("RS", "PS"):
        if bits < 2048:
            raise KeyFileError(f"RSA keys need at least 2048 bits, not {bits}")
        key = jwk.JWK.generate(kty="RSA", size=bits)
    elif alg == "EdDSA":
        key = jwk.JWK.generate(kty="OKP", crv="Ed25519")
    else:
        crv = next(c for c, a in _EC_CURVE_ALG.items() if a == alg)
        key = jwk.JWK.generate(kty="EC", crv=crv)
    members: dict[str, Any] = json.loads(key.export(private_key=True))
    members.update(alg=alg, use="sig", kid=kid or key.thumbprint())
    return jwk.JWK(**members)


def key_set_json(keys: Sequence[jwk.JWK], *, private: bool) -> str:
    """A JWK Set document for ``keys``, pretty-printed for a human to store."""
    exported = [json.loads(key.export(private_key=private)) for key in keys]
    return json.dumps({"keys": exported}, indent=2)


def client_signing_keys(
    ring: KeyRing, client_algs: Mapping[str, str], *, source: str
) -> dict[str, SigningKey]:
    """The key each client's ``signed_response_alg`` picks (RFC 9701 §6), or ``KeyFileError``.

    Resolved once per key ring, so an answer costs a dict lookup, not a search.
    """
    chosen: dict[str, SigningKey] = {}
    missing: list[str] = []
    for client_id, alg in client_algs.items():
        key = ring.for_alg(alg)
        if key is None:
            missing.append(f"clients.{client_id}.signed_response_alg ({alg})")
        else:
            chosen[client_id] = key
    if missing:
        raise KeyFileError(
            f"{source}: no key for {', '.join(missing)}; keys in the file sign with "
            f"{', '.join(ring.algs)}"
        )
    return chosen


class KeyStore:
    """The key ring in use, loaded from ``signing.keys_file``; swapped whole, never edited."""

    def __init__(
        self,
        path: Path,
        *,
        active_kid: str | None,
        typ: str,
        client_algs: Mapping[str, str] | None = None,
    ) -> None:
        self.path = path
        self.active_kid = active_kid
        self.typ = typ
        self.client_algs: Mapping[str, str] = dict(client_algs or {})
        self._ring: KeyRing | None = None
        self._client_keys: dict[str, SigningKey] = {}

    @property
    def ring(self) -> KeyRing:
        """The keys in use; ``load`` must have succeeded once."""
        if self._ring is None:
            raise RuntimeError("signing keys are not loaded")
        return self._ring

    @property
    def loaded(self) -> bool:
        """Whether a key ring is in use."""
        return self._ring is not None

    def signing_key(self, caller_id: str) -> SigningKey:
        """The key for ``caller_id``: as its ``signed_response_alg`` asks, else the active one."""
        return self._client_keys.get(caller_id) or self.ring.active

    def install(self, ring: KeyRing) -> None:
        """Put ``ring`` in use if it has a key for every client's alg; else ``KeyFileError``."""
        client_keys = client_signing_keys(ring, self.client_algs, source=str(self.path))
        # Both swapped in one step: no await in between, so no answer sees a mix.
        self._ring, self._client_keys = ring, client_keys

    def load(self) -> KeyRing:
        """Read the key file and put its keys in use; on failure the old ring stays."""
        ring = load_key_ring(self.path, active_kid=self.active_kid, typ=self.typ)
        self.install(ring)
        return ring
