"""A constant-rate (open-loop) HTTP/1.1 load generator, for latency at a fixed fraction of load.

Why not wrk: Debian's wrk has no `-R`, and wrk2 is not packaged. `hey -q` paces each worker
with a ticker but is closed-loop (a slow answer delays the next send and the wait is never
counted: coordinated omission); `h2load --rate` sets a connection-creation rate, not a request
rate; httperf reports no percentiles. So this small client does what wrk2 does:

* requests are due on a fixed schedule, t0 + i/rate, whatever the server does (open loop);
* a pacing thread sleeps with clock_nanosleep precision (asyncio timers only have 1 ms
  resolution, which would send bursts) and hands each due request to the event loop;
* latency runs from the moment the request was ready to go. When every connection is busy
  the request waits in a queue and that wait counts (no coordinated omission); the client's
  own wake-up jitter does not count, but is reported separately ("dispatch lag"), so a reader
  can see whether the generator kept its schedule.

It prints one JSON object. Run it pinned to a core of its own (or one shared only with the
cheap upstream stand-in):

    taskset -c 1 python bench/rateload.py --url http://127.0.0.1:8080/token/introspect \\
        --rate 3000 --duration 10 --warmup 3 --header 'Accept: application/json'
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import json
import re
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
PR_SET_TIMERSLACK = 29  # prctl(2)


@dataclass(slots=True)
class Tally:
    """What the measured part of a run saw."""

    latencies: list[float] = field(default_factory=list)  # seconds, from ready-to-send
    lags: list[float] = field(default_factory=list)  # seconds, dispatch lag behind schedule
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    scheduled: int = 0
    failed: int = 0
    window_end: float = float("inf")  # end of the measured schedule
    in_window: int = 0  # measured answers that arrived before window_end: the achieved rate


class Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.started = 0.0
        self.measured = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Join the idle set."""
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are duck-typed
        self.pool.release(self)

    def connection_lost(self, exc: Exception | None) -> None:
        """A lost connection is a failed request if one was in flight."""
        self.pool.lost(self)

    def send(self, request: bytes, started: float, measured: bool) -> None:
        """Write the request; `started` is when it became ready to go."""
        assert self.transport is not None
        self.started, self.measured = started, measured
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        """Complete the request once headers and Content-Length bytes of body are in."""
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        match = CONTENT_LENGTH.search(self.buffer, 0, end + 2)
        if match is None:  # chunked or close-delimited bodies are not expected here
            assert self.transport is not None
            self.transport.close()
            return
        total = end + 4 + int(match[1])
        if len(self.buffer) < total:
            return
        status = int(self.buffer[9:12])
        del self.buffer[:total]
        self.pool.completed(self, status, time.perf_counter())


class Pool:
    """Idle connections plus a queue of requests that found none idle."""

    def __init__(self, request: bytes, tally: Tally) -> None:
        self.request = request
        self.tally = tally
        self.idle: collections.deque[Connection] = collections.deque()
        self.waiting: collections.deque[tuple[float, bool]] = collections.deque()
        self.busy: set[Connection] = set()
        self.drained = asyncio.Event()  # set whenever nothing is in flight or queued

    def dispatch(self, due: float, measured: bool) -> None:
        """Called on the loop when a request is due: send now or queue it."""
        ready = time.perf_counter()
        if measured:
            self.tally.scheduled += 1
            self.tally.lags.append(ready - due)
        if self.idle:
            self._send(self.idle.popleft(), ready, measured)
        else:
            self.waiting.append((ready, measured))

    def _send(self, connection: Connection, ready: float, measured: bool) -> None:
        self.drained.clear()
        self.busy.add(connection)
        connection.send(self.request, ready, measured)

    def release(self, connection: Connection) -> None:
        """A connection is free: give it the oldest waiting request, or park it."""
        self.busy.discard(connection)
        if self.waiting:
            ready, measured = self.waiting.popleft()
            self._send(connection, ready, measured)
        else:
            self.idle.append(connection)
            if not self.busy:
                self.drained.set()

    def completed(self, connection: Connection, status: int, now: float) -> None:
        """Record one answer and reuse the connection."""
        if connection.measured:
            self.tally.latencies.append(now - connection.started)
            self.tally.statuses[status] += 1
            self.tally.in_window += now <= self.tally.window_end
        self.release(connection)

    def lost(self, connection: Connection) -> None:
        """Forget a closed connection; count its request as failed."""
        if connection in self.busy:
            self.busy.discard(connection)
            if connection.measured:
                self.tally.failed += 1
        if connection in self.idle:
            self.idle.remove(connection)
        if not self.busy and not self.waiting:
            self.drained.set()


