"""Lifecycle cases where something went wrong first: a killed monitor, a recycled pid, a reboot, orphans, races
(TESTPLAN 49, 50, 51, 54), as the unprivileged user. Written against behaviour (processes, mounts, files, exit codes),
not against how the monitor or the init are built.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.helpers import wait_for


def container_dir(sbx, name: str) -> Path:
    return sbx.data_home / "sbx" / "containers" / json.loads(sbx("inspect", name).stdout)[0]["Id"]


def record_path(sbx, name: str) -> Path:
    return container_dir(sbx, name) / "config.json"


def read_record(sbx, name: str) -> dict:
    return json.loads(record_path(sbx, name).read_text())


def rewrite_record(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.chmod(0o600)
    path.write_text(json.dumps(data))


def start_time(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19])


def alive(pid: int) -> bool:
    """Running (or sleeping): not gone and not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def our_processes_mentioning(text: str) -> list[str]:
    """Command lines of this user's processes that contain ``text``, and mount tables that do."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != os.getuid():
                continue
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            mounts = Path(f"/proc/{name}/mountinfo").read_text()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"process {name}: {cmdline}")
        found.extend(f"mount seen by {name}: {line}" for line in mounts.splitlines() if text in line)
    return found


# -- 49: --init reaps orphans ----------------------------------------------------------------------------------------

# An orphan: the inner sh exits at once, its sleep is re-parented to pid 1. When the sleep ends, pid 1 must reap it:
# its /proc entry must go away (a zombie keeps it, in state Z). Waits are bounded; nothing is decided by a sleep.
_ORPHAN = r"""
sh -c 'sleep 0.3 & echo $! > /tmp/orphan'
pid=$(cat /tmp/orphan)
ppid=$(awk '{print $4}' /proc/$pid/stat 2>/dev/null)
i=0; while [ -e /proc/$pid ] && [ "$(awk '{print $3}' /proc/$pid/stat 2>/dev/null)" != Z ] && [ $i -lt 400 ]; do
  sleep 0.05; i=$((i+1)); done
i=0; while [ -e /proc/$pid ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
echo "parent=$ppid"
[ -e /proc/$pid ] && echo "zombie $(cat /proc/$pid/stat)" || echo reaped
zombies=$(cat /proc/[0-9]*/stat 2>/dev/null | awk '$3 == "Z"' | wc -l); echo "zombies=$zombies"
"""


def test_init_reaps_an_orphan_and_no_zombie_remains(busybox):
    """TESTPLAN 49: under --init an orphan that exits is reaped (no zombie is left in the container), whatever the
    init is; the command's exit code still comes out."""
    result = busybox("run", "--rm", "--init", "busybox", "sh", "-c", _ORPHAN + "exit 7", check=False)
    assert result.returncode == 7, result.stderr
    lines = result.stdout.split("\n")
    assert "parent=1" in lines, result.stdout  # it was an orphan of pid 1 (the init), as intended
    assert "reaped" in lines and "zombies=0" in lines, result.stdout


# -- 50: a killed monitor, then rm -f ----------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", ["overlay", "fuse-overlayfs", "copy"])
def test_rm_after_a_killed_monitor_leaves_no_process_mount_or_dir(busybox, driver):
    """TESTPLAN 50: SIGKILL the monitor; `ps -a` says Exited, and `rm -f` leaves no process of the container (nor
    a fuse-overlayfs helper), no mount naming its dir, and no dir."""
    busybox("--storage-driver", driver, "run", "-d", "--name", "victim", "busybox", "sleep", "300")
    directory = container_dir(busybox, "victim")
    record = read_record(busybox, "victim")
    pid, monitor = record["pid"], record["monitor_pid"]
    assert our_processes_mentioning(directory.name), "the container's processes do not name its dir: probe is blind"
    os.kill(monitor, signal.SIGKILL)
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}"))  # dead and reaped (by the host's init)
    listing = busybox("ps", "-a", "--filter", "name=victim").stdout
    assert "Exited" in listing and " Up " not in listing, listing
    busybox("rm", "-f", "victim")
    assert wait_for(lambda: not our_processes_mentioning(directory.name), timeout=20), \
        our_processes_mentioning(directory.name)
    assert not directory.exists()
    assert busybox("ps", "-aq").stdout == ""


# -- 51: a recycled pid, a reboot ------------------------------------------------------------------------------------


def _stranger() -> subprocess.Popen:
    """A process of ours that any signal of sbx's would end (no handler for TERM, KILL, INT, HUP, QUIT)."""
    return subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL)


def _dead_container(sbx, name: str) -> Path:
    sbx("run", "-d", "--name", name, "busybox", "sleep", "300")
    record = read_record(sbx, name)
    os.kill(record["monitor_pid"], signal.SIGKILL)
    assert wait_for(lambda: not os.path.exists(f"/proc/{record['pid']}"))
    return record_path(sbx, name)


