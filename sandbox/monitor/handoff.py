"""The detached monitor's two execs: into its lean steady state once the container runs, back into the full code
once it has ended.

::

    forked from sbx: setup (record, spec, cgroup, clone pid 1) ── RUNNING to sbx ──► into_steady(): execve
    python -I -S: sandbox.monitor.steady (pump, attach, SIGTERM, wait) ── pid 1 ended, output drained ──► execve
    python -I -S: sandbox.monitor.fresh → entry (service.monitoring.finish) → conclude(): EXITED, cgroup, --rm, EXIT

The pid stays the same throughout (the record's monitor pid and start time stay true, pid 1 stays its child), so
``ps``, ``stop``, ``wait`` and a killed monitor behave as with one process. Only fds, pids, the container's id and
sbx's roots cross an exec (and, with a network helper, its kind, pid, runtime directory and exit fd): never what
the user passed (it stays in the record).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from pathlib import Path

FLUSH_TIMEOUT = 1.0  # what an attached client is owed is sent within this, or the client is dropped


def into_steady(monitor, started, outputs: dict[int, str], log_path: Path) -> None:
    """Exec ``monitor`` (a :class:`sandbox.monitor.monitor.Monitor` whose container runs, RUNNING sent) into
    :mod:`sandbox.monitor.steady`. Returns only when the exec failed; the full loop then goes on."""
    from sandbox.monitor import fresh, network, steady
    from sandbox.monitor.monitor import NAMES

    entry, params = monitor.finish
    title = f"sbx ({NAMES.supervisor})"
    clients = []
    for fd, client in list(monitor.clients.items()):
        try:  # what it is owed goes now (bounded): the steady loop starts with empty queues
            client.send_all(timeout=FLUSH_TIMEOUT)
            clients.append(fd)
        except OSError:
            monitor._drop(fd)
    listener = monitor.listener.fileno() if monitor.listener is not None else None
    state = {
        "pid": started.stage1,
        "target": started.container_pid,
        "out": [f"{fd}:{stream}" for fd, stream in outputs.items()],
        "master": monitor.master_fd,
        "input": monitor.input_fd,
        "listener": listener,
        "clients": clients,
        "log": str(log_path),
    }
    helper = network.handed(monitor.network)
    finish = [*fresh.command(entry, {**params, "title": title, "container_dir": str(log_path.parent),
                                     "network": helper}), "-1"]
    path, argv = steady.argv(fresh.interpreter(), title, fresh.search_path()[0], state, finish)
    helper_fd = helper["exit_fd"] if helper else None  # slirp4netns exits at its EOF: held until the finish
    passed = [fd for fd in (*outputs, monitor.master_fd, monitor.input_fd, listener, *clients, helper_fd)
              if fd is not None]
    for fd in passed:
        os.set_inheritable(fd, True)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # pending across the exec, not lost to SIG_DFL
    try:
        os.execv(path, argv)
    except OSError:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        for fd in passed:
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)


def handed(words: list[str]) -> dict[str, str]:
    """What the steady state appended to the finish's argv: ``exit=N``, ``listener=FD``, ``clients=FD,...``,
    ``error=WHAT``."""
    return dict(word.partition("=")[::2] for word in words)


def conclude(store_root: Path, container_id: str, container_dir: Path, remove_dir, words: dict[str, str], *,
             socket_path: Path | None, helper: dict | None = None) -> None:
    """The monitor after the steady state: what a monitor does once its container has exited (the network helper
    stopped, EXITED and the code, the cgroup released with its OOM note, --rm, EXIT to the clients, the socket
    removed, orphans reaped). ``helper``: what :func:`sandbox.monitor.network.handed` said of it."""
    from sandbox.errors import ContainerStartError
    from sandbox.exitcodes import CANNOT_RUN
    from sandbox.monitor import frames, network
    from sandbox.monitor.monitor import Monitor
    from sandbox.store.containers import ContainerState

    monitor = Monitor(Path(store_root), container_id, None, remove_dir, None, socket_path=socket_path)
    if words.get("listener"):
        monitor.listener = socket.socket(fileno=int(words["listener"]))
    for fd in (int(item) for item in words.get("clients", "").split(",") if item):
        client = frames.Client(socket.socket(fileno=fd))  # the pump's own client, as every supervisor's
        monitor.clients[client.fileno()] = client
    try:
        record = monitor.store.get(container_id)
    except Exception:  # noqa: BLE001 - removed meanwhile (rm -f): nothing to record, the clients still hear
        record = None
    error = None
    if words.get("error"):
        error = ContainerStartError("the container monitor could not write the container's log",
                                    exit_code=CANNOT_RUN)
    code = int(words["exit"]) if words.get("exit", "").lstrip("-").isdigit() else None
    network.stop(network.adopt(helper))  # before the exit is recorded: whoever sees it exited sees no helper
    monitor._finish(error, code, Path(container_dir), record, state=ContainerState.EXITED)
