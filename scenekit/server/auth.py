"""The API's bearer token: where it comes from, and the middleware that asks for it.

The token is `--token`, else `$SCENEKIT_API_TOKEN`, else the one kept beside the user config
(`~/.config/scenekit/api-token`), created (and printed once) on the first start. The page sends it as
`Authorization: Bearer TOKEN`, or, for what a browser fetches by itself (the `<video>` element), as the
`scenekit_token` cookie it sets (SameSite=Strict, so other sites' pages cannot use it).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from scenekit.userconfig import config_path

TOKEN_ENV = "SCENEKIT_API_TOKEN"
COOKIE = "scenekit_token"
OPEN_PATHS = ("/health", "/openapi.json", "/")
OPEN_PREFIX = "/static/"
"""The page itself (HTML, CSS, JS: no project data) loads without the token, then asks for it."""


def token_file() -> Path:
    return config_path().parent / "api-token"


def resolve_token(given: str | None) -> tuple[str, bool]:
    """The token and whether it was just created (so the caller prints it once)."""
    if given:
        return given, False
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV], False
    path = token_file()
    if path.is_file():
        kept = path.read_text().strip()
        if kept:
            return kept, False
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    return token, True


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine (`--no-auth` is allowed only there)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TokenMiddleware:
    """Answers 401 to any request without the token, except /health, /openapi.json and the page's files."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["path"].startswith(OPEN_PREFIX):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            given = request.cookies.get(COOKIE, "")
        if not hmac.compare_digest(given.strip().encode(), self.token):
            response: Response = JSONResponse(
                {"detail": "a bearer token is required (Authorization: Bearer TOKEN)"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
