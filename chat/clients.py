"""Who is asking, for the abuse limits: the client's network and the inbox an address reaches."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

# One IPv6 customer usually gets a whole /64, often a /56 or a /48: counting per address would
# give every attacker 2**64 fresh budgets, and counting per /64 alone 65,536 of them in a /48.
IPV6_PREFIX = 64
IPV6_WIDE_PREFIX = 48


def client_networks(remote_addr: str | None) -> tuple[str, str | None]:
    """(network, wider network) a limit counts against: an IPv4 address and none wider, or
    an IPv6 /64 and its /48."""
    try:
        address = ipaddress.ip_address((remote_addr or "").strip())
    except ValueError:
        return "unknown", None  # not from a socket peer (a test client, a unix socket)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped), None
        narrow = ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False)
        wide = ipaddress.ip_network(f"{address}/{IPV6_WIDE_PREFIX}", strict=False)
        return str(narrow), str(wide)
    return str(address), None


def canonical_inbox(email: str) -> str:
    """The mailbox an address reaches, for caps: `a+anything@x` is delivered to `a@x`."""
    local, _, domain = email.rpartition("@")
    return f"{local.split('+', 1)[0] or local}@{domain}"


def keyed_digest(secret: bytes, kind: str, value: str, length: int = 32) -> str:
    """Redis keys carry a keyed digest, so they do not spell out addresses or IPs."""
    return hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:length]


def inbox_key(secret: bytes, email: str) -> str:
    """The digest every per-inbox cap counts under (sign-in, rooms made)."""
    return keyed_digest(secret, "inbox", canonical_inbox(email))
