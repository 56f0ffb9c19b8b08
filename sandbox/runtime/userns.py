"""Run a job as root of a fresh user namespace, so the files it makes get the namespace's mapped owners.

``unshare(CLONE_NEWUSER)`` needs a single-threaded process, and the namespace belongs to the whole process, so the
work happens in a fresh interpreter (``python -m sandbox.runtime.nsjob``). It talks to the parent over a
socketpair with one JSON object per line; the job goes in on its stdin and exactly one JSON result comes out on its
stdout::

    parent (run_job)                                  child (python -m sandbox.runtime.nsjob --sync-fd N)
    ----------------                                  ---------------------------------------------------
    spawn, socketpair, pass_fds=(N,)  ───────────►    PR_SET_PDEATHSIG(SIGKILL)
                                                      unshare(CLONE_NEWUSER [| CLONE_NEWNS])
                                      ◄─────────────  {"type": "ready"}
                                                      (or {"type": "error", ...} and exit 1)
    subordinate ranges: newuidmap PID 0 UID 1 1 START N
                        newgidmap PID 0 GID 1 1 START N
    single map: nothing (the child writes its own)
                                      ─────────────►  {"type": "go", "own_maps": null | {"uid": U, "gid": G}}
                                                      own_maps: setgroups=deny, uid_map "0 U 1", gid_map "0 G 1"
                                                      setresgid(0,0,0), setgroups([]) when allowed, setresuid(0,0,0)
                                                      with CLONE_NEWNS: mount --make-rprivate /
    job JSON on stdin, then EOF       ─────────────►  dispatch job["op"]
                                      ◄─────────────  stdout: {"ok": {...}} or {"error": {"type", "message", ...}}
                                                      exit 0

Only the user's own id can be mapped without help, and only by the namespace's own process; ranges from
/etc/subuid need the setuid helpers newuidmap/newgidmap (Debian package ``uidmap``), run by the parent on the
child's pid. An error the child reports is raised again here as the named :mod:`sandbox.errors` class; a child that
dies without a result, or runs out of time, is a :class:`NamespaceError` carrying the tail of its stderr.

Already root (euid 0), sbx needs no namespace: the job runs in this process and owners are kept as they are.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox import errors
from sandbox.errors import NamespaceError, SbxError
from sandbox.runtime.idmap import IdMap

if TYPE_CHECKING:
    import subprocess  # imported where used: `sbx exec` needs only the Channel of this module

_LINE_LIMIT = 1 << 16
_MAX_FDS = 4  # fds one receive takes; the protocols pass one at a time
_STDERR_TAIL = 2000
_HELPER_TIMEOUT = 30.0
USERNS_HINT = (
    "unprivileged user namespaces may be disabled: check sysctl kernel.unprivileged_userns_clone, "
    "user.max_user_namespaces and kernel.apparmor_restrict_unprivileged_userns (sbx doctor checks them all)"
)


class Channel:
    """One JSON object per line over a stream socket; both ends of the protocols above (and the launcher's) use it.

    A message may carry open fds (``send(message, fds=[...])``, SCM_RIGHTS): the container's pty master is made
    inside the container and handed out this way (see :mod:`sandbox.runtime.launcher`). The sender's fds ride on the
    first byte of the message's line, so they arrive before the line is complete; the receiver collects every fd
    that arrives, in order (close-on-exec, ``MSG_CMSG_CLOEXEC``), and :meth:`recv` returns the message with
    ``"fds"`` replaced by the list of that message's own fds, which the caller then owns. Fds never claimed are
    closed by :meth:`close`.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.fds: list[int] = []  # received, not yet handed out with their message

    def send(self, message: dict[str, Any], fds: tuple[int, ...] | list[int] = ()) -> None:
        """Send ``message``; ``fds`` are duplicated into the receiver (the sender still owns and closes its own)."""
        if fds:
            message = {**message, "fds": len(fds)}
        data = json.dumps(message).encode() + b"\n"
        if fds:
            sent = socket.send_fds(self.sock, [data], list(fds))
            data = data[sent:]
        if data:
            self.sock.sendall(data)

    def recv(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next message; None when the other end closed first. ``TimeoutError`` after ``timeout`` seconds."""
        self.sock.settimeout(timeout)
        while b"\n" not in self.buffer:
            if len(self.buffer) > _LINE_LIMIT:
                raise ValueError("sync message too long")
            chunk, fds = self._receive()
            self.fds += fds
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ValueError("sync message is not an object")
        if "fds" in message:
            count = message["fds"]
            if not isinstance(count, int) or not 0 <= count <= len(self.fds):
                raise ValueError("sync message without the fds it announced")
            message["fds"], self.fds = self.fds[:count], self.fds[count:]
        return message

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


def _package_root() -> str:
    """The directory holding the ``sandbox`` package this process runs, so the child imports the same code."""
    import sandbox

    return str(Path(sandbox.__file__).resolve().parent.parent)


def _tail(data: bytes | None) -> str:
    text = (data or b"").decode("utf-8", "replace").strip()
    return text if len(text) <= _STDERR_TAIL else "..." + text[-_STDERR_TAIL:]


def find_helper(program: str) -> str:
    import shutil

    found = shutil.which(program)
    if found is None:
        raise NamespaceError(
            f"{program} not found: it is needed to map subordinate ids into a user namespace",
            hint="install the uidmap package (sudo apt-get install uidmap); sbx doctor checks the rest",
            program=program,
        )
    return found


def write_maps(pid: int, idmap: IdMap, helpers: dict[str, str], deadline: float | None) -> None:
    """Map ``pid``'s user namespace with newuidmap and newgidmap, run side by side: they write different files
    (uid_map, gid_map) and neither needs the other's, so the two setuid helpers cost the start one helper's time."""
    import subprocess

    timeout = _HELPER_TIMEOUT if deadline is None else max(0.1, min(_HELPER_TIMEOUT, deadline - time.monotonic()))
    running: list[tuple[str, subprocess.Popen]] = []
    try:
        for program, ranges in (("newuidmap", idmap.uids), ("newgidmap", idmap.gids)):
            command = [helpers[program], str(pid)]
            for item in ranges:
                command += [str(item.container_id), str(item.host_id), str(item.size)]
            running.append((program, subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
        for program, process in running:
            try:
                _, stderr = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired as error:
                raise NamespaceError(f"{program} did not finish in time", program=program) from error
            if process.returncode != 0:
                kind = "subuid" if program == "newuidmap" else "subgid"
                raise NamespaceError(
                    f"{program} failed (exit {process.returncode}): {_tail(stderr) or 'no message'}",
                    hint=f"check your range in /etc/{kind} (usermod --add-{kind}s) and that {program} is setuid root; "
                    "run sbx doctor",
                    program=program,
                    returncode=process.returncode,
                )
    finally:
        for _, process in running:
            if process.poll() is None:
                process.kill()
            process.wait()
            if process.stderr is not None:
                process.stderr.close()


def _raise_reported(report: Any) -> None:
    if not isinstance(report, dict):
        raise NamespaceError("namespace job returned a malformed error")
    kind = getattr(errors, str(report.get("type")), None)
    if not (isinstance(kind, type) and issubclass(kind, SbxError)):
        kind = SbxError
    message = str(report.get("message") or "namespace job failed")
    hint = report.get("hint") if isinstance(report.get("hint"), str) else None
    fields = report.get("fields") if isinstance(report.get("fields"), dict) else {}
    fields = {key: value for key, value in fields.items() if isinstance(key, str) and key.isidentifier()}
    try:
        error = kind(message, hint=hint, **fields)
    except TypeError:  # a subclass with its own constructor
        error = SbxError(message, hint=hint, **fields)
    raise error


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def run_job(
    job: dict[str, Any],
    idmap: IdMap,
    *,
    mount_namespace: bool = False,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run ``job`` (see :mod:`sandbox.runtime.nsjob` for the ops) as root of a user namespace with ``idmap``.

    Returns the op's result; raises the error the op raised (as its :mod:`sandbox.errors` class), or
    :class:`NamespaceError` when the namespace cannot be made, the child dies, or ``timeout`` seconds pass.
    """
    import subprocess

    from sandbox.runtime import nsjob

    root = os.geteuid() == 0
    job = {"container_uids": idmap.uid_span, "container_gids": idmap.gid_span, **job}
    if root:
        job["container_uids"] = job["container_gids"] = None  # identity owners
        if not mount_namespace:
            from sandbox.kernel import Kernel

            return nsjob.execute(job, Kernel())  # this process is the job's: its entry point
    helpers = {} if root or idmap.single else {name: find_helper(name) for name in ("newuidmap", "newgidmap")}
    payload = json.dumps(job, default=os.fspath).encode()
    deadline = None if timeout is None else time.monotonic() + timeout

    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_package_root(), env.get("PYTHONPATH")]))
    command = [sys.executable, "-P", "-m", "sandbox.runtime.nsjob", "--sync-fd", str(child_sock.fileno())]
    command += ["--mount-namespace"] if mount_namespace else []
    command += [] if root else ["--user-namespace"]
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(child_sock.fileno(),),
            cwd="/",  # -m would import from the working directory otherwise; -P and cwd keep it out
            env=env,
        )
    except OSError as error:
        parent_sock.close()
        child_sock.close()
        raise NamespaceError(f"cannot start the namespace job: {error.strerror or error}") from error
    child_sock.close()
    channel = Channel(parent_sock)
    try:
        return _drive(process, channel, idmap, helpers, payload, deadline, root, timeout)
    finally:
        channel.close()
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def _died(process: subprocess.Popen, what: str) -> NamespaceError:
    import subprocess

    process.kill()
    try:
        _, stderr = process.communicate(timeout=5)
    except (subprocess.TimeoutExpired, ValueError, OSError):
        stderr = b""
    tail = _tail(stderr)
    return NamespaceError(
        f"the namespace job {what} (exit {process.returncode})" + (f": {tail}" if tail else ""),
        returncode=process.returncode,
        stderr=tail,
    )


