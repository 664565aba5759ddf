"""Upstream documents the sidecar amends: discovery metadata and, optionally, the AS's JWK Set.

RFC 9701 §7 (with RFC 8414 §2): the discovery documents gain the introspection algorithms.
``jwks.merge_into_upstream``: the AS's own JWK Set also lists the sidecar's public keys, so a
resource server that finds keys through the issuer's ``jwks_uri`` needs no change (SPEC §8).
Anything but a 200 JSON answer of the expected shape passes through unchanged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from sidecar.answers import error_response
from sidecar.appkeys import CONFIG, KEYS, METRICS, UPSTREAM
from sidecar.config import ENCRYPTION_ALGS, ENCRYPTION_ENCS
from sidecar.encryption import encrypting
from sidecar.errors import UpstreamUnavailable
from sidecar.passthrough import request_headers, upstream_url
from sidecar.upstream import HOP_BY_HOP_HEADERS, read_limited

log = logging.getLogger(__name__)

# RFC 8414 §3 and OpenID Connect Discovery 1.0 §4: the two discovery documents.
METADATA_PATHS = ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server")

# The amended body is ours: the upstream's length and validators no longer describe it, and
# a conditional request must reach the upstream as a plain GET so there is a body to amend.
_DROPPED_ANSWER_HEADERS = frozenset({"content-length", "etag", "last-modified"})
_CONDITIONAL_REQUEST_HEADERS = ("If-None-Match", "If-Modified-Since", "If-Match", "Range")

Amend = Callable[[dict[str, Any]], dict[str, Any] | None]


def introspection_metadata(signing_algs: list[str], *, encrypts: bool) -> dict[str, list[str]]:
    """RFC 9701 §7 metadata: the signing algorithms, and the encryption ones when in use."""
    metadata = {"introspection_signing_alg_values_supported": signing_algs}
    if encrypts:
        metadata["introspection_encryption_alg_values_supported"] = list(ENCRYPTION_ALGS)
        metadata["introspection_encryption_enc_values_supported"] = list(ENCRYPTION_ENCS)
    return metadata


async def metadata(request: web.Request) -> web.StreamResponse:
    """The upstream's discovery document plus the introspection algorithms (RFC 9701 §7)."""
    app = request.app
    added = introspection_metadata(app[KEYS].ring.algs, encrypts=encrypting(app[CONFIG].clients))
    return await _amend_upstream_json(request, lambda document: {**document, **added}, "metadata")


async def merged_jwks(request: web.Request) -> web.StreamResponse:
    """The AS's JWK Set with the sidecar's public keys appended (those whose kid is new)."""
    ours = json.loads(request.app[KEYS].ring.jwks_json)["keys"]

    def merge(document: dict[str, Any]) -> dict[str, Any] | None:
        keys = document.get("keys")
        if not isinstance(keys, list):
            return None
        kids = {key.get("kid") for key in keys if isinstance(key, dict)}
        return {**document, "keys": keys + [key for key in ours if key["kid"] not in kids]}

    return await _amend_upstream_json(request, merge, "jwks_merged")


async def _amend_upstream_json(
    request: web.Request, amend: Amend, outcome: str
) -> web.StreamResponse:
    """GET the same path upstream; a 200 JSON object is passed through ``amend``, else unchanged."""
    app = request.app
    config = app[CONFIG]
    headers = request_headers(request)
    for name in _CONDITIONAL_REQUEST_HEADERS:
        headers.popall(name, None)
    # Uncompressed, so the document can be read and amended.
    headers["Accept-Encoding"] = "identity"
    try:
        async with app[UPSTREAM].session.get(
            upstream_url(config.upstream.url, request), headers=headers, allow_redirects=False
        ) as upstream_response:
            body = await read_limited(upstream_response, config.upstream.max_response_bytes)
            status = upstream_response.status
            upstream_headers = upstream_response.headers
    except TimeoutError:
        return error_response(504, "temporarily_unavailable", "the upstream did not answer in time")
    except UpstreamUnavailable as exc:
        return error_response(502, "temporarily_unavailable", exc.description)
    except (aiohttp.ClientError, OSError):
        return error_response(502, "temporarily_unavailable", "the upstream could not be reached")
    passed = CIMultiDict(
        (name, value)
        for name, value in upstream_headers.items()
        if name.lower() not in HOP_BY_HOP_HEADERS and name.lower() != "content-length"
    )
    document = _json_object(body) if status == 200 else None
    amended = amend(document) if document is not None else None
    if amended is None:
        return web.Response(status=status, body=body, headers=passed)
    for name in _DROPPED_ANSWER_HEADERS:
        passed.popall(name, None)
    if "json" not in passed.get("Content-Type", "").lower():
        passed["Content-Type"] = "application/json"
    app[METRICS].passthrough.labels(outcome=outcome).inc()
    return web.Response(body=json.dumps(amended).encode(), headers=passed)


def _json_object(body: bytes) -> dict[str, Any] | None:
    """``body`` as a JSON object, or None."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None
