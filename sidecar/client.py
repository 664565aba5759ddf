"""The resource server's RFC 9701 client: ask for a JWT answer, verify it, return the object.

::

    policy = VerificationPolicy(issuer="https://as.example.com", audience="rs-1")
    async with IntrospectionClient(
        "https://as.example.com/token/introspect",
        client_id="rs-1", client_secret="...",
        jwks="https://as.example.com/introspection/jwks.json", policy=policy,
    ) as client:
        introspection = await client.introspect(access_token)
        if introspection["active"]: ...

Every failure raises one ``IntrospectionError`` subclass (see ``sidecar.verification``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote_plus

import aiohttp

from sidecar.clienterrors import (
    BadSignature,
    DecryptionFailed,
    DisallowedAlgorithm,
    IntrospectionError,
    IntrospectionRefused,
    IntrospectionUnavailable,
    JwksUnavailable,
    MalformedResponse,
    StaleResponse,
    UnexpectedType,
    UnknownKey,
    WrongAudience,
    WrongIssuer,
)
from sidecar.compact import MAX_JWT_BYTES
from sidecar.keyset import KeySet
from sidecar.upstream import read_at_most
from sidecar.verification import (
    SUPPORTED_ALGS,
    VerificationPolicy,
    VerifiedResponse,
    check_jws,
    open_response,
    verify_introspection_jwt,
)

__all__ = [
    "SUPPORTED_ALGS",
    "BadSignature",
    "DecryptionFailed",
    "DisallowedAlgorithm",
    "IntrospectionClient",
    "IntrospectionError",
    "IntrospectionRefused",
    "IntrospectionUnavailable",
    "JwksCache",
    "JwksUnavailable",
    "KeySet",
    "MalformedResponse",
    "StaleResponse",
    "UnexpectedType",
    "UnknownKey",
    "VerificationPolicy",
    "VerifiedResponse",
    "WrongAudience",
    "WrongIssuer",
    "fetch_jwks",
    "fetch_jwks_blocking",
    "load_key_set",
    "verify_introspection_jwt",
]

log = logging.getLogger(__name__)

RFC9701_MEDIA_TYPE = "application/token-introspection+jwt"
DEFAULT_TIMEOUT = 10.0
DEFAULT_JWKS_MAX_AGE = 300.0
DEFAULT_JWKS_MIN_REFRESH = 30.0
MAX_JWKS_BYTES = 262_144
MAX_ERROR_BYTES = 4096

AuthMethod = Literal["client_secret_basic", "client_secret_post"]


async def fetch_jwks(
    session: aiohttp.ClientSession, jwks_uri: str, *, time_limit: float = DEFAULT_TIMEOUT
) -> KeySet:
    """GET a JWK Set; ``JwksUnavailable`` on any network, status or format problem."""
    try:
        async with session.get(
            jwks_uri,
            headers={"Accept": "application/jwk-set+json, application/json"},
            timeout=aiohttp.ClientTimeout(total=time_limit),
            allow_redirects=False,
        ) as response:
            if response.status != 200:
                raise JwksUnavailable(f"the JWK Set URI answered {response.status}")
            raw = await read_at_most(response, MAX_JWKS_BYTES)
    except (aiohttp.ClientError, TimeoutError, OSError):
        raise JwksUnavailable("the JWK Set URI cannot be reached") from None
    if raw is None:
        raise JwksUnavailable(f"the JWK Set is over {MAX_JWKS_BYTES} bytes")
    try:
        return KeySet.from_json(raw)
    except ValueError as exc:
        raise JwksUnavailable(f"the JWK Set URI did not serve a JWK Set ({exc})") from None


def fetch_jwks_blocking(jwks_uri: str, *, timeout: float = DEFAULT_TIMEOUT) -> KeySet:
    """``fetch_jwks`` for code without an event loop (the command line)."""

    async def fetch() -> KeySet:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            return await fetch_jwks(session, jwks_uri, time_limit=timeout)

    return asyncio.run(fetch())


def load_key_set(path: str | Path) -> KeySet:
    """A JWK Set (or one JWK) from a JSON file; ``ValueError`` saying what is wrong."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return KeySet.from_json(raw)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


class JwksCache:
    """The AS's JWK Set from ``jwks_uri``, cached; refetched when old or on an unknown kid.

    Refetches (successful or not) are at least ``min_refresh_interval`` apart, so tokens with
    made-up ``kid`` values cannot make the resource server hammer the AS. A failed refresh
    keeps serving the keys already known.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        jwks_uri: str,
        *,
        max_age: float = DEFAULT_JWKS_MAX_AGE,
        min_refresh_interval: float = DEFAULT_JWKS_MIN_REFRESH,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Prepare the cache; nothing is fetched until keys are first needed."""
        self._session = session
        self.jwks_uri = jwks_uri
        self._max_age = max_age
        self._min_refresh_interval = min_refresh_interval
        self._timeout = timeout
        self._clock = clock
        self._keys: KeySet | None = None
        self._fetched_at = -float("inf")  # last successful fetch
        self._attempted_at = -float("inf")  # last attempt, successful or not
        self._generation = 0  # fetches ended, successful or not
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def keys(self) -> KeySet:
        """The cached keys, refetched first when older than ``max_age``."""
        if self._keys is None or self._clock() - self._fetched_at >= self._max_age:
            await self._refresh()
        if self._keys is None:
            raise JwksUnavailable("the AS's JWK Set has not been fetched yet")
        return self._keys

    async def keys_for(self, kid: str | None) -> KeySet:
        """The keys, refetched once if ``kid`` is unknown (a key rotation at the AS)."""
        keys = await self.keys()
        if kid is None or keys.has_kid(kid):
            return keys
        await self._refresh()
        return self._keys or keys

    async def _refresh(self) -> None:
        """Fetch the set unless a fetch ended while we waited, or one happened too recently."""
        generation = self._generation
        async with self._lock:
            if self._generation != generation:
                return  # single flight: a concurrent caller's fetch just ended
            if self._clock() - self._attempted_at < self._min_refresh_interval:
                return
            self._attempted_at = self._clock()
            self.fetches += 1
            try:
                keys = await fetch_jwks(self._session, self.jwks_uri, time_limit=self._timeout)
            except JwksUnavailable as exc:
                log.warning(
                    "jwks.refresh_failed",
                    extra={"event": "jwks.refresh_failed", "reason": str(exc),
                           "cached": self._keys is not None},
                )  # fmt: skip
                if self._keys is None:
                    raise
                return
            finally:
                self._generation += 1
            self._keys, self._fetched_at = keys, self._clock()
            log.info("jwks.refreshed", extra={"event": "jwks.refreshed", "keys": len(keys)})


