"""A server of the release before hash-tagged room keys: its rooms keep their history."""

from __future__ import annotations

from typing import Any

from redis import Redis

from chat import archiver
from tests.conftest import sign_in, text_of
from tests.support import Inbox


def old_release_data(redis: Redis) -> list[str]:
    """What the older release left: a room stream under its old name, with an archive's
    consumer group, an epoch, and the archive's list naming the old stream."""
    ids = [
        redis.xadd("stream:general", {"pid": "p1", "name": "ada", "ts": "0", "body": f"old {n}"})
        for n in range(3)
    ]
    redis.xgroup_create("stream:general", "host-a", id="0")
    redis.set("epoch:general", "e0e0e0e0e0e0")
    redis.sadd(archiver.ARCHIVED_STREAMS, "stream:general")
    return ids


async def test_the_first_start_renames_the_old_keys_once_and_history_shows(
    make_app: Any, inbox: Inbox, redis_sync: Redis
) -> None:
    ids = old_release_data(redis_sync)
    app = await make_app()
    await make_app()  # a later worker finds it done
    assert redis_sync.get("schema") == "2"
    assert not redis_sync.exists("stream:general", "epoch:general")
    assert [i for i, _ in redis_sync.xrange("{r:general}:stream")][:3] == ids
    assert {g["name"] for g in redis_sync.xinfo_groups("{r:general}:stream")} >= {"host-a"}
    assert redis_sync.get("{r:general}:epoch") == "e0e0e0e0e0e0"
    assert "stream:general" not in redis_sync.smembers(archiver.ARCHIVED_STREAMS)
    assert "{r:general}:stream" in redis_sync.smembers(archiver.ARCHIVED_STREAMS)
    client = app.test_client()
    await sign_in(client, inbox, "ada@example.org")
    page = text_of(await (await client.get("/rooms/general")).get_data(as_text=True))
    assert "old 0" in page and "old 2" in page


async def test_a_key_under_both_names_is_left_alone_and_said(
    make_app: Any, redis_sync: Redis, caplog: Any
) -> None:
    redis_sync.xadd("stream:general", {"body": "old"})
    redis_sync.xadd("{r:general}:stream", {"body": "new"})
    await make_app()
    assert redis_sync.xlen("stream:general") == 1 and redis_sync.xlen("{r:general}:stream") == 1
    assert "both stream:general and {r:general}:stream exist" in caplog.text
