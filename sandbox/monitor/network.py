"""The monitor's share of the container's network: it owns the helper's whole life.

Before the launcher forks: choose the free host ports (``-P``, ``-p 80``), check every published port can be bound
(a clash stops the container before it starts, naming the user's container that holds the port), or open the
namespaces of the container to join (``container:ID``). During the start: the launcher's "netns" step calls
:meth:`Attachment.setup`, which starts the helper. Afterwards: the ports and addresses go into the record for
``ps``, ``port`` and ``inspect``; when the container ends (or fails to start) :func:`stop` stops the helper, reaps
it and removes its files before the exit is recorded, so no one who saw the container exit sees its helper.
"""

from __future__ import annotations

from pathlib import Path

from sandbox.errors import NetworkError

SETTINGS_KEY = "network_settings"


def attach(store, record, spec, runtime_dir: Path, kernel):
    """The :class:`~sandbox.network.attach.Attachment` for ``spec``'s mode (None for none and host); its helper
    makes its kernel calls through ``kernel``."""
    from sandbox.network.modes import joined_container, needs_helper

    target = joined_container(spec.network)
    if target is not None:
        return _join(store, target)
    if not needs_helper(spec.network):
        return None
    from sandbox.network.attach import Attachment
    from sandbox.network.backend import make_backend
    from sandbox.network.ports import assign, check_free, check_unprivileged, unprivileged_port_start

    check_unprivileged(spec.ports, unprivileged_port_start())
    ports = assign(spec.ports)
    check_free(ports, holder=lambda mapping: holder(store, mapping, record.id))
    return Attachment(backend=make_backend(spec.network, runtime_dir, ports, kernel))


def _join(store, target: str):
    from sandbox.errors import ContainerNotFound
    from sandbox.network.attach import Attachment, open_namespaces

    try:
        other = store.observe(store.get(target))
    except ContainerNotFound:
        raise NetworkError(f"cannot join the network of container {target[:12]}: it no longer exists") from None
    if other.state.value != "running" or not other.pid:
        raise NetworkError(f"cannot join the network of container {other.name}: it is not running",
                           hint=f"start it first: sbx start {other.name}")
    attachment = Attachment(join=open_namespaces(other.pid))
    if not store.alive(other):  # the pid was recycled between the look and the open: not its namespaces
        attachment.close()
        raise NetworkError(f"cannot join the network of container {other.name}: it is not running")
    return attachment


def holder(store, mapping, own_id: str) -> str | None:
    """The name of this user's running container that publishes ``mapping``'s host port, if one does."""
    from sandbox.network.ports import PortMapping

    for record in store.list():
        if record.id == own_id or record.state.value != "running":
            continue
        for item in (record.spec or {}).get(SETTINGS_KEY, {}).get("ports", []):
            try:
                other = PortMapping.from_json(item)
            except Exception:  # noqa: BLE001 - another record's damage is not this start's
                continue
            same = other.host_port == mapping.host_port and other.proto == mapping.proto
            overlap = other.host_ip == mapping.host_ip or "0.0.0.0" in (other.host_ip, mapping.host_ip)
            if same and overlap:
                return record.name
    return None


def with_settings(spec: dict | None, attachment) -> dict | None:
    """The record's spec summary with the forwarded ports and the addresses (``ps``, ``port``, ``inspect``), for
    the monitor's "running" write; None when there is nothing to add (none, host, container:ID)."""
    backend = getattr(attachment, "backend", None)
    if backend is None:
        return None
    try:
        settings = {"ports": [mapping.to_json() for mapping in backend.ports], "backend": backend.name,
                    **backend.settings()}
    except Exception:  # noqa: BLE001 - the container runs; only what ps shows of it is missing
        return None
    return {**(spec or {}), SETTINGS_KEY: settings}


def stop(attachment) -> None:
    if attachment is not None:
        attachment.stop()


def handed(attachment) -> dict | None:
    """What the finish needs to stop the helper once the monitor has exec'ed its steady state (and back): its kind,
    its runtime directory, its pid (the monitor's child still) and, for slirp4netns, the exit pipe's write end, which
    must then stay open across both execs. None for no helper."""
    backend = getattr(attachment, "backend", None)
    if backend is None or backend.process is None:
        return None
    return {"mode": backend.name, "runtime_dir": str(backend.runtime_dir), "pid": backend.process.pid,
            "exit_fd": getattr(backend, "exit_w", None)}


def adopt(handed: dict | None):
    """The :class:`~sandbox.network.attach.Attachment` of a helper handed on by :func:`handed`, for :func:`stop`:
    its backend stops the running process as its own (graceful, then SIGKILL after the bound, reaped) and removes
    its files."""
    if not handed:
        return None
    from sandbox.network.attach import Attachment
    from sandbox.network.backend import make_backend

    backend = make_backend(handed["mode"], Path(handed["runtime_dir"]), (), None)
    backend.process = _Child(int(handed["pid"]))
    if handed.get("exit_fd") is not None:
        backend.exit_w = int(handed["exit_fd"])
    return Attachment(backend=backend)


class _Child:
    """A child of this process started before an exec, as much of ``subprocess.Popen`` as a backend's stop uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        import os

        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, number: int) -> None:
        import os

        if self.poll() is None:
            os.kill(self.pid, number)

    def kill(self) -> None:
        import signal

        self.send_signal(signal.SIGKILL)

    def wait(self) -> int:
        from sandbox.runtime import reap

        if self.returncode is None:
            try:
                self.returncode = reap.exit_code(self.pid)
            except ChildProcessError:
                self.returncode = -1
        return self.returncode
