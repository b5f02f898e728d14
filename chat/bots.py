"""Bots: incoming webhooks an admin makes for an open room. `POST /hooks/<token>` posts as the
bot through the same path as people's messages (chat/messages.py `post_message`).

The token is the bot's only credential. It is shown once, at creation, and stored only as an
HMAC keyed by the app's secret (`bots:by-digest`: digest -> bot id), so neither Redis nor its
backups give it away. A bot's record (`bots`: id -> JSON) keeps its name, room and digest; its
id (16 hex digits) is also its person id in messages. Revoking deletes both.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from quart import current_app
from redis.asyncio import Redis

from chat import membership, ratelimit
from chat.problems import Problem, problem
from chat.text import clean_line

BOTS_KEY = "bots"
BY_DIGEST_KEY = "bots:by-digest"
MAX_NAME_CHARS = 40


@dataclass(frozen=True)
class Bot:
    id: str
    name: str
    room: str
    created: float
    by: str
    digest: str


def token_digest(secret: bytes, token: str) -> str:
    """The stored form of a token; computed the same way for any text, valid or not."""
    return hmac.new(secret, b"hook:" + token.encode(errors="replace"), hashlib.sha256).hexdigest()


def clean_bot_name(raw: str) -> tuple[str | None, Problem | None]:
    """A bot's display name: one line, no hidden or control characters, 1-40 characters."""
    name = clean_line(raw)
    if not name:
        return None, problem("bot_name_empty")
    if len(name) > MAX_NAME_CHARS:
        return None, problem("bot_name_too_long", limit=MAX_NAME_CHARS)
    return name, None


async def create(
    redis: Redis, secret: bytes, raw_name: str, slug: str, by: str
) -> tuple[str | None, Problem | None]:
    """Make a bot for an open room; (its token, to show once, None) or (None, why not)."""
    name, refused = clean_bot_name(raw_name)
    if refused is not None or name is None:
        return None, refused
    found = await membership.readable(redis, slug.strip(), "")
    if found is None or found.kind != membership.OPEN:
        return None, problem("bot_no_such_room")
    token = secrets.token_urlsafe(32)
    bot = Bot(secrets.token_hex(8), name, found.slug, time.time(), by, token_digest(secret, token))
    record = {"name": bot.name, "room": bot.room, "created": bot.created, "by": by}
    record["digest"] = bot.digest
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(BOTS_KEY, bot.id, json.dumps(record, ensure_ascii=False))
        pipe.hset(BY_DIGEST_KEY, bot.digest, bot.id)
        await pipe.execute()
    return token, None


def _bot(bot_id: str, raw: str) -> Bot:
    record = json.loads(raw)
    return Bot(
        bot_id,
        record["name"],
        record["room"],
        float(record["created"]),
        record.get("by", ""),
        record["digest"],
    )


async def by_token(redis: Redis, secret: bytes, token: str) -> Bot | None:
    """The live bot this token belongs to, or None. Always hashes, then one lookup: nothing
    about the token's content decides how long a refusal takes."""
    bot_id = await redis.hget(BY_DIGEST_KEY, token_digest(secret, token))
    if bot_id is None:
        return None
    raw = await redis.hget(BOTS_KEY, bot_id)
    return _bot(bot_id, raw) if raw else None


async def listed(redis: Redis) -> list[Bot]:
    """Every live bot, newest first."""
    found: dict[str, str] = await redis.hgetall(BOTS_KEY)
    bots = [_bot(bot_id, raw) for bot_id, raw in found.items()]
    return sorted(bots, key=lambda b: (-b.created, b.id))


async def revoke(redis: Redis, bot_id: str) -> Bot | None:
    """Delete the bot and its token at once; the bot it was, or None if there was none."""
    raw = await redis.hget(BOTS_KEY, bot_id)
    if raw is None:
        return None
    bot = _bot(bot_id, raw)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hdel(BY_DIGEST_KEY, bot.digest)
        pipe.hdel(BOTS_KEY, bot_id)
        await pipe.execute()
    return bot


# KEYS: the bot's bucket. ARGV: rate per second, burst. Returns 0 or milliseconds to wait.
_TAKE = (
    ratelimit.TAKE_FROM_BUCKET_LUA
    + """
return take_token(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
"""
)


async def take_send_token(redis: Redis, bot: Bot) -> int:
    """One message's worth of the bot's send rate (the people's rate, a bucket per bot)."""
    config = current_app.config
    return int(
        await redis.eval(
            _TAKE,
            1,
            f"bot-rate:{{{bot.id}}}",
            float(config["WS_MESSAGES_PER_SECOND"]),
            float(config["WS_BURST"]),
        )
    )
