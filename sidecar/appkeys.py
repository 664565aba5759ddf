"""Typed application keys: how handlers reach shared things, never through module globals."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from sidecar.config import Config
from sidecar.downgrade import DowngradeGuard
from sidecar.encryption import ClientEncryption, EncryptionMetrics
from sidecar.keys import KeyStore
from sidecar.metrics import Metrics
from sidecar.reload import KeyReloader
from sidecar.reuse import SignatureReuse
from sidecar.upstream import UpstreamClient


@dataclass(slots=True)
class Lifecycle:
    """Whether the sidecar is draining after SIGTERM (SPEC §8a)."""

    draining: bool = False


CONFIG = web.AppKey("config", Config)
METRICS = web.AppKey("metrics", Metrics)
KEYS = web.AppKey("keys", KeyStore)
UPSTREAM = web.AppKey("upstream", UpstreamClient)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
RELOADER = web.AppKey("reloader", KeyReloader)
ENCRYPTION = web.AppKey("encryption", ClientEncryption)
GUARD = web.AppKey("downgrade_guard", DowngradeGuard)
ENCRYPTION_METRICS = web.AppKey("encryption_metrics", EncryptionMetrics)
REUSE = web.AppKey("signature_reuse", SignatureReuse)
