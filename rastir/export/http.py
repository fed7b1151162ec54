"""HTTP push to the collector: a small HTTP/1.1 client over one kept-alive socket.

The exporter sends one kind of request, a POST with a body, and needs three things
from the answer: the status, ``Retry-After`` and whether the connection stays open.
``http.client`` did the job but cost about as much CPU per POST as encoding a
hundred spans: it validates every header with a regular expression on every request
and parses every response's headers with the ``email`` package (decision EXP-4).
Here the request head is built once, and the response head is split by hand.

No dependency, and no clash with whatever HTTP client version the application pins;
``ssl`` is imported only for an ``https://`` URL.
"""

from __future__ import annotations

import email.utils
import logging
import socket
import threading
import time
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import ssl

__all__ = ["HttpTransport", "PushResult", "parse_retry_after"]

_GZIP_MIN = 1024  # below this, compression costs more than it saves
_MAX_HEAD = 64 * 1024  # a response head larger than this is not a collector's
_MAX_BODY = 1 << 20  # a larger response body is not read: the connection is dropped
_ONE_PACKET = 64 * 1024  # bodies up to this go out in one send, with the head
# A host that did not resolve is not looked up again for this long: every send in
# between fails at once with the same error (retries back off far less than this).
_RESOLVE_RETRY = 5.0
# Addresses looked up are used for this long, or until connecting to them fails.
_RESOLVED_TTL = 60.0

_log = logging.getLogger("rastir.export")


class PushResult:
    """What one POST came to. ``status`` is 0 when no HTTP answer arrived.

    ``body`` is the answer's body when the transport was asked to read it
    (``read_body``) and the answer was a 2xx; otherwise empty.
    """

    __slots__ = ("body", "error", "retry_after", "status")

    def __init__(
        self, status: int, retry_after: float | None = None, error: str = "", body: bytes = b""
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        self.error = error
        self.body = body

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """Worth sending again to a rastir collector (decision D9).

        No answer (connection refused, reset, timeout), overload, or a server fault.
        Direct OTLP export uses the narrower OTLP/HTTP set instead (``batch.py``).
        """
        return self.status == 0 or self.status in (408, 429) or self.status >= 500

    def __repr__(self) -> str:
        return f"PushResult(status={self.status}, retry_after={self.retry_after}, {self.error!r})"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class _Closed(ConnectionError):
    """The server closed the connection before a complete answer."""


class _Unresolved(OSError):
    """The host name did not resolve, or not within the request's timeout."""


# family, type, proto, canonname, address: as getaddrinfo gives them, for connect().
_AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, Any]


