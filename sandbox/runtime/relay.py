"""Pipes between sbx's stdio and a command without -t, so the user's terminal never reaches the container.

Were sbx's own fds the command's 0, 1 and 2, a process the command leaves behind in the container would keep the
user's terminal: it could read what the user types into their shell long after sbx returned (TESTPLAN 58). So the
command gets three pipes (stdin /dev/null without -i), and sbx copies between them and its own stdio::

    sbx's stdin  ──►  [buffer]  ──►  pipe  ──►  command's fd 0        (-i only; EOF closes the pipe)
    sbx's stdout ◄──────────────────  pipe  ◄──  command's fd 1
    sbx's stderr ◄──────────────────  pipe  ◄──  command's fd 2

The copy ends when the command's process has exited (a pidfd turns readable) and what it wrote has been read:
output of a process it left behind is not waited for, and that process's stdin is closed when sbx leaves.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors

_CHUNK = 64 * 1024
_INPUT_LIMIT = 256 * 1024  # input waiting for the command: sbx's stdin is not read beyond this


class Relay:
    """The three pipes of one command: :meth:`child_stdio` for the command, then :meth:`run` in sbx."""

    def __init__(self, interactive: bool) -> None:
        self.stdin_w: int | None = None
        if interactive:
            self.child_in, self.stdin_w = os.pipe2(os.O_CLOEXEC)
            os.set_blocking(self.stdin_w, False)
        else:
            self.child_in = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        self.out_r, self.child_out = os.pipe2(os.O_CLOEXEC)
        self.err_r, self.child_err = os.pipe2(os.O_CLOEXEC)
        self._child_open = True

    def child_stdio(self) -> tuple[int, int, int]:
        return self.child_in, self.child_out, self.child_err

    def parent_ends(self) -> tuple[int, ...]:
        """sbx's ends: a forked child must close them (the stdin pipe's write end above all)."""
        return tuple(fd for fd in (self.stdin_w, self.out_r, self.err_r) if fd is not None)

    def close_child_ends(self) -> None:
        """After the command's process was forked: the pipes then end when the command's side closes them."""
        if self._child_open:
            for fd in self.child_stdio():
                os.close(fd)
            self._child_open = False

    def close(self) -> None:
        self.close_child_ends()
        for fd in (self.stdin_w, self.out_r, self.err_r):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.stdin_w = self.out_r = self.err_r = None  # type: ignore[assignment]

    def run(self, pid: int, stdin_fd: int = 0, stdout_fd: int = 1, stderr_fd: int = 2) -> None:
        """Copy until process ``pid`` (a child of ours: the joiner, which exits with the command) has exited and
        its output is read. Closes the pipes."""
        self.close_child_ends()
        exited = os.pidfd_open(pid)
        outputs = {self.out_r: stdout_fd, self.err_r: stderr_fd}
        pending = bytearray()
        stdin_open = self.stdin_w is not None
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(exited, selectors.EVENT_READ)
                for fd in outputs:
                    selector.register(fd, selectors.EVENT_READ)
                if stdin_open:
                    selector.register(stdin_fd, selectors.EVENT_READ)
                done = False
                while outputs and not done:
                    for key, _ in selector.select():
                        fd = key.fd
                        if fd == exited:
                            done = True
                        elif fd in outputs:
                            if not _copy_output(fd, outputs[fd]):
                                selector.unregister(fd)
                                del outputs[fd]
                        elif fd == stdin_fd:
                            data = _read(stdin_fd)
                            if not data:
                                selector.unregister(stdin_fd)
                                stdin_open = False
                            pending += data
                        elif fd == self.stdin_w:
                            pass  # writable again: handled below
                    if self.stdin_w is not None:
                        stdin_open = self._feed(selector, pending, stdin_fd, stdin_open)
                for fd in list(outputs):  # the command has exited: what it wrote is in the pipes now
                    _drain(fd, outputs[fd])
        finally:
            os.close(exited)
            self.close()

    def _feed(self, selector, pending: bytearray, stdin_fd: int, stdin_open: bool) -> bool:
        """Write what input is waiting; close the command's stdin at sbx's EOF. Returns whether stdin is open."""
        assert self.stdin_w is not None
        if pending:
            try:
                del pending[: os.write(self.stdin_w, pending)]
            except BlockingIOError:
                pass
            except OSError as error:  # the command closed its stdin: input goes nowhere
                if error.errno != errno.EPIPE:
                    raise
                pending.clear()
        registered = self.stdin_w in selector.get_map()
        if pending and not registered:
            selector.register(self.stdin_w, selectors.EVENT_WRITE)
        elif not pending and registered:
            selector.unregister(self.stdin_w)
        reading = stdin_fd in selector.get_map()
        if stdin_open and len(pending) > _INPUT_LIMIT and reading:
            selector.unregister(stdin_fd)
        elif stdin_open and len(pending) <= _INPUT_LIMIT and not reading:
            selector.register(stdin_fd, selectors.EVENT_READ)
        if not stdin_open and not pending:
            if self.stdin_w in selector.get_map():
                selector.unregister(self.stdin_w)
            os.close(self.stdin_w)
            self.stdin_w = None
        return stdin_open


def _drain(source: int, target: int) -> None:
    """Copy what ``source`` holds now, and no more: a process left behind may go on writing forever."""
    import fcntl
    import struct
    import termios

    queued = struct.unpack("i", fcntl.ioctl(source, termios.FIONREAD, b"\0" * 4))[0]
    os.set_blocking(source, False)
    while queued > 0:
        try:
            data = os.read(source, min(queued, _CHUNK))
        except BlockingIOError:
            return
        if not data:
            return
        queued -= len(data)
        _write_all(target, data)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, _CHUNK)
    except OSError as error:
        if error.errno == errno.EIO:  # a terminal that hung up
            return b""
        raise


def _copy_output(source: int, target: int) -> bool:
    """One read from ``source`` written whole to ``target``; False at EOF."""
    try:
        data = os.read(source, _CHUNK)
    except BlockingIOError:
        return False
    if not data:
        return False
    _write_all(target, data)
    return True


def _write_all(target: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(target, view):]
        except BrokenPipeError:
            return  # sbx's reader went away: the output is dropped, and the command never blocks on it
        except BlockingIOError:
            import select

            select.select([], [target], [])
