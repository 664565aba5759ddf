"""The real command line, run as a subprocess: check-config, run failures, keygen, demo."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import private_jwks

from sidecar.keys import PRIVATE_MEMBERS, SIGNING_ALGS

SIDECAR = [sys.executable, "-m", "sidecar"]


def run_cli(
    *args: str, timeout: float = 30, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SIDECAR, *args], capture_output=True, text=True, timeout=timeout, input=stdin,
        env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def write_config(tmp_path: Path, document: dict[str, Any]) -> Path:
    path = tmp_path / "sidecar.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def valid(tmp_path: Path) -> dict[str, Any]:
    keys = tmp_path / "jwks.json"
    keys.write_text(private_jwks("ES256", "RS256"))
    return {
        "issuer": "https://as.example.com",
        "listen": {"host": "127.0.0.1", "port": 0},
        "admin": {"host": "127.0.0.1", "port": 0},
        "upstream": {"url": "http://127.0.0.1:9"},
        "signing": {"keys_file": str(keys)},
    }


def assert_clean_failure(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_check_config_ok(tmp_path: Path, valid: dict[str, Any]) -> None:
    """check-config exits 0 and summarises a valid config and key file."""
    result = run_cli("check-config", "--config", str(write_config(tmp_path, valid)))
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout and "es256-key (ES256)" in result.stdout


def test_check_config_lists_every_problem(tmp_path: Path, valid: dict[str, Any]) -> None:
    """check-config prints each problem with its YAML path and exits 2."""
    valid["upstream"]["timeout"] = "fast"
    valid["colour"] = "blue"
    valid["listen"]["port"] = -1
    result = run_cli("check-config", "--config", str(write_config(tmp_path, valid)))
    assert_clean_failure(
        result,
        "3 configuration problem(s)",
        "upstream.timeout: expected a number of seconds (more than zero), got 'fast'",
        "colour: unknown key",
        "listen.port: expected a port number 0-65535, got -1",
    )


def test_check_config_reads_sidecar_config_env(tmp_path: Path, valid: dict[str, Any]) -> None:
    """Without --config, $SIDECAR_CONFIG names the file."""
    path = write_config(tmp_path, valid)
    result = subprocess.run(
        [*SIDECAR, "check-config"], capture_output=True, text=True, timeout=30,
        env={"PATH": "/usr/bin:/bin", "SIDECAR_CONFIG": str(path)}, cwd=tmp_path.parent,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", ["run", "check-config"])
@pytest.mark.parametrize(
    ("keys", "needle"),
    [
        (None, "signing.keys_file: cannot read"),
        ('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "symmetric"),
        ("not a key", "neither a JWK Set"),
    ],
)
def test_bad_key_file_exits_2(
    tmp_path: Path, valid: dict[str, Any], command: str, keys: str | None, needle: str
) -> None:
    """An unreadable or unsafe key file stops run and check-config with one clear line."""
    key_path = Path(valid["signing"]["keys_file"])
    if keys is None:
        key_path.unlink()
    else:
        key_path.write_text(keys)
    result = run_cli(command, "--config", str(write_config(tmp_path, valid)))
    assert_clean_failure(result, needle)


def test_run_with_bad_config_exits_2(tmp_path: Path, valid: dict[str, Any]) -> None:
    """run refuses to start on a bad config, listing the problems."""
    del valid["issuer"]
    result = run_cli("run", "--config", str(write_config(tmp_path, valid)))
    assert_clean_failure(result, "issuer: required")


def test_run_with_missing_config_exits_2(tmp_path: Path) -> None:
    """run with a config file that does not exist says so and exits 2."""
    result = run_cli("run", "--config", str(tmp_path / "absent.yaml"))
    assert_clean_failure(result, "absent.yaml: cannot read the configuration file")


def test_run_port_in_use_exits_2(tmp_path: Path, valid: dict[str, Any]) -> None:
    """A port already in use is one clear line naming it, exit 2."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        valid["listen"]["port"] = port
        result = run_cli("run", "--config", str(write_config(tmp_path, valid)))
    assert_clean_failure(
        result, f"listen: cannot listen on 127.0.0.1:{port}: address already in use"
    )


@pytest.mark.parametrize("alg", SIGNING_ALGS)
def test_keygen(tmp_path: Path, alg: str) -> None:
    """keygen prints a private JWK Set for each alg that the sidecar then loads."""
    result = run_cli("keygen", "--alg", alg)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    (key,) = document["keys"]
    assert key["alg"] == alg and key["use"] == "sig" and key["kid"]
    assert "d" in key
    from sidecar.keys import parse_key_ring

    ring = parse_key_ring(result.stdout.encode(), active_kid=None, typ="t", source="stdout")
    assert ring.active.alg == alg


def test_keygen_kid_bits_and_public(tmp_path: Path) -> None:
    """--kid names the key, --bits sizes RSA, --public prints only public members."""
    result = run_cli("keygen", "--alg", "PS256", "--kid", "2026-12", "--bits", "3072")
    key = json.loads(result.stdout)["keys"][0]
    assert key["kid"] == "2026-12"
    private_file = tmp_path / "private.json"
    private_file.write_text(result.stdout)
    public = run_cli("keygen", "--public", str(private_file))
    assert public.returncode == 0
    (public_key,) = json.loads(public.stdout)["keys"]
    assert public_key["kid"] == "2026-12" and public_key["n"] == key["n"]
    assert not PRIVATE_MEMBERS & set(public_key)
    from_stdin = run_cli("keygen", "--public", "-", stdin=result.stdout)
    assert json.loads(from_stdin.stdout) == json.loads(public.stdout)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["keygen"], "keygen needs --alg"),
        (["keygen", "--alg", "RS256", "--bits", "1024"], "at least 2048"),
        (["keygen", "--public", "/nonexistent"], "cannot read /nonexistent"),
    ],
)
def test_keygen_errors(args: list[str], needle: str) -> None:
    """keygen's usage errors are one clear line and exit 2."""
    assert_clean_failure(run_cli(*args), needle)


def test_keygen_refuses_hs256() -> None:
    """keygen offers no symmetric algorithm."""
    result = run_cli("keygen", "--alg", "HS256")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_demo_once() -> None:
    """The demo shows a JSON, an RFC 9701 and a draft-08 answer, decoded and verified."""
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        ports = [str(a.getsockname()[1]), str(b.getsockname()[1])]
    result = run_cli("demo", "--once", "--port", ports[0], "--admin-port", ports[1], timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "plain JSON" in out and "RFC 9701" in out and "draft-08" in out
    assert '"token_introspection": {' in out
    assert out.count("signature verified against the published JWK Set") == 3
    assert f"curl -s http://127.0.0.1:{ports[0]}/token/introspect" in out


def test_python_dash_m_and_version() -> None:
    """python -m sidecar works and reports its version."""
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("sidecar ")
