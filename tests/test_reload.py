"""Key rotation without restart: polling, SIGHUP, refused files, rotation under load."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from conftest import ISSUER, FakeAS, Running, verify_jwt
from keyhelpers import SecretVolume, key_set, signing_key, wait_for

from sidecar.appkeys import RELOADER

POLL = 0.05
KEY_A = ("ES256", "key-a")
KEY_B = ("EdDSA", "key-b")


@pytest.fixture
def volume(tmp_path: Path) -> SecretVolume:
    """A Secret volume holding key A."""
    secret = SecretVolume(tmp_path / "secret")
    secret.write(key_set(signing_key(*KEY_A)))
    return secret


async def start_watching(
    make_config: Any, start_sidecar: Any, volume: SecretVolume, extra: dict[str, Any] | None = None
) -> Running:
    """A sidecar whose key file is ``volume``'s, polled every ``POLL`` seconds."""
    settings = {"signing": {"keys_file": str(volume.path), "reload_interval": POLL}}
    for section, values in (extra or {}).items():
        settings[section] = {**settings.get(section, {}), **values}
    running: Running = await start_sidecar(make_config(settings))
    return running


async def signed_kid(running: Running, client: str = "rs-1") -> str:
    """The kid of a fresh answer, after checking it verifies against the JWK Set."""
    status, _, body = await running.introspect(client=client)
    assert status == 200
    header, _ = verify_jwt(body, await running.public_jwks(), audience=client)
    kid: str = header["kid"]
    return kid


