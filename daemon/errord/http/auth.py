"""Who may do what over HTTP (CONTRACT §10's table): loopback or not, token or not."""

from __future__ import annotations

import base64
import hmac
import ipaddress

__all__ = ["is_loopback", "token_ok"]


def is_loopback(host: str) -> bool:
    """An IP in 127.0.0.0/8, ``::1``, or the name ``localhost`` (``0.0.0.0``, ``::`` and
    other names are not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_ok(header: str | None, token: str) -> bool:
    """``Authorization: Bearer TOKEN``, or HTTP Basic with the token as the password (any
    user name, so a browser can open the page); compared in constant time."""
    if not header or not token:
        return False
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer":
        given = value
    elif scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return False
        given = decoded.partition(":")[2]
    else:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), token.encode("utf-8", "surrogatepass"))
