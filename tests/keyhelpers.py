"""Test helpers for keys: a Kubernetes Secret volume, client encryption keys, JWE decryption."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from joserfc import jwe as joserfc_jwe
from joserfc.jwk import import_key
from jwcrypto import jwe as jwcrypto_jwe
from jwcrypto import jwk

from sidecar.keys import generate_key, key_set_json


class SecretVolume:
    """A directory laid out as the kubelet lays out a Secret volume, updated the same way.

    ``<dir>/jwks.json -> ..data/jwks.json``, ``..data -> ..<timestamp>``; an update writes a
    new timestamped directory, points ``..data_tmp`` at it and renames that over ``..data``
    (one atomic rename), then deletes the old directory — as ``AtomicWriter`` does.
    """

    def __init__(self, root: Path, name: str = "jwks.json") -> None:
        self.root = root
        self.name = name
        self.root.mkdir(parents=True, exist_ok=True)
        self._generation = 0

    @property
    def path(self) -> Path:
        """The path the sidecar is configured with."""
        return self.root / self.name

    def write(self, content: str | bytes) -> None:
        """Publish ``content`` as the file, atomically, the Kubernetes way."""
        self._generation += 1
        stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.") + f"{os.getpid()}{self._generation:04d}"
        new_dir = self.root / stamp
        new_dir.mkdir()
        data = content.encode() if isinstance(content, str) else content
        (new_dir / self.name).write_bytes(data)
        data_link = self.root / "..data"
        old_target = os.readlink(data_link) if data_link.is_symlink() else None
        tmp_link = self.root / "..data_tmp"
        os.symlink(stamp, tmp_link)
        os.rename(tmp_link, data_link)
        if not self.path.is_symlink():
            os.symlink(f"..data/{self.name}", self.path)
        if old_target is not None:
            shutil.rmtree(self.root / old_target)


def key_set(*keys: jwk.JWK) -> str:
    """A private JWK Set document of ``keys``."""
    return key_set_json(list(keys), private=True)


_SIGNING_KEYS: dict[str, jwk.JWK] = {}


def signing_key(alg: str, kid: str) -> jwk.JWK:
    """A private signing key, generated once per (alg, kid) in a test session."""
    if kid not in _SIGNING_KEYS:
        _SIGNING_KEYS[kid] = generate_key(alg, kid=kid)
    return _SIGNING_KEYS[kid]


_CLIENT_KEYS: dict[str, jwk.JWK] = {}

# Which client key each JWE key-management algorithm is tested with.
CLIENT_KEY_KINDS: dict[str, dict[str, Any]] = {
    "RSA": {"kty": "RSA", "size": 2048},
    "P-256": {"kty": "EC", "crv": "P-256"},
    "P-384": {"kty": "EC", "crv": "P-384"},
    "P-521": {"kty": "EC", "crv": "P-521"},
    "X25519": {"kty": "OKP", "crv": "X25519"},
}


def client_key(kind: str, kid: str | None = None, **members: Any) -> jwk.JWK:
    """A resource server's private encryption key (cached per kind and kid)."""
    cache_key = f"{kind}/{kid}"
    if cache_key not in _CLIENT_KEYS:
        generated = jwk.JWK.generate(**CLIENT_KEY_KINDS[kind])
        exported = json.loads(generated.export_private())
        if kid is not None:
            exported["kid"] = kid
        _CLIENT_KEYS[cache_key] = jwk.JWK(**exported)
    if not members:
        return _CLIENT_KEYS[cache_key]
    return jwk.JWK(**{**json.loads(_CLIENT_KEYS[cache_key].export_private()), **members})


def public_set(*keys: jwk.JWK, **members: Any) -> dict[str, Any]:
    """The public JWK Set a resource server would register (``members`` added to each key)."""
    return {"keys": [{**json.loads(key.export_public()), **members} for key in keys]}


def jose_header(token: bytes | str) -> dict[str, Any]:
    """The protected header of a compact JWS or JWE, unverified."""
    text = token.decode() if isinstance(token, bytes) else token
    segment = text.split(".")[0]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return decoded


def decrypt_both(token: bytes, private_key: jwk.JWK) -> bytes:
    """Decrypt a compact JWE with joserfc and with jwcrypto; both must agree. The plaintext."""
    header = jose_header(token)
    key = import_key(json.loads(private_key.export_private()))
    with_joserfc = joserfc_jwe.decrypt_compact(
        token, key, algorithms=[header["alg"], header["enc"]]
    ).plaintext
    decrypter = jwcrypto_jwe.JWE()
    decrypter.deserialize(token.decode(), key=private_key)
    assert decrypter.plaintext == with_joserfc
    assert with_joserfc is not None
    return with_joserfc


def closed_port() -> int:
    """A 127.0.0.1 port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
