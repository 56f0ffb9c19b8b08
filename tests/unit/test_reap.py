"""sandbox.runtime.reap: Docker's exit code of a child (its status, or 128+N for signal N), and reaping."""

from __future__ import annotations

import os
import signal

import pytest

from sandbox.runtime import reap


def _child(action) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            action()
        finally:
            os._exit(99)
    return pid


@pytest.mark.parametrize("status", [0, 1, 125, 255])
def test_exit_status(status):
    assert reap.exit_code(_child(lambda: os._exit(status))) == status


@pytest.mark.parametrize("number", [signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV])
def test_a_signal_is_128_plus_its_number(number):
    assert reap.exit_code(_child(lambda: os.kill(os.getpid(), number))) == 128 + number


def test_kill_ends_and_reaps_a_child():
    read_end, write_end = os.pipe()
    pid = _child(lambda: os.read(read_end, 1))  # blocks until killed: the parent never writes
    reap.kill(pid)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped
    reap.reap(pid)  # no longer ours to wait for: nothing raised
    os.close(read_end)
    os.close(write_end)
