"""The one protocol between sbx's processes: typed messages over a socket, one error encoding, the map-then-go step.

Every parent/child exchange of sbx goes through a :class:`Channel` (the model is runc's libcontainer/sync.go): one
JSON object per line over a stream socket, ``{"type": KIND, ...fields}``, with open fds riding on a message by
SCM_RIGHTS. The receiving side names the step it is at with :meth:`Channel.expect`, which returns the message of
the kind(s) it waits for and raises everything else as a typed error: a closed channel, another kind, a malformed
or oversized line, silence past the timeout (:class:`SyncError`), or the error the other side reported, rebuilt as
the same class with the same message, hint, fields and exit code (:func:`error_message`, :func:`rebuild_error`).

The sequences, every kind in one place (``──►`` parent to child, ``◄──`` child to parent)::

    run (runtime/launcher.py)
    parent (the monitor)              pid 1
    ────────────────────              ─────
    socketpair, clone(NEWUSER |
      NEWPID) ──────────────────►     (born pid 1 of its pid namespace; the parent has its host pid from clone)
    parent_handshake (born):          (its user namespace exists: clone made it)
      newuidmap/newgidmap start ◄──   READY                             (child_handshake)
      (or the own map in GO);         meanwhile: unshare NS UTS IPC [NET]
      cgroup place; helpers end
                                ──►   GO {own_maps}
                                      become root; unshare CGROUP
    network.setup(pid 1)        ◄──   NETNS (only when a helper runs)
                                ──►   NETWORK
                                      mounts, pivot_root, [-t: a pty of its own devpts]
                                ◄──   PTY + the master fd (SCM_RIGHTS)
    waitpid(pid 1) → its code         execve: close-on-exec ends the channel
                                ◄──   or ERROR {class, message, hint, exit_code}

    run --network container:ID: a forked stage 1 between them (a cloned child cannot join a sibling user namespace)
    parent (the monitor)              stage 1                           pid 1 (stage 2)
    socketpair, fork ───────────►     setns into ID's user + net ns
                                ◄──   READY; GO ──►; become root; unshare the rest with NEWPID
                                      fork ───────────────────────►     mounts, pivot_root, ...
                                ◄──   PID {pid}
                                ◄─────────────────────────────────      PTY, then execve or ERROR
    waitpid(stage 1)                  waitpid(pid 1) → its code

    exec (runtime/enter.py)
    parent (sbx or the exec holder)   joiner                            the command
                                      open /proc/PID fds, setns, chroot
                                      fork ───────────────────────►     waits for the joiner's go (a pipe)
                                ◄──   PID {pid}
                                      close the channel, go ──────►     [-t: PTY + the master fd]
                                ◄─────────────────────────────────      execve, or ERROR
                                ◄──   (or ERROR when joining failed)

    namespace jobs (runtime/userns.py ↔ runtime/nsjob.py)
    parent (run_job)                  python -m sandbox.runtime.nsjob
    socketpair, spawn ──────────►     unshare(USER [| NS])
    parent_handshake:           ◄──   READY (or ERROR)                  (child_handshake)
      newuidmap/newgidmap       ──►   GO {own_maps}
    job JSON on stdin           ──►   the op; stdout: one RESULT {result} or ERROR line

    supervisor report (monitor/session.py)
    sbx                               the detached monitor or exec holder
                                ◄──   LISTENING (a held start, then the first client connects)
                                ◄──   RUNNING {pid, monitor} or ERROR

Errors cross every boundary in this one encoding, both ways: :func:`error_message` turns an :class:`SbxError`
(or any exception, as a :class:`ContainerStartError`) into ERROR, :func:`rebuild_error` turns it back. Input is
hostile (a child runs in namespaces a container controls): lines are bounded, kinds must be known, an error may
only name a class of :mod:`sandbox.errors`, fields must be plain values, an exit code must fit in 0-255.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterable
from enum import StrEnum

from sandbox import errors
from sandbox.errors import ContainerStartError, SbxError, SyncError
from sandbox.exitcodes import CANNOT_RUN
from sandbox.valueclass import valueclass

TYPE_CHECKING = False  # not typing's: importing typing costs every start ~3 ms (BENCHMARKS B1)
if TYPE_CHECKING:
    from typing import Any

LINE_LIMIT = 1 << 16  # bytes of one message
_MAX_FDS = 4  # fds one receive takes; every message carries at most one
_TEXT_LIMIT = 4096  # characters of a rebuilt error's message or hint


class Kind(StrEnum):
    """Every message kind of every exchange (the sequences are drawn in the module's docstring)."""

    READY = "ready"  # the child made its user namespace: write its maps
    GO = "go"  # the maps are written (or the child writes its own: "own_maps")
    NETNS = "netns"  # pid 1 (or stage 1) made the network namespace: start the network helper
    NETWORK = "network"  # the helper runs
    PID = "pid"  # the host pid of the container's process (pid 1 forked by stage 1, or an exec'd command)
    PTY = "pty"  # the terminal's master rides on this message
    RESULT = "result"  # a namespace job's result
    LISTENING = "listening"  # a held supervisor serves its attach socket
    RUNNING = "running"  # the supervised process was exec'ed
    ERROR = "error"  # the sender failed: error_message's fields


class Channel:
    """One JSON object per line over a stream socket, fds by SCM_RIGHTS.

    ``peer`` names the other end in errors ("the container process"); ``rebuild`` makes the exception an ERROR
    message raises (:func:`rebuild_error`, or a caller's conversion of it). The sender's fds ride on the first byte
    of the message's line, so they arrive before the line is complete; the receiver collects every fd that arrives,
    in order (close-on-exec, ``MSG_CMSG_CLOEXEC``), and hands a message its own as ``message["fds"]``, which the
    caller then owns. Fds never claimed are closed by :meth:`close`.
    """

    def __init__(self, sock: socket.socket, peer: str = "the other process",
                 rebuild: Callable[[dict[str, Any]], BaseException] | None = None) -> None:
        self.sock = sock
        self.peer = peer
        self.rebuild = rebuild or rebuild_error
        self.buffer = b""
        self.fds: list[int] = []  # received, not yet handed out with their message

    @classmethod
    def of_fd(cls, fd: int, peer: str = "the other process", **options: Any) -> Channel:
        """A channel over an inherited socket fd, which it then owns."""
        return cls(socket.socket(fileno=fd), peer, **options)

    def send(self, kind: Kind, fds: Iterable[int] = (), **fields: Any) -> None:
        """Send one message; ``fds`` are duplicated into the receiver (the sender still owns and closes its own)."""
        fds = list(fds)
        message = {**fields, "type": Kind(kind).value}
        if fds:
            message["fds"] = len(fds)
        data = json.dumps(message).encode() + b"\n"
        if fds:
            sent = socket.send_fds(self.sock, [data], fds)
            data = data[sent:]
        if data:
            self.sock.sendall(data)

    def send_error(self, error: BaseException, exit_code: int = CANNOT_RUN) -> int:
        """Report ``error`` (best effort: the other end may be gone); returns the exit code to leave with."""
        message = error_message(error, exit_code)
        with contextlib.suppress(OSError):
            self.send(Kind.ERROR, **message)
        return message["exit_code"]

    def recv(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next message as it came; None when the other end closed first.

        ``TimeoutError`` after ``timeout`` seconds; ``ValueError`` for a line over :data:`LINE_LIMIT`, one that is
        not a JSON object, or one announcing fds that did not come.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buffer:
            if len(self.buffer) > LINE_LIMIT:
                raise ValueError("sync message too long")
            # one deadline for the whole line: a sender trickling bytes cannot stretch it
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            chunk, fds = self._receive()
            self.fds += fds
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        if len(line) > LINE_LIMIT:
            raise ValueError("sync message too long")
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ValueError("sync message is not an object")
        if "fds" in message:
            count = message["fds"]
            if type(count) is not int or not 0 <= count <= len(self.fds):
                raise ValueError("sync message without the fds it announced")
            message["fds"], self.fds = self.fds[:count], self.fds[count:]
        return message

    def expect(self, kinds: Kind | tuple[Kind, ...], timeout: float | None, *,
               closed: str | None = None) -> dict[str, Any]:
        """The next message, which must be of ``kinds``; anything else raises.

        An ERROR raises the error it carries (``rebuild``); a closed channel, another kind, a malformed message or
        ``timeout`` seconds of silence raise :class:`SyncError` (``closed`` is the message for a closed channel).
        Fds that came with a message of the wrong kind are closed.
        """
        wanted = (kinds,) if isinstance(kinds, Kind) else tuple(kinds)
        names = " or ".join(kind.value for kind in wanted)
        try:
            message = self.recv(timeout)
        except TimeoutError:
            raise SyncError(f"{self.peer} did not answer within {timeout:.0f} seconds", reason="timeout") from None
        except (ValueError, OSError) as error:
            reason = "closed" if isinstance(error, ConnectionError) else "malformed"
            if reason == "closed":
                raise SyncError(closed or f"{self.peer} exited before sending {names}", reason=reason) from None
            raise SyncError(f"{self.peer} sent a malformed message", reason=reason) from None
        if message is None:
            raise SyncError(closed or f"{self.peer} exited before sending {names}", reason="closed")
        kind = message.get("type")
        if kind in wanted:
            return message
        for fd in message.get("fds") or ():
            with contextlib.suppress(OSError):
                os.close(fd)
        if kind == Kind.ERROR:
            raise self.rebuild(message)
        if isinstance(kind, str) and kind in Kind._value2member_map_:
            raise SyncError(f"{self.peer} sent {kind} instead of {names}", reason="unexpected")
        raise SyncError(f"{self.peer} sent a malformed message", reason="malformed")

    def _receive(self) -> tuple[bytes, list[int]]:
        """Bytes and any fds that came with them (``socket.recv_fds`` of Python 3.11 drops its flags argument,
        and the fds must be close-on-exec from the start: a child forked meanwhile must not inherit them)."""
        fd_size = array.array("i").itemsize
        chunk, ancillary, _flags, _address = self.sock.recvmsg(
            4096, socket.CMSG_SPACE(_MAX_FDS * fd_size), socket.MSG_CMSG_CLOEXEC
        )
        fds = array.array("i")
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - len(data) % fd_size])
        return chunk, list(fds)

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []
        self.sock.close()