def kids(jwks: dict[str, Any]) -> list[str]:
    """The kids of a JWK Set, in order."""
    return [key["kid"] for key in jwks["keys"]]


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The ``keys.reload_refused`` log records."""
    return [r for r in caplog.records if getattr(r, "event", None) == "keys.reload_refused"]


async def test_changed_secret_is_loaded_without_restart(
    make_config: Any, start_sidecar: Any, volume: SecretVolume
) -> None:
    """A Secret update (new ..data directory) is picked up by polling; the JWK Set follows."""
    running = await start_watching(make_config, start_sidecar, volume)
    assert volume.path.is_symlink() and (volume.root / "..data").is_symlink()
    assert await signed_kid(running) == "key-a"
    first_load = running.sample("sidecar_signing_keys_last_load_timestamp_seconds")
    assert running.sample("sidecar_signing_active_key_info", {"kid": "key-a", "alg": "ES256"}) == 1

    volume.write(key_set(signing_key(*KEY_B), signing_key(*KEY_A)))
    await wait_for(
        lambda: running.sample("sidecar_signing_keys_reloads_total", {"outcome": "loaded"}) == 1
    )
    assert kids(await running.public_jwks()) == ["key-b", "key-a"]
    assert await signed_kid(running) == "key-b"
    assert running.sample("sidecar_signing_active_key_info", {"kid": "key-b", "alg": "EdDSA"}) == 1
    assert running.sample("sidecar_signing_active_key_info", {"kid": "key-a", "alg": "ES256"}) == 0
    assert running.sample("sidecar_signing_keys_last_load_timestamp_seconds") >= first_load
    assert running.sample("sidecar_signing_keys") == 2
    assert running.sample("sidecar_signing_keys_file_usable") == 1


async def test_signing_kid_selects_the_active_key(
    make_config: Any, start_sidecar: Any, volume: SecretVolume
) -> None:
    """With signing.kid set, that key signs wherever it is in the file; others are published."""
    volume.write(key_set(signing_key(*KEY_A), signing_key(*KEY_B)))
    running = await start_watching(
        make_config, start_sidecar, volume, {"signing": {"kid": "key-b"}}
    )
    assert await signed_kid(running) == "key-b"
    assert kids(await running.public_jwks()) == ["key-a", "key-b"]


def _symmetric() -> str:
    return json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0LXNoYXJlZC1rZXktbWF0ZXJpYWw"}]})


def _public_only() -> str:
    return json.dumps({"keys": [json.loads(signing_key(*KEY_B).export_public())]})


# Each bad replacement of the key file, and a word its log line must contain.
BAD_FILES = {
    "half-written": (lambda: key_set(signing_key(*KEY_B))[:200], "not valid JSON"),
    "garbage": (lambda: "\x00\x01 not a key", "neither a JWK Set"),
    "symmetric": (_symmetric, "symmetric"),
    "no keys": (lambda: '{"keys": []}', "no keys"),
    "public key only": (_public_only, "no private part"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
async def test_unusable_file_never_replaces_the_keys(
    make_config: Any,
    start_sidecar: Any,
    volume: SecretVolume,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    """A bad key file is refused: old keys serve on, one log line, one count, still ready."""
    content, reason = BAD_FILES[case]
    running = await start_watching(make_config, start_sidecar, volume)
    caplog.set_level(logging.INFO, logger="sidecar.reload")
    volume.write(content())
    await wait_for(lambda: len(refusals(caplog)) == 1)
    await asyncio.sleep(POLL * 3)  # more polls see the same file: no more lines or counts
    (record,) = refusals(caplog)
    assert reason in record.reason and str(volume.path) in record.reason
    assert "c2VjcmV0" not in record.getMessage() + record.reason  # no key material logged
    assert running.sample("sidecar_signing_keys_reloads_total", {"outcome": "refused"}) == 1
    assert running.sample("sidecar_signing_keys_file_usable") == 0
    assert running.sample("sidecar_signing_active_key_info", {"kid": "key-a", "alg": "ES256"}) == 1
    assert await signed_kid(running) == "key-a"
    assert kids(await running.public_jwks()) == ["key-a"]
    async with running.session.get(running.admin_url + "/readyz") as ready:
        assert ready.status == 200

    # Undoing the edit: the file is the one in use again; nothing to reload.
    volume.write(key_set(signing_key(*KEY_A)))
    await wait_for(lambda: running.sample("sidecar_signing_keys_file_usable") == 1)
    assert running.sample("sidecar_signing_keys_reloads_total", {"outcome": "loaded"}) == 0


async def test_deleted_file_keeps_the_keys_then_a_new_one_loads(
    make_config: Any, start_sidecar: Any, volume: SecretVolume, caplog: pytest.LogCaptureFixture
) -> None:
    """A key file that disappears leaves the keys in use; when it returns changed, it loads."""
    running = await start_watching(make_config, start_sidecar, volume)
    caplog.set_level(logging.INFO, logger="sidecar.reload")
    volume.path.unlink()
    await wait_for(lambda: len(refusals(caplog)) == 1)
    assert "cannot read" in refusals(caplog)[0].reason
    assert await signed_kid(running) == "key-a"
    async with running.session.get(running.admin_url + "/readyz") as ready:
        assert ready.status == 200

    volume.write(key_set(signing_key(*KEY_B)))
    await wait_for(
        lambda: running.sample("sidecar_signing_keys_reloads_total", {"outcome": "loaded"}) == 1
    )
    assert await signed_kid(running) == "key-b"
    assert len(refusals(caplog)) == 1


async def test_unknown_signing_kid_is_refused(
    make_config: Any, start_sidecar: Any, volume: SecretVolume
) -> None:
    """A file without the key signing.kid names is refused; the configured key keeps signing."""
    running = await start_watching(
        make_config, start_sidecar, volume, {"signing": {"kid": "key-a"}}
    )
    volume.write(key_set(signing_key(*KEY_B)))
    await wait_for(
        lambda: running.sample("sidecar_signing_keys_reloads_total", {"outcome": "refused"}) == 1
    )
    assert await signed_kid(running) == "key-a"


async def test_reload_without_an_alg_a_client_needs_is_refused(
    make_config: Any, start_sidecar: Any, volume: SecretVolume, caplog: pytest.LogCaptureFixture
) -> None:
    """A file lacking a client's signed_response_alg is refused, naming the client setting."""
    volume.write(key_set(signing_key(*KEY_A), signing_key("ES384", "key-c")))
    running = await start_watching(
        make_config, start_sidecar, volume, {"clients": {"rs-2": {"signed_response_alg": "ES384"}}}
    )
    caplog.set_level(logging.INFO, logger="sidecar.reload")
    assert await signed_kid(running, client="rs-2") == "key-c"
    volume.write(key_set(signing_key(*KEY_B), signing_key(*KEY_A)))
    await wait_for(lambda: len(refusals(caplog)) == 1)
    assert "clients.rs-2.signed_response_alg (ES384)" in refusals(caplog)[0].reason
    assert await signed_kid(running, client="rs-2") == "key-c"
    assert await signed_kid(running) == "key-a"
    assert kids(await running.public_jwks()) == ["key-a", "key-c"]


