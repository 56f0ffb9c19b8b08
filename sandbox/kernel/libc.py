"""The real kernel: thin ctypes wrappers over libc.

This is the only module in sbx that imports :mod:`ctypes`. Python 3.11 has no ``os.unshare``/``os.setns``, and
``mount``, ``pivot_root`` and ``prctl`` have never been in :mod:`os`, so each call goes straight to libc. libc is
loaded on the first call, not at import, because this module sits on the ``sbx run`` start-up path.

Every failure raises ``OSError(errno, "op: strerror", path)``; Python turns that into the matching subclass
(``PermissionError``, ``FileNotFoundError``, ...), so callers catch what they expect from :mod:`os`. The calls
:mod:`os` already has (setsid, setresuid, chdir, execvpe, ...) are :mod:`os`'s, and raise its own OSError (whose
``strerror`` names no op): the exec and working-directory messages users see are built from it.
"""

from __future__ import annotations

import ctypes
import os
import signal

from sandbox.kernel.constants import (
    LINUX_CAPABILITY_VERSION_3,
    SECCOMP_SET_MODE_FILTER,
    SYS_CLONE,
    SYS_PIVOT_ROOT,
    SYS_SECCOMP,
    TIOCSCTTY,
)

TYPE_CHECKING = False  # not typing's: importing typing costs the monitor's start ~3 ms (BENCHMARKS B1)
if TYPE_CHECKING:
    from typing import Any, NoReturn

_libc: ctypes.CDLL | None = None
_pylibc: ctypes.PyDLL | None = None
_ULONG_MASK = (1 << 64) - 1  # rlim_t is an unsigned long on the 64-bit architectures sbx supports
_CPU_SET_BYTES = 128  # glibc's cpu_set_t: 1024 cpus


def _load() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        # CDLL(None) is the running process's own symbol table, which already holds libc; use_errno makes
        # ctypes copy errno out right after each call, before the interpreter can clobber it.
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        libc.prctl.restype = ctypes.c_int
        _libc = libc
    return _libc


def _load_holding_the_gil() -> ctypes.PyDLL:
    """libc again, as a PyDLL: its calls keep the GIL (and check for a Python error after them)."""
    global _pylibc
    if _pylibc is None:
        libc = ctypes.PyDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        _pylibc = libc
    return _pylibc


