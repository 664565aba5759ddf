"""``sidecar demo``: a built-in legacy AS, the sidecar in front, one request of each kind."""

from __future__ import annotations

import base64
import json
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from jwcrypto import jwk, jws

from sidecar.config import build_config
from sidecar.encoding import b64url_decode
from sidecar.keys import generate_key, key_set_json
from sidecar.server import Server, StartupError, serve

ISSUER = "https://as.demo.example"

# The legacy AS's resource-server clients (client_id → secret).
DEMO_CLIENTS = {"rs-demo": "rs-demo-secret", "rs-payments": "rs-payments-secret"}


def _demo_tokens() -> dict[str, dict[str, Any]]:
    """The legacy AS's tokens and what it says of them (RFC 7662 §2.2)."""
    now = int(time.time())
    return {
        "demo-active-token": {
            "active": True, "scope": "read write", "client_id": "web-app",
            "sub": "alice", "username": "alice", "token_type": "Bearer",
            "iat": now, "exp": now + 3600, "iss": ISSUER, "aud": "rs-demo",
            "jti": "8f3c2a", "ext": {"tenant": "acme", "roles": ["reader", "writer"]},
        },
        "demo-payments-token": {
            "active": True, "scope": "payments:initiate", "client_id": "mobile-app",
            "sub": "bob", "iat": now, "exp": now + 600, "iss": ISSUER,
        },
        "demo-revoked-token": {"active": False, "sub": "carol", "revoked": True},
    }  # fmt: skip


def create_legacy_as() -> web.Application:
    """A legacy RFC 7662 introspection endpoint: plain JSON, client_secret_basic or _post."""
    tokens = _demo_tokens()

    async def introspect(request: web.Request) -> web.Response:
        form = await request.post()
        client_id, secret = _credentials(request.headers.get("Authorization"), form)
        if client_id is None or DEMO_CLIENTS.get(client_id) != secret:
            # RFC 6749 §5.2: 401 with the scheme the client tried.
            return web.json_response(
                {"error": "invalid_client"},
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="demo"'},
            )
        token = form.get("token")
        if not isinstance(token, str) or not token:
            return web.json_response({"error": "invalid_request"}, status=400)
        answer = tokens.get(token, {"active": False})
        if answer.get("active") is not True:
            answer = {"active": False}
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/token/introspect", introspect)
    app.router.add_get(
        "/.well-known/openid-configuration",
        lambda _: _json({"issuer": ISSUER, "introspection_endpoint": f"{ISSUER}/token/introspect"}),
    )
    return app


async def _json(document: Mapping[str, Any]) -> web.Response:
    return web.json_response(document)


def _credentials(
    authorization: str | None, form: Mapping[str, Any]
) -> tuple[str | None, str | None]:
    """client_secret_basic, else client_secret_post."""
    if authorization and authorization.lower().startswith("basic "):
        try:
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
        except ValueError:
            return None, None
        return user, password
    client_id, secret = form.get("client_id"), form.get("client_secret")
    return (str(client_id) if client_id else None), (str(secret) if secret else None)


