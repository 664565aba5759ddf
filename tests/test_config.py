"""Configuration: defaults, environment overrides, and every problem reported with its path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.config import ConfigError, build_config, config_path, load_config
from sidecar.configreader import env_name
from sidecar.negotiate import Format

MINIMAL = {
    "issuer": "https://as.example.com",
    "upstream": {"url": "http://127.0.0.1:9000"},
    "signing": {"keys_file": "/etc/sidecar/keys/jwks.json"},
}


def problems_of(document: dict[str, Any], environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        build_config(document, environ or {})
    return raised.value.problems


def test_defaults() -> None:
    """A minimal config gets every documented default."""
    config = build_config(MINIMAL, {})
    assert (config.listen.host, config.listen.port) == ("0.0.0.0", 8080)
    assert (config.admin.host, config.admin.port) == ("0.0.0.0", 9090)
    assert config.upstream.introspection_path == "/token/introspect"
    assert config.upstream.introspection_url == "http://127.0.0.1:9000/token/introspect"
    assert config.upstream.timeout == 5.0
    assert config.upstream.max_response_bytes == 1_048_576
    assert config.upstream.max_connections == 100
    intro = config.introspection
    assert intro.path == "/token/introspect" and intro.always_jwt is False
    assert intro.default_format is Format.RFC9701 and intro.typ == "token-introspection+jwt"
    assert intro.draft08 is True and intro.include_jti is False
    assert intro.max_request_bytes == 65536
    assert config.signing.kid is None and config.signing.reload_interval == 10
    assert config.jwks.path == "/introspection/jwks.json"
    assert config.passthrough is True
    assert (config.shutdown.drain_seconds, config.shutdown.timeout) == (5, 20)
    assert config.clients == {} and config.callers == {}


def test_example_config_file_is_valid() -> None:
    """The documented sidecar.yaml at the repository root loads and shows every default."""
    root = Path(__file__).resolve().parent.parent
    config = load_config(root / "sidecar.yaml", {})
    assert config == build_config({**MINIMAL, "clients": config.clients}, {})


def test_required_keys() -> None:
    """issuer, upstream.url and signing.keys_file are required, all reported at once."""
    assert sorted(problems_of({})) == [
        "issuer: required",
        "signing.keys_file: required",
        "upstream.url: required",
    ]


def test_every_problem_is_reported_with_its_path() -> None:
    """Unknown keys and bad values are all reported together, each with its YAML path."""
    document = {
        **MINIMAL,
        "colour": "blue",
        "upstream": {"url": "ftp://x", "timeout": "fast", "max_connections": 0, "extra": 1},
        "listen": {"port": 70000},
        "introspection": {"path": "token", "always_jwt": "yes", "default_format": "jwt"},
        "signing": {"keys_file": "k", "reload_interval": -1},
        "shutdown": {"drain_seconds": True},
        "passthrough": "sure",
    }
    problems = problems_of(document)
    expected_prefixes = [
        "colour: unknown key",
        "upstream.extra: unknown key",
        "upstream.url: expected an absolute http(s) URL, got 'ftp://x'",
        "upstream.timeout: expected a number of seconds (more than zero), got 'fast'",
        "upstream.max_connections: expected a positive whole number, got 0",
        "listen.port: expected a port number 0-65535, got 70000",
        "introspection.path: expected a path starting with '/', got 'token'",
        "introspection.always_jwt: expected true or false, got 'yes'",
        "introspection.default_format: expected one of rfc9701, draft-08, got 'jwt'",
        "signing.reload_interval: expected a number of seconds (zero or more), got -1",
        "shutdown.drain_seconds: expected a number of seconds (zero or more), got True",
        "passthrough: expected true or false, got 'sure'",
    ]
    for expected in expected_prefixes:
        assert expected in problems, (expected, problems)
    assert len(problems) == len(expected_prefixes)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"listen": "8080"}, "listen: expected a mapping, got '8080'"),
        ({"clients": {"rs": {"colour": 1}}}, "clients.rs.colour: unknown key"),
        ({"clients": {"rs": {"signed_response_alg": "HS256"}}},
         "clients.rs.signed_response_alg: expected one of"),
        ({"clients": {"rs": {"encrypted_response_enc": "A128GCM"}}},
         "clients.rs.encrypted_response_enc: needs encrypted_response_alg"),
        ({"clients": {"rs": {"encrypted_response_alg": "RSA-OAEP"}}},
         "clients.rs.encrypted_response_alg: needs the client's public keys"),
        ({"clients": {"rs": {"jwks_uri": "x", "jwks_file": "f"}}}, "clients.rs.jwks_uri"),
        ({"clients": {"rs": {"audience": ""}}}, "clients.rs.audience: expected a non-empty"),
        ({"clients": {"rs": {"require_jwt": "yes"}}}, "clients.rs.require_jwt: expected true"),
        ({"callers": {"bearer": {}}}, "callers.bearer: unknown key"),
        ({"jwks": {"path": "/token/introspect"}}, "jwks.path: must differ"),
        ({"upstream": {"url": "http://u", "introspection_path": "x"}},
         "upstream.introspection_path: expected a path"),
        ({"issuer": "as.example.com"}, "issuer: expected an absolute http(s) URL"),
        ({"signing": {"keys_file": "k", "kid": 5}}, "signing.kid: expected a non-empty string"),
        ({"upstream": {"url": "http://u", "timeout": float("nan")}}, "upstream.timeout"),
    ],
)  # fmt: skip
def test_single_problems(document: dict[str, Any], problem: str) -> None:
    """Each kind of bad value is named with its YAML path."""
    problems = problems_of({**MINIMAL, **document})
    assert any(p.startswith(problem) for p in problems), problems


def test_environment_overrides() -> None:
    """SIDECAR_<PATH> overrides single keys, typed like the YAML value."""
    environ = {
        "SIDECAR_UPSTREAM_URL": "http://upstream:9000",
        "SIDECAR_LISTEN_PORT": "8181",
        "SIDECAR_INTROSPECTION_ALWAYS_JWT": "true",
        "SIDECAR_UPSTREAM_TIMEOUT": "2.5",
        "SIDECAR_SIGNING_KID": "k2",
        "SIDECAR_UPSTREAM_INTROSPECTION_PATH": "/oauth/introspect",
        "SIDECAR_PASSTHROUGH": "false",
        "SIDECAR_PORT": "tcp://10.0.0.1:8080",  # Kubernetes service variable: ignored
    }
    config = build_config(MINIMAL, environ)
    assert config.upstream.url == "http://upstream:9000"
    assert config.listen.port == 8181
    assert config.introspection.always_jwt is True
    assert config.upstream.timeout == 2.5
    assert config.signing.kid == "k2"
    assert config.upstream.introspection_path == "/oauth/introspect"
    assert config.passthrough is False


def test_environment_supplies_required_keys() -> None:
    """Required keys may come from the environment alone."""
    config = build_config(
        {},
        {
            "SIDECAR_ISSUER": "https://as",
            "SIDECAR_UPSTREAM_URL": "http://u",
            "SIDECAR_SIGNING_KEYS_FILE": "/k.json",
        },
    )
    assert config.issuer == "https://as" and str(config.signing.keys_file) == "/k.json"


def test_bad_environment_value_names_the_variable() -> None:
    """A bad environment value is reported with its YAML path and the variable's name."""
    problems = problems_of(MINIMAL, {"SIDECAR_LISTEN_PORT": "http", "SIDECAR_PASSTHROUGH": "x"})
    assert "listen.port (from SIDECAR_LISTEN_PORT): expected a port number 0-65535, got 'http'" in (
        problems
    )
    assert any(p.startswith("passthrough (from SIDECAR_PASSTHROUGH)") for p in problems)


