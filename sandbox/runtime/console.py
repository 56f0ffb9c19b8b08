"""Terminal plumbing (layer L3): raw mode, window sizes, the pty copy loop and signal forwarding; the detach keys
it watches for are :mod:`sandbox.runtime.detachkeys`' (a completed sequence ends :func:`proxy` with ``"detached"``).

Nothing here prints: the caller decides what to tell the user. Everything that touches signals must run in the main
thread (a :mod:`signal` rule).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import selectors
import signal
import struct
import termios
import tty
from collections.abc import Callable, Iterator, Sequence

from sandbox.runtime.detachkeys import DetachMatcher

_CHUNK = 65536  # bytes read at once
_BUFFER_LIMIT = 256 * 1024  # stop reading a side while this much waits to be written to the other
_GONE = (errno.EIO, errno.EPIPE, errno.ECONNRESET, errno.ENXIO)  # the other end of a terminal or pipe went away

Attributes = list  # what termios.tcgetattr returns

DEFAULT_FORWARDED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


def read_some(fd: int, gone: Sequence[int] = _GONE) -> bytes | None:
    """Up to 64 KiB from a non-blocking ``fd``: None when it has nothing now; ``b""`` at its end, or when it fails
    with one of the ``gone`` errnos (the other end of the terminal, pipe or socket went away)."""
    try:
        return os.read(fd, _CHUNK)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError as exc:
        if exc.errno not in gone:
            raise
        return b""


# --- terminal modes and sizes -----------------------------------------------------------------------------------------


def saved_attributes(fd: int) -> Attributes | None:
    """The terminal attributes of ``fd`` to hand to :func:`restore` later; ``None`` when ``fd`` is not a terminal."""
    try:
        return termios.tcgetattr(fd)
    except (termios.error, OSError):
        return None


def restore(fd: int, attrs: Attributes | None) -> bool:
    """Put back attributes from :func:`saved_attributes`; never raises (safe in signal handlers and atexit).

    Returns whether the attributes were applied. Uses TCSANOW: waiting for output to drain could hang forever on a
    terminal nobody reads.
    """
    if attrs is None:
        return False
    try:
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
    except (termios.error, OSError):
        return False
    return True


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[Attributes | None]:
    """Put the terminal ``fd`` in raw mode for the block, restoring its attributes on the way out, exceptions too.

    Yields the saved attributes (for :func:`restore` from a signal handler or atexit). On a descriptor that is not
    a terminal this does nothing and yields ``None``.
    """
    attrs = saved_attributes(fd)
    if attrs is None:
        yield None
        return
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield attrs
    finally:
        restore(fd, attrs)


def get_window_size(fd: int) -> tuple[int, int] | None:
    """``(rows, cols)`` of the terminal ``fd``; ``None`` when it is not a terminal or its size is unknown (0x0)."""
    try:
        packed = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return None
    rows, cols, _, _ = struct.unpack("HHHH", packed)
    if rows == 0 and cols == 0:
        return None
    return rows, cols


def set_window_size(fd: int, rows: int, cols: int) -> None:
    """Set the size of the terminal ``fd`` (TIOCSWINSZ; the foreground process group gets SIGWINCH)."""
    if not (0 <= rows <= 0xFFFF and 0 <= cols <= 0xFFFF):
        raise ValueError(f"window size out of range: {rows}x{cols}")
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def copy_window_size(source_fd: int, target_fd: int) -> bool:
    """Give ``target_fd`` the size of ``source_fd``; returns whether a size was copied. Never raises."""
    size = get_window_size(source_fd)
    if size is None:
        return False
    try:
        set_window_size(target_fd, *size)
    except OSError:
        return False
    return True


# --- a pty of the container's own devpts ------------------------------------------------------------------------------


def open_pty(devpts: str = "/dev/pts", size: tuple[int, int] | None = None) -> tuple[int, int]:
    """A new pty of the devpts instance mounted at ``devpts``: ``(master, slave)``, both close-on-exec, neither made
    anyone's controlling terminal (the caller does that with TIOCSCTTY).

    Why not ``os.openpty()`` in sbx: a pty belongs to the devpts instance whose ptmx opened it, and its slave's name,
    ``/dev/pts/N``, exists only where that instance is mounted. A container mounts a devpts of its own
    (``newinstance``) at /dev/pts, so a pty of the host's instance is nameless inside: ``tty`` says "not a tty",
    ttyname() fails, /proc/self/fd/0 points at a /dev/pts/N that is missing there, or is another terminal
    altogether. So the pty is made by a process that already sees the container's mounts (its pid 1 before exec, or
    the process `sbx exec` starts), from the container's own ``/dev/pts/ptmx``, and only the master is handed out,
    over the sync socket with SCM_RIGHTS (runc's --console-socket does the same).

    The master is opened with O_NOFOLLOW and O_NONBLOCK (a fifo planted by a process in the container must not hang
    us) and must answer TIOCGPTN, which only a pty master does. TIOCSPTLCK 0 is unlockpt(); grantpt() has nothing to
    do on devpts, which gives the slave the opener's uid and the mount's ``gid=`` and ``mode=``. The slave is opened
    through the master (TIOCGPTPEER), so no path lookup can be swapped under us; before Linux 4.13 it is opened as
    ``devpts/N`` and checked to be the master's peer by its device number.

    ``size`` (rows, columns) is set before anyone reads it: the first program of a terminal often asks for its size
    once, as it starts, before the attached client's first resize could arrive (Docker's ConsoleSize).
    """
    from sandbox.kernel import constants as k

    flags = os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC
    master = os.open(os.path.join(devpts, "ptmx"), flags | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        number = struct.unpack("I", fcntl.ioctl(master, k.TIOCGPTN, bytes(4)))[0]  # ENOTTY: not a pty master
        fcntl.ioctl(master, k.TIOCSPTLCK, struct.pack("i", 0))
        os.set_blocking(master, True)
        try:
            slave = fcntl.ioctl(master, k.TIOCGPTPEER, flags)
        except OSError as error:
            if error.errno not in (errno.EINVAL, errno.ENOTTY):
                raise
            slave = _open_slave(devpts, number, flags)
        if size is not None:
            set_window_size(slave, *size)
    except BaseException:
        os.close(master)
        raise
    return master, slave


_PTY_SLAVE_MAJORS = range(136, 144)  # UNIX98_PTY_SLAVE_MAJOR and the 7 after it


def _open_slave(devpts: str, number: int, flags: int) -> int:
    import stat

    slave = os.open(os.path.join(devpts, str(number)), flags | os.O_NOFOLLOW | os.O_NONBLOCK)
    info = os.fstat(slave)
    if not (stat.S_ISCHR(info.st_mode) and os.major(info.st_rdev) in _PTY_SLAVE_MAJORS
            and os.minor(info.st_rdev) == number):
        os.close(slave)
        raise OSError(errno.ENOTTY, f"{devpts}/{number} is not the slave of pty {number}")
    os.set_blocking(slave, True)
    return slave


# --- signals ----------------------------------------------------------------------------------------------------------


def forward_signals(pid: int, signals: Sequence[int] = DEFAULT_FORWARDED_SIGNALS) -> Callable[[], None]:
    """Send each of ``signals`` this process receives on to ``pid``; returns a function restoring the old handlers.

    A ``pid`` that has gone away is ignored. The restore function may be called more than once.
    """

    def handler(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    return _install(signals, handler)


def resize_on_sigwinch(source_fd: int, target_fd: int) -> Callable[[], None]:
    """Copy the window size of ``source_fd`` to ``target_fd`` now and on every SIGWINCH; returns a restore function.

    A Python handler already installed for SIGWINCH is still called after the copy.
    """
    previous = signal.getsignal(signal.SIGWINCH)

    def handler(signum: int, frame: object) -> None:
        copy_window_size(source_fd, target_fd)
        if callable(previous):
            previous(signum, frame)

    restore_handlers = _install((signal.SIGWINCH,), handler)
    copy_window_size(source_fd, target_fd)
    return restore_handlers


def _install(signals: Sequence[int], handler: Callable[[int, object], None]) -> Callable[[], None]:
    previous: dict[int, object] = {}
    try:
        for signum in signals:
            old = signal.signal(signum, handler)
            previous[signum] = signal.SIG_DFL if old is None else old
    except BaseException:
        for signum, old in previous.items():
            signal.signal(signum, old)
        raise

    def restore_handlers() -> None:
        while previous:
            signum, old = previous.popitem()
            signal.signal(signum, old)

    return restore_handlers


# --- the copy loop ----------------------------------------------------------------------------------------------------


def proxy(
    master_fd: int,
    stdin_fd: int | None,
    stdout_fd: int,
    *,
    detach_keys: bytes = b"\x10\x11",
    stop: Callable[[], bool] | None = None,
) -> str:
    """Copy ``stdin_fd`` to the pty master and the master to ``stdout_fd`` until one of the ends.

    Returns ``"exited"`` when the master reaches EOF or EIO (the container's side closed; all its output has been
    written out), ``"detached"`` when the detach sequence is typed (the bytes before it are forwarded, the sequence
    is not) or when ``stdout_fd`` goes away (EPIPE/EIO: the client is gone), or ``"stopped"`` when ``stop()`` returns
    true (checked at least every 0.1 s). At EOF on ``stdin_fd`` (or ``None``) only the output keeps being copied.

    The master is made non-blocking for the duration (its flags are restored); ``stdin_fd`` and ``stdout_fd`` are
    left as they are, since they may be shared with other processes: they are only read or written when ready.
    Descriptors that cannot be polled (regular files, /dev/null) are treated as always ready.
    """
    loop = _Proxy(master_fd, stdin_fd, stdout_fd, DetachMatcher(detach_keys), stop)
    flags = fcntl.fcntl(master_fd, fcntl.F_GETFL)
    fcntl.fcntl(master_fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    try:
        return loop.run()
    finally:
        loop.close()
        with contextlib.suppress(OSError):
            fcntl.fcntl(master_fd, fcntl.F_SETFL, flags)


class _Proxy:
    def __init__(
        self,
        master_fd: int,
        stdin_fd: int | None,
        stdout_fd: int,
        matcher: DetachMatcher,
        stop: Callable[[], bool] | None,
    ) -> None:
        self.master = master_fd
        self.stdin = stdin_fd
        self.stdout = stdout_fd
        self.matcher = matcher
        self.stop = stop
        self.to_master = bytearray()
        self.to_stdout = bytearray()
        self.selector = selectors.DefaultSelector()
        self.registered: dict[int, int] = {}
        self.unpollable: set[int] = set()

    def close(self) -> None:
        self.selector.close()

    def run(self) -> str:
        while True:
            if self.stop is not None and self.stop():
                return "stopped"
            wanted = self._wanted()
            ready = self._wait(wanted)
            for fd, events in ready.items():
                if events & selectors.EVENT_WRITE:
                    result = self._write_ready(fd)
                    if result:
                        return result
                if events & selectors.EVENT_READ:
                    result = self._read_ready(fd)
                    if result:
                        return result

    # -- readiness ----------------------------------------------------------------------------------------------------

    def _wanted(self) -> dict[int, int]:
        wanted: dict[int, int] = {}

        def want(fd: int, event: int) -> None:
            wanted[fd] = wanted.get(fd, 0) | event

        if len(self.to_stdout) < _BUFFER_LIMIT:
            want(self.master, selectors.EVENT_READ)
        if self.to_master:
            want(self.master, selectors.EVENT_WRITE)
        if self.stdin is not None and len(self.to_master) < _BUFFER_LIMIT:
            want(self.stdin, selectors.EVENT_READ)
        if self.to_stdout:
            want(self.stdout, selectors.EVENT_WRITE)
        return wanted

    def _wait(self, wanted: dict[int, int]) -> dict[int, int]:
        for fd in list(self.registered):
            if fd not in wanted:
                self.selector.unregister(fd)
                del self.registered[fd]
        always: dict[int, int] = {}
        for fd, events in wanted.items():
            if fd in self.unpollable:
                always[fd] = events
                continue
            current = self.registered.get(fd)
            try:
                if current is None:
                    self.selector.register(fd, events)
                elif current != events:
                    self.selector.modify(fd, events)
            except PermissionError:  # epoll refuses regular files and the like: they are always ready
                if current is not None:
                    with contextlib.suppress(KeyError, OSError):
                        self.selector.unregister(fd)
                    self.registered.pop(fd, None)
                self.unpollable.add(fd)
                always[fd] = events
                continue
            self.registered[fd] = events
        timeout = 0 if always else (0.1 if self.stop is not None else None)
        ready = dict(always)
        if self.registered:
            for key, events in self.selector.select(timeout):
                ready[key.fd] = ready.get(key.fd, 0) | (events & self.registered.get(key.fd, 0))
        return ready

    # -- reading ------------------------------------------------------------------------------------------------------

    def _read_ready(self, fd: int) -> str | None:
        if fd == self.master:
            result = self._read_master()
            if result:
                return result
        if fd == self.stdin and self.stdin is not None:
            return self._read_stdin()
        return None

    def _read_master(self) -> str | None:
        data = read_some(self.master, (errno.EIO,))
        if data is None:
            return None
        if not data:  # the container's side closed: everything it wrote has been read
            self._drain_stdout()
            return "exited"
        self.to_stdout += data
        if self.stdout in self.unpollable:
            return self._write_stdout()
        return None

    def _read_stdin(self) -> str | None:
        assert self.stdin is not None
        data = read_some(self.stdin)
        if data is None:
            return None
        if not data:  # end of input: stop forwarding it, keep copying the output
            self.to_master += self.matcher.flush()
            self.stdin = None
            return None
        passed, detached = self.matcher.feed(data)
        self.to_master += passed
        if detached:
            self._flush_master_now()
            self._drain_stdout()
            return "detached"
        return None

    # -- writing ------------------------------------------------------------------------------------------------------

    def _write_ready(self, fd: int) -> str | None:
        if fd == self.master and self.to_master:
            self._write_master()
        if fd == self.stdout and self.to_stdout:
            return self._write_stdout()
        return None

    def _write_master(self) -> None:
        try:
            written = os.write(self.master, self.to_master)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno not in _GONE:
                raise
            self.to_master.clear()  # the container's side is gone; reading the master will say so
            return
        del self.to_master[:written]

    def _flush_master_now(self) -> None:
        """Best effort, without waiting: what was typed before the detach sequence."""
        while self.to_master:
            before = len(self.to_master)
            self._write_master()
            if len(self.to_master) == before:
                break

    def _write_stdout(self) -> str | None:
        try:
            if self.stdout in self.unpollable:
                _write_all(self.stdout, self.to_stdout)
                self.to_stdout.clear()
                return None
            written = os.write(self.stdout, self.to_stdout[:_CHUNK])
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            if exc.errno not in _GONE:
                raise
            self.to_stdout.clear()
            return "detached"  # the client went away; the container keeps running
        del self.to_stdout[:written]
        return None

    def _drain_stdout(self) -> None:
        if not self.to_stdout:
            return
        try:
            _write_all(self.stdout, self.to_stdout)
        except OSError as exc:
            if exc.errno not in _GONE:
                raise
        self.to_stdout.clear()


def _write_all(fd: int, data: bytes | bytearray) -> None:
    """Write everything, waiting for readiness if ``fd`` happens to be non-blocking."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except InterruptedError:
            continue
        except BlockingIOError:
            with selectors.DefaultSelector() as selector:
                try:
                    selector.register(fd, selectors.EVENT_WRITE)
                except PermissionError:
                    continue
                selector.select(1.0)
            continue
        view = view[written:]
