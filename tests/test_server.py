"""SIGTERM (SPEC §8a), with the real CLI in a subprocess: drain, finish in-flight work, exit 0."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from conftest import RFC9701, FakeAS, basic, private_jwks


async def start_cli(tmp_path: Path, upstream: str, **shutdown: float) -> tuple[Any, int, int]:
    keys = tmp_path / "jwks.json"
    keys.write_text(private_jwks("ES256"))
    config = tmp_path / "sidecar.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "issuer": "https://as.example.com",
                "listen": {"host": "127.0.0.1", "port": 0},
                "admin": {"host": "127.0.0.1", "port": 0},
                "upstream": {"url": upstream},
                "signing": {"keys_file": str(keys)},
                "shutdown": shutdown,
            }
        )
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar", "run", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    while True:
        line = await asyncio.wait_for(process.stderr.readline(), 20)
        assert line, "the sidecar exited before it started"
        event = json.loads(line)
        if event.get("event") == "server.started":
            return process, event["port"], event["admin_port"]


async def test_sigterm_drains_and_finishes_in_flight(tmp_path: Path, fake_as: FakeAS) -> None:
    """After SIGTERM /readyz is 503 at once, new requests are served while draining,
    the in-flight request completes, and the process exits 0."""
    process, port, admin_port = await start_cli(
        tmp_path, fake_as.url, drain_seconds=1.0, timeout=10
    )
    url = f"http://127.0.0.1:{port}/token/introspect"
    headers = {"Accept": RFC9701, "Authorization": basic("rs-1")}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{admin_port}/readyz") as response:
            assert response.status == 200
        fake_as.answer(delay=2.0)
        in_flight = asyncio.ensure_future(session.post(url, data={"token": "t"}, headers=headers))
        while not fake_as.received:
            await asyncio.sleep(0.01)
        sent_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
        async with session.get(f"http://127.0.0.1:{admin_port}/readyz") as response:
            assert response.status == 503
        fake_as.answer(delay=0)
        async with (
            aiohttp.ClientSession() as fresh,  # a new connection during the drain
            fresh.post(url, data={"token": "t"}, headers=headers) as response,
        ):
            assert response.status == 200
        response = await in_flight
        assert response.status == 200
        assert (await response.read()).count(b".") == 2
        response.release()
    assert await asyncio.wait_for(process.wait(), 15) == 0
    assert time.monotonic() - sent_at >= 1.0
    stderr = (await process.stderr.read()).decode()  # type: ignore[union-attr]
    assert "shutdown.done" in stderr and "Traceback" not in stderr


async def test_sigterm_stops_accepting_after_the_drain(tmp_path: Path, fake_as: FakeAS) -> None:
    """Once the drain period is over, new connections are refused and the process exits 0."""
    process, port, _ = await start_cli(tmp_path, fake_as.url, drain_seconds=0.2, timeout=5)
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 10) == 0
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get(f"http://127.0.0.1:{port}/"):
                raise AssertionError("still accepting after shutdown")
        except aiohttp.ClientConnectorError:
            pass
