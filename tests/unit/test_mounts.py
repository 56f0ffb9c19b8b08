"""The container mount plan as data, container-path resolution, and the executor against the recording fake kernel."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from sandbox.errors import RootfsError
from sandbox.kernel.constants import (
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_STRICTATIME,
)
from sandbox.kernel.fake import FakeKernel
from sandbox.network.etcfiles import write_etc_files
from sandbox.runtime.idmap import IdMap, IdRange
from sandbox.runtime.mounts import (
    MountOp,
    apply_mounts,
    locked_flags,
    plan_mounts,
    resolve_in_root,
)
from sandbox.runtime.rootfs import RootfsPlan
from sandbox.runtime.spec import ContainerSpec, Mount, Process

SAFE = MS_NOSUID | MS_NODEV | MS_NOEXEC
ETC = {"/etc/hostname": "web\n", "/etc/hosts": "127.0.0.1 localhost\n", "/etc/resolv.conf": "nameserver 10.0.2.3\n"}


def make_spec(**changes) -> ContainerSpec:
    fields = dict(
        id="c" * 64,
        rootfs=RootfsPlan("copy", "/layers", ("a/diff",), copy="/ctr/rootfs"),
        process=Process(args=("/bin/sh",), env=()),
        idmap=IdMap((IdRange(0, 1000, 1),), (IdRange(0, 1000, 1),)),
        hostname="web",
        etc_files=dict(ETC),
    )
    fields.update(changes)
    return ContainerSpec(**fields)


def by_target(ops, target: str) -> MountOp:
    (op,) = [op for op in ops if op.target == target]
    return op


def mounts(kernel: FakeKernel):
    return [call.args for call in kernel.calls if call.op == "mount"]


# TESTPLAN 29, written out here rather than read from the module: dropping an entry there must fail a test.
EXPECTED_MASKED = (  # Docker's list (moby oci/defaults.go), written out here: a removed entry must fail a test
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
EXPECTED_READ_ONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


# --- the plan as data ----------------------------------------------------------------------------------------------


def test_plan_order_puts_proc_and_dev_first_then_sys_etc_volumes_masks(tmp_path):
    ops = plan_mounts(make_spec(), str(tmp_path / "mnt"), str(tmp_path))
    targets = [op.target for op in ops]
    assert targets[:2] == ["/proc", "/dev"]
    assert targets[2:8] == ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"]
    assert targets[8:16] == ["/dev/pts", "/dev/ptmx", "/dev/fd", "/dev/stdin", "/dev/stdout", "/dev/stderr",
                             "/dev/shm", "/dev/mqueue"]
    assert targets[16:21] == ["/sys", "/sys/fs/cgroup", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]
    masks = len(EXPECTED_MASKED)
    assert tuple(targets[21:21 + masks]) == EXPECTED_MASKED and tuple(targets[21 + masks:]) == EXPECTED_READ_ONLY
    assert all(isinstance(op, MountOp) for op in ops)
    with pytest.raises(AttributeError):
        ops[0].target = "/elsewhere"  # frozen


def test_plan_flags_and_options(tmp_path):
    ops = plan_mounts(make_spec(), "/root", str(tmp_path))
    proc = by_target(ops, "/proc")
    assert (proc.kind, proc.fstype, proc.flags) == ("proc", "proc", SAFE)
    dev = by_target(ops, "/dev")
    assert (dev.fstype, dev.flags, dev.data) == ("tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k")
    null = by_target(ops, "/dev/null")
    assert (null.source, null.flags, null.create) == ("/dev/null", MS_BIND, "file")
    pts = by_target(ops, "/dev/pts")
    assert pts.fstype == "devpts" and pts.data == "newinstance,ptmxmode=0666,mode=0620" and "gid=" not in pts.data
    assert by_target(ops, "/dev/ptmx").link == "pts/ptmx" and by_target(ops, "/dev/fd").link == "/proc/self/fd"
    assert by_target(ops, "/dev/stderr").link == "/proc/self/fd/2"
    shm = by_target(ops, "/dev/shm")
    assert (shm.flags, shm.data) == (SAFE, "mode=1777,size=65536k")
    assert by_target(ops, "/dev/mqueue").fstype == "mqueue"
    hosts = by_target(ops, "/etc/hosts")
    assert (hosts.source, hosts.flags, hosts.create) == (str(tmp_path / "etc" / "hosts"), MS_BIND, "file")
    assert [op.target for op in ops if op.kind == "mask"] == list(EXPECTED_MASKED)
    assert [op.target for op in ops if op.kind == "readonly"] == list(EXPECTED_READ_ONLY)
    assert "/" not in [op.target for op in ops]


def test_network_none_mounts_sysfs_and_host_network_binds_the_hosts_sys(tmp_path):
    own = plan_mounts(make_spec(network="none"), "/root", str(tmp_path))
    sys = by_target(own, "/sys")
    assert (sys.kind, sys.fstype, sys.flags) == ("sysfs", "sysfs", SAFE | MS_RDONLY)
    cgroup = by_target(own, "/sys/fs/cgroup")
    assert cgroup.kind == "cgroup2" and (cgroup.flags & MS_RDONLY or cgroup.read_only_remount)
    host = plan_mounts(make_spec(network="host"), "/root", str(tmp_path))
    sys = by_target(host, "/sys")
    assert (sys.kind, sys.source, sys.flags, sys.read_only_remount) == ("bind", "/sys", MS_BIND | MS_REC, True)
    # only its own subtree, with the host's network too; over an empty tmpfs, since mounting cgroup2 right onto the
    # host's own cgroup2 mount (pure v2 machines) is EBUSY
    cgroup = [op for op in host if op.target == "/sys/fs/cgroup"]
    assert [(op.kind, op.fstype) for op in cgroup] == [("tmpfs", "tmpfs"), ("cgroup2", "cgroup2")]
    assert all(op.flags & MS_RDONLY for op in cgroup)


def test_read_only_root_is_remounted_last(tmp_path):
    ops = plan_mounts(make_spec(read_only=True), "/root", str(tmp_path))
    assert ops[-1] == MountOp("/", None, None, MS_BIND | MS_REMOUNT | MS_RDONLY, kind="remount")


def test_user_mounts_bind_and_tmpfs(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "file").write_text("x")
    spec = make_spec(mounts=(
        Mount("bind", "/srv/data/inner", str(tmp_path / "file"), read_only=True),
        Mount("bind", "/srv/data/", str(tmp_path / "data")),
        Mount("tmpfs", "/run", options=("size=64m", "mode=1777")),
        Mount("tmpfs", "/scratch", read_only=True),
    ))
    ops = plan_mounts(spec, "/root", str(tmp_path))
    users = [op for op in ops if op.target in ("/srv/data", "/srv/data/inner", "/run", "/scratch")]
    assert [op.target for op in users] == ["/run", "/scratch", "/srv/data", "/srv/data/inner"]  # parents first
    run, scratch, data, inner = users
    assert (run.fstype, run.flags, run.data) == ("tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777")
    assert scratch.flags & MS_RDONLY and scratch.data is None
    assert (data.flags, data.create, data.read_only_remount) == (MS_BIND | MS_REC, "dir", False)
    assert (inner.create, inner.read_only_remount) == ("file", True)
    assert ops.index(inner) < ops.index(by_target(ops, EXPECTED_MASKED[0]))


@pytest.mark.parametrize(
    ("mount", "message"),
    [
        (Mount("bind", "/data", "/nonexistent/sbx-test-source"), "does not exist"),
        (Mount("bind", "/data", "relative/source"), "absolute host path"),
        (Mount("bind", "data", "/tmp"), "absolute path in the container"),
        (Mount("bind", "/", "/tmp"), "cannot be the container's root"),
        (Mount("overlay", "/data"), "unknown mount type"),
    ],
)
def test_bad_user_mounts_are_clean_errors(tmp_path, mount, message):
    with pytest.raises(RootfsError, match=message):
        plan_mounts(make_spec(mounts=(mount,)), "/root", str(tmp_path))


def test_etc_files_are_written_0644_and_only_known_names(tmp_path):
    old = os.umask(0o077)
    try:
        write_etc_files(make_spec().etc_files, str(tmp_path))
    finally:
        os.umask(old)
    hosts = tmp_path / "etc" / "hosts"
    assert hosts.read_text() == ETC["/etc/hosts"] and stat.S_IMODE(hosts.stat().st_mode) == 0o644
    assert sorted(p.name for p in (tmp_path / "etc").iterdir()) == ["hostname", "hosts", "resolv.conf"]
    only = plan_mounts(make_spec(etc_files={"hosts": "x"}), "/root", str(tmp_path))
    assert [op.target for op in only if op.target.startswith("/etc/")] == ["/etc/hosts"]
    with pytest.raises(RootfsError, match="does not provide"):
        write_etc_files(make_spec(etc_files={"/etc/../passwd": "x"}).etc_files, str(tmp_path))


def test_etc_files_are_fsynced_before_their_rename_unless_for_a_rm_container(tmp_path, monkeypatch):
    """A kept container's /etc files survive a power cut whole (data before the rename); a --rm one's need not."""
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("rename"), real_replace(a, b))[1])
    write_etc_files(make_spec().etc_files, str(tmp_path / "kept"))
    assert calls == ["fsync", "rename"] * 3
    calls.clear()
    write_etc_files(make_spec().etc_files, str(tmp_path / "rm"), durable=False)
    assert calls == ["rename"] * 3
    assert (tmp_path / "rm" / "etc" / "hosts").read_text() == ETC["/etc/hosts"]


# --- resolve_in_root -------------------------------------------------------------------------------------------------


def test_resolve_follows_absolute_links_inside_the_root(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "data").symlink_to("/etc")
    assert resolve_in_root(str(tmp_path), "/data") == str(tmp_path / "etc")
    (tmp_path / "etc" / "rel").symlink_to("../etc/./")
    assert resolve_in_root(str(tmp_path), "/etc/rel/x") == str(tmp_path / "etc" / "x")


def test_resolve_clamps_dotdot_at_the_root(tmp_path):
    (tmp_path / "up").symlink_to("../../../../..")
    assert resolve_in_root(str(tmp_path), "/../../etc") == str(tmp_path / "etc")
    assert resolve_in_root(str(tmp_path), "/up/etc/passwd") == str(tmp_path / "etc" / "passwd")
    assert resolve_in_root(str(tmp_path), "/") == str(tmp_path)


def test_resolve_refuses_loops(tmp_path):
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("/a")
    with pytest.raises(RootfsError, match="too many levels") as caught:
        resolve_in_root(str(tmp_path), "/a/x")
    assert caught.value.errno == errno.ELOOP


def test_resolve_returns_missing_tails_unresolved(tmp_path):
    (tmp_path / "opt").mkdir()
    (tmp_path / "link").symlink_to("opt")
    assert resolve_in_root(str(tmp_path), "/link/new/dir") == str(tmp_path / "opt" / "new" / "dir")
    assert resolve_in_root(str(tmp_path), "/missing/../link") == str(tmp_path / "opt")


# --- the executor ----------------------------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path) -> Path:
    rootfs = tmp_path / "mnt"
    for directory in ("proc", "sys", "dev", "etc"):
        (rootfs / directory).mkdir(parents=True)
    return rootfs


def test_apply_mounts_at_resolved_host_targets_and_creates_mountpoints(tmp_path, root):
    (root / "proc" / "kcore").write_text("")  # a file to mask; /proc/acpi a directory; the rest absent
    (root / "proc" / "acpi").mkdir()
    (root / "proc" / "sys").mkdir()
    write_etc_files(make_spec().etc_files, str(tmp_path))
    kernel = FakeKernel()
    apply_mounts(kernel, plan_mounts(make_spec(), str(root), str(tmp_path)), str(root))
    calls = mounts(kernel)
    assert calls[0] == ("proc", str(root / "proc"), "proc", SAFE, None)
    assert ("/dev/null", str(root / "dev" / "null"), None, MS_BIND, None) in calls
    assert (root / "dev" / "null").is_file() and (root / "dev" / "pts").is_dir() and (root / "etc" / "hosts").is_file()
    assert os.readlink(root / "dev" / "ptmx") == "pts/ptmx" and os.readlink(root / "dev" / "stdin") == "/proc/self/fd/0"
    assert ("/dev/null", str(root / "proc" / "kcore"), None, MS_BIND, None) in calls
    assert ("tmpfs", str(root / "proc" / "acpi"), "tmpfs", SAFE | MS_RDONLY, None) in calls
    assert not any(call[1] == str(root / "proc" / "keys") for call in calls)  # missing masked paths are skipped
    proc_sys = str(root / "proc" / "sys")
    assert (proc_sys, proc_sys, None, MS_BIND | MS_REC, None) in calls
    readonly = MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags(proc_sys)
    assert (None, proc_sys, None, readonly, None) in calls
    assert all(call[1].startswith(str(root) + "/") for call in calls)


def test_read_only_root_remount_keeps_the_locked_flags(tmp_path, root):
    kernel = FakeKernel()
    apply_mounts(kernel, plan_mounts(make_spec(read_only=True, etc_files={}), str(root), str(tmp_path)), str(root))
    expected = MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags(str(root))
    assert mounts(kernel)[-1] == (None, str(root), None, expected, None)
    assert locked_flags(str(root)) & (MS_NOSUID | MS_NODEV | MS_NOEXEC) == _statvfs_locked(str(root))


def _statvfs_locked(path: str) -> int:
    flags = os.statvfs(path).f_flag
    return ((MS_NOSUID if flags & os.ST_NOSUID else 0) | (MS_NODEV if flags & os.ST_NODEV else 0)
            | (MS_NOEXEC if flags & os.ST_NOEXEC else 0))


@pytest.mark.parametrize("name", ["proc", "sys", "dev"])
def test_a_symlinked_proc_sys_or_dev_is_refused_before_anything_is_mounted(tmp_path, root, name):
    (tmp_path / "host").mkdir()
    (root / name).rmdir()
    (root / name).symlink_to(str(tmp_path / "host"))
    kernel = FakeKernel()
    with pytest.raises(RootfsError, match=f"image's /{name} is a symlink"):
        apply_mounts(kernel, plan_mounts(make_spec(etc_files={}), str(root), str(tmp_path)), str(root))
    assert not any(call[1].startswith(str(tmp_path / "host")) for call in mounts(kernel))
    assert list((tmp_path / "host").iterdir()) == []


def test_a_symlinked_dev_null_and_volume_target_stay_inside_the_root(tmp_path, root):
    host_file = tmp_path / "precious"
    host_file.write_text("keep")
    (root / "dev" / "null").symlink_to(str(host_file))
    (root / "data").symlink_to("/etc")
    (tmp_path / "volume").mkdir()
    spec = make_spec(etc_files={}, mounts=(Mount("bind", "/data", str(tmp_path / "volume")),))
    kernel = FakeKernel()
    apply_mounts(kernel, plan_mounts(spec, str(root), str(tmp_path)), str(root))
    calls = mounts(kernel)
    (volume,) = [call for call in calls if call[1] == str(root / "etc")]
    assert volume[0].startswith("/proc/self/fd/") and volume[2:] == (None, MS_BIND | MS_REC, None)  # from an fd
    assert ("/dev/null", str(root / str(host_file).lstrip("/")), None, MS_BIND, None) in calls
    assert all(call[1].startswith(str(root) + "/") for call in calls)
    assert host_file.read_text() == "keep"


def test_sysfs_eperm_falls_back_to_a_read_only_bind_of_the_hosts_sys(tmp_path, root):
    ops = plan_mounts(make_spec(network="none", etc_files={}), str(root), str(tmp_path))
    sysfs = [op.target for op in ops].index("/sys")
    nth = sum(1 for op in ops[:sysfs] if op.kind != "symlink") + 1
    kernel = FakeKernel().fail("mount", errno.EPERM, nth=nth)
    apply_mounts(kernel, ops, str(root))
    target = str(root / "sys")
    calls = mounts(kernel)
    assert calls[nth - 1] == ("sysfs", target, "sysfs", SAFE | MS_RDONLY, None)
    assert calls[nth] == ("/sys", target, None, MS_BIND | MS_REC, None)
    assert calls[nth + 1] == (None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags(target), None)


def test_cgroup2_eperm_falls_back_and_other_errors_are_clean(tmp_path, root):
    ops = plan_mounts(make_spec(network="none", etc_files={}), str(root), str(tmp_path))
    cgroup = [op.target for op in ops].index("/sys/fs/cgroup")
    nth = sum(1 for op in ops[:cgroup] if op.kind != "symlink") + 1
    kernel = FakeKernel().fail("mount", errno.EPERM, nth=nth)
    apply_mounts(kernel, ops, str(root))
    assert mounts(kernel)[nth] == ("/sys/fs/cgroup", str(root / "sys" / "fs" / "cgroup"), None, MS_BIND | MS_REC,
                                   None)
    failing = FakeKernel().fail("mount", errno.ENODEV, nth=1)
    with pytest.raises(RootfsError, match="cannot mount proc on /proc") as caught:
        apply_mounts(failing, ops, str(root))
    assert (caught.value.op, caught.value.path, caught.value.errno) == ("mount", "/proc", errno.ENODEV)


def test_something_in_the_way_of_a_mountpoint_is_a_clean_error(tmp_path, root):
    (root / "dev" / "pts").write_text("not a directory")
    (root / "dev" / "fd").mkdir()
    ops = plan_mounts(make_spec(etc_files={}), str(root), str(tmp_path))
    with pytest.raises(RootfsError, match="cannot prepare /dev/fd in the container") as caught:
        apply_mounts(FakeKernel(), ops, str(root))
    assert caught.value.errno == errno.EEXIST


def test_submounts_of_a_read_only_bind_are_found_from_mountinfo(tmp_path):
    """A read-only remount changes one mount: the recursive bind's submounts must each be remounted too."""
    from sandbox.runtime.mounts import _mounts_below

    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "82 81 0:28 / /r/sys/fs/cgroup rw,relatime - tmpfs tmpfs rw\n"
        "83 82 0:29 / /r/sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
        "84 82 0:38 / /r/sys/fs/cgroup/with\\040space rw - cgroup2 cgroup2 rw\n"
        "85 82 0:28 / /r/sys/fs/cgroup rw,relatime - tmpfs tmpfs rw\n"
        "86 81 0:40 / /r/sys/fs/cgroupx rw - tmpfs tmpfs rw\n"
        "87 1 0:41 / /r/sys/kernel rw - sysfs sysfs rw\n"
    )
    assert _mounts_below("/r/sys/fs/cgroup", str(mountinfo)) == [
        "/r/sys/fs/cgroup/cpu", "/r/sys/fs/cgroup/with space"]
    assert _mounts_below("/r/sys", str(mountinfo)) == [
        "/r/sys/fs/cgroup", "/r/sys/fs/cgroup/cpu", "/r/sys/fs/cgroup/with space", "/r/sys/fs/cgroupx", "/r/sys/kernel"]
    assert _mounts_below("/elsewhere", str(mountinfo)) == []


