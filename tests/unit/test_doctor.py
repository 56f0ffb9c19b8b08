"""sbx doctor's checks against fake roots: each check reads only the paths of its Host, and each says what to fix."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sandbox.service import doctor
from sandbox.service.doctor import MISSING, OK, WARNING, Host, diagnose

ME = os.getuid()
ROOT = os.geteuid() == 0
as_root = pytest.mark.skipif(not ROOT, reason="faking setuid-root helpers and foreign-owned cgroups needs root")


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def make_host(tmp_path: Path, **overrides) -> Host:
    """A machine set up for sbx: ranges, helpers, sysctls, a delegated v2 cgroup, tun and fuse, a runtime dir."""
    etc, bin_dir = tmp_path / "etc", tmp_path / "bin"
    write(etc / "subuid", "ana:100000:65536\n")
    write(etc / "subgid", "ana:100000:65536\n")
    for name in ("newuidmap", "newgidmap", "slirp4netns", "pasta", "fuse-overlayfs"):
        write(bin_dir / name, "#!/bin/sh\n", 0o4755)
    sys_root = tmp_path / "proc-sys"
    write(sys_root / "user/max_user_namespaces", "15000\n")
    write(sys_root / "net/ipv4/ip_unprivileged_port_start", "80\n")
    cgroup = tmp_path / "cgroup"
    write(cgroup / "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n")
    write(cgroup / "user.slice/user-1000.slice/user@1000.service/cgroup.controllers", "cpuset cpu io memory pids\n")
    write(tmp_path / "self-cgroup", "0::/user.slice/user-1000.slice/user@1000.service/app.slice/term.scope\n")
    (cgroup / "user.slice/user-1000.slice/user@1000.service/app.slice/term.scope").mkdir(parents=True)
    if ROOT:  # as on a real machine, the slices above the user's service belong to root, not to the user
        for above in ("user.slice", "user.slice/user-1000.slice"):
            os.chown(cgroup / above, ME + 1, -1)
    write(tmp_path / "dev/net/tun", "", 0o666)
    write(tmp_path / "dev/fuse", "", 0o666)
    runtime = tmp_path / "run-user"
    runtime.mkdir(mode=0o700)
    runtime.chmod(0o700)
    (tmp_path / "linger").mkdir()
    write(tmp_path / "linger/ana", "")
    (tmp_path / "systemd").mkdir()
    data = tmp_path / "home/.local/share/sbx"
    write(tmp_path / "mountinfo", "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n")
    fields = dict(
        user="ana", uid=ME, gid=os.getgid(), etc=etc, proc_sys=sys_root, cgroup_root=cgroup,
        own_cgroup=tmp_path / "self-cgroup", mountinfo=tmp_path / "mountinfo", dev=tmp_path / "dev",
        linger_dir=tmp_path / "linger", systemd_dir=tmp_path / "systemd", path=str(bin_dir),
        runtime_dir=str(runtime), data_root=data,
    )
    fields.update(overrides)
    return Host(**fields)


def run(host: Host, userns: str | None = None, driver: str = "overlay"):
    def storage() -> str:
        return driver

    return diagnose(host, lambda: userns, storage)


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return make_host(tmp_path)


@as_root
def test_a_machine_set_up_passes_every_check(host: Host) -> None:
    report = run(host)
    assert {c.name: c.status for c in report.checks if c.status != OK} == {}
    assert report.can_run
    assert report.find("cgroup delegation").data["controllers"] == ["cpuset", "cpu", "io", "memory", "pids"]


def test_json_names_storage_driver_and_network_tools(host: Host) -> None:
    data = json.loads(json.dumps(run(host, driver="fuse-overlayfs").as_dict()))
    assert data["storage_driver"] == "fuse-overlayfs"
    assert set(data["network_tools"]) == {"slirp4netns", "pasta"}
    assert all(data["network_tools"].values())
    assert {c["status"] for c in data["checks"]} <= {OK, WARNING, MISSING}


def test_helper_without_setuid_blocks_when_a_range_needs_it(host: Host) -> None:
    (Path(host.path) / "newuidmap").chmod(0o755)
    report = run(host)
    check = report.find("newuidmap")
    assert check.status == MISSING and check.fails
    assert check.fix == f"sudo chown root {host.path}/newuidmap && sudo chmod u+s {host.path}/newuidmap"
    assert not report.can_run


def test_missing_helper_is_not_blocking_without_ranges(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    (Path(host.path) / "newgidmap").unlink()
    assert run(host).find("newgidmap").fails
    (host.etc / "subgid").write_text("")
    check = run(host).find("newgidmap")
    assert check.status == MISSING and check.fix == "sudo apt-get install uidmap"
    assert not check.fails


def test_missing_and_short_ranges_suggest_a_free_range(host: Host) -> None:
    (host.etc / "subuid").write_text("bob:100000:65536\n")
    (host.etc / "subgid").write_text("ana:300000:1000\n")
    report = run(host)
    subuid, subgid = report.find("subuid range"), report.find("subgid range")
    assert subuid.status == MISSING and not subuid.fails
    assert subuid.fix == "sudo usermod --add-subuids 196608-262143 ana"
    assert subgid.status == WARNING and subgid.data == {"start": 300000, "count": 1000}


@pytest.mark.parametrize(
    ("knob", "value", "fix"),
    [
        ("user/max_user_namespaces", "0", "sudo sysctl -w user.max_user_namespaces=28633"),
        ("kernel/unprivileged_userns_clone", "0", "sudo sysctl -w kernel.unprivileged_userns_clone=1"),
        ("kernel/apparmor_restrict_unprivileged_userns", "1",
         "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"),
    ],
)
def test_sysctls_that_refuse_user_namespaces(host: Host, knob: str, value: str, fix: str) -> None:
    write(host.proc_sys / knob, value + "\n")
    report = run(host, userns="cannot create a user namespace: Operation not permitted")
    check = report.find("user namespaces")
    assert check.status == MISSING and check.fails
    assert check.fix.startswith(fix)
    assert report.find("storage driver").fails  # not probed without a namespace
    assert not report.can_run


def test_refusing_sysctl_with_a_working_probe_only_warns(host: Host) -> None:
    """The probe is the truth (root, or a kernel that ignores the knob): the sysctl is then a warning."""
    write(host.proc_sys / "kernel/apparmor_restrict_unprivileged_userns", "1\n")
    report = run(host)
    check = report.find("user namespaces")
    assert check.status == WARNING and not check.fails
    assert report.can_run


def test_allowing_sysctls_pass(host: Host) -> None:
    write(host.proc_sys / "kernel/unprivileged_userns_clone", "1\n")
    write(host.proc_sys / "kernel/apparmor_restrict_unprivileged_userns", "0\n")
    assert run(host).find("user namespaces").status == OK


def test_probe_failure_alone_blocks(host: Host) -> None:
    check = run(host, userns="newuidmap failed (exit 1)").find("user namespaces")
    assert check.status == MISSING and "newuidmap failed" in check.detail


def test_copy_driver_warns_with_what_fuse_needs(host: Host) -> None:
    (Path(host.path) / "fuse-overlayfs").unlink()
    (host.dev / "fuse").chmod(0o600)
    host = Host(**{**host.__dict__, "uid": ME + 1})  # /dev/fuse is someone else's 0600 now
    check = run(host, driver="copy").find("storage driver")
    assert check.status == WARNING and not check.fails
    assert check.fix == f"sudo apt-get install fuse-overlayfs && sudo chmod 0666 {host.dev}/fuse"


def test_storage_probe_error_is_reported(host: Host) -> None:
    def broken() -> str:
        raise OSError("no space left on device")

    check = diagnose(host, lambda: None, broken).find("storage driver")
    assert check.status == MISSING and check.fails and "no space left" in check.detail


def test_network_without_tools_or_tun(host: Host) -> None:
    for name in ("slirp4netns", "pasta"):
        (Path(host.path) / name).unlink()
    (host.dev / "net/tun").chmod(0o600)
    host = Host(**{**host.__dict__, "uid": ME + 1})
    check = run(host).find("network")
    assert check.status == WARNING and not check.fails
    assert check.fix == f"sudo apt-get install slirp4netns passt && sudo chmod 0666 {host.dev}/net/tun"
    assert check.data == {"tools": {"slirp4netns": None, "pasta": None}, "dev_net_tun": False}


def test_tun_absent_suggests_the_module(host: Host) -> None:
    (host.dev / "net/tun").unlink()
    assert run(host).find("network").fix == "sudo modprobe tun"


def test_privileged_ports(host: Host) -> None:
    write(host.proc_sys / "net/ipv4/ip_unprivileged_port_start", "1024\n")
    check = run(host).find("unprivileged ports")
    assert check.status == WARNING
    assert check.fix == "sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80"


def test_cgroup_not_delegated(host: Host) -> None:
    host = Host(**{**host.__dict__, "uid": ME + 1})  # the subtree belongs to someone else
    check = run(host).find("cgroup delegation")
    assert check.status == WARNING and check.fix == doctor.DELEGATE_FIX
    assert check.data["delegated"] is None


@as_root
def test_cgroup_delegated_without_memory(host: Host) -> None:
    service = host.cgroup_root / "user.slice/user-1000.slice/user@1000.service"
    (service / "cgroup.controllers").write_text("cpu pids\n")
    check = run(host).find("cgroup delegation")
    assert check.status == WARNING and "memory" in check.detail and "io" in check.detail


def test_cgroup_v1_and_hybrid(host: Host) -> None:
    (host.cgroup_root / "cgroup.controllers").unlink()
    assert run(host).find("cgroup delegation").data["mode"] == "v1"
    (host.cgroup_root / "unified").mkdir()
    assert run(host).find("cgroup delegation").data["mode"] == "hybrid (v1 controllers)"


def test_runtime_dir_unset_missing_or_open(host: Host, tmp_path: Path) -> None:
    assert run(Host(**{**host.__dict__, "runtime_dir": None})).find("XDG_RUNTIME_DIR").status == WARNING
    gone = run(Host(**{**host.__dict__, "runtime_dir": str(tmp_path / "nope")})).find("XDG_RUNTIME_DIR")
    assert gone.status == MISSING and gone.fails
    Path(host.runtime_dir).chmod(0o777)
    open_dir = run(host).find("XDG_RUNTIME_DIR")
    assert open_dir.status == MISSING and open_dir.fails and "0777" in open_dir.detail
    Path(host.runtime_dir).chmod(0o700)
    assert run(Host(**{**host.__dict__, "uid": ME + 1})).find("XDG_RUNTIME_DIR").fails


def test_store_on_nfs_warns(host: Host, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()  # the mount point exists; the store under it does not yet
    with (tmp_path / "mountinfo").open("a") as f:
        f.write(f"40 22 0:50 / {home} rw - nfs4 srv:/home rw\n")
    check = run(host).find("store filesystem")
    assert check.status == WARNING and check.data["filesystem"] == "nfs4"


def test_mountinfo_escapes_and_longest_prefix(tmp_path: Path) -> None:
    info = write(tmp_path / "mountinfo",
                 "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
                 "2 1 0:5 / /srv/my\\040data rw - nfs srv:/x rw\n"
                 "3 1 0:6 / /srv/my rw - tmpfs tmpfs rw\n")
    assert doctor.filesystem_of(info, Path("/srv/my data/sbx")) == "nfs"
    assert doctor.filesystem_of(info, Path("/srv/my/sbx")) == "tmpfs"
    assert doctor.filesystem_of(info, Path("/srv/mydata")) == "ext4"


def test_linger(host: Host) -> None:
    assert run(host).find("linger").status == OK
    (host.linger_dir / "ana").unlink()
    check = run(host).find("linger")
    assert check.status == WARNING and check.fix == "sudo loginctl enable-linger ana"
    host.systemd_dir.rmdir()
    assert run(host).find("linger").status == OK


def test_warnings_alone_still_can_run(tmp_path: Path) -> None:
    host = make_host(tmp_path, runtime_dir=None)
    for name in ("slirp4netns", "pasta"):
        (Path(host.path) / name).unlink()
    (host.etc / "subuid").write_text("")
    (host.etc / "subgid").write_text("")
    report = run(host, driver="copy")
    assert any(c.status != OK for c in report.checks)
    assert report.can_run
