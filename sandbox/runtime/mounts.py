"""The container's mounts: /proc, /dev, /sys, the /etc files, the user's volumes, masked and read-only paths.

Plan, then apply. :func:`plan_mounts` turns a :class:`ContainerSpec` into a tuple of frozen :class:`MountOp` (pure
data, tested as data); :func:`apply_mounts` carries them out inside the container's user and mount namespace, on
the mounted root filesystem, before ``pivot_root``.

Every target is a *container* path. The executor resolves it inside the root with :func:`resolve_in_root`, one
component at a time, so a symlink in the image (``/data -> /etc``, ``/dev/null -> /host/file``) can never send a
mount onto the host (runc CVE-2019-19921, CVE-2025-31133). An image whose ``/proc``, ``/sys`` or ``/dev`` is itself
a symlink is refused outright: nothing sensible can be mounted there.

Why things are done the way they are, in a user namespace:

- devices cannot be created (``mknod`` needs a capability in the initial namespace), so the six the container
  needs are bind-mounted from the host onto empty files in a fresh /dev tmpfs;
- ``devpts`` gets ``gid=5`` (the tty group owns every terminal, as with Docker) only when the container's gid 5 is
  mapped: the kernel refuses a gid the namespace cannot name, and a single-id map names none but 0. Its ``ptmx`` is
  where a container's terminals come from (``ptmxmode=0666``), never the host's instance: see
  :func:`sandbox.runtime.console.open_pty`;
- ``sysfs`` may only be mounted by the owner of the network namespace, so with the host network /sys is a
  recursive read-only bind of the host's instead;
- a read-only remount (``MS_BIND|MS_REMOUNT|MS_RDONLY``) must repeat the flags the kernel locked on the mount when
  it crossed into the namespace (nosuid, nodev, noexec, the atime mode), or it fails with EPERM.
"""

from __future__ import annotations

import errno as errno_codes
import os
import stat

from sandbox.errors import RootfsError
from sandbox.kernel.constants import (
    MS_BIND,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_STRICTATIME,
)
from sandbox.network.etcfiles import ETC_FILES, etc_name
from sandbox.runtime.spec import ContainerSpec
from sandbox.security.paths import MASKED_PATHS, READONLY_PATHS, masked, read_only  # noqa: F401 - tests read them
from sandbox.valueclass import valueclass

# --- policy, as data ---------------------------------------------------------------------------------------------

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = (
    ("/dev/ptmx", "pts/ptmx"),
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
)
# Masked and read-only paths are data of sandbox.security.paths; paths that do not exist are skipped.
# An image may not replace these with symlinks: they are refused rather than followed.
NO_SYMLINK_PATHS = ("/proc", "/sys", "/dev")

# --init: a small static init from the host, bound read-only into the container's own /dev (as Docker binds its
# docker-init, which is tini): the first of these that exists. A static binary runs in any image, libc or none.
INIT_BINARIES = ("/usr/bin/tini-static", "/usr/bin/catatonit", "/usr/libexec/podman/catatonit")
INIT_TARGET = "/dev/init"

MAX_SYMLINK_HOPS = 40  # as the kernel's own path walk (ELOOP)
DEV_SIZE = "size=65536k"
TTY_GID = 5  # the tty group of Debian, Alpine, busybox images (and Docker's devpts gid=5)
_SAFE = MS_NOSUID | MS_NODEV | MS_NOEXEC
_READ_ONLY_REMOUNT = MS_BIND | MS_REMOUNT | MS_RDONLY


