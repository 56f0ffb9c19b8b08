"""What the launcher is handed for a container's network (:func:`sandbox.runtime.launcher.start`'s ``network``).

An :class:`Attachment` either joins the namespaces of another container (``join``: open fds of its user and network
namespaces, held from before the fork so a recycled pid cannot swap them) or starts a helper once pid 1 has made a
network namespace (``needs_setup``; :meth:`setup` runs in the monitor with pid 1's pid). ``none`` and ``host``
need no attachment at all.
"""

from __future__ import annotations

import contextlib
import os

from sandbox.errors import NetworkError


class Attachment:
    def __init__(self, backend=None, join: tuple[int, int] | None = None) -> None:
        self.backend = backend
        self.join = join

    @property
    def needs_setup(self) -> bool:
        return self.backend is not None

    def setup(self, pid: int) -> None:
        """In the monitor: start the helper against the namespaces of ``pid`` (pid 1) and forward the ports."""
        self.backend.start(pid)

    def enter(self, kernel) -> None:
        """In stage 1: join the other container's user namespace, then its network namespace. Only a process with
        CAP_SYS_ADMIN in the user namespace that owns a network namespace may join it; the user owns that user
        namespace (its monitor made it), so joining it first gives stage 1 exactly that."""
        from sandbox.kernel.constants import CLONE_NEWNET, CLONE_NEWUSER

        user_fd, net_fd = self.join
        for fd, kind, name in ((user_fd, CLONE_NEWUSER, "user"), (net_fd, CLONE_NEWNET, "network")):
            try:
                kernel.setns(fd, kind)
            except OSError as error:
                raise NetworkError(f"cannot join the other container's {name} namespace: {error.strerror}",
                                   hint="is the container still running?") from None
        self.close()

    def stop(self) -> None:
        if self.backend is not None:
            self.backend.stop()
        self.close()

    def close(self) -> None:
        fds, self.join = self.join or (), None
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def open_namespaces(pid: int, proc: str = "/proc") -> tuple[int, int]:
    """fds of the user and network namespaces of ``pid`` (the caller then checks the pid still is the process it
    meant, so that a recycled pid cannot hand it a stranger's namespaces)."""
    fds = []
    try:
        for name in ("user", "net"):
            fds.append(os.open(f"{proc}/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC))
    except OSError as error:
        for fd in fds:
            os.close(fd)
        raise NetworkError(f"cannot open the namespaces of process {pid}: {error.strerror}",
                           hint="is the container still running?") from None
    return fds[0], fds[1]
