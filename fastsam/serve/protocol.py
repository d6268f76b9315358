"""uvicorn's h11 protocol with a deadline on request heads, against slowloris.

uvicorn times out idle keep-alive connections, but its timer is cancelled by every byte received and is not
armed at all before a connection's first request, so a client that sends half a request (a byte now and then)
holds its connection (and a file descriptor) forever. Here each connection
must deliver a complete request head within ``header_timeout`` seconds of opening, or of the end of its
previous response; the clock is not reset by partial data. Heads are also bounded in size (h11's incomplete
event limit, 16 KiB by default). Bodies are the application's to time (see
:func:`fastsam.serve.upload.read_limited`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from fastsam.serve.settings import ServeSettings

logger = logging.getLogger("uvicorn.error")
_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                     b"connection: close\r\ncontent-length: 24\r\n\r\nrequest head too slow.\r\n")


class HeadTimeoutH11Protocol(H11Protocol):
    """H11Protocol that closes connections whose next request head is not complete within ``header_timeout``."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a new request's head arrived: the application has it now
            self._disarm_head_timer()

    def on_response_complete(self) -> None:
        # Armed before the parent looks at pipelined data, which may start the next cycle (and disarm it again).
        if not self.transport.is_closing():
            self._arm_head_timer()
        super().on_response_complete()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return
        partial = self.conn.their_state is not h11.IDLE or bool(self.conn.trailing_data[0])
        client = "%s:%d" % self.client if self.client else "a client"
        logger.info("%s - closed: no complete request head within %g s", client, self.header_timeout)
        if partial and self.conn.our_state is h11.IDLE:
            # Written raw: h11 cannot answer a request whose head it has not parsed.
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


def uvicorn_options(settings: ServeSettings) -> dict:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` that apply ``settings``' connection limits."""
    protocol = type("HeadTimeoutH11Protocol", (HeadTimeoutH11Protocol,), {"header_timeout": settings.header_timeout})
    return {"http": protocol, "timeout_keep_alive": min(5, settings.header_timeout), "server_header": False}
