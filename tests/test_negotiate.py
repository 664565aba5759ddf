"""Accept negotiation as a table (SPEC §3); no event loop needed."""

from __future__ import annotations

import pytest

from sidecar.negotiate import Format, choose_format, parse_accept

J, R, D = Format.JSON, Format.RFC9701, Format.DRAFT08
RT = "application/token-introspection+jwt"
DT = "application/jwt"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, J),
        ("", J),
        ("application/json", J),
        ("*/*", J),
        ("application/*", J),
        ("text/html", J),  # nothing acceptable: JSON, never 406
        ("garbage;;;", J),
        (RT, R),
        (DT, D),
        ("Application/Token-Introspection+JWT", R),
        ("APPLICATION/JWT; charset=utf-8", D),
        (f"{RT}; charset=utf-8; q=0.9", R),
        (f"{RT};q=0", J),
        (f"{DT};q=0", J),
        (f"{RT}, {DT}", R),  # tie: RFC 9701 > draft-08
        (f"{DT}, {RT}", R),
        (f"{RT}, application/json", R),  # tie: RFC 9701 > JSON
        (f"{DT}, application/json", D),  # tie: draft-08 > JSON
        (f"{RT};q=0.5, {DT};q=0.8", D),
        (f"{RT};q=0.5, application/json;q=0.6", J),
        (f"application/json;q=0.4, {RT};q=0.5", R),
        (f"*/*;q=0.9, {RT};q=0.8", J),
        (f"*/*;q=0.1, {RT}", R),
        (f"{RT};q=0.001, text/plain", R),
        (f"{RT};q=abc", J),  # a weight that does not parse is ignored
        (f"{RT};q=1.5", J),  # out of range
        (f"{RT} ; Q=0.7 , application/json ; q=0.6", R),
        (f"{RT};q=0, {RT};q=0.5", R),  # the highest q of a repeated range
        ("application/token-introspection+jwt-foo", J),
    ],
)
def test_choose_format(accept: str | None, expected: Format) -> None:
    """Each Accept value yields the format SPEC §3 rule 1 and 2 give."""
    assert choose_format(accept) is expected


@pytest.mark.parametrize(
    ("accept", "default", "expected"),
    [
        (None, R, R),
        (None, D, D),
        ("application/json", R, R),
        ("application/json", D, D),
        ("*/*", D, D),
        (RT, D, R),
        (DT, R, D),
        (f"{RT};q=0", D, D),  # q=0 does not name a type
        (f"{RT};q=0, {DT}", R, D),
        (f"{RT};q=0.2, {DT};q=0.4", R, D),
        (f"{RT}, {DT}", D, R),
        (f"application/json, {DT};q=0.1", R, D),
    ],
)
def test_always_jwt(accept: str | None, default: Format, expected: Format) -> None:
    """Under always_jwt the shape is the JWT type Accept names, else default_format."""
    assert choose_format(accept, always_jwt=True, default_format=default) is expected


@pytest.mark.parametrize(
    ("accept", "always_jwt", "expected"),
    [
        (DT, False, J),  # treated like JSON
        (f"{RT};q=0.5, {DT}", False, J),  # application/jwt counts as JSON at q=1
        (f"{RT}, {DT}", False, R),
        (DT, True, R),  # not named under always_jwt: default_format
    ],
)
def test_draft08_off(accept: str, always_jwt: bool, expected: Format) -> None:
    """With draft08 false, application/jwt is treated like JSON (and not named under always_jwt)."""
    assert choose_format(accept, always_jwt=always_jwt, draft08=False) is expected


def test_parse_accept_weights() -> None:
    """parse_accept maps each known range to its highest weight."""
    weights = parse_accept(f"{RT};q=0.3, */*;q=0.1, application/json;q=0.2, {DT}")
    assert weights == {R: 0.3, J: 0.2, D: 1.0}
