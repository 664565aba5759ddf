"""`--with-provider`: node-oidc-provider (interop/provider.mjs) as upstream and as reference.

The same provider process plays both roles for the same token (see interop/provider.mjs):
without the RFC 9701 Accept header it answers RFC 7662 JSON (the sidecar's upstream), with
it its own signed JWT (the native reference). It runs on the upstream core, like the
legacy-AS stand-in, so native and sidecar-fronted runs share that core with wrk alike.
"""

from __future__ import annotations

import base64
import json
import select
import shutil
import time
import urllib.parse
import urllib.request
from typing import Any

from jwcrypto import jwk
from lab import REPO_DIR, Lab, start_target
from processes import free_port, start_server, wait_listening

INTEROP_DIR = REPO_DIR / "interop"
PROVIDER_SCRIPT = INTEROP_DIR / "provider.mjs"
PROVIDER_INTROSPECTION_PATH = "/token/introspection"  # oidc-provider's default route
TOKEN_CLIENT = ("app", "app-secret")  # provider.mjs defaultClients(): client_credentials
RESOURCE_CLIENT = "rs-es256"  # provider.mjs defaultClients(): introspection signed with ES256


def skip_reason() -> str | None:
    """Why the provider scenarios cannot run here, or None when they can."""
    if not (INTEROP_DIR / "node_modules").is_dir():
        return "interop/node_modules missing (run `npm ci` in interop/)"
    if not PROVIDER_SCRIPT.is_file():
        return "interop/provider.mjs missing"
    if shutil.which("node") is None:
        return "node is not installed"
    return None


def read_ready_line(lab: Lab, timeout: float = 30.0) -> dict[str, Any]:
    """provider.mjs prints one JSON line on stdout once it listens."""
    process = lab.servers["provider"].process
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if ready else b""
    if not line:
        raise RuntimeError(
            f"provider.mjs gave no ready line:\n{lab.servers['provider'].log_tail()}"
        )
    descriptor: dict[str, Any] = json.loads(line)
    return descriptor


def client_credentials_token(base_url: str) -> str:
    """An opaque access token from the provider's token endpoint (client_credentials)."""
    pair = base64.b64encode(f"{TOKEN_CLIENT[0]}:{TOKEN_CLIENT[1]}".encode()).decode()
    request = urllib.request.Request(  # noqa: S310 (loopback URL)
        f"{base_url}/token",
        data=urllib.parse.urlencode({"grant_type": "client_credentials", "scope": "read"}).encode(),
        headers={"Authorization": f"Basic {pair}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        token: str = json.load(answer)["access_token"]
    return token


def start_provider_pair(lab: Lab, ref_loop: str) -> tuple[str, str]:
    """Start the provider and a sidecar in front of it; return (token, resource-client secret)."""
    config_path = lab.work_dir / "provider.json"
    config_path.write_text(json.dumps({"port": free_port()}))
    port = json.loads(config_path.read_text())["port"]
    server = start_server(
        "provider",
        ["node", str(PROVIDER_SCRIPT), str(config_path)],
        port=port,
        cpu=lab.layout.upstream,
        log_dir=lab.log_dir,
        stdout=-1,  # subprocess.PIPE: the ready line
    )
    lab.add("provider", server, PROVIDER_INTROSPECTION_PATH, None)
    descriptor = read_ready_line(lab)
    wait_listening(server)
    lab.verify_keys["provider"] = jwk.JWKSet.from_json(json.dumps(descriptor["jwks"]))
    base_url = f"http://127.0.0.1:{descriptor['port']}"
    started = time.monotonic()
    token = client_credentials_token(base_url)
    print(f"provider ready, token issued in {time.monotonic() - started:.2f}s")
    start_target(
        lab,
        "provider-sidecar",
        "provider",
        issuer=descriptor["issuer"],
        path=PROVIDER_INTROSPECTION_PATH,
        clients={RESOURCE_CLIENT: {"signed_response_alg": "ES256"}},
        ref_loop=ref_loop,
    )
    secret: str = descriptor["clients"][RESOURCE_CLIENT]["client_secret"]
    return token, secret
