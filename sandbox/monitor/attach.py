"""The attach socket: the frames `sbx attach` and a container's monitor exchange, and the client side.

The monitor serves a unix stream socket at ``<runtime root>/<container id>/attach.sock`` (the directory 0700, the
socket 0600, always a path, never the abstract namespace, so file permissions guard it; the monitor also refuses
a peer whose SO_PEERCRED uid is not its own). Many clients may attach at once. Every message is a frame::

    +--------+---------------------------+-------------------------+
    | type   | length (4 bytes, big end) | payload (length bytes)  |
    +--------+---------------------------+-------------------------+

    client (sbx attach)                                  monitor
    -------------------                                  -------
    connect ──────────────────────────────────────────►  accept (peer uid checked)
    RESIZE {"rows": R, "cols": C} ─────────────────────►  TIOCSWINSZ on the pty master (tty only): SIGWINCH inside
    STDIN bytes ───────────────────────────────────────►  to the pty master, or the container's stdin pipe (-i);
                                                         dropped when the container has no stdin
    STDIN (empty) ─────────────────────────────────────►  the end of the input (the API's half-closed attach):
                                                         the stdin pipe is closed once written (not a pty)
                                  ◄─────────────────────  STDOUT bytes / STDERR bytes (to every client and the log)
    DETACH (empty) ────────────────────────────────────►  closes this client; the container runs on
    (or just close: the same)
                                  ◄─────────────────────  EXIT {"code": N} to every client when the container
                                                         has exited, then the monitor closes and removes the socket

The detach keys are matched here, on the client side (:class:`~sandbox.runtime.detachkeys.DetachMatcher`), so the
monitor never holds typed bytes back. A payload over :data:`MAX_PAYLOAD` or an unknown type ends the connection
(:class:`AttachProtocolError`). The monitor never blocks on a client: a client whose unsent output passes
:data:`CLIENT_BUFFER_LIMIT` is disconnected (a stopped terminal must not stop the container or its log).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import selectors
import signal
import socket
import stat
import struct
from pathlib import Path

from sandbox.errors import SbxError
from sandbox.monitor import frames as _frames
from sandbox.monitor.frames import (  # the frame is defined once, there, for the lean loop too
    CLIENT_BUFFER_LIMIT,
    DETACH,
    EXIT,
    MAX_PAYLOAD,
    RESIZE,
    STDERR,
    STDIN,
    STDOUT,
)
from sandbox.valueclass import valueclass

SOCKET_NAME = "attach.sock"

_CHUNK = 64 * 1024
_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EIO)


class AttachError(SbxError):
    """The attach socket could not be reached or spoke nonsense."""


class AttachProtocolError(AttachError):
    pass


# -- frames -------------------------------------------------------------------------------------------------------


@valueclass
class Frame:
    type: int
    payload: bytes

    def json(self) -> dict:
        try:
            value = json.loads(self.payload)
        except ValueError:
            raise AttachProtocolError("malformed attach message") from None
        if not isinstance(value, dict):
            raise AttachProtocolError("malformed attach message")
        return value


def encode(frame_type: int, payload: bytes = b"") -> bytes:
    try:
        return _frames.encode(frame_type, payload)
    except ValueError as error:
        raise AttachProtocolError(str(error)) from None


def encode_json(frame_type: int, value: dict) -> bytes:
    return encode(frame_type, json.dumps(value).encode())


def encode_data(frame_type: int, data: bytes) -> bytes:
    """Data of any length, as as many frames as it takes."""
    return _frames.encode_data(frame_type, data)


class FrameReader:
    """Frames from a byte stream that arrives in pieces of any size."""

    def __init__(self, limit: int = MAX_PAYLOAD) -> None:
        self.limit = limit
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self.buffer += data
        try:
            return [Frame(frame_type, payload) for frame_type, payload in _frames.split(self.buffer, self.limit)]
        except ValueError as error:
            raise AttachProtocolError(str(error)) from None


def parse_resize(frame: Frame) -> tuple[int, int]:
    try:
        return _frames.parse_resize(frame.payload)
    except ValueError:
        raise AttachProtocolError("malformed resize message") from None


def parse_exit(frame: Frame) -> int | None:
    code = frame.json().get("code")
    return code if isinstance(code, int) else None


# -- the monitor's side -------------------------------------------------------------------------------------------


def socket_path(runtime_root: Path, container_id: str) -> Path:
    """``runtime_root/<first 16 hex of the id>/attach.sock``: a unix socket path must fit in 108 bytes, and a
    long $XDG_RUNTIME_DIR plus a 64-hex id would not (16 hex are 64 bits: no collision in practice)."""
    return Path(runtime_root) / container_id[:16] / SOCKET_NAME


def listen(path: Path) -> socket.socket:
    """Bind and listen at ``path`` (its directory made 0700, the runtime root too if new; the socket 0600)."""
    from sandbox.config import ensure_runtime_root

    directory = path.parent
    ensure_runtime_root(directory.parent)
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise AttachError(f"refusing attach directory {directory}: not a directory of this user")
    os.chmod(directory, 0o700)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left by an earlier run of the same container
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket is born 0600: no window where others could connect
    try:
        server.bind(str(path))
    except BaseException:
        server.close()
        raise
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    server.listen(64)
    server.setblocking(False)
    return server


def remove_socket(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
    with contextlib.suppress(OSError):
        path.parent.rmdir()


def peer_uid(sock: socket.socket) -> int | None:
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    return struct.unpack("3i", raw)[1]


# -- the client's side ----------------------------------------------------------------------------------------------


def connect(path: Path, uid: int | None = None) -> socket.socket:
    """Connect to a monitor's (or exec holder's) socket, and refuse it unless its peer is ``uid`` (default: ours):
    nothing, not even a resize, goes to a socket another local user serves (TESTPLAN 59)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError as error:
        sock.close()
        raise AttachError(f"cannot reach the container's attach socket {path}: {error.strerror}") from None
    expected = os.getuid() if uid is None else uid
    peer = peer_uid(sock)
    if peer != expected:
        sock.close()
        raise AttachError(
            f"refusing the attach socket {path}: it is served by uid {peer}, not {expected}",
            hint="another local user may have replaced it; check the runtime dir (sbx info)",
        )
    return sock