@valueclass
class MountOp:
    """One step of the plan. ``kind`` says what the executor does:

    - ``proc``, ``tmpfs``, ``devpts``, ``mqueue``, ``sysfs``, ``cgroup2``, ``bind``: ``mount(source, target, fstype,
      flags, data)``, then a read-only remount if ``read_only_remount``;
    - ``symlink``: create ``target`` as a symlink to ``link``;
    - ``mask``: hide ``target`` (``/dev/null`` over a file, an empty read-only tmpfs over a directory);
    - ``readonly``: bind ``target`` onto itself and remount it read-only;
    - ``remount``: only the read-only remount (the root, with ``--read-only``).
    """

    target: str  # a path inside the container
    source: str | None = None
    fstype: str | None = None
    flags: int = 0
    data: str | None = None
    create: str | None = None  # "dir", "file" or None: what to create at the target when it is missing
    read_only_remount: bool = False
    kind: str = "bind"
    link: str | None = None
    # a user's bind: the executor opens ``source`` itself, without following symlinks, checks it against ``pin``
    # ((st_dev, st_ino) at create, when known) and mounts from that fd (:func:`open_bind_source`)
    open_source: bool = False
    pin: tuple[int, int] | None = None


# --- resolving container paths -----------------------------------------------------------------------------------


def _parts(path: str) -> list[str]:
    return [part for part in path.split("/") if part and part != "."]


def resolve_in_root(root: str, path: str) -> str:
    """The host path that container path ``path`` names, following symlinks as if ``root`` were ``/``.

    Absolute link targets start again at ``root``; ``..`` stops at ``root``. Components that do not exist are
    joined unresolved, so the caller can create them. More than :data:`MAX_SYMLINK_HOPS` links is an error.
    """
    root = os.path.abspath(root)
    pending = _parts(path)
    resolved: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            info = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            resolved.append(part)  # missing: nothing below it can be a link (until a ".." climbs back out)
            continue
        except OSError as error:
            raise RootfsError(
                f"cannot resolve {path} in the container: {error.strerror}", path=path, errno=error.errno
            ) from None
        if not stat.S_ISLNK(info.st_mode):
            resolved.append(part)
            continue
        hops += 1
        if hops > MAX_SYMLINK_HOPS:
            raise RootfsError(
                f"too many levels of symbolic links resolving {path} in the container",
                path=path,
                errno=errno_codes.ELOOP,
            )
        link = os.readlink(candidate)
        if link.startswith("/"):
            resolved = []
        pending[:0] = _parts(link)
    return os.path.join(root, *resolved)


# --- the plan ----------------------------------------------------------------------------------------------------


def _container_path(path: str, what: str) -> str:
    if not path.startswith("/"):
        raise RootfsError(f"{what} {path!r} must be an absolute path in the container")
    normal = os.path.normpath(path)
    if normal.startswith("//"):
        normal = normal[1:]
    if normal == "/":
        raise RootfsError(f"{what} {path!r} cannot be the container's root")
    return normal


def _user_mount(mount) -> MountOp:
    target = _container_path(mount.target, "mount target")
    if mount.kind == "tmpfs":
        return MountOp(
            target,
            "tmpfs",
            "tmpfs",
            MS_NOSUID | MS_NODEV | (MS_RDONLY if mount.read_only else 0),
            ",".join(mount.options) or None,
            create="dir",
            kind="tmpfs",
        )
    if mount.kind != "bind":
        raise RootfsError(f"unknown mount type {mount.kind!r} for {target}", hint="use bind or tmpfs")
    source = mount.source or ""
    if not os.path.isabs(source):
        raise RootfsError(f"bind mount source {source!r} for {target} must be an absolute host path")
    try:
        info = os.stat(source)
    except OSError as error:
        raise RootfsError(
            f"bind mount source {source} does not exist" if isinstance(error, FileNotFoundError)
            else f"cannot use bind mount source {source}: {error.strerror}",
            hint="create it first, or fix the path given to -v / --mount",
            op="stat",
            path=source,
            errno=error.errno,
        ) from None
    return MountOp(
        target,
        source,
        None,
        MS_BIND | MS_REC,
        create="dir" if stat.S_ISDIR(info.st_mode) else "file",
        read_only_remount=mount.read_only,
        kind="bind",
        open_source=True,
        pin=getattr(mount, "pin", None),
    )