def _end_what_restart_started(sbx, name: str, strangers: list[subprocess.Popen]) -> None:
    """restart leaves the strangers alone and then starts the container anew, as it should: end that container
    while its record is still true, or forging the record again would leave it running past the test."""
    record = read_record(sbx, name)
    if record["state"] == "running" and record["monitor_pid"] not in {stranger.pid for stranger in strangers}:
        sbx("kill", name)
        assert wait_for(lambda: read_record(sbx, name)["state"] != "running")
        assert wait_for(lambda: not alive(record["monitor_pid"]))


def test_stop_and_kill_never_signal_a_recycled_pid(busybox):
    """TESTPLAN 51: the record's pid and monitor pid now belong to strangers (other start times, as a recycled pid
    has): ps says Exited, and stop, kill and rm -f leave both strangers running."""
    path = _dead_container(busybox, "recycled")
    strangers = [_stranger(), _stranger()]
    try:
        rewrite_record(path, pid=strangers[0].pid, monitor_pid=strangers[1].pid, state="running")
        assert "Exited" in busybox("ps", "-a", "--filter", "name=recycled").stdout
        assert busybox("ps", "-q").stdout == ""
        for command in (["stop", "-t", "1"], ["kill"], ["kill", "-s", "TERM"], ["restart", "-t", "1"]):
            busybox(*command, "recycled", check=False)
            _end_what_restart_started(busybox, "recycled", strangers)
            rewrite_record(path, pid=strangers[0].pid, monitor_pid=strangers[1].pid, state="running")
        busybox("rm", "-f", "recycled")
        assert all(alive(stranger.pid) for stranger in strangers)
    finally:
        for stranger in strangers:
            stranger.kill()
            stranger.wait()


def test_after_a_reboot_a_matching_pid_is_still_a_stranger(busybox):
    """TESTPLAN 51: a record from another boot whose pid and start time happen to match a live process of this
    boot: the boot id tells them apart, so ps says Exited and stop leaves the process alone."""
    path = _dead_container(busybox, "oldboot")
    stranger = _stranger()
    try:
        rewrite_record(path, pid=stranger.pid, pid_start=start_time(stranger.pid), monitor_pid=stranger.pid,
                       monitor_start=start_time(stranger.pid), boot_id="00000000-0000-4000-8000-000000000000",
                       state="running")
        assert "Exited" in busybox("ps", "-a", "--filter", "name=oldboot").stdout
        busybox("stop", "-t", "1", "oldboot", check=False)
        busybox("kill", "oldboot", check=False)
        assert alive(stranger.pid)
        busybox("rm", "-f", "oldboot")
        assert alive(stranger.pid)
    finally:
        stranger.kill()
        stranger.wait()


# -- 54: races ---------------------------------------------------------------------------------------------------------


def test_twenty_parallel_runs_of_one_name_have_one_winner(busybox):
    """TESTPLAN 54: 20 `run --name same` at once: exactly one wins, the others fail 'already in use'."""
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda _: busybox("run", "-d", "--name", "same", "busybox", "sleep", "30",
                                                  check=False, timeout=300), range(20)))
    winners = [r for r in results if r.returncode == 0]
    assert len(winners) == 1, [r.stderr for r in results]
    assert all(r.returncode == 125 and "already in use" in r.stderr for r in results if r.returncode != 0), \
        [r.stderr for r in results if r.returncode != 0]
    assert len(busybox("ps", "-aq").stdout.split()) == 1
    busybox("rm", "-f", "same")


def test_parallel_rmi_of_images_sharing_layers_while_a_sibling_runs(busybox):
    """TESTPLAN 54: multilayer and zstd share busybox's first layer; removing both at once while containers of
    busybox start and run must leave that layer (and busybox) whole."""
    busybox("pull", "-q", "multilayer")
    busybox("pull", "-q", "zstd")
    busybox("run", "-d", "--name", "sibling", "busybox", "sleep", "300")
    probe = "cat /bin/busybox > /dev/null && ls /etc/passwd > /dev/null && echo whole"

    def job(index: int):
        if index == 0:
            return busybox("rmi", "multilayer", check=False)
        if index == 1:
            return busybox("rmi", "zstd", check=False)
        if index == 2:
            return busybox("system", "prune", "-f", check=False)
        return busybox("run", "--rm", "busybox", "sh", "-c", probe, check=False)

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(job, range(6)))
    assert [r.returncode for r in results] == [0] * 6, [r.stderr for r in results]
    assert all(r.stdout == "whole\n" for r in results[3:])
    assert busybox("exec", "sibling", "sh", "-c", probe).stdout == "whole\n"
    assert busybox("run", "--rm", "busybox", "sh", "-c", probe).stdout == "whole\n"
    assert busybox("images", "--format", "json").stdout.count('"Repository"') == 1
    assert busybox("system", "check").stdout.strip() == "no problems found"
    busybox("rm", "-f", "sibling")
