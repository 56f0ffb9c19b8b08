"""sandbox.cgroups against a fake cgroup v2 tree in a tmp dir: every flag's file and value, control files never
created, the leaf rule, release, discovery, stats parsing; the rlimit fallback as a recording kernel sees it."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from sandbox.cgroups import delegation as delegation_module
from sandbox.cgroups import tree
from sandbox.cgroups.delegation import Delegation, cgroup2_mount, discover, own_cgroup
from sandbox.cgroups.limits import (
    CgroupWrite,
    Limits,
    Resources,
    Ulimit,
    apply_in_process,
    cgroup_writes,
    decide,
    host_config,
    parse_resources,
)
from sandbox.cgroups.stats import Sample, cpu_percent, network, sample
from sandbox.errors import CgroupError, ContainerStartError, InvalidRunOption, LimitUnavailable
from sandbox.kernel import FakeKernel
from sandbox.kernel.constants import RLIM_INFINITY, RLIMITS
from tests.fixtures.cgroupfs import FakeCgroupfs

CPUS = frozenset(range(4))
ID = "ab" * 32


def parse(**flags) -> Resources:
    return parse_resources(flags, CPUS)


def files_of(writes: list[CgroupWrite]) -> dict[str, str]:
    return {write.file: write.value for write in writes}


# -- flags → values -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("flags", "expected"), [
    ({"memory": "512m"}, {"memory.max": str(512 << 20), "memory.swap.max": str(512 << 20)}),  # swap: Docker's 2x
    ({"memory": "1g", "memory_swap": "3g"}, {"memory.max": str(1 << 30), "memory.swap.max": str(2 << 30)}),
    ({"memory": "64M", "memory_swap": "-1"}, {"memory.max": str(64 << 20), "memory.swap.max": "max"}),
    ({"memory_reservation": "100m"}, {"memory.low": str(100 << 20)}),
    ({"cpus": "0.5"}, {"cpu.max": "50000 100000"}),
    ({"cpus": "2"}, {"cpu.max": "200000 100000"}),
    ({"cpu_shares": 1024}, {"cpu.weight": "39"}),  # runc's conversion
    ({"cpu_shares": 2}, {"cpu.weight": "1"}),
    ({"cpu_shares": 262144}, {"cpu.weight": "10000"}),
    ({"cpu_weight": 500}, {"cpu.weight": "500"}),
    ({"cpuset_cpus": "0-1,3"}, {"cpuset.cpus": "0-1,3"}),
    ({"pids_limit": 20}, {"pids.max": "20"}),
    ({"pids_limit": -1}, {}),
    ({"blkio_weight": 500}, {"io.bfq.weight": "500"}),
])
def test_each_flag_becomes_its_cgroup_file(flags, expected):
    assert files_of(cgroup_writes(parse(**flags))) == expected


def test_blkio_weight_falls_back_to_io_weight():
    (write,) = cgroup_writes(parse(blkio_weight=10))
    assert write.alternative == ("io.weight", "default 1")
    assert cgroup_writes(parse(blkio_weight=1000))[0].alternative == ("io.weight", "default 10000")


@pytest.mark.parametrize("flags", [
    {"memory": "1m"},  # below Docker's 6MB
    {"memory": "lots"},
    {"memory_swap": "1g"},  # swap without memory
    {"memory": "1g", "memory_swap": "512m"},
    {"memory": "64m", "memory_reservation": "128m"},
    {"cpus": "0.001"}, {"cpus": "5"}, {"cpus": "nan"}, {"cpus": "one"},
    {"cpu_shares": 1}, {"cpu_weight": 10001}, {"cpu_shares": 512, "cpu_weight": 50},
    {"cpuset_cpus": "7"}, {"cpuset_cpus": "0-"}, {"cpuset_cpus": "3-1"},
    {"blkio_weight": 5}, {"pids_limit": "x"},
    {"ulimit": ["nofile"]}, {"ulimit": ["bogus=1"]}, {"ulimit": ["nofile=20:10"]}, {"ulimit": ["nofile=a"]},
])
def test_bad_values_are_refused_as_docker_refuses_them(flags):
    with pytest.raises(InvalidRunOption):
        parse(**flags)


def test_ulimit_syntax():
    resources = parse(ulimit=["nofile=100:200", "core=0", "NOFILE=50", "stack=-1"])
    assert resources.ulimits == (Ulimit("nofile", 50, 50), Ulimit("core", 0, 0), Ulimit("stack", -1, -1))


# -- what enforces what ------------------------------------------------------------------------------------------------


def delegated(*controllers) -> Delegation:
    return Delegation(Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/d"), frozenset(controllers))


NONE = Delegation(Path("/sys/fs/cgroup/unified"), None, reason="a hybrid layout", fix="boot with unified")


def test_delegated_controllers_enforce_everything_without_a_warning():
    resources = parse(memory="64m", cpus="1", pids_limit=5, cpuset_cpus="1", blkio_weight=100, ulimit=["core=0"])
    limits = decide(resources, delegated("memory", "cpu", "pids", "cpuset", "io"))
    assert limits.controllers == ("cpu", "cpuset", "io", "memory", "pids")
    assert limits.rlimits == (Ulimit("core", 0, 0),) and limits.cpus == () and limits.note is None
    assert [write.file for write in limits.cgroup_writes()] == [
        "memory.max", "memory.swap.max", "cpu.max", "cpuset.cpus", "pids.max", "io.bfq.weight"]


def test_without_delegation_rlimits_stand_in_and_the_warning_says_so():
    limits = decide(parse(memory="64m", pids_limit=20, cpuset_cpus="0,2"), NONE)
    assert limits.controllers == () and limits.cgroup_writes() == []
    assert limits.rlimits == (Ulimit("data", 64 << 20, 64 << 20), Ulimit("nproc", 20, 20))
    assert limits.cpus == (0, 2)
    assert "--memory as RLIMIT_DATA" in limits.note and "--pids-limit as RLIMIT_NPROC" in limits.note
    assert "a hybrid layout" in limits.note and "boot with unified" in limits.note


@pytest.mark.parametrize("flags", [{"cpus": "1"}, {"cpu_shares": 100}, {"cpu_weight": 5}, {"blkio_weight": 100},
                                   {"memory": "64m", "memory_swap": "1g"}, {"memory_reservation": "10m"}])
def test_a_flag_nothing_enforces_is_refused_unless_best_effort(flags):
    with pytest.raises(LimitUnavailable) as refused:
        decide(parse(**flags), NONE)
    assert "--limits=best-effort" in refused.value.hint and "boot with unified" in refused.value.hint
    limits = decide(parse(**flags), NONE, mode="best-effort")
    assert "NOT enforcing" in limits.note


def test_partial_delegation_uses_cgroups_for_what_it_has():
    limits = decide(parse(memory="64m", cpus="1"), delegated("memory"), mode="best-effort")
    assert limits.controllers == ("memory",) and limits.rlimits == ()
    assert files_of(limits.cgroup_writes()) == {"memory.max": str(64 << 20), "memory.swap.max": str(64 << 20)}
    assert "NOT enforcing --cpus" in limits.note


def test_pid_1_sets_the_rlimits_then_the_affinity():
    kernel = FakeKernel()
    limits = Limits(rlimits=(Ulimit("nofile", 100, 200), Ulimit("stack", -1, -1)), cpus=(1, 3))
    apply_in_process(kernel, limits)
    assert [(call.op, call.args) for call in kernel.calls] == [
        ("setrlimit", (RLIMITS["nofile"], 100, 200)),
        ("setrlimit", (RLIMITS["stack"], RLIM_INFINITY, RLIM_INFINITY)),
        ("sched_setaffinity", (0, frozenset({1, 3}))),
    ]


def test_a_refused_rlimit_is_a_start_error():
    kernel = FakeKernel().fail("setrlimit", errno.EPERM)
    with pytest.raises(ContainerStartError, match="cannot set ulimit nofile=10:99"):
        apply_in_process(kernel, Limits(rlimits=(Ulimit("nofile", 10, 99),)))


def test_limits_round_trip_and_inspect_fields():
    limits = decide(parse(memory="64m", pids_limit=7, ulimit=["nofile=5:6"]), NONE, cgroup_parent="/x")
    assert Limits.from_json(json.loads(json.dumps(limits.to_json()))) == limits
    host = host_config(limits.resources.to_json())
    assert (host["Memory"], host["MemorySwap"], host["PidsLimit"], host["NanoCpus"]) == (64 << 20, 128 << 20, 7, 0)
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 5, "Hard": 6}]
    assert host_config({})["PidsLimit"] is None and host_config({})["Ulimits"] is None
    with pytest.raises(ValueError):
        Limits.from_json({"resources": {}})
    damaged = limits.to_json()
    damaged["resources"]["memory"] = "64m"
    with pytest.raises(ValueError, match="memory"):
        Limits.from_json(damaged)
    assert host_config(damaged["resources"])["Memory"] == 0


# -- discovery ---------------------------------------------------------------------------------------------------------


def proc_self(tmp_path: Path, own: str, mount: Path | None = None) -> Path:
    proc = tmp_path / "proc-self"
    proc.mkdir(exist_ok=True)
    (proc / "cgroup").write_text(f"1:name=systemd:/\n0::{own}\n")
    line = f"41 31 0:38 / {mount} rw,relatime - cgroup2 cgroup2 rw\n" if mount else ""
    (proc / "mountinfo").write_text("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n" + line)
    return proc


def owned_below(top: Path):
    """os.access for a user who owns ``top`` and everything under it (and nothing else)."""
    return lambda path, mode: Path(path) == top or top in Path(path).parents


def test_systemd_user_manager_delegation(tmp_path):
    fs = FakeCgroupfs(tmp_path / "cg")
    fs.enable("/", "cpu", "io", "memory", "pids")
    fs.make("user.slice/user-1000.slice")
    fs.enable("user.slice", "cpu", "io", "memory", "pids")
    fs.enable("user.slice/user-1000.slice", "cpu", "io", "memory", "pids")
    manager = fs.make("user.slice/user-1000.slice/user@1000.service")
    fs.enable("user.slice/user-1000.slice/user@1000.service", "cpu", "io", "memory", "pids")
    fs.make("user.slice/user-1000.slice/user@1000.service/app.slice/run-1.scope", procs=(4242,))
    found = discover(cgroup_root=fs.root, proc_self=proc_self(tmp_path, "/user.slice/user-1000.slice/user@1000"
                     ".service/app.slice/run-1.scope"), access=owned_below(manager), user="u")
    assert found.parent == manager and found.controllers == {"cpu", "io", "memory", "pids"}
    assert "cpuset" in found.reason  # systemd's default Delegate= leaves it out


def test_an_administrators_chown_with_the_shell_in_a_child(tmp_path):
    fs = FakeCgroupfs(tmp_path / "cg")
    fs.enable("/", "cpu", "cpuset", "io", "memory", "pids")
    mine = fs.make("mine")
    fs.make("mine/shell", procs=(100,))
    found = discover(proc_self=proc_self(tmp_path, "/mine/shell", fs.root), access=owned_below(mine), user="u")
    assert found.root == fs.root and found.parent == mine and found.usable
    assert found.controllers == {"cpu", "cpuset", "io", "memory", "pids"} and found.reason == ""


def test_no_internal_processes_in_the_delegation_point(tmp_path):
    fs = FakeCgroupfs(tmp_path / "cg")
    fs.enable("/", "memory", "pids")
    mine = fs.make("mine", procs=(100,))
    found = discover(cgroup_root=fs.root, proc_self=proc_self(tmp_path, "/mine"), access=owned_below(mine))
    assert not found.usable and "no-internal-process" in found.reason and f"{mine}/shell" in found.fix


def test_not_delegated_names_the_directory_to_chown(tmp_path):
    fs = FakeCgroupfs(tmp_path / "cg")
    fs.make("user.slice/session-3.scope", procs=(100,))
    found = discover(cgroup_root=fs.root, proc_self=proc_self(tmp_path, "/user.slice/session-3.scope"),
                     access=lambda path, mode: False, user="alice")
    assert not found.usable and found.controllers == frozenset()
    assert f"chown alice {fs.root}/user.slice/session-3.scope" in found.fix and "Delegate=" in found.fix


def test_hybrid_layout(tmp_path):
    unified = tmp_path / "sys" / "unified"
    FakeCgroupfs(unified, controllers=())
    found = discover(proc_self=proc_self(tmp_path, "/", unified), access=lambda path, mode: False, user="u")
    assert not found.usable and "hybrid" in found.reason and "unified_cgroup_hierarchy=1" in found.fix
    as_root = discover(proc_self=proc_self(tmp_path, "/", unified), access=lambda path, mode: True)
    assert as_root.usable and as_root.controllers == frozenset() and "hybrid" in as_root.reason


def test_configured_cgroup_parent_and_no_cgroup2(tmp_path):
    fs = FakeCgroupfs(tmp_path / "cg")
    fs.enable("/", "memory")
    other = fs.make("elsewhere")
    found = discover(cgroup_root=fs.root, proc_self=proc_self(tmp_path, "/"), override="/elsewhere",
                     access=owned_below(other))
    assert found.parent == other and found.controllers == {"memory"}
    refused = discover(cgroup_root=fs.root, proc_self=proc_self(tmp_path, "/"), override="/elsewhere",
                       access=lambda path, mode: False, user="u")
    assert not refused.usable and "cgroup_parent" in refused.reason
    assert not discover(proc_self=proc_self(tmp_path, "/")).usable  # no cgroup2 line in mountinfo


def test_parsers(tmp_path):
    proc = proc_self(tmp_path, "/a b/c", Path("/sys/fs/cgroup"))
    assert own_cgroup(proc / "cgroup") == "/a b/c" and cgroup2_mount(proc / "mountinfo") == Path("/sys/fs/cgroup")
    (proc / "cgroup").write_text("0::/x/../../etc\n")
    assert own_cgroup(proc / "cgroup") is None
    assert own_cgroup(tmp_path / "missing") is None and cgroup2_mount(tmp_path / "missing") is None


# -- the container's cgroup --------------------------------------------------------------------------------------------


@pytest.fixture
def delegation_tree(tmp_path):
    fs = FakeCgroupfs(tmp_path / "cg")
    fs.enable("/", "cpu", "cpuset", "io", "memory", "pids")
    mine = fs.make("mine")
    fs.make("mine/shell", procs=(100,))
    container_dir = tmp_path / "ctr"
    container_dir.mkdir()
    found = discover(proc_self=proc_self(tmp_path, "/mine/shell", fs.root), access=owned_below(mine))
    return fs, found, container_dir


def test_the_container_gets_a_leaf_with_its_limits_and_stage_1_in_it(delegation_tree):
    fs, found, container_dir = delegation_tree
    limits = decide(parse(memory="64m", cpus="0.5", cpu_shares=512, cpuset_cpus="1", pids_limit=9,
                          blkio_weight=300), found)
    path = tree.place(limits, ID, container_dir, 4242, delegation=found, files=fs)
    assert path == fs.root / "mine" / "sbx" / ID
    assert (path / "memory.max").read_text() == str(64 << 20)
    assert (path / "memory.swap.max").read_text() == str(64 << 20)
    assert (path / "cpu.max").read_text() == "50000 100000"
    assert (path / "cpu.weight").read_text() == str(1 + 510 * 9999 // 262142)
    assert (path / "cpuset.cpus").read_text() == "1" and (path / "pids.max").read_text() == "9"
    assert (path / "io.weight").read_text() == f"default {1 + 290 * 9999 // 990}"
    assert not (path / "io.bfq.weight").exists()  # the alternative was used, the missing file not created
    assert (path / "cgroup.procs").read_text() == "4242\n"
    # the leaf rule: processes only in leaves; sbx/ and mine/ enable controllers and hold none
    for parent in (fs.root / "mine", fs.root / "mine" / "sbx"):
        assert (parent / "cgroup.procs").read_text().strip() == ""
        assert set((parent / "cgroup.subtree_control").read_text().split()) == {"cpu", "cpuset", "io", "memory",
                                                                                "pids"}
    assert (fs.root / "mine" / "shell" / "cgroup.procs").read_text() == "100\n"  # the monitor stays where it is
    assert tree.recorded(container_dir) == path


def test_control_files_are_never_created(tmp_path):
    fs = FakeCgroupfs(tmp_path / "cg", controllers=("memory",))
    fs.enable("/", "memory")
    leaf = fs.make("leaf")
    with pytest.raises(CgroupError, match="pids.max") as error:
        tree.write_control(leaf, "pids.max", "5", fs)
    assert error.value.errno == errno.ENOENT and not (leaf / "pids.max").exists()
    # through create: a delegation claiming a controller the tree lacks fails, and writes no file for it
    found = Delegation(fs.root, leaf, frozenset({"memory", "pids"}))
    with pytest.raises(CgroupError, match="pids"):
        tree.create(found, ID, decide(parse(pids_limit=5), found), tmp_path, fs)
    assert not list(fs.root.rglob("pids.max"))


def test_a_needed_controller_that_is_not_delegated_at_start_is_an_error(tmp_path):
    limits = decide(parse(memory="64m"), delegated("memory"))
    with pytest.raises(CgroupError, match="memory controller, which is not delegated"):
        tree.create(NONE, ID, limits, tmp_path)
    assert tree.create(NONE, ID, Limits(), tmp_path) is None  # nothing needed: no cgroup, no error


def test_release_notes_an_oom_kill_kills_and_removes(delegation_tree):
    fs, found, container_dir = delegation_tree
    path = tree.place(decide(parse(memory="64m"), found), ID, container_dir, 4242, delegation=found, files=fs)
    (path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    tree.release(container_dir, fs)
    assert not path.exists() and (fs.root / "mine" / "sbx").is_dir()
    assert ("mine/sbx/" + ID + "/cgroup.kill", "1") in fs.writes
    assert (container_dir / tree.OOM_MARKER).exists() and tree.recorded(container_dir) is None
    tree.release(container_dir, fs)  # twice is harmless


def test_a_stale_cgroup_is_replaced_and_a_bad_marker_ignored(delegation_tree):
    fs, found, container_dir = delegation_tree
    first = tree.place(decide(parse(pids_limit=3), found), ID, container_dir, 1, delegation=found, files=fs)
    second = tree.place(decide(parse(pids_limit=4), found), ID, container_dir, 2, delegation=found, files=fs)
    assert first == second and (second / "pids.max").read_text() == "4"
    (container_dir / tree.MARKER).write_text("/sys/fs/cgroup/../../etc")
    assert tree.recorded(container_dir) is None


def test_freeze_and_thaw(delegation_tree):
    fs, found, container_dir = delegation_tree
    path = tree.place(Limits(), ID, container_dir, 7, delegation=found, files=fs)
    tree.freeze(path, True, files=fs)
    assert tree.is_frozen(path) and (path / "cgroup.freeze").read_text() == "1"
    tree.freeze(path, False, files=fs)
    assert not tree.is_frozen(path)


def test_unwritable_subtree_control_names_the_rule(tmp_path):
    fs = FakeCgroupfs(tmp_path / "cg")
    fs.enable("/", "memory")
    busy = fs.make("busy", procs=(5,))
    with pytest.raises(CgroupError) as error:
        tree.enable(busy, ["memory"], fs)
    assert "no-internal-process" in error.value.hint


# -- stats -------------------------------------------------------------------------------------------------------------


def test_stats_from_cgroup_files(tmp_path):
    cgroup = tmp_path / "cg"
    cgroup.mkdir()
    (cgroup / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    (cgroup / "memory.current").write_text("10485760\n")
    (cgroup / "memory.stat").write_text("anon 4194304\ninactive_file 2097152\n")
    (cgroup / "memory.max").write_text("67108864\n")
    (cgroup / "io.stat").write_text("8:0 rbytes=1000 wbytes=2000 rios=1 wios=2\n8:16 rbytes=5 wbytes=7\n")
    (cgroup / "pids.current").write_text("3\n")
    proc = tmp_path / "proc"
    (proc / "42" / "net").mkdir(parents=True)
    (proc / "42" / "net" / "dev").write_text(
        "Inter-|   Receive |  Transmit\n face |bytes packets\n"
        "    lo: 999 1 0 0 0 0 0 0 999 1 0 0 0 0 0 0\n"
        "  eth0: 1200 3 0 0 0 0 0 0 3400 4 0 0 0 0 0 0\n")
    (proc / "meminfo").write_text("MemTotal:       8000000 kB\n")
    reading = sample(cgroup, 42, 10.0, proc=proc)
    assert reading == Sample(10.0, 2500000, 8388608, 67108864, 1005, 2007, 1200, 3400, 3)
    (cgroup / "memory.max").write_text("max\n")
    assert sample(cgroup, 42, 10.0, proc=proc).memory_limit == 8000000 * 1024
    later = Sample(12.0, 3500000, 0, 0, 0, 0, 0, 0, 0)
    assert cpu_percent(reading, later) == pytest.approx(50.0)
    assert network(tmp_path / "missing") == (0, 0)


def test_stats_without_a_cgroup_read_the_pid_namespace(tmp_path):
    reading = sample(None, os.getpid(), 1.0)  # this test's own pid namespace: at least this process
    assert reading.pids >= 1 and reading.memory > 0 and reading.cpu_usec > 0


def test_delegation_module_names_the_fix_for_the_user(monkeypatch):
    monkeypatch.setattr(delegation_module, "_user_name", lambda: "bob")
    found = delegation_module.discover(cgroup_root=Path("/nonexistent"), proc_self=Path("/proc/self"),
                                       access=lambda path, mode: False)
    assert not found.usable and ("bob" in found.fix or "unified" in found.fix)


def test_exec_joins_the_containers_own_cgroup_only(delegation_tree, tmp_path):
    fs, found, container_dir = delegation_tree
    path = tree.place(Limits(), ID, container_dir, 7, delegation=found, files=fs)
    mountinfo = proc_self(tmp_path, "/", fs.root) / "mountinfo"
    assert tree.join(f"0::/mine/sbx/{ID}\n", 99, mountinfo=mountinfo, files=fs) == path
    assert (path / "cgroup.procs").read_text() == "99\n"
    assert tree.join("0::/mine/shell\n", 98, mountinfo=mountinfo, files=fs) is None  # no cgroup of its own
    assert (fs.root / "mine" / "shell" / "cgroup.procs").read_text() == "100\n"
    with pytest.raises(CgroupError, match="cannot enter the container's cgroup") as refused:
        tree.join(f"0::/mine/sbx/{'cd' * 32}\n", 97, mountinfo=mountinfo, files=fs)
    assert refused.value.exit_code == 126


def test_config_sets_the_default_mode_and_the_delegated_cgroup(tmp_path):
    from sandbox.config import load_settings
    from sandbox.errors import ConfigError

    config = tmp_path / "config.toml"
    config.write_text('limits = "best-effort"\ncgroup_parent = "/sbx-delegated"\n')
    settings = load_settings({"HOME": str(tmp_path), "SBX_CONFIG": str(config)})
    assert (settings.limits, settings.cgroup_parent) == ("best-effort", "/sbx-delegated")
    assert load_settings({"HOME": str(tmp_path)}).limits == "strict"
    for bad in ('limits = "loose"\n', 'cgroup_parent = "/a/../../etc"\n'):
        config.write_text(bad)
        with pytest.raises(ConfigError):
            load_settings({"HOME": str(tmp_path), "SBX_CONFIG": str(config)})


def test_a_cgroup_no_limit_needs_is_given_up_when_it_cannot_be_made(delegation_tree):
    fs, found, container_dir = delegation_tree
    broken = Delegation(found.root, found.parent, found.controllers | {"rdma"})  # rdma: refused by the fake kernel
    assert tree.place(Limits(), ID, container_dir, 7, delegation=broken, files=fs) is None
    assert tree.recorded(container_dir) is None and not (fs.root / "mine" / "sbx" / ID).exists()
    with pytest.raises(CgroupError):
        tree.place(decide(parse(pids_limit=3), broken), ID, container_dir, 7, delegation=broken, files=fs)


def test_the_spec_keeps_its_limits_and_older_specs_have_none():
    from sandbox.errors import StoreCorrupt
    from sandbox.runtime.spec import ContainerSpec
    from tests.unit.test_spec_json import overlay_spec

    limits = decide(parse(memory="64m", ulimit=["core=0"]), NONE)
    spec = overlay_spec(limits=limits)
    data = json.loads(json.dumps(spec.to_json()))
    assert ContainerSpec.from_json(data) == spec
    del data["limits"]
    assert ContainerSpec.from_json(data).limits == Limits()
    data["limits"] = {"resources": {"memory": True}}
    with pytest.raises(StoreCorrupt, match="limits"):
        ContainerSpec.from_json(data)
