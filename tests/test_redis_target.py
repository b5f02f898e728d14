"""CHAT_REDIS_URL: one server or a cluster, and what is refused."""

from __future__ import annotations

import pytest

from chat.redis_target import BadRedisUrl, parse


def test_single_server_urls_pass_through() -> None:
    for url in ("redis://h:6379/0", "rediss://u:p@h:6380/2", "unix:///run/redis.sock"):
        target = parse(url)
        assert not target.cluster and target.url == url


def test_cluster_url_names_its_seed_nodes_credentials_and_tls() -> None:
    target = parse("rediss+cluster://chat:s%40cret@10.0.0.1:7000,[::1]:7001,node-3:7002/")
    assert target.cluster and target.tls
    assert target.nodes == (("10.0.0.1", 7000), ("::1", 7001), ("node-3", 7002))
    assert (target.username, target.password) == ("chat", "s@cret")
    plain = parse("redis+cluster://127.0.0.1:7000")
    assert not plain.tls and plain.username is None and plain.password is None
    assert parse("redis+cluster://:pw@h:1/0").password == "pw"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("memcached://h:1", "unknown scheme"),
        ("h:6379", "cannot parse"),
        ("redis://h:99999/0", "cannot parse"),
        ("redis+cluster://", "host:port"),
        ("redis+cluster://h", "not host:port"),
        ("redis+cluster://h:0", "not host:port"),
        ("redis+cluster://h:7000,,h2:7001", "host:port"),
        ("redis+cluster://h:\uff17\uff10\uff10\uff10", "not host:port"),  # fullwidth digits
        ("redis+cluster://h:7000/1", "only database 0"),
        ("redis+cluster://h:7000?ssl=true", "no query options"),
    ],
)
def test_bad_urls_are_refused_with_a_reason(url: str, says: str) -> None:
    with pytest.raises(BadRedisUrl, match=says):
        parse(url)
