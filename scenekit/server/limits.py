"""Request size limits, checked before a handler reads the body (declared length and bytes actually sent)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """How large a request body may be: JSON requests, uploaded images and uploaded videos."""

    request: int = 2 * MiB
    image: int = 32 * MiB
    video: int = 512 * MiB

    def for_path(self, path: str) -> int:
        return max(self.image, self.video) if path == "/uploads" else self.request


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """413 for a body over the limit of its path (`Limits.for_path`)."""

    def __init__(self, app: ASGIApp, limits: Limits):
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.for_path(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(limit)(scope, receive, send)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise _TooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await _too_large(limit)(scope, receive, send)


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"the request body is over the limit of {limit} bytes"}, status_code=413)
