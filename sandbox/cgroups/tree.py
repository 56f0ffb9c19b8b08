"""A container's own cgroup: ``<delegation point>/sbx/<id>``, made, limited, entered, frozen, killed, removed.

Every container leaf sits under ``sbx``, which never holds a process: both enable, in their
``cgroup.subtree_control``, every controller the delegation offers (so stats see memory, cpu, io and pids even
without a limit), as the no-internal-process rule allows. The leaf's path is kept in the container's directory
(``cgroup``), so whoever ends the container (its monitor, or `sbx rm -f` after the monitor was killed) finds it.
Control files are opened without ``O_CREAT``: they exist only where the kernel made them.

Ending: ``cgroup.kill`` (5.14+; else SIGKILL to each of ``cgroup.procs``) kills every process at once, frozen ones
too; once ``cgroup.events`` says ``populated 0`` the directory can go. Before that ``memory.events`` tells whether
the OOM killer struck, which `inspect` shows as ``OOMKilled`` (file ``oom-killed`` beside the record).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from pathlib import Path

from sandbox.cgroups.delegation import read_words
from sandbox.errors import CgroupError
from sandbox.exitcodes import NOT_EXECUTABLE

MARKER = "cgroup"
OOM_MARKER = "oom-killed"
GROUP = "sbx"
_POLL = 0.01


class CgroupFiles:
    """mkdir and rmdir of cgroup directories (the kernel fills and empties them; a test's fake does it itself)."""

    def mkdir(self, path: Path) -> None:
        os.mkdir(path, 0o755)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)

    def write(self, target: Path, value: str) -> None:
        """Write an existing control file: no O_CREAT, so a file the kernel did not make is an error."""
        fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)


def create(delegation, container_id: str, limits, container_dir: Path, files: CgroupFiles | None = None) -> Path | None:
    """Make the container's cgroup with its limits written, or None when nothing is delegated and the limits do not
    need a cgroup (their rlimit fallbacks were chosen at create). Records the path in ``container_dir``."""
    files = files or CgroupFiles()
    needed = set(limits.controllers)
    if not delegation.usable or not needed <= delegation.controllers:
        if not needed:
            return None
        missing = sorted(needed - (delegation.controllers if delegation.usable else set()))
        raise CgroupError(
            f"the container needs the cgroup v2 {'/'.join(missing)} controller, which is not delegated here "
            f"({delegation.reason})",
            hint=f"start it from the shell it was created in, or {delegation.fix}",
        )
    controllers = sorted(delegation.controllers)
    group = delegation.parent / GROUP
    enable(delegation.parent, controllers, files)
    with contextlib.suppress(FileExistsError):
        _mkdir(files, group)
    enable(group, controllers, files)
    path = group / container_id
    if path.exists():  # left by a monitor that was killed before it could clean up
        end(path, files)
    _mkdir(files, path)
    write_file(container_dir / MARKER, str(path))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(container_dir / OOM_MARKER)
    for write in limits.cgroup_writes():
        try:
            write_control(path, write.file, write.value, files)
        except CgroupError as error:
            if write.alternative is None or getattr(error, "errno", None) != errno.ENOENT:
                raise
            write_control(path, *write.alternative, files)
    return path


def enable(path: Path, controllers: list[str], files: CgroupFiles | None = None) -> None:
    """Enable ``controllers`` for the children of ``path`` (each on its own: one refused must name itself)."""
    present = set(read_words(path / "cgroup.subtree_control"))
    for controller in controllers:
        if controller not in present:
            write_control(path, "cgroup.subtree_control", f"+{controller}", files)


def attach(path: Path, pid: int, files: CgroupFiles | None = None) -> None:
    """Move ``pid`` (pid 1 or stage 1, before its cgroup namespace exists) into the container's cgroup."""
    write_control(path, "cgroup.procs", str(pid), files)


def write_control(path: Path, name: str, value: str, files: CgroupFiles | None = None) -> None:
    """Write one control file; a missing file is an error, never created."""
    target = path / name
    try:
        (files or CgroupFiles()).write(target, value)
    except OSError as error:
        raise CgroupError(f"cannot write {value!r} to {target}: {error.strerror}", errno=error.errno,
                          hint=_write_hint(error.errno)) from None


def _write_hint(code: int | None) -> str | None:
    if code == errno.ENOENT:
        return "the controller of this file is not enabled for the cgroup"
    if code == errno.EBUSY:
        return "a cgroup that holds processes cannot enable controllers for its children (no-internal-process rule)"
    if code in (errno.EACCES, errno.EPERM):
        return "the cgroup is not delegated to you"
    return None


def recorded(container_dir: Path) -> Path | None:
    """The container's cgroup as its directory records it (None when it has none)."""
    try:
        text = (container_dir / MARKER).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    path = Path(text)
    if not path.is_absolute() or ".." in path.parts or path.parent.name != GROUP:
        return None
    return path


