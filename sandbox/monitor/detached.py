"""How a supervisor is forked away from sbx, and the monitor `sbx run` forks before its container exists.

Lean on purpose (os and sys at import): `sbx run` calls :func:`prepare` first thing, and the sooner it forks, the
more of the monitor's own imports run on the other CPU while sbx resolves the image and records and builds the
container (BENCHMARKS B1). What the supervisor is once forked is :mod:`sandbox.monitor.session`.

:func:`fork` is the double fork drawn in :mod:`sandbox.monitor.session`: a socketpair, a middle child that calls
``setsid`` and forks the supervisor, then exits (reaped here), so the supervisor is re-parented (to init or the
nearest subreaper) and outlives sbx, out of the user's session and terminal. The supervisor first lets go of
everything it inherited (:func:`detach`), blanks its command line, then runs ``main(report_fd)`` and ``_exit``\\ s.

A prepared monitor (:func:`prepare`)::

    sbx run                                       monitor (forked at once)
    -------                                       ------------------------
    prepare(): fork ────────────────────────────► detach; import the entry and the warm modules
    resolve the image, record, build              (meanwhile, on the other CPU)
    Prepared.start(): GO {params} ──────────────► entry(report_fd, params): the monitor of session.py's drawing
    read_answer: [LISTENING], RUNNING      ◄───── ...
    (or Prepared.close(): EOF) ─────────────────► exit 0, nothing done
"""

from __future__ import annotations

import os
import sys

MONITOR = "the container monitor"  # how errors and ps name it (monitor.NAMES)
TYPE_CHECKING = False  # not typing's: importing typing costs every start ~3 ms (BENCHMARKS B1)
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def fork(main: Callable[[int], None], title: str, *, reap: bool = True) -> tuple[int, int | None]:
    """Run ``main(report_fd)`` in a detached grandchild titled ``title``; ``(the caller's end of the report socket,
    the middle child's pid)``: None once reaped here, else the caller reaps it (``reap=False``: later, when the
    middle child's fork of the grandchild is long done, instead of waiting for it now)."""
    import _socket

    parent_end, child_end = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    parent_fd, child_fd = parent_end.detach(), child_end.detach()
    sys.stdout.flush()
    sys.stderr.flush()
    middle = os.fork()
    if middle == 0:  # the middle child: never returns into the caller's code
        code = 1
        try:
            os.close(parent_fd)
            os.setsid()
            if os.fork() == 0:
                _run(main, child_fd, title)  # exits
            code = 0
        finally:
            os._exit(code)
    os.close(child_fd)
    if not reap:
        return parent_fd, middle
    try:
        os.waitpid(middle, 0)
    except BaseException:
        os.close(parent_fd)
        raise
    return parent_fd, None


def _run(main: Callable[[int], None], report_fd: int, title: str) -> None:
    code = 1
    try:
        detach(report_fd)
        hide_command_line(title)
        main(report_fd)
        code = 0
    except BaseException:  # nowhere to report it: stdio is /dev/null
        code = 1
    finally:
        os._exit(code)


