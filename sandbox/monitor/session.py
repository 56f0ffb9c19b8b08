"""The engine under every detached supervisor: the container monitor and the exec holder are both made of it.

A supervisor is a process that outlives the sbx command that started it, owns another process's pty master (or
its pipes), and serves attach clients on a unix socket. :func:`spawn` makes one; :class:`Supervisor` is its loop::

    sbx                               middle child                  supervisor (grandchild)
    ---                               ------------                  -----------------------
    socketpair, fork ─────────────►   setsid, fork ───────────────► detached.detach(): SIGINT/SIGHUP ignored,
    waitpid(middle)             ◄───  exit 0                        stdio → /dev/null, inherited fds pointed at
                                                                    /dev/null, subreaper; then main(report_fd)
    [expect LISTENING           ◄───────────────────────────────── LISTENING   (a held start only)
     on_listening(): connect ──────────────────────────────────►   (the monitor starts the container
                                                                    meanwhile) accept the first client before
                                                                    any output is read]
    expect RUNNING              ◄───────────────────────────────── RUNNING {pid: PID, monitor: SUPERVISOR_PID}
                                ◄───────────────────────────────── or ERROR {class, message, hint, exit_code}

The report socket is a :class:`sandbox.runtime.sync.Channel` (its messages and error encoding are those of every
other exchange). The double fork re-parents the supervisor (to init or the nearest subreaper), so it outlives sbx;
``setsid`` takes it out of the user's session and terminal, so a closing terminal's SIGHUP never reaches it. RUNNING
is sent once the supervised command has been exec'ed: the launcher's sync socket is close-on-exec, so the supervisor
reads EOF there, or an ERROR from a failed exec (which is how a missing command still reaches sbx as exit code 127).

The loop is :class:`sandbox.monitor.pump.Pump`, the one the detached monitor's steady state runs too: single-threaded,
never blocking on a client, every output read goes to the ``record`` sink (the monitor's log; none for an exec) and
to every client, input from any client goes to the pty master (or a stdin pipe), a client's RESIZE sets the pty's
size, DETACH or a closed connection drops that client and nothing else. What is the supervisor's own is around it:
the report to sbx (RUNNING at the sync socket's EOF, which the pump watches for it), the sink, the wait, and the end:
when the process has ended every client gets EXIT with its code and the socket is removed (the frames:
:mod:`sandbox.monitor.attach`).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from sandbox.errors import ContainerStartError, SbxError, SyncError
from sandbox.exitcodes import CANNOT_RUN
from sandbox.monitor.pump import Pump
from sandbox.runtime.sync import Channel, Kind, as_start_error, start_failure
from sandbox.valueclass import valueclass

SPAWN_TIMEOUT = 120.0
HOLD_TIMEOUT = 30.0  # how long a held start waits for its first client
_LISTEN_TRIES = 3
_FAILURE_WAIT = 2.0  # how long a client that could not connect waits for the failure that removed the socket


@valueclass
class Names:
    """How errors name the supervisor and what it supervises ("the container monitor", "the container")."""

    supervisor: str
    supervised: str


def spawn(
    main: Callable[[int], None],
    names: Names,
    *,
    timeout: float = SPAWN_TIMEOUT,
    on_listening: Callable[[], None] | None = None,
) -> dict:
    """Run ``main(report_fd)`` in a detached grandchild; ``{"pid", "monitor"}`` once the supervised process runs.

    ``main`` reports on ``report_fd``, a sync socket (:class:`Supervisor` does), and must not return into the
    caller's code (the grandchild ``_exit``s after it). LISTENING calls ``on_listening()`` (a foreground attach
    connects there) and RUNNING is the answer. Raises the :class:`ContainerStartError` the supervisor reported (with
    its exit code), or one with 125 when it died without a word, sent nonsense, or did not answer within ``timeout``.
    """
    channel = start(main, names)
    try:
        return read_answer(channel, timeout, names, on_listening)
    finally:
        channel.close()


def start(main: Callable[[int], None], names: Names) -> Channel:
    """:func:`spawn`'s first half (:func:`sandbox.monitor.detached.fork`): the detached grandchild runs
    ``main(report_fd)``; the caller gets its end of the report channel, and reads the answer when it chooses
    (:func:`read_answer`)."""
    from sandbox.monitor.detached import fork

    report_fd, _reaped = fork(main, f"sbx ({names.supervisor})")
    return Channel.of_fd(report_fd, names.supervisor, rebuild=start_failure)


def read_answer(channel: Channel, timeout: float, names: Names,
                on_listening: Callable[[], None] | None = None) -> dict:
    """``{"pid", "monitor"}`` of the supervisor's RUNNING (after LISTENING and ``on_listening()`` when given)."""
    closed = f"{names.supervisor} exited before {names.supervised} started"
    if on_listening is not None:
        message = channel.expect((Kind.LISTENING, Kind.RUNNING), timeout, closed=closed)
        if message["type"] == Kind.LISTENING:
            try:
                on_listening()
            except SbxError as unreachable:
                # the supervisor starts while sbx connects: a start that failed meanwhile took its socket along,
                # and its error is the one to tell (raised by expect); without one, the connection's failure is
                with contextlib.suppress(SyncError):
                    channel.expect(Kind.RUNNING, min(timeout, _FAILURE_WAIT), closed=closed)
                raise unreachable from None
            message = channel.expect(Kind.RUNNING, timeout, closed=closed)
    else:
        message = channel.expect(Kind.RUNNING, timeout, closed=closed)
    answer = {key: message.get(key) for key in ("pid", "monitor")}
    if not all(type(value) is int and value > 0 for value in answer.values()):
        raise SyncError(f"{names.supervisor} sent a malformed message", reason="malformed")
    return answer


