"""Layer L1: the only package that calls into Linux directly (through libc, with ctypes).

Everything above receives a :class:`KernelAPI` as a parameter: :class:`Kernel` in production, :class:`FakeKernel`
in tests. Both are imported on first use, so ``import sandbox.kernel`` costs neither ctypes nor libc.

Every call that fails raises ``OSError(errno, "op: strerror", path)``, i.e. ``PermissionError``,
``FileNotFoundError``, ... as :mod:`os` would. ``unshare(CLONE_NEWUSER)`` needs a single-threaded process, which
is why sbx forks before starting any thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sandbox.kernel.fake import Call, FakeKernel
    from sandbox.kernel.libc import Kernel

__all__ = ["Call", "FakeKernel", "Kernel", "KernelAPI"]


class KernelAPI(Protocol):
    """The kernel calls sbx makes. Paths are ``str``; flags come from :mod:`sandbox.kernel.constants`."""

    def unshare(self, flags: int) -> None: ...

    def setns(self, fd: int, nstype: int = 0) -> None: ...

    def mount(
        self,
        source: str | None,
        target: str,
        fstype: str | None,
        flags: int = 0,
        data: str | None = None,
    ) -> None: ...

    def umount2(self, target: str, flags: int = 0) -> None: ...

    def pivot_root(self, new_root: str, put_old: str) -> None: ...

    def sethostname(self, name: str) -> None: ...

    def setdomainname(self, name: str) -> None: ...

    def prctl(self, option: int, arg2: Any = 0, arg3: Any = 0, arg4: Any = 0, arg5: Any = 0) -> int: ...

    def setrlimit(self, resource: int, soft: int, hard: int) -> None: ...

    def sched_setaffinity(self, pid: int, cpus: frozenset[int]) -> None: ...

    def capset(self, effective: int, permitted: int, inheritable: int) -> None: ...

    def seccomp_filter(self, program: bytes) -> None: ...

    # -- the calls of a container process's plan (sandbox.runtime.plan) and of the exec joiner ---------------------

    def setsid(self) -> None: ...

    def set_controlling_terminal(self, fd: int) -> None: ...

    def fchown(self, fd: int, uid: int, gid: int) -> None: ...

    def open(self, path: str, flags: int) -> int: ...

    def dup2(self, fd: int, target: int) -> None: ...

    def close(self, fd: int) -> None: ...

    def close_range(self, first: int, last: int) -> None: ...

    def setgroups(self, groups: tuple[int, ...]) -> None: ...

    def setresgid(self, real: int, effective: int, saved: int) -> None: ...

    def setresuid(self, real: int, effective: int, saved: int) -> None: ...

    def chdir(self, path: str) -> None: ...

    def fchdir(self, fd: int) -> None: ...

    def chroot(self, path: str) -> None: ...

    def getcwd(self) -> str: ...

    def device_of(self, path: str) -> int: ...

    def reset_signal(self, signum: int) -> None: ...

    def execvpe(self, program: str, args: tuple[str, ...], env: dict[str, str]) -> None: ...


def __getattr__(name: str) -> Any:
    if name == "Kernel":
        from sandbox.kernel.libc import Kernel

        return Kernel
    if name in ("FakeKernel", "Call"):
        from sandbox.kernel import fake

        return getattr(fake, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