def open_bind_source(source: str, pin: tuple[int, int] | None) -> int:
    """An ``O_PATH`` fd of the host path ``source``, walked one component at a time from ``/`` without following
    a symlink anywhere (what openat2's RESOLVE_NO_SYMLINKS does, on every kernel), and, with ``pin``, still the
    file or directory the container was created with. :class:`BindSourceChanged` otherwise.

    The path was resolved by ``realpath`` at create, so a symlink on it now was put there since: by a container
    that shares the parent directory, or another local user. Mounting from the fd (``/proc/self/fd/N``) mounts
    exactly what was checked, whatever the path names a moment later.
    """
    from sandbox.errors import BindSourceChanged

    def changed(why: str) -> BindSourceChanged:
        return BindSourceChanged(
            f"bind mount source {source} {why} since the container was created",
            hint="a container or another user may have replaced it; if the change is yours, create the container again",
            path=source,
        )

    flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open("/", flags | os.O_DIRECTORY)
    try:
        for part in _parts(source):
            if part == "..":
                raise changed("has a '..' component")
            try:
                following = os.open(part, flags, dir_fd=fd)
            except (NotADirectoryError, FileNotFoundError) as error:
                raise changed("changed" if isinstance(error, NotADirectoryError) else "is gone") from None
            os.close(fd)
            fd = following
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise changed(f"became a symlink at {part!r}")
        info = os.fstat(fd)
        if pin is not None and (info.st_dev, info.st_ino) != tuple(pin):
            raise changed("was replaced")
    except BaseException:
        os.close(fd)
        raise
    return fd


def find_init(candidates: tuple[str, ...] | None = None) -> str:
    """The host's init binary for --init (the first of ``candidates``, default :data:`INIT_BINARIES`, that is an
    executable file); RootfsError naming the package when there is none."""
    for path in INIT_BINARIES if candidates is None else candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise RootfsError(
        "--init needs tini or catatonit, and neither is installed",
        hint="install Debian's tini package (apt-get install tini), or run without --init",
    )


def init_args(args: tuple[str, ...]) -> list[str]:
    """The command as --init runs it: the init as pid 1, which forwards signals to it and reaps orphans."""
    return [INIT_TARGET, "--", *args]


