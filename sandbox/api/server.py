"""The HTTP server of `sbx system service`: the standard library's threading HTTP server on a unix socket.

Why this server: Docker's attach and exec hijack the connection (``Upgrade: tcp``, answered ``101 UPGRADED``,
then raw bytes both ways), which a request-per-thread server gives for free, whereas an ASGI server that knows only
websockets cannot; the API's load is one user's clients, so a thread per connection costs nothing that matters.

The socket is 0600 in a 0700 directory of this user, and every connection's peer uid (SO_PEERCRED) must be ours:
another local user may not drive our containers even if the permissions were loosened. No TCP listener exists.
The service exits once no connection has been open for ``idle`` seconds (0: never), as podman's does.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import socketserver
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from sandbox import __version__
from sandbox.api.errors import ApiError, message_of, status_of
from sandbox.errors import SbxError

API_VERSION = "1.44"
MIN_API_VERSION = "1.24"
_VERSIONED = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")
_BODY_LIMIT = 16 * 1024 * 1024


class ServiceError(SbxError):
    """The API socket cannot be served."""


def _version_tuple(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor)


class Request:
    """One API request as the routes see it: the method, the path without its version, the query, the body."""

    def __init__(self, handler: Handler, method: str, path: str, query: dict[str, str], version: str) -> None:
        self.handler = handler
        self.method = method
        self.path = path
        self.query = query
        self.version = version
        self.headers = handler.headers
        self._body: bytes | None = None

    def body(self) -> bytes:
        if self._body is None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > _BODY_LIMIT:
                raise ApiError(413, "request body too large")
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                self._body = self._read_chunked()
            else:
                self._body = self.handler.rfile.read(length) if length else b""
        return self._body

    def _read_chunked(self) -> bytes:
        data = bytearray()
        while True:
            size = int(self.handler.rfile.readline(64).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.handler.rfile.readline(64)
                return bytes(data)
            data += self.handler.rfile.read(size)
            self.handler.rfile.readline(64)
            if len(data) > _BODY_LIMIT:
                raise ApiError(413, "request body too large")

    def json(self) -> object:
        raw = self.body()
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, "the request body is not valid JSON") from None

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.query.get(name)
        if value is None:
            return default
        return value.lower() in ("1", "true", "yes")

    # -- answers ------------------------------------------------------------------------------------------------

    def send(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
        handler = self.handler
        handler.send_response(status)
        handler.common_headers()
        if status != 204 and status != 304:
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if body and self.method != "HEAD":
            handler.wfile.write(body)

    def send_json(self, status: int, value: object) -> None:
        self.send(status, json.dumps(value).encode() + b"\n")

    def stream(self, content_type: str = "application/json") -> Stream:
        """A 200 whose body follows piece by piece (chunked), for pulls, logs, events and waits."""
        handler = self.handler
        handler.send_response(200)
        handler.common_headers()
        handler.send_header("Content-Type", content_type)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        handler.wfile.flush()
        return Stream(handler)

    def hijack(self, content_type: str) -> socket.socket:
        """Take the connection over: ``101 UPGRADED`` when the client asked to upgrade (Docker answers a plain
        200 to an old client that did not), then it is a raw socket, closed with the request."""
        handler = self.handler
        upgrade = "upgrade" in handler.headers.get("Connection", "").lower()
        handler.log_request(101 if upgrade else 200)
        handler.send_response_only(101 if upgrade else 200, "UPGRADED" if upgrade else "OK")
        handler.send_header("Content-Type", content_type)
        if upgrade:
            handler.send_header("Connection", "Upgrade")
            handler.send_header("Upgrade", "tcp")
        handler.send_header("Api-Version", API_VERSION)
        handler.end_headers()
        handler.wfile.flush()
        handler.close_connection = True
        return handler.connection


class Stream:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.closed = False

    def write(self, data: bytes) -> None:
        if data:
            self.handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.handler.wfile.flush()

    def json(self, value: object) -> None:
        self.write(json.dumps(value).encode() + b"\n")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self.handler.wfile.write(b"0\r\n\r\n")
                self.handler.wfile.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"sbx/{__version__}"
    sys_version = ""
    server: Server

    def address_string(self) -> str:  # a unix peer has no address
        return "unix"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        if self.server.log is not None:
            self.server.log(format % args)

    def common_headers(self) -> None:
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Docker-Experimental", "false")
        self.send_header("Ostype", "linux")

    def do_GET(self) -> None:  # noqa: N802 - the base class's names
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path, version = parts.path, API_VERSION
        match = _VERSIONED.match(path)
        request = Request(self, method, path, {}, version)
        try:
            if match:
                version = f"{int(match.group(1))}.{int(match.group(2))}"
                path = match.group(3)
                if _version_tuple(version) > _version_tuple(API_VERSION):
                    raise ApiError(400, f"client version {version} is too new. Maximum supported API version is "
                                        f"{API_VERSION}")
                if _version_tuple(version) < _version_tuple(MIN_API_VERSION):
                    raise ApiError(400, f"client version {version} is too old. Minimum supported API version is "
                                        f"{MIN_API_VERSION}, please upgrade your client to a newer version")
            query = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
            request = Request(self, method, unquote(path), query, version)
            route, arguments = self.server.routes.find(method, request.path)
            route(request, *arguments)
        except ApiError as error:
            self._fail(request, error.status, error.message)
        except SbxError as error:
            self._fail(request, status_of(error), message_of(error))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as error:  # a bug: the client gets a 500 and the service lives on
            if self.server.log is not None:
                import traceback

                self.server.log(traceback.format_exc())
            self._fail(request, 500, f"internal error: {error}")
        if self.close_connection:
            return
        with contextlib.suppress(OSError):
            self.wfile.flush()

    def _fail(self, request: Request, status: int, message: str) -> None:
        if self.server.log is not None:
            self.server.log(f"{request.method} {request.path}: {status} {message}")
        if getattr(request, "answered", False) or self.close_connection and request.path.endswith(("/attach",
                                                                                                  "/start")):
            self.close_connection = True
            return
        with contextlib.suppress(OSError):
            request.send_json(status, {"message": message})


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = False

    def __init__(self, path: Path, routes, *, idle: float, log=None) -> None:
        self.routes = routes
        self.log = log
        self.idle = idle
        self.active = 0
        self.last_activity = time.monotonic()
        self.activity = threading.Lock()
        self.path = Path(path)
        super().__init__(str(path), Handler, bind_and_activate=False)

    def server_bind(self) -> None:
        old_umask = os.umask(0o177)  # born 0600: no window in which another user could connect
        try:
            super().server_bind()
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)

    def verify_request(self, request, client_address) -> bool:
        from sandbox.monitor.attach import peer_uid

        return peer_uid(request) == os.getuid()

    def process_request(self, request, client_address) -> None:
        with self.activity:
            self.active += 1
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.activity:
                self.active -= 1
                self.last_activity = time.monotonic()

    def idle_for(self) -> float:
        with self.activity:
            return 0.0 if self.active else time.monotonic() - self.last_activity


class Routes:
    """``(method, pattern, function)``; a pattern's groups are the function's arguments after the request."""

    def __init__(self) -> None:
        self.table: list[tuple[str, re.Pattern, object]] = []

    def add(self, method: str, pattern: str, function) -> None:
        self.table.append((method, re.compile(f"^{pattern}$"), function))

    def find(self, method: str, path: str):
        allowed = False
        for route_method, pattern, function in self.table:
            match = pattern.match(path)
            if match:
                if route_method == method or (method == "HEAD" and route_method == "GET"):
                    return function, match.groups()
                allowed = True
        if allowed:
            raise ApiError(405, f"method {method} is not allowed on {path}")
        raise ApiError(404, f"page not found: {method} {path} is not part of sbx's Docker API")


def parse_uri(uri: str | None, runtime_root: Path) -> Path:
    """``unix:///path`` (or ``unix:/path``, or a plain path) → the socket path; the default is
    ``runtime_root/docker.sock``. Anything but a unix socket is refused: a TCP API would be root over the network."""
    if not uri:
        return Path(runtime_root) / "docker.sock"
    if uri.startswith("unix://"):
        path = uri[len("unix://"):]
    elif uri.startswith("unix:"):
        path = uri[len("unix:"):]
    elif "://" in uri:
        raise ServiceError(f"unsupported address {uri!r}: sbx serves the API on a unix socket only",
                           hint="use unix:///path/to/docker.sock")
    else:
        path = uri
    if not path.startswith("/"):
        raise ServiceError(f"invalid socket address {uri!r}: the path must be absolute",
                           hint="use unix:///path/to/docker.sock")
    return Path(path)


def prepare_socket_dir(path: Path, runtime_root: Path) -> None:
    """The socket's directory: the runtime root is made 0700 and must be ours; any other directory must exist and
    be ours (so no one else can swap the socket), and a stale socket of an earlier service is removed."""
    directory = path.parent
    if directory == Path(runtime_root):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        info = directory.lstat()
    except FileNotFoundError:
        raise ServiceError(f"the directory of {path} does not exist", hint="create it (mode 0700) first") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise ServiceError(f"refusing socket directory {directory}: not a directory of this user")
    if info.st_mode & 0o022:
        raise ServiceError(f"refusing socket directory {directory}: others may write to it",
                           hint=f"chmod go-w {directory}")
    try:
        existing = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(existing.st_mode):
        raise ServiceError(f"{path} exists and is not a socket", hint="choose another path or remove it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()  # nobody listens: left by a service that was killed
        return
    finally:
        probe.close()
    raise ServiceError(f"another service already listens on {path}", hint="stop it, or give another address")


def inherited_socket(environ=os.environ) -> socket.socket | None:
    """The listening unix socket systemd passed (socket activation: LISTEN_PID is us, LISTEN_FDS ≥ 1, fd 3)."""
    if environ.get("LISTEN_PID") != str(os.getpid()) or int(environ.get("LISTEN_FDS") or 0) < 1:
        return None
    inherited = socket.socket(fileno=3)
    if inherited.family != socket.AF_UNIX or inherited.type != socket.SOCK_STREAM:
        inherited.detach()
        raise ServiceError("the socket systemd passed is not a unix stream socket", hint="use ListenStream=PATH")
    return inherited


def serve(path: Path | None, routes, *, idle: float, log=None, inherited: socket.socket | None = None) -> None:
    """Listen at ``path`` (or on the ``inherited`` socket) until ``idle`` seconds pass without an open connection
    (0: until killed)."""
    server = Server(path or Path(inherited.getsockname()), routes, idle=idle, log=log)
    try:
        if inherited is not None:
            server.socket.close()
            server.socket = inherited
        else:
            server.server_bind()
            server.server_activate()
        if idle > 0:
            threading.Thread(target=_watch_idle, args=(server,), daemon=True).start()
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if inherited is None:  # systemd's socket stays for the next start
            with contextlib.suppress(OSError):
                server.path.unlink()


def _watch_idle(server: Server) -> None:
    while True:
        left = server.idle - server.idle_for()
        if left <= 0:
            server.shutdown()
            return
        time.sleep(min(left, 0.5))
