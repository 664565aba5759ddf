"""The admin port: metrics, liveness and readiness (SPEC §8)."""

from __future__ import annotations

from conftest import RFC9701, FakeAS, Running


async def test_livez_and_readyz(sidecar: Running) -> None:
    """/livez and /readyz answer 200 once keys are loaded."""
    for path in ("/livez", "/readyz"):
        async with sidecar.session.get(sidecar.admin_url + path) as response:
            assert response.status == 200, path


async def test_readyz_is_503_while_draining(sidecar: Running) -> None:
    """/readyz turns 503 when the sidecar drains; /livez stays 200."""
    from sidecar.appkeys import LIFECYCLE

    sidecar.server.app[LIFECYCLE].draining = True
    async with sidecar.session.get(sidecar.admin_url + "/readyz") as response:
        assert response.status == 503
    async with sidecar.session.get(sidecar.admin_url + "/livez") as response:
        assert response.status == 200


async def test_metrics_count_requests_and_upstream_latency(
    sidecar: Running, fake_as: FakeAS
) -> None:
    """/metrics shows requests by format and outcome and an upstream latency histogram."""
    await sidecar.introspect(accept=RFC9701)
    await sidecar.introspect(accept=None)
    fake_as.answer(b"nope")
    await sidecar.introspect(accept="application/jwt")
    async with sidecar.session.get(sidecar.admin_url + "/metrics") as response:
        assert response.status == 200
        text = await response.text()
    assert 'sidecar_introspection_requests_total{format="rfc9701",outcome="signed"} 1.0' in text
    assert 'sidecar_introspection_requests_total{format="json",outcome="passthrough"} 1.0' in text
    assert (
        'sidecar_introspection_requests_total{format="draft-08",outcome="bad_upstream_answer"} 1.0'
        in text
    )
    assert 'sidecar_upstream_request_duration_seconds_count{outcome="2xx"} 3.0' in text
    assert 'sidecar_signing_duration_seconds_count{alg="ES256"} 1.0' in text
    assert "sidecar_signing_keys 2.0" in text


async def test_metrics_never_carry_secrets(sidecar: Running) -> None:
    """No client_id, token or credential appears in /metrics."""
    await sidecar.introspect(data={"token": "super-secret-token-value"})
    async with sidecar.session.get(sidecar.admin_url + "/metrics") as response:
        text = await response.text()
    for secret in ("super-secret-token-value", "rs-1", "Basic"):
        assert secret not in text