def test_env_name() -> None:
    """Variable names are SIDECAR_ plus the dotted path upper-cased."""
    assert env_name("introspection.always_jwt") == "SIDECAR_INTROSPECTION_ALWAYS_JWT"


def test_config_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    """--config, else $SIDECAR_CONFIG, else ./sidecar.yaml."""
    assert config_path("a.yaml", {"SIDECAR_CONFIG": "b.yaml"}) == Path("a.yaml")
    assert config_path(None, {"SIDECAR_CONFIG": "b.yaml"}) == Path("b.yaml")
    assert config_path(None, {}) == Path("sidecar.yaml")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("issuer: [unclosed", "not valid YAML (line 1"),
        ("- a\n- b\n", "expected a mapping of settings"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_unreadable_files(tmp_path: Path, text: str | bytes, problem: str) -> None:
    """Invalid YAML, a non-mapping document and non-UTF-8 bytes are clear problems."""
    path = tmp_path / "sidecar.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config(path, {})
    assert problem in raised.value.problems[0]


def test_missing_file(tmp_path: Path) -> None:
    """A missing config file is a clear problem naming the path."""
    with pytest.raises(ConfigError) as raised:
        load_config(tmp_path / "nope.yaml", {})
    assert "nope.yaml: cannot read the configuration file" in raised.value.problems[0]


def test_empty_file_reports_required_keys(tmp_path: Path) -> None:
    """An empty file is an empty mapping: the required keys are reported."""
    path = tmp_path / "sidecar.yaml"
    path.write_text("")
    with pytest.raises(ConfigError) as raised:
        load_config(path, {})
    assert len(raised.value.problems) == 3


def test_round_trip_through_yaml(tmp_path: Path) -> None:
    """A full YAML document loads into the frozen dataclasses."""
    document = {
        **MINIMAL,
        "clients": {"rs.payments": {"audience": "https://pay", "require_jwt": True}},
        "introspection": {"default_format": "draft-08", "typ": "JWT"},
    }
    path = tmp_path / "sidecar.yaml"
    path.write_text(yaml.safe_dump(document))
    config = load_config(path, {})
    assert config.clients["rs.payments"].audience == "https://pay"
    assert config.clients["rs.payments"].require_jwt is True
    assert config.introspection.default_format is Format.DRAFT08
    with pytest.raises(AttributeError):
        config.issuer = "x"  # type: ignore[misc]
