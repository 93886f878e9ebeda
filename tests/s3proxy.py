"""A loopback TCP proxy in front of an S3 server, for faults a real network has.

Tests and the benchmark put it between `datakit` and SeaweedFS to make the
network behave in ways loopback never does, at a point the test chooses:

- ``delay``: every chunk waits this long each way (a round-trip time);
- ``hold()`` / ``hold_after(n)``: stop passing bytes either way (at once, or after
  n more bytes), so that a run stays in flight, even in the middle of a request or
  a download, for as long as the test needs; ``release()`` lets them through again;
- ``cut()``: reset every connection and stop listening, as a server that died
  (the port stays bound, so connections are refused and no other server takes it);
  ``cut_after(n)`` does so the moment n more bytes have passed, with no held
  moment in between; ``start()`` listens again on the same port;
- ``connections`` and ``peak`` count connections in all and open at once.

It runs an asyncio loop in a daemon thread of the test process, so it stops
with it.
"""
import asyncio
import socket
import struct
import threading
import time


class FaultProxy:
    """Forward 127.0.0.1:port to 127.0.0.1:upstream_port, with faults on demand."""

    def __init__(self, upstream_port: int, delay: float = 0.0):
        self.upstream_port = upstream_port
        self.delay = delay
        self.port = None
        self.connections = 0
        self.sent_up = 0  # bytes passed from clients to the server (what an upload costs)
        self.peak = 0
        self._open = 0
        self._budget = None  # bytes still allowed through; None: no limit
        self._server = None
        self._parked = None  # bound, not listening, while cut: connections are refused
        self._cut_when_spent = None  # cut_after(): what to run once the proxy has cut
        self._writers = set()
        self.loop = asyncio.new_event_loop()
        self._released = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._call(self._setup())

    async def _setup(self):
        self._released = asyncio.Event()
        self._released.set()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _call(self, coro, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> "FaultProxy":
        """Listen (again, on the same port after a cut)."""
        async def listen():
            if self._parked is not None:
                self._parked.close()
                self._parked = None
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self.port or 0))
            self._server = await asyncio.start_server(self._handle, sock=sock)
            self.port = sock.getsockname()[1]

        self._call(listen())
        return self

    def hold(self) -> None:
        """From now on, pass nothing more either way until release()."""
        self.hold_after(0)

    def hold_after(self, count: int) -> None:
        """Pass at most count more bytes (both ways together), then hold."""
        async def limit():
            self._budget = count
            if count <= 0:
                self._released.clear()

        self._call(limit())

    def cut_after(self, count: int, then=None) -> None:
        """Pass count more bytes (both ways together), then cut() at once and call then()
        (in the proxy's thread): a server that dies mid-transfer, with no moment where
        requests wait and might time out instead."""
        async def arm():
            self._cut_when_spent = then or (lambda: None)
            self._budget = count

        self._call(arm())

    @property
    def held(self) -> bool:
        """Is the proxy holding (its byte allowance used up)?"""
        return self._budget == 0

    def release(self) -> None:
        """Pass everything again."""
        async def free():
            self._budget = None
            self._released.set()

        self._call(free())

    def cut(self) -> None:
        """Stop listening and reset every open connection, as a dead server would."""
        async def kill():
            self._cut_now()

        self._call(kill())

    def _cut_now(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            # Keep the port: a bound socket that does not listen refuses connections,
            # and no server of another test can be given the port meanwhile.
            parked = socket.socket()
            parked.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                parked.bind(("127.0.0.1", self.port))
                self._parked = parked
            except OSError:
                parked.close()
        for writer in list(self._writers):
            sock = writer.get_extra_info("socket")
            try:
                # SO_LINGER 0: the peer sees a reset, not an orderly close.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except (AttributeError, OSError):
                pass  # already closed
            writer.transport.abort()
        self._writers.clear()

    def stop(self) -> None:
        """Cut everything, finish every task and end the proxy's thread."""
        self.cut()

        async def finish():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self._call(finish())
        if self._parked is not None:
            self._parked.close()
            self._parked = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def wait_for_connections(self, count: int, timeout: float = 30) -> None:
        """Return once at least count connections have been accepted."""
        deadline = time.monotonic() + timeout
        while self.connections < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the proxy saw {self.connections} connection(s), not {count}, in {timeout} s")
            time.sleep(0.02)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    async def _handle(self, reader, writer):
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            pass  # the proxy is stopping

    async def _serve(self, reader, writer):
        self.connections += 1
        self._open += 1
        self.peak = max(self.peak, self._open)
        self._writers.add(writer)
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            except OSError:
                writer.transport.abort()
                return
            self._writers.add(up_writer)
            try:
                await asyncio.gather(
                    self._pump(reader, up_writer, up=True),
                    self._pump(up_reader, writer),
                    return_exceptions=True,
                )
            finally:
                self._writers.discard(up_writer)
        finally:
            self._open -= 1
            self._writers.discard(writer)

    async def _allowed(self, wanted: int) -> int:
        """How many of wanted bytes may pass now (waits while held)."""
        while True:
            await self._released.wait()
            if self._budget is None:
                return wanted
            if self._budget > 0:
                allowed = min(wanted, self._budget)
                self._budget -= allowed
                if self._budget == 0 and self._cut_when_spent is not None:
                    then, self._cut_when_spent = self._cut_when_spent, None
                    self.loop.call_soon(self._cut_now)
                    self.loop.call_soon(then)
                return allowed
            self._released.clear()

    async def _pump(self, source, target, up: bool = False):
        queue: asyncio.Queue = asyncio.Queue()

        async def feed():
            while True:
                data = await source.read(256 * 1024)
                await queue.put((self.loop.time() + self.delay, data))
                if not data:
                    return

        async def send():
            while True:
                due, data = await queue.get()
                wait = due - self.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    target.close()
                    return
                while data:
                    count = await self._allowed(len(data))
                    target.write(data[:count])
                    if up:
                        self.sent_up += count
                    data = data[count:]
                    await target.drain()

        try:
            await asyncio.gather(feed(), send())
        finally:
            target.close()