class _Lookup:
    """One ``getaddrinfo`` in a daemon thread, waited for at most a request's timeout.

    ``getaddrinfo`` takes no timeout and cannot be interrupted: with a resolver that
    does not answer, glibc waits ``timeout`` (5 s) times ``attempts`` (2) per name
    server listed, in the calling thread. Run in the exporter's thread, a lookup
    held it past ``timeout``; here the exporter waits for the result at most that
    long, and a lookup still running is waited for again by the next request rather
    than started twice.
    """

    __slots__ = ("counted", "done", "error", "result")

    def __init__(self, host: str, port: int) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.result: list[_AddrInfo] = []
        self.counted = False  # a lookup that timed out is counted as failed once
        threading.Thread(
            target=self._run, args=(host, port), name="rastir-resolve", daemon=True
        ).start()

    def _run(self, host: str, port: int) -> None:
        try:
            self.result = list(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except BaseException as e:  # reported by the exporter's thread, never raised here
            self.error = e
        finally:
            self.done.set()


def _is_ip(host: str) -> bool:
    """Whether ``host`` is an address already (nothing to look up)."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return True
    return False


class _Answer:
    __slots__ = ("body", "keep_alive", "retry_after", "status")

    def __init__(
        self, status: int, retry_after: float | None, keep_alive: bool, body: bytes = b""
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        self.keep_alive = keep_alive
        self.body = body


class HttpTransport:
    """POSTs bodies to ``{push_url}{path}`` over one kept-alive connection.

    ``path`` is ``/v1/telemetry`` for a rastir collector; direct OTLP export passes
    the full endpoint as ``push_url``, an empty ``path`` and its own content type, and
    ``read_body`` to get a 2xx answer's body back (OTLP ``partial_success``); otherwise
    answer bodies are skipped unread. Used by the exporter's single thread only; not
    thread-safe.

    Raises:
        ValueError: ``push_url`` is not an http(s) URL, or a header or the path
            cannot be sent as HTTP/1.1 (not Latin-1, or a line break).
    """

    def __init__(
        self,
        push_url: str,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        gzip: bool = True,
        path: str = "/v1/telemetry",
        content_type: str = "application/json",
        read_body: bool = False,
    ) -> None:
        parts = urlsplit(push_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"push_url {push_url!r} must be an http:// or https:// URL")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        default_port = 443 if self._https else 80
        self._port = parts.port or default_port
        self._path = (parts.path.rstrip("/") + path) or "/"
        self._timeout = timeout
        self._gzip = gzip
        self._read_body = read_body
        fields = {"Content-Type": content_type, "User-Agent": "rastir-python"}
        if headers:
            fields.update(headers)
        if token:
            fields["Authorization"] = f"Bearer {token}"
        host = f"[{self._host}]" if ":" in self._host else self._host
        if self._port != default_port:
            host = f"{host}:{self._port}"
        head = f"POST {self._path} HTTP/1.1\r\nHost: {host}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in fields.items())
        if any(c in k + v for k, v in fields.items() for c in "\r\n") or " " in self._path:
            raise ValueError("HTTP headers and the URL path must not contain line breaks")
        try:
            self._head = head.encode("latin-1")
        except UnicodeEncodeError as e:
            raise ValueError(f"HTTP headers and the URL path must be Latin-1: {e}") from None
        self._ssl: ssl.SSLContext | None = None
        self._conn: socket.socket | None = None
        # Name resolution (_addresses): off the exporter's thread, remembered.
        self._literal = _is_ip(self._host)
        self._lookup: _Lookup | None = None
        self._addrs: list[_AddrInfo] = []
        self._addrs_until = 0.0
        self._failure = ""  # why the host did not resolve, while _failed_until lasts
        self._failed_until = 0.0
        self._warned = False  # the failure was logged; logged again only once it resolved
        #: Lookups of the host that failed or timed out (one per lookup, not per send).
        self.resolve_failures = 0
        self._buf = bytearray()  # bytes received and not yet parsed
        self._keep = False  # whether the answer being read keeps its body
        # When the answer being read must be complete: ``timeout`` bounds the whole
        # answer, not each read, so a server dribbling bytes cannot hold the exporter.
        self._deadline = 0.0

    # -- connection -----------------------------------------------------------------
    def _addresses(self, deadline: float) -> list[_AddrInfo]:
        """The host's addresses, looked up at most once per ``_RESOLVED_TTL``.

        Raises:
            _Unresolved: the lookup failed (now or within ``_RESOLVE_RETRY``) or did
                not finish by ``deadline``.
        """
        now = time.monotonic()
        if self._addrs and now < self._addrs_until:
            return self._addrs
        if now < self._failed_until:
            raise _Unresolved(self._failure)
        lookup = self._lookup
        if lookup is None:
            lookup = self._lookup = _Lookup(self._host, self._port)
        if not lookup.done.wait(max(0.0, deadline - now)):
            reason = f"cannot resolve {self._host!r}: no answer within {self._timeout:g} s"
            if not lookup.counted:
                lookup.counted = True
                self._resolve_failed(reason)
            raise _Unresolved(reason)
        self._lookup = None
        if lookup.error is not None:
            error = lookup.error
            detail = error.strerror if isinstance(error, OSError) and error.strerror else error
            self._failure = f"cannot resolve {self._host!r}: {detail}"
            self._failed_until = time.monotonic() + _RESOLVE_RETRY
            if not lookup.counted:
                self._resolve_failed(self._failure)
            raise _Unresolved(self._failure)
        if self._warned:
            self._warned = False
            _log.info("rastir exporter: %r resolves again", self._host)
        self._addrs = lookup.result
        self._addrs_until = time.monotonic() + _RESOLVED_TTL
        return self._addrs

    def _resolve_failed(self, reason: str) -> None:
        """Count a failed lookup; log the first of a run of them (a typo'd host logs
        one line, not one per batch or retry)."""
        self.resolve_failures += 1
        if not self._warned:
            self._warned = True
            _log.warning(
                "rastir exporter: %s (logged once until it resolves; sends are retried)", reason
            )

    def _open(self, deadline: float) -> socket.socket:
        """A connected socket, looked up and connected by ``deadline``."""
        if self._literal:
            return socket.create_connection(
                (self._host, self._port), timeout=max(0.001, deadline - time.monotonic())
            )
        error: OSError = _Unresolved(f"{self._host!r} has no address")
        for family, kind, proto, _, address in self._addresses(deadline):
            left = deadline - time.monotonic()
            if left <= 0:
                error = TimeoutError(f"no connection within {self._timeout:g} s")
                break
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(left)
                sock.connect(address)
            except OSError as e:
                sock.close()
                error = e
                continue
            return sock
        self._addrs = []  # look up again next time: the host may have moved
        raise error

    def _connection(self) -> socket.socket:
        sock = self._conn
        if sock is None:
            sock = self._open(time.monotonic() + self._timeout)
            try:
                sock.settimeout(self._timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._https:
                    if self._ssl is None:
                        import ssl

                        self._ssl = ssl.create_default_context()
                    sock = self._ssl.wrap_socket(sock, server_hostname=self._host)
            except BaseException:
                sock.close()
                raise
            self._conn = sock
            self._buf = bytearray()
        return sock

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self._buf = bytearray()
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def abandon(self) -> None:
        """Forget the connection without touching it (a forked child: it is the parent's)."""
        self._conn = None
        self._buf = bytearray()
        self._lookup = None  # its thread is the parent's: none runs in this process

    # -- one request ----------------------------------------------------------------
    def send(self, body: bytes) -> PushResult:
        """POST one body. Never raises: failures come back as a ``PushResult``."""
        encoding = b""
        if self._gzip and len(body) >= _GZIP_MIN:
            # wbits=31 writes a gzip container; level 1 is ~5x faster than 9 on JSON
            # and still shrinks span batches by ~85%.
            comp = zlib.compressobj(1, zlib.DEFLATED, 31)
            body = comp.compress(body) + comp.flush()
            encoding = b"Content-Encoding: gzip\r\n"
        head = b"%sContent-Length: %d\r\n%s\r\n" % (self._head, len(body), encoding)
        for attempt in (0, 1):
            reused = self._conn is not None
            try:
                sock = self._connection()
                if reused:
                    sock.settimeout(self._timeout)  # the last answer's reads shortened it
                self._deadline = time.monotonic() + self._timeout
            except _Unresolved as e:
                return PushResult(0, None, str(e))
            except Exception as e:
                return PushResult(0, None, f"{type(e).__name__}: {e}")
            try:
                try:
                    if len(body) <= _ONE_PACKET:
                        sock.sendall(head + body)
                    else:
                        sock.sendall(head)
                        sock.sendall(body)
                except (ConnectionResetError, BrokenPipeError):
                    # The server may have answered (a 413 before reading the body)
                    # and closed: its answer is what counts, if it arrived.
                    answer = self._read_answer(sock)
                    self.close()
                    return PushResult(answer.status, answer.retry_after)
                answer = self._read_answer(sock)
            except ConnectionError as e:  # reset, broken pipe, closed (_Closed)
                # A kept-alive connection the server closed while idle: reconnect once.
                self.close()
                if attempt or not reused:
                    return PushResult(0, None, f"{type(e).__name__}: {e}")
                continue
            except Exception as e:  # timeout, TLS failure, a malformed answer
                self.close()
                return PushResult(0, None, f"{type(e).__name__}: {e}")
            if not answer.keep_alive:
                self.close()
            return PushResult(answer.status, answer.retry_after, "", answer.body)
        return PushResult(0, None, "unreachable")  # pragma: no cover

    # -- the answer -----------------------------------------------------------------
    def _fill(self, sock: socket.socket) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no complete answer within {self._timeout:g} s")
        sock.settimeout(left)
        data = sock.recv(65536)
        if not data:
            raise _Closed("connection closed before a complete answer")
        self._buf += data

    def _line(self, sock: socket.socket) -> bytes:
        buf = self._buf
        end = buf.find(b"\r\n")
        while end < 0:
            if len(buf) > _MAX_HEAD:
                raise ValueError("answer line too long")
            self._fill(sock)
            end = buf.find(b"\r\n")
        line = bytes(buf[:end])
        del buf[: end + 2]
        return line

    def _take(self, sock: socket.socket, n: int) -> bytes:
        buf = self._buf
        while len(buf) < n:
            self._fill(sock)
        data = bytes(buf[:n]) if self._keep else b""
        del buf[:n]
        return data

    def _read_answer(self, sock: socket.socket) -> _Answer:
        buf = self._buf
        while True:
            end = buf.find(b"\r\n\r\n")
            while end < 0:
                if len(buf) > _MAX_HEAD:
                    raise ValueError("answer head too large")
                self._fill(sock)
                end = buf.find(b"\r\n\r\n")
            lines = bytes(buf[:end]).split(b"\r\n")
            del buf[: end + 4]
            version, _, rest = lines[0].partition(b" ")
            if not version.startswith(b"HTTP/1."):
                raise ValueError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
            status = int(rest[:3])
            if 100 <= status < 200:
                continue  # an interim answer (100 Continue): the real one follows
            break
        length: int | None = None
        chunked = False
        keep_alive = version == b"HTTP/1.1"
        retry_after = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                token = value.strip().lower()
                if token == b"close":
                    keep_alive = False
                elif token == b"keep-alive":
                    keep_alive = True
            elif name == b"retry-after":
                retry_after = parse_retry_after(value.decode("latin-1"))
        # Only a 2xx body is ever wanted (OTLP partial_success); others are skipped.
        self._keep = self._read_body and 200 <= status < 300
        body = b""
        if status in (204, 304):
            pass  # never a body
        elif chunked:
            body = self._read_chunked(sock)
        elif length is not None:
            if length > _MAX_BODY:
                keep_alive = False  # not worth reading: drop the connection instead
            else:
                body = self._take(sock, length)
        else:
            keep_alive = False  # the body runs to the end of the connection
        return _Answer(status, retry_after, keep_alive, body)

    def _read_chunked(self, sock: socket.socket) -> bytes:
        total = 0
        parts: list[bytes] = []
        while True:
            size = int(self._line(sock).split(b";", 1)[0], 16)
            if size == 0:
                while self._line(sock):  # trailer fields, then the empty line
                    pass
                return b"".join(parts)
            total += size
            if total > _MAX_BODY:
                raise ValueError("answer body too large")
            parts.append(self._take(sock, size + 2)[:size])
