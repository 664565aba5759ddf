"""Configuration: ``sidecar.yaml`` plus ``SIDECAR_*`` overrides, validated once (SPEC §2)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from sidecar.keys import SIGNING_ALGS
from sidecar.negotiate import Format

DEFAULT_CONFIG_PATH = Path("sidecar.yaml")
CONFIG_PATH_ENV = "SIDECAR_CONFIG"
ENV_PREFIX = "SIDECAR_"

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
    reader = _Reader()
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


def _clients(reader: _Reader, raw: Any) -> dict[str, ClientPolicy]:
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


def _callers(reader: _Reader, raw: Any) -> dict[str, Any]:
    """``callers``: how Bearer-authorized callers are identified; none are supported yet."""
    callers = reader.section(raw, "callers", set())
    return callers


# The scalar settings an environment variable may override, with how its text is read.
_ENV_KINDS: dict[str, str] = {
    "issuer": "str",
    "listen.host": "str", "listen.port": "int",
    "admin.host": "str", "admin.port": "int",
    "upstream.url": "str", "upstream.introspection_path": "optstr", "upstream.timeout": "float",
    "upstream.max_response_bytes": "int", "upstream.max_connections": "int",
    "introspection.path": "str", "introspection.always_jwt": "bool",
    "introspection.default_format": "str", "introspection.typ": "str",
    "introspection.draft08": "bool", "introspection.include_jti": "bool",
    "introspection.max_request_bytes": "int",
    "signing.keys_file": "str", "signing.kid": "optstr", "signing.reload_interval": "float",
    "jwks.path": "str", "jwks.merge_into_upstream": "optstr", "passthrough": "bool",
    "shutdown.drain_seconds": "float", "shutdown.timeout": "float",
}  # fmt: skip

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def env_name(dotted_path: str) -> str:
    """``upstream.url`` → ``SIDECAR_UPSTREAM_URL``."""
    return ENV_PREFIX + dotted_path.replace(".", "_").upper()


class _Reader:
    """Reads typed values out of YAML mappings, collecting every problem with its path."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self._origin: dict[str, str] = {}

    def problem(self, path: str, message: str) -> None:
        """Record one problem, naming the environment variable when one set the value."""
        origin = f" (from {self._origin[path]})" if path in self._origin else ""
        self.problems.append(f"{path}{origin}: {message}")

    def apply_environment(
        self, document: dict[str, Any], environ: Mapping[str, str]
    ) -> dict[str, Any]:
        """Override single keys from ``SIDECAR_*`` variables (SPEC §2).

        Only names of known settings are read: Kubernetes injects ``<SERVICE>_PORT`` style
        variables, so an unknown ``SIDECAR_*`` name is not an error.
        """
        for dotted, kind in _ENV_KINDS.items():
            name = env_name(dotted)
            if name not in environ:
                continue
            self._origin[dotted] = name
            value = self._env_value(environ[name], kind)
            *parents, leaf = dotted.split(".")
            target = document
            for parent in parents:
                child = target.get(parent)
                if not isinstance(child, dict):
                    child = {} if child is None else child
                    if not isinstance(child, dict):
                        break
                    target[parent] = child
                target = child
            else:
                target[leaf] = value
        return document

    @staticmethod
    def _env_value(text: str, kind: str) -> Any:
        """The typed value of an environment variable's text; left as text if it does not parse."""
        stripped = text.strip()
        if kind == "optstr" and stripped.lower() in ("", "null", "none"):
            return None
        if kind == "bool" and stripped.lower() in _TRUE | _FALSE:
            return stripped.lower() in _TRUE
        converters: dict[str, Callable[[str], Any]] = {"int": int, "float": float}
        if kind in converters:
            try:
                return converters[kind](stripped)
            except ValueError:
                return text
        return text

    def section(self, raw: Any, path: str, allowed: set[str] | None) -> dict[str, Any]:
        """A mapping at ``path`` (absent = empty); unknown keys are problems."""
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.problem(path or "(top level)", f"expected a mapping, got {raw!r}")
            return {}
        if allowed is not None:
            for key in raw:
                if key not in allowed:
                    where = f"{path}.{key}" if path else str(key)
                    self.problem(where, "unknown key")
        return raw

    def string(
        self, section: dict[str, Any], path: str, default: str, *, required: bool = False
    ) -> str:
        """A non-empty string."""
        value = section.get(_leaf(path))
        if value is None:
            if required:
                self.problem(path, "required")
            return default
        if not isinstance(value, str) or not value:
            self.problem(path, f"expected a non-empty string, got {value!r}")
            return default
        return value

    def optional_string(self, section: dict[str, Any], path: str) -> str | None:
        """A non-empty string or null."""
        value = section.get(_leaf(path))
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.problem(path, f"expected a non-empty string or null, got {value!r}")
            return None
        return value

    def url(self, section: dict[str, Any], path: str, *, required: bool = False) -> str:
        """An absolute http(s) URL."""
        value = self.string(section, path, "", required=required)
        if value and not _is_http_url(value):
            self.problem(path, f"expected an absolute http(s) URL, got {value!r}")
        return value

    def optional_url(self, section: dict[str, Any], path: str) -> str | None:
        """An absolute http(s) URL or null."""
        value = self.optional_string(section, path)
        if value is not None and not _is_http_url(value):
            self.problem(path, f"expected an absolute http(s) URL, got {value!r}")
        return value

    def path(
        self, section: dict[str, Any], path: str, default: str | None, *, nullable: bool = False
    ) -> str:
        """A URL path starting with ``/``."""
        value = section.get(_leaf(path))
        if value is None:
            if not nullable and _leaf(path) in section:
                self.problem(path, "expected a path starting with '/', got null")
            return default or ""
        if not isinstance(value, str) or not value.startswith("/"):
            self.problem(path, f"expected a path starting with '/', got {value!r}")
            return default or ""
        return value

    def port(self, section: dict[str, Any], path: str, default: int) -> int:
        """A TCP port, 0 (any free port) to 65535."""
        value = section.get(_leaf(path), default)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
            self.problem(path, f"expected a port number 0-65535, got {value!r}")
            return default
        return value

    def count(self, section: dict[str, Any], path: str, default: int) -> int:
        """A positive whole number."""
        value = section.get(_leaf(path), default)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            self.problem(path, f"expected a positive whole number, got {value!r}")
            return default
        return value

    def number(
        self, section: dict[str, Any], path: str, default: float, *, allow_zero: bool = False
    ) -> float:
        """A number of seconds, positive (or zero when allowed)."""
        value = section.get(_leaf(path), default)
        valid = isinstance(value, int | float) and not isinstance(value, bool)
        if not valid or value < 0 or (value == 0 and not allow_zero) or value != value:
            least = "zero or more" if allow_zero else "more than zero"
            self.problem(path, f"expected a number of seconds ({least}), got {value!r}")
            return default
        return float(value)

    def boolean(self, section: dict[str, Any], path: str, default: bool) -> bool:
        """true or false."""
        value = section.get(_leaf(path), default)
        if not isinstance(value, bool):
            self.problem(path, f"expected true or false, got {value!r}")
            return default
        return value

    def choice(
        self, section: dict[str, Any], path: str, default: str, choices: tuple[str, ...]
    ) -> str:
        """One of ``choices``."""
        value = section.get(_leaf(path), default)
        if value not in choices:
            self.problem(path, f"expected one of {', '.join(choices)}, got {value!r}")
            return default
        return str(value)

    def optional_choice(
        self, section: dict[str, Any], path: str, choices: tuple[str, ...]
    ) -> str | None:
        """One of ``choices`` or null."""
        value = section.get(_leaf(path))
        if value is None:
            return None
        if value not in choices:
            self.problem(path, f"expected one of {', '.join(choices)}, got {value!r}")
            return None
        return str(value)


def _leaf(path: str) -> str:
    """The last key of a dotted path (client ids may hold dots, so split from the right once)."""
    return path.rsplit(".", 1)[-1]


def _is_http_url(value: str) -> bool:
    """An absolute http or https URL with a host."""
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)
