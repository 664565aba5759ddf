"""Every other path goes to the upstream unchanged; discovery documents gain our algorithms."""

from __future__ import annotations

import json
from typing import Any

from conftest import FakeAS, Running


async def test_other_paths_are_forwarded_unchanged(sidecar: Running, fake_as: FakeAS) -> None:
    """Method, raw path, query, body and end-to-end headers go upstream; the answer comes back."""
    fake_as.answer(
        b"\x00binary\xff" * 1000,
        status=201,
        headers={"Content-Type": "application/octet-stream", "X-Upstream": "yes"},
    )
    async with sidecar.session.put(
        sidecar.url + "/authorize/a%2Fb?x=1&y=%20",
        data=b"payload-bytes",
        headers={"X-Custom": "kept", "Authorization": "Bearer abc", "Connection": "keep-alive"},
    ) as response:
        assert response.status == 201
        assert response.headers["X-Upstream"] == "yes"
        assert await response.read() == b"\x00binary\xff" * 1000
    (seen,) = fake_as.received
    assert (seen.method, seen.path, seen.body) == (
        "PUT",
        "/authorize/a%2Fb?x=1&y=%20",
        b"payload-bytes",
    )
    assert seen.headers["X-Custom"] == "kept"
    assert seen.headers["Authorization"] == "Bearer abc"
    assert seen.headers["X-Forwarded-For"] == "127.0.0.1"


async def test_passthrough_keeps_compressed_bytes(sidecar: Running, fake_as: FakeAS) -> None:
    """A compressed upstream answer is streamed as sent, Content-Encoding kept."""
    import gzip

    fake_as.answer(gzip.compress(b"hello"), headers={"Content-Encoding": "gzip"})
    async with sidecar.session.get(sidecar.url + "/page", auto_decompress=False) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(await response.read()) == b"hello"


async def test_passthrough_off_is_404(
    make_config: Any, start_sidecar: Any, fake_as: FakeAS
) -> None:
    """With passthrough off, other paths are 404 and nothing is forwarded."""
    running = await start_sidecar(make_config({"passthrough": False}))
    async with running.session.get(running.url + "/authorize") as response:
        assert response.status == 404
    assert fake_as.received == []


async def test_passthrough_upstream_down_is_502(make_config: Any, start_sidecar: Any) -> None:
    """An unreachable upstream on a passthrough path is 502 with a small JSON error."""
    running = await start_sidecar(make_config({"upstream": {"url": "http://127.0.0.1:9"}}))
    async with running.session.get(running.url + "/authorize") as response:
        assert response.status == 502
        assert (await response.json())["error"] == "temporarily_unavailable"


async def test_jwks_endpoint(sidecar: Running) -> None:
    """The public JWK Set is served as JSON, or as jwk-set+json when asked."""
    async with sidecar.session.get(sidecar.url + "/introspection/jwks.json") as response:
        assert response.headers["Content-Type"] == "application/json"
        keys = (await response.json())["keys"]
    assert {k["kid"] for k in keys} == {"es256-key", "rs256-key"}
    assert all("d" not in k for k in keys)
    async with sidecar.session.get(
        sidecar.url + "/introspection/jwks.json", headers={"Accept": "application/jwk-set+json"}
    ) as response:
        assert response.headers["Content-Type"] == "application/jwk-set+json"


async def test_metadata_gains_signing_algs(sidecar: Running, fake_as: FakeAS) -> None:
    """Both discovery documents gain introspection_signing_alg_values_supported."""
    document = {"issuer": "https://as.example.com", "token_endpoint": "https://as/token"}
    fake_as.answer(document)
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        async with sidecar.session.get(sidecar.url + path) as response:
            assert response.status == 200
            got = json.loads(await response.read())
        assert got == {**document, "introspection_signing_alg_values_supported": ["ES256", "RS256"]}


async def test_metadata_errors_pass_through(sidecar: Running, fake_as: FakeAS) -> None:
    """An upstream error or non-JSON discovery answer passes through unchanged."""
    fake_as.answer(b"<h1>down</h1>", status=503, headers={"Content-Type": "text/html"})
    async with sidecar.session.get(sidecar.url + "/.well-known/openid-configuration") as response:
        assert response.status == 503
        assert await response.read() == b"<h1>down</h1>"
    fake_as.answer(b"not json", headers={"Content-Type": "text/plain"})
    async with sidecar.session.get(sidecar.url + "/.well-known/openid-configuration") as response:
        assert response.status == 200 and await response.read() == b"not json"
