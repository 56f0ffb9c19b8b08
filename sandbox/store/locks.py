"""Advisory file locks between sbx processes (``fcntl.flock``).

``flock`` locks belong to an open file description, so the kernel drops them when the holder dies, even by SIGKILL:
a crashed pull never leaves the store locked. Two opens in one process are two descriptions, so threads that each
take their own :class:`FileLock` exclude each other as processes do (and a holder must never take the same lock a
second time: it would wait on itself).

Waiting polls with ``LOCK_NB`` and a growing sleep, because a blocking ``flock`` cannot time out without signals.

A lock file may be removed by its holder (``remove=True``) so per-blob lock files do not pile up. A waiter that then
wins the lock on the removed inode notices that the path no longer names the file it locked and starts again on
the new file, so two holders can never believe they hold the same path.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from pathlib import Path

from sandbox.errors import LockTimeout
from sandbox.store.atomic import store_error, unlink

_FIRST_DELAY = 0.002
_MAX_DELAY = 0.1


class FileLock:
    """``with FileLock(path, timeout):`` holds an exclusive lock on ``path``, creating the file when needed."""

    def __init__(
        self, path: str | os.PathLike[str], timeout: float = 300.0, *, shared: bool = False, remove: bool = False
    ) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.shared = shared
        self.remove = remove
        self._fd: int | None = None

    @property
    def locked(self) -> bool:
        return self._fd is not None

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock: wait up to ``timeout`` seconds (LockTimeout), or return False at once if not ``blocking``."""
        if self._fd is not None:
            raise RuntimeError(f"lock {self.path} is already held by this object")
        operation = (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        deadline = time.monotonic() + self.timeout
        delay = _FIRST_DELAY
        fd: int | None = None
        while True:
            if fd is None:
                try:
                    fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                except OSError as exc:
                    raise store_error(exc, "open lock file", self.path) from exc
            try:
                fcntl.flock(fd, operation)
            except BlockingIOError:
                remaining = deadline - time.monotonic()
                if not blocking or remaining <= 0:
                    os.close(fd)
                    if not blocking:
                        return False
                    raise LockTimeout(
                        f"timed out after {self.timeout:g}s waiting for lock {self.path}",
                        hint="another sbx process is using the store; wait for it to finish or stop it",
                        path=str(self.path),
                    ) from None
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, _MAX_DELAY)
                continue
            except OSError as exc:
                os.close(fd)
                raise store_error(exc, "lock", self.path) from exc
            if _same_file(fd, self.path):
                self._fd = fd
                return True
            # The previous holder removed the file while we waited: lock the file the path names now.
            os.close(fd)
            fd = None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self.remove:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        os.close(fd)  # closing the only descriptor drops the flock

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"FileLock({str(self.path)!r}, locked={self.locked})"


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise store_error(exc, "stat", path) from exc
    mine = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)


def try_lock_fd(fd: int) -> bool:
    """Try an exclusive flock on an open file; False when another description holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def create_locked(directory: Path, suffix: str) -> tuple[int, Path]:
    """Create ``directory/<random><suffix>`` and hold an exclusive flock on it.

    A collector removes such a file only while holding its lock, so after locking we check the path still names
    our file; if a collector raced us between create and lock, we try again under another name.
    """
    while True:
        path = directory / f"{os.urandom(16).hex()}{suffix}"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            continue
        except OSError as exc:
            raise store_error(exc, "create", path) from exc
        if try_lock_fd(fd) and _same_file(fd, path):
            return fd, path
        os.close(fd)


def _open_for_lock(path: Path) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            return None
        raise store_error(exc, "open", path) from exc


def remove_if_unlocked(path: Path) -> bool:
    """Remove a temp file whose writer is gone (nobody holds its flock); keep it while its writer lives."""
    fd = _open_for_lock(path)
    if fd is None:
        return False
    try:
        if not try_lock_fd(fd):
            return False
        return unlink(path)  # under the lock: the writer's create_locked notices if it raced us
    finally:
        os.close(fd)


def read_if_locked(path: Path) -> bytes | None:
    """A lease's content if its process is alive (holds the flock); a dead process's lease is removed."""
    fd = _open_for_lock(path)
    if fd is None:
        return None
    try:
        if try_lock_fd(fd):
            unlink(path)
            return None
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise store_error(exc, "read", path) from exc
    finally:
        os.close(fd)
