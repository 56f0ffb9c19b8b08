"""`sbx attach` through the monitor's socket (TESTPLAN 42-44), as the unprivileged user.

Most monitors here are spawned in-process with ``runtime_root``, as the service does for `run -d`; the last tests
go through `run -d` and `sbx attach` as a user would.
"""

from __future__ import annotations

import os
import stat
import sys
import time

import pexpect
import pytest

from sandbox.monitor import attach
from sandbox.monitor.monitor import spawn
from sandbox.store.containers import ContainerRecord, ContainerState, ContainerStore
from tests.integration.helpers import wait_for

FAKE_IMAGE_ID = "sha256:" + "0" * 64
DATE_LOOP = ["sh", "-c", "while true; do date; sleep 0.2; done"]


@pytest.fixture
def start(sbx, monkeypatch):
    """start(args, tty=..., stdin=...) → (name, container id, monitor pid, socket path) of a running container."""
    from sandbox.config import load_settings
    from sandbox.service.containers import ContainerService, RunOptions

    sbx("pull", "-q", "busybox")
    for name, value in sbx.env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    service = ContainerService(settings)
    store = ContainerStore(service.containers_root)

    def make(args, *, tty=False, stdin=False):
        spec, container_dir = service.create("busybox", list(args), RunOptions(tty=tty, interactive=stdin))
        name = f"att-{spec.id[:12]}"
        store.create(ContainerRecord(
            id=spec.id, name=name, image="busybox", image_id=FAKE_IMAGE_ID, command=tuple(args),
            created=time.time(), spec={"tty": tty, "stdin": stdin},
        ))
        monitor = spawn(store.root, spec.id, lambda _record: (spec, container_dir), service.remove_dir,
                        runtime_root=settings.runtime_root)
        return name, spec.id, monitor, attach.socket_path(settings.runtime_root, spec.id)

    make.store = store
    make.sbx = sbx
    return make



