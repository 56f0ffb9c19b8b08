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

With a runtime root the monitor also serves the attach socket (its frames are drawn in :mod:`sandbox.monitor.attach`)
from the same single-threaded selector loop: output goes to the log and to every client, input from any client to
the pty master (or, with -i, to a pipe that is the container's stdin), a client's RESIZE sets the pty's size. A client
that goes away, or falls too far behind, is dropped and nothing happens to the container. After the exit has been
recorded every client gets EXIT with the code, and the socket is removed.
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
_INPUT_LIMIT = 256 * 1024  # attached input waiting for the container: clients are not read beyond this
_CLIENT_LIMIT = 256  # attached clients at once


HOLD_TIMEOUT = 30.0  # how long a held start waits for its first client


def spawn(
    store_root: Path,
    container_id: str,
    build_spec: Callable[[object], tuple[object, Path]],
    remove_dir: Callable[[Path], None],
    *,
    timeout: float = SPAWN_TIMEOUT,
    runtime_root: Path | None = None,
    on_listening: Callable[[Path], None] | None = None,
) -> int:
    """Start a detached monitor for the container and return its pid once the container runs.

    ``build_spec(record) -> (ContainerSpec, container_dir)`` runs in the monitor. With ``runtime_root`` the
    monitor serves the attach socket ``runtime_root/<id>/attach.sock`` (:mod:`sandbox.monitor.attach`). Raises
    :class:`ContainerStartError` (with Docker's exit code: 125, 127) when the container could not start.

    ``on_listening(socket_path)`` (with ``runtime_root``) is how a foreground `run` attaches before anything runs:
    the monitor says "listening", waits for that first client, and only then starts the container, so no output
    is lost however quickly the command ends.
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
                _monitor_main(Path(store_root), container_id, build_spec, remove_dir, write_fd, runtime_root,
                              hold=on_listening is not None)  # exits
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        _reap(middle)
        message = _read_message(read_fd, timeout)
        if message is not None and message.get("listening") and on_listening is not None and runtime_root:
            from sandbox.monitor import attach

            on_listening(attach.socket_path(Path(runtime_root), container_id))
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


def _monitor_main(store_root: Path, container_id: str, build_spec, remove_dir, report_fd: int,
                  runtime_root: Path | None = None, *, hold: bool = False) -> None:
    code = 1
    try:
        _detach(report_fd)
        Monitor(store_root, container_id, build_spec, remove_dir, report_fd, runtime_root=runtime_root,
                hold=hold).run()
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
    def __init__(self, store_root: Path, container_id: str, build_spec, remove_dir, report_fd: int, *,
                 runtime_root: Path | None = None, hold: bool = False) -> None:
        from sandbox.monitor import attach
        from sandbox.store.containers import ContainerStore

        self.store = ContainerStore(store_root)
        self.id = container_id
        self.build_spec = build_spec
        self.remove_dir = remove_dir
        self.report_fd: int | None = report_fd
        self.hold = hold
        self.container_pid: int | None = None
        self.socket_path = attach.socket_path(Path(runtime_root), container_id) if runtime_root else None
        self.listener: socket.socket | None = None
        self.clients: dict[int, attach.Client] = {}
        self.input_fd: int | None = None  # the pty master, or the write end of the container's stdin pipe
        self.to_input = bytearray()
        self.master_fd: int | None = None
        self._selector: selectors.BaseSelector | None = None
        self._registered: dict[int, int] = {}

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
            if self.socket_path is not None:
                from sandbox.monitor import attach

                self.listener = attach.listen(self.socket_path)
                if self.hold:
                    self._wait_for_first_client()
            started, sources = self._start(launcher, spec, container_dir, record)
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

    def _wait_for_first_client(self) -> None:
        """Tell sbx the socket is there, then wait (bounded) for it to connect before the container starts."""
        import select

        assert self.report_fd is not None and self.listener is not None
        os.write(self.report_fd, b'{"listening": true}\n')
        if select.select([self.listener], [], [], HOLD_TIMEOUT)[0]:
            self._accept()

    def _start(self, launcher, spec, container_dir: Path, record):
        """Start the container; its outputs as {fd: stream}. Attached input goes to the pty master, or with -i
        to a pipe that is the container's stdin (without -i its stdin is /dev/null, as with Docker)."""
        if spec.process.tty:
            started = launcher.start(spec, container_dir)
            self.master_fd = self.input_fd = started.master_fd
            return started, {started.master_fd: "stdout"}
        wants_stdin = bool(spec.process.stdin or (getattr(record, "spec", None) or {}).get("stdin"))
        stdin_w = None
        if wants_stdin:
            stdin, stdin_w = os.pipe2(os.O_CLOEXEC)
        else:
            stdin = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            started = launcher.start(spec, container_dir, stdio=(stdin, out_w, err_w))
        except BaseException:
            for fd in (out_r, err_r, stdin_w):
                if fd is not None:
                    os.close(fd)
            raise
        finally:
            for fd in (stdin, out_w, err_w):
                os.close(fd)
        self.input_fd = stdin_w
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
        """Copy the container's outputs into the log and to attached clients until they all end, and the clients'
        input to the container; say "ok" once the command is exec'ed. Never blocks on a client."""
        sync = started.channel.sock
        outputs = dict(sources)
        for fd in outputs:
            os.set_blocking(fd, False)
        if self.input_fd is not None:
            os.set_blocking(self.input_fd, False)
        with selectors.DefaultSelector() as selector:
            self._selector = selector
            self._registered = {}
            sync_open = True
            while outputs:
                wanted: dict[int, int] = {}
                for fd in outputs:
                    wanted[fd] = selectors.EVENT_READ
                if sync_open:
                    wanted[sync.fileno()] = selectors.EVENT_READ
                if self.listener is not None:
                    wanted[self.listener.fileno()] = selectors.EVENT_READ
                room = len(self.to_input) < _INPUT_LIMIT
                for fd, client in self.clients.items():
                    events = (selectors.EVENT_READ if room else 0) | (selectors.EVENT_WRITE if client.outgoing else 0)
                    if events:
                        wanted[fd] = events
                if self.to_input and self.input_fd is not None:
                    wanted[self.input_fd] = wanted.get(self.input_fd, 0) | selectors.EVENT_WRITE
                self._reconcile(wanted)
                for key, mask in selector.select():
                    fd = key.fd
                    if sync_open and fd == sync.fileno():
                        self._forget(fd)
                        sync_open = False
                        if not _error_pending(started):
                            self._running(started.container_pid)
                    elif fd in outputs:
                        if mask & selectors.EVENT_WRITE:
                            self._write_input()
                        if mask & selectors.EVENT_READ and not self._read_output(fd, outputs[fd], writer):
                            del outputs[fd]
                            self._close_fd(fd)
                    elif self.listener is not None and fd == self.listener.fileno():
                        self._accept()
                    elif fd in self.clients:
                        self._serve(fd, mask)
                    elif fd == self.input_fd:
                        self._write_input()
        if self.input_fd is not None and self.input_fd != self.master_fd:
            self._close_fd(self.input_fd)  # the stdin pipe: the container sees EOF (its outputs ended anyway)

    def _reconcile(self, wanted: dict[int, int]) -> None:
        for fd in [fd for fd in self._registered if fd not in wanted]:
            self._forget(fd)
        for fd, events in wanted.items():
            current = self._registered.get(fd)
            if current is None:
                self._selector.register(fd, events)
            elif current != events:
                self._selector.modify(fd, events)
            self._registered[fd] = events

    def _forget(self, fd: int) -> None:
        if self._registered.pop(fd, None) is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(fd)

    def _close_fd(self, fd: int) -> None:
        self._forget(fd)
        if fd == self.input_fd:
            self.input_fd = None
            self.to_input.clear()
        if fd == self.master_fd:
            self.master_fd = None
        with contextlib.suppress(OSError):
            os.close(fd)

    def _read_output(self, fd: int, stream: str, writer) -> bool:
        """One read of a container output into the log and every client; False at its end."""
        from sandbox.monitor import attach

        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return True
        except OSError:  # EIO: a pty whose every slave end is closed
            data = b""
        if not data:
            return False
        writer.write(stream, data)
        if self.clients:
            frames = attach.encode_data(attach.STDOUT if stream == "stdout" else attach.STDERR, data)
            for client_fd, client in list(self.clients.items()):
                if not (client.queue(frames) and client.flush()):
                    self._drop(client_fd)  # gone, or too far behind to wait for
        return True

    def _accept(self) -> None:
        from sandbox.monitor import attach

        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # EMFILE and the like: the client sees its connection reset
                return
            if attach.peer_uid(sock) != os.getuid() or len(self.clients) >= _CLIENT_LIMIT:
                sock.close()
                continue
            client = attach.Client(sock)
            self.clients[client.fileno()] = client

    def _serve(self, fd: int, mask: int) -> None:
        from sandbox.monitor import attach
        from sandbox.runtime import console

        client = self.clients[fd]
        if mask & selectors.EVENT_WRITE and not client.flush():
            self._drop(fd)
            return
        if not mask & selectors.EVENT_READ:
            return
        frames = client.receive()
        if frames is None:
            self._drop(fd)
            return
        for frame in frames:
            if frame.type == attach.STDIN:
                if self.input_fd is not None:
                    self.to_input += frame.payload
            elif frame.type == attach.RESIZE and self.master_fd is not None:
                with contextlib.suppress(attach.AttachProtocolError, OSError, ValueError):
                    console.set_window_size(self.master_fd, *attach.parse_resize(frame))
            elif frame.type == attach.DETACH:
                self._drop(fd)
                break
        if self.to_input:
            self._write_input()

    def _drop(self, fd: int) -> None:
        client = self.clients.pop(fd, None)
        self._forget(fd)
        if client is not None:
            client.close()

    def _write_input(self) -> None:
        if self.input_fd is None or not self.to_input:
            return
        try:
            written = os.write(self.input_fd, self.to_input)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EPIPE: the container closed its stdin; EIO: the pty's other side is gone
            self.to_input.clear()
            if self.input_fd != self.master_fd:
                self._close_fd(self.input_fd)
            return
        del self.to_input[:written]

    def _close_attach(self, code: int | None) -> None:
        """EXIT to every client (after the record says so), then no socket any more."""
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
        # --rm goes before anyone hears of the exit: `run --rm` returns with the container gone, as Docker's does
        if record is not None and container_dir is not None and getattr(record, "auto_remove", False):
            with contextlib.suppress(Exception):
                self.remove_dir(container_dir)
        with contextlib.suppress(Exception):
            self._close_attach(code)
        if error is not None:  # sent only if sbx still waits: before "ok"
            self._report({"error": {"message": error.message, "exit_code": error.exit_code, "hint": error.hint}})
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
