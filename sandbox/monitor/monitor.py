"""The per-container monitor (the role conmon plays for podman): one detached process per running container.

::

    sbx (service)                     middle child                  monitor (grandchild)
    -------------                     ------------                  --------------------
    socketpair, fork ─────────────►   setsid, fork ───────────────► subreaper; stdio → /dev/null; inherited fds
    waitpid(middle)             ◄───  exit 0                        pointed at /dev/null; record = store.get(id)
                                                                    spec, dir = build_spec(record)
                                                                    launcher.start(stdio = /dev/null + 2 pipes,
                                                                                   or a pty)
                                                                    wait for the exec: EOF on the sync socket
                                                                    record: RUNNING, pid, start times, boot id
    expect RUNNING              ◄───────────────────────────────── RUNNING {pid: CONTAINER_PID, monitor: PID}
    (or ContainerStartError     ◄───────────────────────────────── ERROR {class, message, hint, exit_code}
     from an ERROR)                                                    copy stdout/stderr into ctr.log until EOF
                                                                    launcher.wait → its cgroup released (OOM
                                                                    noted) → --rm: remove_dir(container dir);
                                                                    else (or that failed) record: EXITED, code

`sbx run` forks its monitor before the container exists (:func:`sandbox.monitor.detached.prepare`): the monitor
imports what it will need (ctypes and the launcher, the store, the spec) on the other CPU while sbx resolves the
image and records and builds the container, then waits on the report socket for GO with the container's id; EOF
there (sbx failed first) ends it quietly. From GO on it is the monitor drawn above (:func:`serve`), reading the
spec from the record as `start` does.

A detached monitor (``finish`` given) hands the middle of that over: right after RUNNING it execs the lean loop of
:mod:`sandbox.monitor.steady` (the copy into ctr.log, attach, SIGTERM, the wait), which execs the full code back
for what follows the exit (:mod:`sandbox.monitor.handoff`); the pid never changes.

The double fork, the detaching, the report socket and the attach loop are the generic supervisor of
:mod:`sandbox.monitor.session` (the exec holder runs on it too); what is the monitor's own is the container: its
record, its log, --rm. The monitor ignores SIGINT and SIGHUP and forwards SIGTERM to the container's pid 1. RUNNING is
sent once the command has been exec'ed (the launcher's sync socket is close-on-exec, so it reads EOF), which is why
a missing command is still reported to sbx as an error (exit code 127) rather than as a container that exits at once.

With a runtime root the monitor also serves the attach socket (its frames are drawn in :mod:`sandbox.monitor.attach`)
from the same single-threaded selector loop: output goes to the log and to every client, input from any client to
the pty master (or, with -i, to a pipe that is the container's stdin), a client's RESIZE sets the pty's size. A client
that goes away, or falls too far behind, is dropped and nothing happens to the container. After the exit has been
recorded every client gets EXIT with the code, and the socket is removed.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Callable
from pathlib import Path

from sandbox.errors import ContainerStartError
from sandbox.monitor.detached import MONITOR
from sandbox.monitor.session import SPAWN_TIMEOUT, Names, Supervisor
from sandbox.monitor.session import spawn as spawn_supervisor
from sandbox.runtime.sync import as_start_error

LOG_NAME = "ctr.log"
NAMES = Names(MONITOR, "the container")


def spawn(
    store_root: Path,
    container_id: str,
    build_spec: Callable[[object], tuple[object, Path]],
    remove_dir: Callable[[Path], None],
    *,
    timeout: float = SPAWN_TIMEOUT,
    runtime_root: Path | None = None,
    on_listening: Callable[[Path], None] | None = None,
    finish: tuple[str, dict] | None = None,
) -> int:
    """Start a detached monitor for the container and return its pid once the container runs.

    ``build_spec(record) -> (ContainerSpec, container_dir)`` runs in the monitor. With ``runtime_root`` the
    monitor serves the attach socket ``runtime_root/<id>/attach.sock`` (:mod:`sandbox.monitor.attach`). Raises
    :class:`ContainerStartError` (with Docker's exit code: 125, 127) when the container could not start.

    ``on_listening(socket_path)`` (with ``runtime_root``) is how a foreground `run` attaches before anything runs:
    the monitor says "listening", waits for that first client, and only then starts the container, so no output
    is lost however quickly the command ends.

    ``finish`` (``(entry, params)``, a detached start; not with ``--network container:ID``): once the container
    runs the monitor execs its lean steady state (:mod:`sandbox.monitor.handoff`), which execs ``entry`` in a
    fresh interpreter with ``params`` and the exit when the container has ended.
    """
    socket_path = _socket_path(runtime_root, container_id)

    def main(report_fd: int) -> None:
        monitor = Monitor(Path(store_root), container_id, build_spec, remove_dir, report_fd,
                          socket_path=socket_path, hold=on_listening is not None)
        monitor.finish = finish
        monitor.run()

    listening = announced(runtime_root, container_id, on_listening)
    return int(spawn_supervisor(main, NAMES, timeout=timeout, on_listening=listening)["monitor"])


def spawn_fresh(entry: str, params: dict, container_id: str, *, runtime_root: Path | None = None,
                timeout: float = SPAWN_TIMEOUT, on_listening: Callable[[Path], None] | None = None) -> int:
    """:func:`spawn` for sbx's own starts: the monitor is a fresh interpreter (:mod:`sandbox.monitor.fresh`) that
    runs ``entry(report_fd, params)``, which calls :func:`serve`. The monitor's pid once the container runs."""
    from sandbox.monitor import fresh

    listening = announced(runtime_root, container_id, on_listening)
    params = {**params, "title": f"sbx ({NAMES.supervisor})", "hold": listening is not None}
    return int(fresh.spawn(entry, params, NAMES, timeout=timeout, on_listening=listening)["monitor"])


def serve(report_fd: int, store_root: Path, container_id: str, build_spec, remove_dir, *,
          runtime_root: Path | None = None, hold: bool = False, fresh: bool = True,
          finish: tuple[str, dict] | None = None, meanwhile: Callable[[], object] | None = None) -> None:
    """The monitor's whole life in the process that :func:`spawn_fresh` started (``fresh``) or
    :func:`sandbox.monitor.detached.prepare` forked; ``finish`` as for :func:`spawn`. ``meanwhile()`` runs once
    pid 1 has its GO, while it makes its mounts (the monitor has nothing else to do then)."""
    socket_path = _socket_path(runtime_root, container_id)
    monitor = Monitor(Path(store_root), container_id, build_spec, remove_dir, report_fd, socket_path=socket_path,
                      hold=hold and socket_path is not None)
    monitor.fresh = fresh
    monitor.finish = finish
    monitor.meanwhile = meanwhile
    monitor.run()


def announced(runtime_root: Path | None, container_id: str,
              on_listening: Callable[[Path], None] | None) -> Callable[[], None] | None:
    """What the starter runs at LISTENING: ``on_listening(attach socket path)``, or None when nobody waits to
    attach (no ``on_listening``) or nothing can be attached to (no runtime root)."""
    socket_path = _socket_path(runtime_root, container_id)
    if on_listening is None or socket_path is None:
        return None
    return lambda: on_listening(socket_path)


def _socket_path(runtime_root: Path | None, container_id: str) -> Path | None:
    from sandbox.monitor import attach

    return attach.socket_path(Path(runtime_root), container_id) if runtime_root else None


class Monitor(Supervisor):
    """The container's supervisor: its record (RUNNING, then EXITED with the code), its log, and --rm."""

    fresh = False  # started by spawn_fresh: it prepares a fork of stage 1 (_before_fork); a forked one does not
    finish: tuple[str, dict] | None = None  # detached: hand the running container to the steady state (spawn)
    meanwhile: Callable[[], object] | None = None  # run while pid 1 makes its mounts (serve)

    def __init__(self, store_root: Path, container_id: str, build_spec, remove_dir, report_fd: int, *,
                 socket_path: Path | None = None, hold: bool = False) -> None:
        from sandbox.store.containers import ContainerStore

        super().__init__(report_fd, socket_path=socket_path, hold=hold)
        self.store = ContainerStore(store_root)
        self.id = container_id
        self.build_spec = build_spec
        self.remove_dir = remove_dir

    def run(self) -> None:
        from sandbox.kernel import Kernel
        from sandbox.monitor import network
        from sandbox.runtime import launcher
        from sandbox.store.containers import ContainerState

        self.kernel = Kernel()  # the monitor's one kernel: the container's stages and its network helper get it
        container_dir: Path | None = None
        record = None
        self.network = None
        self.running_spec = None  # the spec summary with the network's settings, written with the running state
        try:
            record = self.store.get(self.id)
            spec, container_dir = self.build_spec(record)
            self.container_dir = container_dir
            self._listen()
            self.network = network.attach(self.store, record, spec, self._runtime_dir(container_dir), self.kernel)
            if self.fresh and getattr(self.network, "join", None):
                _before_fork()  # only --network container: forks a stage 1 that lives as long as the container
            started, sources = self._start(launcher, spec, container_dir, record)
            self.running_spec = network.with_settings(record.spec, self.network)
            # sbx connects while pid 1 is made (its output waits in the pipes or the pty until the pump reads it)
            self._first_client()
            if self.meanwhile is not None:
                self.meanwhile()
        except BaseException as error:
            network.stop(self.network)
            self._finish(as_start_error(error), None, container_dir, record)
            return
        error, code = self._supervise(started, sources, lambda: _Writer(container_dir / LOG_NAME))
        network.stop(self.network)  # before the exit is recorded: whoever sees it exited sees no helper
        self._finish(error, code, container_dir, record, state=ContainerState.EXITED)

    def _settled(self, started, outputs: dict[int, str]) -> None:
        if self.finish is not None and not getattr(self.network, "join", None):
            from sandbox.monitor.handoff import into_steady

            into_steady(self, started, outputs, self.container_dir / LOG_NAME)  # returns only if the exec failed

    def _runtime_dir(self, container_dir: Path) -> Path:
        """Where the network helper keeps its socket and files: beside the attach socket (0700), else the
        container's own directory."""
        return self.socket_path.parent if self.socket_path is not None else container_dir

    def _start(self, launcher, spec, container_dir: Path, record):
        """Start the container; its outputs as {fd: stream}. Attached input goes to the pty master, or with -i
        to a pipe that is the container's stdin (without -i its stdin is /dev/null, as with Docker)."""
        if spec.process.tty:
            started = launcher.start(spec, container_dir, self.kernel, network=self.network)
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
            started = launcher.start(spec, container_dir, self.kernel, stdio=(stdin, out_w, err_w),
                                     network=self.network, close_in_child=(stdin_w,) if stdin_w is not None else ())
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
            **({"spec": self.running_spec} if self.running_spec is not None else {}),
        )
        super()._running(pid)

    def _finish(self, error: ContainerStartError | None, code: int | None, container_dir: Path | None, record,
                state=None) -> None:
        """Record the end, run --rm, then EXIT to the clients and the error to sbx if it still waits."""
        from sandbox.store.containers import ContainerState

        if container_dir is not None:  # its cgroup: OOM noted, cgroup.kill, rmdir (before anyone hears of the exit)
            from sandbox.cgroups.tree import release

            with contextlib.suppress(Exception):
                release(container_dir)
        if error is not None:
            code = error.exit_code
        changes: dict = {"state": state or ContainerState.EXITED, "exit_code": code, "finished_at": time.time()}
        if error is not None:
            changes["error"] = error.message
        # --rm goes before anyone hears of the exit: `run --rm` returns with the container gone, as Docker's does.
        # The end is recorded only when the container stays: kept, or left behind by a removal that failed.
        removed = False
        if record is not None and container_dir is not None and getattr(record, "auto_remove", False):
            with contextlib.suppress(Exception):
                self.remove_dir(container_dir)
                removed = True
        if record is not None and not removed:
            with contextlib.suppress(Exception):
                self.store.update(self.id, **changes)
        self._conclude(error, code)


def _before_fork() -> None:
    """With ``--network container:ID`` a stage 1 is forked from the monitor and lives as long as the container (pid
    1 itself is cloned and execs at once otherwise): every page either of them writes after the fork is held twice.
    So what the monitor imports later anyway is imported now, and the objects made so far are frozen (``gc.freeze``):
    no collection on either side walks, and so writes to, what they share. Only in a fresh monitor: in one forked
    from sbx the collection of sbx's whole heap would delay every start."""
    from sandbox.cgroups import tree  # noqa: F401 - placing the container, releasing its cgroup
    from sandbox.monitor import attach, logs  # noqa: F401 - the pump and the log writer
    from sandbox.network import modes  # noqa: F401 - stage 1's own imports: done once, here
    from sandbox.runtime import nsjob  # noqa: F401

    gc.collect()
    gc.freeze()


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