def attach_cli(sbx, *args, dimensions=(24, 80)):
    return pexpect.spawn(sys.executable, ["-m", "sandbox", "attach", *args], env=sbx.env, cwd=str(sbx.root),
                         timeout=20, dimensions=dimensions)


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_socket_is_private(start):
    _, container_id, _, path = start(DATE_LOOP, tty=True)
    assert stat.S_ISSOCK(path.lstat().st_mode) and stat.S_IMODE(path.lstat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    start.sbx("rm", "-f", container_id)
    assert wait_for(lambda: not path.exists() and not path.parent.exists())


def test_tty_output_detach_and_attach_again(start):
    name, _, _, _ = start(DATE_LOOP, tty=True)
    for _ in range(2):
        child = attach_cli(start.sbx, name)
        child.expect(r"\d\d:\d\d:\d\d")
        child.send(b"\x10\x11")  # Ctrl-p Ctrl-q
        child.expect("read escape sequence")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        assert " Up " in start.sbx("ps").stdout


def test_detach_keys_option_and_ctrl_p_passes_through(start):
    name, _, _, _ = start(["sh"], tty=True)
    child = attach_cli(start.sbx, "--detach-keys", "ctrl-x,x", name)
    child.send(b"echo A\x10B\r")  # Ctrl-p followed by another key: both reach the shell (which shows ^P)
    child.expect("AB|A\x10B|A\\^PB")
    child.send(b"\x18x")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert " Up " in start.sbx("ps").stdout


def test_resize_reaches_the_container(start):
    # TESTPLAN 42: the container prints its size when SIGWINCH arrives; a resize must reach it within a second
    # (the bound of the wait is the requirement itself)
    script = "trap 'stty size' WINCH; stty size; while true; do sleep 0.05; done"
    name, _, _, _ = start(["sh", "-c", script], tty=True)
    child = attach_cli(start.sbx, name, dimensions=(30, 100))
    child.expect("30 100")
    for rows, columns in ((40, 120), (25, 80), (50, 200)):
        child.setwinsize(rows, columns)
        child.expect(f"{rows} {columns}", timeout=1)
    child.send(b"\x10\x11")
    child.expect(pexpect.EOF)


def test_non_tty_exit_code_and_output(start):
    name, container_id, _, path = start(["sh", "-c", "sleep 1; echo done; echo oops >&2; exit 4"])
    result = start.sbx("attach", name, check=False)
    assert result.returncode == 4, result.stderr
    assert result.stdout == "done\n" and result.stderr == "oops\n"
    assert start.store.get(container_id).state is ContainerState.EXITED
    assert not path.exists()
    refused = start.sbx("attach", name, check=False)
    assert refused.returncode != 0 and "you cannot attach to a stopped container, start it first" in refused.stderr


def test_interactive_stdin_reaches_a_non_tty_container(start):
    name, _, _, _ = start(["sh", "-c", "read line; echo got $line; exit 2"], stdin=True)
    result = start.sbx("attach", name, input="hello\n", check=False)
    assert result.returncode == 2 and result.stdout == "got hello\n"


def test_many_clients_get_the_output_and_exit(start):
    name, _, _, _ = start(["sh", "-c", "sleep 1.5; echo bye; exit 5"])
    processes = [start.sbx.popen("attach", name) for _ in range(3)]
    for process in processes:
        stdout, _ = process.communicate(timeout=30)
        assert process.returncode == 5 and stdout == b"bye\n"


def test_attach_detach_cycles_leave_the_monitor_fds_alone(start):
    """TESTPLAN 44: 1,000 attach/detach cycles leave the monitor's fd count and memory where they started."""
    _, container_id, monitor, path = start(DATE_LOOP, tty=True)
    before = fd_count(monitor)
    rss_before = rss_kib(monitor)
    with open(os.devnull, "wb") as sink:
        for _ in range(1000):
            read_end, write_end = os.pipe()
            os.write(write_end, b"\x10\x11")
            try:
                outcome = attach.attach(path, stdin_fd=read_end, stdout_fd=sink.fileno(), stderr_fd=sink.fileno(),
                                        tty=True, detach_keys=b"\x10\x11")
            finally:
                os.close(read_end)
                os.close(write_end)
            assert outcome == ("detached", None)
    # at most: `before` may still count the report pipe, which the monitor closes just after sbx has read "ok"
    assert wait_for(lambda: fd_count(monitor) <= before, timeout=5), (before, fd_count(monitor))
    assert rss_kib(monitor) - rss_before < 4096  # allocator noise, not a leak per cycle
    assert start.store.get(container_id).state is ContainerState.RUNNING


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_run_detached_then_attach(start):
    sbx = start.sbx
    sbx("run", "-d", "-t", "--name", "c", "busybox", *DATE_LOOP)
    record = start.store.resolve("c")
    assert attach.socket_path(sbx.runtime_dir / "sbx", record.id).exists()
    child = attach_cli(sbx, "c")
    child.expect(r"\d\d:\d\d:\d\d")
    child.send(b"\x10\x11")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and " Up " in sbx("ps").stdout


def test_seed_sequence_start_attach_detach_stop_rm_rmi(sbx):
    """The tutorial's sequence through a pty: run -it, exit, ps -a, start, attach, Ctrl-p Ctrl-q, stop, rm, rmi."""
    import pexpect

    sbx("pull", "-q", "busybox")
    shell = pexpect.spawn(sys.executable, ["-m", "sandbox", "run", "-d", "-i", "-t", "--name", "seed", "busybox", "sh"],
                          env=sbx.environ(), cwd=str(sbx.root), timeout=30, encoding="utf-8")
    shell.expect(pexpect.EOF)
    attached = pexpect.spawn(sys.executable, ["-m", "sandbox", "attach", "seed"], env=sbx.environ(),
                             cwd=str(sbx.root), timeout=30, encoding="utf-8")
    attached.sendline("echo $((6*7))")
    attached.expect("42")
    attached.sendline("exit 0")
    attached.expect(pexpect.EOF)
    attached.close()
    assert attached.exitstatus == 0
    assert "Exited (0)" in sbx("ps", "-a").stdout

    restarted = pexpect.spawn(sys.executable, ["-m", "sandbox", "start", "-a", "-i", "seed"], env=sbx.environ(),
                              cwd=str(sbx.root), timeout=30, encoding="utf-8")
    restarted.sendline("echo again-$((1+1))")
    restarted.expect("again-2")
    restarted.send("\x10\x11")
    restarted.expect(pexpect.EOF)
    restarted.close()
    assert restarted.exitstatus == 0
    assert " Up " in sbx("ps").stdout
    sbx("stop", "-t", "1", "seed")
    sbx("rm", "seed")
    sbx("rmi", "busybox")
    assert sbx("ps", "-aq").stdout == "" and sbx("images", "-q").stdout == ""


def test_a_long_runtime_dir_still_fits_the_socket(sbx):
    """A unix socket path must fit in 108 bytes; a long $XDG_RUNTIME_DIR plus the id must not break run -d."""
    sbx("pull", "-q", "busybox")
    long_dir = sbx.runtime_dir / ("r" * 40)
    long_dir.mkdir(mode=0o700)
    env = {"XDG_RUNTIME_DIR": str(long_dir)}
    sbx("run", "-d", "--name", "longpath", "busybox", "sleep", "30", env=env)
    sbx("rm", "-f", "longpath", env=env)
