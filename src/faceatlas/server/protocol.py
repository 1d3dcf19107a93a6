"""uvicorn's h11 protocol with the guards it lacks: a deadline for request headers and a per-client connection cap.

uvicorn times out idle keep-alive connections only after a response, and any byte cancels that timer, so a client
that sends its headers one byte at a time (slowloris), or nothing at all, holds a connection forever. Here every
request head must be complete within ``header_timeout`` seconds of the connection opening (or of the previous
response), and one client address may hold at most ``max_client_connections`` connections (trusted proxies exempt).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .settings import ServerSettings

log = logging.getLogger("faceatlas.server")


@functools.lru_cache(maxsize=1)
def _settings() -> ServerSettings:
    """This worker's server settings (as ``faceatlas serve`` handed them over)."""
    return ServerSettings.from_env()


def _trusted(host: str, allowed: str | None) -> bool:
    """Whether ``host`` is one of the configured trusted proxies (``*`` trusts all)."""
    if not allowed:
        return False
    for item in (a.strip() for a in allowed.split(",")):
        if item == "*" or item == host:
            return True
        try:
            if "/" in item and ipaddress.ip_address(host) in ipaddress.ip_network(item, strict=False):
                return True
        except ValueError:
            continue
    return False


def _client_host(protocol: object) -> str | None:
    """The client address of a uvicorn connection (None when unknown)."""
    client = getattr(protocol, "client", None)
    return str(client[0]) if client else None


class GuardedH11Protocol(H11Protocol):
    """H11Protocol plus a request-head deadline and a cap on connections per client address."""

    header_timeout: float | None = None  # None: from the server settings
    max_client_connections: int | None = None
    trusted_proxies: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = _settings()
        cls = type(self)
        self._head_timeout = cls.header_timeout if cls.header_timeout is not None else settings.header_timeout
        self._per_client = (cls.max_client_connections if cls.max_client_connections is not None
                            else settings.max_client_connections)
        self._proxies = cls.trusted_proxies if cls.trusted_proxies is not None else settings.forwarded_allow_ips
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Accept the connection unless its address already holds too many; start the head deadline."""
        super().connection_made(transport)
        host = self.client[0] if self.client else None
        if host is not None and not _trusted(host, self._proxies):
            held = sum(1 for p in self.connections if _client_host(p) == host)
            if held > self._per_client:
                log.warning("refused a connection: this client already holds %d connections", held - 1)
                self.transport.close()
                return
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        """Feed h11; the head deadline ends once a request's headers are complete."""
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        """After a response the next request's head gets its own deadline."""
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the timer with the connection."""
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        """(Re)start the deadline for a complete request head."""
        self._cancel_head_timer()
        if self._head_timeout and self._head_timeout > 0:
            self._head_timer = self.loop.call_later(self._head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        """Stop the head deadline."""
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        """Close a connection whose request head did not arrive in time."""
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()