def _drive(
    process: subprocess.Popen,
    channel: Channel,
    idmap: IdMap,
    helpers: dict[str, str],
    payload: bytes,
    deadline: float | None,
    root: bool,
    timeout: float | None,
) -> dict[str, Any]:
    import subprocess

    try:
        ready = channel.recv(_remaining(deadline))
        if ready is None:
            raise _died(process, "exited before entering its namespace")
        if ready.get("type") == "error":
            raise NamespaceError(
                f"cannot create a user namespace: {ready.get('message', 'unknown error')}",
                hint=USERNS_HINT,
                op=ready.get("op"),
                errno=ready.get("errno"),
            )
        if ready.get("type") != "ready":
            raise NamespaceError(f"unexpected message from the namespace job: {ready.get('type')!r}")
        own_maps = None
        if not root:
            if idmap.single:
                own_maps = {"uid": idmap.uids[0].host_id, "gid": idmap.gids[0].host_id}
            else:
                write_maps(process.pid, idmap, helpers, deadline)
        channel.send({"type": "go", "own_maps": own_maps})
        try:
            stdout, stderr = process.communicate(payload, timeout=_remaining(deadline))
        except subprocess.TimeoutExpired as error:
            raise TimeoutError from error
    except TimeoutError:
        process.kill()
        raise NamespaceError(f"the namespace job did not finish in {timeout:g} seconds", timeout=timeout) from None
    except (BrokenPipeError, ConnectionResetError):
        raise _died(process, "exited early") from None
    try:
        result = json.loads(stdout)
    except ValueError:
        result = None
    if not isinstance(result, dict) or not ({"ok", "error"} & result.keys()):
        tail = _tail(stderr)
        raise NamespaceError(
            f"the namespace job exited {process.returncode} without a result" + (f": {tail}" if tail else ""),
            returncode=process.returncode,
            stderr=tail,
        )
    if "error" in result:
        _raise_reported(result["error"])
    ok = result["ok"]
    return ok if isinstance(ok, dict) else {"result": ok}