def test_init_is_the_hosts_static_init_bound_read_only_at_dev_init(tmp_path, monkeypatch):
    from sandbox.runtime import mounts as module

    init = tmp_path / "tini-static"
    init.write_text("")
    init.chmod(0o755)
    monkeypatch.setattr(module, "INIT_BINARIES", (str(tmp_path / "missing"), str(init)))
    op = by_target(plan_mounts(make_spec(init=True), "/r", "/c"), "/dev/init")
    assert (op.source, op.kind, op.create, op.read_only_remount) == (str(init), "bind", "file", True)
    assert op.flags & MS_NOSUID and op.flags & MS_NODEV
    assert not [op for op in plan_mounts(make_spec(), "/r", "/c") if op.target == "/dev/init"]
    assert module.init_args(("sh", "-c", "x")) == ["/dev/init", "--", "sh", "-c", "x"]


def test_init_without_tini_or_catatonit_is_a_clear_error(tmp_path):
    from sandbox.runtime.mounts import find_init

    with pytest.raises(RootfsError, match="needs tini or catatonit") as caught:
        find_init((str(tmp_path / "tini-static"), str(tmp_path / "catatonit")))
    assert "apt-get install tini" in caught.value.hint


def test_a_bind_source_is_mounted_from_an_fd_of_the_pinned_path(tmp_path, root):
    source = tmp_path / "volume"
    source.mkdir()
    info = source.stat()
    seen = []

    class Recording(FakeKernel):
        def mount(self, source_path, target, fstype, flags=0, data=None):
            if source_path and source_path.startswith("/proc/self/fd/"):
                seen.append(os.stat(source_path).st_ino)  # what the fd is, while it is open
            return super().mount(source_path, target, fstype, flags, data)

    spec = make_spec(etc_files={}, mounts=(Mount("bind", "/data", str(source), pin=(info.st_dev, info.st_ino)),))
    apply_mounts(Recording(), plan_mounts(spec, str(root), str(tmp_path)), str(root))
    assert seen == [info.st_ino]


