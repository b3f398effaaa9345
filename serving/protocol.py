"""uvicorn's h11 protocol with a deadline on a request's line and headers (a slowloris defence).

uvicorn bounds the idle time *between* requests (``timeout_keep_alive``) but not the time a client
takes to send one: every byte received cancels its keep-alive timer, and nothing is armed while a
request's headers trickle in, so a client that connects and sends nothing, or half a header, holds
the connection for ever. An ASGI middleware cannot help: the app is called only once the headers
are complete. This subclass arms a timer whenever the connection waits for a request's headers
(from the connection's start, and again after each response) and disarms it when they are in; when
it fires, the connection is closed. The body's own deadline is :class:`serving.limits.BodyLimits`.
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("uvicorn.error")


class HeaderDeadlineH11Protocol(H11Protocol):
    """:class:`H11Protocol` that closes connections whose request headers take over ``header_timeout`` s."""

    #: set on a subclass made by :func:`with_header_timeout` (uvicorn builds protocols with fixed arguments)
    header_timeout: float = 10.0

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_headers()

    def handle_events(self) -> None:
        super().handle_events()
        self._watch_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _watch_headers(self) -> None:
        """Armed while the client owes a request's headers (h11: the client's side is IDLE), once per request."""
        if self.conn.their_state is h11.IDLE:
            if self._header_deadline is None and not self.transport.is_closing():
                self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)
        else:
            self._disarm()

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            prefix = f"{self.client[0]}:{self.client[1]} - " if self.client else ""
            log.info("%sclosed: no complete request headers within %g s", prefix, self.header_timeout)
            self.transport.close()


def with_header_timeout(seconds: float) -> type[HeaderDeadlineH11Protocol]:
    """The protocol class to give ``uvicorn.run(http=...)`` for this deadline."""
    return type("HeaderDeadlineH11Protocol", (HeaderDeadlineH11Protocol,), {"header_timeout": seconds})
