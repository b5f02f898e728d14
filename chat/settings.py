"""CHAT_* settings: defaults, parsing and validation with one clear line per bad value."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from chat import redis_target
from chat.addresses import normalise as normalise_address
from chat.addresses import unicode_domain


class ConfigError(SystemExit):
    """A bad setting. As a SystemExit it ends start-up with its one-line message, no traceback."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"Configuration error: CHAT_{setting}: {problem}")
        self.setting = setting


INT_SETTINGS: dict[str, int] = {
    "WORKERS": 1,
    "CODE_TTL_SECONDS": 600,
    "CODE_MAX_ATTEMPTS": 5,
    "CODE_RESEND_SECONDS": 60,
    "CODE_SENDS_PER_EMAIL_PER_HOUR": 10,
    "CODE_SENDS_PER_EMAIL_PER_NETWORK_PER_HOUR": 5,
    "CODE_SENDS_PER_IP_PER_HOUR": 30,
    "CODE_SENDS_PER_HOUR": 1000,
    "CODE_CHECKS_PER_IP_PER_HOUR": 60,
    "CODE_CHECKS_PER_MINUTE": 120,
    "NEW_ADDRESS_FAILURES_PER_HOUR": 10,
    "SIGNIN_FAILURES_BEFORE_LOCK": 20,
    "SIGNIN_LOCK_SECONDS": 86400,
    "SIGNIN_FAILURES_PER_EMAIL_BEFORE_LOCK": 100,
    "SIGNIN_EMAIL_LOCK_SECONDS": 86400,
    "SESSION_IDLE_SECONDS": 43200,
    "SESSION_MAX_SECONDS": 2592000,
    "MAX_SESSIONS_PER_PERSON": 20,
    "ROOMS_PER_PERSON_PER_HOUR": 10,
    "MAX_ROOMS": 1000,
    "INVITES_PER_PERSON_PER_HOUR": 100,
    "MENTION_EMAILS_PER_HOUR": 1,
    "WS_MESSAGES_PER_SECOND": 5,
    "WS_BURST": 20,
    "WS_MAX_SOCKETS_PER_SESSION": 20,
    "WS_HANDSHAKES_PER_MINUTE": 30,
    "WS_QUEUE_SIZE": 256,
    "MAX_MESSAGE_CHARS": 4000,
    "HISTORY_MAXLEN": 10000,
    "HISTORY_KEEP": 5000,
    "SEARCHES_PER_MINUTE": 60,
    "EXPORTS_PER_HOUR": 10,
    "SMTP_TIMEOUT_SECONDS": 10,
}

# Settings where 0 is meaningful (0 proxies in front of the app).
COUNT_SETTINGS: dict[str, int] = {"PROXY_HOPS": 0, "MENTION_EMAIL_DELAY_SECONDS": 600}

STR_SETTINGS: dict[str, str] = {
    "ENV": "development",
    "BIND": "127.0.0.1:8000",
    "MAIL_FROM": "Chat <chat@localhost>",
    "PUBLIC_URL": "",
    "ALLOWED_ORIGINS": "",
    "ALLOWED_EMAIL_DOMAINS": "",
    "ADMIN_EMAILS": "",
    "LOG_FORMAT": "text",
    "ARCHIVE_PATH": "",
    "ARCHIVE_GROUP": "",
}

BOOL_SETTINGS: dict[str, bool] = {"COOKIE_SECURE": True}

SMTP_SCHEMES = {"smtp": "plain", "smtp+starttls": "starttls", "smtps": "tls"}


@dataclass(frozen=True)
class SmtpTarget:
    hostname: str
    port: int
    username: str | None
    password: str | None
    security: Literal["plain", "starttls", "tls"]


def apply_defaults(config: dict[str, Any]) -> None:
    """Fill every unset CHAT_* setting with its default."""
    for defaults in (INT_SETTINGS, COUNT_SETTINGS, STR_SETTINGS, BOOL_SETTINGS):
        for key, value in defaults.items():
            if config.get(key) is None:  # Quart's own defaults hold None for some (ENV)
                config[key] = value
    config.setdefault("REDIS_URL", None)
    config.setdefault("SMTP_URL", None)


