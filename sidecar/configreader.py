"""Reading typed settings out of YAML mappings and ``SIDECAR_*`` variables, problems collected."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

ENV_PREFIX = "SIDECAR_"

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


class Reader:
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
