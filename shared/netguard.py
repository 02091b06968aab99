"""Refuse endpoint and token URLs that point into private networks (SSRF), unless the operator
listed the network in `EM_ALLOWED_PRIVATE_NETWORKS`. Checked when a URL is written (api) and
again before each connection (dispatcher), since DNS answers can change."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class UrlRefused(ValueError):
    pass


def _is_private(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    )


def check_address(address: str, allowed: list[Network]) -> None:
    ip = ipaddress.ip_address(address)
    if getattr(ip, "ipv4_mapped", None):
        ip = ip.ipv4_mapped
    if _is_private(ip) and not any(ip in network for network in allowed):
        raise UrlRefused(f"{ip} is in a private, loopback, link-local or metadata range that is not allowed")


def check_url_syntax(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UrlRefused("the URL must start with http:// or https://")
    if not parts.hostname:
        raise UrlRefused("the URL has no host")
    if parts.username or parts.password:
        raise UrlRefused("put credentials in the authentication settings, not in the URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UrlRefused("the URL's port is not a number between 0 and 65535") from None
    return parts.hostname, port


async def check_url(url: str, allowed: list[Network]) -> None:
    """Raise UrlRefused if the URL is malformed or any address its host resolves to is refused.
    A host that does not resolve (yet) is accepted: delivery will report the error."""
    host, port = check_url_syntax(url)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return
    for info in infos:
        check_address(info[4][0], allowed)
