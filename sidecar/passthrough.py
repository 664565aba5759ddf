"""Every other path: streamed to the upstream unchanged (SPEC §8)."""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from sidecar.answers import error_response
from sidecar.appkeys import CONFIG, METRICS, UPSTREAM
from sidecar.upstream import HOP_BY_HOP_HEADERS, forwarded_headers

log = logging.getLogger(__name__)

# Headers the upstream must not see from the caller: the connection's own, plus Host (the
# upstream's is set from upstream.url) and the X-Forwarded-* we rewrite.
_NOT_FORWARDED = HOP_BY_HOP_HEADERS | {
    "host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
}  # fmt: skip


def _connection_listed(connection: str) -> set[str]:
    """The header names a ``Connection`` field lists: hop-by-hop for this message too."""
    return {name.strip().lower() for name in connection.split(",") if name.strip()}


def request_headers(request: web.Request) -> CIMultiDict[str]:
    """The caller's headers as the upstream should see them (RFC 9110 §7.6.1)."""
    dropped = _NOT_FORWARDED | _connection_listed(request.headers.get("Connection", ""))
    headers = CIMultiDict(
        forwarded_headers(
            request.headers, remote=request.remote, scheme=request.scheme, host=request.host
        )
    )
    for name, value in request.headers.items():
        if name.lower() not in dropped:
            headers.add(name, value)
    return headers


def upstream_url(base: str, request: web.Request) -> URL:
    """The upstream URL for ``request``: the raw path and query kept byte for byte."""
    return URL(base.rstrip("/") + request.raw_path, encoded=True)


async def passthrough(request: web.Request) -> web.StreamResponse:
    """Forward any request to the upstream and stream its answer back unchanged."""
    app = request.app
    config = app[CONFIG]
    metrics = app[METRICS]
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=config.upstream.timeout, sock_read=config.upstream.timeout
    )
    try:
        async with app[UPSTREAM].session.request(
            request.method,
            upstream_url(config.upstream.url, request),
            headers=request_headers(request),
            data=request.content if request.body_exists else None,
            allow_redirects=False,
            timeout=timeout,
        ) as upstream_response:
            response = web.StreamResponse(
                status=upstream_response.status, reason=upstream_response.reason
            )
            dropped = HOP_BY_HOP_HEADERS | _connection_listed(
                upstream_response.headers.get("Connection", "")
            )
            for name, value in upstream_response.headers.items():
                if name.lower() not in dropped:
                    response.headers.add(name, value)
            await response.prepare(request)
            async for chunk in upstream_response.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
    except TimeoutError:
        metrics.passthrough.labels(outcome="upstream_timeout").inc()
        return error_response(504, "temporarily_unavailable", "the upstream did not answer in time")
    except (aiohttp.ClientError, OSError):
        metrics.passthrough.labels(outcome="upstream_unavailable").inc()
        return error_response(502, "temporarily_unavailable", "the upstream could not be reached")
    metrics.passthrough.labels(outcome="forwarded").inc()
    return response
