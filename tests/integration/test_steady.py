"""A detached container's monitor after its steady exec (monitor/steady.py): lean, and still a whole monitor.

Every container here goes through `run -d` (the suite's network is none), so its monitor is forked, execs the lean
loop once the container runs, and execs the full code back when it has ended.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from sandbox.monitor import attach
from tests.integration.helpers import state, wait_for
from tests.integration.test_network import free_port, helpers_of

TITLE = b"sbx (the container monitor)"
LEAN_EXTENSIONS = {"_json", "fcntl", "termios"}  # what the loop may map of lib-dynload (fcntl, termios: a resize)


def monitor_of(sbx, name: str) -> int:
    pid = state(sbx, name)["Pid"]
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("PPid:"))


def extensions(pid: int) -> set[str]:
    """The Python extension modules the process has mapped (the full monitor maps _ctypes for its kernel calls)."""
    found = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        path = line.split()[-1]
        if ".cpython-" in path and path.endswith(".so"):
            found.add(os.path.basename(path).split(".")[0])
    return found


def assert_lean(pid: int) -> None:
    assert Path(f"/proc/{pid}/cmdline").read_bytes().startswith(TITLE)
    assert extensions(pid) <= LEAN_EXTENSIONS, extensions(pid)


def test_attach_resize_detach_logs_and_stop_across_the_steady_exec(busybox):
    busybox("run", "-d", "-i", "-t", "--name", "lean", "busybox", "sh")
    monitor = monitor_of(busybox, "lean")
    assert_lean(monitor)
    attached = pexpect.spawn(sys.executable, ["-m", "sandbox", "attach", "lean"], env=busybox.environ(),
                             cwd=str(busybox.root), timeout=30, encoding="utf-8", dimensions=(24, 80))
    attached.sendline("echo $((6*7))")
    attached.expect("42")
    attached.setwinsize(41, 101)
    attached.sendline("stty size")
    attached.expect("41 101")
    attached.send("\x10\x11")  # Ctrl-p Ctrl-q
    attached.expect(pexpect.EOF)
    attached.close()
    assert attached.exitstatus == 0
    assert state(busybox, "lean")["Running"] and monitor_of(busybox, "lean") == monitor
    container_id = busybox("inspect", "-f", "{{.Id}}", "lean").stdout.strip()
    socket_path = attach.socket_path(busybox.runtime_dir / "sbx", container_id)
    before = len(os.listdir(f"/proc/{monitor}/fd"))
    with open(os.devnull, "wb") as sink:
        for _ in range(200):  # TESTPLAN 44, on the lean loop: every client it let go is closed
            read_end, write_end = os.pipe()
            os.write(write_end, b"\x10\x11")
            try:
                outcome = attach.attach(socket_path, stdin_fd=read_end, stdout_fd=sink.fileno(),
                                        stderr_fd=sink.fileno(), tty=True, detach_keys=b"\x10\x11")
            finally:
                os.close(read_end)
                os.close(write_end)
            assert outcome == ("detached", None)
    assert wait_for(lambda: len(os.listdir(f"/proc/{monitor}/fd")) <= before, timeout=5)
    assert_lean(monitor)
    following = busybox.popen("logs", "-f", "lean", stdout=subprocess.PIPE)
    busybox("exec", "lean", "sh", "-c", "echo from-exec > /proc/1/fd/1")
    busybox("stop", "-t", "1", "lean")
    out, _ = following.communicate(timeout=30)
    assert following.returncode == 0
    assert b"42" in out and b"from-exec" in out
    assert not state(busybox, "lean")["Running"]
    assert "Exited" in busybox("ps", "-a").stdout


def test_exit_code_wait_and_rm_after_the_hand_back(busybox):
    busybox("run", "-d", "--name", "code", "busybox", "sh", "-c", "echo out; echo err >&2; sleep 0.3; exit 5")
    assert busybox("wait", "code").stdout.strip() == "5"
    logs = busybox("logs", "code")
    assert (logs.stdout, logs.stderr) == ("out\n", "err\n")
    assert state(busybox, "code")["ExitCode"] == 5
    busybox("run", "-d", "--rm", "--name", "gone", "busybox", "sh", "-c", "sleep 0.3")
    assert wait_for(lambda: "gone" not in busybox("ps", "-a").stdout)


def test_restart_goes_lean_again_and_a_killed_lean_monitor_leaves_ps_truthful(busybox):
    busybox("run", "-d", "--name", "again", "busybox", "sh", "-c", "echo started; exec sleep 300")
    first = monitor_of(busybox, "again")
    busybox("restart", "-t", "1", "again")
    second = monitor_of(busybox, "again")
    assert second != first
    assert_lean(second)
    assert wait_for(lambda: busybox("logs", "again").stdout == "started\nstarted\n")
    os.kill(second, signal.SIGKILL)
    assert wait_for(lambda: not state(busybox, "again")["Running"])
    busybox("rm", "-f", "again")
    assert busybox("ps", "-aq").stdout == ""


@pytest.mark.parametrize("backend", ["slirp4netns", "pasta"])
def test_the_finish_stops_the_network_helper_before_the_exit_is_recorded(busybox, backend):
    """The helper stays the lean monitor's child across both execs, and the finish stops it as its own: once
    `stop` has seen the exit recorded, the helper and its files are gone already."""
    container_id = busybox("run", "-d", "--name", "net", "--network", backend, "-p", f"{free_port()}:80",
                           "busybox", "sleep", "300").stdout.strip()
    assert wait_for(lambda: len(helpers_of(container_id)) == 1, timeout=10)
    monitor = monitor_of(busybox, "net")
    assert_lean(monitor)
    [helper] = helpers_of(container_id)
    assert Path(f"/proc/{helper}/stat").read_text().rpartition(")")[2].split()[1] == str(monitor)  # its child
    runtime_dir = attach.socket_path(busybox.runtime_dir / "sbx", container_id).parent
    assert any(runtime_dir.glob(f"{backend}.*"))
    busybox("stop", "-t", "1", "net")
    assert helpers_of(container_id) == []
    assert not any(runtime_dir.glob(f"{backend}.*"))