def detach(keep: int) -> None:
    """Ignore the terminal's signals, become a subreaper, stdio → /dev/null, let go of every inherited fd.

    Inherited fds are pointed at /dev/null rather than closed: a Python object of the forked sbx that owns one may
    still close it when collected, and must not close a pipe of ours that reused its number. The dup2 still lets
    go of what they referred to (a lock, a socket of the caller's, the user's terminal).
    """
    import _signal
    import contextlib

    from sandbox.kernel import Kernel
    from sandbox.kernel import constants as k

    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    _signal.signal(_signal.SIGHUP, _signal.SIG_IGN)
    _signal.signal(_signal.SIGTERM, _signal.SIG_DFL)  # until there is a process to forward it to
    os.chdir("/")
    null = os.open("/dev/null", os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(null, target)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in (keep, null):
            with contextlib.suppress(OSError):
                os.dup2(null, fd, inheritable=False)
    os.close(null)
    Kernel().prctl(k.PR_SET_CHILD_SUBREAPER, 1)


def hide_command_line(title: str) -> None:
    """The supervisor outlives sbx with sbx's argv (``-e SECRET=...``, the command): ps would show it to every
    local user (TESTPLAN 63), so it is blanked to a title before anything else runs."""
    from sandbox.kernel.cmdline import blank_command_line

    blank_command_line(title)


def prepare(entry: str, supervisor: str, warm: tuple[str, ...] = ()) -> Prepared:
    """Fork a detached monitor now, before its container exists: it imports ``entry``'s module and the ``warm``
    modules (in order, until GO comes), then waits for :meth:`Prepared.start`'s GO and calls
    ``entry(report_fd, params)``; EOF first (sbx failed, or :meth:`Prepared.close`) and it exits having done
    nothing. ``supervisor`` names it in errors and in its title (``sbx (SUPERVISOR)``)."""

    def main(report_fd: int) -> None:
        import select

        module, _, function = entry.partition(":")
        target = getattr(__import__(module, fromlist=[function]), function)
        waiting = select.poll()
        waiting.register(report_fd, select.POLLIN)
        for name in warm:  # in the order the monitor will need them; GO (or EOF) stops it: the rest import on use
            if waiting.poll(0):
                break
            __import__(name)
        import socket

        from sandbox.runtime.sync import Channel, Kind

        sock = socket.socket(fileno=report_fd)
        try:
            message = Channel(sock, "sbx").recv()  # None: sbx closed it, the container was never made
        finally:
            sock.detach()  # the fd stays the report socket for what follows
        if message is not None and message.get("type") == Kind.GO and isinstance(message.get("params"), dict):
            target(report_fd, message["params"])

    report_fd, middle = fork(main, f"sbx ({supervisor})", reap=False)
    return Prepared(report_fd, middle, supervisor)


class Prepared:
    """The sbx side of a monitor :func:`prepare` forked: :meth:`start` once the container is recorded and built,
    :meth:`close` when it will not be."""

    def __init__(self, report_fd: int, middle: int | None, supervisor: str) -> None:
        self.report_fd: int | None = report_fd
        self.supervisor = supervisor  # how errors name it
        self.middle = middle  # the double fork's middle child, reaped once sbx has something to wait for anyway

    def start(self, params: dict, container_id: str, *, runtime_root: Path | None = None,
              timeout: float | None = None, on_listening: Callable[[Path], None] | None = None,
              meanwhile: Callable[[], None] | None = None) -> int:
        """GO with ``params`` (roots and the container's id: the monitor reads the rest from the record), then
        ``meanwhile()`` while the monitor works; the monitor's pid once the container runs, with
        :func:`sandbox.monitor.monitor.spawn`'s errors."""
        import contextlib

        from sandbox.runtime.sync import Channel, Kind, start_failure

        if self.report_fd is None:
            raise ValueError("this prepared monitor was started or closed already")
        channel = Channel.of_fd(self.report_fd, self.supervisor, rebuild=start_failure)
        self.report_fd = None
        self._reap()
        hold = on_listening is not None and runtime_root is not None  # as monitor.announced has a callback
        try:
            with contextlib.suppress(OSError):  # the monitor is gone: read_answer says so
                channel.send(Kind.GO, params={**params, "hold": hold})
            if meanwhile is not None:
                meanwhile()
            # after GO: what reading the answer needs is imported while the monitor works
            from sandbox.monitor.monitor import NAMES, announced
            from sandbox.monitor.session import SPAWN_TIMEOUT, read_answer

            listening = announced(runtime_root, container_id, on_listening)
            return int(read_answer(channel, SPAWN_TIMEOUT if timeout is None else timeout, NAMES,
                                   listening)["monitor"])
        finally:
            channel.close()

    def close(self) -> None:
        """The monitor reads EOF and exits (a no-op once started or closed)."""
        if self.report_fd is not None:
            fd, self.report_fd = self.report_fd, None
            os.close(fd)
        self._reap()

    def _reap(self) -> None:
        if self.middle is not None:
            import contextlib

            middle, self.middle = self.middle, None
            with contextlib.suppress(ChildProcessError):
                os.waitpid(middle, 0)
