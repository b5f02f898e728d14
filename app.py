"""The chat application: create_app() for hypercorn, main() for `make run`."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hypercorn.middleware import ProxyFixMiddleware
from quart import Quart
from quart_auth import QuartAuth

from blueprints import (
    account,
    admin,
    auth,
    errors,
    export,
    health,
    hooks,
    live,
    lobby,
    members,
    messages,
    people,
    rooms,
    search,
    settings,
)
from chat import (
    archiver,
    bus,
    leaving,
    logs,
    mention_mail,
    online_lists,
    presence,
    security,
    sidebar_hub,
    store,
    templating,
    to_the_end,
    typists,
    upgrade,
    viewer,
)
from chat import rooms as room_registry
from chat.sessions import ChatUser
from chat.settings import ConfigError, apply_defaults, validate
from chat.to_the_end import FinishingQuart
from chat.websocket_deflate import refuse_permessage_deflate

ROOT = Path(__file__).resolve().parent


def instance_dir() -> Path:
    """Where development data lives: the secret key and the embedded Redis files."""
    return Path(os.environ.get("CHAT_INSTANCE_PATH") or ROOT / "instance")


def create_app(config: Mapping[str, Any] | None = None) -> Quart:
    """Build the app from CHAT_* environment variables, then `config` on top (tests)."""
    app = FinishingQuart(__name__, instance_path=str(instance_dir()))
    app.config.from_prefixed_env("CHAT")
    if config:
        app.config.update(config)
    apply_defaults(app.config)
    validate(app.config, app.instance_path)
    if not app.config["REDIS_URL"]:
        raise ConfigError(
            "REDIS_URL",
            "is not set; `make run` starts an embedded server, production needs "
            "redis://host:6379/0",
        )
    secure = app.config["COOKIE_SECURE"]
    app.config.update(
        MAX_CONTENT_LENGTH=64 * 1024,
        QUART_AUTH_COOKIE_SECURE=secure,
        # __Host- binds the cookie to this exact host over HTTPS (no Domain, Path=/).
        QUART_AUTH_COOKIE_NAME="__Host-chat_session" if secure else "chat_session",
        QUART_AUTH_COOKIE_SAMESITE="Lax",
        QUART_AUTH_DURATION=app.config["SESSION_MAX_SECONDS"],
        QUART_AUTH_SALT="chat-session",
    )
    logs.configure(app.config["LOG_FORMAT"])
    refuse_permessage_deflate()
    logs.init_app(app)

    store.init_app(app)
    upgrade.init_app(app)  # before anything reads a room's keys
    QuartAuth(app, user_class=ChatUser)
    viewer.init_app(app)  # first: every later refusal speaks the viewer's language
    security.init_app(app)
    templating.init_app(app)
    bus.init_app(app)
    presence.init_app(app)
    online_lists.init_app(app)
    mention_mail.init_app(app)
    room_registry.init_app(app)
    sidebar_hub.init_app(app)
    typists.init_app(app)
    archiver.init_app(app)
    leaving.init_app(app)
    to_the_end.init_app(app)  # after bus: at shutdown, changes finish before the bus stops
    blueprints = (
        auth,
        rooms,
        search,
        export,
        messages,
        members,
        people,
        live,
        lobby,
        health,
        settings,
        account,
        admin,
        hooks,
    )
    for blueprint in (module.bp for module in blueprints):
        app.register_blueprint(blueprint)
    errors.init_app(app)
    if app.config["PROXY_HOPS"]:
        # Behind N trusted reverse proxies: client address, scheme and host come from their
        # X-Forwarded-* headers (per-IP limits, Secure cookies, Origin checks need the real ones).
        app.asgi_app = ProxyFixMiddleware(  # type: ignore[method-assign]
            app.asgi_app, mode="legacy", trusted_hops=app.config["PROXY_HOPS"]
        )
    return app


def main() -> None:
    """`make run`: the supervised workers on CHAT_BIND, plus Redis when none is configured."""
    from chat import serve
    from chat.embedded_redis import EmbeddedRedis, EmbeddedRedisError

    settings = serve.load_settings(str(instance_dir()))
    logs.configure(settings["LOG_FORMAT"])
    bind, workers = str(settings["BIND"]), int(settings["WORKERS"])
    embedded = None
    if not settings["REDIS_URL"]:
        embedded = EmbeddedRedis(instance_dir() / "redis")
        try:
            os.environ["CHAT_REDIS_URL"] = embedded.start()
        except EmbeddedRedisError as error:
            sys.exit(f"Cannot start the embedded Redis server: {error}")
        print(f"Embedded Redis on {os.environ['CHAT_REDIS_URL']} (data in {embedded.data_dir})")

    print(f"Chat on http://{bind}  (workers: {workers}; Ctrl-C stops)", flush=True)
    try:
        exit_code = serve.supervise(serve.hypercorn_config(bind), workers)
    finally:
        if embedded is not None:
            embedded.stop()
    sys.exit(exit_code)


if __name__ == "__main__":
    main()
