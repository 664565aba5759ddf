"""The ``sidecar`` command line (SPEC §1): run, check-config, keygen, demo, verify."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sidecar import __version__
from sidecar.config import DEFAULT_TYP, Config, ConfigError, config_path, load_config
from sidecar.keys import SIGNING_ALGS, KeyFileError, generate_key, key_set_json, parse_key_ring

EXIT_OK = 0
EXIT_USAGE = 2  # bad config, unreadable key file, port in use (SPEC §1)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, event and the record's ``extra`` fields."""

    _STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        """The record as JSON."""
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(
            {key: value for key, value in vars(record).items() if key not in self._STANDARD}
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str) -> None:
    """JSON lines on stderr, for log collectors in a pod."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp logs unexpected handler failures with a traceback at ERROR; keep them, but
    # the access log (request lines) stays off: paths alone are enough for metrics.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def fail(message: str) -> int:
    """Print one clear line to stderr and return the usage exit code."""
    print(f"sidecar: {message}", file=sys.stderr)
    return EXIT_USAGE


def _load(path_option: str | None) -> Config | int:
    """The validated config, or the exit code after printing every problem."""
    path = config_path(path_option, os.environ)
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"sidecar: {path}: {len(exc.problems)} configuration problem(s):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE


def cmd_run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT."""
    from sidecar.server import StartupError, serve

    config = _load(args.config)
    if isinstance(config, int):
        return config
    setup_logging(args.log_level)
    _install_uvloop()
    try:
        asyncio.run(serve(config))
    except StartupError as exc:
        return fail(str(exc))
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the config and the key file; print every problem."""
    config = _load(args.config)
    if isinstance(config, int):
        return config
    from prometheus_client import CollectorRegistry

    from sidecar.encryption import ClientKeysError, EncryptionMetrics, load_client_encryption
    from sidecar.reload import key_store

    problems = []
    store = key_store(config)
    try:
        ring = store.load()
    except KeyFileError as exc:
        problems.append(f"signing.keys_file: {exc}")
    try:
        # The same loading as at start-up; a jwks_uri is not fetched here.
        load_client_encryption(
            config.clients,
            timeout=config.upstream.timeout,
            metrics=EncryptionMetrics(CollectorRegistry()),
        )
    except ClientKeysError as exc:
        problems.extend(exc.problems)
    if problems:
        print(f"sidecar: {len(problems)} problem(s) with keys:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"configuration OK: issuer {config.issuer}, upstream {config.upstream.introspection_url}, "
        f"{len(ring.keys)} key(s), active kid {ring.active.kid} ({ring.active.alg})"
    )
    return EXIT_OK


def cmd_keygen(args: argparse.Namespace) -> int:
    """Print a new private JWK Set, or the public set of a private one."""
    if args.public is not None:
        raw = sys.stdin.buffer.read() if args.public == "-" else _read_file(args.public)
        if raw is None:
            return fail(f"cannot read {args.public}")
        source = "stdin" if args.public == "-" else args.public
        try:
            # The same checks and the same public members as the sidecar's JWK Set (SPEC §6).
            ring = parse_key_ring(raw, active_kid=None, typ=DEFAULT_TYP, source=source)
        except KeyFileError as exc:
            return fail(str(exc))
        print(json.dumps(json.loads(ring.jwks_json), indent=2))
        return EXIT_OK
    if args.alg is None:
        return fail("keygen needs --alg (or --public FILE)")
    try:
        key = generate_key(args.alg, kid=args.kid, bits=args.bits)
    except KeyFileError as exc:
        return fail(str(exc))
    print(key_set_json([key], private=True))
    return EXIT_OK


def _read_file(path: str) -> bytes | None:
    """A file's bytes, or None when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the self-contained demonstration."""
    from sidecar.demo import run_demo
    from sidecar.server import StartupError

    setup_logging("warning")
    _install_uvloop()
    try:
        asyncio.run(run_demo(port=args.port, admin_port=args.admin_port, once=args.once))
    except StartupError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify an introspection JWT as a resource server would: exit 0 valid, 1 invalid."""
    from sidecar import client

    if args.file:
        token = _read_file(args.file)
    elif args.jwt not in (None, "-"):
        token = args.jwt.encode()
    elif sys.stdin.isatty():
        return fail("verify: give the JWT as an argument, with --file, or on stdin")
    else:
        token = sys.stdin.buffer.read()
    if token is None:
        return fail(f"verify: cannot read {args.file}")
    try:
        policy = client.VerificationPolicy(
            issuer=args.issuer,
            audience=args.audience,
            algorithms=tuple(args.alg or client.SUPPORTED_ALGS),
            typ=args.typ,
            max_age=None if args.any_age else args.max_age,
            leeway=args.leeway,
            decrypt_keys=(
                client.load_key_set(args.decrypt_key) if args.decrypt_key else client.KeySet()
            ),
            require_encryption=args.require_encryption,
            draft08=args.draft08,
        )
        keys = client.load_key_set(args.jwks) if args.jwks else None
    except ValueError as exc:
        return fail(f"verify: {exc}")
    try:
        keys = client.fetch_jwks_blocking(args.jwks_uri) if keys is None else keys
        verified = client.verify_introspection_jwt(token, keys, policy)
    except client.IntrospectionError as exc:
        print(f"invalid: {exc.reason}: {exc}")
        return 1
    print("valid")
    for title, part in [("encryption header", verified.encryption_header),
                        ("header", verified.header), ("claims", verified.claims)]:  # fmt: skip
        if part is not None:
            print(f"{title}: {json.dumps(part, indent=2, ensure_ascii=False)}")
    return EXIT_OK


def _install_uvloop() -> None:
    """Use uvloop when it is installed: a faster event loop, same behaviour."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="sidecar",
        description="Signed RFC 9701 token-introspection answers for a legacy OAuth server.",
    )
    parser.add_argument("--version", action="version", version=f"sidecar {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="serve (config: --config, $SIDECAR_CONFIG, ./sidecar.yaml)"
    )
    run.add_argument("--config", help="path to sidecar.yaml")
    run.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    run.set_defaults(handler=cmd_run)

    check = commands.add_parser("check-config", help="validate the configuration and key file")
    check.add_argument("--config", help="path to sidecar.yaml")
    check.set_defaults(handler=cmd_check_config)

    keygen = commands.add_parser("keygen", help="print a new private JWK Set")
    keygen.add_argument("--alg", choices=SIGNING_ALGS, help="signing algorithm")
    keygen.add_argument("--kid", help="key id (default: the RFC 7638 thumbprint)")
    keygen.add_argument("--bits", type=int, default=2048, help="RSA modulus size (default 2048)")
    keygen.add_argument(
        "--public", metavar="FILE", help="print the public JWK Set of a private one ('-': stdin)"
    )
    keygen.set_defaults(handler=cmd_keygen)

    demo = commands.add_parser("demo", help="a built-in legacy AS, the sidecar, sample requests")
    demo.add_argument("--port", type=int, default=8080, help="proxy port (default 8080)")
    demo.add_argument("--admin-port", type=int, default=9090, help="admin port (default 9090)")
    demo.add_argument("--once", action="store_true", help="exit after the sample requests")
    demo.set_defaults(handler=cmd_demo)

    verify = commands.add_parser("verify", help="verify an introspection JWT as an RS would")
    verify.add_argument("jwt", nargs="?", help="the JWT (default or '-': read stdin)")
    verify.add_argument("--file", help="read the JWT from this file")
    keys = verify.add_mutually_exclusive_group(required=True)
    keys.add_argument("--jwks", metavar="FILE", help="the AS's JWK Set (JSON file)")
    keys.add_argument("--jwks-uri", metavar="URL", help="fetch the AS's JWK Set from URL")
    verify.add_argument("--issuer", required=True, help="expected iss (the AS issuer URL)")
    verify.add_argument("--audience", required=True, help="expected aud (our client_id)")
    verify.add_argument("--alg", action="append", help="allowed JWS alg (repeat; default all)")
    verify.add_argument("--typ", default="token-introspection+jwt", help="expected JWS typ")
    verify.add_argument(
        "--max-age", type=float, default=60.0, metavar="SECONDS", help="max age of iat (60)"
    )
    verify.add_argument("--any-age", action="store_true", help="do not check how old iat is")
    verify.add_argument(
        "--leeway", type=float, default=5.0, metavar="SECONDS", help="clock skew allowed (5)"
    )
    verify.add_argument("--decrypt-key", metavar="FILE", help="our private JWK (Set) for JWE")
    verify.add_argument("--require-encryption", action="store_true", help="refuse a bare JWS")
    verify.add_argument("--draft08", action="store_true", help="flat draft-08 claims")
    verify.set_defaults(handler=cmd_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sidecar`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args))