def attach(
    socket_path: Path,  # noqa: F811 - the parameter shadows the helper on purpose: the signature is the API
    *,
    stdin_fd: int | None,
    stdout_fd: int,
    stderr_fd: int,
    tty: bool,
    detach_keys: bytes,
    sock: socket.socket | None = None,
    end_input: bool = False,
) -> tuple[str, int | None]:
    """Copy between the container and these fds until it exits or the detach keys are typed; prints nothing.

    Returns ``("detached", None)`` or ``("exited", code)``; the code is ``None`` when the monitor went away
    without saying (the caller asks the record). With a tty and ``stdin_fd`` a terminal, the terminal is in raw
    mode for the duration. With a tty the user's terminal size (stdout's, else stdin's) is sent now and on every
    SIGWINCH, stdin attached or not (as Docker's client does whenever it allocated a tty and its stdout is a
    terminal): otherwise `run -t` without -i would leave the container's terminal 0x0. ``stdin_fd`` None attaches
    no input. ``end_input``: at the end of ``stdin_fd`` say so (an empty STDIN frame), and the monitor closes the
    container's stdin pipe (`run -i`, Docker's StdinOnce).
    """
    from sandbox.runtime import console
    from sandbox.runtime.detachkeys import DetachMatcher

    sock = sock or connect(socket_path)  # a foreground run connects before the container starts
    session = _Session(sock, stdin_fd, stdout_fd, stderr_fd, DetachMatcher(detach_keys), end_input)
    user_tty = tty and stdin_fd is not None and os.isatty(stdin_fd)
    size_fd = None
    if tty:
        size_fd = stdout_fd if console.get_window_size(stdout_fd) else stdin_fd if user_tty else None
    try:
        with console.raw_mode(stdin_fd) if user_tty else contextlib.nullcontext():
            stop_resize = session.watch_size(size_fd) if size_fd is not None else lambda: None
            try:
                return session.run()
            finally:
                stop_resize()
    finally:
        session.close()


