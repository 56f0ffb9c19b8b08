"""The working directory of a container's process (run and exec alike), checked where it was actually entered.

runc CVE-2024-21626: a working dir of ``/proc/self/fd/N``, with N an fd the runtime leaked, starts the process in a
directory of the host. A check of the *name* alone is not enough: ``//proc/1`` (POSIX keeps two leading slashes
through ``normpath``), ``/./proc``, or a symlink in the image (``/work -> /proc/1/cwd``) all reach /proc by another
spelling. So the name is checked first (a clear error for the plain cases), and then, with every fd above 2 closed
(nothing of the host is left to walk through) and after ``chdir``, the directory itself:

- ``getcwd`` is the kernel's path of the directory, computed from the mount tree, not from /proc: a directory
  outside the process's root has none (glibc reports ENOENT for the kernel's "(unreachable)" answer);
- the directory must not be on the container's proc mount (its device), whatever path led there.
"""

from __future__ import annotations

import os

from sandbox.errors import ContainerStartError
from sandbox.exitcodes import CANNOT_RUN

PROC = "/proc"


def checked_path(cwd: str | None, exit_code: int = CANNOT_RUN) -> str:
    """The normalised working dir, or ContainerStartError when its name is relative or under /proc."""
    path = os.path.normpath(cwd or "/")
    if not os.path.isabs(path):
        raise _refused(cwd or "", "it must be an absolute path outside /proc", exit_code)
    path = "/" + path.lstrip("/")  # "//proc" is "/proc" to the kernel
    if _under_proc(path):
        raise _refused(cwd or "", "it must be an absolute path outside /proc", exit_code)
    return path


def enter(kernel, path: str, exit_code: int = CANNOT_RUN) -> None:
    """``chdir(path)`` through ``kernel`` and check where that led; call it after every fd above 2 has been closed."""
    try:
        kernel.chdir(path)
    except OSError as error:
        raise ContainerStartError(f"cannot enter working directory {path}: {error.strerror}",
                                  exit_code=exit_code) from None
    try:
        where = kernel.getcwd()
    except OSError:
        raise _refused(path, "it is outside the container's root", exit_code) from None
    if not where.startswith("/") or _under_proc(where):
        raise _refused(path, f"it leads to {where[:100]!r}, under /proc", exit_code)
    try:
        proc = kernel.device_of(PROC)
    except OSError:
        return  # no /proc in the container: nothing to land on
    if kernel.device_of(".") == proc:
        raise _refused(path, "it is on the proc filesystem", exit_code)


def _under_proc(path: str) -> bool:
    return path == PROC or path.startswith(PROC + "/")


def _refused(cwd: str, why: str, exit_code: int) -> ContainerStartError:
    return ContainerStartError(f"refusing working directory {cwd[:200]!r}: {why}", exit_code=exit_code)
