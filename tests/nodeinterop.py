"""Drive the Node.js interop tools in interop/: a real node-oidc-provider and a jose verifier."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote_plus

import aiohttp
from multidict import CIMultiDictProxy

INTEROP_DIR = Path(__file__).resolve().parent.parent / "interop"
PROVIDER_SCRIPT = INTEROP_DIR / "provider.mjs"
VERIFY_SCRIPT = INTEROP_DIR / "verify.mjs"

JWT_MEDIA_TYPE = "application/token-introspection+jwt"
TOKEN_CLIENT_ID = "app"

# Starting Node and generating six keys takes about 0.5 s here; a loaded machine can be far
# slower, so leave a wide margin before calling it a failure.
DEFAULT_START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
VERIFY_TIMEOUT = 120.0

Json = dict[str, Any]


def node_available() -> bool:
    """Tell whether node is on PATH and `npm ci --prefix interop` has been run."""
    modules = INTEROP_DIR / "node_modules"
    return shutil.which("node") is not None and all(
        (modules / name / "package.json").is_file() for name in ("oidc-provider", "jose")
    )


def basic_auth(client_id: str, secret: str) -> str:
    """Build an `Authorization: Basic` value, form-encoding both halves (RFC 6749 §2.3.1)."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class ProviderStartError(RuntimeError):
    """provider.mjs exited or stayed silent instead of printing its ready line."""


