"""The SSRF guard (shared/netguard.py): which addresses and URLs are refused, and, with real
sockets, that deliveries (aiohttp, built as the dispatcher builds it) and OAuth token requests
(httpx via authlib) connect only to the address that was vetted, even when DNS answers change."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.devstack import free_port
from services.dispatcher.auth import Credentials, TokenError
from services.dispatcher.configs import DeliveryConfiguration
from services.dispatcher.sender import delivery_session, post
from shared.netguard import EgressGuard, UrlRefused, address_refusal, check_url, check_url_syntax
from tests.oauth_server import TokenServer

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]


def nets(*cidrs: str) -> list:
    return [ipaddress.ip_network(cidr) for cidr in cidrs]


# --- which addresses ---------------------------------------------------------------------------

def teredo(server: str, client: str) -> str:
    """A Teredo address: 2001:0::/32, the server's IPv4, flags, port, and the client's IPv4 inverted."""
    value = (0x20010000 << 96) | (int(ipaddress.IPv4Address(server)) << 64) | (0xFFFF << 32)
    return str(ipaddress.IPv6Address(value | (~int(ipaddress.IPv4Address(client)) & 0xFFFFFFFF)))


REFUSED = {
    "127.0.0.1": "loopback", "::1": "loopback", "0.0.0.0": "unspecified", "::": "unspecified",
    "10.1.2.3": "private", "172.16.0.1": "private", "192.168.1.1": "private", "fc00::1": "private",
    "169.254.169.254": "link-local", "fe80::1": "link-local",
    "224.0.0.1": "multicast", "239.255.255.250": "multicast", "ff02::1": "multicast",
    "100.64.0.1": "carrier-grade NAT", "100.127.255.254": "carrier-grade NAT",
    "192.88.99.1": "6to4 relay",
    "2002:7f00:1::": "6to4", "2002:808:808::1": "6to4",  # 6to4 of 127.0.0.1 and of 8.8.8.8
    "64:ff9b::7f00:1": "NAT64", "64:ff9b::808:808": "NAT64", "64:ff9b:1::a00:1": "local-use NAT64",
    teredo("65.54.227.120", "10.0.0.1"): "Teredo", teredo("65.54.227.120", "8.8.8.8"): "Teredo",
    "::7f00:1": "IPv4-compatible", "::808:808": "IPv4-compatible",
    "::ffff:127.0.0.1": "loopback", "::ffff:10.0.0.1": "private", "::ffff:169.254.169.254": "link-local",
    "fec0::1": "site-local", "192.0.2.1": "", "198.51.100.1": "", "203.0.113.1": "", "2001:db8::1": "",
    "198.18.0.1": "", "240.0.0.1": "", "255.255.255.255": "", "3fff::1": "documentation",
}


@pytest.mark.parametrize(("address", "reason"), REFUSED.items())
def test_non_global_addresses_are_refused(address, reason):
    refusal = address_refusal(address, [])
    assert refusal is not None, address
    assert reason in refusal, refusal


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111",
                                     "2a00:1450:4001:82a::200e", "::ffff:8.8.8.8"])
def test_global_addresses_are_allowed(address):
    assert address_refusal(address, []) is None


def test_the_allow_list_opens_its_networks_and_nothing_else():
    assert address_refusal("127.0.0.1", LOOPBACK) is None
    assert address_refusal("::ffff:127.0.0.1", LOOPBACK) is None  # the same address on the wire
    assert address_refusal("::1", LOOPBACK) is not None
    assert address_refusal("10.0.0.1", LOOPBACK) is not None
    assert address_refusal("169.254.169.254", nets("10.0.0.0/8")) is not None
    assert address_refusal("100.64.0.1", nets("100.64.0.0/10")) is None


@pytest.mark.parametrize(("allowed", "passes", "refused"), [
    ("2002::/16", "2002:808:808::1", "2002:7f00:1::"),
    ("64:ff9b::/96", "64:ff9b::808:808", "64:ff9b::a00:1"),
    ("2001::/32", teredo("65.54.227.120", "8.8.8.8"), teredo("65.54.227.120", "10.0.0.1")),
    ("::/96", "::808:808", "::7f00:1"),
])
def test_an_allowed_tunnel_range_still_vets_the_ipv4_address_it_leads_to(allowed, passes, refused):
    """Say NAT64 is allowed in an IPv6-only cluster: 64:ff9b::10.0.0.1 still reaches 10.0.0.1."""
    assert address_refusal(passes, nets(allowed)) is None
    assert "which leads to" in address_refusal(refused, nets(allowed))
    assert address_refusal(refused, nets(allowed, "10.0.0.0/8", "127.0.0.0/8")) is None


# --- which URLs --------------------------------------------------------------------------------

MALFORMED = {
    "http://[::1": "malformed",
    "http://[::1]x/": "malformed",
    "http://[v1.x]/": "not a valid IPv6 address",
    "http://[fe80::1%25eth0]/": "zone identifier",
    "http://a..b/": "empty label",
    "http://.example.com/": "empty label",
    "http://a b.example.com/": "space or control character at position 8",
    "http://example.com/a b": "space or control character",
    " http://example.com/": "space or control character at position 0",
    "http://example.com/\t": "space or control character",
    "http://example.com/\x00": "space or control character",
    "http://example.com/\x7f": "space or control character",
    "http://exa\u200bmple.com/": "space or control character",  # zero-width space
    "http://example.com/\u3000": "space or control character",  # ideographic space
    "http://xn--zz/": "internationalised domain name",
    "http://XN--ZZ.example.com/": "internationalised domain name",
    "http://xn--a.example.com/": "internationalised domain name",
    "http://xn--ls8h.la/": "internationalised domain name",  # punycode of an emoji: not IDNA 2008
    "http://exa\u00admple.com/": "space or control character",  # soft hyphen
    "http://-example.com/": "may not start or end with '-'",
    "http://exa$mple.com/": "may hold only letters",
    "http://" + "a" * 64 + ".example.com/": "longer than 63",
    "http://" + ("a" * 60 + ".") * 5 + "com/": "longer than 253",
    "http://example.com:0/": "between 1 and 65535",
    "http://example.com:65536/": "between 1 and 65535",
    "http://example.com:http/": "between 1 and 65535",
    "http://127.1/": "not a valid IPv4 address",
    "http://2130706433/": "not a valid IPv4 address",
    "http://0x7f.0.0.1/": "not a valid IPv4 address",
    "http://0177.0.0.1/": "not a valid IPv4 address",
    "http://example.com\\@10.0.0.1/": "backslash",
    "http://user:pw@example.com/": "credentials",
    "http://@example.com/": "credentials",
    "ftp://example.com/": "http:// or https://",
    "example.com/hook": "http:// or https://",
    "http:///hook": "no host",
}


@pytest.mark.parametrize(("url", "message"), MALFORMED.items())
def test_malformed_urls_are_refused_with_a_clear_message(url, message):
    with pytest.raises(UrlRefused, match=message.replace("$", r"\$")):
        check_url_syntax(url)


@pytest.mark.parametrize(("url", "host", "port"), [
    ("https://crm.example.com/hooks?x=1#top", "crm.example.com", 443),
    ("http://crm.example.com./", "crm.example.com", 80),
    ("https://CRM.Example.COM:8443/", "crm.example.com", 8443),
    ("https://münchen.example/", "xn--mnchen-3ya.example", 443),
    ("https://xn--mnchen-3ya.example/", "xn--mnchen-3ya.example", 443),
    ("https://ｃｒｍ.example.com/", "crm.example.com", 443),  # full-width letters map to ASCII (UTS 46)
    ("https://my_host.example.com/", "my_host.example.com", 443),
    ("https://crm.example.com/été?q=ü", "crm.example.com", 443),
    ("http://8.8.8.8:8080/h", "8.8.8.8", 8080),
    ("http://[2606:4700::1111]/", "2606:4700::1111", 80),
    ("https://" + "a" * 63 + ".example.com/", "a" * 63 + ".example.com", 443),
])
def test_well_formed_urls_give_the_host_dns_sees(url, host, port):
    assert check_url_syntax(url) == (host, port)


def test_https_can_be_required():
    assert check_url_syntax("https://crm.example.com/", require_https=True) == ("crm.example.com", 443)
    with pytest.raises(UrlRefused, match="requires https"):
        check_url_syntax("http://crm.example.com/", require_https=True)


async def test_the_write_time_check_resolves_the_host_but_accepts_a_name_that_does_not_resolve_yet():
    with pytest.raises(UrlRefused, match=r"localhost resolves to (127\.0\.0\.1|::1) \(a loopback address\)"):
        await check_url("http://localhost:8080/", [])
    with pytest.raises(UrlRefused, match="169.254.169.254 \\(a link-local address"):
        await check_url("http://169.254.169.254/latest/meta-data", LOOPBACK)
    await check_url("http://127.0.0.1:8080/", LOOPBACK)
    await check_url("https://does-not-exist.invalid/", [])
    with pytest.raises(UrlRefused, match="requires https"):
        await check_url("http://does-not-exist.invalid/", [], require_https=True)


# --- real sockets ------------------------------------------------------------------------------

class FakeDns:
    """A name server whose answers change from one lookup to the next (DNS rebinding)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.lookups: list[str] = []

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        self.lookups.append(host)
        answer = self.answers[min(len(self.lookups), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0)) if ":" in a else
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answer]


