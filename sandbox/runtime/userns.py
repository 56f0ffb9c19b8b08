"""Run a job as root of a fresh user namespace, so the files it makes get the namespace's mapped owners.

``unshare(CLONE_NEWUSER)`` needs a single-threaded process, and the namespace belongs to the whole process, so the
work happens in a fresh interpreter (``python -m sandbox.runtime.nsjob``, its child side). The two speak
:mod:`sandbox.runtime.sync` (the sequence is drawn there): READY, the maps (:mod:`sandbox.runtime.usermaps`), GO;
the job goes in on the child's stdin and exactly one RESULT or ERROR line comes out on its stdout. An error the
child reports is raised again here as its :mod:`sandbox.errors` class; a child that dies without a result, or runs
out of time, is a :class:`NamespaceError` carrying the tail of its stderr.

Already root (euid 0), sbx needs no namespace: the job runs in this process and owners are kept as they are.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.errors import NamespaceError, SyncError
from sandbox.runtime.idmap import IdMap
from sandbox.runtime.sync import Channel, Kind, parent_handshake, rebuild_error
from sandbox.runtime.usermaps import helpers_for, map_ids, tail

if TYPE_CHECKING:
    import subprocess


def _package_root() -> str:
    """The directory holding the ``sandbox`` package this process runs, so the child imports the same code."""
    import sandbox

    return str(Path(sandbox.__file__).resolve().parent.parent)


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
    helpers = {} if root else helpers_for(idmap)
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
    channel = Channel(parent_sock, "the namespace job")
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
    text = tail(stderr)
    return NamespaceError(
        f"the namespace job {what} (exit {process.returncode})" + (f": {text}" if text else ""),
        returncode=process.returncode,
        stderr=text,
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
        try:
            parent_handshake(channel, lambda _: None if root else map_ids(process.pid, idmap, helpers, deadline),
                             _remaining(deadline))
        except SyncError as error:
            if error.reason == "timeout":
                raise TimeoutError from None
            if error.reason == "closed":
                raise _died(process, "exited before entering its namespace") from None
            raise NamespaceError(f"unexpected message from the namespace job: {error.message}") from None
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
    if not isinstance(result, dict) or result.get("type") not in (Kind.RESULT, Kind.ERROR):
        text = tail(stderr)
        raise NamespaceError(
            f"the namespace job exited {process.returncode} without a result" + (f": {text}" if text else ""),
            returncode=process.returncode,
            stderr=text,
        )
    if result["type"] == Kind.ERROR:
        raise rebuild_error(result)
    ok = result.get("result")
    return ok if isinstance(ok, dict) else {"result": ok}
