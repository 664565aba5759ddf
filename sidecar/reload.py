"""Key rotation without restart: re-read ``signing.keys_file`` when it changes (SPEC §2, §6).

The file is polled every ``signing.reload_interval`` seconds and re-read at once on SIGHUP.
A Kubernetes Secret volume replaces the file by swapping the ``..data`` symlink to a new
timestamped directory; the file is compared by content, so any way of replacing it is seen.
A file that cannot be used (missing, half written, unparsable, unsafe, lacking a key some
client needs) never replaces the keys in use: one log line, one count, the old keys stay.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from sidecar.config import Config
from sidecar.keys import KeyFileError, KeyRing, KeyStore, parse_key_ring
from sidecar.metrics import PREFIX

log = logging.getLogger(__name__)

RELOAD_OUTCOMES = ("loaded", "refused")


def key_store(config: Config) -> KeyStore:
    """The ``KeyStore`` for ``config``: its key file, active kid, and the algs clients need."""
    return KeyStore(
        config.signing.keys_file,
        active_kid=config.signing.kid,
        typ=config.introspection.typ,
        # RFC 9701 §6: a client's signed_response_alg picks the key that signs for it.
        client_algs={
            client_id: policy.signed_response_alg
            for client_id, policy in config.clients.items()
            if policy.signed_response_alg
        },
    )


class ReloadMetrics:
    """What an operator watches during a rotation: the active kid, loads, refusals."""

    def __init__(self, registry: CollectorRegistry, *, key_count: Gauge) -> None:
        self.key_count = key_count
        self.reloads = Counter(
            f"{PREFIX}_signing_keys_reloads",
            "Changes of signing.keys_file seen, by outcome (loaded, or refused: old keys kept).",
            ("outcome",),
            registry=registry,
        )
        self.active_key = Gauge(
            f"{PREFIX}_signing_active_key_info",
            "1 for the key that signs by default; labelled with its kid and alg.",
            ("kid", "alg"),
            registry=registry,
        )
        self.loaded_at = Gauge(
            f"{PREFIX}_signing_keys_last_load_timestamp_seconds",
            "Unix time the keys in use were loaded from signing.keys_file.",
            registry=registry,
        )
        self.file_usable = Gauge(
            f"{PREFIX}_signing_keys_file_usable",
            "1 when the key file on disk is the one in use, 0 while a changed file is refused.",
            registry=registry,
        )
        self._outcomes = {name: self.reloads.labels(outcome=name) for name in RELOAD_OUTCOMES}

    def count(self, outcome: str) -> None:
        """Count one reload attempt."""
        self._outcomes[outcome].inc()

    def loaded(self, ring: KeyRing) -> None:
        """Record a key ring put in use."""
        # The kid is public (it is in every JWT header), and one series is kept at a time.
        self.active_key.clear()
        self.active_key.labels(kid=ring.active.kid, alg=ring.active.alg).set(1)
        self.loaded_at.set(time.time())
        self.file_usable.set(1)
        self.key_count.set(len(ring.keys))


class KeyReloader:
    """Keeps a ``KeyStore`` in step with its file; never swaps in keys that cannot be used."""

    def __init__(self, store: KeyStore, *, interval: float, metrics: ReloadMetrics) -> None:
        self.store = store
        self.interval = interval
        self.metrics = metrics
        # The fingerprint of what was last examined: the file's SHA-256, or the read error.
        # Unchanged means nothing to do, so a refused file is logged once, not every poll.
        self._seen: str | None = None
        self._loaded_digest: str | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def load_initial(self) -> KeyRing:
        """Load the keys at start-up; ``KeyFileError`` stops the start."""
        raw = _read(self.store.path)
        ring = self._parse(raw)
        self.store.install(ring)
        self._seen = self._loaded_digest = _digest(raw)
        self.metrics.loaded(ring)
        return ring

    async def check(self, *, force: bool = False) -> bool:
        """Re-read the file; put new keys in use if it changed and can be used. True if swapped.

        ``force`` (SIGHUP) parses the file even when its bytes have not changed.
        """
        async with self._lock:
            return await self._check(force=force)

    async def _check(self, *, force: bool) -> bool:
        """``check`` under the lock, so a poll and a SIGHUP never race."""
        path = self.store.path
        try:
            raw = await asyncio.to_thread(_read, path)
        except KeyFileError as exc:
            return self._refuse(str(exc), fingerprint=f"error:{exc}", force=force)
        digest = _digest(raw)
        if not force and digest == self._seen:
            return False
        if digest == self._loaded_digest and not force:
            # The file is back to the keys in use (e.g. after a refused edit was undone).
            self._seen = digest
            self.metrics.file_usable.set(1)
            return False
        try:
            ring = await asyncio.to_thread(self._parse, raw)
            self.store.install(ring)
        except KeyFileError as exc:
            return self._refuse(str(exc), fingerprint=digest, force=force)
        self._seen = self._loaded_digest = digest
        self.metrics.count("loaded")
        self.metrics.loaded(ring)
        log.info(
            "keys.reloaded",
            extra={"event": "keys.reloaded", "kid": ring.active.kid, "alg": ring.active.alg,
                   "keys": len(ring.keys), "kids": [key.kid for key in ring.keys]},
        )  # fmt: skip
        return True

    def _refuse(self, reason: str, *, fingerprint: str, force: bool) -> bool:
        """Keep the keys in use; log and count a file not seen before (or any, on SIGHUP)."""
        if fingerprint == self._seen and not force:
            return False
        self._seen = fingerprint
        self.metrics.count("refused")
        self.metrics.file_usable.set(0)
        # The reason names the file and the problem, never key material (KeyFileError's rule).
        log.error(
            "keys.reload_refused",
            extra={"event": "keys.reload_refused", "reason": reason,
                   "kid": self.store.ring.active.kid},
        )  # fmt: skip
        return False

    def _parse(self, raw: bytes) -> KeyRing:
        """A key ring from the file's bytes (CPU work: run off the event loop on reload)."""
        store = self.store
        return parse_key_ring(
            raw, active_kid=store.active_kid, typ=store.typ, source=str(store.path)
        )

    async def run(self) -> None:
        """Poll every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            await self._guarded_check(force=False)

    def request(self) -> None:
        """Re-read the file now (the SIGHUP handler); the check runs as its own task."""
        log.info("keys.reload_requested", extra={"event": "keys.reload_requested"})
        task = asyncio.get_running_loop().create_task(self._guarded_check(force=True))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded_check(self, *, force: bool) -> None:
        """``check``, where a bug is logged rather than ending rotation for the pod's lifetime."""
        try:
            await self.check(force=force)
        except Exception:
            log.exception("keys.reload_crashed", extra={"event": "keys.reload_crashed"})


def _read(path: Path) -> bytes:
    """The key file's bytes, following symlinks (a Secret volume's ``..data`` link included)."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror or exc}") from None


def _digest(raw: bytes) -> str:
    """A fingerprint of the file's bytes, to tell a change from a poll that saw nothing new."""
    return hashlib.sha256(raw).hexdigest()
