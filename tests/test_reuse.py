"""Signature reuse: only within one second, bounded, keyed by everything the bytes depend on."""

from __future__ import annotations

from sidecar.reuse import MAX_ENTRIES, SignatureReuse


def test_hit_within_the_second_only() -> None:
    """An answer is found again in its second and forgotten when the second changes."""
    reuse = SignatureReuse()
    assert reuse.get(100, "k") is None
    reuse.put(100, "k", b"jws")
    assert reuse.get(100, "k") == b"jws"
    assert reuse.get(100, "other") is None
    assert reuse.get(101, "k") is None
    reuse.put(100, "k", b"late")  # an answer of a second that is over is not kept
    assert reuse.get(101, "k") is None
    assert reuse.hits == 1


def test_bounded() -> None:
    """At most MAX_ENTRIES answers are kept per second."""
    reuse = SignatureReuse()
    reuse.get(5, "start")
    for index in range(MAX_ENTRIES + 10):
        reuse.put(5, index, b"x")
    assert reuse.get(5, MAX_ENTRIES - 1) == b"x"
    assert reuse.get(5, MAX_ENTRIES + 5) is None
