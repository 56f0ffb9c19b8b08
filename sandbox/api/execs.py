"""Running an exec instance for the API.

With a tty the command runs under an exec holder (:mod:`sandbox.monitor.exec_holder`), whose socket is bridged to
the hijacked connection as a container's monitor is. Without one, ``sbx exec`` gives the command sbx's own stdio,
which a server cannot: the API forks a child whose fds 0, 1 and 2 are pipes (the child is single-threaded, as
``setns(CLONE_NEWUSER)`` wants), the child runs the exec as the CLI does and leaves with its exit code, and the
server copies the pipes to and from the connection.
"""

from __future__ import annotations

import contextlib
import os
import sys

from sandbox.api import streams
from sandbox.errors import SbxError
from sandbox.exitcodes import NOT_EXECUTABLE
from sandbox.runtime import reap


def run_exec(api, exec_, conn) -> None:
    """Run ``exec_`` attached to ``conn`` (None: detached); its exit code is in ``exec_.exit_code`` before the
    connection is closed, since the docker CLI inspects the exec as soon as its stream ends."""
    from sandbox.service.execution import ExecOptions

    options = ExecOptions(
        env=list(exec_.env), workdir=exec_.workdir, user=exec_.user, interactive=exec_.stdin, tty=exec_.tty,
        detach=conn is None, console_size=exec_.console_size,
    )
    exec_.running = True
    try:
        if conn is not None and exec_.tty:
            exec_.exit_code = _with_holder(api, exec_, conn, options)
        else:
            exec_.exit_code = _in_child(api, exec_, conn, options)
    finally:
        exec_.running = False
        exec_.sock = None


def _with_holder(api, exec_, conn, options) -> int | None:
    from sandbox.service.execution import Execution

    output = streams.Output(conn, tty=True)

    def attach(session, _request) -> int | None:
        exec_.sock, exec_.pid = session.sock, session.pid
        return streams.bridge(conn, session.sock, output, stdin=exec_.stdin, lock=exec_.lock)

    try:
        return Execution(api.settings, api.lifecycle).exec(exec_.container_id, exec_.args, options, attach=attach)
    except SbxError as error:
        output.write(streams.STDOUT, f"{error.message}\r\n".encode())
        return getattr(error, "exit_code", None) or NOT_EXECUTABLE


def _in_child(api, exec_, conn, options) -> int:
    from sandbox.runtime.plan import fd_limit
    from sandbox.service.execution import Execution

    stdin = os.pipe() if exec_.stdin and conn is not None else None
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the server's code
        code = 126
        try:
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(stdin[0] if stdin else null, 0)
            os.dup2(out_write, 1)
            os.dup2(err_write, 2)
            os.closerange(3, fd_limit())  # the server's sockets and the other ends of the pipes
            # another thread may have held sys.stderr's lock (the request log) when we forked: fresh objects
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - the child ends with os._exit
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
            execution = Execution(api.settings, api.lifecycle)
            code = execution.exec(exec_.container_id, exec_.args, options, attach=_relay_and_wait)
        except SbxError as error:
            with contextlib.suppress(OSError):
                os.write(2, f"{error.message}\n".encode())
            code = getattr(error, "exit_code", None) or NOT_EXECUTABLE
        except BaseException:
            code = 126
        finally:
            os._exit(code)
    for fd in (out_write, err_write) + ((stdin[0],) if stdin else ()):
        os.close(fd)
    if conn is None:  # detached: the child returns once the command runs; reap it without waiting here
        for fd in (out_read, err_read):
            os.close(fd)
        return reap.exit_code(pid)
    output = streams.Output(conn, tty=False, stdout=exec_.stdout, stderr=exec_.stderr)
    streams.pump_pipes(conn, output, out_read, err_read, stdin[1] if stdin else None)
    return reap.exit_code(pid)


def _relay_and_wait(handle, _request) -> int:
    """In the child: copy the command's pipes (``handle.relay``) to this process's stdio, the server's pipes, until
    the command has exited; its exit code. (A detached exec never gets here: it returns once the command runs.)"""
    from sandbox.runtime import launcher

    handle.relay.run(handle.started.stage1)
    return launcher.wait(handle.started)
