"""sandbox.kernel against the real kernel, as an unprivileged user (also fine as root).

Each test forks: namespaces entered with unshare() belong to the whole process, and unshare(CLONE_NEWUSER)
needs a single-threaded one, which a freshly forked child always is. The child runs a body, sends back a
JSON result through a pipe, and leaves with os._exit so nothing of pytest runs twice.
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sandbox.kernel import Kernel
from sandbox.kernel import constants as k


def in_child(body: Callable[[], Any]) -> Any:
    """Run ``body`` in a forked child and return what it returned (JSON round-tripped); fail on any error."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 1
        try:
            os.close(read_fd)
            try:
                message = {"result": body()}
                status = 0
            except BaseException:
                message = {"error": traceback.format_exc()}
            with os.fdopen(write_fd, "w") as pipe:
                json.dump(message, pipe)
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        raw = pipe.read()
    _, wait_status = os.waitpid(pid, 0)
    message = json.loads(raw) if raw else {"error": "the child sent nothing"}
    if "error" in message:
        pytest.fail(f"child failed:\n{message['error']}")
    assert os.waitstatus_to_exitcode(wait_status) == 0
    return message["result"]


def become_root_in_new_userns(kernel: Kernel, extra_flags: int = 0) -> None:
    """unshare a user namespace (plus ``extra_flags``) and map our own ids to 0 in it."""
    uid, gid = os.getuid(), os.getgid()
    kernel.unshare(k.CLONE_NEWUSER | extra_flags)
    # An unprivileged process may map only its own ids, and only after giving up setgroups(2) for good
    # (otherwise it could drop a supplementary group that a file's permissions deny).
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
    Path("/proc/self/gid_map").write_text(f"0 {gid} 1")


def mountinfo_targets() -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]


def test_unshare_user_namespace_maps_us_to_root() -> None:
    outside = os.getuid()

    def body() -> dict[str, Any]:
        become_root_in_new_userns(Kernel(), k.CLONE_NEWNS)
        return {"uid": os.getuid(), "gid": os.getgid(), "uid_map": Path("/proc/self/uid_map").read_text().split()}

    result = in_child(body)
    assert result["uid"] == 0
    assert result["gid"] == 0
    assert result["uid_map"] == ["0", str(outside), "1"]
    assert os.getuid() == outside


def test_tmpfs_mount_is_visible_only_inside_the_new_mount_namespace(tmp_path: Path) -> None:
    target = tmp_path / "mnt"
    target.mkdir()

    def body() -> dict[str, Any]:
        kernel = Kernel()
        become_root_in_new_userns(kernel, k.CLONE_NEWNS)
        kernel.mount(None, "/", None, k.MS_REC | k.MS_PRIVATE)
        kernel.mount("tmpfs", str(target), "tmpfs", k.MS_NOSUID | k.MS_NODEV, "size=1m,mode=0755")
        (target / "inside").write_text("hello")
        return {"ismount": os.path.ismount(target), "listed": str(target) in mountinfo_targets()}

    assert in_child(body) == {"ismount": True, "listed": True}
    assert not os.path.ismount(target)
    assert str(target) not in mountinfo_targets()
    assert list(target.iterdir()) == []


def test_umount2_detaches_a_mount_in_the_new_namespace(tmp_path: Path) -> None:
    def body() -> list[bool]:
        kernel = Kernel()
        become_root_in_new_userns(kernel, k.CLONE_NEWNS)
        kernel.mount(None, "/", None, k.MS_REC | k.MS_PRIVATE)
        kernel.mount("tmpfs", str(tmp_path), "tmpfs")
        mounted = os.path.ismount(tmp_path)
        kernel.umount2(str(tmp_path), k.MNT_DETACH)
        return [mounted, os.path.ismount(tmp_path)]

    assert in_child(body) == [True, False]


