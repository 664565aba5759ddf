"""The introspection endpoint end to end: real fake AS, real config loader, real app."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from conftest import ACTIVE_ANSWER, DRAFT08, ISSUER, RFC9701, FakeAS, Running, basic, verify_jwt

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache", "Vary": "Accept"}


def assert_no_store(headers: dict[str, str]) -> None:
    for name, value in NO_STORE.items():
        assert headers.get(name) == value, name


async def test_rfc9701_answer_is_a_verifiable_jwt(sidecar: Running, fake_as: FakeAS) -> None:
    """An RFC 9701 request yields a JWT whose claims hold the upstream object, verified by PyJWT."""
    before = int(time.time())
    status, headers, body = await sidecar.introspect(accept=RFC9701)
    assert status == 200
    assert headers["Content-Type"] == RFC9701
    assert_no_store(headers)
    header, claims = verify_jwt(body, await sidecar.public_jwks(), audience="rs-1")
    assert header == {"alg": "ES256", "kid": "es256-key", "typ": "token-introspection+jwt"}
    assert set(claims) == {"iss", "aud", "iat", "token_introspection"}
    assert claims["iss"] == ISSUER and claims["aud"] == "rs-1"
    assert before <= claims["iat"] <= int(time.time())
    assert claims["token_introspection"] == ACTIVE_ANSWER
    assert (
        sidecar.sample(
            "sidecar_introspection_requests_total", {"format": "rfc9701", "outcome": "signed"}
        )
        == 1
    )


async def test_draft08_answer_is_flat(sidecar: Running) -> None:
    """A draft-08 request yields the upstream members flat, with our iss, aud and iat on top."""
    status, headers, body = await sidecar.introspect(accept=DRAFT08)
    assert status == 200
    assert headers["Content-Type"] == DRAFT08
    _, claims = verify_jwt(body, await sidecar.public_jwks(), audience="rs-1")
    expected = {**ACTIVE_ANSWER, "iss": ISSUER, "aud": "rs-1"}
    del expected["iat"]
    assert {k: v for k, v in claims.items() if k != "iat"} == expected
    assert claims["iat"] != ACTIVE_ANSWER["iat"]


@pytest.mark.parametrize("accept", [RFC9701, DRAFT08])
async def test_inactive_token_carries_nothing_else(
    sidecar: Running, fake_as: FakeAS, accept: str
) -> None:
    """An inactive answer is signed with nothing of the upstream's extra members."""
    fake_as.answer({"active": False, "sub": "alice", "reason": "revoked", "exp": 1})
    _, _, body = await sidecar.introspect(accept=accept)
    _, claims = verify_jwt(body, await sidecar.public_jwks(), audience="rs-1")
    if accept == RFC9701:
        assert claims["token_introspection"] == {"active": False}
        assert "sub" not in claims and "exp" not in claims
    else:
        assert set(claims) == {"active", "iss", "aud", "iat"} and claims["active"] is False


async def test_json_answer_is_byte_for_byte(sidecar: Running, fake_as: FakeAS) -> None:
    """A plain request gets the upstream's status, Content-Type and bytes unchanged."""
    raw = b'{"active" : true,  "scope":"a b", "x": 1.50}'
    fake_as.answer(raw, headers={"Content-Type": "application/json;charset=UTF-8"})
    status, headers, body = await sidecar.introspect(accept=None)
    assert status == 200 and body == raw
    assert headers["Content-Type"] == "application/json;charset=UTF-8"
    assert_no_store(headers)


async def test_json_request_is_forwarded_without_caller_checks(
    sidecar: Running, fake_as: FakeAS
) -> None:
    """A JSON request with no client authentication is forwarded: the upstream judges it."""
    fake_as.answer({"error": "invalid_client"}, status=401)
    status, _, body = await sidecar.introspect(accept="application/json", client=None)
    assert status == 401 and json.loads(body) == {"error": "invalid_client"}
    assert len(fake_as.introspections) == 1


