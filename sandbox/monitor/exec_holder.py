"""The exec holder: a detached process that owns the pty of one `sbx exec -t` command, so sbx can detach from it.

If sbx held the pty master itself, its leaving would close the master and the kernel would hang up the terminal:
SIGHUP to the command. The holder is a supervisor (:mod:`sandbox.monitor.session`) for one command instead of a
container; sbx is just its first attach client (:mod:`sandbox.monitor.attach`)::

    sbx (service)                  middle child           holder (grandchild)
    -------------                  ------------           -------------------
    socketpair, fork ───────────►  setsid, fork ───────►  detach; listen at runtime_root/<id16>/exec-<hex>.sock
    expect LISTENING       ◄──────────────────────────── LISTENING
    connect ────────────────────────────────────────────► accept the first client (nobody in 30 s: nothing runs)
    expect RUNNING                                        start(): joiner → the command on a new pty
                           ◄──────────────────────────── RUNNING {pid: COMMAND_PID, monitor: PID} once exec'ed,
                           ◄──────────────────────────── or ERROR {message, exit_code (1, 126, 127), ...}
    attach frames    ◄───────►                           pty master → every client (or dropped: nobody attached),
    (detach keys: sbx leaves,                            STDIN → master, RESIZE → TIOCSWINSZ, DETACH/close → drop
     the command runs on)                                the client; the command's end: EXIT {"code": N} to every
                                                         client, the socket removed, the joiner reaped, exit

Output is logged nowhere: an exec has no log (as with Docker). The socket sits beside the container's attach.sock,
0600 in the 0700 directory; its random name keeps concurrent execs apart and out of `sbx attach`'s way, and whoever
leaves last of the container's monitor and its holders removes the emptied directory.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

from sandbox.errors import ContainerNotRunning, ContainerStartError
from sandbox.monitor.session import SPAWN_TIMEOUT, Names, Supervisor
from sandbox.monitor.session import spawn as spawn_supervisor
from sandbox.runtime.sync import as_start_error
from sandbox.valueclass import valueclass

NAMES = Names("the exec session", "the command")
SOCKET_PREFIX = "exec-"


@valueclass
class ExecSession:
    """A running `exec -t` command: ``sock`` is connected to its holder (the caller closes it), ``pid`` is the
    command's host pid (for forwarded signals), ``holder_pid`` the holder's."""

    sock: socket.socket
    pid: int
    holder_pid: int


def socket_path(runtime_root: Path, container_id: str) -> Path:
    """A fresh ``runtime_root/<id16>/exec-<10 hex>.sock`` next to the container's attach.sock.

    40 random bits keep a container's concurrent execs apart, and the name only 9 bytes longer than attach.sock:
    a unix socket path must fit in 108 bytes.
    """
    from sandbox.monitor import attach

    directory = attach.socket_path(Path(runtime_root), container_id).parent
    return directory / f"{SOCKET_PREFIX}{os.urandom(5).hex()}.sock"


def spawn(runtime_root: Path, container_id: str, start: Callable[[], object], *,
          timeout: float = SPAWN_TIMEOUT) -> ExecSession:
    """Start a holder that runs ``start()`` (``enter.start`` of a tty request: a ``Started`` with a pty) once sbx
    is connected to it; returns when the command has been exec'ed.

    Raises :class:`ContainerStartError` with 126 or 127 when the command cannot be started, ContainerNotRunning
    (exit 1) when the container stopped under us, AttachError when the holder's socket cannot be reached.
    """
    from sandbox.monitor import attach

    path = socket_path(runtime_root, container_id)
    connection: dict[str, socket.socket] = {}

    def main(report_fd: int) -> None:
        Holder(start, report_fd, path).run()

    def connect() -> None:
        connection["sock"] = attach.connect(path)

    try:
        ok = spawn_supervisor(main, NAMES, timeout=timeout, on_listening=connect)
    except ContainerStartError as error:
        if "sock" in connection:
            connection["sock"].close()
        if error.exit_code == 1:  # the container stopped under us: a daemon-style error, not an exec failure
            raise ContainerNotRunning(error.message, hint=error.hint, exit_code=1) from None
        raise
    except BaseException:
        if "sock" in connection:
            connection["sock"].close()
        raise
    return ExecSession(connection["sock"], int(ok["pid"]), int(ok["monitor"]))


class Holder(Supervisor):
    """Holds one command's pty: started only once the first client is there, gone when the command has ended.

    ``start()`` must give a ``Started`` with a pty master (a tty request); the pipes of a command without a tty
    stay with sbx, which cannot detach from them anyway (Docker's detach keys need a tty).
    """

    def __init__(self, start: Callable[[], object], report_fd: int, path: Path) -> None:
        super().__init__(report_fd, socket_path=path, hold=True)
        self.start = start

    def run(self) -> None:
        try:
            self._listen()
            if not self._first_client():
                raise ContainerStartError("nobody attached to the exec session", hint="run the exec again")
            started = self.start()
        except BaseException as error:
            self._conclude(as_start_error(error), None)
            return
        self.master_fd = self.input_fd = started.master_fd
        error, code = self._supervise(started, {started.master_fd: "stdout"})
        self._conclude(error, code)
