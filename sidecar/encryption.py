"""Encrypted answers: the signed JWT wrapped in a JWE for clients that ask for it (SPEC §7).

RFC 9701 §5: "If the JWT is signed and encrypted it MUST be a Nested JWT" — sign, then
encrypt (RFC 7519 §5.2), the JWE header carrying ``cty: JWT`` and the client key's ``kid``.
Clients with inline ``jwks`` or a ``jwks_file`` have their key chosen at start-up; a
``jwks_uri`` is fetched at the first answer and cached.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from jwcrypto import jwe
from prometheus_client import CollectorRegistry, Counter, Histogram

from sidecar.clientkeys import ClientKeyError, Recipient, RemoteKeys, choose_recipient
from sidecar.config import ENCRYPTION_ALGS, ClientPolicy
from sidecar.metrics import PREFIX

FETCH_OUTCOMES = ("ok", "timeout", "unavailable", "invalid")


class ClientKeysError(Exception):
    """Client encryption keys that stop the start; each problem names its YAML path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class EncryptionMetrics:
    """JWE cost and ``jwks_uri`` fetches; labels are algorithm names and fixed outcomes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Histogram(
            f"{PREFIX}_encryption_duration_seconds",
            "Time to encrypt one signed answer into a JWE, by key-management algorithm.",
            ("alg",),
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025),
            registry=registry,
        )
        self.fetches = Counter(
            f"{PREFIX}_client_jwks_fetches",
            "Fetches of clients' jwks_uri, by outcome.",
            ("outcome",),
            registry=registry,
        )
        self._seconds = {alg: self.seconds.labels(alg=alg) for alg in ENCRYPTION_ALGS}
        self._fetches = {name: self.fetches.labels(outcome=name) for name in FETCH_OUTCOMES}

    def observe(self, alg: str, seconds: float) -> None:
        """Record one encryption."""
        self._seconds[alg].observe(seconds)

    def fetched(self, outcome: str) -> None:
        """Count one ``jwks_uri`` fetch."""
        self._fetches[outcome].inc()


class Encryptor:
    """Encrypts one client's signed answers to its public key."""

    __slots__ = ("_metrics", "_recipient", "_remote", "alg", "enc")

    def __init__(
        self,
        alg: str,
        enc: str,
        *,
        metrics: EncryptionMetrics,
        recipient: Recipient | None = None,
        remote: RemoteKeys | None = None,
    ) -> None:
        self.alg = alg
        self.enc = enc
        self._metrics = metrics
        self._recipient = recipient
        self._remote = remote

    async def encrypt(self, signed_jwt: bytes) -> bytes:
        """The compact JWE of ``signed_jwt``; ``EncryptionKeysUnavailable`` if no key can be had."""
        recipient = self._recipient
        if recipient is None and self._remote is not None:
            recipient = await self._remote.recipient()
        if recipient is None:
            raise RuntimeError("an Encryptor needs a recipient key or a jwks_uri")
        started = time.perf_counter()
        token = jwe.JWE(plaintext=signed_jwt, protected=recipient.protected)
        token.add_recipient(recipient.key)
        compact: str = token.serialize(compact=True)
        self._metrics.observe(self.alg, time.perf_counter() - started)
        return compact.encode("ascii")


class ClientEncryption:
    """The encryptor of every client that asked for encryption, looked up by client_id."""

    def __init__(self) -> None:
        self._encryptors: dict[str, Encryptor] = {}
        self._session: aiohttp.ClientSession | None = None

    def add(self, client_id: str, encryptor: Encryptor) -> None:
        """Encrypt ``client_id``'s answers with ``encryptor``."""
        self._encryptors[client_id] = encryptor

    def for_client(self, caller_id: str) -> Encryptor | None:
        """The caller's encryptor, or None when its answers are signed only."""
        return self._encryptors.get(caller_id)

    def session(self) -> aiohttp.ClientSession:
        """The session for ``jwks_uri`` fetches, opened at the first one (never per fetch)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def close(self) -> None:
        """Close that session."""
        if self._session is not None:
            await self._session.close()


def encrypting(clients: Mapping[str, ClientPolicy]) -> bool:
    """Whether any client asked for encrypted answers."""
    return any(policy.encrypted_response_alg for policy in clients.values())


def load_client_encryption(
    clients: Mapping[str, ClientPolicy], *, timeout: float, metrics: EncryptionMetrics
) -> ClientEncryption:
    """Choose each encrypting client's key from ``jwks`` or ``jwks_file`` now; set up ``jwks_uri``.

    Raises ``ClientKeysError`` listing every client whose keys cannot be used.
    """
    problems: list[str] = []
    encryption = ClientEncryption()
    for client_id, policy in clients.items():
        alg, enc = policy.encrypted_response_alg, policy.encrypted_response_enc
        if alg is None:
            continue
        where = f"clients.{client_id}"
        if policy.jwks_uri is not None:
            keys = RemoteKeys(
                policy.jwks_uri,
                alg=alg,
                enc=enc,
                client_id=client_id,
                timeout=timeout,
                session=encryption.session,
                on_fetch=metrics.fetched,
            )
            encryption.add(client_id, Encryptor(alg, enc, metrics=metrics, remote=keys))
            continue
        try:
            if policy.jwks_file is not None:
                where += ".jwks_file"
                document = _read_key_file(policy.jwks_file)
            else:
                where += ".jwks"
                document = policy.jwks
            recipient = choose_recipient(document, alg, enc)
        except ClientKeyError as exc:
            problems.append(f"{where}: {exc}")
            continue
        encryption.add(client_id, Encryptor(alg, enc, metrics=metrics, recipient=recipient))
    if problems:
        raise ClientKeysError(problems)
    return encryption


def _read_key_file(path: Path) -> Any:
    """A client's JWK Set file, parsed."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ClientKeyError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ClientKeyError(f"{path}: not valid JSON") from None