async def test_forwarded_request(sidecar: Running, fake_as: FakeAS) -> None:
    """The body bytes, Authorization, Content-Type and X-Forwarded-* go upstream; Accept is JSON."""
    body = b"token=abc%2Bdef&token_type_hint=access_token"
    await sidecar.introspect(
        accept=RFC9701,
        data=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Forwarded-For": "203.0.113.7",
            "Cookie": "session=secret",
            "X-Custom": "not forwarded",
        },
    )
    (seen,) = fake_as.introspections
    assert seen.method == "POST" and seen.path == "/token/introspect"
    assert seen.body == body
    assert seen.headers["Authorization"] == basic("rs-1")
    assert seen.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert seen.headers["Accept"] == "application/json"
    assert seen.headers["X-Forwarded-For"] == "203.0.113.7, 127.0.0.1"
    assert seen.headers["X-Forwarded-Proto"] == "http"
    assert seen.headers["X-Forwarded-Host"] == f"127.0.0.1:{sidecar.server.proxy_port}"
    assert "Cookie" not in seen.headers and "X-Custom" not in seen.headers


async def test_upstream_introspection_path(
    make_config: Any, start_sidecar: Any, fake_as: FakeAS
) -> None:
    """upstream.introspection_path sends requests to another upstream path than ours."""
    running = await start_sidecar(
        make_config(
            {"introspection": {"path": "/introspect"},
             "upstream": {"introspection_path": "/token/introspect/legacy"}}
        )
    )  # fmt: skip
    status, _, _ = await running.introspect()
    assert status == 200
    assert fake_as.received[0].path == "/token/introspect/legacy"


@pytest.mark.parametrize("status", [400, 401, 403, 500, 503])
async def test_upstream_error_passes_through_unsigned(
    sidecar: Running, fake_as: FakeAS, status: int
) -> None:
    """A non-2xx upstream answer in JWT mode keeps status, body, Content-Type, WWW-Authenticate."""
    raw = b'{"error":"invalid_client","error_description":"bad secret"}'
    fake_as.answer(
        raw,
        status=status,
        headers={"Content-Type": "application/json", "WWW-Authenticate": 'Basic realm="as"'},
    )
    got_status, headers, body = await sidecar.introspect(accept=RFC9701)
    assert (got_status, body) == (status, raw)
    assert headers["Content-Type"] == "application/json"
    assert headers["WWW-Authenticate"] == 'Basic realm="as"'
    assert_no_store(headers)


async def test_upstream_redirect_is_not_followed(sidecar: Running, fake_as: FakeAS) -> None:
    """A 3xx from upstream is passed on, not followed, and not signed."""
    fake_as.answer(b"", status=302, headers={"Location": "http://127.0.0.1:1/elsewhere"})
    status, _headers, _ = await sidecar.introspect(accept=RFC9701)
    assert status == 302
    assert len(fake_as.received) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"scope": "a"}',
        b'{"active": "true"}',
        b'{"active": 1}',
        b'{"active": true, "x": NaN}',
        b'{"active": true, "x": "\\ud800"}',
        b"",
    ],
)
async def test_bad_upstream_answer_is_502_and_unsigned(
    sidecar: Running, fake_as: FakeAS, body: bytes
) -> None:
    """A 2xx that is not a JSON object with a boolean active yields 502, nothing signed."""
    fake_as.answer(body + b"SECRET-UPSTREAM-BYTES" if body == b"not json" else body)
    status, headers, answer = await sidecar.introspect(accept=RFC9701)
    assert status == 502
    assert headers["Content-Type"] == "application/json"
    assert_no_store(headers)
    error = json.loads(answer)
    assert set(error) == {"error", "error_description"}
    assert b"SECRET" not in answer
    assert (
        sidecar.sample(
            "sidecar_introspection_requests_total",
            {"format": "rfc9701", "outcome": "bad_upstream_answer"},
        )
        == 1
    )


