"""Content negotiation: which answer format an ``Accept`` header asks for (SPEC §3)."""

from __future__ import annotations

import enum
from functools import lru_cache

RFC9701_MEDIA_TYPE = "application/token-introspection+jwt"
DRAFT08_MEDIA_TYPE = "application/jwt"
JSON_MEDIA_TYPE = "application/json"


class Format(enum.Enum):
    """The shape of an introspection answer; the value is the metric label and config spelling."""

    JSON = "json"
    RFC9701 = "rfc9701"
    DRAFT08 = "draft-08"

    @property
    def is_jwt(self) -> bool:
        """True for the two signed shapes."""
        return self is not Format.JSON


# Ties go to the first: RFC 9701 > draft-08 > JSON (SPEC §3 rule 1).
_PREFERENCE = (Format.RFC9701, Format.DRAFT08, Format.JSON)

_RANGE_FORMATS = {
    RFC9701_MEDIA_TYPE: Format.RFC9701,
    DRAFT08_MEDIA_TYPE: Format.DRAFT08,
    JSON_MEDIA_TYPE: Format.JSON,
    "application/*": Format.JSON,
    "*/*": Format.JSON,
}


def parse_accept(accept: str) -> dict[Format, float]:
    """Map each format that a media range in ``accept`` names to its highest q-value.

    RFC 9110 §12.5.1: media ranges separated by commas, parameters after ``;``, and a
    ``q`` weight between 0 and 1 (default 1). Case is not significant. A range whose
    weight does not parse is ignored rather than guessed at.
    """
    weights: dict[Format, float] = {}
    for media_range in accept.split(","):
        media_type, _, params = media_range.partition(";")
        found = _RANGE_FORMATS.get(media_type.strip().lower())
        if found is None:
            continue
        q = _weight(params)
        if q is None:
            continue
        if q > weights.get(found, -1.0):
            weights[found] = q
    return weights


def _weight(params: str) -> float | None:
    """The ``q`` parameter of a media range's parameter list; None when it is malformed."""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() != "q":
            continue
        try:
            q = float(value.strip())
        except ValueError:
            return None
        return q if 0.0 <= q <= 1.0 else None
    return 1.0


@lru_cache(maxsize=256)
def choose_format(
    accept: str | None,
    *,
    always_jwt: bool = False,
    default_format: Format = Format.RFC9701,
    draft08: bool = True,
) -> Format:
    """The answer format for an ``Accept`` header value under the operator's settings (SPEC §3).

    Cached: callers send a handful of distinct ``Accept`` values, so parsing once each keeps
    negotiation off the hot path.
    """
    weights = parse_accept(accept) if accept else {}
    if not draft08 and Format.DRAFT08 in weights:
        # SPEC §3: with draft08 off, application/jwt is treated like JSON.
        q = weights.pop(Format.DRAFT08)
        weights[Format.JSON] = max(q, weights.get(Format.JSON, -1.0))
    if always_jwt:
        # SPEC §3 rule 3: the shape is the JWT type Accept names (q > 0), else the default.
        named = [f for f in _PREFERENCE if f.is_jwt and weights.get(f, 0.0) > 0.0]
        if not named:
            return default_format
        return max(named, key=lambda f: (weights[f], -_PREFERENCE.index(f)))
    acceptable = [f for f in _PREFERENCE if weights.get(f, 0.0) > 0.0]
    if not acceptable:
        # SPEC §3 rule 2: never 406, legacy callers must keep working.
        return Format.JSON
    return max(acceptable, key=lambda f: (weights[f], -_PREFERENCE.index(f)))
