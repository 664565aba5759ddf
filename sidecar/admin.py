"""The admin port: Prometheus metrics and the Kubernetes probes (SPEC §8)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from sidecar.appkeys import KEYS, LIFECYCLE
from sidecar.keys import KeyStore

PROXY_KEYS = web.AppKey("proxy_keys", KeyStore)


def create_admin_app(proxy: web.Application, *, registry: CollectorRegistry) -> web.Application:
    """``/metrics``, ``/livez`` and ``/readyz`` for the proxy app ``proxy``."""
    admin = web.Application()
    admin[LIFECYCLE] = proxy[LIFECYCLE]
    admin[PROXY_KEYS] = proxy[KEYS]
    admin.router.add_get("/metrics", make_aiohttp_handler(registry))
    admin.router.add_get("/livez", livez)
    admin.router.add_get("/readyz", readyz)
    return admin


async def livez(request: web.Request) -> web.Response:
    """Alive: the event loop answers. No I/O, so a slow upstream never restarts the pod."""
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    """Ready: keys loaded and not draining (SPEC §8, §8a)."""
    if request.app[LIFECYCLE].draining:
        return web.Response(status=503, text="draining\n")
    if not request.app[PROXY_KEYS].loaded:
        return web.Response(status=503, text="signing keys not loaded\n")
    return web.Response(text="ready\n")
