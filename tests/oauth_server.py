"""A real OAuth 2.0 token endpoint on 127.0.0.1, built from authlib's server components
(AuthorizationServer with the client credentials, password and refresh token grants), served
by aiohttp. It also guards a resource path that accepts only tokens it issued."""

from __future__ import annotations

import os
import secrets
import time
from collections import defaultdict

from aiohttp import web
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    OAuth2Request,
    TokenMixin,
)
from authlib.oauth2.rfc6749.grants import (
    ClientCredentialsGrant,
    RefreshTokenGrant,
    ResourceOwnerPasswordCredentialsGrant,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator

from services.devstack import free_port
from tests.receiver import serve

os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")  # plain http on loopback, for tests only

AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class Client(ClientMixin):
    def __init__(self, client_id: str, client_secret: str):
        self.client_id = client_id
        self.client_secret = client_secret

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return None

    def get_allowed_scope(self, scope):
        return scope or ""  # no scope requested: a token without scope

    def check_redirect_uri(self, redirect_uri):
        return False

    def check_client_secret(self, client_secret):
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        return method in AUTH_METHODS

    def check_response_type(self, response_type):
        return False

    def check_grant_type(self, grant_type):
        return True


class StoredRefreshToken(TokenMixin):
    def __init__(self, client_id: str, user: str, scope: str | None):
        self.client_id, self.user, self.scope, self.revoked = client_id, user, scope, False

    def check_client(self, client):
        return client.client_id == self.client_id

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        return 3600

    def is_expired(self):
        return False

    def is_revoked(self):
        return self.revoked

    def get_user(self):
        return self.user


class ClientCredentials(ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS


class Password(ResourceOwnerPasswordCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def authenticate_user(self, username, password):
        return username if self.server.users.get(username) == password else None


class Refresh(RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotate: the old refresh token stops working

    def authenticate_refresh_token(self, refresh_token):
        token = self.server.refresh_tokens.get(refresh_token)
        return token if token and not token.revoked else None

    def authenticate_user(self, refresh_token):
        return refresh_token.get_user()

    def revoke_old_credential(self, refresh_token):
        refresh_token.revoked = True


class FormRequest(OAuth2Request):
    def __init__(self, url: str, headers: dict, form: dict):
        super().__init__("POST", url, headers=headers)
        self._form = form
        self.payload = BasicOAuth2Payload(form)

    @property
    def form(self):
        return self._form


class TokenServer(AuthorizationServer):
    def __init__(self, expires_in: int = 3600):
        super().__init__()
        self.port = free_port()
        self.clients: dict[str, Client] = {}
        self.users: dict[str, str] = {}
        self.refresh_tokens: dict[str, StoredRefreshToken] = {}
        self.access_tokens: dict[str, float] = {}  # token -> expiry
        self.requests: list[dict] = []  # form of every token request
        self.request_headers: list[dict] = []  # and its headers
        self.resource_calls: dict[str, list[str]] = defaultdict(list)
        self.register_token_generator("default", BearerTokenGenerator(
            access_token_generator=lambda **_: secrets.token_urlsafe(16),
            refresh_token_generator=lambda **_: secrets.token_urlsafe(16),
            expires_generator=lambda client, grant_type: expires_in,
        ))
        for grant in (ClientCredentials, Password, Refresh):
            self.register_grant(grant)
        self._runner: web.AppRunner | None = None

    @property
    def token_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def resource_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/resource{path}"

    def add_client(self, client_id: str, client_secret: str) -> None:
        self.clients[client_id] = Client(client_id, client_secret)

    def issue_refresh_token(self, client_id: str, user: str = "crm") -> str:
        value = secrets.token_urlsafe(16)
        self.refresh_tokens[value] = StoredRefreshToken(client_id, user, None)
        return value

    def revoke_access_tokens(self) -> None:
        self.access_tokens.clear()

    # --- authlib's framework hooks ----------------------------------------------------------

    def query_client(self, client_id):
        return self.clients.get(client_id)

    def save_token(self, token, request):
        self.access_tokens[token["access_token"]] = time.time() + token.get("expires_in", 3600)
        if token.get("refresh_token"):
            client_id = request.client.get_client_id()
            self.refresh_tokens[token["refresh_token"]] = StoredRefreshToken(client_id, request.user, None)

    def create_oauth2_request(self, request):
        return request

    def handle_response(self, status, body, headers):
        import json

        return web.Response(text=json.dumps(body), status=status, headers=dict(headers))

    def send_signal(self, name, *args, **kwargs):
        pass

    # --- HTTP -----------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.requests.append(form)
        self.request_headers.append(dict(request.headers))
        return self.create_token_response(FormRequest(str(request.url), dict(request.headers), form))

    async def _resource(self, request: web.Request) -> web.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        expiry = self.access_tokens.get(token) if scheme == "Bearer" else None
        self.resource_calls[request.path].append(token)
        if expiry is None or expiry < time.time():
            return web.Response(status=401, text="invalid token")
        return web.Response(status=200, text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_post("/resource/{tail:.*}", self._resource)
        self._runner = await serve(app, self.port)

    async def stop(self) -> None:
        await self._runner.cleanup()