async def test_bad_upstream_answer_passes_in_json_mode(sidecar: Running, fake_as: FakeAS) -> None:
    """In JSON mode the upstream's bytes are passed on whatever they are: nothing is signed."""
    fake_as.answer(b"<html>oops</html>", headers={"Content-Type": "text/html"})
    status, headers, body = await sidecar.introspect(accept=None)
    assert (status, body, headers["Content-Type"]) == (200, b"<html>oops</html>", "text/html")


async def test_upstream_unreachable_is_502(make_config: Any, start_sidecar: Any) -> None:
    """An upstream nobody listens on yields 502 with a small JSON error."""
    running = await start_sidecar(make_config({"upstream": {"url": "http://127.0.0.1:9"}}))
    for accept in (RFC9701, None):
        status, headers, body = await running.introspect(accept=accept)
        assert status == 502
        assert json.loads(body)["error"] == "temporarily_unavailable"
        assert_no_store(headers)


async def test_upstream_timeout_is_504(
    make_config: Any, start_sidecar: Any, fake_as: FakeAS
) -> None:
    """An upstream slower than upstream.timeout yields 504 and nothing is signed."""
    running = await start_sidecar(make_config({"upstream": {"timeout": 0.2}}))
    fake_as.answer(delay=1.0)
    status, headers, body = await running.introspect(accept=RFC9701)
    assert status == 504
    assert json.loads(body)["error"] == "temporarily_unavailable"
    assert_no_store(headers)
    assert (
        running.sample("sidecar_upstream_request_duration_seconds_count", {"outcome": "timeout"})
        == 1
    )


async def test_upstream_answer_too_large_is_502(
    make_config: Any, start_sidecar: Any, fake_as: FakeAS
) -> None:
    """An upstream answer over max_response_bytes yields 502 in both modes."""
    running = await start_sidecar(make_config({"upstream": {"max_response_bytes": 100}}))
    fake_as.answer({"active": True, "pad": "x" * 200})
    for accept in (RFC9701, None):
        status, _, body = await running.introspect(accept=accept)
        assert status == 502, accept
        assert b"x" * 50 not in body


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_other_methods_are_405(sidecar: Running, fake_as: FakeAS, method: str) -> None:
    """Only POST is answered on the introspection path; others get 405 with Allow: POST."""
    async with sidecar.session.request(method, sidecar.introspect_url) as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
        assert_no_store(dict(response.headers))
    assert fake_as.received == []


async def test_oversized_body_is_413_and_not_forwarded(
    make_config: Any, start_sidecar: Any, fake_as: FakeAS
) -> None:
    """A body over max_request_bytes yields 413 and reaches nobody, declared or chunked."""
    running = await start_sidecar(make_config({"introspection": {"max_request_bytes": 64}}))
    status, headers, _ = await running.introspect(data={"token": "x" * 100})
    assert status == 413
    assert_no_store(headers)

    async def chunks() -> Any:
        for _ in range(10):
            yield b"token=" + b"y" * 20

    async with running.session.post(
        running.introspect_url, data=chunks(), headers={"Authorization": basic("rs-1")}
    ) as response:
        assert response.status == 413
    assert fake_as.received == []


async def test_body_at_the_limit_is_forwarded(
    make_config: Any, start_sidecar: Any, fake_as: FakeAS
) -> None:
    """A body exactly max_request_bytes long is forwarded."""
    running = await start_sidecar(make_config({"introspection": {"max_request_bytes": 64}}))
    status, _, _ = await running.introspect(data=b"token=" + b"z" * 58)
    assert status == 200
    assert len(fake_as.introspections[0].body) == 64


@pytest.mark.parametrize(
    ("headers", "data", "error"),
    [
        ({}, {"token": "t"}, "invalid_client"),
        ({"Authorization": basic("rs-1")}, {"token": "t", "client_id": "rs-2"}, "invalid_request"),
        ({"Authorization": "Bearer abc"}, {"token": "t"}, "invalid_client"),
        ({"Authorization": "Basic !!!"}, {"token": "t"}, "invalid_client"),
    ],
)
async def test_caller_errors_forward_nothing(
    sidecar: Running, fake_as: FakeAS, headers: dict[str, str], data: dict[str, str], error: str
) -> None:
    """A JWT asked for with no caller, or a disagreeing client_id, is a 400 and reaches nobody."""
    status, answer_headers, body = await sidecar.introspect(
        accept=RFC9701, client=None, data=data, headers=headers
    )
    assert status == 400
    assert json.loads(body)["error"] == error
    assert_no_store(answer_headers)
    assert fake_as.received == []


