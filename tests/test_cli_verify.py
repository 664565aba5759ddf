"""``sidecar verify`` on real answers: the real CLI as a subprocess, and ``main()`` for tables."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import ACTIVE_ANSWER, DRAFT08, ISSUER, RFC9701, Running
from interophelpers import public_jwk, requires_node
from nodeinterop import JWT_MEDIA_TYPE, NodeProvider

from sidecar.cli import main
from sidecar.keys import load_key_ring
from sidecar.tokens import encode_claims

Result = tuple[int, str, str]


async def run_cli(*args: str, stdin: bytes | None = None) -> Result:
    """Run ``python -m sidecar verify ARGS``; exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar", "verify", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(stdin or b""), 30)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def b64(data: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def printed(stdout: str, title: str) -> dict[str, Any]:
    """The JSON block printed after ``title:``."""
    start = stdout.index(f"{title}: ") + len(title) + 2
    document, _ = json.JSONDecoder().raw_decode(stdout[start:])
    assert isinstance(document, dict)
    return document


@pytest.fixture
async def jwks_file(sidecar: Running, tmp_path: Path) -> Path:
    """The sidecar's published JWK Set, saved to a file."""
    path = tmp_path / "as-jwks.json"
    path.write_text(json.dumps(await sidecar.public_jwks()))
    return path


def signed_by_sidecar_key(keys_file: Path, claims: dict[str, Any], typ: str = "") -> str:
    """A JWT signed with the sidecar's active key, for claims the sidecar would never make."""
    ring = load_key_ring(keys_file, active_kid=None, typ=typ or "token-introspection+jwt")
    return ring.active.signer.sign(encode_claims(claims)).decode()


async def test_valid_answer_from_argument_stdin_and_file(
    sidecar: Running, jwks_file: Path, tmp_path: Path
) -> None:
    """A sidecar answer is valid whether given as argument, on stdin or in a file: exit 0."""
    _, _, body = await sidecar.introspect(accept=RFC9701)
    token_file = tmp_path / "answer.jwt"
    token_file.write_bytes(body + b"\n")
    common = ("--jwks", str(jwks_file), "--issuer", ISSUER, "--audience", "rs-1")
    results = await asyncio.gather(
        run_cli(body.decode(), *common),
        run_cli(*common, "--alg", "ES256", stdin=body),
        run_cli("--file", str(token_file), *common),
    )
    for code, stdout, stderr in results:
        assert (code, stderr) == (0, ""), stdout
        assert stdout.startswith("valid\n")
        assert printed(stdout, "header")["alg"] == "ES256"
        assert printed(stdout, "claims")["token_introspection"] == ACTIVE_ANSWER


async def test_jwks_uri_and_draft08(sidecar: Running) -> None:
    """--jwks-uri fetches the sidecar's JWK Set; --draft08 verifies the flat shape."""
    _, _, body = await sidecar.introspect(accept=DRAFT08)
    jwks_uri = sidecar.url + sidecar.server.config.jwks.path
    common = ("--jwks-uri", jwks_uri, "--issuer", ISSUER, "--audience", "rs-1")
    flat, nested = await asyncio.gather(
        run_cli(body.decode(), *common, "--draft08"), run_cli(body.decode(), *common)
    )
    assert flat[0] == 0 and printed(flat[1], "claims")["sub"] == "alice"
    assert nested[0] == 1 and nested[1].startswith("invalid: malformed: token_introspection")


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """Run ``sidecar verify ARGS`` in this process; exit code, stdout, stderr."""
    try:
        code = main(["verify", *args])
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def forge(keys_file: Path, case: str) -> str:
    """An answer that must be refused, signed with the sidecar's own key where a key is used."""
    claims = {"iss": ISSUER, "aud": "rs-1", "iat": int(time.time()),
              "token_introspection": {"active": True}}  # fmt: skip
    body = b64(json.dumps(claims).encode())
    if case == "stale":
        return signed_by_sidecar_key(keys_file, {**claims, "iat": claims["iat"] - 3600})
    if case == "access-token-typ":
        return signed_by_sidecar_key(keys_file, claims, typ="at+jwt")
    if case == "alg-none":
        none_head = b64(b'{"alg":"none","typ":"token-introspection+jwt"}')
        return f"{none_head}.{body}."
    # HS256 keyed with the AS's public JWK Set: the confusion attack of RFC 8725 §2.1.
    head = b64(b'{"alg":"HS256","kid":"es256-key","typ":"token-introspection+jwt"}')
    secret = tmp_public_jwks(keys_file).read_bytes()
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256)
    return f"{head}.{body}.{b64(mac.digest())}"


