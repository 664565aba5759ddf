"""Serving: both ports up, SIGTERM drains then stops, in-flight requests finish (SPEC §8a)."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry

from sidecar.admin import create_admin_app
from sidecar.app import create_app
from sidecar.appkeys import LIFECYCLE, METRICS, RELOADER
from sidecar.config import Config, Listen
from sidecar.encryption import ClientKeysError
from sidecar.keys import KeyFileError

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The sidecar cannot start; the message names the cause in one line."""


class Server:
    """The proxy and admin sites of one sidecar process."""

    def __init__(self, config: Config, *, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.registry = registry or CollectorRegistry()
        self.app = create_app(config, registry=self.registry)
        self.admin = create_admin_app(self.app, registry=self.registry)
        self._proxy_runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=config.shutdown.timeout,
        )
        self._admin_runner = web.AppRunner(self.admin, handle_signals=False, access_log=None)
        self.proxy_port = 0
        self.admin_port = 0

    async def start(self) -> None:
        """Load keys, open the pool, bind both ports; ``StartupError`` when any of it fails."""
        try:
            await self._proxy_runner.setup()
        except KeyFileError as exc:
            raise StartupError(f"signing.keys_file: {exc}") from None
        except ClientKeysError as exc:
            raise StartupError(str(exc)) from None
        await self._admin_runner.setup()
        self.proxy_port = await _bind(self._proxy_runner, self.config.listen, "listen")
        try:
            self.admin_port = await _bind(self._admin_runner, self.config.admin, "admin")
        except StartupError:
            await self._proxy_runner.cleanup()
            raise

    async def stop(self) -> None:
        """Drain, stop accepting, let in-flight requests finish (at most ``shutdown.timeout``)."""
        self.app[LIFECYCLE].draining = True
        self.app[METRICS].draining.set(1)
        log.info(
            "shutdown.draining",
            extra={"event": "shutdown.draining", "seconds": self.config.shutdown.drain_seconds},
        )
        await asyncio.sleep(self.config.shutdown.drain_seconds)
        log.info("shutdown.closing", extra={"event": "shutdown.closing"})
        await self._proxy_runner.cleanup()
        await self._admin_runner.cleanup()
        log.info("shutdown.done", extra={"event": "shutdown.done"})


async def _bind(runner: web.AppRunner, listen: Listen, section: str) -> int:
    """Start a TCP site; the port actually bound (``port: 0`` picks a free one)."""
    site = web.TCPSite(runner, listen.host, listen.port)
    try:
        await site.start()
    except OSError as exc:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise StartupError(
            f"{section}: cannot listen on {listen.host}:{listen.port}: {reason or exc}"
        ) from None
    return int(runner.addresses[-1][1])


async def serve(
    config: Config,
    *,
    registry: CollectorRegistry | None = None,
    on_started: Callable[[Server], Awaitable[None]] | None = None,
) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully; SIGHUP re-reads the key file."""
    server = Server(config, registry=registry)
    await server.start()
    # Everything built so far (modules, keys, apps) lives as long as the process: move it out
    # of the collector's sight, so each garbage collection only walks per-request objects.
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.app[RELOADER].request)
    log.info(
        "server.started",
        extra={"event": "server.started", "port": server.proxy_port,
               "admin_port": server.admin_port},
    )  # fmt: skip
    try:
        if on_started is not None:
            await on_started(server)
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        await server.stop()
