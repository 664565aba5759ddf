"""The downgrade guard: a client with ``require_jwt`` never gets a plain JSON answer (SPEC §7).

Without it, whoever can change a request's ``Accept`` could turn a signed answer into an
unsigned one the resource server would still trust. Only used when some client has
``require_jwt``, so plain JSON requests otherwise pass with no form parsing at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from urllib.parse import parse_qsl

from sidecar.callers import FORM_CONTENT_TYPE, assertion_client_id, basic_client_id
from sidecar.errors import CallerError


class DowngradeGuard:
    """Refuses plain JSON requests that name a client which requires JWT answers."""

    def __init__(self, client_ids: Iterable[str]) -> None:
        self.client_ids = frozenset(client_ids)

    @property
    def active(self) -> bool:
        """Whether any client requires JWT answers."""
        return bool(self.client_ids)

    def check(self, authorization: str | None, content_type: str | None, body: bytes) -> None:
        """Raise ``CallerError`` (400 invalid_request) if the request names a guarded client.

        Every identity the request claims counts, leniently parsed: a request that is malformed
        in some other way must not slip a guarded client's JSON answer past the guard.
        """
        named = claimed_client_ids(authorization, content_type, body) & self.client_ids
        if named:
            raise CallerError(
                "invalid_request",
                "this client must ask for a JWT answer "
                "(Accept: application/token-introspection+jwt)",
            )


def claimed_client_ids(
    authorization: str | None, content_type: str | None, body: bytes
) -> set[str]:
    """Every client_id the request names: Basic user, client_assertion sub/iss, client_id."""
    claimed: set[str] = set()
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    if scheme.lower() == "basic":
        with contextlib.suppress(CallerError):
            claimed.add(basic_client_id(credentials))
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type != FORM_CONTENT_TYPE or not body:
        return claimed
    for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        if name == "client_id":
            claimed.add(value)
        elif name == "client_assertion":
            with contextlib.suppress(CallerError):
                claimed.add(assertion_client_id(value))
    return claimed
