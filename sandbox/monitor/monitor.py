"""The per-container monitor (the role conmon plays for podman): one detached process per running container.

::

    sbx (service)                     middle child                  monitor (grandchild)
    -------------                     ------------                  --------------------
    pipe, fork ───────────────────►   setsid, fork ───────────────► subreaper; stdio → /dev/null; inherited fds
    waitpid(middle)             ◄───  exit 0                        pointed at /dev/null; record = store.get(id)
                                                                    spec, dir = build_spec(record)
                                                                    launcher.start(stdio = /dev/null + 2 pipes,
                                                                                   or a pty)
                                                                    wait for the exec: EOF on the sync socket
                                                                    record: RUNNING, pid, start times, boot id
    read ONE JSON line          ◄───────────────────────────────── {"ok": {"pid": CONTAINER_PID, "monitor": PID}}
    (or ContainerStartError     ◄───────────────────────────────── {"error": {"message", "exit_code", "hint"}}
     from an "error" line)                                          copy stdout/stderr into ctr.log until EOF
                                                                    launcher.wait → record: EXITED, exit_code
                                                                    --rm: remove_dir(container dir); exit

The double fork re-parents the monitor (to init or the nearest subreaper), so it outlives the sbx command that
started it; ``setsid`` takes it out of the user's session and terminal. The monitor ignores SIGINT and SIGHUP and
forwards SIGTERM to the container's pid 1. "ok" is sent once the command has been exec'ed (the launcher's sync
socket is close-on-exec, so it reads EOF), which is why a missing command is still reported to sbx as an error
(exit code 127) rather than as a container that exits at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sandbox.errors import ContainerStartError, SbxError

LOG_NAME = "ctr.log"
SPAWN_TIMEOUT = 120.0
_MESSAGE_LIMIT = 64 * 1024
_READ_SIZE = 64 * 1024


def spawn(
    store_root: Path,
    container_id: str,
    build_spec: Callable[[object], tuple[object, Path]],
    remove_dir: Callable[[Path], None],
    *,
    timeout: float = SPAWN_TIMEOUT,
) -> int:
    """Start a detached monitor for the container and return its pid once the container runs.

    ``build_spec(record) -> (ContainerSpec, container_dir)`` runs in the monitor. Raises
    :class:`ContainerStartError` (with Docker's exit code: 125, 126, 127) when the container could not start.
    """
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    middle = os.fork()
    if middle == 0:  # the middle child: never returns into the caller's code
        code = 1
        try:
            os.close(read_fd)
            os.setsid()
            if os.fork() == 0:
                _monitor_main(Path(store_root), container_id, build_spec, remove_dir, write_fd)  # exits
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        _reap(middle)
        message = _read_message(read_fd, timeout)
    finally:
        os.close(read_fd)
    return _answer(message)


def _answer(message: dict | None) -> int:
    if message is None:
        raise ContainerStartError("the container monitor exited before the container started")
    if isinstance(message.get("ok"), dict):
        return int(message["ok"]["monitor"])
    error = message.get("error") if isinstance(message.get("error"), dict) else {}
    hint = error.get("hint")
    raise ContainerStartError(
        str(error.get("message") or "the container failed to start"),
        exit_code=int(error.get("exit_code") or 125),
        hint=hint if isinstance(hint, str) else None,
    )


def _read_message(fd: int, timeout: float) -> dict | None:
    """One JSON line from the monitor; None if it closed the pipe without one."""
    deadline = time.monotonic() + timeout
    data = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                raise ContainerStartError(f"the container monitor did not answer within {timeout:.0f} seconds")
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
            if len(data) > _MESSAGE_LIMIT:
                raise ContainerStartError("the container monitor sent a malformed message")
    line = data.partition(b"\n")[0]
    if not line.strip():
        return None
    try:
        message = json.loads(line)
    except ValueError:
        message = None
    if not isinstance(message, dict):
        raise ContainerStartError("the container monitor sent a malformed message")
    return message


def _reap(pid: int) -> None:
    while True:
        try:
            os.waitpid(pid, 0)
            return
        except InterruptedError:
            continue
        except ChildProcessError:
            return


# -- the monitor process ------------------------------------------------------------------------------------------


def _monitor_main(store_root: Path, container_id: str, build_spec, remove_dir, report_fd: int) -> None:
    code = 1
    try:
        _detach(report_fd)
        Monitor(store_root, container_id, build_spec, remove_dir, report_fd).run()
        code = 0
    except BaseException:  # nowhere to report it: stdio is /dev/null; the record says what is known
        code = 1
    finally:
        os._exit(code)


def _detach(keep: int) -> None:
    """Ignore the terminal's signals, become a subreaper, stdio → /dev/null, let go of every inherited fd.

    Inherited fds are pointed at /dev/null rather than closed: a Python object of the forked sbx that owns one may
    still close it when collected, and must not close a pipe of ours that reused its number. The dup2 still lets
    go of what they referred to (a lock, a socket of the caller's).
    """
    from sandbox.kernel import Kernel
    from sandbox.kernel import constants as k

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # until there is a container to forward it to
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


class Monitor:
    def __init__(self, store_root: Path, container_id: str, build_spec, remove_dir, report_fd: int) -> None:
        from sandbox.store.containers import ContainerStore

        self.store = ContainerStore(store_root)
        self.id = container_id
        self.build_spec = build_spec
        self.remove_dir = remove_dir
        self.report_fd: int | None = report_fd
        self.container_pid: int | None = None

    # -- the report to sbx ----------------------------------------------------------------------------------------

    def _report(self, message: dict) -> None:
        if self.report_fd is None:
            return
        fd, self.report_fd = self.report_fd, None
        try:
            os.write(fd, json.dumps(message).encode() + b"\n")
        except OSError:
            pass  # sbx is gone (interrupted): the record still tells
        finally:
            os.close(fd)

    # -- the run --------------------------------------------------------------------------------------------------

    def run(self) -> None:
        from sandbox.runtime import launcher
        from sandbox.store.containers import ContainerState

        container_dir: Path | None = None
        record = None
        try:
            record = self.store.get(self.id)
            spec, container_dir = self.build_spec(record)
            started, sources = self._start(launcher, spec, container_dir)
        except BaseException as error:
            self._finish(_start_error(error), None, container_dir, record)
            return
        self.container_pid = started.container_pid
        signal.signal(signal.SIGTERM, self._forward)
        error: ContainerStartError | None = None
        code = launcher.EXIT_SBX
        try:
            with _Writer(container_dir / LOG_NAME) as writer:
                self._pump(started, sources, writer)
            code = launcher.wait(started)
        except ContainerStartError as failure:
            error = failure
        except BaseException as failure:  # the log or the record could not be written: nobody would drain the
            error = _start_error(failure)  # pipes or know of the container, so it goes, and is waited for
            with contextlib.suppress(ProcessLookupError):
                os.kill(started.container_pid, signal.SIGKILL)
            with contextlib.suppress(BaseException):
                code = launcher.wait(started)
        if error is None and self.report_fd is not None:
            self._running(started.container_pid)  # exec'ed and gone before the sync socket was looked at
        self._finish(error, code, container_dir, record, state=ContainerState.EXITED)

    def _start(self, launcher, spec, container_dir: Path):
        """Start the container; its outputs as {fd: stream}."""
        if spec.process.tty:
            started = launcher.start(spec, container_dir)
            return started, {started.master_fd: "stdout"}
        stdin = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            started = launcher.start(spec, container_dir, stdio=(stdin, out_w, err_w))
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            for fd in (stdin, out_w, err_w):
                os.close(fd)
        return started, {out_r: "stdout", err_r: "stderr"}

    def _forward(self, number: int, _frame) -> None:
        if self.container_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.container_pid, number)

    def _running(self, pid: int) -> None:
        from sandbox.store.containers import ContainerState, boot_id, process_start_time

        self.store.update(
            self.id,
            state=ContainerState.RUNNING,
            pid=pid,
            pid_start=process_start_time(pid),
            boot_id=boot_id(),
            monitor_pid=os.getpid(),
            monitor_start=process_start_time(os.getpid()),
            started_at=time.time(),
            exit_code=None,
            finished_at=None,
            error=None,
        )
        self._report({"ok": {"pid": pid, "monitor": os.getpid()}})

    def _pump(self, started, sources: dict[int, str], writer) -> None:
        """Copy the container's outputs into the log until they all end; say "ok" once the command is exec'ed."""
        sync = started.channel.sock
        with selectors.DefaultSelector() as selector:
            for fd, stream in sources.items():
                os.set_blocking(fd, False)
                selector.register(fd, selectors.EVENT_READ, stream)
            selector.register(sync, selectors.EVENT_READ, None)
            open_outputs = len(sources)
            while open_outputs:
                for key, _ in selector.select():
                    if key.data is None:
                        selector.unregister(sync)
                        if not _error_pending(started):
                            self._running(started.container_pid)
                        continue
                    try:
                        data = os.read(key.fd, _READ_SIZE)
                    except BlockingIOError:
                        continue
                    except OSError:  # EIO: a pty whose every slave end is closed
                        data = b""
                    if data:
                        writer.write(key.data, data)
                        continue
                    selector.unregister(key.fd)
                    os.close(key.fd)
                    open_outputs -= 1

    def _finish(self, error: ContainerStartError | None, code: int | None, container_dir: Path | None, record,
                state=None) -> None:
        """Record the end, tell sbx if it still waits, run --rm."""
        from sandbox.store.containers import ContainerState

        if error is not None:
            code = error.exit_code
        changes: dict = {"state": state or ContainerState.EXITED, "exit_code": code, "finished_at": time.time()}
        if error is not None:
            changes["error"] = error.message
        if record is not None:
            with contextlib.suppress(Exception):
                self.store.update(self.id, **changes)
        if error is not None:  # sent only if sbx still waits: before "ok"
            self._report({"error": {"message": error.message, "exit_code": error.exit_code, "hint": error.hint}})
        if record is not None and container_dir is not None and getattr(record, "auto_remove", False):
            with contextlib.suppress(Exception):
                self.remove_dir(container_dir)
        # orphans handed to us as the subreaper: collect them before leaving
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass


def _error_pending(started) -> bool:
    """After the sync socket turned readable: did stage 2 report an error (True) or exec (EOF, False)?"""
    if started.channel.buffer:
        return True
    try:
        return bool(started.channel.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return True  # spurious wake-up: not exec'ed yet; wait() will tell
    except OSError:
        return False


def _start_error(error: BaseException) -> ContainerStartError:
    if isinstance(error, ContainerStartError):
        return error
    if isinstance(error, SbxError):
        return ContainerStartError(error.message, exit_code=125, hint=error.hint)
    if isinstance(error, OSError):
        text = error.strerror or str(error)
        return ContainerStartError(text + (f": {error.filename}" if error.filename else ""), exit_code=125)
    return ContainerStartError(f"{type(error).__name__}: {error}", exit_code=125)


class _Writer:
    """The log writer, made lazily so that a container that writes nothing leaves an empty log."""

    def __init__(self, path: Path) -> None:
        from sandbox.monitor.logs import LogWriter

        self.writer = LogWriter(path)
        path.touch(mode=0o600, exist_ok=True)

    def write(self, stream: str, data: bytes) -> None:
        self.writer.write(stream, data)

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.writer.close()
