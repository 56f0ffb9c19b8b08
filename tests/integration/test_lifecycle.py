"""Detached containers and their monitor, as the unprivileged user (TESTPLAN 32, 49-51, 54)."""

from __future__ import annotations

import json
import os
import signal
from concurrent.futures import ThreadPoolExecutor

from tests.integration.helpers import state, wait_for


def detached(sbx, *args):
    result = sbx("run", "-d", *args)
    container_id = result.stdout.strip()
    assert len(container_id) == 64 and all(c in "0123456789abcdef" for c in container_id)
    return container_id




def test_run_detached_ps_logs_stop_rm(busybox):
    script = "trap 'echo bye; exit 0' TERM; echo hello; echo oops >&2; sleep 30 & wait"
    container_id = detached(busybox, "--name", "web", "busybox", "sh", "-c", script)
    lines = busybox("ps").stdout.splitlines()
    assert lines[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    row = lines[1]
    assert row.startswith(container_id[:12]) and row.split()[-1] == "web" and " Up " in row
    assert busybox("ps", "-q").stdout.split() == [container_id[:12]]
    assert wait_for(lambda: "hello" in busybox("logs", "web").stdout)
    assert "oops" in busybox("logs", "web").stderr

    # it handles SIGTERM: stop returns when the trap exits (code 0), long before a SIGKILL at the 600 s timeout
    # (the runner's own timeout bounds the wait)
    assert busybox("stop", "-t", "600", "web", timeout=60).stdout == "web\n"
    assert state(busybox, "web")["ExitCode"] == 0
    assert "Exited (0)" in busybox("ps", "-a").stdout
    assert busybox("ps", "-q").stdout == ""
    assert "bye" in busybox("logs", "web").stdout
    assert busybox("wait", "web").stdout == "0\n"

    assert busybox("rm", "web").stdout == "web\n"
    assert busybox("ps", "-aq").stdout == ""
    assert [p for p in (busybox.data_home / "sbx" / "containers").iterdir() if p.is_dir()] == []


def test_stop_kills_after_the_timeout(busybox):
    # sh as pid 1 without a trap ignores SIGTERM: stop waits -t seconds, then SIGKILL (137)
    detached(busybox, "--name", "stubborn", "busybox", "sleep", "60")
    busybox("stop", "-t", "1", "stubborn", timeout=60)
    assert state(busybox, "stubborn")["ExitCode"] == 137
    busybox("rm", "stubborn")
    # one that sees SIGTERM and carries on: SIGTERM came first (the log says so), SIGKILL after the timeout
    script = "trap 'echo got-term' TERM; echo ready; while :; do sleep 0.1; done"
    detached(busybox, "--name", "deaf", "busybox", "sh", "-c", script)
    assert wait_for(lambda: "ready" in busybox("logs", "deaf").stdout)
    busybox("stop", "-t", "1", "deaf", timeout=60)
    assert state(busybox, "deaf")["ExitCode"] == 137
    assert "got-term" in busybox("logs", "deaf").stdout
    busybox("rm", "deaf")


def test_rm_of_a_running_container_needs_force(busybox):
    detached(busybox, "--name", "busy", "busybox", "sleep", "60")
    refused = busybox("rm", "busy", check=False)
    assert refused.returncode == 1 and "container is running" in refused.stderr
    pid = state(busybox, "busy")["Pid"]
    busybox("rm", "-f", "busy")
    assert busybox("ps", "-aq").stdout == ""
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}"))


def test_auto_remove_and_exit_codes(busybox):
    container_id = detached(busybox, "--rm", "busybox", "sh", "-c", "exit 0")
    directory = busybox.data_home / "sbx" / "containers" / container_id
    # the record goes first, then the rest of the directory: wait for both
    assert wait_for(lambda: busybox("ps", "-aq").stdout == "" and not directory.exists())
    detached(busybox, "--name", "three", "busybox", "sh", "-c", "exit 3")
    assert busybox("wait", "three").stdout == "3\n"
    missing = busybox("run", "-d", "busybox", "no-such-command", check=False)
    assert missing.returncode == 127 and "executable file not found" in missing.stderr