def _encode(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def _raise(op: str, path: str | None = None, path2: str | None = None) -> NoReturn:
    code = ctypes.get_errno()
    if path2 is None:
        raise OSError(code, f"{op}: {os.strerror(code)}", path)
    raise OSError(code, f"{op}: {os.strerror(code)}", path, None, path2)


def _check(result: int, op: str, path: str | None = None, path2: str | None = None) -> int:
    if result == -1:
        _raise(op, path, path2)
    return result


class Kernel:
    """The calls sbx makes into Linux, one method per system call; see :class:`sandbox.kernel.KernelAPI`."""

    def unshare(self, flags: int) -> None:
        _check(_load().unshare(ctypes.c_int(flags)), "unshare")

    def clone(self, flags: int) -> int:
        """clone(2) with fork's semantics plus ``flags`` (namespaces): ``syscall(SYS_clone, flags | SIGCHLD, 0,
        NULL, NULL, 0)``, no new stack, so the child goes on from here on a copy of the caller's memory, as after
        fork. Returns the child's pid (as the caller's pid namespace sees it) in the parent, 0 in the child.

        With ``CLONE_NEWUSER | CLONE_NEWPID`` the child is pid 1 of a new pid namespace owned by a new user
        namespace, and the caller stays its real parent (waitpid, PR_SET_PDEATHSIG keep their meaning): what
        ``unshare`` cannot give, since a new pid namespace only applies to the caller's later children and a new
        user namespace would take the caller in with it. The kernel refuses a threaded caller (EINVAL with
        CLONE_NEWUSER) and counts the namespaces against the user's limits (ENOSPC).

        The contract, since neither glibc's fork() nor :func:`os.fork` runs around it: the caller must be
        single-threaded (sbx's monitor is) and flush what it buffered (stdio) before. The call keeps the GIL
        (PyDLL), so the child comes back holding it, as the only thread, in a consistent interpreter; no lock
        of glibc or Python can be held by another thread. What the child does NOT get is the after-fork work:
        glibc's atfork handlers and the refresh of its cached thread id (``pthread_self``'s tid stays the
        parent's: the child must not use pthread calls aimed at itself by tid), and Python's ``os.register_at_fork``
        callbacks and pending-signal reset (``random`` is not reseeded, ``threading`` is not told). sbx's child
        only makes system calls, imports, speaks over its socket and execs (or ``_exit``s), which needs none of it.
        """
        machine = os.uname().machine
        number = SYS_CLONE.get(machine)
        if number is None:
            raise OSError(38, f"clone: no syscall number known for {machine}")  # ENOSYS
        result = _load_holding_the_gil().syscall(ctypes.c_long(number), ctypes.c_ulong(flags | signal.SIGCHLD),
                                                 ctypes.c_ulong(0), None, None, ctypes.c_ulong(0))
        return _check(result, "clone")

    def setns(self, fd: int, nstype: int = 0) -> None:
        _check(_load().setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")

    def mount(self, source: str | None, target: str, fstype: str | None, flags: int = 0,
              data: str | None = None) -> None:
        result = _load().mount(_encode(source), _encode(target), _encode(fstype), ctypes.c_ulong(flags), _encode(data))
        _check(result, "mount", target)

    def umount2(self, target: str, flags: int = 0) -> None:
        _check(_load().umount2(_encode(target), ctypes.c_int(flags)), "umount2", target)

    def pivot_root(self, new_root: str, put_old: str) -> None:
        machine = os.uname().machine  # platform.machine(), without importing platform on every start
        number = SYS_PIVOT_ROOT.get(machine)
        if number is None:
            raise OSError(38, f"pivot_root: no syscall number known for {machine}", new_root)  # ENOSYS
        result = _load().syscall(ctypes.c_long(number), _encode(new_root), _encode(put_old))
        _check(result, "pivot_root", new_root, put_old)

    def sethostname(self, name: str) -> None:
        raw = os.fsencode(name)
        _check(_load().sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname")

    def setdomainname(self, name: str) -> None:
        raw = os.fsencode(name)
        _check(_load().setdomainname(raw, ctypes.c_size_t(len(raw))), "setdomainname")

    def prctl(self, option: int, arg2: Any = 0, arg3: Any = 0, arg4: Any = 0, arg5: Any = 0) -> int:
        args = [_prctl_arg(arg) for arg in (arg2, arg3, arg4, arg5)]
        return _check(_load().prctl(ctypes.c_int(option), *args), "prctl")

    def setrlimit(self, resource: int, soft: int, hard: int) -> None:
        """``RLIM_INFINITY`` (-1 as unsigned) for no limit. Through libc, not :mod:`resource`: pid 1 calls it after
        pivot_root, where the host's Python library (and so a first ``import resource``) is out of reach."""
        limits = (ctypes.c_ulong * 2)(soft & _ULONG_MASK, hard & _ULONG_MASK)
        _check(_load().setrlimit(ctypes.c_int(resource), limits), "setrlimit")

    def sched_setaffinity(self, pid: int, cpus: frozenset[int]) -> None:
        mask = (ctypes.c_ubyte * _CPU_SET_BYTES)()
        for cpu in cpus:
            if not 0 <= cpu < _CPU_SET_BYTES * 8:
                raise OSError(22, f"sched_setaffinity: cpu {cpu} out of range")  # EINVAL
            mask[cpu // 8] |= 1 << (cpu % 8)
        _check(_load().sched_setaffinity(ctypes.c_int(pid), ctypes.c_size_t(_CPU_SET_BYTES), mask), "sched_setaffinity")


    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        """Set the calling thread's capability sets (capset(2), version 3: capabilities 0-63). The kernel refuses
        (EPERM) to raise a permitted capability, or an inheritable one outside the bounding set."""
        header, data = _cap_structs()
        for word in (0, 1):
            data[word][0] = effective >> (32 * word) & 0xFFFFFFFF
            data[word][1] = permitted >> (32 * word) & 0xFFFFFFFF
            data[word][2] = inheritable >> (32 * word) & 0xFFFFFFFF
        _check(_load().capset(ctypes.byref(header), ctypes.byref(data)), "capset")

    def seccomp_filter(self, program: bytes) -> None:
        """Install the classic BPF ``program`` (struct sock_filter[], 8 bytes each) as a seccomp filter with
        seccomp(SECCOMP_SET_MODE_FILTER). The kernel requires no_new_privs or CAP_SYS_ADMIN in the caller's user
        namespace (else EACCES); the filter is inherited across fork and execve and can never be removed."""
        machine = os.uname().machine
        number = SYS_SECCOMP.get(machine)
        if number is None:
            raise OSError(38, f"seccomp: no syscall number known for {machine}")  # ENOSYS
        if not program or len(program) % 8:
            raise OSError(22, "seccomp: a BPF program is a non-empty array of 8-byte instructions")  # EINVAL
        buffer = ctypes.create_string_buffer(program, len(program))

        class SockFprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        fprog = SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
        result = _load().syscall(ctypes.c_long(number), ctypes.c_ulong(SECCOMP_SET_MODE_FILTER), ctypes.c_ulong(0),
                                 ctypes.byref(fprog))
        _check(result, "seccomp")

    # -- a container process's plan: what :mod:`os` has is :mod:`os`'s; nothing here imports after pivot_root ----

    def setsid(self) -> None:
        os.setsid()

    def set_controlling_terminal(self, fd: int) -> None:
        """ioctl(TIOCSCTTY) through libc: the caller is a session leader without a controlling terminal. (No
        ``fcntl``/``termios`` import: a container's pid 1 calls this after pivot_root.)"""
        _check(_load().ioctl(ctypes.c_int(fd), ctypes.c_ulong(TIOCSCTTY), ctypes.c_int(0)), "ioctl(TIOCSCTTY)")

    def fchown(self, fd: int, uid: int, gid: int) -> None:
        os.fchown(fd, uid, gid)

    def open(self, path: str, flags: int) -> int:
        return os.open(path, flags)

    def dup2(self, fd: int, target: int) -> None:
        os.dup2(fd, target)  # the copy is inheritable: exec keeps it

    def close(self, fd: int) -> None:
        os.close(fd)

    def close_range(self, first: int, last: int) -> None:
        """Close fds ``first`` to ``last``, both included (os.closerange uses close_range(2) where it exists)."""
        if first <= last:
            os.closerange(first, last + 1)

    def setgroups(self, groups: tuple[int, ...]) -> None:
        os.setgroups(list(groups))

    def setresgid(self, real: int, effective: int, saved: int) -> None:
        os.setresgid(real, effective, saved)

    def setresuid(self, real: int, effective: int, saved: int) -> None:
        os.setresuid(real, effective, saved)

    def chdir(self, path: str) -> None:
        os.chdir(path)

    def fchdir(self, fd: int) -> None:
        os.fchdir(fd)

    def chroot(self, path: str) -> None:
        os.chroot(path)

    def getcwd(self) -> str:
        return os.getcwd()

    def device_of(self, path: str) -> int:
        return os.stat(path).st_dev

    def reset_signal(self, signum: int) -> None:
        """Back to the default action: Python ignores SIGPIPE and SIGXFSZ, and exec keeps an ignored signal ignored."""
        signal.signal(signum, signal.SIG_DFL)

    def execvpe(self, program: str, args: tuple[str, ...], env: dict[str, str]) -> None:
        """execve, looking ``program`` up in the PATH of the calling process's environment when it has no slash
        (as os.execvpe, Docker and runc do); returns only by raising."""
        os.execvpe(program, list(args), env)


def _cap_structs():
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    return Header(LINUX_CAPABILITY_VERSION_3, 0), ((ctypes.c_uint32 * 3) * 2)()


def _prctl_arg(value: Any) -> Any:
    # prctl's variadic arguments are unsigned longs; PR_SET_NAME takes a pointer to a NUL-terminated name.
    if isinstance(value, str):
        return ctypes.c_char_p(os.fsencode(value))
    if isinstance(value, bytes):
        return ctypes.c_char_p(value)
    return ctypes.c_ulong(value)
