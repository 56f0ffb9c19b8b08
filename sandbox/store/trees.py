"""Removing a tree without following symlinks, whatever its depth or modes (layer L2).

Apart from the unpacker (:mod:`sandbox.store.unpack`), `rm`, `rmi` and the collection of failed unpacks use it:
kept in a module of its own so that `sbx rm` does not import tarfile.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from sandbox.errors import StoreError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_dir(name: str, dir_fd: int) -> int:
    return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)


def lstat_at(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def remove_at(parent_fd: int, name: str) -> None:
    """Remove ``name`` in ``parent_fd`` and, for a directory, all below it: iterative, fd-based, never following.

    Walks down one directory at a time and back up through ``..``, so depth costs neither recursion nor fds.
    Directories without ``u+rwx`` (mode 000 in images) get it before they are entered. An entry that another
    remover of the same tree takes away first is simply gone; only losing the way up (``..`` of a directory
    removed under us) raises FileNotFoundError, for :func:`remove_tree` to walk again from the top.
    """
    st = lstat_at(name, parent_fd)
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=parent_fd)
        return
    _make_enterable(name, parent_fd, st)
    names = [name]
    fd = open_dir(name, parent_fd)
    try:
        while names:
            child = _next_subdir_after_unlinking_files(fd)
            if child is not None:
                try:
                    _make_enterable(child, fd, None)
                    fd_child = open_dir(child, fd)
                except FileNotFoundError:  # another remover took it: look again
                    continue
                os.close(fd)
                fd = fd_child
                names.append(child)
                continue
            done = names.pop()
            if names:
                fd_up = open_dir("..", fd)
                os.close(fd)
                fd = fd_up
                _rmdir_unless_gone(done, fd)
            else:
                os.close(fd)
                fd = -1
                _rmdir_unless_gone(done, parent_fd)
    finally:
        if fd >= 0:
            os.close(fd)


def _rmdir_unless_gone(name: str, dir_fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):  # another remover emptied and removed it first
        os.rmdir(name, dir_fd=dir_fd)


def _make_enterable(name: str, dir_fd: int, st: os.stat_result | None) -> None:
    if st is None:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o700 != 0o700:
        # chmod has no no-follow form for directories by name; the entry was just seen to be a directory.
        os.chmod(name, stat.S_IMODE(st.st_mode) | 0o700, dir_fd=dir_fd)


def _next_subdir_after_unlinking_files(fd: int) -> str | None:
    """Unlink every non-directory in ``fd``; return one subdirectory's name, or None once the directory is empty."""
    while True:
        unlinked = False
        with os.scandir(fd) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    return entry.name
                with contextlib.suppress(FileNotFoundError):  # another remover unlinked it first
                    os.unlink(entry.name, dir_fd=fd)
                unlinked = True
        if not unlinked:
            return None


_CONCURRENT_REMOVAL_RETRIES = 100


def remove_tree(path: Path) -> None:
    """Remove ``path`` and everything below it without recursion and without following symlinks (rmi, failed
    unpacks; TESTPLAN 13). A missing path is not an error, nor is another process removing the same tree."""
    path = Path(path)
    try:
        parent_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        for _ in range(_CONCURRENT_REMOVAL_RETRIES):
            try:
                remove_at(parent_fd, path.name)
                break
            except FileNotFoundError:
                # another remover (a parallel rmi or prune collecting the same retired layer) took an entry away
                # under us: walk again from the top, which is gone once it has finished
                continue
        else:
            remove_at(parent_fd, path.name)
    except OSError as error:
        raise StoreError(
            f"cannot remove {path}: {(error.strerror or str(error)).lower()}", path=str(path), errno=error.errno
        ) from error
    finally:
        os.close(parent_fd)