async def test_caller_from_client_secret_post(sidecar: Running) -> None:
    """client_secret_post: the form's client_id becomes aud."""
    _, _, body = await sidecar.introspect(
        client=None, data={"token": "t", "client_id": "rs-post", "client_secret": "s"}
    )
    _, claims = verify_jwt(body, await sidecar.public_jwks(), audience="rs-post")
    assert claims["aud"] == "rs-post"


async def test_caller_from_client_assertion(sidecar: Running) -> None:
    """private_key_jwt: the assertion's sub becomes aud (the upstream verifies the assertion)."""
    import jwt as pyjwt

    assertion = pyjwt.encode({"iss": "rs-jwt", "sub": "rs-jwt", "aud": ISSUER}, "k" * 32)
    _, _, body = await sidecar.introspect(
        client=None,
        data={
            "token": "t",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
    )
    _, claims = verify_jwt(body, await sidecar.public_jwks(), audience="rs-jwt")
    assert claims["aud"] == "rs-jwt"


async def test_caller_from_form_encoded_basic(sidecar: Running) -> None:
    """Basic credentials are form-decoded (RFC 6749 §2.3.1) before they become aud."""
    import base64

    user = "rs%3Aone+%C2%A3"
    value = "Basic " + base64.b64encode(f"{user}:p%3Ass".encode()).decode()
    _, _, body = await sidecar.introspect(client=None, headers={"Authorization": value})
    _, claims = verify_jwt(body, await sidecar.public_jwks(), audience="rs:one £")
    assert claims["aud"] == "rs:one £"


async def test_audience_override(make_config: Any, start_sidecar: Any) -> None:
    """clients.<id>.audience replaces the client_id as aud."""
    running = await start_sidecar(
        make_config({"clients": {"rs-1": {"audience": "https://rs.example.com"}}})
    )
    _, _, body = await running.introspect()
    _, claims = verify_jwt(body, await running.public_jwks(), audience="https://rs.example.com")
    assert claims["aud"] == "https://rs.example.com"


async def test_upstream_refusal_is_not_signed_even_with_caller(
    sidecar: Running, fake_as: FakeAS
) -> None:
    """The caller identity is used only after the upstream answered 2xx."""
    fake_as.answer({"active": True}, status=401)
    status, headers, _ = await sidecar.introspect(accept=RFC9701)
    assert status == 401 and headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("extra", "accept", "content_type", "shape"),
    [
        ({"always_jwt": True}, None, RFC9701, "rfc9701"),
        ({"always_jwt": True}, "application/json", RFC9701, "rfc9701"),
        ({"always_jwt": True, "default_format": "draft-08"}, None, DRAFT08, "draft-08"),
        ({"always_jwt": True, "default_format": "draft-08"}, RFC9701, RFC9701, "rfc9701"),
        ({"always_jwt": True}, DRAFT08, DRAFT08, "draft-08"),
        ({"always_jwt": True, "draft08": False}, DRAFT08, RFC9701, "rfc9701"),
        ({"draft08": False}, DRAFT08, "application/json", "json"),
    ],
)
async def test_always_jwt_and_draft08_switch(
    make_config: Any,
    start_sidecar: Any,
    extra: dict[str, Any],
    accept: str | None,
    content_type: str,
    shape: str,
) -> None:
    """always_jwt, default_format and draft08 pick the answer's shape as SPEC §3 says."""
    running = await start_sidecar(make_config({"introspection": extra}))
    status, headers, body = await running.introspect(accept=accept)
    assert status == 200
    assert headers["Content-Type"].startswith(content_type)
    if shape == "json":
        assert json.loads(body) == ACTIVE_ANSWER
        return
    _, claims = verify_jwt(body, await running.public_jwks(), audience="rs-1")
    assert ("token_introspection" in claims) == (shape == "rfc9701")