class Supervisor(Pump):
    """Owns one started process's pty master (or pipes), serves its attach socket, tells sbx how the start went.

    A subclass starts the process (``launcher.start`` or ``enter.start``), sets :attr:`master_fd` and
    :attr:`input_fd`, and calls :meth:`_supervise` with its outputs, then :meth:`_conclude`. The loop in between
    is the :class:`~sandbox.monitor.pump.Pump` it is (its clients, listener and fds are the supervisor's own: the
    end sends them EXIT, the detached monitor's hand-off passes them on).
    """

    def __init__(self, report_fd: int | None, *, socket_path: Path | None = None, hold: bool = False) -> None:
        super().__init__()
        # None: sbx heard already (the detached monitor's finish, after its steady state)
        self.report: Channel | None = Channel.of_fd(report_fd, "sbx") if report_fd is not None else None
        self.socket_path = socket_path
        self.hold = hold

    # -- the report to sbx ----------------------------------------------------------------------------------------

    def _report(self, kind: Kind, **fields) -> None:
        """The last word to sbx: RUNNING or ERROR (once)."""
        if self.report is None:
            return
        report, self.report = self.report, None
        try:
            if kind == Kind.ERROR:
                report.send_error(fields["error"])
            else:
                with contextlib.suppress(OSError):  # sbx is gone (interrupted)
                    report.send(kind, **fields)
        finally:
            report.close()

    def _running(self, pid: int) -> None:
        """The process was exec'ed: RUNNING to sbx (once)."""
        self._report(Kind.RUNNING, pid=pid, monitor=os.getpid())

    # -- the start ------------------------------------------------------------------------------------------------

    def _listen(self) -> None:
        """Serve the attach socket (if any); for a held start, tell sbx it is there (LISTENING), which connects and
        is accepted by :meth:`_first_client`.

        Neighbours share the socket's directory (the container's attach.sock, exec sessions' sockets) and each one
        leaving removes the directory once it is empty: a bind that finds the directory gone just made is retried.
        """
        from sandbox.monitor import attach

        if self.socket_path is None:
            return
        for attempt in range(_LISTEN_TRIES):
            try:
                self.listener = attach.listen(self.socket_path)
                break
            except FileNotFoundError:
                if attempt == _LISTEN_TRIES - 1:
                    raise
        if self.hold:
            assert self.report is not None
            self.report.send(Kind.LISTENING)

    def _first_client(self) -> bool:
        """A held start's first client, accepted (waiting for it, bounded) before any output is read, so it misses
        none; False when it did not come within :data:`HOLD_TIMEOUT`. True when nothing is held."""
        if not self.hold or self.listener is None:
            return True
        if select.select([self.listener], [], [], HOLD_TIMEOUT)[0]:
            self._accept()
        return bool(self.clients)

    def _supervise(self, started, sources: dict[int, str], sink=contextlib.nullcontext):
        """Pump until the outputs end, then wait: ``(error, exit code)``, error None when it ran.

        ``sink()`` is a context manager giving the object whose ``write(stream, data)`` records every output (or
        None). If recording fails nobody would drain the outputs, so the process is killed and waited for.
        """
        from sandbox.runtime import launcher

        self.target = started.container_pid
        signal.signal(signal.SIGTERM, self._forward)
        error: ContainerStartError | None = None
        code = CANNOT_RUN
        try:
            with sink() as record:
                self._pump(started, sources, record)
            code = launcher.wait(started)
        except ContainerStartError as failure:
            error = failure
        except BaseException as failure:
            error = as_start_error(failure)
            with contextlib.suppress(ProcessLookupError):
                os.kill(started.container_pid, signal.SIGKILL)
            with contextlib.suppress(BaseException):
                code = launcher.wait(started)
        if error is None and self.report is not None:
            self._running(started.container_pid)  # exec'ed and gone before the sync socket was looked at
        return error, code

    def _settled(self, started, outputs: dict[int, str]) -> None:
        """The process runs and sbx has heard so: a subclass may hand the rest of the loop over (the detached
        monitor execs its lean steady state here, :mod:`sandbox.monitor.steady`); by default the loop goes on."""

    # -- the loop -------------------------------------------------------------------------------------------------

    def _pump(self, started, sources: dict[int, str], record) -> None:
        """Pump the process's outputs to ``record`` and to attached clients until they all end (and the clients'
        input to the process); say RUNNING once the command is exec'ed: the sync socket turns readable."""
        sync = started.channel.sock.fileno()
        self.outputs = dict(sources)
        self.log = record
        self.watch[sync] = lambda: self._exec_seen(started)
        try:
            self.pump()
        finally:
            self.watch.pop(sync, None)

    def _exec_seen(self, started) -> None:
        """The sync socket turned readable: EOF (exec'ed: RUNNING, then the hand-off hook) or the child's error
        (left for the wait to tell)."""
        if not _error_pending(started):
            self._running(started.container_pid)
            self._settled(started, self.outputs)

    # -- the end --------------------------------------------------------------------------------------------------

    def _close_attach(self, code: int | None) -> None:
        """EXIT to every client, then no socket any more."""
        from sandbox.monitor import attach

        frame = attach.encode_json(attach.EXIT, {"code": code})
        for fd in list(self.clients):
            client = self.clients.pop(fd)
            client.finish(frame)
        if self.listener is not None:
            with contextlib.suppress(OSError):
                self.listener.close()
            self.listener = None
        if self.socket_path is not None:
            attach.remove_socket(self.socket_path)

    def _conclude(self, error: ContainerStartError | None, code: int | None) -> None:
        """EXIT to the clients, the error to sbx if it still waits (before RUNNING), and the orphans reaped."""
        if error is not None:
            code = error.exit_code
        with contextlib.suppress(Exception):
            self._close_attach(code)
        if error is not None:
            self._report(Kind.ERROR, error=error)
        # orphans handed to us as the subreaper: collect them before leaving
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass


def _error_pending(started) -> bool:
    """After the sync socket turned readable: did the child report an error (True) or exec (EOF, False)?"""
    if started.channel.buffer:
        return True
    try:
        return bool(started.channel.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return True  # spurious wake-up: not exec'ed yet; wait() will tell
    except OSError:
        return False
