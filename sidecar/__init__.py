"""Signed RFC 9701 token-introspection answers for a legacy OAuth 2.0 authorization server."""

__version__ = "0.1.0"
