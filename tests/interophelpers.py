"""Shared by the interop tests: provider clients, a sidecar in front of it, five verifiers."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
import yaml
from joserfc import jwe as joserfc_jwe
from joserfc import jwk as joserfc_jwk
from joserfc import jwt as joserfc_jwt
from joserfc.errors import SecurityWarning
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jwt as jwcrypto_jwt
from nodeinterop import node_available

from sidecar.client import KeySet, VerificationPolicy, verify_introspection_jwt
from sidecar.config import Config, load_config

requires_node = pytest.mark.skipif(
    not node_available(), reason="Node interop tools not installed: run `npm ci --prefix interop`"
)

JWT_TYP = "token-introspection+jwt"
INTROSPECTION_PATH = "/token/introspection"
# Lands in every access token the provider issues, so in every introspection answer too:
# unicode and nesting must survive the sidecar unchanged.
EXTRA_TOKEN_CLAIMS = {"ext": {"name": "Ünïcødé ✓ 😀", "nested": {"list": [1, 2.5, None, True]}}}
JWE_ENCS = ["A128CBC-HS256", "A192CBC-HS384", "A256CBC-HS512", "A128GCM", "A192GCM", "A256GCM"]
RFC9701_REQUIRED = ["iss", "aud", "iat", "token_introspection"]
DRAFT08_REQUIRED = ["iss", "aud", "iat", "active"]

Json = dict[str, Any]


def rs_client(client_id: str, alg: str, **extra: Any) -> Json:
    """A resource-server client of the provider: introspects only, secret ``<id>-secret``."""
    return {
        "client_id": client_id,
        "client_secret": f"{client_id}-secret",
        "grant_types": [],
        "response_types": [],
        "introspection_signed_response_alg": alg,
        **extra,
    }


TOKEN_CLIENT: Json = {
    "client_id": "app",
    "client_secret": "app-secret",
    "grant_types": ["client_credentials"],
    "response_types": [],
    "scope": "read write",
}

# provider.mjs's defaults, restated so that a module can add clients next to them.
DEFAULT_CLIENTS: list[Json] = [
    TOKEN_CLIENT,
    rs_client("rs-rs256", "RS256"),
    rs_client("rs-es256", "ES256"),
    rs_client("rs-eddsa", "EdDSA"),
    rs_client(
        "rs-enc",
        "ES256",
        introspection_encrypted_response_alg="RSA-OAEP-256",
        introspection_encrypted_response_enc="A128CBC-HS256",
    ),
]


def sidecar_config(
    tmp_path: Path,
    *,
    upstream_url: str,
    issuer: str,
    keys_file: Path,
    extra: Json | None = None,
    name: str = "sidecar.yaml",
) -> Config:
    """A real, loaded sidecar config in front of ``upstream_url`` at the provider's path."""
    document: Json = {
        "issuer": issuer,
        "listen": {"host": "127.0.0.1", "port": 0},
        "admin": {"host": "127.0.0.1", "port": 0},
        "upstream": {"url": upstream_url, "timeout": 5.0},
        "introspection": {"path": INTROSPECTION_PATH},
        "signing": {"keys_file": str(keys_file)},
        "shutdown": {"drain_seconds": 0, "timeout": 5},
        **(extra or {}),
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document))
    return load_config(path, {})


def public_jwk(private: Json) -> Json:
    """The public members of a private JWK."""
    return {k: v for k, v in private.items() if k not in {"d", "p", "q", "dp", "dq", "qi"}}


# -- the verifiers ---------------------------------------------------------------------------
# Each takes (jwt, jwks, issuer, audience, alg, draft08, decrypt_key) and returns
# (header, claims) or raises. Only "sidecar.client" and "jwcrypto" share code with the signer's
# key loading; PyJWT, joserfc and jose (Node) are independent implementations.

Verifier = Callable[..., tuple[Json, Json]]


def _required(draft08: bool) -> list[str]:
    return DRAFT08_REQUIRED if draft08 else RFC9701_REQUIRED


def _jwcrypto_decrypt(token: str, decrypt_key: Json) -> str:
    """The inner JWS of a nested JWT, decrypted with jwcrypto."""
    outer = jwcrypto_jwt.JWT(jwt=token, key=jwcrypto_jwk.JWK(**decrypt_key), expected_type="JWE")
    return str(outer.claims)


def verify_pyjwt(
    token: str,
    jwks: Json,
    issuer: str,
    audience: str,
    alg: str,
    *,
    draft08: bool = False,
    decrypt_key: Json | None = None,
) -> tuple[Json, Json]:
    """PyJWT: typ by hand (it has no typ check), key by kid, one allowed alg.

    PyJWT has no JWE; a nested JWT is opened with jwcrypto first. ``PyJWKSet`` binds a JWK
    without ``alg`` to RS256 (RSA) and then refuses RS384/RS512/PS*, so the key is built
    for the expected alg instead.
    """
    if decrypt_key is not None:
        token = _jwcrypto_decrypt(token, decrypt_key)
    header = pyjwt.get_unverified_header(token)
    assert header["typ"].lower().removeprefix("application/") == JWT_TYP
    [member] = [key for key in jwks["keys"] if key.get("kid") == header["kid"]]
    key = pyjwt.PyJWK(member, algorithm=alg)
    claims = pyjwt.decode(
        token,
        key,
        algorithms=[alg],
        audience=audience,
        issuer=issuer,
        options={"require": _required(draft08)},
    )
    return header, claims


