"""Test helpers for keys: a Kubernetes Secret volume, signing keys, waiting for a reload."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

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


async def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
