"""The composition root: ``create_app`` assembles the proxy application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CollectorRegistry

from sidecar.appkeys import (
    CONFIG,
    ENCRYPTION,
    ENCRYPTION_METRICS,
    GUARD,
    KEYS,
    LIFECYCLE,
    METRICS,
    RELOADER,
    REUSE,
    UPSTREAM,
    Lifecycle,
)
from sidecar.config import Config
from sidecar.discovery import METADATA_PATHS, merged_jwks, metadata
from sidecar.downgrade import DowngradeGuard
from sidecar.encryption import EncryptionMetrics, load_client_encryption
from sidecar.introspection import introspect
from sidecar.metrics import Metrics
from sidecar.passthrough import passthrough
from sidecar.reload import KeyReloader, ReloadMetrics, key_store
from sidecar.reuse import SignatureReuse
from sidecar.upstream import UpstreamClient

log = logging.getLogger(__name__)

JWK_SET_MEDIA_TYPE = "application/jwk-set+json"


def create_app(
    config: Config,
    *,
    registry: CollectorRegistry,
    lifecycle: Lifecycle | None = None,
    metrics: Metrics | None = None,
) -> web.Application:
    """The proxy app: introspection, the public JWK Set, and (optionally) passthrough."""
    app = web.Application(client_max_size=config.introspection.max_request_bytes)
    app[CONFIG] = config
    app[METRICS] = metrics or Metrics(registry)
    app[LIFECYCLE] = lifecycle or Lifecycle()
    app[KEYS] = key_store(config)
    app[REUSE] = SignatureReuse()
    app[RELOADER] = KeyReloader(
        app[KEYS],
        interval=config.signing.reload_interval,
        metrics=ReloadMetrics(registry, key_count=app[METRICS].keys_loaded),
    )
    app[GUARD] = DowngradeGuard(
        client_id for client_id, policy in config.clients.items() if policy.require_jwt
    )
    app[ENCRYPTION_METRICS] = EncryptionMetrics(registry)
    # Client keys first: loading them opens nothing, so a bad one leaves nothing to clean up.
    app.cleanup_ctx.append(_encryption_ctx)
    app.cleanup_ctx.append(_keys_ctx)
    app.cleanup_ctx.append(_upstream_ctx)

    app.router.add_route("*", config.introspection.path, introspect)
    app.router.add_get(config.jwks.path, jwks)
    if config.jwks.merge_into_upstream:
        app.router.add_get(config.jwks.merge_into_upstream, merged_jwks)
    if config.passthrough:
        for path in METADATA_PATHS:
            app.router.add_get(path, metadata)
        app.router.add_route("*", "/{tail:.*}", passthrough)
    return app


async def _keys_ctx(app: web.Application) -> AsyncIterator[None]:
    """Load the signing keys at start-up, so a bad key file stops the start; then watch it."""
    reloader = app[RELOADER]
    ring = reloader.load_initial()
    log.info(
        "keys.loaded",
        extra={"event": "keys.loaded", "kid": ring.active.kid, "alg": ring.active.alg,
               "keys": len(ring.keys)},
    )  # fmt: skip
    poller = None
    if app[CONFIG].signing.reload_interval > 0:
        poller = asyncio.get_running_loop().create_task(reloader.run())
    yield
    if poller is not None:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller


async def _upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    """One pooled ``ClientSession`` for the app's lifetime."""
    client = UpstreamClient(app[CONFIG].upstream, app[METRICS])
    app[UPSTREAM] = client
    yield
    await client.close()


async def _encryption_ctx(app: web.Application) -> AsyncIterator[None]:
    """Load clients' encryption keys at start-up (a bad one stops the start); close fetches."""
    config = app[CONFIG]
    encryption = load_client_encryption(
        config.clients, timeout=config.upstream.timeout, metrics=app[ENCRYPTION_METRICS]
    )
    app[ENCRYPTION] = encryption
    yield
    await encryption.close()


async def jwks(request: web.Request) -> web.Response:
    """The public JWK Set: every key of the key file, public members only (SPEC §6, §9)."""
    accept = request.headers.get("Accept", "")
    content_type = JWK_SET_MEDIA_TYPE if JWK_SET_MEDIA_TYPE in accept else "application/json"
    return web.Response(
        body=request.app[KEYS].ring.jwks_json,
        headers={"Content-Type": content_type, "Cache-Control": "max-age=300"},
    )
