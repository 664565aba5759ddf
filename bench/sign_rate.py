"""Raw single-core signing rates with `cryptography` (T_rsa is the RS256 one), as JSON.

The RS256 target is relative to this: no Python signer can beat OpenSSL's own RSA-2048 rate
on the same core, so the sidecar is held to 0.9 * L with L = 1/(1/T_json + 1/T_rsa), the
rate of a proxy whose per-request cost is its JSON hop plus one raw signature.

    taskset -c 0 python bench/sign_rate.py --seconds 2 --algs RS256,ES256,EdDSA
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

# About the size of a JWS signing input for an RFC 9701 answer (header + claims, base64url).
SIGNING_INPUT = b"e" * 600


def signer(alg: str) -> Callable[[], bytes]:
    """A zero-argument function that makes one signature of SIGNING_INPUT with a fresh key."""
    if alg == "RS256":
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return lambda: rsa_key.sign(SIGNING_INPUT, padding.PKCS1v15(), hashes.SHA256())
    if alg == "ES256":
        ec_key = ec.generate_private_key(ec.SECP256R1())
        return lambda: ec_key.sign(SIGNING_INPUT, ec.ECDSA(hashes.SHA256()))
    if alg == "EdDSA":
        ed_key = ed25519.Ed25519PrivateKey.generate()
        return lambda: ed_key.sign(SIGNING_INPUT)
    raise ValueError(f"unsupported alg {alg!r}")


def rate(sign: Callable[[], bytes], seconds: float) -> float:
    """Signatures per second over `seconds`, after a short warm-up."""
    warm_until = time.perf_counter() + min(0.2, seconds / 5)
    while time.perf_counter() < warm_until:
        sign()
    count, started = 0, time.perf_counter()
    deadline = started + seconds
    while (now := time.perf_counter()) < deadline:
        for _ in range(16):  # check the clock less often than we sign
            sign()
        count += 16
    return count / (now - started)


def main() -> None:
    """Measure each requested alg in turn and print {alg: signs_per_second}."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per algorithm")
    parser.add_argument("--algs", default="RS256", help="comma-separated: RS256,ES256,EdDSA")
    args = parser.parse_args()
    rates = {alg: round(rate(signer(alg), args.seconds), 1) for alg in args.algs.split(",")}
    print(json.dumps(rates))


if __name__ == "__main__":
    main()