class Server:
    """A real HTTP(S) server on one loopback address; records each request, closes each connection
    so that every request needs a new one."""

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None):
        self.host, self.port, self.ssl_context = host, port, ssl_context
        self.requests: list[web.Request] = []
        self.sni: list[str | None] = []
        if ssl_context is not None:
            ssl_context.sni_callback = lambda _socket, name, _context: self.sni.append(name)

    async def __aenter__(self):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port, ssl_context=self.ssl_context).start()
        return self

    async def __aexit__(self, *exc):
        await self.runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        if request.path == "/token":
            response = web.json_response({"access_token": f"token-from-{self.host}", "token_type": "Bearer",
                                          "expires_in": 3600})
        else:
            response = web.Response(text=f"hello from {self.host}")
        if request.path == "/sets-a-cookie":
            response.set_cookie("session", "company-a-secret", path="/")
        response.force_close()
        return response


ENDPOINT = "ep_1"


async def deliver(guard: EgressGuard, url: str, session=None, headers=None):
    """One attempt through a session built exactly as the dispatcher builds it."""
    if session is not None:
        return await post(session, {"id": ENDPOINT, "url": url}, b"{}", headers or {}, 5)
    async with delivery_session(guard) as session:
        return await post(session, {"id": ENDPOINT, "url": url}, b"{}", headers or {}, 5)


