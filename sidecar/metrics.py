"""Prometheus metrics, built against an injected registry; labels are small fixed sets."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "sidecar"

# The outcomes of an introspection request; the label never carries a client_id or token.
OUTCOMES = (
    "signed", "passthrough", "upstream_error", "caller_error", "too_large",
    "method_not_allowed", "upstream_unavailable", "upstream_timeout", "bad_upstream_answer",
    "error", "encrypted", "encryption_keys_unavailable",
)  # fmt: skip
FORMATS = ("json", "rfc9701", "draft-08")
UPSTREAM_OUTCOMES = ("2xx", "3xx", "4xx", "5xx", "1xx", "timeout", "unavailable", "error")

# Loopback upstream calls take well under a millisecond; slow ones reach the timeout.
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Metrics:
    """Every metric the sidecar exports, with label children bound once (not per request)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            f"{PREFIX}_introspection_requests",
            "Introspection requests answered, by answer format and outcome.",
            ("format", "outcome"),
            registry=registry,
        )
        self.upstream_seconds = Histogram(
            f"{PREFIX}_upstream_request_duration_seconds",
            "Time for one upstream introspection exchange, by outcome.",
            ("outcome",),
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.signing_seconds = Histogram(
            f"{PREFIX}_signing_duration_seconds",
            "Time to build and sign one JWT answer, by algorithm.",
            ("alg",),
            buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01),
            registry=registry,
        )
        self.signatures_reused = Counter(
            f"{PREFIX}_signatures_reused",
            "JWT answers identical to one signed earlier in the same second, not signed again.",
            registry=registry,
        )
        self.passthrough = Counter(
            f"{PREFIX}_passthrough_requests",
            "Requests on other paths forwarded to the upstream, by outcome.",
            ("outcome",),
            registry=registry,
        )
        self.draining = Gauge(
            f"{PREFIX}_draining",
            "1 while the sidecar drains after SIGTERM, else 0.",
            registry=registry,
        )
        self.keys_loaded = Gauge(
            f"{PREFIX}_signing_keys",
            "Signing keys loaded from signing.keys_file.",
            registry=registry,
        )
        self._requests = {
            (f, o): self.requests.labels(format=f, outcome=o) for f in FORMATS for o in OUTCOMES
        }
        self._upstream = {o: self.upstream_seconds.labels(outcome=o) for o in UPSTREAM_OUTCOMES}
        self._signing: dict[str, Histogram] = {}

    def count_request(self, answer_format: str, outcome: str) -> None:
        """Count one introspection answer."""
        self._requests[(answer_format, outcome)].inc()

    def observe_signing(self, alg: str, seconds: float) -> None:
        """Record the time of one signature."""
        child = self._signing.get(alg)
        if child is None:
            child = self._signing[alg] = self.signing_seconds.labels(alg=alg)
        child.observe(seconds)

    def observe_upstream(self, outcome: str, seconds: float) -> None:
        """Record one upstream exchange."""
        self._upstream.get(outcome, self._upstream["error"]).observe(seconds)
