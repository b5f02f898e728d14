"""Room key and channel names: `{r:<slug>}:<name>`, all of a room's in one hash slot.

Redis Cluster places a key by the text between its first `{` and the next `}`; every key and
sharded channel of a room carries the same tag, so a script touching several of them, or
publishing on the room's channel, runs on one node (slugs never contain braces).
"""

from __future__ import annotations


def room(slug: str, name: str) -> str:
    return f"{{r:{slug}}}:{name}"


def room_of(key: str) -> str:
    """The slug of a room key or channel ("" if `key` is not one)."""
    if not key.startswith("{r:"):
        return ""
    return key[3 : key.find("}")]