def _basic(client_id: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{DEMO_CLIENTS[client_id]}".encode()).decode()


async def run_demo(*, port: int, admin_port: int, once: bool = False) -> None:
    """Start everything, show one answer of each kind, serve until Ctrl-C (or stop if ``once``)."""
    workdir = Path(tempfile.mkdtemp(prefix="sidecar-demo-"))
    keys_file = workdir / "jwks.json"
    keys_file.write_text(key_set_json([generate_key("ES256", kid="demo-es256")], private=True))
    keys_file.chmod(0o600)

    legacy_runner = web.AppRunner(create_legacy_as(), access_log=None)
    await legacy_runner.setup()
    legacy_site = web.TCPSite(legacy_runner, "127.0.0.1", 0)
    await legacy_site.start()
    legacy_port = int(legacy_runner.addresses[0][1])

    config = build_config(
        {
            "issuer": ISSUER,
            "listen": {"host": "127.0.0.1", "port": port},
            "admin": {"host": "127.0.0.1", "port": admin_port},
            "upstream": {"url": f"http://127.0.0.1:{legacy_port}"},
            "signing": {"keys_file": str(keys_file)},
            "clients": {"rs-payments": {"audience": "https://payments.demo.example"}},
            # Not in a pod: nothing routes traffic here that would need a drain period.
            "shutdown": {"drain_seconds": 0},
        },
        environ={},
    )

    async def show(server: Server) -> None:
        await _show_samples(server.proxy_port, server.admin_port, config.jwks.path)
        if once:
            raise _DemoDone
        print("\nServing until Ctrl-C.", flush=True)

    try:
        await serve(config, on_started=show)
    except _DemoDone:
        pass
    except StartupError as exc:
        raise StartupError(f"{exc} (choose other ports with --port and --admin-port)") from None
    finally:
        await legacy_runner.cleanup()


class _DemoDone(Exception):
    """``--once``: the samples are shown, stop."""


async def _show_samples(port: int, admin_port: int, jwks_path: str) -> None:
    """Send the three sample requests and print what came back, decoded and verified."""
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/token/introspect"
    async with aiohttp.ClientSession() as session:
        async with session.get(base + jwks_path) as response:
            key_set = jwk.JWKSet.from_json(await response.text())
        samples = [
            ("plain JSON (legacy callers, no Accept)", {}, "rs-demo", "demo-active-token"),
            ("RFC 9701 (Accept: application/token-introspection+jwt)",
             {"Accept": "application/token-introspection+jwt"}, "rs-demo", "demo-active-token"),
            ("draft-08 (Accept: application/jwt)",
             {"Accept": "application/jwt"}, "rs-payments", "demo-payments-token"),
            ("RFC 9701, a revoked token: nothing but active=false",
             {"Accept": "application/token-introspection+jwt"}, "rs-demo", "demo-revoked-token"),
        ]  # fmt: skip
        print(f"\nThe sidecar listens on {base}, in front of a built-in legacy AS.\n")
        for title, headers, client_id, token in samples:
            async with session.post(
                url, data={"token": token}, headers={**headers, "Authorization": _basic(client_id)}
            ) as response:
                body = await response.read()
                print(f"== {title}")
                print(
                    f"   HTTP {response.status}  Content-Type: {response.headers['Content-Type']}"
                )
                if response.headers["Content-Type"].startswith("application/json"):
                    print(_indent(json.dumps(json.loads(body), indent=2)))
                else:
                    print(_describe_jwt(body.decode(), key_set))
                print()
    secret = DEMO_CLIENTS["rs-demo"]
    print("Try it yourself:")
    print(f"  curl -s {url} -u rs-demo:{secret} -d token=demo-active-token")
    print(
        f"  curl -s {url} -u rs-demo:{secret} -d token=demo-active-token "
        "-H 'Accept: application/token-introspection+jwt'"
    )
    print(f"  curl -s {url} -u rs-demo:{secret} -d token=demo-active-token \\")
    print("       -H 'Accept: application/jwt'")
    print(f"  curl -s {base}{jwks_path}")
    print(f"  curl -s http://127.0.0.1:{admin_port}/metrics | grep ^sidecar_")


def _describe_jwt(token: str, key_set: jwk.JWKSet) -> str:
    """The JWT's header and claims, pretty, with the signature verified against the JWK Set."""
    header_segment, payload_segment, _ = token.split(".")
    header = json.loads(b64url_decode(header_segment))
    claims = json.loads(b64url_decode(payload_segment))
    verifier = jws.JWS()
    verifier.deserialize(token)
    verifier.verify(key_set.get_key(header["kid"]), alg=header["alg"])
    lines = [
        f"   {token[:60]}...",
        "   header:",
        _indent(json.dumps(header, indent=2), 6),
        "   claims:",
        _indent(json.dumps(claims, indent=2), 6),
        f"   signature verified against the published JWK Set (kid {header['kid']})",
    ]
    return "\n".join(lines)


def _indent(text: str, width: int = 3) -> str:
    return "\n".join(" " * width + line for line in text.splitlines())
