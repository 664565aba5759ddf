"""``sidecar keygen``: every alg, RFC 7638 kids, the public set; one run of the real CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import import_key

from sidecar.cli import main
from sidecar.keys import PRIVATE_MEMBERS, SIGNING_ALGS, parse_key_ring

SIDECAR = [sys.executable, "-m", "sidecar"]


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion."""
    return subprocess.run(
        [*SIDECAR, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def keygen(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    """``sidecar keygen ARGS`` in-process (the subprocess smoke test covers the entry point)."""
    assert main(["keygen", *args]) == 0
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


@pytest.mark.parametrize("alg", SIGNING_ALGS)
def test_keygen_makes_a_usable_key_with_a_thumbprint_kid(
    capsys: pytest.CaptureFixture[str], alg: str
) -> None:
    """Each alg yields one private key, kid = RFC 7638 thumbprint (per joserfc), that loads."""
    document = keygen(capsys, "--alg", alg)
    (key,) = document["keys"]
    assert key["alg"] == alg and key["use"] == "sig" and "d" in key
    assert key["kid"] == import_key(key).thumbprint()
    if alg[:2] in ("RS", "PS"):
        assert len(key["n"]) == 342  # 2048 bits, base64url
    ring = parse_key_ring(json.dumps(document).encode(), active_kid=None, typ="JWT", source="k")
    assert ring.active.alg == alg and ring.active.kid == key["kid"]


def test_keygen_kid_option(capsys: pytest.CaptureFixture[str]) -> None:
    """--kid names the key."""
    document = keygen(capsys, "--alg", "EdDSA", "--kid", "2025-06-signing")
    assert document["keys"][0]["kid"] == "2025-06-signing"


def test_keygen_then_public_through_the_real_cli(tmp_path: Path) -> None:
    """Smoke test of the entry point: keygen's output, fed to --public, gives the public set."""
    generated = run("keygen", "--alg", "ES384", "--kid", "smoke")
    assert generated.returncode == 0, generated.stderr
    public = run("keygen", "--public", "-", stdin=generated.stdout)
    assert public.returncode == 0, public.stderr
    (key,) = json.loads(public.stdout)["keys"]
    assert key["kid"] == "smoke" and key["alg"] == "ES384" and "d" not in key


def test_public_set_matches_what_the_sidecar_publishes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--public prints the public members of every key, as the JWK Set endpoint would."""
    private = {
        "keys": [keygen(capsys, "--alg", alg)["keys"][0] for alg in ("ES256", "PS256", "EdDSA")]
    }
    path = tmp_path / "private.json"
    path.write_text(json.dumps(private))
    public = keygen(capsys, "--public", str(path))
    ring = parse_key_ring(path.read_bytes(), active_kid=None, typ="JWT", source="test")
    assert public == json.loads(ring.jwks_json)
    assert [key["kid"] for key in public["keys"]] == [key["kid"] for key in private["keys"]]
    for key in public["keys"]:
        assert not PRIVATE_MEMBERS & key.keys()
        assert key["use"] == "sig"


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("--alg", "RS256", "--bits", "1024"), None, "at least 2048 bits"),
        ((), None, "keygen needs --alg"),
        (("--public", "/nonexistent.json"), None, "cannot read /nonexistent.json"),
        (("--public", "-"), '{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "symmetric"),
        (("--public", "-"), "not json", "neither a JWK Set"),
    ],
)
def test_keygen_errors_exit_2(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    stdin: str | None,
    message: str,
) -> None:
    """Bad keygen input: one clear line, exit 2, no traceback, no key material echoed."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO((stdin or "").encode())))
    assert main(["keygen", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.splitlines()) == 1
    assert "c2VjcmV0" not in err
