"""Shared fixtures: a fake legacy AS that records and replays, key files, the real sidecar."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry

from sidecar.config import Config, load_config
from sidecar.keys import generate_key, key_set_json
from sidecar.server import Server

ISSUER = "https://as.example.com"
RFC9701 = "application/token-introspection+jwt"
DRAFT08 = "application/jwt"
ACTIVE_ANSWER = {
    "active": True,
    "scope": "read write",
    "client_id": "app-1",
    "sub": "alice",
    "exp": 2_000_000_000,
    "iat": 1_700_000_000,
    "iss": ISSUER,
    "aud": "rs-1",
    "jti": "token-id-1",
    "ext": {"nested": {"deep": [1, 2.5, None, True]}, "name": "Ünïcødé ✓ 😀"},
}


def basic(client_id: str, secret: str = "secret") -> str:
    """An ``Authorization: Basic`` value for ``client_id``."""
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@dataclass
class Recorded:
    """One request the fake AS received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Script:
    """What the fake AS answers next: status, body bytes, headers, an optional delay."""

    status: int = 200
    body: bytes = json.dumps(ACTIVE_ANSWER).encode()
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    delay: float = 0.0


class FakeAS:
    """A legacy AS on 127.0.0.1 that records every request and answers what the test scripted."""

    def __init__(self) -> None:
        self.received: list[Recorded] = []
        self.script = Script()
        self.routes: dict[str, Script] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    def answer(
        self,
        body: Any = ACTIVE_ANSWER,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        path: str | None = None,
    ) -> None:
        """Script the next answers (for ``path``, else for every path)."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        script = Script(status, raw, headers or {"Content-Type": "application/json"}, delay)
        if path is None:
            self.script = script
        else:
            self.routes[path] = script

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(Recorded(request.method, request.path_qs, dict(request.headers), body))
        script = self.routes.get(request.path, self.script)
        if script.delay:
            await asyncio.sleep(script.delay)
        return web.Response(status=script.status, body=script.body, headers=script.headers)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def introspections(self) -> list[Recorded]:
        """The introspection requests received."""
        return [r for r in self.received if r.path.startswith("/token/introspect")]


@pytest.fixture
async def fake_as() -> AsyncIterator[FakeAS]:
    """A running fake legacy AS."""
    server = FakeAS()
    await server.start()
    yield server
    await server.stop()


_KEY_CACHE: dict[str, str] = {}


def private_jwks(*algs: str) -> str:
    """A private JWK Set with one key per alg (kid = ``<alg>-key``); generated once a session."""
    cache_key = ",".join(algs)
    if cache_key not in _KEY_CACHE:
        _KEY_CACHE[cache_key] = key_set_json(
            [generate_key(alg, kid=f"{alg.lower()}-key") for alg in algs], private=True
        )
    return _KEY_CACHE[cache_key]


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    """A key file with an ES256 key (active) and an RS256 key."""
    path = tmp_path / "jwks.json"
    path.write_text(private_jwks("ES256", "RS256"))
    return path


ConfigFactory = Callable[..., Config]


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@pytest.fixture
def make_config(tmp_path: Path, fake_as: FakeAS, keys_file: Path) -> ConfigFactory:
    """Write a sidecar.yaml (defaults for tests, merged with ``extra``) and load it for real."""

    def factory(extra: dict[str, Any] | None = None, **env: str) -> Config:
        document = {
            "issuer": ISSUER,
            "listen": {"host": "127.0.0.1", "port": 0},
            "admin": {"host": "127.0.0.1", "port": 0},
            "upstream": {"url": fake_as.url, "timeout": 2.0},
            "signing": {"keys_file": str(keys_file)},
            "shutdown": {"drain_seconds": 0, "timeout": 5},
        }
        path = tmp_path / "sidecar.yaml"
        path.write_text(yaml.safe_dump(_merge(document, extra or {})))
        return load_config(path, env)

    return factory


@dataclass
class Running:
    """A running sidecar and a client session to talk to it."""

    server: Server
    session: aiohttp.ClientSession
    registry: CollectorRegistry

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.proxy_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.server.admin_port}"

    @property
    def introspect_url(self) -> str:
        return self.url + self.server.config.introspection.path

    async def introspect(
        self,
        *,
        accept: str | None = RFC9701,
        client: str | None = "rs-1",
        data: dict[str, str] | bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """POST an introspection request; returns status, headers, body."""
        all_headers: dict[str, str] = {}
        if accept is not None:
            all_headers["Accept"] = accept
        if client is not None:
            all_headers["Authorization"] = basic(client)
        all_headers.update(headers or {})
        async with self.session.post(
            self.introspect_url,
            data=data if data is not None else {"token": "tok-1"},
            headers=all_headers,
        ) as response:
            return response.status, dict(response.headers), await response.read()

    async def public_jwks(self) -> dict[str, Any]:
        """The published JWK Set."""
        async with self.session.get(self.url + self.server.config.jwks.path) as response:
            assert response.status == 200
            document: dict[str, Any] = json.loads(await response.read())
            return document

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A metric's current value (0 when absent)."""
        return self.registry.get_sample_value(name, labels or {}) or 0.0


StartSidecar = Callable[[Config], Any]


@pytest.fixture
async def start_sidecar() -> AsyncIterator[Callable[[Config], Any]]:
    """Start the real sidecar for a config; every one started is stopped after the test."""
    started: list[Running] = []

    async def start(config: Config) -> Running:
        registry = CollectorRegistry()
        server = Server(config, registry=registry)
        await server.start()
        running = Running(server, aiohttp.ClientSession(), registry)
        started.append(running)
        return running

    yield start
    for running in started:
        await running.session.close()
        await running.server.stop()


@pytest.fixture
async def sidecar(make_config: ConfigFactory, start_sidecar: Any) -> Running:
    """The sidecar with the test defaults, in front of ``fake_as``."""
    running: Running = await start_sidecar(make_config())
    return running


def verify_jwt(
    token: bytes | str,
    jwks: dict[str, Any],
    *,
    audience: str,
    issuer: str = ISSUER,
    typ: str = "token-introspection+jwt",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify with PyJWT (independent of the signer) against ``jwks``; (header, claims)."""
    text = token.decode() if isinstance(token, bytes) else token
    header = jwt.get_unverified_header(text)
    assert header["typ"] == typ
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    claims = jwt.decode(
        text,
        key.key,
        algorithms=[header["alg"]],
        audience=audience,
        issuer=issuer,
        options={"require": ["iss", "aud", "iat"]},
    )
    return header, claims


@pytest.fixture
def tmp_keys(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Write a key file with keys for ``algs`` and return its path."""

    def write(*algs: str, name: str = "keys.json") -> Path:
        path = tmp_path / name
        path.write_text(private_jwks(*algs))
        return path

    yield write