@valueclass(frozen=False)
class Started:
    """What the parent holds once the child's process exists (:func:`launcher.start`, :func:`enter.start`): the
    child it waits for (``stage1``: pid 1 itself, cloned; stage 1 with ``--network container:``; the joiner, which
    exits with the command's code), the command's host pid, the channel (an ERROR may still come, or EOF once it
    exec'ed) and, with a tty, the pty master."""

    stage1: int
    container_pid: int
    channel: Channel
    master_fd: int | None


# -- the one error encoding -------------------------------------------------------------------------------------------


def as_start_error(error: BaseException, exit_code: int = CANNOT_RUN) -> ContainerStartError:
    """Any failure as a :class:`ContainerStartError`: one keeps itself, another SbxError its message, hint and own
    code (else ``exit_code``), an OSError its strerror and file name, anything else its type and text."""
    if isinstance(error, ContainerStartError):
        return error
    if isinstance(error, SbxError):
        return ContainerStartError(error.message, exit_code=getattr(error, "exit_code", None) or exit_code,
                                   hint=error.hint)
    if isinstance(error, OSError):
        text = error.strerror or str(error)
        return ContainerStartError(text + (f": {error.filename}" if error.filename else ""), exit_code=exit_code)
    return ContainerStartError(f"{type(error).__name__}: {error}", exit_code=exit_code)