@pytest.mark.parametrize(
    ("case", "reason"),
    [("stale", "stale"), ("access-token-typ", "unexpected_type"),
     ("alg-none", "disallowed_algorithm"), ("hs256-with-key-bytes", "disallowed_algorithm")],
)  # fmt: skip
def test_forged_answers_are_invalid(
    capsys: pytest.CaptureFixture[str], keys_file: Path, case: str, reason: str
) -> None:
    """Stale, access-token-typed, unsigned and HS256-confused answers exit 1 with the reason."""
    public = tmp_public_jwks(keys_file)
    code, stdout, _ = run_main(
        capsys, forge(keys_file, case), "--jwks", str(public), "--issuer", ISSUER,
        "--audience", "rs-1",
    )  # fmt: skip
    assert (code, stdout.split(":")[:2]) == (1, ["invalid", f" {reason}"]), stdout
    assert "claims:" not in stdout


def test_any_age_accepts_an_old_answer(capsys: pytest.CaptureFixture[str], keys_file: Path) -> None:
    """--any-age turns the iat freshness check off, for answers kept for later inspection."""
    code, stdout, _ = run_main(
        capsys, forge(keys_file, "stale"), "--jwks", str(tmp_public_jwks(keys_file)),
        "--issuer", ISSUER, "--audience", "rs-1", "--any-age",
    )  # fmt: skip
    assert code == 0 and stdout.startswith("valid\n")


def tmp_public_jwks(keys_file: Path) -> Path:
    """The public JWK Set of the sidecar's key file, next to it."""
    ring = load_key_ring(keys_file, active_kid=None, typ="token-introspection+jwt")
    path = keys_file.with_name("public-jwks.json")
    path.write_bytes(ring.jwks_json)
    return path


@pytest.mark.parametrize(
    ("changes", "reason"),
    [({"audience": "rs-2"}, "wrong_audience"), ({"issuer": "https://other"}, "wrong_issuer"),
     ({"alg": "RS256"}, "disallowed_algorithm"), ({"typ": "at+jwt"}, "unexpected_type"),
     ({"tamper": "yes"}, "bad_signature")],
)  # fmt: skip
async def test_sidecar_answer_checked_against_other_expectations(
    sidecar: Running,
    jwks_file: Path,
    capsys: pytest.CaptureFixture[str],
    changes: dict[str, str],
    reason: str,
) -> None:
    """A genuine sidecar answer is invalid for another audience, issuer, alg or typ, or tampered."""
    _, _, body = await sidecar.introspect(accept=RFC9701)
    token = body.decode()
    if changes.pop("tamper", None):
        head, payload, signature = token.split(".")
        token = f"{head}.{payload[:-4]}AAAA.{signature}"
    options = {"issuer": ISSUER, "audience": "rs-1", **changes}
    args = [f"--{name}={value}" for name, value in options.items()]
    code, stdout, _ = run_main(capsys, token, "--jwks", str(jwks_file), *args)
    assert code == 1 and stdout.startswith(f"invalid: {reason}: "), stdout
    assert token not in stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [("--jwks={jwks} --audience=A", "--issuer"),
     ("--jwks={jwks} --jwks-uri=http://127.0.0.1:9/ --issuer=I --audience=A", "not allowed with"),
     ("--jwks={missing} --issuer=I --audience=A", "cannot read"),
     ("--jwks={jwks} --issuer=I --audience=A --alg=HS256", "HS256"),
     ("--jwks={jwks} --issuer=I --audience=A --max-age=soon", "--max-age"),
     ("--jwks={jwks} --issuer=I --audience=A --file={missing}", "cannot read"),
     ("--jwks={jwks} --issuer=I --audience=A --decrypt-key={not_json}", "not JSON")],
)  # fmt: skip
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], keys_file: Path, args: str, message: str
) -> None:
    """Missing or conflicting options, unreadable files and unsafe algs are usage errors."""
    not_json = keys_file.with_name("not.json")
    not_json.write_text("{oops")
    paths = {"jwks": tmp_public_jwks(keys_file), "missing": keys_file.with_name("missing"),
             "not_json": not_json}  # fmt: skip
    code, stdout, stderr = run_main(capsys, "a.b.c", *args.format(**paths).split())
    assert (code, stdout) == (2, "")
    assert message in stderr


