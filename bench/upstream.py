"""A fast legacy-AS stand-in: POST /token/introspect answers one fixed RFC 7662 JSON object.

It is a raw asyncio Protocol (on uvloop when installed) with a minimal HTTP/1.1 keep-alive
parser, so that it costs a few tens of microseconds per request and is never the bottleneck
of a benchmark. It does not authenticate callers: every introspection is "active".

Distinct answers: a request whose form body starts with ``token=bench-distinct-`` (or every
request, with ``--distinct``) gets the same object with a per-answer counter in the last 12
hex digits of ``jti``, so no two answers are byte-identical and the sidecar can never reuse a
signature (sidecar/reuse.py keys on the upstream body). The answer has the same length as
the fixed one and costs one small bytes concatenation more.

    python bench/upstream.py --port 9000 [--distinct]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from typing import cast

INTROSPECTION_PATH = b"/token/introspect"
MAX_HEAD_BYTES = 16384
# A form body starting with this asks for a distinct answer (bench/loads.py DISTINCT_BODY).
DISTINCT_TOKEN_PREFIX = b"token=bench-distinct-"
FIXED_JTI = "2f6a1c1e-4b0e-4c65-9a8b-8f3cde0a4d11"
COUNTER_DIGITS = 12  # the last group of the UUID-shaped jti: 12 lowercase hex digits


def introspection_object(issuer: str) -> dict[str, object]:
    """A realistic RFC 7662 §2.2 answer for an active access token."""
    now = int(time.time())
    return {
        "active": True,
        "scope": "openid profile payments:read payments:write",
        "client_id": "web-shop",
        "username": "alice",
        "sub": "248289761001",
        "token_type": "Bearer",
        "exp": now + 86400,  # the bench may run for minutes: stay valid all along
        "iat": now,
        "nbf": now,
        "iss": issuer,
        "aud": "https://payments.example.com",
        "jti": FIXED_JTI,
    }


def http_response(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    """A complete, pre-encoded HTTP/1.1 response (keep-alive is the HTTP/1.1 default)."""
    head = (
        f"HTTP/1.1 {status}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "\r\n"
    )
    return head.encode() + body


def content_length(head: bytes) -> int | None:
    """The request's Content-Length (0 when absent); None for a chunked body we do not parse."""
    lowered = head.lower()
    if b"\r\ntransfer-encoding:" in lowered:
        return None
    at = lowered.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    start = at + len(b"\r\ncontent-length:")
    end = lowered.find(b"\r\n", start)
    return int(lowered[start : end if end >= 0 else None])


class DistinctAnswers:
    """The fixed 200 response split around jti's last 12 hex digits: a counter goes there."""

    __slots__ = ("count", "prefix", "suffix")

    def __init__(self, response: bytes) -> None:
        fixed_digits = FIXED_JTI.rsplit("-", 1)[1].encode()
        at = response.rindex(fixed_digits)
        self.prefix = response[:at]
        self.suffix = response[at + COUNTER_DIGITS :]
        self.count = 0

    def next(self) -> bytes:
        """The next answer: same bytes as the fixed one but for a never-repeated jti tail."""
        self.count += 1
        return b"%b%012x%b" % (self.prefix, self.count & 0xFFFFFFFFFFFF, self.suffix)


class IntrospectionProtocol(asyncio.Protocol):
    """One client connection: parse requests back to back, answer each with a fixed response."""

    def __init__(
        self, answers: dict[str, bytes], distinct: DistinctAnswers, always_distinct: bool
    ) -> None:
        self.answers = answers
        self.distinct = distinct  # shared by every connection: one counter per process
        self.always_distinct = always_distinct
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Remember the transport to answer on."""
        # uvloop's transports are not asyncio.Transport subclasses, only duck-typed alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        """Answer every complete request in the buffer (pipelining-safe)."""
        assert self.transport is not None
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buffer[:end])
            length = content_length(head)
            if length is None or end > MAX_HEAD_BYTES:
                self.transport.write(self.answers["bad"])
                self.transport.close()
                return
            total = end + 4 + length
            if len(self.buffer) < total:
                return  # the body is still on its way
            distinct = self.always_distinct or self.buffer.startswith(
                DISTINCT_TOKEN_PREFIX, end + 4, total
            )
            del self.buffer[:total]
            answer = self.answer_for(head.split(b"\r\n", 1)[0])
            if distinct and answer is self.answers["ok"]:
                answer = self.distinct.next()
            self.transport.write(answer)
        if len(self.buffer) > MAX_HEAD_BYTES:
            self.transport.close()

    def answer_for(self, request_line: bytes) -> bytes:
        """200 with the introspection object for POST on the path, else 404/405."""
        method, _, rest = request_line.partition(b" ")
        path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
        if path != INTROSPECTION_PATH:
            return self.answers["not_found"]
        return self.answers["ok"] if method == b"POST" else self.answers["method"]


async def serve(host: str, port: int, issuer: str, always_distinct: bool = False) -> None:
    """Serve until SIGTERM or SIGINT."""
    body = json.dumps(introspection_object(issuer), separators=(",", ":")).encode()
    answers = {
        "ok": http_response("200 OK", body),
        "not_found": http_response("404 Not Found", b'{"error":"not_found"}'),
        "method": http_response("405 Method Not Allowed", b'{"error":"method_not_allowed"}'),
        "bad": http_response("400 Bad Request", b'{"error":"invalid_request"}'),
    }
    distinct = DistinctAnswers(answers["ok"])
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(
        lambda: IntrospectionProtocol(answers, distinct, always_distinct),
        host,
        port,
        backlog=1024,
        reuse_address=True,
    )
    async with server:
        await stop.wait()


def main() -> None:
    """Parse arguments and serve, on uvloop when it is installed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--issuer", default="https://legacy-as.example.com")
    parser.add_argument(
        "--distinct",
        action="store_true",
        help="every answer distinct (a counter in jti), not only for bench-distinct- tokens",
    )
    args = parser.parse_args()
    server = serve(args.host, args.port, args.issuer, args.distinct)
    try:
        import uvloop
    except ImportError:
        asyncio.run(server)
    else:
        uvloop.run(server)


if __name__ == "__main__":
    main()
