"""ASGI pieces in front of the routes: the request body bound and HEAD for every GET route.

Neither reads more of a request than it needs: a body declared (``Content-Length``) larger than
the limit is refused before any of it is read, and a streamed (chunked) body is counted as it
arrives and refused as soon as it passes the limit.
"""
from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from .errors import BodyTooLarge

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


async def send_error(send: Send, exc: BodyTooLarge) -> None:
    """Send ``exc`` as the API's JSON error and close the connection (the rest of the body is not read).

    Parameters
    ----------
    send : callable
        The ASGI send channel of a request whose response has not started.
    exc : BodyTooLarge
        The error to send.
    """
    body = json.dumps({"error": {"status": exc.status, "parameter": exc.parameter,
                                 "message": exc.message}}).encode()
    await send({"type": "http.response.start", "status": exc.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuses (413) a request whose body is larger than ``limit`` bytes before the app reads it.

    A declared ``Content-Length`` over the limit is refused at once, unread. Otherwise a request
    with a body has it read here, counting the bytes as they arrive, and refused as soon as the
    count passes the limit; a body within it is handed to ``app`` in one message.

    Parameters
    ----------
    app : ASGI application
        What gets every request within the limit.
    limit : int
        Largest body accepted, bytes.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        declared = int(length) if length is not None and length.strip().isdigit() else None
        if declared is not None and declared > self.limit:
            await send_error(send, BodyTooLarge(self.limit))
            return
        if not declared and _header(scope, b"transfer-encoding") is None:
            await self.app(scope, receive, send)   # no body: nothing to count
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":      # the client went away
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await send_error(send, BodyTooLarge(self.limit))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        whole = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([whole], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive channel giving ``messages`` first, then what ``receive`` gives (a disconnect)."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()
    return replayed


def without_body(send: Send) -> Send:
    """A send channel that passes the status and headers of a response but none of its body (HEAD).

    Parameters
    ----------
    send : callable
        The ASGI send channel of a HEAD request.

    Returns
    -------
    callable
        The channel to give the GET handler: ``Content-Length`` and every other header stay those
        of the GET response.
    """
    async def headers_only(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {"type": "http.response.body", "body": b"", "more_body": message.get("more_body", False)}
        await send(message)
    return headers_only
