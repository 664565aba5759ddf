"""The public encryption keys of resource servers: pick the one that fits, fetch ``jwks_uri``.

RFC 9701 §5 and §6: a resource server registers ``jwks`` or ``jwks_uri``; the sidecar encrypts
to the key that fits the client's ``encrypted_response_alg`` (RFC 7518 §4.3 RSA-OAEP needs RSA,
§4.6 ECDH-ES needs EC or X25519 (RFC 8037 §3.2), never a key marked for signatures).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from jwcrypto import jwe, jwk
from jwcrypto.common import JWException

from sidecar.encoding import rsa_modulus_bits
from sidecar.errors import EncryptionKeysUnavailable, UpstreamUnavailable
from sidecar.keys import PRIVATE_MEMBERS
from sidecar.upstream import read_limited

log = logging.getLogger(__name__)

_RSA: frozenset[tuple[str, str | None]] = frozenset({("RSA", None)})
_ECDH: frozenset[tuple[str, str | None]] = frozenset(
    {("EC", "P-256"), ("EC", "P-384"), ("EC", "P-521"), ("OKP", "X25519")}
)
# The (kty, crv) pairs each key-management algorithm can encrypt to.
KEY_TYPES: dict[str, frozenset[tuple[str, str | None]]] = {
    "RSA-OAEP": _RSA, "RSA-OAEP-256": _RSA,
    "ECDH-ES": _ECDH, "ECDH-ES+A128KW": _ECDH, "ECDH-ES+A256KW": _ECDH,
}  # fmt: skip
# RFC 7517 §4.3: the operations that let a key be used to encrypt to its holder.
_ENCRYPTING_OPS = {"encrypt", "wrapKey", "deriveKey"}

# jwks_uri caching: a fetched set is fresh for its Cache-Control max-age within these bounds,
# and a failed fetch is retried after a pause. Once a set has expired it is not used again
# until it is fetched anew: while the client's server cannot be reached, the caller gets a
# 5xx, never an answer encrypted to a key it may have withdrawn, and never a plain one.
DEFAULT_TTL = 300.0
MIN_TTL = 30.0
MAX_TTL = 86_400.0
RETRY_AFTER = 5.0
MAX_JWKS_BYTES = 262_144

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)", re.IGNORECASE)


class ClientKeyError(Exception):
    """A client's key set cannot be used; the message says why, without key material."""


@dataclass(frozen=True, slots=True)
class Recipient:
    """The client key a JWE is made for, and the protected header that names it."""

    key: jwk.JWK
    protected: str
    kid: str | None


