"""Configuration: ``sidecar.yaml`` plus ``SIDECAR_*`` overrides, validated once (SPEC §2)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sidecar.configreader import Reader
from sidecar.keys import SIGNING_ALGS
from sidecar.negotiate import Format

DEFAULT_CONFIG_PATH = Path("sidecar.yaml")
CONFIG_PATH_ENV = "SIDECAR_CONFIG"

DEFAULT_LISTEN_HOST = "0.0.0.0"
DEFAULT_LISTEN_PORT = 8080
DEFAULT_ADMIN_PORT = 9090
DEFAULT_UPSTREAM_TIMEOUT = 5.0
DEFAULT_MAX_RESPONSE_BYTES = 1_048_576
DEFAULT_MAX_CONNECTIONS = 100
DEFAULT_INTROSPECTION_PATH = "/token/introspect"
DEFAULT_TYP = "token-introspection+jwt"
DEFAULT_MAX_REQUEST_BYTES = 65_536
DEFAULT_RELOAD_INTERVAL = 10.0
DEFAULT_JWKS_PATH = "/introspection/jwks.json"
DEFAULT_DRAIN_SECONDS = 5.0
DEFAULT_SHUTDOWN_TIMEOUT = 20.0
DEFAULT_ENCRYPTED_RESPONSE_ENC = "A128CBC-HS256"  # RFC 9701 §6

# RFC 9701 §5 with RFC 7516 / RFC 7518 §4: the key-management and content algorithms offered.
ENCRYPTION_ALGS = ("RSA-OAEP", "RSA-OAEP-256", "ECDH-ES", "ECDH-ES+A128KW", "ECDH-ES+A256KW")
ENCRYPTION_ENCS = (
    "A128CBC-HS256", "A192CBC-HS384", "A256CBC-HS512", "A128GCM", "A192GCM", "A256GCM",
)  # fmt: skip


class ConfigError(Exception):
    """Every problem found in the configuration, each naming its YAML path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Listen:
    """A host and port to serve on."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Upstream:
    """The legacy authorization server."""

    url: str
    introspection_path: str
    timeout: float
    max_response_bytes: int
    max_connections: int

    @property
    def introspection_url(self) -> str:
        """Where introspection requests are forwarded."""
        return self.url.rstrip("/") + self.introspection_path


@dataclass(frozen=True, slots=True)
class Introspection:
    """How the sidecar answers on its introspection path."""

    path: str
    always_jwt: bool
    default_format: Format
    typ: str
    draft08: bool
    include_jti: bool
    max_request_bytes: int


@dataclass(frozen=True, slots=True)
class Signing:
    """Where the private keys are and which one signs."""

    keys_file: Path
    kid: str | None
    reload_interval: float


@dataclass(frozen=True, slots=True)
class Jwks:
    """Where the public JWK Set is published, and whether the AS's own set also lists it."""

    path: str
    merge_into_upstream: str | None = None


@dataclass(frozen=True, slots=True)
class Shutdown:
    """SIGTERM behaviour (SPEC §8a)."""

    drain_seconds: float
    timeout: float


@dataclass(frozen=True, slots=True)
class ClientPolicy:
    """Per-caller policy, keyed by client_id (SPEC §7)."""

    audience: str | None = None
    signed_response_alg: str | None = None
    encrypted_response_alg: str | None = None
    encrypted_response_enc: str = DEFAULT_ENCRYPTED_RESPONSE_ENC
    jwks_file: Path | None = None
    jwks: Mapping[str, Any] | None = None
    jwks_uri: str | None = None
    require_jwt: bool = False


@dataclass(frozen=True, slots=True)
class Config:
    """The whole, validated configuration."""

    issuer: str
    listen: Listen
    admin: Listen
    upstream: Upstream
    introspection: Introspection
    signing: Signing
    jwks: Jwks
    passthrough: bool
    shutdown: Shutdown
    clients: Mapping[str, ClientPolicy] = field(default_factory=dict)
    callers: Mapping[str, Any] = field(default_factory=dict)