def release(container_dir: Path, files: CgroupFiles | None = None) -> None:
    """The container is gone (or going): note an OOM kill, kill what is left, remove its cgroup and the record of
    it. Safe to call twice, and where there is no cgroup."""
    path = recorded(container_dir)
    if path is None:
        return
    if path.exists():
        if oom_killed(path):
            with contextlib.suppress(OSError):
                write_file(container_dir / OOM_MARKER, "1")
        end(path, files or CgroupFiles())
    with contextlib.suppress(FileNotFoundError):
        os.unlink(container_dir / MARKER)


def end(path: Path, files: CgroupFiles, timeout: float = 5.0) -> None:
    """cgroup.kill, wait until it is empty (bounded), rmdir."""
    try:
        write_control(path, "cgroup.kill", "1", files)
    except CgroupError as error:
        if getattr(error, "errno", None) != errno.ENOENT:
            raise
        for pid in read_words(path / "cgroup.procs"):  # before 5.14: one by one
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while True:
        try:
            files.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as error:
            if error.errno != errno.EBUSY or time.monotonic() > deadline:
                raise CgroupError(f"cannot remove cgroup {path}: {error.strerror}", errno=error.errno) from None
        time.sleep(_POLL)


def oom_killed(path: Path) -> bool:
    return events(path / "memory.events").get("oom_kill", 0) > 0


def freeze(path: Path, frozen: bool, timeout: float = 10.0, files: CgroupFiles | None = None) -> None:
    """Write cgroup.freeze and wait until cgroup.events says the cgroup is (un)frozen."""
    write_control(path, "cgroup.freeze", "1" if frozen else "0", files)
    deadline = time.monotonic() + timeout
    while events(path / "cgroup.events").get("frozen", 0) != int(frozen):
        if time.monotonic() > deadline:
            raise CgroupError(f"the container did not {'freeze' if frozen else 'thaw'} within {timeout:.0f} seconds")
        time.sleep(_POLL)


def is_frozen(path: Path) -> bool:
    return events(path / "cgroup.events").get("frozen", 0) == 1


def events(path: Path) -> dict[str, int]:
    """A flat-keyed file (``key value`` lines: cgroup.events, memory.events, cpu.stat, pids.events)."""
    found = {}
    try:
        text = path.read_text()
    except OSError:
        return found
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            found[key] = int(value)
    return found


def write_file(path: Path, text: str) -> None:
    """A small file of the container's own directory (0600), replaced atomically."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(temporary, path)


def _mkdir(files: CgroupFiles, path: Path) -> None:
    try:
        files.mkdir(path)
    except FileExistsError:
        raise
    except OSError as error:
        raise CgroupError(f"cannot create cgroup {path}: {error.strerror}", errno=error.errno,
                          hint=_write_hint(error.errno)) from None


def place(limits, container_id: str, container_dir: Path, pid: int, *, delegation=None,
          files: CgroupFiles | None = None) -> Path | None:
    """The launcher's hook, between "ready" and "go": make the container's cgroup (where delegated or needed) and
    move the child into it (pid 1, or stage 1, which forks pid 1 after "go"), so the command runs inside with its
    limits in force and the cgroup namespace made after "go" has it as its root."""
    if delegation is None:
        from sandbox.cgroups.delegation import discover

        delegation = discover(override=limits.cgroup_parent)
    try:
        path = create(delegation, container_id, limits, container_dir, files)
        if path is not None:
            attach(path, pid, files)
    except CgroupError:
        if limits.controllers:
            raise
        release(container_dir, files)  # no limit needs it: run without a cgroup of its own (no pause, /proc stats)
        return None
    return path


def join(proc_cgroup: str, pid: int, *, mountinfo: Path = Path("/proc/self/mountinfo"),
         files: CgroupFiles | None = None) -> Path | None:
    """`sbx exec`: move ``pid`` (the joiner, before it forks the command) into the cgroup of the container's pid 1,
    whose ``/proc/PID/cgroup`` reads ``proc_cgroup`` (as seen from sbx's cgroup namespace), when that is sbx's own
    leaf: what runs in a container counts against its limits and goes with its cgroup.kill. None when the container
    has no cgroup of its own; CgroupError when it has one that cannot be entered from here."""
    from sandbox.cgroups.delegation import cgroup2_mount, parse_own_cgroup

    own = parse_own_cgroup(proc_cgroup)
    if own is None or Path(own).parent.name != GROUP:
        return None
    root = cgroup2_mount(mountinfo)
    if root is None:
        return None
    path = root / own.strip("/")
    try:
        attach(path, pid, files)
    except CgroupError as error:
        raise CgroupError(f"cannot enter the container's cgroup {path}: {error.message}",
                          hint="run sbx exec from a shell inside the delegated cgroup the container was started from",
                          exit_code=NOT_EXECUTABLE) from None
    return path
