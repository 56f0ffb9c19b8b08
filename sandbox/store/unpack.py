"""Safe extraction of one layer's tar stream into a directory (TESTPLAN 1-13).

The tar is hostile. ``tarfile``'s own extraction is never used: every entry is created here with ``*at`` calls on
directory fds, so no host path is ever resolved through a name that came from the layer.

Path resolution works like openat2's ``RESOLVE_IN_ROOT``: the entry's parent components are walked one by one from
a dir fd of the root with ``O_NOFOLLOW``; a symlink met on the way (planted by this layer or an earlier one) is read
and its target followed by hand, an absolute target starting again at the root and ``..`` stopping at the root, with
at most 40 hops. Entry names holding a ``..`` component are refused outright, as Docker does. The last component
is created without following anything (``O_EXCL|O_NOFOLLOW``, ``mkdirat``, ``symlinkat``, ``linkat`` without
``AT_SYMLINK_FOLLOW``), so a symlink can never redirect a write, a chmod or a chown.

A :class:`_Cursor` holds one dir fd and the *canonical* path it stands on (names from the root, no symlinks). It
moves down with ``O_NOFOLLOW`` and up through ``..``; going up from a directory reached by descent stays inside the
root, and ``..`` at the root stays at the root. Tar streams list a directory before its children, so the parent of
the next entry is usually where the cursor already stands: a 5,000-level tree costs one ``open`` per entry, not
one per level, and never holds more than one fd per walk.

Directory modes and mtimes are applied twice: at creation with ``u+rwx`` added (so a mode-000 directory does not
stop its own children from being written by a non-root owner), and exactly at the end, deepest first (creating
children changes a directory's mtime).

Whiteouts: the ``overlay`` format stores them as kernel overlayfs reads them in a user namespace (0:0 character
devices, ``user.overlay.opaque=y``); the ``copy`` format applies them to the flattened tree below, so they delete.
Per the OCI image spec a whiteout hides lower layers only; an opaque marker therefore keeps what this layer has
created in the directory itself.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from sandbox.errors import (
    InvalidLayer,
    LayerTooLarge,
    NoSpace,
    SbxError,
    StoreError,
    UnsafeLayer,
    WhiteoutUnsupported,
)
from sandbox.store.tarheaders import BoundedTarInfo, header_bytes
from sandbox.store.trees import lstat_at as _lstat
from sandbox.store.trees import open_dir as _open_dir
from sandbox.store.trees import remove_at as _remove_at
from sandbox.valueclass import valueclass

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "user.overlay.opaque"
MAX_SYMLINK_HOPS = 40
MAX_DEVICE_NUMBER = 2**20
DEFAULT_MAX_BYTES = 64 * 2**30

_CHUNK = 1 << 20
# Xattr namespaces that would forge metadata of the overlay drivers or of containers/storage (TESTPLAN 10).
_FORBIDDEN_USER_XATTRS = ("user.overlay.", "user.containers.", "user.fuseoverlayfs.")
_PAX_XATTR = "SCHILY.xattr."

OwnerMap = Callable[[int, int], tuple[int, int]]


@valueclass
class UnpackStats:
    files: int  # entries created: files, directories, links, FIFOs, whiteouts
    bytes: int  # bytes of regular file data written
    skipped_devices: int


def _show(name: str) -> str:
    """The entry name as a message may print it: quoted, control characters escaped, bounded in length."""
    shown = repr(name)
    return shown if len(shown) <= 200 else shown[:197] + "..."


def _split(name: str, *, what: str, entry: str) -> list[str]:
    """Components of a tar name, made relative to the root; any ``..`` is refused (Docker does the same)."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeLayer(f"unsafe layer: {what} {_show(entry)} leaves the root", entry=entry)
    return parts


class _Cursor:
    """One dir fd inside the root and the canonical path it stands on."""

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self.fd = os.dup(root_fd)
        self.canon: list[str] = []

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _replace(self, fd: int) -> None:
        os.close(self.fd)
        self.fd = fd

    def to_root(self) -> None:
        if self.canon:
            self._replace(os.dup(self.root_fd))
            self.canon.clear()

    def up(self) -> None:
        # ".." of a directory reached by descent from the root is inside the root; at the root it stays there.
        if self.canon:
            self._replace(_open_dir("..", self.fd))
            self.canon.pop()

    def down(self, name: str) -> None:
        self._replace(_open_dir(name, self.fd))
        self.canon.append(name)

    def goto(self, target: tuple[str, ...]) -> bool:
        """Move to a canonical path by the shortest way; False when it no longer exists as plain directories."""
        if len(self.canon) == len(target) and tuple(self.canon) == target:
            return True
        common = 0
        for mine, theirs in zip(self.canon, target, strict=False):
            if mine != theirs:
                break
            common += 1
        if len(self.canon) - common > common:
            self.to_root()
            common = 0
        while len(self.canon) > common:
            self.up()
        try:
            for name in target[common:]:
                self.down(name)
        except OSError:
            self.to_root()
            return False
        return True


