"""The minimal aiohttp forwarding proxy that the sidecar's JSON passthrough is measured against.

python bench/refproxy.py --port 8081 --upstream http://127.0.0.1:9000 [--loop uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator

from aiohttp import ClientSession, TCPConnector, web

SESSION = web.AppKey("session", ClientSession)
UPSTREAM_URL = web.AppKey("upstream_url", str)
FORWARDED = ("Authorization", "Content-Type")


async def forward(request: web.Request) -> web.Response:
    """POST the body with Authorization/Content-Type upstream; return status, body, type."""
    headers = {name: request.headers[name] for name in FORWARDED if name in request.headers}
    url = request.app[UPSTREAM_URL] + request.path_qs
    async with request.app[SESSION].post(url, data=await request.read(), headers=headers) as answer:
        body = await answer.read()
        content_type = answer.headers.get("Content-Type", "application/json")
    return web.Response(status=answer.status, body=body, headers={"Content-Type": content_type})


def make_app(upstream_url: str, max_connections: int) -> web.Application:
    """One app, one shared ClientSession (pooled keep-alive connections, like the sidecar's)."""

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        async with ClientSession(connector=TCPConnector(limit=max_connections)) as session:
            app[SESSION] = session
            yield

    app = web.Application()
    app[UPSTREAM_URL] = upstream_url.rstrip("/")
    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/{tail:.*}", forward)
    return app


def main() -> None:
    """Serve on 127.0.0.1 until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL of the legacy AS")
    parser.add_argument("--max-connections", type=int, default=100)  # the sidecar's default
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    args = parser.parse_args()
    loop = None
    if args.loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if args.loop == "uvloop":
                raise
        else:
            loop = uvloop.new_event_loop()
    loop = loop or asyncio.new_event_loop()
    app = make_app(args.upstream, args.max_connections)
    # No access log: per-request logging would dominate a ~150 µs proxy hop.
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, loop=loop)


if __name__ == "__main__":
    main()