async def test_a_loopback_endpoint_is_refused_unless_allowed():
    port = free_port()
    async with Server("127.0.0.1", port) as server:
        for url in (f"http://127.0.0.1:{port}/h", f"http://localhost:{port}/h", f"http://[::ffff:127.0.0.1]:{port}/h"):
            refused = await deliver(EgressGuard([]), url)
            assert refused.outcome == "failed", (url, refused)  # not retried: only a configuration change helps
            assert refused.error.startswith("endpoint URL refused: ") and "loopback" in refused.error, refused.error
            assert refused.http_status is None
        assert server.requests == []
        for url in (f"http://127.0.0.1:{port}/h", f"http://localhost:{port}/h"):
            accepted = await deliver(EgressGuard(LOOPBACK), url)
            assert (accepted.outcome, accepted.http_status) == ("success", 200), accepted
        assert len(server.requests) == 2


async def test_a_cookie_one_endpoint_sets_is_never_sent_to_another():
    """The dispatcher's one session serves every company: a cookie an endpoint sets must not
    travel with later deliveries, least of all another company's at the same host."""
    port = free_port()
    dns = FakeDns(["127.0.0.1"])
    guard = EgressGuard(LOOPBACK, getaddrinfo=dns.getaddrinfo)
    async with Server("127.0.0.1", port) as server, delivery_session(guard) as session:
        first = await deliver(guard, f"http://crm.test:{port}/sets-a-cookie", session)
        second = await deliver(guard, f"http://crm.test:{port}/another-company", session)
    assert (first.http_status, second.http_status) == (200, 200)
    assert "Cookie" not in server.requests[1].headers, server.requests[1].headers


