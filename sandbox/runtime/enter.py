"""Run one more process inside a running container (`sbx exec`): join its namespaces, its root, and exec.

The process tree (the messages are those of :mod:`sandbox.runtime.sync`, where the exchange is drawn too)::

    sbx (parent)                      joiner (forked)                          the command (forked again)
    ------------                      ---------------                          --------------------------
    socketpair, fork ──────────────►  open /proc/PID and, through it,
                                      ns/{user,...,mnt} and root; then
                                      check PID is still the container's
                                      pid 1 (boot id + start time)
                                      setns user, then ipc uts net cgroup
                                      pid mnt (each only when it differs
                                      from ours); fchdir(root), chroot(".")
                                      fork ───────────────────────────────►   waits for the joiner's go (a pipe)
                                ◄───  PID {pid: HOSTPID}
                                      close the socket, go ────────────────►  -t: a pty from the container's
                                ◄──────────────────────────────────────────    /dev/pts/ptmx, PTY + the
                                      waitpid(command), exit with its          master (SCM_RIGHTS); user from the
                                      status (128+N for a signal)              container's /etc/passwd and /etc/group;
                                                                               the process plan, as for pid 1
                                                                               (runtime/plan.py: session, tty, ids,
                                                                               privileges, fds, chdir, execvpe)
                                ◄──────────────────────────────────────────    on failure: ERROR
    proxy the pty or forward signals to HOSTPID, waitpid(joiner) (:func:`launcher.wait`)

Why this shape: ``setns(CLONE_NEWUSER)`` refuses a threaded process, so the joiner is a fork of the single-threaded
sbx; ``setns(CLONE_NEWPID)`` only applies to children, hence the second fork. Every fd is opened through one
``/proc/PID`` directory fd *before* any setns, and the pid is verified only after they are open: a dead pid's
directory fd cannot follow a recycled pid, so once the check passes the fds belong to the container. After setns of
the mount namespace the process's root is that namespace's original root (which pid 1 pivoted away from), so the
container's root is entered through the ``/proc/PID/root`` fd, as ``nsenter --root`` does.

The terminal of ``exec -t`` is made inside the container, as the container's own is (see :mod:`launcher`): a pty
of the host's devpts instance would have no name under the container's /dev/pts. The command's process, already in
the container's mount namespace and root, opens the container's /dev/pts/ptmx (the devpts instance its pid 1
mounted) as the container's root (which the joiner is, in the container's user namespace: it can open no more than
that root can), so its slave /dev/pts/N is a sibling of the container's own terminal; the master goes to sbx (the
exec holder) with SCM_RIGHTS. The holder's ``Started.master_fd`` is that master. A container that took its devpts
away gets a ContainerStartError (126), not a nameless terminal.

Everything the command's process needs is imported with this module, before ``chroot``: afterwards the host's
Python library is out of reach, as it should be (TESTPLAN 26). After ``setns(CLONE_NEWUSER)`` the process holds every
capability of the container's user namespace; the container's own privileges (its capability set, no_new_privs and
seccomp filter, from its spec, compiled by the caller before any of this: ``ExecRequest.privileges``) are then
applied by the same process plan as pid 1's (:mod:`sandbox.runtime.plan`), so an exec'ed command gets exactly what
the container's command got (TESTPLAN 30), and the same fds closed. Exit codes follow Docker's exec: 127 not
found, 126 not executable or any other failure to start the command, 1 when the container is no longer running.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable

from sandbox.errors import ContainerNotRunning, ContainerStartError, SbxError, SyncError
from sandbox.exitcodes import NOT_EXECUTABLE
from sandbox.kernel import constants as k
from sandbox.runtime import plan as process_plan
from sandbox.runtime import reap
from sandbox.runtime.console import open_pty
from sandbox.runtime.identity import resolve_identity
from sandbox.runtime.launcher import _install_stdio, read_small
from sandbox.runtime.privileges import PrivilegePlan
from sandbox.runtime.sync import Channel, Kind, Started, received_master, send_pty, start_failure
from sandbox.valueclass import valueclass

# the order setns is applied in: the user namespace first (it gives the capabilities the others need), the mount
# namespace last (after it, paths resolve in the container)
NAMESPACES = (
    ("user", "CLONE_NEWUSER"),
    ("ipc", "CLONE_NEWIPC"),
    ("uts", "CLONE_NEWUTS"),
    ("net", "CLONE_NEWNET"),
    ("cgroup", "CLONE_NEWCGROUP"),
    ("pid", "CLONE_NEWPID"),
    ("mnt", "CLONE_NEWNS"),
)
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


@valueclass
class ExecRequest:
    """What to run in the container whose pid 1 is ``pid`` (a host pid).

    ``env`` is the final environment but for HOME, which the resolved user's home supplies when it is absent.
    ``user`` is Docker's ``NAME|UID[:GROUP|GID]`` (``""`` root), resolved against the container's own files.
    """

    pid: int
    args: tuple[str, ...]
    env: tuple[str, ...]
    # the container's capabilities, no_new_privs and compiled seccomp filter (privileges.prepare of its spec)
    privileges: PrivilegePlan
    user: str = ""
    cwd: str = "/"
    tty: bool = False
    interactive: bool = False
    detach: bool = False
    console_size: tuple[int, int] | None = None  # with tty: (rows, columns) of the terminal sbx runs in
    # the container's --ulimit and fallback rlimits and affinity (as Docker's exec copies the container's rlimits)
    limits: object | None = None


@valueclass
class _Joined:
    """What the joiner learned about the container's pid 1 before joining it."""

    setgroups_allowed: bool