def plan_mounts(spec: ContainerSpec, root: str, container_dir: str) -> tuple[MountOp, ...]:
    """The mounts that make ``root`` a container's root, in the order they must happen.

    ``container_dir`` holds the /etc files :func:`sandbox.network.etcfiles.write_etc_files` wrote. Bind sources
    are checked here, so a missing one fails before anything is mounted. ``root`` is accepted for symmetry with
    :func:`apply_mounts`; the plan itself is made of container paths.
    """
    del root  # the plan names container paths only
    ops: list[MountOp] = [
        MountOp("/proc", "proc", "proc", _SAFE, create="dir", kind="proc"),
        MountOp("/dev", "tmpfs", "tmpfs", MS_NOSUID | MS_STRICTATIME, f"mode=755,{DEV_SIZE}", "dir", kind="tmpfs"),
    ]
    ops += [MountOp(f"/dev/{name}", f"/dev/{name}", None, MS_BIND, create="file", kind="bind") for name in DEVICES]
    pts_options = "newinstance,ptmxmode=0666,mode=0620"
    if spec.idmap.contains_gid(TTY_GID):
        pts_options += f",gid={TTY_GID}"
    ops.append(MountOp("/dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC, pts_options, "dir", kind="devpts"))
    ops += [MountOp(path, kind="symlink", link=link) for path, link in DEV_LINKS]
    if spec.init:
        ops.append(MountOp(INIT_TARGET, find_init(), None, MS_BIND | MS_NOSUID | MS_NODEV, create="file",
                           read_only_remount=True, kind="bind"))
    ops += [
        MountOp("/dev/shm", "tmpfs", "tmpfs", _SAFE, f"mode=1777,{DEV_SIZE}", "dir", kind="tmpfs"),
        MountOp("/dev/mqueue", "mqueue", "mqueue", _SAFE, create="dir", kind="mqueue"),
    ]
    if spec.network != "host":  # the container's own network namespace: a sysfs of its own (falls back to a bind)
        ops.append(MountOp("/sys", "sysfs", "sysfs", _SAFE | MS_RDONLY, create="dir", kind="sysfs"))
        ops.append(MountOp("/sys/fs/cgroup", "cgroup2", "cgroup2", _SAFE | MS_RDONLY, create="dir", kind="cgroup2"))
    else:
        ops.append(MountOp("/sys", "/sys", None, MS_BIND | MS_REC, create="dir", read_only_remount=True))
        # The cgroup namespace is sbx's whatever the network: its own subtree over the host's tree. Where the host's
        # /sys/fs/cgroup is itself a cgroup2 mount (pure v2), mounting cgroup2 right onto it is EBUSY (the same
        # superblock on its own root): an empty tmpfs in between gives the new mount a different parent.
        ops.append(MountOp("/sys/fs/cgroup", "tmpfs", "tmpfs", _SAFE | MS_RDONLY, "mode=755,size=4k", kind="tmpfs"))
        ops.append(MountOp("/sys/fs/cgroup", "cgroup2", "cgroup2", _SAFE | MS_RDONLY, create="dir", kind="cgroup2"))
    etc_dir = os.path.join(container_dir, "etc")
    provided = {etc_name(key) for key in spec.etc_files}
    ops += [
        MountOp(f"/etc/{name}", os.path.join(etc_dir, name), None, MS_BIND, create="file", kind="bind")
        for name in ETC_FILES
        if name in provided
    ]
    # parents before children (as Docker sorts volumes), otherwise in the order given
    user = [_user_mount(mount) for mount in spec.mounts]
    ops += sorted(user, key=lambda op: len(_parts(op.target)))
    ops += [MountOp(path, kind="mask") for path in masked(spec.security.unmasked)]
    ops += [MountOp(path, kind="readonly") for path in read_only(spec.security.unmasked)]
    if spec.read_only:  # last, so /dev, /dev/shm, volumes and the /etc files stay writable
        ops.append(MountOp("/", None, None, _READ_ONLY_REMOUNT, kind="remount"))
    return tuple(ops)


# --- the executor ------------------------------------------------------------------------------------------------

_LOCKED = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
           (os.ST_NODIRATIME, MS_NODIRATIME))


def locked_flags(host_path: str) -> int:
    """The mount flags a remount of ``host_path``'s mount must repeat: in a user namespace the kernel locks
    nosuid, nodev, noexec and the atime mode of mounts that came from outside, and refuses to drop them."""
    current = os.statvfs(host_path).f_flag
    flags = 0
    for statvfs_flag, mount_flag in _LOCKED:
        if current & statvfs_flag:
            flags |= mount_flag
    if current & os.ST_NOATIME:
        flags |= MS_NOATIME
    elif current & os.ST_RELATIME:
        flags |= MS_RELATIME
    else:
        flags |= MS_STRICTATIME
    return flags


def _mount(kernel, op: MountOp, source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    try:
        kernel.mount(source, target, fstype, flags, data)
    except OSError as error:
        raise RootfsError(
            f"cannot mount {op.kind} on {op.target}: {error.strerror or error}",
            op="mount",
            path=op.target,
            errno=error.errno,
        ) from None


def _remount_read_only(kernel, op: MountOp, target: str) -> None:
    """Make ``target`` and every mount below it read-only: a read-only remount changes one mount only, so the
    submounts a recursive bind brought along (the host's /sys/fs/cgroup/*, /sys/kernel/*) would stay writable."""
    _mount(kernel, op, None, target, None, _READ_ONLY_REMOUNT | locked_flags(target))
    for path in _mounts_below(target):
        try:
            flags = locked_flags(path)
        except OSError as error:  # below a dir the namespace's root may not search: out of the container's reach too
            if error.errno in (errno_codes.EACCES, errno_codes.EPERM, errno_codes.ENOENT):
                continue
            raise
        _mount(kernel, op, None, path, None, _READ_ONLY_REMOUNT | flags)


def _mounts_below(target: str, mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Mount points strictly below ``target``, parents first, as /proc/self/mountinfo lists them."""
    prefix = target.rstrip("/") + "/"
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as handle:
            points = [_unescape_mount_point(line.split()[4]) for line in handle if len(line.split()) > 4]
    except FileNotFoundError:
        return []
    return [point for point in dict.fromkeys(points) if point.startswith(prefix)]


def _unescape_mount_point(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in a mount point as \\ooo octal escapes."""
    if "\\" not in field:
        return field
    import re

    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


def _create(host_path: str, create: str | None) -> None:
    if create is None or os.path.lexists(host_path):
        return
    os.makedirs(os.path.dirname(host_path), mode=0o755, exist_ok=True)
    if create == "dir":
        os.mkdir(host_path, 0o755)
    else:
        os.close(os.open(host_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))


def _refuse_symlinks(root: str, target: str) -> None:
    for path in NO_SYMLINK_PATHS:
        if (target == path or target.startswith(f"{path}/")) and os.path.islink(os.path.join(root, path[1:])):
            raise RootfsError(
                f"image's {path} is a symlink",
                hint="the image must have a plain directory there; rebuild it",
                path=path,
            )


def _symlink(root: str, op: MountOp) -> None:
    parent, name = os.path.split(op.target)
    host_path = os.path.join(resolve_in_root(root, parent), name)  # the link itself is not followed
    if os.path.islink(host_path) and os.readlink(host_path) == op.link:
        return
    os.makedirs(os.path.dirname(host_path), mode=0o755, exist_ok=True)
    if os.path.lexists(host_path) and not os.path.isdir(host_path):
        os.unlink(host_path)
    assert op.link is not None
    os.symlink(op.link, host_path)


def _fallback(kernel, op: MountOp, target: str, error: RootfsError) -> None:
    """sysfs needs the network namespace's owner, cgroup2 the cgroup namespace's: else bind the host's, read-only."""
    if getattr(error, "errno", None) != errno_codes.EPERM:
        raise error
    host_source = op.target  # /sys and /sys/fs/cgroup: the same path on the host as in the container
    _mount(kernel, op, host_source, target, None, MS_BIND | MS_REC)
    _remount_read_only(kernel, op, target)


def apply_mounts(kernel, ops: tuple[MountOp, ...], root: str) -> None:
    """Carry out ``ops`` on the root filesystem mounted at ``root`` (inside the container's namespaces)."""
    root = os.path.abspath(root)
    for op in ops:
        _refuse_symlinks(root, op.target)
        try:
            _apply(kernel, op, root)
        except OSError as error:  # creating a mountpoint or a link: the image has something in the way
            raise RootfsError(
                f"cannot prepare {op.target} in the container: {error.strerror or error}",
                op=op.kind,
                path=op.target,
                errno=error.errno,
            ) from None


def _apply(kernel, op: MountOp, root: str) -> None:
    if op.kind == "symlink":
        _symlink(root, op)
        return
    target = resolve_in_root(root, op.target)
    if op.kind == "remount":
        _mount(kernel, op, None, target, None, op.flags | locked_flags(target))
    elif op.kind == "mask":
        if not os.path.lexists(target):
            return
        if os.path.isdir(target):
            _mount(kernel, op, "tmpfs", target, "tmpfs", _SAFE | MS_RDONLY)
        else:
            _mount(kernel, op, "/dev/null", target, None, MS_BIND)
    elif op.kind == "readonly":
        if not os.path.lexists(target):
            return
        _mount(kernel, op, target, target, None, MS_BIND | MS_REC)
        _remount_read_only(kernel, op, target)
    elif op.open_source:
        _create(target, op.create)
        assert op.source is not None
        fd = open_bind_source(op.source, op.pin)
        try:
            _mount(kernel, op, f"/proc/self/fd/{fd}", target, op.fstype, op.flags, op.data)
        finally:
            os.close(fd)
        if op.read_only_remount:
            _remount_read_only(kernel, op, target)
    else:
        _create(target, op.create)
        try:
            _mount(kernel, op, op.source, target, op.fstype, op.flags, op.data)
        except RootfsError as error:
            if op.kind not in ("sysfs", "cgroup2"):
                raise
            _fallback(kernel, op, target, error)
            return
        if op.read_only_remount:
            _remount_read_only(kernel, op, target)
