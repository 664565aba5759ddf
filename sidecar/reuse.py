"""Identical answers within one second share one signature.

A JWT's claims are a pure function of the upstream answer's bytes, the audience, the shape,
the signing key and ``iat`` (whole seconds, RFC 7519 §2 NumericDate). When a resource server
introspects the same token again within the same second, the claims are byte-identical to
the ones just signed, so the JWS already made is the answer: for RS/PS/EdDSA it is exactly
the token signing would make again, for ES* another valid signature of the same bytes. The
upstream is still asked every time, so revocation is seen at once; only the signature, the
JSON work around it and (for a nested JWT) nothing else is reused — encryption stays per
answer. Never used with ``include_jti``: each of those answers must differ.
"""

from __future__ import annotations

from collections.abc import Hashable

# Enough for every (token, caller) pair a busy sidecar sees in one second, small enough
# that a flood of distinct answers costs at most a couple of megabytes.
MAX_ENTRIES = 1024


class SignatureReuse:
    """Signed answers of the current second, keyed by everything their bytes depend on."""

    __slots__ = ("_answers", "_second", "hits")

    def __init__(self) -> None:
        self._second = -1
        self._answers: dict[Hashable, bytes] = {}
        self.hits = 0

    def get(self, second: int, key: Hashable) -> bytes | None:
        """The answer signed for ``key`` during ``second``, if any."""
        if second != self._second:
            # A new second: every earlier answer carries an older iat.
            self._second = second
            self._answers = {}
            return None
        answer = self._answers.get(key)
        if answer is not None:
            self.hits += 1
        return answer

    def put(self, second: int, key: Hashable, answer: bytes) -> None:
        """Remember ``answer`` for ``key`` until ``second`` is over."""
        if second == self._second and len(self._answers) < MAX_ENTRIES:
            self._answers[key] = answer