def error_message(error: BaseException, exit_code: int | None = CANNOT_RUN) -> dict[str, Any]:
    """The fields of an ERROR message for ``error`` (a non-SbxError goes as :func:`as_start_error` makes it).

    ``exit_code`` is the code the sender leaves with unless the error carries its own; None sends none (a job's
    error is not an exit status).
    """
    if not isinstance(error, SbxError):
        error = as_start_error(error, exit_code or CANNOT_RUN)
    code = getattr(error, "exit_code", None) or exit_code
    fields = {key: value for key, value in error.fields.items()
              if key != "exit_code" and isinstance(value, str | int | float | bool)}
    return {"class": type(error).__name__, "message": error.message, "hint": error.hint, "exit_code": code,
            "fields": fields}


def rebuild_error(message: dict[str, Any], exit_code: int | None = None) -> SbxError:
    """The error an ERROR message carries, as the same :mod:`sandbox.errors` class (plain SbxError for a name that
    is none of them), message, hint, fields and exit code (``exit_code`` when it carries none)."""
    kind = getattr(errors, str(message.get("class")), None)
    if not (isinstance(kind, type) and issubclass(kind, SbxError)):
        kind = SbxError
    text = _text(message.get("message")) or "the other process failed"
    hint = _text(message.get("hint"))
    fields = message.get("fields") if isinstance(message.get("fields"), dict) else {}
    # a field becomes an attribute: none may shadow what the class or SbxError defines (args, hint, fields, ...)
    fields = {key: value for key, value in fields.items()
              if isinstance(key, str) and key.isidentifier() and not key.startswith("_")
              and key not in ("message", "fields", "exit_code") and not hasattr(kind, key)
              and isinstance(value, str | int | float | bool)}
    code = message.get("exit_code")
    code = code if type(code) is int and 0 <= code <= 255 else exit_code
    try:
        error = kind(text, hint=hint, **fields)
    except TypeError:  # a subclass with its own constructor
        error = SbxError(text, hint=hint, **fields)
    if code is not None:
        error.exit_code = code
    return error


