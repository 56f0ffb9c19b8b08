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
import time
from typing import TYPE_CHECKING

from sandbox.errors import NamespaceError
from sandbox.runtime.idmap import IdMap

if TYPE_CHECKING:
    import subprocess

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
    import shutil

    found = shutil.which(program)
    if found is None:
        raise NamespaceError(
            f"{program} not found: it is needed to map subordinate ids into a user namespace",
            hint="install the uidmap package (sudo apt-get install uidmap); sbx doctor checks the rest",
            program=program,
        )
    return found


def map_ids(pid: int, idmap: IdMap, helpers: dict[str, str], deadline: float | None = None) -> dict[str, int] | None:
    """Map ``pid``'s new user namespace: the single id goes back to the child to write itself (the GO's
    ``own_maps``), ranges are written here by the helpers."""
    if idmap.single:
        return {"uid": idmap.uids[0].host_id, "gid": idmap.gids[0].host_id}
    write_maps(pid, idmap, helpers, deadline)
    return None


def write_maps(pid: int, idmap: IdMap, helpers: dict[str, str], deadline: float | None) -> None:
    """Map ``pid``'s user namespace with newuidmap and newgidmap, run side by side: they write different files
    (uid_map, gid_map) and neither needs the other's, so the two setuid helpers cost the start one helper's time."""
    import subprocess

    timeout = _HELPER_TIMEOUT if deadline is None else max(0.1, min(_HELPER_TIMEOUT, deadline - time.monotonic()))
    running: list[tuple[str, subprocess.Popen]] = []
    try:
        for program, ranges in (("newuidmap", idmap.uids), ("newgidmap", idmap.gids)):
            command = [helpers[program], str(pid)]
            for item in ranges:
                command += [str(item.container_id), str(item.host_id), str(item.size)]
            running.append((program, subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
        for program, process in running:
            try:
                _, stderr = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired as error:
                raise NamespaceError(f"{program} did not finish in time", program=program) from error
            if process.returncode != 0:
                kind = "subuid" if program == "newuidmap" else "subgid"
                raise NamespaceError(
                    f"{program} failed (exit {process.returncode}): {tail(stderr) or 'no message'}",
                    hint=f"check your range in /etc/{kind} (usermod --add-{kind}s) and that {program} is setuid root; "
                    "run sbx doctor",
                    program=program,
                    returncode=process.returncode,
                )
    finally:
        for _, process in running:
            if process.poll() is None:
                process.kill()
            process.wait()
            if process.stderr is not None:
                process.stderr.close()


def write_own_maps(uid: int, gid: int) -> None:
    # An unprivileged process may map only its own ids, and its gid only once setgroups is denied (else it could
    # drop a supplementary group that denies it access somewhere).
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1\n"), ("gid_map", f"0 {gid} 1\n")):
        with open(f"/proc/self/{name}", "w") as file:
            file.write(text)


def become_root(own_maps: tuple[int, int] | None = None) -> None:
    """Become root of this process's new user namespace, mapping it first to ``own_maps`` (uid, gid) when the
    parent left that to it (:func:`sandbox.runtime.sync.child_handshake` returns them)."""
    if own_maps:
        write_own_maps(*own_maps)
    os.setresgid(0, 0, 0)
    # setgroups is denied with a single map, or when newgidmap found no subgid range: then there is nothing to drop.
    with contextlib.suppress(PermissionError):
        os.setgroups([])
    os.setresuid(0, 0, 0)