class IntrospectionClient:
    """Asks the AS for RFC 9701 answers (§4) and verifies them (§5, §8.1) before use."""

    def __init__(
        self,
        introspection_url: str,
        *,
        client_id: str,
        client_secret: str,
        jwks: str | JwksCache,
        policy: VerificationPolicy,
        auth_method: AuthMethod = "client_secret_basic",
        session: aiohttp.ClientSession | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        jwks_max_age: float = DEFAULT_JWKS_MAX_AGE,
        jwks_min_refresh_interval: float = DEFAULT_JWKS_MIN_REFRESH,
    ) -> None:
        """Configure the client; ``jwks`` is the AS's JWK Set URI or a cache to share.

        A ``session`` given is used and left open; otherwise the client makes and closes one.
        """
        self.introspection_url = introspection_url
        self.policy = policy
        self._client_id = client_id
        self._client_secret = client_secret
        self._auth_method = auth_method
        self._timeout = timeout
        self._own_session = session is None
        self._session = session or aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        self.jwks = (
            jwks
            if isinstance(jwks, JwksCache)
            else JwksCache(
                self._session,
                jwks,
                max_age=jwks_max_age,
                min_refresh_interval=jwks_min_refresh_interval,
                timeout=timeout,
            )
        )

    async def introspect(self, token: str, *, token_type_hint: str | None = None) -> dict[str, Any]:
        """The verified ``token_introspection`` object for ``token``; check its ``active``."""
        response = await self.introspect_response(token, token_type_hint=token_type_hint)
        return response.token_introspection

    async def introspect_response(
        self, token: str, *, token_type_hint: str | None = None
    ) -> VerifiedResponse:
        """The whole verified answer: JWS header, claims, introspection, JWE header if any."""
        body = await self._post(token, token_type_hint)
        opened = open_response(body, self.policy)
        keys = await self.jwks.keys_for(opened.kid)
        return check_jws(opened, keys, self.policy)

    async def _post(self, token: str, token_type_hint: str | None) -> bytes:
        """POST the RFC 7662 §2.1 request with RFC 9701 §4's Accept; the 2xx JWT body."""
        form = {"token": token}
        if token_type_hint is not None:
            form["token_type_hint"] = token_type_hint
        headers = {"Accept": RFC9701_MEDIA_TYPE}
        if self._auth_method == "client_secret_basic":
            headers["Authorization"] = basic_authorization(self._client_id, self._client_secret)
        else:
            form.update(client_id=self._client_id, client_secret=self._client_secret)
        try:
            async with self._session.post(
                self.introspection_url,
                data=form,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                allow_redirects=False,
            ) as response:
                if not 200 <= response.status < 300:
                    error_body = await read_at_most(response, MAX_ERROR_BYTES)
                    raise _refusal(response.status, error_body or b"")
                media_type = response.content_type.lower()
                if media_type != RFC9701_MEDIA_TYPE:
                    # RFC 9701 §4: anything else (a plain JSON answer above all) is a downgrade.
                    raise UnexpectedType(f"the AS answered {media_type}, not {RFC9701_MEDIA_TYPE}")
                body = await read_at_most(response, MAX_JWT_BYTES)
        except (aiohttp.ClientError, TimeoutError, OSError):
            raise IntrospectionUnavailable("the introspection endpoint cannot be reached") from None
        if body is None:
            raise MalformedResponse(f"the answer is over {MAX_JWT_BYTES} bytes")
        return body

    async def close(self) -> None:
        """Close the session if this client made it."""
        if self._own_session:
            await self._session.close()

    async def __aenter__(self) -> Self:
        """Use as ``async with``."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close on the way out."""
        await self.close()


def basic_authorization(client_id: str, client_secret: str) -> str:
    """``Authorization: Basic`` with both halves form-encoded first (RFC 6749 §2.3.1)."""
    raw = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _refusal(status: int, body: bytes) -> IntrospectionRefused:
    """The exception for an error answer, with its RFC 6749 §5.2 ``error`` code if any."""
    error = None
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        document = None
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        error = document["error"][:64]
    detail = f" ({error})" if error else ""
    return IntrospectionRefused(f"the AS answered {status}{detail}", status=status, error=error)
