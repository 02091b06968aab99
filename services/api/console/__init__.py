"""The web console: static HTML and JavaScript modules served at `/console`, a client of the same
public REST API (`/v1/...` with `Authorization: Bearer`), so there is no second back end and no
logic twice. No build step: the files under `static/` are what the browser runs.

Every response carries a Content-Security-Policy that allows only this origin's scripts, styles
and API (no inline script, no eval, no third-party hosts), and the pages render tenant data as
text only."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

STATIC = Path(__file__).parent / "static"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'; object-src 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"SAMEORIGIN"),
    # Small files, changed by releases: revalidate (ETag) rather than serve a stale module next to a new one.
    (b"cache-control", b"no-cache"),
]


class ConsoleFiles(StaticFiles):
    """StaticFiles with the console's security headers on every answer."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


def mount_console(app: FastAPI) -> None:
    """Serve the console at `/console/` (and redirect `/console` there)."""

    @app.get("/console", include_in_schema=False)
    async def console_root():
        return RedirectResponse("/console/", status_code=307)

    app.mount("/console", ConsoleFiles(directory=STATIC, html=True), name="console")
