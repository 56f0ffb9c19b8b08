"""Waiting for child processes: the one waitpid loop, and Docker's exit code of a status."""

from __future__ import annotations

import contextlib
import os
import signal


def exit_code(pid: int) -> int:
    """Wait for the child ``pid``; its exit code as Docker (and a shell) gives it: its status, or 128+N when
    signal N killed it."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def reap(pid: int) -> None:
    """Wait for the child ``pid`` if it is still ours to wait for."""
    with contextlib.suppress(ChildProcessError):
        exit_code(pid)


def kill(pid: int) -> None:
    """SIGKILL the child ``pid`` and wait for it (it may be gone already)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    reap(pid)
