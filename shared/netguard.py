"""Where endpoint and token URLs may point (SSRF guard).

Two layers:
- `check_url_syntax` / `check_url`: when a URL is written (api), refuse a malformed one with a
  clear message, and one whose host resolves into a refused network today.
- `EgressGuard`: at delivery (dispatcher), the check is bound to the connection. The host is
  resolved once, every address is vetted, and only vetted addresses are connected to (an aiohttp
  resolver plus socket factory for deliveries, an httpcore network backend for OAuth token
  requests). A DNS answer that changes between a check and the connection (DNS rebinding) cannot
  slip through, because there is no separate check. TLS and the Host header still use the name.

Every address that is not globally routable is refused unless its network is listed in
`EM_ALLOWED_PRIVATE_NETWORKS`: Python's `is_global`, plus ranges it misses or that tunnel to an
IPv4 address (carrier-grade NAT, 6to4, NAT64, Teredo, IPv4-compatible IPv6, multicast)."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
import unicodedata
from collections.abc import Awaitable, Callable
from functools import lru_cache
from urllib.parse import urlsplit

import aiohttp
import httpcore
import httpx
import idna
from aiohttp.abc import AbstractResolver, ResolveResult

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# How long the api waits for DNS when a URL is written; an unanswered lookup is not a refusal.
LOOKUP_SECONDS = 3.0
MAX_HOST_LENGTH = 253
MAX_LABEL_LENGTH = 63


class UrlRefused(ValueError):
    """The URL may not be used; the message says why (shown to the API caller or in the attempt)."""


class AddressRefused(UrlRefused, OSError):
    """Raised while connecting. Also an OSError so that aiohttp and httpcore pass it up as the
    cause of their connection error instead of swallowing it (see `refusal_of`)."""


# --- which addresses ---------------------------------------------------------------------------

# Ranges that `is_global` misses (Python 3.11 calls 2002::/16, 64:ff9b::/96, multicast and
# 192.88.99.0/24 global) or that deserve a precise reason.
_SPECIAL_RANGES = [(ipaddress.ip_network(network), reason) for network, reason in (
    ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
    ("192.88.99.0/24", "a 6to4 relay anycast address"),
    ("2002::/16", "a 6to4 address"),
    ("64:ff9b::/96", "a NAT64 address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address"),
    ("2001::/32", "a Teredo address"),
    ("::/96", "an IPv4-compatible IPv6 address"),
    ("fec0::/10", "a site-local address"),
    ("3fff::/20", "a documentation address"),
    ("5f00::/16", "an SRv6 address"),
)]


def _embedded_ipv4(ip: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a translation or tunnel address leads to (6to4, NAT64, Teredo, IPv4-compatible)."""
    if ip.version == 4:
        return None
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and not (ip.is_loopback or ip.is_unspecified)):  # ::1 is not 0.0.0.1
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _why_not_global(ip: Address) -> str | None:
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_link_local:
        return "a link-local address, where cloud metadata services live"
    if ip.is_multicast:
        return "a multicast address"
    for network, reason in _SPECIAL_RANGES:
        if ip in network:
            return reason
    if ip.is_private:
        return "a private address"
    if ip.is_reserved or not ip.is_global:
        return "not a public address"
    return None


def address_refusal(address: str | Address, allowed: list[Network]) -> str | None:
    """Why connecting to this address is refused, or None if it is allowed. An allow-listed
    tunnel or translation range (say NAT64 in an IPv6-only cluster) still has its embedded IPv4
    address vetted: 64:ff9b::10.0.0.1 reaches 10.0.0.1."""
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1 on the wire
    if any(ip in network for network in allowed):
        embedded = _embedded_ipv4(ip)
        inner = address_refusal(embedded, allowed) if embedded else None
        return f"{ip} (which leads to {inner})" if inner else None
    reason = _why_not_global(ip)
    return f"{ip} ({reason})" if reason else None


def _refused(host: str, reason: str) -> AddressRefused:
    if reason.startswith(host + " ("):  # an IP address as host
        return AddressRefused(f"{reason} is not allowed")
    return AddressRefused(f"{host} resolves to {reason}, which is not allowed")


# --- which URLs --------------------------------------------------------------------------------

_ASCII_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_AUTHORITY = re.compile(r"(\[[^\]]*\]|[^\[\]:]*)(:[^\[\]:]*)?")  # host or [IPv6], then an optional port


def _first_space_or_control(text: str) -> int | None:
    for position, char in enumerate(text):
        if char <= " " or char == "\x7f" or (char > "\x7f" and unicodedata.category(char)[0] in "CZ"):
            return position
    return None


HTTPS_REQUIRED = "the URL must start with https:// (this installation requires https)"


