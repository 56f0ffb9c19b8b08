"""A user namespace's id maps: written by the parent with newuidmap/newgidmap, or by the child itself for a single
id; then the child becomes the namespace's root.

Only the user's own id can be mapped without help, and only by the namespace's own process; ranges from
/etc/subuid need the setuid helpers newuidmap/newgidmap (Debian package ``uidmap``), run by the parent on the
child's pid. :func:`map_ids` is the parent's step of :func:`sandbox.runtime.sync.parent_handshake`;
:func:`write_own_maps` and :func:`become_root` are the child's after :func:`sandbox.runtime.sync.child_handshake`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable

from sandbox.errors import NamespaceError
from sandbox.runtime.idmap import IdMap

_STDERR_TAIL = 2000
_HELPER_TIMEOUT = 30.0
USERNS_HINT = (
    "unprivileged user namespaces may be disabled: check sysctl kernel.unprivileged_userns_clone, "
    "user.max_user_namespaces and kernel.apparmor_restrict_unprivileged_userns (sbx doctor checks them all)"
)


def tail(data: bytes | None) -> str:
    """The end of a helper's stderr, for an error message."""
    text = (data or b"").decode("utf-8", "replace").strip()
    return text if len(text) <= _STDERR_TAIL else "..." + text[-_STDERR_TAIL:]


def helpers_for(idmap: IdMap) -> dict[str, str]:
    """The setuid helpers ``idmap`` needs (none for a single id), found before any process is started."""
    return {} if idmap.single else {name: find_helper(name) for name in ("newuidmap", "newgidmap")}


def find_helper(program: str) -> str:
    found = which(program)
    if found is None:
        raise NamespaceError(
            f"{program} not found: it is needed to map subordinate ids into a user namespace",
            hint="install the uidmap package (sudo apt-get install uidmap); sbx doctor checks the rest",
            program=program,
        )
    return found


def which(program: str) -> str | None:
    """``shutil.which`` for a bare program name: the first executable file of that name on ``$PATH`` (default
    ``os.defpath``). Here, not shutil: importing shutil (and the compressors it imports) costs the monitor's start."""
    for directory in (os.environ.get("PATH") or os.defpath).split(os.pathsep):
        path = os.path.join(directory or os.curdir, program)
        if os.access(path, os.X_OK) and os.path.isfile(path):
            return path
    return None


def map_ids(pid: int, idmap: IdMap, helpers: dict[str, str], deadline: float | None = None,
            meanwhile: Callable[[], object] | None = None) -> dict[str, int] | None:
    """Map ``pid``'s new user namespace: the single id goes back to the child to write itself (the GO's
    ``own_maps``), ranges are written here by the helpers. ``meanwhile`` runs while they run (or at once)."""
    if idmap.single:
        if meanwhile is not None:
            meanwhile()
        return {"uid": idmap.uids[0].host_id, "gid": idmap.gids[0].host_id}
    write_maps(pid, idmap, helpers, deadline, meanwhile)
    return None


def write_maps(pid: int, idmap: IdMap, helpers: dict[str, str], deadline: float | None,
               meanwhile: Callable[[], object] | None = None) -> None:
    """Map ``pid``'s user namespace with newuidmap and newgidmap, run side by side: they write different files
    (uid_map, gid_map) and neither needs the other's, so the two setuid helpers cost the start one helper's time.

    They are started with ``os.posix_spawn`` as subprocess would start them (stdin and stdout on /dev/null, stderr
    a pipe, no inherited descriptor but those, SIGPIPE and SIGXFSZ at their defaults) without importing subprocess,
    which the monitor would otherwise import on every container's start."""
    timeout = _HELPER_TIMEOUT if deadline is None else max(0.1, min(_HELPER_TIMEOUT, deadline - time.monotonic()))
    until = time.monotonic() + timeout
    running: list[_Helper] = []
    inherited = _inheritable_fds()  # the helpers' own pipes are close-on-exec: one look serves both
    try:
        for program, ranges in (("newuidmap", idmap.uids), ("newgidmap", idmap.gids)):
            command = [helpers[program], str(pid)]
            for item in ranges:
                command += [str(item.container_id), str(item.host_id), str(item.size)]
            running.append(_Helper(program, command, inherited))
        if meanwhile is not None:  # the helpers' exec and setuid checks take milliseconds: not spent waiting
            meanwhile()
        _collect(running, until)
        for helper in running:
            if helper.returncode:
                program = helper.program
                kind = "subuid" if program == "newuidmap" else "subgid"
                raise NamespaceError(
                    f"{program} failed (exit {helper.returncode}): {tail(bytes(helper.stderr)) or 'no message'}",
                    hint=f"check your range in /etc/{kind} (usermod --add-{kind}s) and that {program} is setuid root; "
                    "run sbx doctor",
                    program=program,
                    returncode=helper.returncode,
                )
        for helper in running:
            if helper.returncode is None:
                raise NamespaceError(f"{helper.program} did not finish in time", program=helper.program)
    finally:
        for helper in running:
            helper.close()


