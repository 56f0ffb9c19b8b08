"""The one interface a network helper implements, and what it shares: starting the helper process so that it
cannot outlive the monitor, waiting for it with a bound, stopping it.

::

    monitor                                    helper (slirp4netns, pasta)
    -------                                    ---------------------------
    backend = make_backend(mode, ...)
    launcher.start: pid 1 made the netns,
      says {"type": "netns"}
    backend.start(pid1)        ─── fork/exec ─► PR_SET_PDEATHSIG(SIGKILL); joins the user namespace of
                                               pid1 and its network namespace; configures tap0
                               ◄── ready ───── (slirp4netns: a byte on --ready-fd; pasta: its pid file)
    forward the published ports
    (slirp4netns: add_hostfwd on the API socket; pasta: its -t/-u options)
    → pid 1 goes on to its mounts and exec
    ...the container runs...
    backend.stop()             ─── close the exit fd / SIGTERM, then SIGKILL after a bound; reap; remove files

A monitor killed with SIGKILL cannot call ``stop``: slirp4netns watches ``--exit-fd`` (the monitor holds the only
write end of that pipe, so its death is EOF there) — its parent-death signal does not survive the setuid/setns it
does; pasta keeps the parent-death signal set before exec.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from sandbox.errors import NetworkError

READY_TIMEOUT = 10.0
STOP_TIMEOUT = 2.0


class Backend:
    """A helper that connects one container's network namespace to the host.

    ``runtime_dir`` is the container's 0700 runtime directory (sockets, pid and log files); ``ports`` the
    :class:`~sandbox.network.ports.PortMapping` to forward, every host port already chosen.
    """

    name = "?"
    address: str | None = None
    gateway: str | None = None
    dns: str | None = None

    def __init__(self, runtime_dir: Path, ports, kernel, program: str | None = None) -> None:
        self.runtime_dir = Path(runtime_dir)
        self.ports = tuple(ports)
        self.kernel = kernel
        self.program = program
        self.process = None
        self.mac_address = random_mac()

    def start(self, pid: int) -> None:
        """Connect the network namespace of ``pid`` (and join its user namespace to do so); forward the ports.
        Raises NetworkError, PortInUse or InvalidPort; on failure nothing is left running."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the helper (if it runs), reap it and remove its files. Safe to call more than once."""
        raise NotImplementedError

    def settings(self) -> dict:
        """What ``inspect`` shows under NetworkSettings, beside the ports."""
        return {"IPAddress": self.address or "", "Gateway": self.gateway or "", "MacAddress": self.mac_address,
                "IPPrefixLen": 24 if self.address else 0}

    # -- shared process handling ----------------------------------------------------------------------------------

    def _spawn(self, argv: list[str], pass_fds: tuple[int, ...], log: Path):
        import subprocess

        kernel = self.kernel
        from sandbox.kernel.constants import PR_SET_PDEATHSIG

        def die_with_the_monitor() -> None:
            kernel.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

        log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            self.process = subprocess.Popen(  # noqa: S603 - a fixed program and arguments sbx made
                argv, stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd, pass_fds=pass_fds, close_fds=True,
                preexec_fn=die_with_the_monitor,  # noqa: PLW1509 - the monitor is single-threaded
            )
        except OSError as error:
            raise NetworkError(f"cannot run {argv[0]}: {error.strerror}", hint=install_hint(self.name)) from None
        finally:
            os.close(log_fd)
        return self.process

    def _failed(self, log: Path, what: str) -> NetworkError:
        detail = last_line(log)
        return NetworkError(f"{self.name} {what}" + (f": {detail}" if detail else ""),
                            hint="run sbx with --network none to do without a network")

    def _terminate(self, graceful=None) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if graceful is not None:
            graceful(process)
        deadline = time.monotonic() + STOP_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()


def random_mac() -> str:
    """A locally administered unicast address (02:xx:...), as podman gives its containers."""
    tail = os.urandom(5)
    return "02:" + ":".join(f"{byte:02x}" for byte in tail)


def last_line(log: Path) -> str:
    try:
        with open(log, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 4096))
            lines = [line.strip() for line in handle.read().decode("utf-8", "replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line and not line.startswith("WARNING: Support for seccomp")]
    return lines[-1][:200] if lines else ""


def install_hint(name: str) -> str:
    package = "passt" if name == "pasta" else name
    return f"install the Debian package {package}, or run with --network none"


def make_backend(mode: str, runtime_dir: Path, ports, kernel) -> Backend:
    """The backend for a helper mode (``slirp4netns`` or ``pasta``); ``kernel`` is the monitor's KernelAPI."""
    if mode == "slirp4netns":
        from sandbox.network.slirp import Slirp4netns

        return Slirp4netns(runtime_dir, ports, kernel)
    if mode == "pasta":
        from sandbox.network.pasta import Pasta

        return Pasta(runtime_dir, ports, kernel)
    raise NetworkError(f"network {mode!r} has no helper")
