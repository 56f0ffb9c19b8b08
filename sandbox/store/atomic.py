"""Crash-safe file writes, the store's private directories, and the mapping of OSError to its typed errors.

A write is temp file in the same directory → write → fsync → rename → fsync of the directory, so a reader (or the
next command after a SIGKILL or a power cut) sees the old content or the new one, never a mix. The temp file is
removed when anything fails. ``ENOSPC`` (and ``EDQUOT``, the per-user form of a full disk) becomes
:class:`NoSpace`; every other OSError becomes a :class:`StoreError` naming the path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from sandbox.errors import NoSpace, StoreError

_NO_SPACE = {errno.ENOSPC: "ENOSPC", errno.EDQUOT: "EDQUOT"}


def store_error(exc: OSError, op: str, path: str | os.PathLike[str]) -> StoreError:
    """The typed error for an OSError raised while doing ``op`` ("write", "rename", ...) on ``path``."""
    name = _NO_SPACE.get(exc.errno or 0)
    if name is not None:
        return NoSpace(
            f"no space left on device ({name}) while trying to {op} {path}", op=op, path=str(path), errno=exc.errno
        )
    reason = exc.strerror or str(exc)
    return StoreError(f"cannot {op} {path}: {reason}", op=op, path=str(path), errno=exc.errno)


def write_all(fd: int, data: bytes | memoryview, path: str | os.PathLike[str]) -> None:
    """os.write until every byte is written (a short write is not an error on Linux, but must be continued)."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except OSError as exc:
            raise store_error(exc, "write", path) from exc
        view = view[written:]


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise store_error(exc, "open directory", directory) from exc
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some file systems refuse fsync on a directory (EINVAL); the rename itself has still happened.
        if exc.errno not in (errno.EINVAL, errno.EROFS):
            raise store_error(exc, "fsync directory", directory) from exc
    finally:
        os.close(fd)


def temp_name(path: Path) -> Path:
    """A unique temp path beside ``path``; the leading dot and ``.tmp`` suffix mark it as garbage if left behind."""
    return path.with_name(f".{path.name}.{os.urandom(8).hex()}.tmp")  # secrets would import hashlib + OpenSSL


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = 0o600, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically and durably; on any failure nothing but the old file remains.

    ``durable=False`` makes no fsync: the write is still atomic for every reader while the machine runs (a process
    killed half-way leaves the old file), but after a power cut ``path`` may hold the old content, the new, nothing
    or garbage (a journaled rename can reach the disk before the data). That is for files the reader falls back from
    after a reboot; it saves two journal commits."""
    path = Path(path)
    temp = temp_name(path)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise store_error(exc, "create", temp) from exc
    try:
        try:
            write_all(fd, data, temp)
            try:
                os.fchmod(fd, mode)  # the umask may have narrowed the mode given to open
                if durable:
                    os.fsync(fd)
            except OSError as exc:
                raise store_error(exc, "fsync", temp) from exc
        finally:
            os.close(fd)
        try:
            os.rename(temp, path)
        except OSError as exc:
            raise store_error(exc, "rename", temp) from exc
    except BaseException:
        _unlink_quietly(temp)
        raise
    if durable:
        fsync_dir(path.parent)


PRIVATE_DIR_MODE = 0o700


def ensure_private_dir(directory: Path, *, parents: bool = False) -> None:
    """A directory only its owner can enter (0700): created if missing, its mode narrowed if an older or hand-made
    one is open to others (or the umask narrowed mkdir's); a non-directory in its place is a StoreError."""
    try:
        with contextlib.suppress(FileExistsError):
            os.makedirs(directory, PRIVATE_DIR_MODE) if parents else os.mkdir(directory, PRIVATE_DIR_MODE)
        info = os.stat(directory)
        if not stat.S_ISDIR(info.st_mode):
            raise StoreError(f"store path {directory} is not a directory", path=str(directory))
        if stat.S_IMODE(info.st_mode) != PRIVATE_DIR_MODE:
            os.chmod(directory, PRIVATE_DIR_MODE)
    except OSError as exc:
        raise store_error(exc, "create directory", directory) from exc


def listdir(directory: Path) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise store_error(exc, "list", directory) from exc


def unlink(path: Path) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except IsADirectoryError:
        return False
    except OSError as exc:
        raise store_error(exc, "remove", path) from exc
    return True


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