@lru_cache(maxsize=8192)
def check_url_syntax(url: str, require_https: bool = False) -> tuple[str, int]:
    """The URL's host (ASCII, as DNS sees it) and port, or UrlRefused saying what is wrong.
    Pure and cached: the dispatcher may call it for every delivery."""
    position = _first_space_or_control(url)
    if position is not None:
        raise UrlRefused(f"the URL contains a space or control character at position {position}")
    if "\\" in url:
        raise UrlRefused("the URL contains a backslash")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL" for http://[::1
        raise UrlRefused(f"the URL is malformed: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UrlRefused("the URL must start with http:// or https://")
    if require_https and parts.scheme != "https":
        raise UrlRefused(HTTPS_REQUIRED)
    if "@" in parts.netloc:
        raise UrlRefused("put credentials in the authentication settings, not in the URL")
    if not _AUTHORITY.fullmatch(parts.netloc):  # urlsplit lets "[::1]x" or "a:1:2" through
        raise UrlRefused(f"the URL is malformed: {parts.netloc!r} is not a host with an optional port")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise UrlRefused("the URL's port must be a number between 1 and 65535")
    host = _checked_host(parts.hostname, bracketed=parts.netloc.startswith("["))
    return host, port or (443 if parts.scheme == "https" else 80)


def _checked_host(hostname: str | None, bracketed: bool) -> str:
    if not hostname:
        raise UrlRefused("the URL has no host")
    if bracketed:
        return _checked_ipv6(hostname)
    name = hostname[:-1] if hostname.endswith(".") else hostname  # one trailing dot: a fully qualified name
    labels = name.split(".")
    if "" in labels:
        raise UrlRefused("the URL's host has an empty label (two dots in a row, or a leading dot)")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            raise UrlRefused(f"the URL's host {hostname!r} is not a valid IPv4 address (write a.b.c.d)") from None
        return name
    if name.isascii() and not any(label.startswith("xn--") for label in labels):
        _check_ascii_labels(labels)
    else:
        name = _punycode(name)
    if len(name) > MAX_HOST_LENGTH:
        raise UrlRefused(f"the URL's host is longer than {MAX_HOST_LENGTH} characters")
    if any(len(label) > MAX_LABEL_LENGTH for label in name.split(".")):
        raise UrlRefused(f"a label of the URL's host is longer than {MAX_LABEL_LENGTH} characters")
    return name


def _checked_ipv6(hostname: str) -> str:
    if "%" in hostname:
        raise UrlRefused("the URL's IPv6 address may not have a zone identifier")
    try:
        return str(ipaddress.IPv6Address(hostname))
    except ValueError:
        raise UrlRefused(f"the URL's host [{hostname}] is not a valid IPv6 address") from None


def _check_ascii_labels(labels: list[str]) -> None:
    bad = next((label for label in labels if not _ASCII_LABEL.fullmatch(label)), None)
    if bad is not None:
        raise UrlRefused(f"the URL's host label {bad!r} may hold only letters, digits, '-' and '_', "
                         "and may not start or end with '-'")


def _punycode(name: str) -> str:
    """An internationalised name as the ASCII name DNS knows."""
    try:
        ascii_name = idna.encode(name, uts46=True).decode("ascii")
        idna.decode(ascii_name)  # a label that is already punycode (xn--) must decode to a valid name
    except (idna.IDNAError, UnicodeError) as exc:
        raise UrlRefused(f"the URL's host is not a valid internationalised domain name: {exc}") from None
    return ascii_name


async def check_url(url: str, allowed: list[Network], require_https: bool = False) -> None:
    """When a URL is written: refuse it if malformed or if its host resolves to a refused address
    today. A host that does not resolve (yet) is accepted; every connection is vetted anyway."""
    host, port = check_url_syntax(url, require_https)
    try:
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM), LOOKUP_SECONDS)
    except (OSError, TimeoutError):
        return
    for info in infos:
        reason = address_refusal(info[4][0], allowed)
        if reason:
            raise _refused(host, reason)


# --- the connection ----------------------------------------------------------------------------

GetAddrInfo = Callable[..., Awaitable[list]]


