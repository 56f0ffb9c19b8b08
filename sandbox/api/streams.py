"""Docker's attach streams, and the bridges between a hijacked API connection and a monitor (or an exec).

Without a tty Docker multiplexes stdout and stderr on one connection, each piece behind an 8-byte header::

    +--------+-----------+-------------------------------+-------------------+
    | stream | 0 0 0     | length (4 bytes, big endian)  | payload           |
    +--------+-----------+-------------------------------+-------------------+
      1 = stdout, 2 = stderr

With a tty the connection carries the terminal's bytes as they are. Input comes raw in either case; the client
half-closes the connection (shutdown(SHUT_WR)) at the end of its input, which the bridge passes to the monitor as an
empty STDIN frame, so `echo hi | docker run -i IMG cat` ends.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import struct
import threading

from sandbox.monitor import attach as protocol

STDOUT, STDERR = 1, 2
_HEADER = struct.Struct(">BxxxI")
_CHUNK = 64 * 1024


def frame(stream: int, data: bytes) -> bytes:
    return _HEADER.pack(stream, len(data)) + data if data else b""


class Output:
    """Writes a container's output to an API connection: framed without a tty, raw with one; only the streams
    the client asked for."""

    def __init__(self, conn: socket.socket, *, tty: bool, stdout: bool = True, stderr: bool = True) -> None:
        self.conn = conn
        self.tty = tty
        self.wanted = {STDOUT: stdout, STDERR: stderr}
        self.gone = False

    def write(self, stream: int, data: bytes) -> None:
        if self.gone or not self.wanted[stream] or not data:
            return
        try:
            self.conn.sendall(data if self.tty else frame(stream, data))
        except OSError:
            self.gone = True  # the client left: the container runs on


def bridge(conn: socket.socket, monitor: socket.socket, output: Output, *, stdin: bool,
           lock: threading.Lock | None = None) -> int | None:
    """Copy between a hijacked connection and a monitor's attach socket until the container exits (its code) or
    either side goes away (None). ``lock`` guards writes to ``monitor`` shared with a resize."""
    lock = lock or threading.Lock()
    reader = protocol.FrameReader()
    with selectors.DefaultSelector() as selector:
        selector.register(monitor, selectors.EVENT_READ, "monitor")
        if stdin:
            selector.register(conn, selectors.EVENT_READ, "conn")
        while True:
            for key, _ in selector.select():
                if key.data == "conn":
                    data = _recv(conn)
                    with lock, contextlib.suppress(OSError):
                        monitor.sendall(protocol.encode_data(protocol.STDIN, data) if data
                                        else protocol.encode(protocol.STDIN))  # empty: the end of the input
                    if not data:
                        selector.unregister(conn)
                    continue
                data = _recv(monitor)
                if not data:
                    return None
                try:
                    frames = reader.feed(data)
                except protocol.AttachProtocolError:
                    return None
                for item in frames:
                    if item.type == protocol.STDOUT:
                        output.write(STDOUT, item.payload)
                    elif item.type == protocol.STDERR:
                        output.write(STDERR, item.payload)
                    elif item.type == protocol.EXIT:
                        return protocol.parse_exit(item)
                if output.gone:
                    return None


def pump_pipes(conn: socket.socket, output: Output, out_fd: int, err_fd: int, stdin_fd: int | None) -> None:
    """An exec without a tty: its stdout and stderr pipes to the connection, the connection to its stdin pipe,
    until both outputs end. Closes the three fds."""
    outputs = {out_fd: STDOUT, err_fd: STDERR}
    try:
        with selectors.DefaultSelector() as selector:
            for fd in outputs:
                selector.register(fd, selectors.EVENT_READ, "out")
            if stdin_fd is not None:
                selector.register(conn, selectors.EVENT_READ, "conn")
            while outputs:
                for key, _ in selector.select():
                    if key.data == "conn":
                        data = _recv(conn)
                        if data:
                            with contextlib.suppress(OSError):
                                os.write(stdin_fd, data)  # a blocking pipe: input waits for the command
                        if not data or stdin_fd is None:
                            selector.unregister(conn)
                            if stdin_fd is not None:
                                os.close(stdin_fd)
                                stdin_fd = None
                        continue
                    try:
                        data = os.read(key.fd, _CHUNK)
                    except OSError:
                        data = b""
                    if data:
                        output.write(outputs[key.fd], data)
                    else:
                        selector.unregister(key.fd)
                        os.close(key.fd)
                        del outputs[key.fd]
    finally:
        for fd in list(outputs) + ([stdin_fd] if stdin_fd is not None else []):
            with contextlib.suppress(OSError):
                os.close(fd)


def send_resize(sock: socket.socket, rows: int, cols: int, lock: threading.Lock | None = None) -> None:
    with lock or contextlib.nullcontext():
        sock.sendall(protocol.encode_json(protocol.RESIZE, {"rows": rows, "cols": cols}))


def resize_once(sock: socket.socket, rows: int, cols: int, timeout: float = 5.0) -> None:
    """Set a container's terminal size over a connection of its own, and return once the monitor has applied it:
    RESIZE then DETACH, and the monitor's close (after both frames) is the acknowledgement; the output it sends
    meanwhile is dropped."""
    sock.settimeout(timeout)
    sock.sendall(protocol.encode_json(protocol.RESIZE, {"rows": rows, "cols": cols}) + protocol.encode(protocol.DETACH))
    with contextlib.suppress(OSError):
        while sock.recv(_CHUNK):
            pass


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(_CHUNK)
    except OSError:
        return b""