@pytest.mark.parametrize("swap", ["symlink", "symlinked parent", "other directory"])
def test_a_bind_source_swapped_since_create_is_refused(tmp_path, root, swap):
    from sandbox.errors import BindSourceChanged

    parent = tmp_path / "shared"
    source = parent / "volume"
    source.mkdir(parents=True)
    info = source.stat()
    home = tmp_path / "home"
    home.mkdir()
    (home / "secret").write_text("s")
    spec = make_spec(etc_files={}, mounts=(Mount("bind", "/data", str(source), pin=(info.st_dev, info.st_ino)),))
    plan = plan_mounts(spec, str(root), str(tmp_path))  # planned at start, from the stored spec
    if swap == "symlink":
        source.rmdir()
        source.symlink_to(home)
    elif swap == "symlinked parent":
        parent.rename(tmp_path / "moved")
        parent.symlink_to(tmp_path / "moved")
    else:
        source.rename(tmp_path / "old")
        source.mkdir()
    kernel = FakeKernel()
    with pytest.raises(BindSourceChanged, match="since the container was created"):
        apply_mounts(kernel, plan, str(root))
    assert not [call for call in mounts(kernel) if call[1] == str(root / "data")]


def test_bind_pins_survive_the_stored_spec():
    from sandbox.runtime.spec import mount_from_json, mount_to_json

    pinned = Mount("bind", "/data", "/srv/x", pin=(2049, 1234))
    assert mount_from_json(mount_to_json(pinned)) == pinned
    assert "pin" not in mount_to_json(Mount("bind", "/data", "/srv/x"))  # records from before pins still load
