"""Resource limits as the unprivileged user: the rlimit fallback where no cgroup v2 controller is delegated (as on
the development machines), refusal of what nothing enforces, --ulimit, and stats/inspect/pause of a container.
Where the machine does delegate a controller the cgroup enforces the same limits; bench/device-cgroups.sh proves
that side on a machine with pure cgroup v2."""

from __future__ import annotations

import json
import re

import pytest

from sandbox.cgroups.delegation import discover

DELEGATED = discover().controllers


def run(sbx, *args, check=True, **kw):
    return sbx("run", "--rm", *args, check=check, **kw)


def test_pids_limit_stops_a_fork_bomb(busybox):
    # 40 background sleeps under a limit of 8 processes: a subshell forks until a fork fails (which ends it), then
    # pid 1 counts the processes with a glob (a builtin: no fork left to make)
    script = "(for i in $(seq 40); do sleep 30 & done) 2>/dev/null; set -- /proc/[0-9]*; echo $#"
    result = run(busybox, "--pids-limit", "8", "busybox", "sh", "-c", script)
    assert int(result.stdout.strip()) <= 8
    unlimited = run(busybox, "busybox", "sh", "-c", script)
    assert int(unlimited.stdout.strip()) > 40
    if "pids" not in DELEGATED:
        assert "WARNING" in result.stderr and "--pids-limit as RLIMIT_NPROC" in result.stderr


def test_memory_limit_stops_a_big_allocation(busybox):
    allocate = "dd if=/dev/zero of=/dev/null bs={} count=1 2>&1 && echo allocated"
    small = run(busybox, "--memory", "32m", "busybox", "sh", "-c", allocate.format("1M"))
    assert "allocated" in small.stdout
    big = run(busybox, "--memory", "32m", "busybox", "sh", "-c", allocate.format("64M"), check=False)
    assert "allocated" not in big.stdout
    if "memory" not in DELEGATED:
        assert "--memory as RLIMIT_DATA" in big.stderr


@pytest.mark.skipif("cpu" in DELEGATED, reason="the cpu controller is delegated here: --cpus is enforced")
def test_a_flag_nothing_enforces_is_refused_unless_best_effort(busybox):
    refused = run(busybox, "--cpus", "0.5", "busybox", "true", check=False)
    assert refused.returncode == 125
    assert refused.stderr.startswith("sbx: cannot enforce --cpus") and "--limits=best-effort" in refused.stderr
    assert busybox("ps", "-aq").stdout == ""  # refused before anything was made
    allowed = run(busybox, "--cpus", "0.5", "--limits", "best-effort", "busybox", "echo", "ran")
    assert allowed.stdout == "ran\n" and "NOT enforcing --cpus" in allowed.stderr


def test_ulimit_is_set_in_the_container(busybox):
    result = run(busybox, "--ulimit", "nofile=100:200", "--ulimit", "core=0", "busybox", "sh", "-c",
                 "ulimit -n; ulimit -H -n; ulimit -c")
    assert result.stdout.split() == ["100", "200", "0"]
    assert result.stderr == ""  # an rlimit asked for as such needs no warning
    refused = run(busybox, "--ulimit", "nofile=10:99999999", "busybox", "true", check=False)
    assert refused.returncode == 125 and "cannot set ulimit nofile=10:99999999" in refused.stderr


def test_cpuset_cpus_sets_the_affinity(busybox):
    pinned = run(busybox, "--cpuset-cpus", "0", "busybox", "grep", "Cpus_allowed_list", "/proc/self/status")
    assert pinned.stdout.split() == ["Cpus_allowed_list:", "0"]
    if "cpuset" not in DELEGATED:
        assert "--cpuset-cpus as the cpu affinity" in pinned.stderr


def test_inspect_stats_and_pause_of_a_limited_container(busybox):
    name = busybox("run", "-d", "--pids-limit", "50", "--memory", "64m", "--ulimit", "nproc=100",
                   "busybox", "sleep", "60").stdout.strip()
    try:
        info = json.loads(busybox("inspect", name).stdout)[0]
        host = info["HostConfig"]
        assert (host["Memory"], host["MemorySwap"], host["PidsLimit"]) == (64 << 20, 128 << 20, 50)
        assert host["Ulimits"] == [{"Name": "nproc", "Soft": 100, "Hard": 100}]
        # an exec'ed command gets the container's rlimits, as pid 1 does (and as Docker's exec does)
        def processes(path):
            text = busybox("exec", name, "cat", path).stdout
            return next(line.split()[2:4] for line in text.splitlines() if line.startswith("Max processes"))

        assert processes("/proc/self/limits") == processes("/proc/1/limits") != ["unlimited", "unlimited"]
        assert info["State"]["OOMKilled"] is False and info["State"]["Paused"] is False
        row = json.loads(busybox("stats", "--no-stream", "--format", "json", name).stdout)
        assert row["ID"] == name[:12] and row["PIDs"] == "1" and row["MemUsage"].endswith(" / 64MiB")
        table = busybox("stats", "--no-stream", name).stdout.splitlines()
        assert re.split(r"\s{2,}", table[0]) == ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %",
                                                "NET I/O", "BLOCK I/O", "PIDS"]
        assert len(table) == 2 and table[1].startswith(name[:12])
        templated = busybox("stats", "--no-stream", "--format", "table {{.Name}}\\t{{.PIDs}}", name).stdout
        assert templated.split() == ["NAME", "PIDS", info["Name"].lstrip("/"), "1"]
        paused = busybox("pause", name, check=False)
        if discover().usable:
            assert paused.returncode == 0
            assert busybox("unpause", name).returncode == 0
        else:
            assert paused.returncode == 1 and "no cgroup of its own" in paused.stderr
    finally:
        busybox("rm", "-f", name)
