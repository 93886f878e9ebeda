"""A loopback HTTP proxy in front of an S3 server that sees each request whole.

Where s3proxy.FaultProxy works on bytes, this one reads every request (method,
path, headers, body) before it forwards it, so a test can act on one S3
operation:

- ``hold(match)``: requests for which ``match(request)`` is true wait until
  ``release()``; ``held`` lists those waiting (the test waits for one to arrive);
- ``answer(match, status, code)``: answer such requests with an S3 error of our
  own instead of forwarding them (a store that answers NotImplemented to
  conditional writes, or 409 ConditionalRequestConflict as AWS does when two
  conditional writes race), ``times`` times at most;
- ``ignore_version_ids()``: forward GETs without their ``versionId``, as a server
  that reports versioning but ignores the version asked for;
- ``rewrite(match, change)``: forward such requests, and answer with
  ``change(body)`` instead of the server's body (a store, or a hostile one, that
  writes its pages otherwise);
- ``strip(match, header)``: forward such requests without that header, as a store
  that ignores it would (the session's SeaweedFS checks no signatures);
- ``reply(match, make)``: answer such requests with 200 and ``make(request)`` as
  the body, without forwarding them (a store whose listing pages depend on the
  request, e.g. continuation tokens that go round in a circle);
- ``seen`` records every request (method, path, headers).

It forwards to the upstream server with the same Host header, so signatures stay
valid, and runs its threads as daemons of the test process.
"""
import http.client
import http.server
import threading
import urllib.parse
from dataclasses import dataclass, field


@dataclass
class Request:
    method: str
    path: str  # as sent, with its query
    headers: dict  # names in lower case
    body: bytes = b""

    @property
    def key(self) -> str:
        """The object key of a path-style request (/bucket/key)."""
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        return path.lstrip("/").partition("/")[2]

    @property
    def query(self) -> dict:
        return urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query, keep_blank_values=True)

    @property
    def conditional(self) -> bool:
        return "if-match" in self.headers or "if-none-match" in self.headers or b"<ETag>" in self.body


@dataclass
class _Rule:
    match: object
    status: int
    code: str
    times: int | None
    used: int = 0


@dataclass
class _Hold:
    match: object
    event: threading.Event = field(default_factory=threading.Event)


class StandIn:
    """Forward 127.0.0.1:port to 127.0.0.1:upstream_port, one whole request at a time."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.seen: list[Request] = []
        self.held: list[Request] = []
        self._rules: list[_Rule] = []
        self._holds: list[_Hold] = []
        self._drop_version_ids = False
        self._rewrites: list[tuple] = []
        self._strips: list[tuple] = []
        self._replies: list[tuple] = []
        self._lock = threading.Lock()
        standin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _any(self):
                standin._serve(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hold(self, match) -> None:
        with self._lock:
            self._holds.append(_Hold(match))

    def release(self) -> None:
        with self._lock:
            holds, self._holds = self._holds, []
        for held in holds:
            held.event.set()

    def answer(self, match, status: int, code: str, times: int | None = None) -> None:
        with self._lock:
            self._rules.append(_Rule(match, status, code, times))

    def rewrite(self, match, change) -> None:
        with self._lock:
            self._rewrites.append((match, change))

    def strip(self, match, header: str) -> None:
        with self._lock:
            self._strips.append((match, header.lower()))

    def reply(self, match, make) -> None:
        with self._lock:
            self._replies.append((match, make))

    def ignore_version_ids(self) -> None:
        self._drop_version_ids = True

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release()
        self.server.shutdown()
        self.server.server_close()

    # serving --------------------------------------------------------------

    def _serve(self, handler) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        body = self._read_body(handler, headers)
        request = Request(handler.command, handler.path, headers, body)
        with self._lock:
            self.seen.append(request)
            hold = next((h for h in self._holds if h.match(request)), None)
            rule = next((r for r in self._rules if (r.times is None or r.used < r.times) and r.match(request)), None)
            if rule is not None:
                rule.used += 1
            make = next((m for match, m in self._replies if match(request)), None)
        if hold is not None:
            with self._lock:
                self.held.append(request)
            hold.event.wait(120)
        if rule is not None:
            self._error(handler, rule.status, rule.code)
            return
        if make is not None:
            self._send(handler, 200, make(request))
            return
        self._forward(handler, request)

    @staticmethod
    def _read_body(handler, headers) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size_line = handler.rfile.readline()
                chunks.append(size_line)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers, then the blank line
                        line = handler.rfile.readline()
                        chunks.append(line)
                        if line in (b"\r\n", b"\n", b""):
                            break
                    return b"".join(chunks)
                chunks.append(handler.rfile.read(size + 2))
        length = int(headers.get("content-length") or 0)
        return handler.rfile.read(length) if length else b""

    def _forward(self, handler, request: Request) -> None:
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        path = request.path
        if self._drop_version_ids and request.method == "GET" and "versionId" in request.query:
            parts = urllib.parse.urlsplit(path)
            query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
                     if k != "versionId"]
            path = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
        try:
            upstream.putrequest(request.method, path, skip_host=True, skip_accept_encoding=True)
            with self._lock:
                dropped = {header for match, header in self._strips if match(request)}
            for name, value in handler.headers.items():
                if name.lower() not in ("connection", "keep-alive", "proxy-connection", *dropped):
                    upstream.putheader(name, value)
            upstream.endheaders(request.body)
            answer = upstream.getresponse()
            payload = answer.read()
            with self._lock:
                change = next((c for m, c in self._rewrites if m(request)), None)
            if change is not None:
                payload = change(payload)
            handler.send_response_only(answer.status, answer.reason)
            head = request.method == "HEAD"  # its Content-Length is the object's size
            for name, value in answer.getheaders():
                if name.lower() not in ("connection", "keep-alive", "transfer-encoding") and (
                        head or name.lower() != "content-length"):
                    handler.send_header(name, value)
            if not head:
                handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            if request.method != "HEAD":
                handler.wfile.write(payload)
        finally:
            upstream.close()

    @classmethod
    def _error(cls, handler, status: int, code: str) -> None:
        payload = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                   f"<Message>answered by the test's stand-in</Message></Error>").encode()
        cls._send(handler, status, payload)

    @staticmethod
    def _send(handler, status: int, payload: bytes) -> None:
        handler.send_response_only(status)
        handler.send_header("Content-Type", "application/xml")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(payload)