async def test_dns_rebinding_reaches_only_the_address_that_was_vetted():
    """127.0.0.1 plays the company's public server (allowed), 127.0.0.2 an internal one. DNS answers
    the public address once, then the internal one: the request goes where the vetted answer
    said, and the next connection, which resolves again, is refused."""
    port = free_port()
    dns = FakeDns(["127.0.0.1"], ["127.0.0.2"])
    guard = EgressGuard(nets("127.0.0.1/32"), getaddrinfo=dns.getaddrinfo)
    url = f"http://crm.test:{port}/h"
    async with Server("127.0.0.1", port) as public, Server("127.0.0.2", port) as internal:
        async with delivery_session(guard) as session:
            first = await deliver(guard, url, session)
            assert (first.outcome, first.http_status) == ("success", 200), first
            assert dns.lookups == ["crm.test"]  # one lookup, whose vetted answer was connected to
            assert public.requests[0].host == f"crm.test:{port}"  # the Host header keeps the name
            session.connector.clear_dns_cache()  # as when the cached answer expires
            second = await deliver(guard, url, session)
        assert second.outcome == "failed", second
        assert second.error == ("endpoint URL refused: crm.test resolves to 127.0.0.2 (a loopback address), "
                                "which is not allowed")
        assert len(public.requests) == 1 and internal.requests == []


async def test_refused_answers_are_dropped_and_the_vetted_one_is_used():
    port = free_port()
    dns = FakeDns(["127.0.0.2", "127.0.0.1"])
    guard = EgressGuard(nets("127.0.0.1/32"), getaddrinfo=dns.getaddrinfo)
    async with Server("127.0.0.1", port) as public, Server("127.0.0.2", port) as internal:
        attempt = await deliver(guard, f"http://crm.test:{port}/h")
    assert attempt.outcome == "success", attempt
    assert len(public.requests) == 1 and internal.requests == []


async def test_connections_are_reused_without_looking_the_name_up_again():
    """The hot path: one lookup for many deliveries (the connector caches the vetted answer)."""
    port = free_port()
    dns = FakeDns(["127.0.0.1"])
    guard = EgressGuard(LOOPBACK, getaddrinfo=dns.getaddrinfo)
    async with Server("127.0.0.1", port) as server, delivery_session(guard) as session:
        for _ in range(20):
            assert (await deliver(guard, f"http://crm.test:{port}/h", session)).outcome == "success"
    assert len(server.requests) == 20 and dns.lookups == ["crm.test"]


async def test_a_name_that_does_not_resolve_is_worth_a_retry():
    dns = FakeDns(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    attempt = await deliver(EgressGuard(LOOPBACK, getaddrinfo=dns.getaddrinfo), "http://crm.test:9/h")
    assert attempt.outcome == "retryable", attempt
    assert "Name or service not known" in attempt.error


async def test_with_https_required_nothing_goes_out_over_plain_http():
    port = free_port()
    async with Server("127.0.0.1", port) as server:
        attempt = await deliver(EgressGuard(LOOPBACK, require_https=True), f"http://127.0.0.1:{port}/h",
                                headers={"authorization": "Basic dTpzZWNyZXQ="})
    assert attempt.outcome == "failed" and "requires https" in attempt.error, attempt
    assert server.requests == []  # so the credentials never left


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A self-signed certificate for crm.test and auth.test: (server context factory, client context)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crm.test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("crm.test"), x509.DNSName("auth.test")]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))

    def server_context() -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
        return context

    return server_context, ssl.create_default_context(cafile=str(folder / "cert.pem"))


async def test_tls_verifies_and_sends_the_name_while_connecting_to_the_vetted_address(tls):
    server_context, client_context = tls
    port = free_port()
    dns = FakeDns(["127.0.0.1"])
    guard = EgressGuard(LOOPBACK, require_https=True, getaddrinfo=dns.getaddrinfo, ssl_context=client_context)
    async with Server("127.0.0.1", port, server_context()) as server:
        attempt = await deliver(guard, f"https://crm.test:{port}/h")
    assert (attempt.outcome, attempt.http_status) == ("success", 200), attempt
    assert server.sni == ["crm.test"] and server.requests[0].host == f"crm.test:{port}"


# --- OAuth token requests (httpx under authlib) ------------------------------------------------

def oauth_configuration(token_url: str) -> DeliveryConfiguration:
    return DeliveryConfiguration(id="dc_guard", company_id="co_guard", active=True, paused=False, mode="realtime",
                                 endpoints=[], format="json", throttle=None,
                                 authentication={"type": "oauth2", "grant_type": "client_credentials",
                                                 "token_url": token_url, "client_id": "em-client"},
                                 secrets={"client_secret": "s3cret"})


