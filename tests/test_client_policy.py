"""Per-client policy: the signing algorithm a client asks for, and the require_jwt guard."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import DRAFT08, ISSUER, RFC9701, FakeAS, basic, private_jwks, verify_jwt

from sidecar.server import StartupError

POLICIES = {
    "rs-rsa": {"signed_response_alg": "RS256"},
    "rs-ps": {"signed_response_alg": "PS384"},
    "rs-guarded": {"require_jwt": True},
}


@pytest.fixture
def policy_keys(tmp_keys: Any) -> Path:
    """A key file: ES256 (active), RS256, PS384."""
    path: Path = tmp_keys("ES256", "RS256", "PS384")
    return path


@pytest.fixture
async def running(make_config: Any, start_sidecar: Any, policy_keys: Path) -> Any:
    """The sidecar with ``POLICIES``."""
    return await start_sidecar(
        make_config({"signing": {"keys_file": str(policy_keys)}, "clients": POLICIES})
    )


@pytest.mark.parametrize(
    ("client", "alg", "kid"),
    [
        ("rs-rsa", "RS256", "rs256-key"),
        ("rs-ps", "PS384", "ps384-key"),
        ("rs-guarded", "ES256", "es256-key"),
        ("rs-unlisted", "ES256", "es256-key"),
    ],
)
async def test_answer_is_signed_with_the_clients_alg(
    running: Any, client: str, alg: str, kid: str
) -> None:
    """A client's signed_response_alg picks the key; others get the active key."""
    for accept in (RFC9701, DRAFT08):
        status, _, body = await running.introspect(client=client, accept=accept)
        assert status == 200
        header, claims = verify_jwt(body, await running.public_jwks(), audience=client)
        assert (header["alg"], header["kid"]) == (alg, kid)
        assert claims["iss"] == ISSUER


async def test_signing_metric_is_labelled_by_alg(running: Any) -> None:
    """The signing histogram counts answers under the algorithm that signed them."""
    await running.introspect(client="rs-ps")
    count = running.sample("sidecar_signing_duration_seconds_count", {"alg": "PS384"})
    assert count == 1


async def test_missing_alg_stops_the_start(
    make_config: Any, start_sidecar: Any, policy_keys: Path
) -> None:
    """A signed_response_alg no key in the file signs with is a start-up error naming it."""
    config = make_config(
        {
            "signing": {"keys_file": str(policy_keys)},
            "clients": {"rs-x": {"signed_response_alg": "EdDSA"}},
        }
    )
    with pytest.raises(StartupError, match=r"clients\.rs-x\.signed_response_alg \(EdDSA\)"):
        await start_sidecar(config)


def _write_config(tmp_path: Path, keys: Path, clients: dict[str, Any]) -> Path:
    """A sidecar.yaml for the CLI."""
    path = tmp_path / "cli.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "issuer": ISSUER,
                "listen": {"host": "127.0.0.1", "port": 0},
                "admin": {"host": "127.0.0.1", "port": 0},
                "upstream": {"url": "http://127.0.0.1:9"},
                "signing": {"keys_file": str(keys)},
                "clients": clients,
            }
        )
    )
    return path


@pytest.mark.parametrize("command", ["run", "check-config"])
def test_cli_exits_2_for_a_missing_client_alg(tmp_path: Path, command: str) -> None:
    """``sidecar run`` and ``check-config`` exit 2 and name clients.<id>.signed_response_alg."""
    keys = tmp_path / "keys.json"
    keys.write_text(private_jwks("ES256", "RS256"))
    config = _write_config(tmp_path, keys, {"rs-x": {"signed_response_alg": "ES512"}})
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", command, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "clients.rs-x.signed_response_alg (ES512)" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_accepts_available_algs(tmp_path: Path) -> None:
    """``check-config`` passes when every client's alg has a key."""
    keys = tmp_path / "keys.json"
    keys.write_text(private_jwks("ES256", "RS256"))
    config = _write_config(tmp_path, keys, {"rs-x": {"signed_response_alg": "RS256"}})
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout


def _assertion(sub: str) -> str:
    """An unsigned-looking client assertion naming ``sub`` (the upstream verifies it, not us)."""

    def segment(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{segment({'alg': 'RS256'})}.{segment({'iss': sub, 'sub': sub})}.c2ln"


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize(
    ("name", "headers", "body"),
    [
        ("basic", {"Authorization": basic("rs-guarded")}, b"token=t"),
        ("client_id field", {}, b"token=t&client_id=rs-guarded"),
        (
            "client_assertion",
            {},
            b"token=t&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type"
            b"%3Ajwt-bearer&client_assertion=" + _assertion("rs-guarded").encode(),
        ),
        (
            "client_id next to another client's Basic",
            {"Authorization": basic("rs-rsa")},
            b"token=t&client_id=rs-guarded",
        ),
    ],
)
async def test_require_jwt_refuses_plain_json(
    running: Any, fake_as: FakeAS, name: str, headers: dict[str, str], body: bytes
) -> None:
    """A plain JSON request naming a require_jwt client gets 400 and nothing is forwarded."""
    for accept in (None, "application/json"):
        status, answer_headers, answer = await running.introspect(
            accept=accept, client=None, data=body, headers={**FORM, **headers}
        )
        assert status == 400, name
        assert json.loads(answer)["error"] == "invalid_request"
        assert answer_headers["Cache-Control"] == "no-store"
    assert fake_as.introspections == []
    refused = running.sample(
        "sidecar_introspection_requests_total", {"format": "json", "outcome": "caller_error"}
    )
    assert refused == 2


async def test_require_jwt_client_still_gets_jwts(running: Any, fake_as: FakeAS) -> None:
    """The guarded client asking for a JWT is answered as usual."""
    status, headers, body = await running.introspect(client="rs-guarded", accept=RFC9701)
    assert status == 200 and headers["Content-Type"] == RFC9701
    verify_jwt(body, await running.public_jwks(), audience="rs-guarded")


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"Authorization": basic("rs-rsa")}, b"token=t"),
        ({}, b"token=t&client_id=rs-unlisted"),
        ({"Authorization": "Bearer some-token"}, b"token=t"),
        ({"Authorization": "Basic !!!"}, b"token=t"),
        ({}, b"token=t&client_id=rs-a&client_id=rs-b"),
        ({}, b"\xff\xfe not utf-8"),
    ],
)
async def test_other_json_callers_are_forwarded(
    running: Any, fake_as: FakeAS, headers: dict[str, str], body: bytes
) -> None:
    """Plain JSON requests that do not name a guarded client pass unchanged, odd ones included."""
    status, _, answer = await running.introspect(
        accept=None, client=None, data=body, headers={**FORM, **headers}
    )
    assert status == 200 and json.loads(answer)["active"] is True
    (seen,) = fake_as.introspections
    assert seen.body == body


async def test_without_require_jwt_json_requests_are_not_inspected(
    sidecar: Any, fake_as: FakeAS
) -> None:
    """With no guarded client, a JSON request naming any client is forwarded as it came."""
    body = b"token=t&client_id=rs-guarded"
    status, _, _ = await sidecar.introspect(accept=None, client=None, data=body, headers=FORM)
    assert status == 200
    assert fake_as.introspections[0].body == body
