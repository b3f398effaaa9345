"""Limits on a request's body enforced while it arrives: its size, and the time it takes to arrive.

A client can send a body without Content-Length (chunked transfer), or with a false one; Starlette's
multipart parser would then spool an unbounded file. A client can also send half a body and then
nothing, holding its connection (and what was spooled) for ever: the prediction's own timeout
starts only once the body is in. This ASGI middleware counts the bytes as they come and answers 413
as soon as the limit is passed, and answers 408 when the body has not arrived within the deadline;
either way it asks the client to close, and the app then sees a client that has gone away and reads
no more. (The request line and headers are bounded one level down: :mod:`serving.protocol`.)
"""

from __future__ import annotations

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import error_bytes


class BodyLimits:
    """Refuse HTTP request bodies over ``max_bytes`` (413) or slower than ``timeout`` seconds in all (408)."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, 413, "request_too_large", f"the request is larger than {self.max_bytes:,} bytes")
            return

        # the whole body must be in by then: a deadline, not an idle timeout, so trickling a byte now and
        # then does not keep a connection either
        deadline = anyio.current_time() + self.timeout
        received = 0
        body_complete = False
        refused = False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, refused, body_complete
            if refused:
                return {"type": "http.disconnect"}
            if body_complete:
                return await receive()  # only a disconnect can come now: no deadline on waiting for it
            with anyio.move_on_after(deadline - anyio.current_time()) as waited:
                message = await receive()
            if waited.cancelled_caught:
                refused = True
                if not response_started:
                    await self._refuse(
                        send, 408, "request_timeout", f"the request body did not arrive within {self.timeout:g} s"
                    )
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_complete = not message.get("more_body", False)
                if received > self.max_bytes and not response_started:
                    # answer now, then tell the app the client has gone: whatever it does next is dropped
                    refused = True
                    await self._refuse(
                        send, 413, "request_too_large", f"the request is larger than {self.max_bytes:,} bytes"
                    )
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if refused:
                return
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, limited_receive, guarded_send)

    @staticmethod
    async def _refuse(send: Send, status: int, code: str, message: str) -> None:
        body = error_bytes(status, code, message)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        # ask the client to close: the rest of its body is not read
        headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
