"""The introspection endpoint: negotiate, forward, and sign what the upstream vouched for."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from sidecar.answers import NO_STORE_HEADERS, error_response
from sidecar.appkeys import CONFIG, ENCRYPTION, GUARD, KEYS, METRICS, REUSE, UPSTREAM
from sidecar.callers import identify_caller
from sidecar.errors import CallerError, RequestTooLarge, SidecarError
from sidecar.keys import SigningKey
from sidecar.negotiate import DRAFT08_MEDIA_TYPE, RFC9701_MEDIA_TYPE, Format, choose_format
from sidecar.tokens import build_claims, encode_claims, parse_introspection_object
from sidecar.upstream import UpstreamAnswer, introspection_headers

log = logging.getLogger(__name__)

_CONTENT_TYPES = {Format.RFC9701: RFC9701_MEDIA_TYPE, Format.DRAFT08: DRAFT08_MEDIA_TYPE}
_PASSED_UPSTREAM_HEADERS = ("Content-Type", "WWW-Authenticate")


async def introspect(request: web.Request) -> web.Response:
    """Answer one introspection request (SPEC §3 to §6); every failure maps to JSON here."""
    config = request.app[CONFIG]
    metrics = request.app[METRICS]
    settings = config.introspection
    answer_format = choose_format(
        request.headers.get("Accept"),
        always_jwt=settings.always_jwt,
        default_format=settings.default_format,
        draft08=settings.draft08,
    )
    if request.method != "POST":
        metrics.count_request(answer_format.value, "method_not_allowed")
        return error_response(
            405,
            "invalid_request",
            "the introspection endpoint accepts POST only",
            headers={**NO_STORE_HEADERS, "Allow": "POST"},
        )
    try:
        response, outcome = await _answer(request, answer_format)
    except SidecarError as exc:
        if exc.status >= 500:
            log.warning(
                "introspection.failed",
                extra={"event": "introspection.failed", "outcome": exc.outcome,
                       "format": answer_format.value, "reason": exc.description},
            )  # fmt: skip
        metrics.count_request(answer_format.value, exc.outcome)
        return error_response(exc.status, exc.error, exc.description, headers=NO_STORE_HEADERS)
    metrics.count_request(answer_format.value, outcome)
    return response


async def _answer(request: web.Request, answer_format: Format) -> tuple[web.Response, str]:
    """The answer and its metric outcome; raises ``SidecarError`` for the error table."""
    app = request.app
    config = app[CONFIG]
    body = await read_body(request, config.introspection.max_request_bytes)
    caller_id = None
    if answer_format.is_jwt:
        # SPEC §5: checked before forwarding, so a refused request reaches nobody.
        caller_id = identify_caller(
            request.headers.get("Authorization"), request.headers.get("Content-Type"), body
        )
    elif app[GUARD].active:
        # SPEC §7 require_jwt: no plain JSON for these clients; refused before forwarding.
        app[GUARD].check(
            request.headers.get("Authorization"), request.headers.get("Content-Type"), body
        )
    upstream_answer = await app[UPSTREAM].introspect(
        body,
        introspection_headers(
            request.headers, remote=request.remote, scheme=request.scheme, host=request.host
        ),
    )
    if caller_id is None or not upstream_answer.is_success:
        # JSON asked for, or an upstream refusal: passed on as sent, never signed (SPEC §4).
        outcome = "passthrough" if upstream_answer.is_success else "upstream_error"
        return _relay(upstream_answer), outcome
    policy = config.clients.get(caller_id)
    audience = policy.audience if policy and policy.audience else caller_id
    key = app[KEYS].signing_key(caller_id)
    token = _signed_answer(app, upstream_answer.body, answer_format, audience, key)
    outcome = "signed"
    encryptor = app[ENCRYPTION].for_client(caller_id)
    if encryptor is not None:
        # RFC 9701 §5 and RFC 7519 §5.2: a nested JWT, signed then encrypted; the media
        # type stays that of the signed answer.
        token = await encryptor.encrypt(token)
        outcome = "encrypted"
    headers = {**NO_STORE_HEADERS, "Content-Type": _CONTENT_TYPES[answer_format]}
    return web.Response(body=token, headers=headers), outcome


def _signed_answer(
    app: web.Application, body: bytes, answer_format: Format, audience: str, key: SigningKey
) -> bytes:
    """The compact JWS for the upstream answer ``body``, signed now or earlier this second."""
    config = app[CONFIG]
    issued_at = int(time.time())
    reuse = None if config.introspection.include_jti else app[REUSE]
    # Everything the JWS bytes depend on; issuer and typ are fixed for the process, and a
    # reloaded key ring brings new Signer objects, so old entries can never match.
    reuse_key = (body, audience, answer_format, key.signer)
    if reuse is not None:
        token = reuse.get(issued_at, reuse_key)
        if token is not None:
            app[METRICS].signatures_reused.inc()
            return token
    claims = build_claims(
        answer_format,
        parse_introspection_object(body),
        issuer=config.issuer,
        audience=audience,
        issued_at=issued_at,
        include_jti=config.introspection.include_jti,
    )
    payload = encode_claims(claims)
    started = time.perf_counter()
    token = key.signer.sign(payload)
    app[METRICS].observe_signing(key.alg, time.perf_counter() - started)
    if reuse is not None:
        reuse.put(issued_at, reuse_key, token)
    return token


def _relay(answer: UpstreamAnswer) -> web.Response:
    """The upstream's status, Content-Type, WWW-Authenticate and body bytes, unchanged."""
    headers = dict(NO_STORE_HEADERS)
    for name in _PASSED_UPSTREAM_HEADERS:
        value = answer.headers.get(name)
        if value is not None:
            headers[name] = value
    return web.Response(status=answer.status, body=answer.body, headers=headers)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes before anything is forwarded."""
    declared = request.content_length
    if declared is not None:
        if declared > limit:
            raise RequestTooLarge(f"the request body is over {limit} bytes")
        if declared == 0:
            return b""
        # A declared length within the limit: read exactly that many bytes at once.
        try:
            return await request.content.readexactly(declared)
        except asyncio.IncompleteReadError:
            raise CallerError("invalid_request", "the request body ended early") from None
    chunks: list[bytes] = []
    received = 0
    while True:
        chunk = await request.content.read(limit + 1 - received)
        if not chunk:
            return b"".join(chunks)
        received += len(chunk)
        if received > limit:
            raise RequestTooLarge(f"the request body is over {limit} bytes")
        chunks.append(chunk)
