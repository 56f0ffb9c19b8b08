"""create, start, restart, rename, top and container prune, as the unprivileged user."""

from __future__ import annotations

import json

from tests.integration.helpers import state, wait_for


def status(sbx, name):
    for line in sbx("ps", "-a").stdout.splitlines()[1:]:
        if line.split()[-1] == name:
            return line
    return None


def test_create_start_stop_start_keeps_the_writable_layer(busybox):
    script = "cat /f 2>/dev/null; echo x >> /f; echo run; sleep 30"
    created = busybox("create", "--name", "keep", "busybox", "sh", "-c", script)
    container_id = created.stdout.strip()
    assert len(container_id) == 64
    assert " Created " in status(busybox, "keep")
    assert busybox("ps", "-q").stdout == ""
    assert state(busybox, "keep")["Status"] == "created"

    assert busybox("start", "keep").stdout == "keep\n"
    assert " Up " in status(busybox, "keep")
    assert wait_for(lambda: "run" in busybox("logs", "keep").stdout)
    busybox("stop", "-t", "1", "keep")
    assert "Exited (" in status(busybox, "keep")

    assert busybox("start", container_id[:12]).stdout == container_id[:12] + "\n"
    assert wait_for(lambda: busybox("logs", "keep").stdout.count("run") == 2)
    assert busybox("logs", "keep").stdout.split() == ["run", "x", "run"]  # the file of the first run is there
    assert busybox("start", "keep").stdout == "keep\n"  # already running: nothing to do

    restarted = busybox("restart", "-t", "1", "keep")
    assert restarted.stdout == "keep\n"
    assert wait_for(lambda: busybox("logs", "keep").stdout.count("run") == 3)
    assert state(busybox, "keep")["Running"]
    busybox("rm", "-f", "keep")


def test_rename_and_top(busybox):
    busybox("run", "-d", "--name", "before", "busybox", "sh", "-c", "sleep 31 & sleep 32; wait")
    busybox("run", "-d", "--name", "other", "busybox", "sleep", "30")
    assert busybox("rename", "before", "after").stdout == ""
    assert status(busybox, "before") is None and " Up " in status(busybox, "after")
    taken = busybox("rename", "after", "other", check=False)
    assert taken.returncode != 0 and "already in use" in taken.stderr
    bad = busybox("rename", "after", "../x", check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr

    def sleeps():
        lines = busybox("top", "after").stdout.splitlines()
        return lines, [line.split(None, 7)[-1] for line in lines[1:]]

    assert wait_for(lambda: {"sleep 31", "sleep 32"} <= set(sleeps()[1]))
    lines, commands = sleeps()
    assert lines[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert lines[0].startswith("UID" + " " * 17 + "PID")
    assert len(commands) == 3 and any(command.startswith("sh -c") for command in commands)
    pid1 = state(busybox, "after")["Pid"]
    assert str(pid1) in [line.split()[1] for line in lines[1:]]
    assert "sleep 30" not in commands  # the other container's sleep is in another pid namespace
    busybox("stop", "-t", "0", "after")
    refused = busybox("top", "after", check=False)
    assert refused.returncode != 0 and "not running" in refused.stderr
    busybox("rm", "-f", "after", "other")


def test_container_prune_removes_exited_ones(busybox):
    busybox("run", "-d", "--name", "done", "busybox", "sh", "-c", "echo data > /written; exit 0")
    busybox("run", "-d", "--name", "alive", "busybox", "sleep", "30")
    busybox("create", "--name", "fresh", "busybox", "true")
    assert busybox("wait", "done").stdout == "0\n"
    done_id = json.loads(busybox("inspect", "done").stdout)[0]["Id"]
    result = busybox("container", "prune", "-f")
    assert result.stdout.splitlines()[:2] == ["Deleted Containers:", done_id]
    assert result.stdout.splitlines()[-1].startswith("Total reclaimed space: ")
    assert status(busybox, "done") is None
    assert status(busybox, "alive") is not None and status(busybox, "fresh") is not None
    assert not (busybox.data_home / "sbx" / "containers" / done_id).exists()
    assert busybox("container", "prune", "-f").stdout == "Total reclaimed space: 0B\n"
    busybox("rm", "-f", "alive", "fresh")
