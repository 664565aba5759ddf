"""The resource server's failures: one ``IntrospectionError`` subclass per broken check."""

from __future__ import annotations


class IntrospectionError(Exception):
    """An introspection answer that must not be trusted; ``reason`` is a stable short code."""

    reason = "invalid"


class MalformedResponse(IntrospectionError):
    """Not a well-formed JWT, or a required claim is missing or of the wrong type."""

    reason = "malformed"


class UnexpectedType(IntrospectionError):
    """The answer is not an RFC 9701 introspection response (``typ``, ``cty`` or media type)."""

    reason = "unexpected_type"


class DisallowedAlgorithm(IntrospectionError):
    """The JWS or JWE algorithm is not on the allow-list (``none`` and HS* never are)."""

    reason = "disallowed_algorithm"


class BadSignature(IntrospectionError):
    """The signature does not verify with any key of the AS that fits the algorithm."""

    reason = "bad_signature"


class UnknownKey(BadSignature):
    """The ``kid`` names no key of the AS, even after a refresh of its JWK Set."""

    reason = "unknown_key"


class WrongIssuer(IntrospectionError):
    """``iss`` is not the expected authorization server."""

    reason = "wrong_issuer"


class WrongAudience(IntrospectionError):
    """``aud`` does not name this resource server."""

    reason = "wrong_audience"


class StaleResponse(IntrospectionError):
    """``iat`` is older than the allowed age, or in the future beyond the leeway."""

    reason = "stale"


class DecryptionFailed(IntrospectionError):
    """The nested JWT cannot be decrypted, or encryption was required and is missing."""

    reason = "decryption_failed"


class IntrospectionRefused(IntrospectionError):
    """The AS answered with an error status (RFC 7662 §2.3, RFC 6749 §5.2)."""

    reason = "refused"

    def __init__(self, message: str, *, status: int, error: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error


class IntrospectionUnavailable(IntrospectionError):
    """The AS could not be reached or did not answer in time."""

    reason = "unavailable"


class JwksUnavailable(IntrospectionError):
    """The AS's JWK Set cannot be fetched or is not a JWK Set."""

    reason = "jwks_unavailable"
