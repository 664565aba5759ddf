"""The servers of one run: upstream stand-in, reference proxy, sidecar (or a stand-in for it)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import material
from jwcrypto import jwk
from processes import CpuLayout, Server, free_port, start_server, wait_listening, wait_ready

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent


@dataclass(slots=True)
class Lab:
    """Running servers by role, the URL each answers introspection on, and the keys to check."""

    layout: CpuLayout
    target: str  # "sidecar", or "refproxy" when the sidecar is not importable yet
    log_dir: Path
    work_dir: Path
    keys: material.KeyMaterial
    stack: contextlib.ExitStack
    servers: dict[str, Server] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    upstream_of: dict[str, str] = field(default_factory=dict)  # role -> role of its upstream
    verify_keys: dict[str, jwk.JWKSet] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)
    metrics_urls: dict[str, str] = field(default_factory=dict)  # sidecar role -> admin /metrics

    def add(self, role: str, server: Server, path: str, upstream_role: str | None) -> None:
        """Register a started server; it is stopped when the lab's stack unwinds."""
        self.stack.callback(server.stop)
        self.servers[role] = server
        self.urls[role] = f"http://127.0.0.1:{server.port}{path}"
        if upstream_role:
            self.upstream_of[role] = upstream_role
        self.verify_keys.setdefault(role, self.keys.signing_public)
        self.commands[role] = [str(part) for part in server.process.args]


def sidecar_importable() -> bool:
    """True when `python -m sidecar` can run from the repository root."""
    probe = (
        "import importlib.util, sys; sys.exit(importlib.util.find_spec('sidecar.__main__') is None)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_DIR, capture_output=True, check=False
    )
    return done.returncode == 0


def clean_environment() -> dict[str, str]:
    """This environment minus SIDECAR_* variables, which would override the generated config."""
    return {name: value for name, value in os.environ.items() if not name.startswith("SIDECAR_")}


def start_upstream(lab: Lab) -> None:
    """The fast legacy-AS stand-in, on the upstream core."""
    port = free_port()
    command = [sys.executable, str(BENCH_DIR / "upstream.py"), "--port", str(port)]
    server = start_server(
        "upstream", command, port=port, cpu=lab.layout.upstream, log_dir=lab.log_dir
    )
    lab.add("upstream", server, material.INTROSPECTION_PATH, None)
    wait_listening(server)


def start_refproxy(lab: Lab, role: str, upstream_role: str, loop: str, path: str) -> None:
    """The ~20-line aiohttp forwarding proxy, on the server core."""
    port = free_port()
    upstream = lab.servers[upstream_role]
    command = [
        sys.executable,
        str(BENCH_DIR / "refproxy.py"),
        "--port",
        str(port),
        "--upstream",
        f"http://127.0.0.1:{upstream.port}",
        "--loop",
        loop,
    ]
    server = start_server(role, command, port=port, cpu=lab.layout.server, log_dir=lab.log_dir)
    lab.add(role, server, path, upstream_role)
    wait_listening(server)


def start_sidecar(lab: Lab, role: str, upstream_role: str, config: dict[str, object]) -> None:
    """`python -m sidecar run --config FILE`, one process on the server core, until /readyz."""
    config_path = material.write_config(lab.work_dir / f"{role}.yaml", config)
    (lab.log_dir / f"{role}.yaml").write_text(config_path.read_text())  # kept with the results
    listen = config["listen"]
    admin = config["admin"]
    introspection = config["introspection"]
    assert isinstance(listen, dict) and isinstance(admin, dict) and isinstance(introspection, dict)
    command = [sys.executable, "-m", "sidecar", "run", "--config", str(config_path)]
    server = start_server(
        role,
        command,
        port=listen["port"],
        cpu=lab.layout.server,
        log_dir=lab.log_dir,
        cwd=REPO_DIR,
        env=clean_environment(),
    )
    lab.add(role, server, str(introspection["path"]), upstream_role)
    lab.metrics_urls[role] = f"http://127.0.0.1:{admin['port']}/metrics"
    wait_listening(server, timeout=30)
    if not wait_ready(f"http://127.0.0.1:{admin['port']}/readyz"):
        print(f"warning: {role} /readyz did not answer 200; measuring anyway", file=sys.stderr)


def start_target(
    lab: Lab,
    role: str,
    upstream_role: str,
    *,
    issuer: str,
    path: str,
    clients: dict[str, dict[str, object]] | None,
    ref_loop: str,
) -> None:
    """The proxy under test: the sidecar, or in degraded mode a second reference proxy."""
    if lab.target != "sidecar":
        start_refproxy(lab, role, upstream_role, ref_loop, path)
        return
    upstream = lab.servers[upstream_role]
    config = material.sidecar_config(
        issuer=issuer,
        listen_port=free_port(),
        admin_port=free_port(),
        upstream_url=f"http://127.0.0.1:{upstream.port}",
        keys=lab.keys,
        introspection_path=path,
        clients=clients,
    )
    start_sidecar(lab, role, upstream_role, config)


def resolve_target(requested: str) -> str:
    """`auto` picks the sidecar once it is importable, else the reference-proxy stand-in."""
    if requested == "auto":
        return "sidecar" if sidecar_importable() else "refproxy"
    if requested == "sidecar" and not sidecar_importable():
        raise SystemExit("--target sidecar: `python -m sidecar` is not importable from the repo")
    return requested


def importlib_has(module: str) -> bool:
    """Whether an optional module (uvloop, matplotlib) is installed."""
    return importlib.util.find_spec(module) is not None