async def test_typ_override_and_jti(make_config: Any, start_sidecar: Any) -> None:
    """introspection.typ sets the JWS typ; include_jti adds a fresh random jti each time."""
    running = await start_sidecar(
        make_config({"introspection": {"typ": "JWT", "include_jti": True}})
    )
    jtis = set()
    for _ in range(2):
        _, _, body = await running.introspect()
        _header, claims = verify_jwt(body, await running.public_jwks(), audience="rs-1", typ="JWT")
        jtis.add(claims["jti"])
    assert len(jtis) == 2


async def test_unicode_and_nested_values_survive(sidecar: Running, fake_as: FakeAS) -> None:
    """Every member and value of the upstream object is kept, nested and unicode included."""
    answer = {"active": True, "ünï": {"a": [1, {"b": "😀"}]}, "big": 2**70, "f": 0.1, "n": None}
    fake_as.answer(answer)
    _, _, body = await sidecar.introspect()
    _, claims = verify_jwt(body, await sidecar.public_jwks(), audience="rs-1")
    assert claims["token_introspection"] == answer


async def test_verified_by_joserfc(sidecar: Running) -> None:
    """A second independent library, joserfc, accepts the answer against the published set."""
    from joserfc import jwt as jose_jwt
    from joserfc.jwk import KeySet

    _, _, body = await sidecar.introspect()
    token = jose_jwt.decode(body.decode(), KeySet.import_key_set(await sidecar.public_jwks()))
    assert token.header["typ"] == "token-introspection+jwt"
    assert token.claims["token_introspection"]["active"] is True


async def test_empty_body_is_forwarded_in_json_mode(sidecar: Running, fake_as: FakeAS) -> None:
    """An empty body with Content-Length 0 is forwarded as is; the upstream judges it."""
    status, _, _ = await sidecar.introspect(accept=None, data=b"")
    assert status == 200
    assert fake_as.introspections[0].body == b""


async def test_body_cut_short_is_400_and_not_forwarded(sidecar: Running, fake_as: FakeAS) -> None:
    """A body shorter than its Content-Length is refused and reaches nobody."""
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.server.proxy_port)
    writer.write(
        b"POST /token/introspect HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n\r\ntoken=abc"
    )
    await writer.drain()
    writer.write_eof()
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400") or answer == b""
    assert fake_as.received == []


async def test_identical_answers_in_one_second_share_a_signature(
    sidecar: Running, fake_as: FakeAS
) -> None:
    """Repeating a request within a second reuses the JWS; a new upstream answer is signed anew."""
    first = await sidecar.introspect()
    second = await sidecar.introspect()
    jwks = await sidecar.public_jwks()
    if (
        verify_jwt(first[2], jwks, audience="rs-1")[1]["iat"]
        == verify_jwt(second[2], jwks, audience="rs-1")[1]["iat"]
    ):
        assert first[2] == second[2]
        assert sidecar.sample("sidecar_signatures_reused_total") == 1
    fake_as.answer({"active": False})
    _, _, third = await sidecar.introspect()
    assert verify_jwt(third, jwks, audience="rs-1")[1]["token_introspection"] == {"active": False}
    _, _, other_caller = await sidecar.introspect(client="rs-2")
    assert verify_jwt(other_caller, jwks, audience="rs-2")[1]["aud"] == "rs-2"
    assert len(fake_as.introspections) == 4  # the upstream is asked every time


async def test_include_jti_never_reuses(make_config: Any, start_sidecar: Any) -> None:
    """With include_jti every answer is signed anew, so every jti differs."""
    running = await start_sidecar(make_config({"introspection": {"include_jti": True}}))
    bodies = {(await running.introspect())[2] for _ in range(5)}
    assert len(bodies) == 5
    assert running.sample("sidecar_signatures_reused_total") == 0
