"""The upstream authorization server: one pooled ``ClientSession``, forwarding (SPEC §4)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDictProxy

from sidecar import __version__
from sidecar.config import Upstream as UpstreamConfig
from sidecar.errors import UpstreamTimeout, UpstreamUnavailable
from sidecar.metrics import Metrics

# RFC 9110 §7.6.1: connection-specific fields that a proxy must not forward, plus the
# fields that name the connection's framing, which aiohttp sets itself.
HOP_BY_HOP_HEADERS = frozenset(
    {
        "connection", "keep-alive", "proxy-connection", "proxy-authenticate",
        "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
    }
)  # fmt: skip

# SPEC §4: what an introspection request carries upstream, and nothing else.
FORWARDED_INTROSPECTION_HEADERS = ("Authorization", "Content-Type")

# Set on every forwarded introspection request. Naming every header aiohttp would add by
# itself keeps its per-request header defaulting on the fast path.
_INTROSPECTION_REQUEST_HEADERS = {
    "Accept": "application/json",
    "Accept-Encoding": "identity",
    "User-Agent": f"jwt-introspection-sidecar/{__version__}",
}

_STATUS_CLASSES = {hundreds: f"{hundreds}xx" for hundreds in range(1, 6)}


@dataclass(frozen=True, slots=True)
class UpstreamAnswer:
    """The upstream's answer to one introspection request, read in full."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def is_success(self) -> bool:
        """A 2xx status."""
        return 200 <= self.status < 300


class UpstreamClient:
    """Forwards requests to the legacy AS over one connection pool."""

    def __init__(self, config: UpstreamConfig, metrics: Metrics) -> None:
        self._config = config
        self._metrics = metrics
        self._introspection_url = config.introspection_url
        self._timeout = aiohttp.ClientTimeout(total=config.timeout)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=config.max_connections, force_close=False),
            # Bytes pass through as the upstream sent them; introspection asks for identity.
            auto_decompress=False,
            timeout=self._timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        """Close the pool."""
        await self.session.close()

    async def introspect(self, body: bytes, headers: Mapping[str, str]) -> UpstreamAnswer:
        """POST ``body`` to the upstream introspection endpoint and read its whole answer.

        Raises ``UpstreamTimeout`` past ``upstream.timeout`` and ``UpstreamUnavailable`` when
        the upstream cannot be reached, breaks off, or sends more than ``max_response_bytes``.
        """
        started = time.perf_counter()
        outcome = "error"
        try:
            async with self.session.post(
                self._introspection_url,
                data=body,
                headers=headers,
                allow_redirects=False,
            ) as response:
                payload = await read_limited(response, self._config.max_response_bytes)
                outcome = _STATUS_CLASSES.get(response.status // 100, "error")
                return UpstreamAnswer(response.status, response.headers, payload)
        except TimeoutError:
            outcome = "timeout"
            raise UpstreamTimeout(
                f"the upstream did not answer within {self._config.timeout:g} s"
            ) from None
        except (aiohttp.ClientError, OSError):
            outcome = "unavailable"
            raise UpstreamUnavailable("the upstream could not be reached") from None
        finally:
            self._metrics.observe_upstream(outcome, time.perf_counter() - started)


async def read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body of ``response``, or None when it is over ``limit`` bytes."""
    length = response.content_length
    if length is not None:
        # A declared length: refused at once when too long, else aiohttp stops at it.
        return await response.read() if length <= limit else None
    chunks: list[bytes] = []
    received = 0
    async for chunk in response.content.iter_any():
        received += len(chunk)
        if received > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body of ``response``; ``UpstreamUnavailable`` when over ``limit`` bytes."""
    body = await read_at_most(response, limit)
    if body is None:
        raise UpstreamUnavailable(f"the upstream answer is over {limit} bytes")
    return body


def forwarded_headers(
    incoming: Mapping[str, str], *, remote: str | None, scheme: str, host: str | None
) -> dict[str, str]:
    """``X-Forwarded-For``/``-Proto``/``-Host`` for the upstream, extending any the caller set."""
    headers: dict[str, str] = {}
    prior = incoming.get("X-Forwarded-For")
    if remote:
        headers["X-Forwarded-For"] = f"{prior}, {remote}" if prior else remote
    elif prior:
        headers["X-Forwarded-For"] = prior
    headers["X-Forwarded-Proto"] = incoming.get("X-Forwarded-Proto") or scheme
    forwarded_host = incoming.get("X-Forwarded-Host") or host
    if forwarded_host:
        headers["X-Forwarded-Host"] = forwarded_host
    return headers


def introspection_headers(
    incoming: Mapping[str, str], *, remote: str | None, scheme: str, host: str | None
) -> dict[str, str]:
    """The headers of a forwarded introspection request (SPEC §4 allow-list).

    A plain dict of distinct names: built on every request, so kept cheap.
    """
    # The legacy endpoint speaks JSON; uncompressed, so the bytes can be signed and passed on.
    headers = dict(_INTROSPECTION_REQUEST_HEADERS)
    for name in FORWARDED_INTROSPECTION_HEADERS:
        value = incoming.get(name)
        if value is not None:
            headers[name] = value
    headers.update(forwarded_headers(incoming, remote=remote, scheme=scheme, host=host))
    return headers