def build_request(url: str, headers: list[str], body: bytes) -> tuple[str, int, bytes]:
    """Host, port and the pre-encoded bytes of the one POST this run repeats."""
    parts = urllib.parse.urlsplit(url)
    lines = [
        f"POST {parts.path or '/'} HTTP/1.1",
        f"Host: {parts.netloc}",
        f"Content-Length: {len(body)}",
        "Content-Type: application/x-www-form-urlencoded",
        *headers,
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    return parts.hostname or "127.0.0.1", parts.port or 80, request


def tighten_timer_slack() -> None:
    """Ask Linux to wake this thread within ~1 µs of its deadline instead of the 50 µs default."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the default slack only adds jitter to the schedule


def pace(
    loop: asyncio.AbstractEventLoop,
    dispatch: Callable[[float, bool], None],
    rate: float,
    start: float,
    measure_from: float,
    end: float,
) -> None:
    """Pacing thread: at each due time t0 + i/rate, hand one request to the loop."""
    tighten_timer_slack()
    index = 0
    while (due := start + index / rate) < end:
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        loop.call_soon_threadsafe(dispatch, due, due >= measure_from)
        index += 1


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


def summary(tally: Tally, rate: float, duration: float) -> dict[str, object]:
    """The JSON the harness reads: counts, achieved rate and latency percentiles in ms."""
    latencies, lags = sorted(tally.latencies), sorted(tally.lags)

    def ms(values: list[float], fraction: float) -> float:
        return round(percentile(values, fraction) * 1000, 3)

    return {
        "target_rate": rate,
        "achieved_rate": round(tally.in_window / duration, 1),
        "scheduled": tally.scheduled,
        "completed": len(latencies),
        "failed": tally.scheduled - len(latencies),  # lost connections and no answer in time
        "lost_connections": tally.failed,
        "statuses": {str(code): count for code, count in sorted(tally.statuses.items())},
        "latency_ms": {
            "p50": ms(latencies, 0.50),
            "p90": ms(latencies, 0.90),
            "p99": ms(latencies, 0.99),
            "p999": ms(latencies, 0.999),
            "max": round(latencies[-1] * 1000, 3) if latencies else 0.0,
        },
        "dispatch_lag_ms": {"p50": ms(lags, 0.50), "p99": ms(lags, 0.99)},
    }


async def run(args: argparse.Namespace) -> dict[str, object]:
    """Open the connections, pace the schedule, wait for the stragglers, summarise."""
    host, port, request = build_request(args.url, args.header, args.body.encode())
    tally = Tally()
    pool = Pool(request, tally)
    loop = asyncio.get_running_loop()
    for _ in range(args.connections):
        await loop.create_connection(lambda: Connection(pool), host, port)
    start = time.perf_counter() + 0.05
    measure_from = start + args.warmup
    end = measure_from + args.duration
    tally.window_end = end
    pacer = threading.Thread(
        target=pace, args=(loop, pool.dispatch, args.rate, start, measure_from, end), daemon=True
    )
    pacer.start()
    await asyncio.to_thread(pacer.join)
    # Answers still in flight get a grace period; what never comes back counts as failed.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(pool.drained.wait(), args.timeout)
    return summary(tally, args.rate, args.duration)


def main() -> None:
    """Parse arguments, run on uvloop when installed, print the JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=2.0, help="grace for the last answers")
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("--body", default="token=bench-token")
    args = parser.parse_args()
    # The pacing thread must get the GIL back quickly when the loop thread is busy.
    sys.setswitchinterval(0.0005)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(args))
    else:
        result = uvloop.run(run(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
