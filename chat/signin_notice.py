"""The "New sign-in to Chat" email: sent at every sign-in but an address's very first, in the
person's language and time zone, unless they turned it off in /settings."""

from __future__ import annotations

import logging
from datetime import datetime
from email.message import EmailMessage
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from quart import Quart
from redis.asyncio import Redis

from chat import i18n, mailer, store, user_agents
from chat.i18n import Variant
from chat.people import person_key

FIELD = "signin_mail"  # in the person's profile: "0" = off


async def enabled(redis: Redis, person: str) -> bool:
    return bool(await redis.hget(person_key(person, "profile"), FIELD) != "0")


async def set_enabled(redis: Redis, person: str, on: bool) -> None:
    await redis.hset(person_key(person, "profile"), FIELD, "1" if on else "0")


async def send(
    app: Quart, person: str, user_agent: str, ip: str, when: datetime, page: Variant
) -> None:
    """Mail the notice (a background task of the sign-in: its failure is logged, never shown
    to the person signing in, who is not necessarily the owner)."""
    redis = store.redis(app)
    email, locale, zone, on = await redis.hmget(
        person_key(person, "profile"), ["email", "locale", "tz", FIELD]
    )
    if not email or on == "0":
        return
    variant = Variant(
        i18n.known_locale(locale) or page.locale,
        i18n.known_time_zone(zone) or i18n.DEFAULT_TIME_ZONE,
    )
    try:
        message = await _email(app, str(email), user_agent, ip, when, variant)
        await mailer.send(message, app.config["SMTP"], app.config["SMTP_TIMEOUT_SECONDS"])
    except mailer.MailError as error:
        logging.getLogger("chat.auth").warning("sign-in notice not sent: %s", error)


async def _email(
    app: Quart, to: str, user_agent: str, ip: str, when: datetime, variant: Variant
) -> EmailMessage:
    public = app.config["PUBLIC_URL"]
    browser, system = await user_agents.describe(user_agent)
    with i18n.use(variant):
        device = user_agents.device_name(browser, system)
    context: dict[str, object] = {
        "site": urlsplit(public).netloc,
        "settings_link": f"{public}/settings",
        "device": device,
        "ip": ip or "?",
        "time": format_datetime(
            when, "long", tzinfo=ZoneInfo(variant.time_zone), locale=variant.locale
        ),
    }
    headers = {
        "Auto-Submitted": "auto-generated",  # RFC 3834: no vacation replies to this
        "X-Chat-Mail": "sign-in-notice",  # for mail filters (and the tests' inbox)
    }
    return await mailer.person_email(app, to, "signin", variant, context, headers)
