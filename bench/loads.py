"""Drive load: wrk for maximum throughput, rateload.py for latency at a constant rate."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from processes import pinned

BENCH_DIR = Path(__file__).resolve().parent
WRK_SCRIPT = BENCH_DIR / "post.lua"
RATELOAD = BENCH_DIR / "rateload.py"
# An opaque access token of a realistic length (43 base64url characters, 256 bits).
TOKEN_BODY = "token=3q2-7wZ8uEp1VbD0x6G_kT9sYcRfLmNa4hJiOuWyQeA&token_type_hint=access_token"
# The same length, but the token starts with "bench-distinct-": bench/upstream.py then puts a
# per-answer counter in jti, so every answer differs and no signature can be reused.
DISTINCT_BODY = "token=bench-distinct-7wZ8uEp1VbD0x6G_kT9sYcRfLmNa&token_type_hint=access_token"


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """The introspection request one scenario repeats."""

    accept: str
    authorization: str
    body: str = TOKEN_BODY

    def headers(self) -> dict[str, str]:
        """Request headers besides Host and Content-Length."""
        found = {"Content-Type": "application/x-www-form-urlencoded", "Accept": self.accept}
        if self.authorization:
            found["Authorization"] = self.authorization
        return found


@dataclass(frozen=True, slots=True)
class WrkResult:
    """What one wrk run measured."""

    requests: int
    seconds: float
    latency_ms: dict[str, float]  # p50, p90, p99, p999, max, mean
    errors: dict[str, int]  # connect, read, write, status (non-2xx/3xx), timeout
    loadgen_cpu_seconds: float

    @property
    def rps(self) -> float:
        """Requests per second (wrk counts error answers as requests too: check errors)."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def error_count(self) -> int:
        """All failed requests of the run."""
        return sum(self.errors.values())


def children_cpu_seconds() -> float:
    """CPU time of this process's waited-for children: the delta around a run is wrk's."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk_command(url: str, seconds: float, connections: int, threads: int) -> list[str]:
    """The wrk command line (printed in the report so a run can be repeated by hand)."""
    return [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "-s",
        str(WRK_SCRIPT),
        url,
    ]


def run_wrk(
    url: str,
    spec: RequestSpec,
    *,
    seconds: float,
    cpu: int | None,
    connections: int = 64,
    threads: int = 1,
) -> WrkResult:
    """Run wrk (closed loop, `connections` in flight) and parse the line post.lua prints."""
    env = {
        **os.environ,
        "BENCH_BODY": spec.body,
        "BENCH_ACCEPT": spec.accept,
        "BENCH_AUTH": spec.authorization,
    }
    command = pinned(wrk_command(url, seconds, connections, threads), cpu)
    cpu_before = children_cpu_seconds()
    completed = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=seconds + 30, check=False
    )
    loadgen_cpu = children_cpu_seconds() - cpu_before
    line = next((x for x in completed.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if completed.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr.strip()}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    latency = {name: value / 1000 for name, value in data["latency_us"].items()}
    return WrkResult(
        data["requests"], data["duration_us"] / 1e6, latency, data["errors"], loadgen_cpu
    )


def rateload_command(
    url: str, spec: RequestSpec, *, rate: float, seconds: float, warmup: float, connections: int
) -> list[str]:
    """The rateload.py command line (same interpreter as the harness)."""
    command = [
        sys.executable,
        str(RATELOAD),
        "--url",
        url,
        "--rate",
        f"{rate:.0f}",
        "--duration",
        str(seconds),
        "--warmup",
        str(warmup),
        "--connections",
        str(connections),
        "--body",
        spec.body,
    ]
    for name, value in spec.headers().items():
        if name != "Content-Type":  # rateload.py sets it itself
            command += ["--header", f"{name}: {value}"]
    return command


def run_rate(
    url: str,
    spec: RequestSpec,
    *,
    rate: float,
    seconds: float,
    warmup: float,
    cpu: int | None,
    connections: int = 32,
) -> dict[str, object]:
    """Run the constant-rate client and return its JSON summary plus its own CPU time."""
    command = pinned(
        rateload_command(
            url, spec, rate=rate, seconds=seconds, warmup=warmup, connections=connections
        ),
        cpu,
    )
    cpu_before = children_cpu_seconds()
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + warmup + 30, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"rateload failed: {completed.stderr.strip()[-2000:]}")
    summary: dict[str, object] = json.loads(completed.stdout)
    summary["loadgen_cpu_seconds"] = round(children_cpu_seconds() - cpu_before, 3)
    return summary