def test_pivot_root_into_a_tmpfs(tmp_path: Path) -> None:
    new_root = tmp_path / "root"
    new_root.mkdir()

    def body() -> list[str]:
        kernel = Kernel()
        become_root_in_new_userns(kernel, k.CLONE_NEWNS)
        kernel.mount(None, "/", None, k.MS_REC | k.MS_PRIVATE)
        # pivot_root(2) wants new_root to be a mount point, so bind it onto itself first.
        kernel.mount(str(new_root), str(new_root), None, k.MS_BIND | k.MS_REC)
        (new_root / "old").mkdir()
        (new_root / "marker").write_text("")
        kernel.pivot_root(str(new_root), str(new_root / "old"))
        os.chdir("/")
        kernel.umount2("/old", k.MNT_DETACH)
        os.rmdir("/old")
        return sorted(os.listdir("/"))

    assert in_child(body) == ["marker"]


def test_sethostname_in_a_new_uts_namespace_changes_only_the_child() -> None:
    before = os.uname().nodename

    def body() -> str:
        kernel = Kernel()
        become_root_in_new_userns(kernel, k.CLONE_NEWUTS)
        kernel.sethostname("sbx-kernel-test")
        kernel.setdomainname("sbx.invalid")
        return os.uname().nodename

    assert in_child(body) == "sbx-kernel-test"
    assert os.uname().nodename == before


def test_setns_rejoins_an_earlier_uts_namespace() -> None:
    def body() -> list[str]:
        kernel = Kernel()
        become_root_in_new_userns(kernel, k.CLONE_NEWUTS)
        kernel.sethostname("first")
        first = os.open("/proc/self/ns/uts", os.O_RDONLY)
        kernel.unshare(k.CLONE_NEWUTS)
        kernel.sethostname("second")
        names = [os.uname().nodename]
        kernel.setns(first, k.CLONE_NEWUTS)
        names.append(os.uname().nodename)
        return names

    assert in_child(body) == ["second", "first"]


def test_unprivileged_sethostname_without_a_namespace_is_refused() -> None:
    if os.geteuid() == 0:
        pytest.skip("root may set the host's name; not trying")
    with pytest.raises(PermissionError) as raised:
        Kernel().sethostname("nope")
    assert raised.value.strerror == "sethostname: Operation not permitted"


def test_prctl_no_new_privs_shows_in_proc_status() -> None:
    def body() -> list[Any]:
        kernel = Kernel()
        kernel.prctl(k.PR_SET_NO_NEW_PRIVS, 1)
        kernel.prctl(k.PR_SET_NAME, "sbx-probe")
        status = Path("/proc/self/status").read_text()
        return ["NoNewPrivs:\t1" in status, kernel.prctl(k.PR_GET_NO_NEW_PRIVS), Path("/proc/self/comm").read_text()]

    assert in_child(body) == [True, 1, "sbx-probe\n"]


def test_setrlimit_and_sched_setaffinity_through_libc() -> None:
    def body():
        import errno
        import resource

        kernel = Kernel()
        kernel.setrlimit(k.RLIMITS["nofile"], 64, 128)
        first = min(os.sched_getaffinity(0))
        kernel.sched_setaffinity(0, frozenset({first}))
        try:
            kernel.setrlimit(k.RLIMITS["nofile"], 64, 1 << 40)  # above the hard limit (and nr_open): refused
            refused = False
        except PermissionError as error:
            refused = error.errno == errno.EPERM
        return [list(resource.getrlimit(resource.RLIMIT_NOFILE)), sorted(os.sched_getaffinity(0)) == [first], refused]

    assert in_child(body) == [[64, 128], True, True]


def test_clone_makes_pid_1_of_a_new_pid_namespace_in_a_new_user_namespace() -> None:
    """What the launcher builds on: the child is pid 1 of its own pid namespace (its parent outside it: ppid 0),
    in a new user namespace whose owner it is not root of yet (unmapped: the overflow uid), and we wait for it."""
    read_fd, write_fd = os.pipe()
    pid = Kernel().clone(k.CLONE_NEWUSER | k.CLONE_NEWPID)
    if pid == 0:
        try:
            os.write(write_fd, json.dumps([os.getpid(), os.getppid(), os.getuid()]).encode())
        finally:
            os._exit(3)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        seen = json.loads(pipe.read())
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3
    assert seen == [1, 0, int(Path("/proc/sys/kernel/overflowuid").read_text())]