class NodeProvider:
    """A node-oidc-provider subprocess on 127.0.0.1, usable with `with` or `async with`."""

    def __init__(
        self, config: Json | None = None, *, start_timeout: float = DEFAULT_START_TIMEOUT
    ) -> None:
        """Prepare (not start) a provider; `config` is provider.mjs's CONFIG.json as a dict."""
        self._config: Json = dict(config or {})
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._ready: Json = {}

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Spawn provider.mjs and block until it prints its ready line."""
        if self._process is not None:
            raise RuntimeError("NodeProvider already started")
        self._workdir = tempfile.TemporaryDirectory(prefix="nodeprovider-")
        workdir = Path(self._workdir.name)
        config_path = workdir / "config.json"
        config_path.write_text(json.dumps(self._config))
        # stderr goes to a file, not a pipe: nobody drains it while tests run, and a full
        # pipe would block the provider mid-request.
        with open(workdir / "stderr.log", "wb") as stderr:
            self._process = subprocess.Popen(
                ["node", str(PROVIDER_SCRIPT), str(config_path)],
                cwd=INTEROP_DIR,
                # A pipe we hold: if this Python process dies, EOF on stdin stops the provider.
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        try:
            self._ready = self._read_ready_line()
        except BaseException:
            self.stop()
            raise

    def _read_ready_line(self) -> Json:
        """Wait (bounded) for the one JSON line provider.mjs prints once it listens."""
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout
        lines: queue.Queue[bytes] = queue.Queue()
        # readline() cannot time out on a pipe; a daemon thread can be abandoned if it hangs.
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=self._start_timeout)
        except queue.Empty:
            raise ProviderStartError(
                f"provider.mjs printed no ready line within {self._start_timeout:g}s; "
                f"stderr:\n{self.stderr_text()}"
            ) from None
        try:
            ready: Json = json.loads(line)
        except ValueError:
            ready = {}
        if ready.get("ready") is not True:
            code = self._process.poll()
            raise ProviderStartError(
                f"provider.mjs did not start (exit code {code}, stdout {line[:200]!r}); "
                f"stderr:\n{self.stderr_text()}"
            )
        return ready

    def stop(self) -> None:
        """Terminate the provider (SIGTERM, then SIGKILL after a grace period) and clean up."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def stderr_text(self) -> str:
        """Return what the provider wrote to stderr so far (warnings, server errors)."""
        if self._workdir is None:
            return ""
        path = Path(self._workdir.name) / "stderr.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> Self:
        """Start the provider."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the provider."""
        self.stop()

    async def __aenter__(self) -> Self:
        """Start the provider in a worker thread so the event loop keeps running meanwhile."""
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the provider in a worker thread."""
        await asyncio.to_thread(self.stop)

    # -- what the ready line told us ---------------------------------------------------

    @property
    def port(self) -> int:
        """The port the provider listens on (on 127.0.0.1)."""
        return int(self._ready_value("port"))

    @property
    def issuer(self) -> str:
        """The provider's issuer identifier, exactly as it puts it in `iss`."""
        return str(self._ready_value("issuer"))

    @property
    def jwks(self) -> Json:
        """The provider's public JWK Set, as served at /jwks."""
        jwks: Json = self._ready_value("jwks")
        return jwks

    @property
    def clients(self) -> dict[str, Json]:
        """Client metadata by client_id (secrets included, plus `encryption_jwks` if any)."""
        clients: dict[str, Json] = self._ready_value("clients")
        return clients

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT, where every endpoint lives (independent of the issuer path)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        """The token endpoint."""
        return f"{self.base_url}/token"

    @property
    def introspection_url(self) -> str:
        """The RFC 7662 / RFC 9701 introspection endpoint."""
        return f"{self.base_url}/token/introspection"

    @property
    def revocation_url(self) -> str:
        """The RFC 7009 revocation endpoint."""
        return f"{self.base_url}/token/revocation"

    def secret(self, client_id: str) -> str:
        """Return a client's secret."""
        return str(self.clients[client_id]["client_secret"])

    def decrypt_key(self, client_id: str) -> Json:
        """Return the private JWK a resource server decrypts its nested-JWT responses with."""
        keys: list[Json] = self.clients[client_id].get("encryption_jwks", {}).get("keys", [])
        if not keys:
            raise KeyError(f"client {client_id!r} has no private encryption key")
        return keys[0]

    def _ready_value(self, name: str) -> Any:
        if not self._ready:
            raise RuntimeError("NodeProvider is not started")
        return self._ready[name]

    # -- HTTP helpers ------------------------------------------------------------------

    async def get_token(
        self,
        session: aiohttp.ClientSession,
        *,
        scope: str | None = None,
        client_id: str = TOKEN_CLIENT_ID,
    ) -> str:
        """Obtain an opaque access token with client_credentials (no resource indicator)."""
        form = {"grant_type": "client_credentials"}
        if scope is not None:
            form["scope"] = scope
        headers = {"Authorization": basic_auth(client_id, self.secret(client_id))}
        async with session.post(self.token_url, data=form, headers=headers) as response:
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(f"token request failed: {response.status} {body!r}")
        token: str = json.loads(body)["access_token"]
        return token

    async def revoke(
        self, session: aiohttp.ClientSession, token: str, *, client_id: str = TOKEN_CLIENT_ID
    ) -> None:
        """Revoke a token (RFC 7009) as the client it was issued to."""
        headers = {"Authorization": basic_auth(client_id, self.secret(client_id))}
        async with session.post(
            self.revocation_url, data={"token": token}, headers=headers
        ) as response:
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(f"revocation failed: {response.status} {body!r}")

    async def introspect(
        self,
        session: aiohttp.ClientSession,
        token: str,
        client_id: str,
        secret: str | None = None,
        accept: str | None = None,
        *,
        url: str | None = None,
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        """POST token to introspection as client_id (Basic auth); return status, headers, body.

        `secret` defaults to the client's registered one; `url` lets the same call go
        through the sidecar instead of straight to the provider.
        """
        headers = {
            "Authorization": basic_auth(
                client_id, self.secret(client_id) if secret is None else secret
            )
        }
        if accept is not None:
            headers["Accept"] = accept
        async with session.post(
            url or self.introspection_url, data={"token": token}, headers=headers
        ) as response:
            return response.status, response.headers, await response.read()


# -- jose verifier ---------------------------------------------------------------------


def _verify_command() -> list[str]:
    return ["node", str(VERIFY_SCRIPT)]


def _encode_jobs(jobs: list[Json]) -> bytes:
    return "".join(json.dumps(job) + "\n" for job in jobs).encode()


def _decode_results(jobs: list[Json], returncode: int, stdout: bytes, stderr: bytes) -> list[Json]:
    results: list[Json] = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    if returncode != 0 or len(results) != len(jobs):
        raise RuntimeError(
            f"verify.mjs failed (exit {returncode}, {len(results)} results for {len(jobs)} "
            f"jobs); stderr:\n{stderr.decode(errors='replace')}"
        )
    return results


def jose_verify(jobs: list[Json]) -> list[Json]:
    """Verify a batch of JWTs with panva/jose in one Node process; one result per job.

    Each job and result is described at the top of interop/verify.mjs. Blocks the caller;
    in async code prefer `jose_verify_async`.
    """
    if not jobs:
        return []
    completed = subprocess.run(
        _verify_command(),
        input=_encode_jobs(jobs),
        capture_output=True,
        cwd=INTEROP_DIR,
        timeout=VERIFY_TIMEOUT,
        check=False,
    )
    return _decode_results(jobs, completed.returncode, completed.stdout, completed.stderr)


async def jose_verify_async(jobs: list[Json]) -> list[Json]:
    """Do what `jose_verify` does without blocking the event loop."""
    if not jobs:
        return []
    process = await asyncio.create_subprocess_exec(
        *_verify_command(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=INTEROP_DIR,
    )
    try:
        stdout, stderr = await asyncio.wait_for(
            process.communicate(_encode_jobs(jobs)), VERIFY_TIMEOUT
        )
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return _decode_results(jobs, process.returncode, stdout, stderr)
