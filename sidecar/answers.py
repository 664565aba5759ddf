"""Small HTTP answer helpers shared by the handlers (SPEC §3 headers, JSON error bodies)."""

from __future__ import annotations

import json

from aiohttp import web

# SPEC §3 (after RFC 6749 §5.1): introspection answers are never stored by a cache, and
# they differ by Accept.
NO_STORE_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache", "Vary": "Accept"}


def error_response(
    status: int, error: str, description: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    """A small RFC 6749 §5.2 style JSON error; never echoes upstream bytes."""
    body = json.dumps({"error": error, "error_description": description}).encode()
    all_headers = {"Content-Type": "application/json"}
    if headers:
        all_headers.update(headers)
    return web.Response(status=status, body=body, headers=all_headers)