def start(request: ExecRequest, verify: Callable[[], bool], kernel, *,
          stdio: tuple[int, int, int] | None = None, parent_ends: tuple[int, ...] = ()) -> Started:
    """Fork the joiner; returns once the command's process exists (it may still fail before exec).

    ``stdio``: three fds (pipes of :mod:`sandbox.runtime.relay`) that become the command's 0, 1 and 2 instead of
    sbx's own, so that without -t the user's terminal never reaches the container; the caller closes its copies.
    ``parent_ends``: the caller's ends of those pipes, closed in the joiner (a joiner holding the write end of the
    command's stdin would keep it from ever reading EOF).

    ``verify()`` (run in the joiner, after the container's fds are open) says whether ``request.pid`` still is the
    container's pid 1. Then: :func:`launcher.wait` for the command's exit code (it raises ContainerStartError with
    126/127 on a failed exec), or :func:`confirm` for ``-d``. With ``request.tty`` ``Started.master_fd`` is the pty.
    """
    tty = request.tty and not request.detach
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    master_fd = None
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the joiner
        parent_sock.close()
        code = NOT_EXECUTABLE
        channel = Channel(child_sock, "sbx")
        try:
            if stdio is not None and not tty:
                _install_stdio(stdio)
                for fd in {*stdio, *parent_ends} - {0, 1, 2}:
                    os.close(fd)
            code = _join(request, verify, kernel, channel, tty)
        except BaseException as error:  # report and leave: never return into the parent's code
            code = channel.send_error(error, NOT_EXECUTABLE)
        finally:
            os._exit(code)
    child_sock.close()
    channel = Channel(parent_sock, "the exec'd process", _failure)
    reported = False
    try:
        try:
            message = channel.expect(Kind.PID, 30, closed="could not enter the container")
            # the command's process sends its terminal after the joiner's PID (it waits for the go)
            pty = channel.expect(Kind.PTY, 30, closed="the command exited before its terminal was made") \
                if tty else None
        except SbxError as error:
            reported = not isinstance(error, SyncError)
            raise
        if pty is not None:
            master_fd = received_master(pty)
    except BaseException:
        if reported:  # the failing process is on its way out, and the joiner with it: kill nobody in the container
            reap.reap(pid)
        else:
            reap.kill(pid)
        channel.close()
        if master_fd is not None:
            os.close(master_fd)
        raise
    command_pid = message.get("pid")
    if type(command_pid) is not int or command_pid <= 0:
        reap.kill(pid)
        channel.close()
        raise SyncError("the exec'd process sent a malformed message", reason="malformed")
    return Started(pid, command_pid, channel, master_fd)


def confirm(started: Started, timeout: float = 30.0) -> None:
    """``-d``: return once the command was executed (the sync socket closed), raise if it failed to start.

    The joiner is left running; it exits with the command and is reaped by whoever inherits it.
    """
    try:
        report = started.channel.recv(timeout)
    except (TimeoutError, OSError, ValueError):
        report = None
    finally:
        started.channel.close()
    if report is not None:
        raise _failure(report if report.get("type") == Kind.ERROR else {"message": "the command failed to start"})


