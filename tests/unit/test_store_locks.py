"""FileLock and write_atomic: the two primitives every store write stands on."""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import threading
import time

import pytest

from sandbox.errors import LockTimeout, NoSpace, StoreError
from sandbox.store.atomic import store_error, write_atomic
from sandbox.store.locks import FileLock

FORK = multiprocessing.get_context("fork")


def _hold_lock(path, ready):
    lock = FileLock(path, timeout=5)
    lock.acquire()
    ready.set()
    time.sleep(30)  # until killed (an Event wait would leave the Event broken when killed)


def test_lock_excludes_and_times_out_naming_the_lock(tmp_path):
    path = tmp_path / "store.lock"
    with FileLock(path, timeout=5):
        other = FileLock(path, timeout=0.2)
        with pytest.raises(LockTimeout) as info:
            other.acquire()
        assert str(path) in str(info.value)
        assert info.value.path == str(path)
        assert other.acquire(blocking=False) is False
    with FileLock(path, timeout=0.2) as again:
        assert again.locked
    assert not again.locked


def test_lock_waits_for_a_release(tmp_path):
    path = tmp_path / "l.lock"
    first = FileLock(path, timeout=5)
    first.acquire()
    threading.Timer(0.1, first.release).start()
    with FileLock(path, timeout=5) as second:
        assert second.locked
        assert not first.locked


def test_lock_held_by_another_process_is_released_when_it_is_killed(tmp_path):
    path = tmp_path / "l.lock"
    ready = FORK.Event()
    child = FORK.Process(target=_hold_lock, args=(path, ready))
    child.start()
    try:
        assert ready.wait(5)
        assert FileLock(path, timeout=0.1).acquire(blocking=False) is False
        os.kill(child.pid, signal.SIGKILL)
        child.join(5)
        with FileLock(path, timeout=2) as lock:
            assert lock.locked
    finally:
        child.kill()
        child.join(5)


def test_removed_lock_file_is_not_shared_by_two_holders(tmp_path):
    """A holder that removes the file on release must not let a waiter and a newcomer both hold the path."""
    path = tmp_path / "blob.lock"
    first = FileLock(path, timeout=5, remove=True)
    first.acquire()
    got = []

    def waiter():
        with FileLock(path, timeout=5, remove=True):
            got.append("waiter")
            time.sleep(0.2)
            got.append("waiter done")

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.05)
    first.release()
    time.sleep(0.05)
    with FileLock(path, timeout=5, remove=True):
        got.append("newcomer")
    thread.join()
    assert got == ["waiter", "waiter done", "newcomer"]
    assert not path.exists()


def test_write_atomic_replaces_content_with_mode(tmp_path):
    path = tmp_path / "rec.json"
    write_atomic(path, b"one")
    write_atomic(path, b"two", mode=0o644)
    assert path.read_bytes() == b"two"
    assert path.stat().st_mode & 0o777 == 0o644
    assert sorted(os.listdir(tmp_path)) == ["rec.json"]


@pytest.mark.parametrize("call", ["write", "fsync"])
def test_write_atomic_enospc_is_nospace_and_leaves_no_temp(tmp_path, monkeypatch, call):
    path = tmp_path / "rec.json"
    write_atomic(path, b"old")
    real = getattr(os, call)

    def full(fd, *args):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path)):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, *args)

    monkeypatch.setattr(os, call, full)
    with pytest.raises(NoSpace) as info:
        write_atomic(path, b"new")
    assert "ENOSPC" in str(info.value)
    assert info.value.hint
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["rec.json"]
    assert path.read_bytes() == b"old"


def test_other_oserrors_are_store_errors_with_the_path(tmp_path):
    error = store_error(OSError(errno.EIO, "Input/output error"), "write", tmp_path / "x")
    assert type(error) is StoreError
    assert str(tmp_path / "x") in str(error)
    assert error.path == str(tmp_path / "x")
    quota = store_error(OSError(errno.EDQUOT, "Disk quota exceeded"), "write", tmp_path / "x")
    assert isinstance(quota, NoSpace)