def choose_recipient(document: Any, alg: str, enc: str) -> Recipient:
    """The key of a JWK Set that fits ``alg`` (``use: enc`` ones first), or ``ClientKeyError``."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ClientKeyError('expected a JWK Set: an object with a "keys" list')
    candidates: list[tuple[int, jwk.JWK]] = []
    for index, member in enumerate(document["keys"]):
        if not isinstance(member, dict):
            raise ClientKeyError(f"key {index} is not a JSON object")
        if PRIVATE_MEMBERS & member.keys():
            # A resource server's private key has no business here; refuse rather than hold it.
            raise ClientKeyError(f"key {index} holds private key members; give public keys only")
        if not _fits(member, alg):
            continue
        try:
            # key_ops was checked by _fits; jwcrypto would hold it to its own operation names.
            key = jwk.JWK(**{name: value for name, value in member.items() if name != "key_ops"})
        except (JWException, ValueError, TypeError) as exc:
            raise ClientKeyError(f"key {index} is not a valid JWK ({exc})") from None
        if member["kty"] == "RSA" and rsa_modulus_bits(str(member["n"])) < 2048:
            continue  # RFC 7518 §4.3: a key of 2048 bits or more MUST be used
        candidates.append((0 if member.get("use") == "enc" else 1, key))
    if not candidates:
        wanted = "RSA" if alg.startswith("RSA") else "EC P-256/384/521 or OKP X25519"
        raise ClientKeyError(
            f"no key fits {alg} (needs {wanted}, at least 2048 bits for RSA, not use=sig)"
        )
    key = min(candidates, key=lambda candidate: candidate[0])[1]
    kid = key.get("kid") if isinstance(key.get("kid"), str) else None
    header = {"alg": alg, "enc": enc, "cty": "JWT"}  # RFC 7519 §5.2: cty JWT on a nested JWT
    if kid:
        header["kid"] = kid
    recipient = Recipient(key=key, protected=json.dumps(header, separators=(",", ":")), kid=kid)
    _trial(recipient)
    return recipient


def _fits(member: dict[str, Any], alg: str) -> bool:
    """Whether a JWK may encrypt to its holder with ``alg`` (RFC 7517 §4.2 to §4.4)."""
    kty, crv = member.get("kty"), member.get("crv")
    if not isinstance(kty, str) or not isinstance(crv, str | None):
        return False
    if (kty, None if kty == "RSA" else crv) not in KEY_TYPES[alg]:
        return False
    if member.get("use") not in (None, "enc"):
        return False
    ops = member.get("key_ops")
    if isinstance(ops, list) and not _ENCRYPTING_OPS.intersection(map(str, ops)):
        return False
    return member.get("alg") in (None, alg)


def _trial(recipient: Recipient) -> None:
    """Encrypt once at load time, so a key the library cannot use fails here, not per answer."""
    try:
        trial = jwe.JWE(plaintext=b"{}", protected=recipient.protected)
        trial.add_recipient(recipient.key)
        trial.serialize(compact=True)
    except (JWException, ValueError, TypeError) as exc:
        raise ClientKeyError(f"the key that fits cannot encrypt ({exc})") from None


class RemoteKeys:
    """A client's ``jwks_uri``: fetched lazily with a timeout, cached, refreshed on expiry."""

    def __init__(
        self,
        uri: str,
        *,
        alg: str,
        enc: str,
        client_id: str,
        timeout: float,
        session: Callable[[], aiohttp.ClientSession],
        on_fetch: Callable[[str], None] = lambda outcome: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.uri = uri
        self.alg = alg
        self.enc = enc
        self.client_id = client_id
        self.timeout = timeout
        self._session = session
        self._on_fetch = on_fetch
        self._clock = clock
        self._recipient: Recipient | None = None
        self._fresh_until = 0.0
        self._retry_at = 0.0
        self._failure: EncryptionKeysUnavailable | None = None
        self._fetch: asyncio.Task[Recipient] | None = None

    async def recipient(self) -> Recipient:
        """The key to encrypt to; ``EncryptionKeysUnavailable`` when there is none to use."""
        now = self._clock()
        if self._recipient is not None and now < self._fresh_until:
            return self._recipient
        if now < self._retry_at and self._failure is not None:
            raise self._failure
        if self._fetch is None:
            # One fetch at a time, whatever the number of callers waiting for it.
            self._fetch = asyncio.get_running_loop().create_task(self._refresh())
            self._fetch.add_done_callback(_retrieve)
        return await asyncio.shield(self._fetch)

    async def _refresh(self) -> Recipient:
        """Fetch and choose; on failure remember it for ``RETRY_AFTER`` seconds."""
        try:
            recipient, ttl = await self._download()
        except EncryptionKeysUnavailable as exc:
            self._failure = exc
            self._retry_at = self._clock() + RETRY_AFTER
            log.warning(
                "client_keys.fetch_failed",
                # The client_id points to the URI in the config; a URI may carry credentials.
                extra={"event": "client_keys.fetch_failed", "client_id": self.client_id,
                       "reason": exc.description},
            )  # fmt: skip
            raise
        finally:
            self._fetch = None
        self._recipient, self._failure = recipient, None
        self._fresh_until = self._clock() + ttl
        self._on_fetch("ok")
        return recipient

    async def _download(self) -> tuple[Recipient, float]:
        """GET the set (no redirects, at most ``MAX_JWKS_BYTES``) and pick the key."""
        try:
            async with self._session().get(
                self.uri,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"Accept": "application/jwk-set+json, application/json"},
            ) as response:
                body = await read_limited(response, MAX_JWKS_BYTES)
                status, cache_control = response.status, response.headers.get("Cache-Control")
        except TimeoutError:
            raise self._unavailable("timeout", f"not fetched within {self.timeout:g} s") from None
        except (aiohttp.ClientError, OSError, UpstreamUnavailable):
            raise self._unavailable("unavailable", "cannot be fetched") from None
        if status != 200:
            raise self._unavailable("unavailable", f"answered HTTP {status}")
        try:
            recipient = choose_recipient(json.loads(body), self.alg, self.enc)
        except (ValueError, UnicodeDecodeError):
            raise self._unavailable("invalid", "did not answer JSON") from None
        except ClientKeyError as exc:
            raise self._unavailable("invalid", f"is not usable: {exc}") from None
        return recipient, cache_lifetime(cache_control)

    def _unavailable(self, outcome: str, reason: str) -> EncryptionKeysUnavailable:
        """The error the caller sees (its jwks_uri named, no fetched bytes echoed)."""
        self._on_fetch(outcome)
        return EncryptionKeysUnavailable(f"the encryption keys of this client (jwks_uri) {reason}")


def _retrieve(task: asyncio.Task[Recipient]) -> None:
    """Mark a fetch's failure as seen even if every waiting caller went away."""
    if not task.cancelled():
        task.exception()


def cache_lifetime(cache_control: str | None) -> float:
    """How long a fetched set stays fresh: its max-age, bounded; ``DEFAULT_TTL`` without one."""
    directives = (cache_control or "").lower()
    if "no-store" in directives or "no-cache" in directives:
        return MIN_TTL
    match = _MAX_AGE.search(directives)
    if match is None:
        return DEFAULT_TTL
    return min(max(float(match.group(1)), MIN_TTL), MAX_TTL)
