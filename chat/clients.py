"""Who is asking, for the abuse limits: the client's network and the inbox an address reaches."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

# One IPv6 customer usually gets a whole /64 (often a /56 or /48): counting per address would
# give every attacker 2**64 fresh budgets.
IPV6_PREFIX = 64


def client_network(remote_addr: str | None) -> str:
    """The network a limit counts against: an IPv4 address itself, or an IPv6 /64."""
    try:
        address = ipaddress.ip_address((remote_addr or "").strip())
    except ValueError:
        return "unknown"  # not from a socket peer (a test client, a unix socket)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
    return str(address)


def canonical_inbox(email: str) -> str:
    """The mailbox an address reaches, for caps: `a+anything@x` is delivered to `a@x`."""
    local, _, domain = email.rpartition("@")
    return f"{local.split('+', 1)[0] or local}@{domain}"


def keyed_digest(secret: bytes, kind: str, value: str, length: int = 32) -> str:
    """Redis keys carry a keyed digest, so they do not spell out addresses or IPs."""
    return hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:length]