def validate(config: dict[str, Any], instance_path: str) -> None:
    """Check and normalise every setting in place; raise ConfigError on the first bad one."""
    for key in INT_SETTINGS:
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(key, f"expected a whole number >= 1, got {value!r}")
    for key in COUNT_SETTINGS:
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(key, f"expected a whole number >= 0, got {value!r}")
    for key in BOOL_SETTINGS:
        config[key] = _parse_bool(key, config[key])
    if config["ENV"] not in ("development", "production"):
        raise ConfigError("ENV", f"expected 'development' or 'production', got {config['ENV']!r}")
    if config["LOG_FORMAT"] not in ("text", "json"):
        raise ConfigError("LOG_FORMAT", f"expected 'text' or 'json', got {config['LOG_FORMAT']!r}")
    bind_host, bind_port = parse_bind(str(config["BIND"]))
    if (
        config["CODE_SENDS_PER_EMAIL_PER_HOUR"]
        <= config["CODE_SENDS_PER_EMAIL_PER_NETWORK_PER_HOUR"]
    ):
        raise ConfigError(
            "CODE_SENDS_PER_EMAIL_PER_HOUR",
            "must be higher than CHAT_CODE_SENDS_PER_EMAIL_PER_NETWORK_PER_HOUR "
            "(the difference is what unknown networks may use)",
        )
    origins = []
    for origin in _parse_list(config["ALLOWED_ORIGINS"]):
        normalised = normalise_origin(origin)
        if normalised is None:
            raise ConfigError(
                "ALLOWED_ORIGINS", f"{origin!r} is not an origin like https://chat.example.org"
            )
        origins.append(normalised)
    config["ALLOWED_ORIGINS"] = origins
    config["ALLOWED_EMAIL_DOMAINS"] = [
        unicode_domain(d) for d in _parse_list(config["ALLOWED_EMAIL_DOMAINS"])
    ]
    config["ADMIN_EMAILS"] = _admin_emails(config["ADMIN_EMAILS"])
    if config["REDIS_URL"] is not None:
        _check_redis_url(str(config["REDIS_URL"]))
    config["SMTP"] = parse_smtp_url(config["SMTP_URL"]) if config["SMTP_URL"] else None
    if not config.get("SECRET_KEY"):
        if config["ENV"] == "production":
            raise ConfigError("SECRET_KEY", "is required when CHAT_ENV=production")
        config["SECRET_KEY"] = development_secret(Path(instance_path))
    elif len(str(config["SECRET_KEY"])) < 32:
        raise ConfigError("SECRET_KEY", "must be at least 32 characters")
    _check_public_url(config, bind_host, bind_port)


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # noqa: S104 - recognised, not bound


def _check_public_url(config: dict[str, Any], bind_host: str, bind_port: int) -> None:
    """PUBLIC_URL names the site in emails and is the host requests must carry.

    Production requires it. In development it defaults to the bind address, and the bind
    address (with its loopback aliases) stays trusted as well.
    """
    raw = str(config["PUBLIC_URL"] or "").strip()
    if not raw:
        if config["ENV"] == "production":
            raise ConfigError(
                "PUBLIC_URL", "is required when CHAT_ENV=production (e.g. https://chat.example.org)"
            )
        host = "127.0.0.1" if bind_host in WILDCARD_HOSTS else bind_host
        raw = f"http://{'[' + host + ']' if ':' in host else host}:{bind_port}"
    origin = normalise_origin(raw.rstrip("/"))
    if origin is None:
        raise ConfigError("PUBLIC_URL", f"{raw!r} is not a URL like https://chat.example.org")
    config["PUBLIC_URL"] = origin
    hosts = {urlsplit(origin).hostname or ""}
    if config["ENV"] == "development":
        if bind_host in WILDCARD_HOSTS or bind_host in LOOPBACK_NAMES:
            hosts.update(LOOPBACK_NAMES)
        else:
            hosts.add(bind_host.lower())
    config["TRUSTED_HOSTS"] = sorted(hosts)


def normalise_origin(value: str) -> str | None:
    """`scheme://host[:port]` in lower case with the scheme's default port left out, or None."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == {"http": 80, "https": 443}[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def parse_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("BIND", f"expected host:port such as 127.0.0.1:8000, got {bind!r}")
    return host.strip("[]"), int(port)


def parse_smtp_url(url: str) -> SmtpTarget:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise ConfigError("SMTP_URL", f"cannot parse {url!r}: {error}") from None
    security = SMTP_SCHEMES.get(parts.scheme)
    if security is None:
        raise ConfigError(
            "SMTP_URL",
            f"unknown scheme {parts.scheme!r}; use smtp://, smtp+starttls:// or smtps://",
        )
    if not parts.hostname:
        raise ConfigError("SMTP_URL", f"no host in {url!r}")
    default_port = {"plain": 25, "starttls": 587, "tls": 465}[security]
    return SmtpTarget(
        hostname=parts.hostname,
        port=port or default_port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        security=security,  # type: ignore[arg-type]
    )


def development_secret(instance: Path) -> str:
    """A per-checkout secret kept in instance/; several workers starting at once share one."""
    instance.mkdir(parents=True, exist_ok=True)
    path = instance / "secret_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def _check_redis_url(url: str) -> None:
    try:
        redis_target.parse(url)
    except redis_target.BadRedisUrl as error:
        raise ConfigError("REDIS_URL", str(error)) from None


def _admin_emails(value: Any) -> frozenset[str]:
    """The admins' addresses, as sign-in normalises them (any allowed domain list aside)."""
    found = set()
    for raw in _parse_list(value):
        address = normalise_address(raw, [raw.rpartition("@")[2]])
        if address is None:
            raise ConfigError("ADMIN_EMAILS", f"{raw!r} is not an email address")
        found.add(address.email)
    return frozenset(found)


def _parse_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(key, f"expected true or false, got {value!r}")


def _parse_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [item.strip() for item in str(value or "").split(",") if item.strip()]