async def test_no_polling_when_interval_is_zero(
    make_config: Any, start_sidecar: Any, volume: SecretVolume
) -> None:
    """signing.reload_interval 0 turns polling off: a changed file waits for SIGHUP."""
    running = await start_watching(
        make_config, start_sidecar, volume, {"signing": {"reload_interval": 0}}
    )
    volume.write(key_set(signing_key(*KEY_B)))
    await asyncio.sleep(0.3)
    assert await signed_kid(running) == "key-a"
    running.server.app[RELOADER].request()  # what the SIGHUP handler calls
    await wait_for(
        lambda: running.sample("sidecar_signing_keys_reloads_total", {"outcome": "loaded"}) == 1
    )
    assert await signed_kid(running) == "key-b"


async def test_rotation_under_load_fails_no_request(
    make_config: Any, start_sidecar: Any, volume: SecretVolume
) -> None:
    """20 callers for several seconds while the runbook swaps the Secret: every JWT verifies."""
    key_a, key_b = signing_key(*KEY_A), signing_key(*KEY_B)
    running = await start_watching(make_config, start_sidecar, volume)
    failures: list[str] = []
    signed_by: Counter[str] = Counter()
    last_kid: dict[int, str] = {}
    deadline = time.monotonic() + 3.0

    async def caller(number: int) -> None:
        while time.monotonic() < deadline:
            try:
                status, _, body = await running.introspect()
                assert status == 200, status
                # The JWK Set fetched right after the answer must verify it.
                header, claims = verify_jwt(body, await running.public_jwks(), audience="rs-1")
                assert claims["iss"] == ISSUER
            except Exception as exc:
                failures.append(repr(exc))
            else:
                signed_by[header["kid"]] += 1
                last_kid[number] = header["kid"]

    async def operator() -> None:
        # The runbook: publish B, wait, make B active, wait, retire A.
        for step in ((key_a, key_b), (key_b, key_a), (key_b,)):
            await asyncio.sleep(0.7)
            volume.write(key_set(*step))

    await asyncio.gather(operator(), *(caller(n) for n in range(20)))
    assert failures == []
    assert signed_by["key-a"] > 0 and signed_by["key-b"] > 0
    assert set(last_kid.values()) == {"key-b"}
    assert running.sample("sidecar_signing_keys_reloads_total", {"outcome": "loaded"}) == 3
    assert kids(await running.public_jwks()) == ["key-b"]
    print(f"rotation under load: {sum(signed_by.values())} answers, {dict(signed_by)}")


async def test_sighup_reloads_the_real_cli(tmp_path: Path, fake_as: FakeAS) -> None:
    """``sidecar run`` re-reads the key file on SIGHUP (polling off) and exits 0 on SIGTERM."""
    volume = SecretVolume(tmp_path / "secret")
    volume.write(key_set(signing_key(*KEY_A)))
    config = tmp_path / "sidecar.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "issuer": ISSUER,
                "listen": {"host": "127.0.0.1", "port": 0},
                "admin": {"host": "127.0.0.1", "port": 0},
                "upstream": {"url": fake_as.url},
                "signing": {"keys_file": str(volume.path), "reload_interval": 0},
                "shutdown": {"drain_seconds": 0, "timeout": 5},
            }
        )
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar", "run", "--config", str(config),
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert process.stderr is not None
    try:
        port = None
        events = []
        while port is None:
            line = await asyncio.wait_for(process.stderr.readline(), 10)
            assert line, "the sidecar exited before it started"
            entry = json.loads(line)
            events.append(entry)
            if entry.get("event") == "server.started":
                port = entry["port"]
        jwks_url = f"http://127.0.0.1:{port}/introspection/jwks.json"
        async with aiohttp.ClientSession() as session:

            async def published() -> list[str]:
                async with session.get(jwks_url) as answer:
                    return kids(json.loads(await answer.read()))

            assert await published() == ["key-a"]
            volume.write(key_set(signing_key(*KEY_B), signing_key(*KEY_A)))
            await asyncio.sleep(0.2)
            assert await published() == ["key-a"]  # no polling: unchanged until SIGHUP
            process.send_signal(signal.SIGHUP)
            for _ in range(100):
                if await published() == ["key-b", "key-a"]:
                    break
                await asyncio.sleep(0.05)
            assert await published() == ["key-b", "key-a"]
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
        rest = (await process.stderr.read()).decode()
        reloaded = [json.loads(line) for line in rest.splitlines() if '"keys.reloaded"' in line]
        assert reloaded and reloaded[0]["kid"] == "key-b"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