def start_failure(message: dict[str, Any], exit_code: int = CANNOT_RUN) -> ContainerStartError:
    """An ERROR from a process that was starting a container's command: a :class:`ContainerStartError`."""
    return as_start_error(rebuild_error(message, exit_code), exit_code)


def _text(value: Any) -> str | None:
    return value[:_TEXT_LIMIT] if isinstance(value, str) and value else None


# -- map, then go -----------------------------------------------------------------------------------------------------


def parent_handshake(channel: Channel, write_maps: Callable[[Callable[[], object] | None], dict[str, int] | None],
                     timeout: float | None, *, closed: str | None = None, born: bool = False) -> None:
    """The parent's side: wait for READY, map the child's user namespace (``write_maps(meanwhile)`` runs newuidmap
    and newgidmap on it, calling ``meanwhile`` while they run, or returns the single map the child writes itself),
    send GO.

    ``born``: the child was made in its new user namespace (clone with CLONE_NEWUSER), which exists before it says
    anything, so the helpers start at once and READY is awaited while they run: the child's own start and its READY
    cost the start nothing (BENCHMARKS B1). An ERROR instead of READY still wins: it is raised as soon as it comes,
    and the helpers are stopped."""

    def ready() -> None:
        channel.expect(Kind.READY, timeout, closed=closed)

    if born:
        own = write_maps(ready)
    else:
        ready()
        own = write_maps(None)
    channel.send(Kind.GO, own_maps=own)


def child_handshake(channel: Channel, timeout: float | None = None,
                    meanwhile: Callable[[], object] | None = None) -> tuple[int, int] | None:
    """The child's side, once it made its user namespace: READY, then wait for GO; the ``(uid, gid)`` it must map
    itself to, or None when the parent mapped it (or there is nothing to map). ``meanwhile`` runs between the two,
    while the parent writes the maps (the id-map helpers take milliseconds): work that needs no maps."""
    channel.send(Kind.READY)
    if meanwhile is not None:
        meanwhile()
    own = channel.expect(Kind.GO, timeout).get("own_maps")
    if own is None:
        return None
    if not isinstance(own, dict) or not all(type(own.get(key)) is int for key in ("uid", "gid")):
        raise SyncError(f"{channel.peer} sent a malformed message", reason="malformed")
    return own["uid"], own["gid"]


# -- the terminal -----------------------------------------------------------------------------------------------------


def send_pty(channel: Channel, open_pty, devpts: str = "/dev/pts", exit_code: int = CANNOT_RUN,
             size: tuple[int, int] | None = None) -> int:
    """Make a pty of the devpts at ``devpts`` (``open_pty`` is :func:`console.open_pty`, imported by the caller
    while the host's library is still in reach), send its master as PTY, and return the slave, of ``size`` (rows,
    columns) when known; the master is closed here once the other end holds its copy."""
    try:
        master, slave = open_pty(devpts, size)
    except (OSError, ValueError) as error:
        raise ContainerStartError(
            f"cannot open a terminal in the container's {devpts}: {getattr(error, 'strerror', None) or error}",
            exit_code=exit_code,
            hint="the container's /dev/pts must be its own devpts mount (run without -t to do without a terminal)",
        ) from None
    try:
        channel.send(Kind.PTY, fds=[master])
    except BaseException:
        os.close(slave)
        raise
    finally:
        os.close(master)
    return slave


def received_master(message: dict[str, Any]) -> int:
    """The pty master a PTY message carried; the caller owns it. Anything else it carried is closed."""
    fds = message.get("fds") if isinstance(message.get("fds"), list) else []
    master = fds[0] if len(fds) == 1 and os.isatty(fds[0]) else None
    for fd in fds:
        if fd != master:
            os.close(fd)
    if master is None:
        raise ContainerStartError("the container's terminal did not arrive over the sync socket")
    return master
