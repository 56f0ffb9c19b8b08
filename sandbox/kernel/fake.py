"""A recording kernel for tests (youki's ``Syscall`` test double).

:class:`FakeKernel` accepts the same calls as :class:`sandbox.kernel.libc.Kernel`, touches nothing, and appends
each one to :attr:`FakeKernel.calls`. ``fail(op, errno, nth)`` makes the Nth call of ``op`` raise the same
``OSError(errno, "op: strerror", path)`` the real kernel would, so error paths can be tested without privileges.

The process calls keep just enough state for a test to check what a plan left behind: ``open`` hands out fd
numbers from 100 up and :attr:`FakeKernel.open_fds` holds those not closed yet (``close`` and ``close_range``
close them); ``getcwd`` answers the last ``chdir`` (or :attr:`FakeKernel.cwd` as a test sets it), ``device_of``
answers :attr:`FakeKernel.devices` (``/proc`` is device 2, anything else 1); ``execvpe`` returns where the real
one replaces the process; ``clone`` makes no child and answers :attr:`FakeKernel.clone_result` as the parent.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from sandbox.valueclass import valueclass


@valueclass
class Call:
    """One recorded call: the method name and its arguments, positionally, defaults filled in."""

    op: str
    args: tuple[Any, ...]


class FakeKernel:
    """Records calls instead of making them; see the module docstring."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._counts: Counter[str] = Counter()
        self._failures: dict[tuple[str, int], int] = {}
        self.prctl_results: dict[int, int] = {}
        self.open_fds: set[int] = set()
        self._next_fd = 100
        self.cwd: str | None = None
        self.devices: dict[str, int] = {"/proc": 2}
        self.clone_result = 4242

    def fail(self, op: str, errno: int, nth: int = 1) -> FakeKernel:
        """Make the ``nth`` call (counting from 1, over the fake's whole life) of ``op`` raise ``errno``."""
        if nth < 1:
            raise ValueError(f"nth counts from 1, got {nth}")
        if not callable(getattr(self, op, None)) or op.startswith("_") or op in ("fail", "ops"):
            raise ValueError(f"FakeKernel has no kernel call {op!r}")
        self._failures[(op, nth)] = errno
        return self

    def ops(self) -> list[str]:
        """The names of the recorded calls, in order."""
        return [call.op for call in self.calls]

    def _record(self, op: str, args: tuple[Any, ...], path: str | None = None, path2: str | None = None) -> None:
        self.calls.append(Call(op, args))
        self._counts[op] += 1
        code = self._failures.pop((op, self._counts[op]), None)
        if code is None:
            return
        if path2 is None:
            raise OSError(code, f"{op}: {os.strerror(code)}", path)
        raise OSError(code, f"{op}: {os.strerror(code)}", path, None, path2)

    def unshare(self, flags: int) -> None:
        self._record("unshare", (flags,))

    def clone(self, flags: int) -> int:
        """Returns :attr:`FakeKernel.clone_result` (a pid: the caller goes on as the parent; no child exists)."""
        self._record("clone", (flags,))
        return self.clone_result

    def setns(self, fd: int, nstype: int = 0) -> None:
        self._record("setns", (fd, nstype))

    def mount(self, source: str | None, target: str, fstype: str | None, flags: int = 0,
              data: str | None = None) -> None:
        self._record("mount", (source, target, fstype, flags, data), target)

    def umount2(self, target: str, flags: int = 0) -> None:
        self._record("umount2", (target, flags), target)

    def pivot_root(self, new_root: str, put_old: str) -> None:
        self._record("pivot_root", (new_root, put_old), new_root, put_old)

    def sethostname(self, name: str) -> None:
        self._record("sethostname", (name,))

    def setdomainname(self, name: str) -> None:
        self._record("setdomainname", (name,))

    def prctl(self, option: int, arg2: Any = 0, arg3: Any = 0, arg4: Any = 0, arg5: Any = 0) -> int:
        """Returns ``prctl_results.get(option, 0)``, so a test can script what a ``PR_GET_*`` answers."""
        self._record("prctl", (option, arg2, arg3, arg4, arg5))
        return self.prctl_results.get(option, 0)

    def setrlimit(self, resource: int, soft: int, hard: int) -> None:
        self._record("setrlimit", (resource, soft, hard))

    def sched_setaffinity(self, pid: int, cpus: frozenset[int]) -> None:
        self._record("sched_setaffinity", (pid, frozenset(cpus)))

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        self._record("capset", (effective, permitted, inheritable))

    def seccomp_filter(self, program: bytes) -> None:
        self._record("seccomp_filter", (program,))

    def setsid(self) -> None:
        self._record("setsid", ())

    def set_controlling_terminal(self, fd: int) -> None:
        self._record("set_controlling_terminal", (fd,))

    def fchown(self, fd: int, uid: int, gid: int) -> None:
        self._record("fchown", (fd, uid, gid))

    def open(self, path: str, flags: int) -> int:
        self._record("open", (path, flags), path)
        fd, self._next_fd = self._next_fd, self._next_fd + 1
        self.open_fds.add(fd)
        return fd

    def dup2(self, fd: int, target: int) -> None:
        self._record("dup2", (fd, target))

    def close(self, fd: int) -> None:
        self._record("close", (fd,))
        self.open_fds.discard(fd)

    def close_range(self, first: int, last: int) -> None:
        self._record("close_range", (first, last))
        self.open_fds -= {fd for fd in self.open_fds if first <= fd <= last}

    def setgroups(self, groups: tuple[int, ...]) -> None:
        self._record("setgroups", (tuple(groups),))

    def setresgid(self, real: int, effective: int, saved: int) -> None:
        self._record("setresgid", (real, effective, saved))

    def setresuid(self, real: int, effective: int, saved: int) -> None:
        self._record("setresuid", (real, effective, saved))

    def chdir(self, path: str) -> None:
        self._record("chdir", (path,), path)
        self.cwd = path

    def fchdir(self, fd: int) -> None:
        self._record("fchdir", (fd,))

    def chroot(self, path: str) -> None:
        self._record("chroot", (path,), path)

    def getcwd(self) -> str:
        self._record("getcwd", ())
        return self.cwd if self.cwd is not None else "/"

    def device_of(self, path: str) -> int:
        self._record("device_of", (path,), path)
        return self.devices.get(path, 1)

    def reset_signal(self, signum: int) -> None:
        self._record("reset_signal", (signum,))

    def execvpe(self, program: str, args: tuple[str, ...], env: dict[str, str]) -> None:
        self._record("execvpe", (program, tuple(args), dict(env)), program)