class _Unpacker:
    def __init__(
        self,
        root_fd: int,
        *,
        whiteout_format: str,
        max_bytes: int,
        owner_map: OwnerMap | None,
        warn: Callable[[str], None] | None,
    ) -> None:
        self.root_fd = root_fd
        self.cursor = _Cursor(root_fd)
        self.whiteout_format = whiteout_format
        self.max_bytes = max_bytes
        self.owner_map = owner_map
        self.warn = warn or (lambda message: None)
        self.privileged = os.geteuid() == 0
        self.files = 0
        self.bytes = 0
        self.counted = 0  # file data and headers: what the layer size limit is about
        self.skipped_devices = 0
        self.warned: set[str] = set()
        # The last parent walked: its literal components (as named in the tar) and where they led.
        self.cache: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        # Canonical paths as "a/b/c" strings: a 5,000-level tree would make tuples cost depth squared pointers.
        self.created: set[str] = set()
        self.deferred_dirs: list[tuple[str, int, int | None]] = []
        # dir fds of the layers below this one, top first (overlay format): see lower_entry
        self.lowers: list[int] = []
        self.lower_link = ""

    def close(self) -> None:
        self.cursor.close()
        for fd in self.lowers:
            os.close(fd)
        self.lowers = []

    def make_parent(self, name: str, below: os.stat_result | None) -> None:
        """A parent directory the tar does not name: 0755, or the lower layers' directory's mode and owner (what
        overlayfs shows, and a copy-up would keep)."""
        cursor = self.cursor
        os.mkdir(name, 0o755, dir_fd=cursor.fd)
        cursor.down(name)
        if below is not None:
            os.chmod(cursor.fd, stat.S_IMODE(below.st_mode))
            if self.privileged or self.owner_map is not None:
                with contextlib.suppress(PermissionError):
                    os.chown(cursor.fd, below.st_uid, below.st_gid)
        self.created.add("/".join(cursor.canon))

    def lower_entry(self, canon: list[str], name: str) -> os.stat_result | None:
        """What the layers below show at ``canon/name`` (lstat; a symlink's target in :attr:`lower_link`), or None
        when nothing: the merged view overlayfs gives of them, top layer first. A whiteout (a 0:0 character
        device) or a non-directory on the way hides everything below it; an opaque directory hides the layers
        under the one that holds it."""
        for lower in self.lowers:
            fd = os.dup(lower)
            opaque = False
            try:
                try:
                    for part in canon:
                        following = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                            dir_fd=fd)
                        os.close(fd)
                        fd = following
                        opaque = opaque or _is_opaque(fd)
                except FileNotFoundError:
                    continue  # this layer has nothing there: the next one down may
                except OSError as error:
                    if error.errno in (errno.ENOTDIR, errno.ELOOP):
                        return None  # a file, link or whiteout here hides the layers below
                    raise
                try:
                    info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    if opaque:
                        return None
                    continue
                if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
                    return None  # a whiteout
                if stat.S_ISLNK(info.st_mode):
                    self.lower_link = os.readlink(name, dir_fd=fd)
                return info
            finally:
                os.close(fd)
        return None

    def count(self, size: int, entry: str) -> None:
        """Count file data and tar headers alike toward ``max_bytes`` (TESTPLAN 12, 61)."""
        self.counted += size
        if self.counted > self.max_bytes:
            raise LayerTooLarge(
                f"layer too large: more than {self.max_bytes} bytes at entry {_show(entry)}",
                entry=entry,
                limit=self.max_bytes,
            )

    def warn_once(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            self.warn(message)

    # --- resolution --------------------------------------------------------------------------------------------

    def walk(self, parts: list[str], *, create: bool, entry: str) -> bool:
        """Move the cursor to the directory the literal ``parts`` name, inside the root. Missing directories are
        made when ``create``; otherwise a missing one returns False."""
        literal = tuple(parts)
        pending: list[str]
        if (
            self.cache is not None
            and literal[: len(self.cache[0])] == self.cache[0]
            and self.cursor.goto(self.cache[1])
        ):
            pending = list(reversed(literal[len(self.cache[0]) :]))
        else:
            self.cache = None
            self.cursor.to_root()
            pending = list(reversed(literal))
        hops = 0
        cursor = self.cursor
        while pending:
            name = pending.pop()
            if name in ("", "."):
                continue
            if name == "..":
                cursor.up()
                continue
            try:
                cursor.down(name)
                continue
            except FileNotFoundError:
                if not create:
                    return False
                st = self.lower_entry(cursor.canon, name) if self.lowers else None
                if st is None or stat.S_ISDIR(st.st_mode):
                    self.make_parent(name, st)
                    continue
                target = self.lower_link  # a symlink of a layer below (when st is one)
            except OSError as error:
                if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                st = os.stat(name, dir_fd=cursor.fd, follow_symlinks=False)
                target = os.readlink(name, dir_fd=cursor.fd) if stat.S_ISLNK(st.st_mode) else ""
            if not stat.S_ISLNK(st.st_mode):
                raise InvalidLayer(f"invalid layer: a parent of entry {_show(entry)} is not a directory", entry=entry)
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise UnsafeLayer(f"unsafe layer: too many symlinks under entry {_show(entry)}", entry=entry)
            if target.startswith("/"):
                cursor.to_root()
            pending.extend(reversed(target.split("/")))
        self.cache = (literal, tuple(cursor.canon))
        return True

    def forget(self) -> None:
        """Something was removed or a symlink made: the cached resolution may no longer hold."""
        self.cache = None

    def clear(self, name: str, *, keep_dir: bool) -> bool:
        """Make room for a new entry at ``name`` in the cursor's directory; True when a directory is kept."""
        st = _lstat(name, self.cursor.fd)
        if st is None:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            self.forget()
            _remove_at(self.cursor.fd, name)
        else:
            if stat.S_ISLNK(st.st_mode):
                self.forget()
            os.unlink(name, dir_fd=self.cursor.fd)
        return False

    # --- entries -----------------------------------------------------------------------------------------------

    def add(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        entry = member.name
        parts = _split(entry, what="entry", entry=entry)
        base = parts[-1] if parts else ""
        if any(part.startswith(WHITEOUT_META_PREFIX) for part in parts[:-1]):
            return  # inside aufs metadata dirs (.wh..wh.plnk/...): no meaning here, as in Docker
        if base.startswith(WHITEOUT_PREFIX):
            self.whiteout(parts, entry)
            return
        if member.ischr() or member.isblk():
            self.device(member, parts, entry)
            return
        if not parts:
            if member.isdir():
                return  # the root itself: its metadata belongs to the store, not to the layer
            raise UnsafeLayer(f"unsafe layer: entry {_show(entry)} replaces the root", entry=entry)
        if not self.walk(parts[:-1], create=True, entry=entry):
            raise AssertionError("walk with create returned False")
        name = parts[-1]
        canon = "/".join((*self.cursor.canon, name))
        if member.isreg():
            self.regular(member, tar, name, entry)
        elif member.isdir():
            self.directory(member, name, canon, entry)
        elif member.issym():
            self.symlink(member, name, entry)
        elif member.islnk():
            self.hardlink(member, name, entry)
        elif member.isfifo():
            self.fifo(member, name, entry)
        else:
            raise InvalidLayer(f"invalid layer: entry {_show(entry)} has unsupported type {member.type!r}", entry=entry)
        self.created.add(canon)
        self.files += 1

    def regular(self, member: tarfile.TarInfo, tar: tarfile.TarFile, name: str, entry: str) -> None:
        self.clear(name, keep_dir=False)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o600, dir_fd=self.cursor.fd)
        try:
            source = tar.extractfile(member)
            if source is not None:
                while chunk := source.read(_CHUNK):
                    self.bytes += len(chunk)
                    self.count(len(chunk), entry)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
            self.metadata(fd, member, entry)
        finally:
            os.close(fd)

    def directory(self, member: tarfile.TarInfo, name: str, canon: str, entry: str) -> None:
        if not self.clear(name, keep_dir=True):
            os.mkdir(name, 0o700, dir_fd=self.cursor.fd)
        fd = _open_dir(name, self.cursor.fd)
        try:
            self.metadata(fd, member, entry, mode=stat.S_IMODE(member.mode) | 0o700, times=False)
        finally:
            os.close(fd)
        self.deferred_dirs.append((canon, stat.S_IMODE(member.mode), _mtime_ns(member)))

    def symlink(self, member: tarfile.TarInfo, name: str, entry: str) -> None:
        if not member.linkname:
            raise InvalidLayer(f"invalid layer: symlink {_show(entry)} has an empty target", entry=entry)
        self.clear(name, keep_dir=False)
        self.forget()
        # The target is stored as is: absolute targets are normal in images and are resolved inside the root.
        os.symlink(member.linkname, name, dir_fd=self.cursor.fd)
        owner = self.owner(member, entry)
        if owner is not None:
            os.chown(name, *owner, dir_fd=self.cursor.fd, follow_symlinks=False)
        mtime = _mtime_ns(member)
        if mtime is not None:
            os.utime(name, ns=(mtime, mtime), dir_fd=self.cursor.fd, follow_symlinks=False)

    def hardlink(self, member: tarfile.TarInfo, name: str, entry: str) -> None:
        target_parts = _split(member.linkname, what="hardlink target of", entry=entry)
        if not target_parts:
            raise UnsafeLayer(f"unsafe layer: hardlink {_show(entry)} points at the root", entry=entry)
        destination_fd = os.dup(self.cursor.fd)
        try:
            if not self.walk(target_parts[:-1], create=False, entry=entry):
                raise InvalidLayer(f"invalid layer: hardlink {_show(entry)} points at a missing file", entry=entry)
            source_name = target_parts[-1]
            source = _lstat(source_name, self.cursor.fd)
            if source is None:
                raise InvalidLayer(f"invalid layer: hardlink {_show(entry)} points at a missing file", entry=entry)
            if not (stat.S_ISREG(source.st_mode) or stat.S_ISLNK(source.st_mode)):
                raise UnsafeLayer(
                    f"unsafe layer: hardlink {_show(entry)} points at something other than a file", entry=entry
                )
            existing = _lstat(name, destination_fd)
            if existing is not None and (existing.st_dev, existing.st_ino) == (source.st_dev, source.st_ino):
                return
            if existing is not None:
                if stat.S_ISDIR(existing.st_mode):
                    _remove_at(destination_fd, name)
                else:
                    os.unlink(name, dir_fd=destination_fd)
                self.forget()
            # No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink. No chmod/chown either: the inode is the
            # target's, already set (containerd CVE-2021-32760 changed an outside file's mode here).
            os.link(source_name, name, src_dir_fd=self.cursor.fd, dst_dir_fd=destination_fd, follow_symlinks=False)
        finally:
            os.close(destination_fd)

    def fifo(self, member: tarfile.TarInfo, name: str, entry: str) -> None:
        self.clear(name, keep_dir=False)
        os.mkfifo(name, 0o600, dir_fd=self.cursor.fd)
        # O_NONBLOCK: opening a FIFO for reading does not wait for a writer then.
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.cursor.fd)
        try:
            self.metadata(fd, member, entry, xattrs=False)
        finally:
            os.close(fd)

    def device(self, member: tarfile.TarInfo, parts: list[str], entry: str) -> None:
        if not 0 <= member.devmajor <= MAX_DEVICE_NUMBER or not 0 <= member.devminor <= MAX_DEVICE_NUMBER:
            raise UnsafeLayer(
                f"unsafe layer: device {_show(entry)} has an absurd number {member.devmajor}:{member.devminor}",
                entry=entry,
            )
        if member.ischr() and member.devmajor == 0 and member.devminor == 0 and parts:
            # A 0:0 character device is overlayfs's own whiteout, as found in layers made from an overlay diff.
            self.apply_whiteout(parts[:-1], parts[-1], entry)
            return
        # sbx runs rootless: device nodes cannot be made, and an image's /dev is provided at run time anyway.
        self.skipped_devices += 1
        self.warn_once(
            "device", f"skipped device nodes in a layer (first: {_show(entry)}); they cannot be created rootless"
        )

    # --- whiteouts ---------------------------------------------------------------------------------------------

    def whiteout(self, parts: list[str], entry: str) -> None:
        base = parts[-1]
        if base == OPAQUE_MARKER:
            self.opaque(parts[:-1], entry)
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            return  # other aufs metadata (.wh..wh.plnk, .wh..wh.aufs): no meaning here, as in Docker
        target = base[len(WHITEOUT_PREFIX) :]
        if target in ("", ".", ".."):
            raise UnsafeLayer(f"unsafe layer: invalid whiteout {_show(entry)}", entry=entry)
        self.apply_whiteout(parts[:-1], target, entry)

    def apply_whiteout(self, parent: list[str], target: str, entry: str) -> None:
        if self.whiteout_format == "copy":
            if self.walk(parent, create=False, entry=entry) and _lstat(target, self.cursor.fd) is not None:
                self.forget()
                _remove_at(self.cursor.fd, target)
            return
        self.walk(parent, create=True, entry=entry)
        self.clear(target, keep_dir=False)
        try:
            os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=self.cursor.fd)
        except PermissionError as error:
            raise WhiteoutUnsupported(
                f"cannot store whiteout {_show(entry)}: kernel overlayfs needs a 0:0 character device, "
                "which this process may not create",
                entry=entry,
                errno=error.errno,
            ) from error
        self.created.add("/".join((*self.cursor.canon, target)))
        self.files += 1

    def opaque(self, parent: list[str], entry: str) -> None:
        if self.whiteout_format == "copy":
            if self.walk(parent, create=False, entry=entry):
                self.hide_lower(tuple(self.cursor.canon))
            return
        self.walk(parent, create=True, entry=entry)
        try:
            os.setxattr(self.cursor.fd, OPAQUE_XATTR, b"y")
        except OSError as error:
            raise WhiteoutUnsupported(
                f"cannot mark directory opaque for entry {_show(entry)}: "
                f"setting {OPAQUE_XATTR} failed: {(error.strerror or str(error)).lower()}",
                entry=entry,
                errno=error.errno,
            ) from error

    def hide_lower(self, top: tuple[str, ...]) -> None:
        """Remove what lower layers put below ``top``, keeping what this layer created (OCI opaque whiteout)."""
        pending = [top]
        while pending:
            directory = pending.pop()
            if not self.cursor.goto(tuple(directory)):
                continue
            with os.scandir(self.cursor.fd) as entries:
                names = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
            for name, is_dir in names:
                path = (*directory, name)
                if "/".join(path) not in self.created:
                    self.forget()
                    _remove_at(self.cursor.fd, name)
                elif is_dir:
                    pending.append(path)

    # --- metadata ----------------------------------------------------------------------------------------------

    def owner(self, member: tarfile.TarInfo, entry: str) -> tuple[int, int] | None:
        # Numeric ids only: uname/gname are never looked up on the host (Docker CVE-2019-14271).
        if self.owner_map is None:
            return None
        try:
            return self.owner_map(member.uid, member.gid)
        except SbxError as error:
            if getattr(error, "entry", None) is not None:
                raise
            message = f"{error.message} (entry {_show(entry)})"
            fields = {**error.fields, "entry": entry}
            try:
                named = type(error)(message, hint=error.hint, **fields)
            except TypeError:  # a subclass with its own constructor
                named = UnsafeLayer(message, hint=error.hint, **fields)
            raise named from error

    def metadata(
        self,
        fd: int,
        member: tarfile.TarInfo,
        entry: str,
        *,
        mode: int | None = None,
        times: bool = True,
        xattrs: bool = True,
    ) -> None:
        owner = self.owner(member, entry)
        if owner is not None:
            os.fchown(fd, *owner)
        # After chown, which clears setuid/setgid.
        os.fchmod(fd, stat.S_IMODE(member.mode) if mode is None else mode)
        if xattrs:
            self.xattrs(fd, member, entry)
        mtime = _mtime_ns(member)
        if times and mtime is not None:
            os.utime(fd, ns=(mtime, mtime))

    def xattrs(self, fd: int, member: tarfile.TarInfo, entry: str) -> None:
        for key, value in member.pax_headers.items():
            if not key.startswith(_PAX_XATTR):
                continue
            name = key[len(_PAX_XATTR) :]
            if not self.xattr_allowed(name):
                continue
            raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)
            try:
                os.setxattr(fd, name, raw)
            except OSError as error:
                self.warn_once(
                    "xattr",
                    f"could not set extended attributes in a layer (first: {name} on {_show(entry)}): "
                    f"{(error.strerror or str(error)).lower()}",
                )

    def xattr_allowed(self, name: str) -> bool:
        if name == "security.capability":
            return self.privileged
        return name.startswith("user.") and not name.startswith(_FORBIDDEN_USER_XATTRS)

    def finish(self) -> None:
        """Exact directory modes and mtimes, deepest first: children made after a directory changed its mtime.

        In reverse string order every directory comes before its ancestors, so the cursor only ever passes through
        directories that still have ``u+rwx``."""
        self.deferred_dirs.sort(key=lambda item: item[0], reverse=True)
        for path, mode, mtime in self.deferred_dirs:
            canon = tuple(path.split("/"))
            if not self.cursor.goto(canon[:-1]):
                continue
            try:
                fd = _open_dir(canon[-1], self.cursor.fd)
            except OSError:
                continue  # replaced or removed later in the layer
            try:
                os.fchmod(fd, mode)
                if mtime is not None:
                    os.utime(fd, ns=(mtime, mtime))
            finally:
                os.close(fd)