@pytest.fixture
async def token_server():
    server = TokenServer()
    server.add_client("em-client", "s3cret")
    await server.start()
    yield server
    await server.stop()


async def test_a_loopback_token_url_is_refused_unless_allowed(token_server):
    for token_url in (token_server.token_url, token_server.token_url.replace("127.0.0.1", "localhost")):
        with pytest.raises(TokenError, match="token URL refused: .*loopback") as refused:
            await Credentials(None, EgressGuard([]), 5).authorization(oauth_configuration(token_url))
        assert refused.value.retryable is False
    assert token_server.requests == []
    credentials = Credentials(None, EgressGuard(LOOPBACK), 5)
    authorization = await credentials.authorization(oauth_configuration(token_server.token_url))
    assert authorization.startswith("Bearer ") and len(token_server.requests) == 1


async def test_token_requests_reach_only_the_vetted_address_when_dns_rebinds():
    port = free_port()
    dns = FakeDns(["127.0.0.1"], ["127.0.0.2"])
    credentials = Credentials(None, EgressGuard(nets("127.0.0.1/32"), getaddrinfo=dns.getaddrinfo), 5)
    configuration = oauth_configuration(f"http://auth.test:{port}/token")
    async with Server("127.0.0.1", port) as public, Server("127.0.0.2", port) as internal:
        assert await credentials.authorization(configuration) == "Bearer token-from-127.0.0.1"
        credentials.forget_all([configuration.id])
        with pytest.raises(TokenError, match="auth.test resolves to 127.0.0.2 \\(a loopback address\\)") as refused:
            await credentials.authorization(configuration)
    assert refused.value.retryable is False
    assert dns.lookups == ["auth.test", "auth.test"]
    assert len(public.requests) == 1 and internal.requests == []


async def test_a_token_url_that_does_not_resolve_is_worth_a_retry():
    dns = FakeDns(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    credentials = Credentials(None, EgressGuard(LOOPBACK, getaddrinfo=dns.getaddrinfo), 5)
    with pytest.raises(TokenError, match="unreachable") as failed:
        await credentials.authorization(oauth_configuration("http://auth.test:9/token"))
    assert failed.value.retryable is True


async def test_with_https_required_client_secrets_never_go_out_over_plain_http(token_server):
    credentials = Credentials(None, EgressGuard(LOOPBACK, require_https=True), 5)
    with pytest.raises(TokenError, match="token URL refused: .*requires https") as refused:
        await credentials.authorization(oauth_configuration(token_server.token_url))
    assert refused.value.retryable is False and token_server.requests == []


async def test_token_requests_verify_tls_for_the_name_at_the_vetted_address(tls):
    server_context, client_context = tls
    port = free_port()
    dns = FakeDns(["127.0.0.1"])
    guard = EgressGuard(LOOPBACK, require_https=True, getaddrinfo=dns.getaddrinfo, ssl_context=client_context)
    async with Server("127.0.0.1", port, server_context()) as server:
        authorization = await Credentials(None, guard, 5).authorization(oauth_configuration(f"https://auth.test:{port}/token"))
    assert authorization == "Bearer token-from-127.0.0.1"
    assert server.sni == ["auth.test"] and server.requests[0].host == f"auth.test:{port}"


# --- the api (real stack) ----------------------------------------------------------------------

async def test_the_api_refuses_malformed_urls_naming_the_field_and_stores_nothing(tenant):
    base = {"name": "crm", "mode": "realtime", "endpoints": [{"url": "https://crm.example.com/hooks"}]}
    for url in ("http://[::1", "http://a..b/", "http://crm .example.com/", "http://xn--zz/", "http://crm.example.com:0/"):
        response = await tenant.client.post("/v1/delivery-configurations", json={**base, "endpoints": [{"url": url}]})
        assert response.status_code == 422, (url, response.text)
        assert response.json()["errors"][0]["loc"] == ["endpoints", 0, "url"], (url, response.json())
        oauth = {"type": "oauth2", "token_url": url, "client_id": "c", "client_secret": "s",
                 "grant_type": "client_credentials"}
        response = await tenant.client.post("/v1/delivery-configurations", json={**base, "authentication": oauth})
        assert response.status_code == 422, (url, response.text)
        assert response.json()["errors"][0]["loc"] == ["authentication", "token_url"], (url, response.json())
    assert (await tenant.client.get("/v1/delivery-configurations")).json() == []