class _Helper:
    """One id-map helper started with posix_spawn: its pid, its stderr pipe, and (once ended) its exit code.
    ``inherited``: the caller's descriptors the helper would inherit, closed in it (:func:`_inheritable_fds`)."""

    def __init__(self, program: str, command: list[str], inherited: list[int]) -> None:
        self.program = program
        self.stderr = bytearray()
        self.returncode: int | None = None
        self.pid: int | None = None
        self.err_fd, write_fd = os.pipe()  # both close-on-exec; the child gets write_fd as its fd 2 only
        try:
            actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                       (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                       (os.POSIX_SPAWN_DUP2, write_fd, 2)]
            actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in inherited]
            self.pid = os.posix_spawn(command[0], command, dict(os.environ), file_actions=actions,
                                      setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
        except BaseException:
            os.close(self.err_fd)
            raise
        finally:
            os.close(write_fd)

    def reap(self, until: float) -> None:
        """Its exit code once it has exited, waiting until ``until`` (monotonic) at most."""
        while self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
            elif time.monotonic() >= until:
                return
            else:
                time.sleep(0.001)

    def close(self) -> None:
        """Kill and reap it if it still runs; close its pipe."""
        if self.pid is not None and self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        if self.err_fd >= 0:
            os.close(self.err_fd)
            self.err_fd = -1


def _collect(helpers: list[_Helper], until: float) -> None:
    """Read the helpers' stderr to its end and reap them, until ``until`` (monotonic) or one has failed; one still
    running then keeps ``returncode`` None."""
    import select

    poller = select.poll()
    open_fds = {helper.err_fd: helper for helper in helpers}
    for fd in open_fds:
        poller.register(fd, select.POLLIN)
    while open_fds:
        left = until - time.monotonic()
        if left <= 0:
            return
        for fd, _ in poller.poll(left * 1000):
            helper = open_fds[fd]
            data = os.read(fd, 65536)
            if data:
                helper.stderr += data[: _STDERR_TAIL * 4 - len(helper.stderr)]
                continue
            poller.unregister(fd)
            del open_fds[fd]
            helper.reap(until)  # stderr closed: it has exited or is about to
            if helper.returncode:
                return


def _inheritable_fds() -> list[int]:
    """This process's descriptors above stdio that a spawned program would inherit (subprocess's close_fds)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        with contextlib.suppress(OSError):
            if fd > 2 and os.get_inheritable(fd):
                found.append(fd)
    return found


def write_own_maps(uid: int, gid: int) -> None:
    # An unprivileged process may map only its own ids, and its gid only once setgroups is denied (else it could
    # drop a supplementary group that denies it access somewhere).
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1\n"), ("gid_map", f"0 {gid} 1\n")):
        with open(f"/proc/self/{name}", "w") as file:
            file.write(text)


def become_root(kernel, own_maps: tuple[int, int] | None = None) -> None:
    """Become root of this process's new user namespace through ``kernel``, mapping it first to ``own_maps``
    (uid, gid) when the parent left that to it (:func:`sandbox.runtime.sync.child_handshake` returns them)."""
    if own_maps:
        write_own_maps(*own_maps)
    kernel.setresgid(0, 0, 0)
    # setgroups is denied with a single map, or when newgidmap found no subgid range: then there is nothing to drop.
    with contextlib.suppress(PermissionError):
        kernel.setgroups(())
    kernel.setresuid(0, 0, 0)