async def test_exit_codes_of_the_real_command(sidecar: Running, jwks_file: Path) -> None:
    """The console command exits 1 for an invalid answer or unreachable keys, 2 for usage."""
    _, _, body = await sidecar.introspect(accept=RFC9701)
    who = ("--issuer", ISSUER, "--audience", "rs-2")
    invalid, no_keys, usage = await asyncio.gather(
        run_cli(body.decode(), "--jwks", str(jwks_file), *who),
        run_cli(body.decode(), "--jwks-uri", "http://127.0.0.1:9/jwks", *who),
        run_cli(body.decode(), *who),
    )
    assert invalid[0] == 1 and invalid[1].startswith("invalid: wrong_audience: ")
    assert no_keys[0] == 1 and no_keys[1].startswith("invalid: jwks_unavailable: ")
    assert usage[0] == 2 and "--jwks" in usage[2] and "Traceback" not in usage[2]


@pytest.fixture(scope="module")
def provider() -> Iterator[NodeProvider]:
    """node-oidc-provider with its default clients."""
    with NodeProvider() as started:
        yield started


@requires_node
async def test_provider_native_answers(provider: NodeProvider, tmp_path: Path) -> None:
    """The provider's own JWS, and its nested JWE given --decrypt-key, are valid."""
    async with aiohttp.ClientSession() as session:
        token = await provider.get_token(session)
        _, _, signed = await provider.introspect(session, token, "rs-eddsa", accept=JWT_MEDIA_TYPE)
        _, _, nested = await provider.introspect(session, token, "rs-enc", accept=JWT_MEDIA_TYPE)
    key_file = tmp_path / "rs-enc.jwk"
    key_file.write_text(json.dumps(provider.decrypt_key("rs-enc")))
    public_file = tmp_path / "rs-enc.public.jwk"
    public_file.write_text(json.dumps(public_jwk(provider.decrypt_key("rs-enc"))))
    common = ("--jwks-uri", provider.base_url + "/jwks", "--issuer", provider.issuer)
    jws, jwe, no_key = await asyncio.gather(
        run_cli(signed.decode(), *common, "--audience", "rs-eddsa", "--alg", "EdDSA"),
        run_cli(nested.decode(), *common, "--audience", "rs-enc", "--decrypt-key", str(key_file),
                "--require-encryption"),
        run_cli(nested.decode(), *common, "--audience", "rs-enc", "--decrypt-key",
                str(public_file)),
    )  # fmt: skip
    assert jws[0] == 0 and printed(jws[1], "header")["alg"] == "EdDSA"
    assert jwe[0] == 0, jwe[1]
    assert printed(jwe[1], "encryption header")["cty"] == "JWT"
    assert printed(jwe[1], "claims")["token_introspection"]["active"] is True
    assert no_key[0] == 1 and no_key[1].startswith("invalid: decryption_failed: ")
