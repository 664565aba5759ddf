"""Keys, caller credentials and the sidecar config (SPEC §2) that a benchmark run uses."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import yaml
from jwcrypto import jwk

BENCH_ISSUER = "https://as.bench.example"
INTROSPECTION_PATH = "/token/introspect"

# Resource-server clients of the sidecar (SPEC §7): one per signing alg, so that a single
# sidecar process serves every signed scenario, plus one that wants nested (encrypted) JWTs.
SIGNING_CLIENTS = {"rs-rs256": "RS256", "rs-es256": "ES256", "rs-eddsa": "EdDSA"}
ENCRYPTING_CLIENT = "bench-enc"
ENCRYPTION_ALG = "RSA-OAEP-256"
JSON_CLIENT = "rs-json"  # has no policy entry: JSON passthrough needs none


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    """Files and key sets of one run."""

    signing_keys_file: Path  # private JWK Set the sidecar signs with
    signing_public: jwk.JWKSet  # to verify the sidecar's answers
    client_jwks_file: Path  # public encryption key of ENCRYPTING_CLIENT, given to the sidecar
    client_private: jwk.JWKSet  # to decrypt the sidecar's nested answers


def basic_authorization(client_id: str, secret: str | None = None) -> str:
    """`Authorization: Basic` value per RFC 6749 §2.3.1 (ids here need no form-encoding)."""
    pair = f"{client_id}:{secret or client_id + '-secret'}".encode()
    return "Basic " + base64.b64encode(pair).decode()


def generate_keys(directory: Path) -> KeyMaterial:
    """RSA-2048, P-256 and Ed25519 signing keys, and an RSA client key for RSA-OAEP-256."""
    # ES256 first: it is the active key (SPEC §2 signing.kid null = first key) for callers
    # without a per-client alg. Written by hand: jwcrypto's JWKSet keeps no order.
    signing_keys = [
        jwk.JWK.generate(kty="EC", crv="P-256", kid="bench-es256", alg="ES256", use="sig"),
        jwk.JWK.generate(kty="RSA", size=2048, kid="bench-rs256", alg="RS256", use="sig"),
        jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="bench-eddsa", alg="EdDSA", use="sig"),
    ]
    client_key = jwk.JWK.generate(
        kty="RSA", size=2048, kid="bench-enc", alg=ENCRYPTION_ALG, use="enc"
    )

    signing_keys_file = directory / "signing.jwks.json"
    private_set = {"keys": [key.export(private_key=True, as_dict=True) for key in signing_keys]}
    signing_keys_file.write_text(json.dumps(private_set, indent=1))
    signing_keys_file.chmod(0o600)
    client_jwks_file = directory / f"{ENCRYPTING_CLIENT}.jwks.json"
    client_jwks_file.write_text(json.dumps({"keys": [client_key.export_public(as_dict=True)]}))

    signing_public, client_private = jwk.JWKSet(), jwk.JWKSet()
    for key in signing_keys:
        signing_public.add(jwk.JWK(**key.export_public(as_dict=True)))
    client_private.add(client_key)
    return KeyMaterial(signing_keys_file, signing_public, client_jwks_file, client_private)


def sidecar_config(
    *,
    issuer: str,
    listen_port: int,
    admin_port: int,
    upstream_url: str,
    keys: KeyMaterial,
    introspection_path: str = INTROSPECTION_PATH,
    clients: dict[str, dict[str, object]] | None = None,
) -> dict[str, object]:
    """A SPEC §2 config with only the keys the bench needs (unknown keys are errors there)."""
    return {
        "issuer": issuer,
        "listen": {"host": "127.0.0.1", "port": listen_port},
        "admin": {"host": "127.0.0.1", "port": admin_port},
        "upstream": {"url": upstream_url},
        "introspection": {"path": introspection_path},
        "signing": {"keys_file": str(keys.signing_keys_file)},
        "clients": bench_clients(keys) if clients is None else clients,
        # No drain on SIGTERM (SPEC §8a): the bench stops the sidecar when nothing is in flight.
        "shutdown": {"drain_seconds": 0},
    }


def bench_clients(keys: KeyMaterial) -> dict[str, dict[str, object]]:
    """Per-client policy (SPEC §7): a signing alg per client, one client that encrypts."""
    clients: dict[str, dict[str, object]] = {
        client_id: {"signed_response_alg": alg} for client_id, alg in SIGNING_CLIENTS.items()
    }
    clients[ENCRYPTING_CLIENT] = {
        "signed_response_alg": "ES256",
        "encrypted_response_alg": ENCRYPTION_ALG,
        "jwks_file": str(keys.client_jwks_file),
    }
    return clients


def write_config(path: Path, config: dict[str, object]) -> Path:
    """Write the config as YAML, keys in the order given."""
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