class _Session:
    def __init__(self, sock: socket.socket, stdin_fd: int | None, stdout_fd: int, stderr_fd: int, matcher,
                 end_input: bool = False) -> None:
        self.sock = sock
        self.end_input = end_input  # at the end of stdin, say so (an empty STDIN frame): `run -i`'s stdin once
        self.stdin = stdin_fd
        self.outputs = {STDOUT: stdout_fd, STDERR: stderr_fd}
        self.matcher = matcher
        self.reader = FrameReader()
        self.outgoing = bytearray()
        self.wake_read: int | None = None
        self.wake_write: int | None = None
        self.size_fd: int | None = None
        self.selector = selectors.DefaultSelector()
        self.stdin_unpollable = False
        self.stdin_registered = False

    def close(self) -> None:
        self.selector.close()
        for fd in (self.wake_read, self.wake_write):
            if fd is not None:
                os.close(fd)
        self.sock.close()

    def watch_size(self, fd: int):
        """Send the size of ``fd`` now and after every SIGWINCH (the handler only wakes the loop)."""
        self.size_fd = fd
        self._queue_size()
        try:
            self.wake_read, self.wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return lambda: None
        wake = self.wake_write

        def handler(signum: int, frame: object) -> None:
            with contextlib.suppress(OSError):
                os.write(wake, b"w")

        try:
            previous = signal.signal(signal.SIGWINCH, handler)
        except ValueError:  # not the main thread: no resizes
            return lambda: None
        return lambda: signal.signal(signal.SIGWINCH, previous)

    def _queue_size(self) -> None:
        from sandbox.runtime import console

        size = console.get_window_size(self.size_fd) if self.size_fd is not None else None
        if size is not None:
            self.outgoing += encode_json(RESIZE, {"rows": size[0], "cols": size[1]})

    def run(self) -> tuple[str, int | None]:
        self.sock.setblocking(False)
        if self.wake_read is not None:
            self.selector.register(self.wake_read, selectors.EVENT_READ, "wake")
        self.selector.register(self.sock, selectors.EVENT_READ, "sock")
        while True:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.outgoing else 0)
            self.selector.modify(self.sock, events, "sock")
            want_stdin = self._want_stdin(self.stdin is not None and len(self.outgoing) < CLIENT_BUFFER_LIMIT)
            ready = [(key.data, mask) for key, mask in self.selector.select(0 if want_stdin and self.stdin_unpollable
                                                                              else None)]
            if want_stdin and self.stdin_unpollable:
                ready.append(("stdin", selectors.EVENT_READ))
            for what, mask in ready:
                if what == "wake":
                    with contextlib.suppress(OSError):
                        os.read(self.wake_read, 4096)
                    self._queue_size()
                elif what == "stdin" and self.stdin is not None:
                    if self._read_stdin():
                        return self._detach()
                elif what == "sock":
                    if mask & selectors.EVENT_READ:
                        result = self._receive()
                        if result is not None:
                            return result
                    if mask & selectors.EVENT_WRITE and not self._send():
                        # the other end has gone (a command that ended at once: its monitor said all and left
                        # before our first RESIZE went out): stop sending, and read what it said before going
                        self.outgoing.clear()

    def _want_stdin(self, wanted: bool) -> bool:
        """(Un)register stdin to match ``wanted``; a descriptor epoll refuses is polled by hand instead."""
        if self.stdin_unpollable:
            return wanted
        if wanted and not self.stdin_registered:
            try:
                self.selector.register(self.stdin, selectors.EVENT_READ, "stdin")
                self.stdin_registered = True
            except PermissionError:  # a regular file or /dev/null: epoll refuses it, and it is always readable
                self.stdin_unpollable = True
        elif not wanted and self.stdin_registered:
            self._unregister_stdin()
        return wanted

    def _unregister_stdin(self) -> None:
        if self.stdin_registered and self.stdin is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(self.stdin)
        self.stdin_registered = False

    def _read_stdin(self) -> bool:
        """Forward typed bytes; True when the detach sequence completed."""
        from sandbox.runtime.console import read_some

        assert self.stdin is not None
        data = read_some(self.stdin, _GONE)
        if data is None:
            return False
        if not data:  # end of input: stop reading it, keep copying the output
            self.outgoing += encode_data(STDIN, self.matcher.flush()) + (encode(STDIN) if self.end_input else b"")
            self._unregister_stdin()
            self.stdin = None
            return False
        passed, detached = self.matcher.feed(data)
        self.outgoing += encode_data(STDIN, passed)
        return detached

    def _detach(self) -> tuple[str, None]:
        self.outgoing += encode(DETACH)
        with contextlib.suppress(OSError):
            self.sock.settimeout(1.0)
            self.sock.sendall(self.outgoing)
        return "detached", None

    def _send(self) -> bool:
        try:
            sent = self.sock.send(self.outgoing, socket.MSG_NOSIGNAL)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError as error:
            if error.errno in _GONE:
                return False
            raise
        del self.outgoing[:sent]
        return True

    def _receive(self) -> tuple[str, int | None] | None:
        try:
            data = self.sock.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as error:
            if error.errno in _GONE:
                return "exited", None
            raise
        if not data:
            return "exited", None  # the monitor went away without saying how the container ended
        for frame in self.reader.feed(data):
            if frame.type in self.outputs:
                _write_all(self.outputs[frame.type], frame.payload)
            elif frame.type == EXIT:
                return "exited", parse_exit(frame)
        return None


def _write_all(fd: int, data: bytes) -> None:
    from sandbox.runtime import console

    try:
        console._write_all(fd, data)
    except OSError as error:
        if error.errno not in _GONE:
            raise