def verify_joserfc(
    token: str,
    jwks: Json,
    issuer: str,
    audience: str,
    alg: str,
    *,
    draft08: bool = False,
    decrypt_key: Json | None = None,
) -> tuple[Json, Json]:
    """joserfc: PS* must be allowed by name, and "EdDSA" warns (RFC 9864 prefers Ed25519).

    Its JWE registry refuses header members it does not know unless told otherwise, and
    node-oidc-provider copies ``iss`` and ``aud`` into the JWE header (RFC 7519 §5.3).
    """
    if decrypt_key is not None:
        private = joserfc_jwk.import_key(decrypt_key)
        registry = joserfc_jwe.JWERegistry(
            algorithms=[decrypt_key["alg"], *JWE_ENCS], strict_check_header=False
        )
        decrypted = joserfc_jwe.decrypt_compact(token, private, registry=registry)
        assert str(decrypted.headers()["cty"]).upper() == "JWT"
        token = (decrypted.plaintext or b"").decode()
    key_set = joserfc_jwk.KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        # joserfc ≥ 1.1 flags the polymorphic "EdDSA" as deprecated (RFC 9864); the sidecar
        # and most deployed servers still use it, so accept it here on purpose.
        warnings.filterwarnings("ignore", "EdDSA is deprecated", SecurityWarning)
        decoded = joserfc_jwt.decode(token, key_set, algorithms=[alg])
    header = dict(decoded.header)
    assert str(header["typ"]).lower().removeprefix("application/") == JWT_TYP
    claims_registry = joserfc_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": audience},
        iat={"essential": True},
        **{name: {"essential": True} for name in _required(draft08)[3:]},
    )
    claims_registry.validate(decoded.claims)
    return header, dict(decoded.claims)


def verify_jwcrypto(
    token: str,
    jwks: Json,
    issuer: str,
    audience: str,
    alg: str,
    *,
    draft08: bool = False,
    decrypt_key: Json | None = None,
) -> tuple[Json, Json]:
    """jwcrypto: JWT with check_claims; typ checked by hand (its expected_type is JWS/JWE)."""
    if decrypt_key is not None:
        token = _jwcrypto_decrypt(token, decrypt_key)
    checked = jwcrypto_jwt.JWT(
        jwt=token,
        key=jwcrypto_jwk.JWKSet.from_json(json.dumps(jwks)),
        algs=[alg],
        expected_type="JWS",
        check_claims={"iss": issuer, "aud": audience, "iat": None}
        | {name: None for name in _required(draft08)[3:]},
    )
    header: Json = json.loads(checked.header)
    assert str(header["typ"]).lower().removeprefix("application/") == JWT_TYP
    return header, json.loads(checked.claims)


def verify_sidecar_client(
    token: str,
    jwks: Json,
    issuer: str,
    audience: str,
    alg: str,
    *,
    draft08: bool = False,
    decrypt_key: Json | None = None,
) -> tuple[Json, Json]:
    """sidecar.client: the product's own resource-server verifier."""
    policy = VerificationPolicy(
        issuer=issuer,
        audience=audience,
        algorithms=(alg,),
        draft08=draft08,
        decrypt_keys=KeySet.from_document(decrypt_key) if decrypt_key else KeySet(),
        require_encryption=decrypt_key is not None,
    )
    verified = verify_introspection_jwt(token, jwks, policy)
    return verified.header, verified.claims


PYTHON_VERIFIERS: dict[str, Verifier] = {
    "pyjwt": verify_pyjwt,
    "joserfc": verify_joserfc,
    "jwcrypto": verify_jwcrypto,
    "sidecar.client": verify_sidecar_client,
}


def jose_job(
    token: str,
    jwks: Json,
    issuer: str,
    audience: str,
    alg: str,
    *,
    draft08: bool = False,
    decrypt_key: Json | None = None,
) -> Json:
    """A verify.mjs job: jwtVerify with typ, issuer, audience, algorithms, requiredClaims."""
    job: Json = {
        "jwt": token,
        "jwks": jwks,
        "issuer": issuer,
        "audience": audience,
        "typ": JWT_TYP,
        "algorithms": [alg],
        "requiredClaims": _required(draft08),
        "maxTokenAge": "60s",
    }
    if decrypt_key is not None:
        job["decryptKey"] = decrypt_key
    return job


def without_iat(claims: Json) -> Json:
    """The claims minus the top-level ``iat`` (the one thing two answers may not share)."""
    return {name: value for name, value in claims.items() if name != "iat"}