def config_path(explicit: str | None, environ: Mapping[str, str]) -> Path:
    """``--config``, else ``$SIDECAR_CONFIG``, else ``./sidecar.yaml`` (SPEC §1)."""
    return Path(explicit or environ.get(CONFIG_PATH_ENV) or DEFAULT_CONFIG_PATH)


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read ``path``, apply ``SIDECAR_*`` overrides, validate; ``ConfigError`` lists problems."""
    environ = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [f"{path}: cannot read the configuration file ({exc.strerror or exc})"]
        ) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: the configuration file is not UTF-8 text"]) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError([f"{path}: not valid YAML{where}: {problem}"]) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError([f"{path}: expected a mapping of settings at the top level"])
    return build_config(document, environ)


def build_config(document: Mapping[str, Any], environ: Mapping[str, str]) -> Config:
    """Validate a parsed YAML document with environment overrides applied."""
    reader = Reader()
    document = reader.apply_environment(dict(document), environ)
    top = reader.section(document, "", _TOP_KEYS)
    listen = reader.section(top.get("listen"), "listen", {"host", "port"})
    admin = reader.section(top.get("admin"), "admin", {"host", "port"})
    up = reader.section(
        top.get("upstream"),
        "upstream",
        {"url", "introspection_path", "timeout", "max_response_bytes", "max_connections"},
    )
    intro = reader.section(
        top.get("introspection"),
        "introspection",
        {"path", "always_jwt", "default_format", "typ", "draft08", "include_jti",
         "max_request_bytes"},
    )  # fmt: skip
    sign = reader.section(top.get("signing"), "signing", {"keys_file", "kid", "reload_interval"})
    jwks = reader.section(top.get("jwks"), "jwks", {"path", "merge_into_upstream"})
    shutdown = reader.section(top.get("shutdown"), "shutdown", {"drain_seconds", "timeout"})

    introspection_path = reader.path(intro, "introspection.path", DEFAULT_INTROSPECTION_PATH)
    default_format = reader.choice(
        intro, "introspection.default_format", "rfc9701", ("rfc9701", "draft-08")
    )
    config = Config(
        issuer=reader.url(top, "issuer", required=True),
        listen=Listen(
            host=reader.string(listen, "listen.host", DEFAULT_LISTEN_HOST),
            port=reader.port(listen, "listen.port", DEFAULT_LISTEN_PORT),
        ),
        admin=Listen(
            host=reader.string(admin, "admin.host", DEFAULT_LISTEN_HOST),
            port=reader.port(admin, "admin.port", DEFAULT_ADMIN_PORT),
        ),
        upstream=Upstream(
            url=reader.url(up, "upstream.url", required=True),
            introspection_path=reader.path(up, "upstream.introspection_path", None, nullable=True)
            or introspection_path,
            timeout=reader.number(up, "upstream.timeout", DEFAULT_UPSTREAM_TIMEOUT),
            max_response_bytes=reader.count(
                up, "upstream.max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES
            ),
            max_connections=reader.count(up, "upstream.max_connections", DEFAULT_MAX_CONNECTIONS),
        ),
        introspection=Introspection(
            path=introspection_path,
            always_jwt=reader.boolean(intro, "introspection.always_jwt", False),
            default_format=Format(default_format),
            typ=reader.string(intro, "introspection.typ", DEFAULT_TYP),
            draft08=reader.boolean(intro, "introspection.draft08", True),
            include_jti=reader.boolean(intro, "introspection.include_jti", False),
            max_request_bytes=reader.count(
                intro, "introspection.max_request_bytes", DEFAULT_MAX_REQUEST_BYTES
            ),
        ),
        signing=Signing(
            keys_file=Path(reader.string(sign, "signing.keys_file", "", required=True)),
            kid=reader.optional_string(sign, "signing.kid"),
            reload_interval=reader.number(
                sign, "signing.reload_interval", DEFAULT_RELOAD_INTERVAL, allow_zero=True
            ),
        ),
        jwks=Jwks(
            path=reader.path(jwks, "jwks.path", DEFAULT_JWKS_PATH),
            merge_into_upstream=reader.path(jwks, "jwks.merge_into_upstream", None, nullable=True)
            or None,
        ),
        passthrough=reader.boolean(top, "passthrough", True),
        shutdown=Shutdown(
            drain_seconds=reader.number(
                shutdown, "shutdown.drain_seconds", DEFAULT_DRAIN_SECONDS, allow_zero=True
            ),
            timeout=reader.number(shutdown, "shutdown.timeout", DEFAULT_SHUTDOWN_TIMEOUT),
        ),
        clients=_clients(reader, top.get("clients")),
        callers=_callers(reader, top.get("callers")),
    )
    if config.jwks.path == config.introspection.path:
        reader.problem("jwks.path", "must differ from introspection.path")
    if config.jwks.merge_into_upstream in (config.jwks.path, config.introspection.path):
        reader.problem(
            "jwks.merge_into_upstream", "must differ from jwks.path and introspection.path"
        )
    if reader.problems:
        raise ConfigError(reader.problems)
    return config


_TOP_KEYS = {
    "issuer", "listen", "admin", "upstream", "introspection", "signing", "jwks",
    "passthrough", "shutdown", "clients", "callers",
}  # fmt: skip

_CLIENT_KEYS = {
    "audience", "signed_response_alg", "encrypted_response_alg", "encrypted_response_enc",
    "jwks_file", "jwks", "jwks_uri", "require_jwt",
}  # fmt: skip


def _clients(reader: Reader, raw: Any) -> dict[str, ClientPolicy]:
    """``clients.<client_id>``: per-caller policy (SPEC §7, RFC 9701 §6 client metadata)."""
    clients: dict[str, ClientPolicy] = {}
    for client_id, raw_policy in reader.section(raw, "clients", None).items():
        where = f"clients.{client_id}"
        entry = reader.section(raw_policy, where, _CLIENT_KEYS)
        signed_alg = reader.optional_choice(entry, f"{where}.signed_response_alg", SIGNING_ALGS)
        encrypted_alg = reader.optional_choice(
            entry, f"{where}.encrypted_response_alg", ENCRYPTION_ALGS
        )
        encrypted_enc = reader.optional_choice(
            entry, f"{where}.encrypted_response_enc", ENCRYPTION_ENCS
        )
        if encrypted_enc is not None and encrypted_alg is None:
            # RFC 9701 §6: enc "MUST NOT be specified without" the alg.
            reader.problem(f"{where}.encrypted_response_enc", "needs encrypted_response_alg")
        jwks_file = reader.optional_string(entry, f"{where}.jwks_file")
        inline_jwks = entry.get("jwks")
        if inline_jwks is not None and not isinstance(inline_jwks, dict):
            reader.problem(f"{where}.jwks", f"expected a JWK Set mapping, got {inline_jwks!r}")
            inline_jwks = None
        jwks_uri = reader.optional_url(entry, f"{where}.jwks_uri")
        key_sources = [s for s in (jwks_file, inline_jwks, jwks_uri) if s is not None]
        if len(key_sources) > 1:
            reader.problem(where, "give only one of jwks, jwks_file and jwks_uri")
        if encrypted_alg is not None and not key_sources:
            reader.problem(
                f"{where}.encrypted_response_alg",
                "needs the client's public keys: jwks, jwks_file or jwks_uri",
            )
        clients[str(client_id)] = ClientPolicy(
            audience=reader.optional_string(entry, f"{where}.audience"),
            signed_response_alg=signed_alg,
            encrypted_response_alg=encrypted_alg,
            encrypted_response_enc=encrypted_enc or DEFAULT_ENCRYPTED_RESPONSE_ENC,
            jwks_file=Path(jwks_file) if jwks_file else None,
            jwks=inline_jwks,
            jwks_uri=jwks_uri,
            require_jwt=reader.boolean(entry, f"{where}.require_jwt", False),
        )
    return clients


def _callers(reader: Reader, raw: Any) -> dict[str, Any]:
    """``callers``: how Bearer-authorized callers are identified; none are supported yet."""
    callers = reader.section(raw, "callers", set())
    return callers