def test_names_are_unique_and_validated(busybox):
    detached(busybox, "--name", "same", "busybox", "sleep", "30")
    second = busybox("run", "-d", "--name", "same", "busybox", "true", check=False)
    assert second.returncode == 125 and "already in use" in second.stderr
    for bad in ("../x", ".", "a/b", "x" * 300):
        result = busybox("run", "-d", "--name", bad, "busybox", "true", check=False)
        assert result.returncode == 125 and "Traceback" not in result.stderr
    busybox("rm", "-f", "same")
    # the 20-way race for one name: test_lifecycle_hostile.py


def test_a_killed_monitor_does_not_make_ps_lie(busybox):
    """TESTPLAN 50: SIGKILL the monitor; the container goes with it, and ps and rm -f tell the truth."""
    detached(busybox, "--name", "orphan", "busybox", "sleep", "60")
    from sandbox.store.containers import ContainerStore

    store = ContainerStore(busybox.data_home / "sbx" / "containers")
    record = store.resolve("orphan")
    os.kill(record.monitor_pid, signal.SIGKILL)
    pid = record.pid
    # the container's processes carry PDEATHSIG: they die with the monitor, and ps must say so
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}"))
    listing = busybox("ps", "-a").stdout
    assert "Up " not in listing and "Exited (255)" in listing
    assert busybox("ps", "-q").stdout == ""
    busybox("rm", "-f", "orphan")
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}"))
    assert busybox("ps", "-aq").stdout == ""


def test_ps_format_json_and_filters(busybox):
    detached(busybox, "--name", "one", "busybox", "sleep", "30")
    rows = [json.loads(line) for line in busybox("ps", "--format", "json").stdout.splitlines()]
    assert [(row["Names"], row["State"]) for row in rows] == [("one", "running")]
    assert busybox("ps", "-a", "--filter", "name=nomatch").stdout.splitlines()[1:] == []
    assert busybox("ps", "--filter", "status=running", "-q").stdout.strip() == rows[0]["ID"]
    busybox("rm", "-f", "one")


def test_rmi_refuses_an_image_in_use_and_force_keeps_its_layers(busybox):
    # the container reads the image's files only when told to, after the rmi -f
    script = "while [ ! -e /tmp/go ]; do sleep 0.05; done; cat /bin/busybox > /dev/null && echo read-ok; sleep 30"
    detached(busybox, "--name", "user", "busybox", "sh", "-c", script)
    refused = busybox("rmi", "busybox", check=False)
    assert refused.returncode == 1 and "must force" in refused.stderr
    busybox("rmi", "-f", "busybox")
    layers = busybox.data_home / "sbx" / "layers"
    assert [p for p in layers.iterdir() if not p.name.startswith(".")] != []  # still mounted by the container
    busybox("exec", "user", "touch", "/tmp/go")
    assert wait_for(lambda: "read-ok" in busybox("logs", "user").stdout)
    assert state(busybox, "user")["Running"]
    busybox("rm", "-f", "user")
    busybox("system", "prune", "-f")
    assert [p for p in layers.iterdir()] == []


def test_fifty_parallel_detached_runs_all_start(busybox):
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(lambda i: busybox("run", "-d", "--name", f"p{i}", "busybox", "sleep", "30",
                                                  check=False, timeout=300), range(50)))
    assert [r.returncode for r in results] == [0] * 50, [r.stderr for r in results if r.returncode][:3]
    assert len(busybox("ps", "-q").stdout.split()) == 50
    busybox("rm", "-f", *[f"p{i}" for i in range(50)], timeout=300)
    assert busybox("ps", "-aq").stdout == ""


def test_port_lists_nothing_published(busybox):
    detached(busybox, "--name", "noports", "busybox", "sleep", "30")
    assert busybox("port", "noports").stdout == ""
    missing = busybox("port", "noports", "80", check=False)
    assert missing.returncode == 1 and "no public port '80/tcp' published for noports" in missing.stderr
    assert busybox("port", "nothing", check=False).returncode == 1
    busybox("rm", "-f", "noports")

