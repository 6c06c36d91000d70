"""A loopback TCP proxy that a test can cut, to break one client's link.

Each worker of the campaign reaches each pulsed replica through a proxy of
its own, so cutting a worker's proxies severs that worker alone; the load
has its own pair too. ``cut()`` resets every open connection (the worker
sees its stream break) and, for ``refuse_seconds``, resets new ones at once
too: a partition that heals by itself. ``swallow_answers()`` lets requests
through but loses the answers; a cut after it leaves the server having done
the work and the client unable to know. The proxies share one asyncio
loop on one thread; ``close()`` stops them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

_CHUNK_BYTES = 64 * 1024
_CALL_TIMEOUT_SECONDS = 10.0
_PATIENCE_POLL_SECONDS = 0.05

_T = TypeVar("_T")


class TcpProxy:
    """Forwards ``addr`` (a free loopback port) to ``upstream``."""

    def __init__(self, loop: ProxyLoop, upstream: str, server: asyncio.Server) -> None:
        self._loop = loop
        self.upstream = upstream
        self._server = server
        port = server.sockets[0].getsockname()[1]
        self.addr = f"127.0.0.1:{port}"
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._refuse_until = 0.0
        self._patient_until = 0.0
        self._swallow_until = 0.0
        self.cuts = 0
        # Bytes passed on from clients, to tell which proxy a client uses.
        self.requests_bytes = 0

    def wait_for_upstream(self, seconds: float) -> None:
        """For the next ``seconds``, a client that arrives before the
        upstream listens is held until it does, instead of being reset: a
        worker started beside its replica connects as soon as the replica
        serves, without backing off. ``0`` ends the patience."""
        self._patient_until = time.monotonic() + seconds

    def cut(self, refuse_seconds: float = 0.0) -> int:
        """Reset every open connection, and new ones for ``refuse_seconds``;
        returns how many connections were cut."""
        return self._loop.call(self._cut(refuse_seconds))

    def swallow_answers(self, seconds: float) -> None:
        """For ``seconds``, pass requests on but drop every byte the
        upstream answers. Followed by ``cut()``, the calls in flight were
        carried out and their callers never hear so."""
        self._loop.call(self._swallow(seconds))

    async def _swallow(self, seconds: float) -> None:
        self._swallow_until = time.monotonic() + seconds

    def _count_request(self, size: int) -> None:
        self.requests_bytes += size

    def _swallowing(self) -> bool:
        return time.monotonic() < self._swallow_until

    async def _cut(self, refuse_seconds: float) -> int:
        self._refuse_until = time.monotonic() + refuse_seconds
        links = list(self._links)
        for client, upstream in links:
            _reset(client)
            _reset(upstream)
        self.cuts += 1
        return len(links)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._forward(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _forward(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if time.monotonic() < self._refuse_until:
            _reset(writer)
            return
        host, _, port = self.upstream.rpartition(":")
        while True:
            try:
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                break
            except OSError:
                if time.monotonic() >= self._patient_until:
                    # The replica is down: the worker sees the connection
                    # fail, as it would without the proxy.
                    _reset(writer)
                    return
                await asyncio.sleep(_PATIENCE_POLL_SECONDS)
        link = (writer, up_writer)
        self._links.add(link)
        try:
            await asyncio.gather(
                _pipe(reader, up_writer, counted=self._count_request),
                _pipe(up_reader, writer, dropping=self._swallowing),
            )
        finally:
            self._links.discard(link)
            _reset(writer)
            _reset(up_writer)

    async def _close(self) -> None:
        self._server.close()
        for client, upstream in list(self._links):
            _reset(client)
            _reset(upstream)
        await self._server.wait_closed()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=_CALL_TIMEOUT_SECONDS / 2)


class ProxyLoop:
    """The thread and event loop that every proxy of a test runs on."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fault-proxies", daemon=True
        )
        self._thread.start()
        self.proxies: list[TcpProxy] = []

    def open(self, upstream: str) -> TcpProxy:
        """A new proxy to ``upstream`` (``host:port``)."""
        return self.call(self._open(upstream))

    async def _open(self, upstream: str) -> TcpProxy:
        holder: list[TcpProxy] = []

        async def serve(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            await holder[0]._serve(reader, writer)

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        proxy = TcpProxy(self, upstream, server)
        holder.append(proxy)
        self.proxies.append(proxy)
        return proxy

    def call(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coroutine`` on the proxies' loop and return its result."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout=_CALL_TIMEOUT_SECONDS)

    def close(self) -> None:
        """Close every proxy and its connections, then stop the loop."""
        if not self._thread.is_alive():
            return
        for proxy in self.proxies:
            with contextlib.suppress(Exception):
                self.call(proxy._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    dropping: Callable[[], bool] = lambda: False,
    counted: Callable[[int], None] = lambda size: None,
) -> None:
    try:
        while data := await reader.read(_CHUNK_BYTES):
            counted(len(data))
            if dropping():
                continue
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        # One direction ending ends the link: gRPC never half-closes.
        _reset(writer)


def _reset(writer: asyncio.StreamWriter) -> None:
    # abort() drops buffered bytes and sends a reset, as a cut link would.
    writer.transport.abort()