# -- the joiner -------------------------------------------------------------------------------------------------------


def _join(request: ExecRequest, verify: Callable[[], bool], kernel, channel, tty: bool) -> int:
    null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)  # the host's: the container's may be anything by now
    if request.detach:  # -d: sbx returns at once, so nothing may hold its stdout or stderr open
        for target in (0, 1, 2):
            os.dup2(null, target)
    proc = os.open(f"/proc/{int(request.pid)}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fds = {name: os.open(f"ns/{name}", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc) for name, _ in NAMESPACES}
        root = os.open("root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=proc)
        joined = _Joined(
            setgroups_allowed=_read_at(proc, "setgroups").strip() != "deny",
        )
        cgroup = _read_at(proc, "cgroup")
    except OSError:
        raise ContainerNotRunning(f"container process {request.pid} is gone", exit_code=1) from None
    finally:
        os.close(proc)
    if not verify():
        raise ContainerNotRunning("the container is no longer running", exit_code=1)
    from sandbox.cgroups.tree import join

    join(cgroup, os.getpid())  # its own cgroup, where it has one: exec'd processes count against its limits
    for name, flag in NAMESPACES:
        if _same_namespace(fds[name], name):  # e.g. --network host shares ours; setns into one's own fails
            continue
        try:
            kernel.setns(fds[name], getattr(k, flag))
        except OSError as error:
            raise ContainerStartError(f"cannot join the container's {name} namespace: {error.strerror}") from None
    for fd in fds.values():
        os.close(fd)
    kernel.fchdir(root)
    kernel.chroot(".")
    os.close(root)
    kernel.prctl(k.PR_SET_DUMPABLE, 0)  # the joiner holds host state; nothing inside may ptrace it
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the command
        code = NOT_EXECUTABLE
        try:
            os.close(go_write)
            os.read(go_read, 1)  # after the joiner sent "pid": an error report must not overtake it
            os.close(go_read)
            _command(request, kernel, channel, tty, null, joined)  # execs, or raises
        except BaseException as error:
            code = channel.send_error(error, NOT_EXECUTABLE)
        finally:
            os._exit(code)
    os.close(go_read)
    os.close(null)
    channel.send(Kind.PID, pid=pid)
    channel.close()
    os.write(go_write, b"g")
    os.close(go_write)
    for number in _FORWARDED:
        signal.signal(number, signal.SIG_IGN)  # sbx signals the command directly
    return reap.exit_code(pid)


def _command(request: ExecRequest, kernel, channel, tty: bool, null: int, joined: _Joined) -> None:
    # first, so sbx gets the terminal (or the reason there is none) before anything else can fail
    slave_fd = send_pty(channel, open_pty, exit_code=NOT_EXECUTABLE, size=request.console_size) if tty else None
    identity = resolve_identity(request.user, read_small("/etc/passwd"), read_small("/etc/group"))
    null_stdin = not tty and not request.interactive and not request.detach  # without -i: no stdin, as with Docker
    if not null_stdin:
        kernel.close(null)
    process = process_plan.Process(
        args=tuple(request.args), env=request.env, identity=identity, privileges=request.privileges,
        cwd=request.cwd, set_groups=joined.setgroups_allowed, terminal=slave_fd,
        stdin=null if null_stdin else None, spare=(channel.sock.fileno(),), limits=request.limits,
        exit_code=NOT_EXECUTABLE,
    )
    process_plan.execute(kernel, process_plan.build(process))  # execs, or raises


# -- helpers ----------------------------------------------------------------------------------------------------------


def _same_namespace(fd: int, name: str) -> bool:
    try:
        mine = os.stat(f"/proc/self/ns/{name}")
    except OSError:
        return False
    theirs = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def _read_at(directory: int, name: str) -> str:
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=directory)
    try:
        return os.read(fd, 65536).decode("utf-8", "replace")
    finally:
        os.close(fd)


def _failure(report: dict) -> SbxError:
    """An ERROR of the joiner or the command (Docker's exec: 126 unless it names another code)."""
    error = start_failure(report, NOT_EXECUTABLE)
    if error.exit_code == 1:  # the container stopped under us: a daemon-style error, not an exec failure
        return ContainerNotRunning(error.message, hint=error.hint, exit_code=1)
    return error