def _mtime_ns(member: tarfile.TarInfo) -> int | None:
    try:
        mtime = int(member.mtime * 1_000_000_000)
    except (TypeError, ValueError, OverflowError):
        return None
    return mtime if -(2**62) < mtime < 2**62 else None


def _is_opaque(fd: int) -> bool:
    try:
        return os.getxattr(fd, OPAQUE_XATTR) == b"y"
    except OSError:
        return False


def _identity(uid: int, gid: int) -> tuple[int, int]:
    return uid, gid


def unpack_layer(
    stream: BinaryIO,
    root: Path,
    *,
    whiteout_format: str = "overlay",
    max_bytes: int = DEFAULT_MAX_BYTES,
    owner_map: OwnerMap | None = None,
    warn: Callable[[str], None] | None = None,
    lowers: Sequence[Path | str] = (),
) -> UnpackStats:
    """Extract one layer's uncompressed tar ``stream`` (read sequentially) into the directory ``root``.

    ``whiteout_format`` is ``"overlay"`` (``root`` is the layer's own diff dir; whiteouts are stored for overlayfs)
    or ``"copy"`` (``root`` is the flattened rootfs; whiteouts delete). ``owner_map`` turns a tar's numeric owner
    into the one to store and may raise to refuse it; by default owners are kept when running as root and not set
    otherwise. On failure the partial tree is left for the caller to remove with :func:`remove_tree`.

    ``lowers`` (overlay format): the trees of the layers below, top first. A path of this layer that goes through
    a directory it does not name itself is resolved in their merged view, so ``a/file`` over a lower ``a -> /etc``
    lands in ``etc/file``, as it does when a layer is applied onto the mounted layers below (containerd) and as
    the copy driver does: the three drivers give the same tree (TESTPLAN 65).
    """
    if whiteout_format not in ("overlay", "copy"):
        raise ValueError(f"unknown whiteout format {whiteout_format!r}")
    if owner_map is None and os.geteuid() == 0:
        owner_map = _identity
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        raise StoreError(f"cannot open {root}: {(error.strerror or str(error)).lower()}", path=str(root)) from error
    unpacker = _Unpacker(root_fd, whiteout_format=whiteout_format, max_bytes=max_bytes, owner_map=owner_map, warn=warn)
    try:
        for lower in lowers:
            unpacker.lowers.append(os.open(lower, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    except OSError as error:
        unpacker.close()
        os.close(root_fd)
        raise StoreError(f"cannot open the layer below {root}: {(error.strerror or str(error)).lower()}") from error
    entry = ""
    try:
        # A caller's fileobj stays open when the TarFile closes.
        with tarfile.open(fileobj=stream, mode="r|", tarinfo=BoundedTarInfo) as tar:
            while (member := tar.next()) is not None:
                entry = member.name
                unpacker.count(header_bytes(member), entry)
                unpacker.add(member, tar)
                tar.members.clear()  # streaming: nothing needs earlier members, and 200,000 of them cost memory
        unpacker.finish()
    except tarfile.TarError as error:
        where = f" after entry {_show(entry)}" if entry else ""
        raise InvalidLayer(f"invalid layer: the tar stream is damaged{where}: {error}", entry=entry) from error
    except OSError as error:
        message = (error.strerror or str(error)).lower()
        if error.errno == errno.ENOSPC:
            raise NoSpace(f"no space left extracting entry {_show(entry)}", entry=entry) from error
        raise StoreError(
            f"cannot extract entry {_show(entry)}: {message}", entry=entry, errno=error.errno, path=str(root)
        ) from error
    finally:
        unpacker.close()
        os.close(root_fd)
    return UnpackStats(files=unpacker.files, bytes=unpacker.bytes, skipped_devices=unpacker.skipped_devices)
