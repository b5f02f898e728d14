"""Which Redis CHAT_REDIS_URL names: one server (redis://, rediss://, unix://) or a cluster.

    redis+cluster://[user:password@]host1:7000,host2:7001/   any reachable node is enough
    rediss+cluster://...                                      the same over TLS

A cluster URL takes no database number (a cluster has only database 0) and no query
options; a bad URL is refused at start-up with one line (chat/settings.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

SINGLE_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


class BadRedisUrl(ValueError):
    pass


@dataclass(frozen=True)
class RedisTarget:
    url: str
    cluster: bool
    nodes: tuple[tuple[str, int], ...] = ()  # cluster seed nodes
    username: str | None = None
    password: str | None = None
    tls: bool = False


def parse(url: str) -> RedisTarget:
    """The target `url` names, or BadRedisUrl saying what is wrong with it."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise BadRedisUrl(f"cannot parse {url!r}: expected scheme://...")
    if scheme in SINGLE_SCHEMES:
        try:
            urlsplit(url).port  # noqa: B018 - raises on a bad port
        except ValueError as error:
            raise BadRedisUrl(f"cannot parse {url!r}: {error}") from None
        return RedisTarget(url=url, cluster=False)
    if scheme not in CLUSTER_SCHEMES:
        raise BadRedisUrl(
            f"unknown scheme {scheme!r}; use redis://, rediss://, unix://, "
            "redis+cluster:// or rediss+cluster://"
        )
    userinfo, _, hostpart = rest.rpartition("@")
    hostpart, _, path = hostpart.partition("/")
    if "?" in hostpart or "?" in path or "#" in hostpart:
        raise BadRedisUrl("a cluster URL takes no query options")
    if path.strip("/") not in ("", "0"):
        raise BadRedisUrl(f"a cluster has only database 0, not {path.strip('/')!r}")
    nodes = tuple(_node(part) for part in hostpart.split(","))
    username, password = None, None
    if userinfo:
        user, has_password, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
    return RedisTarget(
        url=url,
        cluster=True,
        nodes=nodes,
        username=username,
        password=password,
        tls=scheme == "rediss+cluster",
    )


def _node(text: str) -> tuple[str, int]:
    if not text:
        raise BadRedisUrl("a cluster URL needs host:port for each node, comma-separated")
    if text.startswith("["):  # [::1]:7000
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    if not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadRedisUrl(f"{text!r} is not host:port (a port from 1 to 65535)")
    return host, int(port)