class EgressGuard:
    """The dispatcher's outgoing-connection policy: allowed networks, https only or not, and the
    one DNS lookup per connection whose vetted answers are the only addresses connected to.
    `getaddrinfo` (the event loop's by default) is replaceable so tests can play DNS rebinding."""

    def __init__(self, allowed: list[Network], require_https: bool = False,
                 getaddrinfo: GetAddrInfo | None = None, ssl_context: ssl.SSLContext | None = None):
        self.allowed = allowed
        self.require_https = require_https
        self.ssl_context = ssl_context  # None: the system's trust store
        self._getaddrinfo = getaddrinfo
        # Vetting one address takes ~35 us (ipaddress walks its range tables); every connection
        # vets its address twice (resolver, socket factory), so remember the verdicts.
        self.refusal = lru_cache(maxsize=4096)(lambda address: address_refusal(address, allowed))

    def check_url(self, url: str) -> tuple[str, int]:
        return check_url_syntax(url, self.require_https)

    def vet(self, address: str) -> None:
        reason = self.refusal(address)
        if reason:
            raise _refused(address, reason)

    async def resolve(self, host: str, port: int, family: int = socket.AF_UNSPEC) -> list[tuple[int, int, str]]:
        """(family, proto, address) of every allowed address of host. socket.gaierror if it does
        not resolve (worth a retry); AddressRefused if it resolves only to refused addresses."""
        getaddrinfo = self._getaddrinfo or asyncio.get_running_loop().getaddrinfo
        infos = await getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG)
        vetted: list[tuple[int, int, str]] = []
        refusals: list[str] = []
        for address_family, _, proto, _, sockaddr in infos:
            reason = self.refusal(sockaddr[0])
            if reason:
                refusals.append(reason)
            elif (address_family, proto, sockaddr[0]) not in vetted:
                vetted.append((address_family, proto, sockaddr[0]))
        if not vetted:
            raise _refused(host, refusals[0] if refusals else "no address")
        return vetted

    def https_refusal(self, scheme: str) -> UrlRefused | None:
        if self.require_https and scheme != "https":
            return UrlRefused(HTTPS_REQUIRED)
        return None

    # aiohttp: deliveries

    def aiohttp_session(self, **connector_options) -> aiohttp.ClientSession:
        """A session that connects only to vetted addresses (names through GuardedResolver, IP
        literals, which aiohttp never resolves, through the socket factory) and, when https is
        required, sends nothing over plain http: credentials included. It keeps no cookies: one
        session serves every company, and a cookie one endpoint set would otherwise travel with
        later requests to the same host, another company's included."""
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self), socket_factory=self._socket,
                                         ssl=self.ssl_context or True, **connector_options)
        middlewares = (self._https_only,) if self.require_https else ()
        return aiohttp.ClientSession(connector=connector, middlewares=middlewares,
                                     cookie_jar=aiohttp.DummyCookieJar())

    def _socket(self, addr_info) -> socket.socket:
        family, kind, proto, _, sockaddr = addr_info
        self.vet(sockaddr[0])
        return socket.socket(family, kind, proto)

    async def _https_only(self, request: aiohttp.ClientRequest, handler) -> aiohttp.ClientResponse:
        refusal = self.https_refusal(request.url.scheme)
        if refusal:
            raise refusal
        return await handler(request)

    # httpx: OAuth token requests

    def httpx_transport(self) -> httpx.AsyncBaseTransport:
        return _GuardedTransport(self)


class GuardedResolver(AbstractResolver):
    """aiohttp resolver returning only vetted addresses; the connector caches those (ttl_dns_cache)."""

    def __init__(self, guard: EgressGuard):
        self.guard = guard

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
        return [ResolveResult(hostname=host, host=address, port=port, family=address_family, proto=proto, flags=flags)
                for address_family, proto, address in await self.guard.resolve(host, port, family)]

    async def close(self) -> None:
        pass


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore connects to the address we vetted; TLS still verifies and sends (SNI) the name,
    since httpcore takes server_hostname from the request, not from the address."""

    def __init__(self, guard: EgressGuard):
        self.guard = guard
        self._network = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options=None) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await asyncio.wait_for(self.guard.resolve(host, port), timeout)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} took more than {timeout}s") from None
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"{host} does not resolve: {exc}") from None
        error: Exception | None = None
        for _, _, address in addresses:
            try:
                return await self._network.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error

    async def sleep(self, seconds: float) -> None:
        await self._network.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, guard: EgressGuard):
        verify = guard.ssl_context or _default_context()
        super().__init__(verify=verify, trust_env=False)
        # httpx offers no public way to pick the network backend; its httpcore pool does.
        self._pool = httpcore.AsyncConnectionPool(ssl_context=verify, network_backend=_GuardedBackend(guard))
        self.guard = guard

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        refusal = self.guard.https_refusal(request.url.scheme)
        if refusal:
            raise refusal
        return await super().handle_async_request(request)


@lru_cache(maxsize=1)
def _default_context() -> ssl.SSLContext:
    """httpx's default trust (certifi), built once: loading it takes milliseconds."""
    return httpx.create_ssl_context()


def refusal_of(exc: BaseException) -> UrlRefused | None:
    """The refusal behind an HTTP client error, if that is what it was: aiohttp wraps what the
    resolver or socket factory raised in a ClientConnectorError (`os_error`)."""
    if isinstance(exc, UrlRefused):
        return exc
    cause = getattr(exc, "os_error", None)
    return cause if isinstance(cause, UrlRefused) else None
