"""`sbx exec` into a running container, as the unprivileged user (TESTPLAN 26, 30)."""

from __future__ import annotations

import json
import sys
import time

import pytest


@pytest.fixture
def running(sbx):
    sbx("pull", "-q", "busybox")
    sbx("run", "-d", "--name", "c", "--hostname", "inside", "busybox", "sleep", "60")
    yield sbx
    sbx("rm", "-f", "c", check=False)


def test_exec_runs_in_the_container(running):
    assert running("exec", "c", "echo", "hi").stdout == "hi\n"
    assert running("exec", "c", "hostname").stdout == "inside\n"
    # the container's pid namespace: its pid 1 is the container's sleep
    assert running("exec", "c", "cat", "/proc/1/cmdline").stdout == "sleep\x0060\x00"
    ps = running("exec", "c", "ps").stdout.splitlines()
    assert any(line.split()[0] == "1" and "sleep 60" in line for line in ps[1:])
    # the container's files, not the host's
    host_only = running.root / "host-only"
    host_only.write_text("x")
    assert running("exec", "c", "test", "-e", str(host_only), check=False).returncode == 1
    assert running("exec", "c", "test", "-e", "/bin/busybox").returncode == 0
    assert running("exec", "c", "cat", "/etc/os-release", check=False).stdout != _host("/etc/os-release")
    # the host's Python is out of reach (TESTPLAN 26)
    assert running("exec", "c", "test", "-e", sys.executable, check=False).returncode == 1


def _host(path):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def test_exit_codes(running):
    assert running("exec", "c", "sh", "-c", "exit 5", check=False).returncode == 5
    missing = running("exec", "c", "no-such-program", check=False)
    assert missing.returncode == 127
    assert 'exec: "no-such-program": executable file not found in $PATH' in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    not_executable = running("exec", "c", "/etc/passwd", check=False)
    assert not_executable.returncode == 126
    killed = running("exec", "c", "sh", "-c", "kill -9 $$", check=False)
    assert killed.returncode == 137


def test_user_env_workdir(running):
    assert running("exec", "-u", "33", "c", "id", "-u").stdout == "33\n"
    assert running("exec", "-u", "nobody", "c", "id", "-un").stdout == "nobody\n"
    env = running("exec", "-e", "A=1", "c", "env").stdout.splitlines()
    assert "A=1" in env and "HOSTNAME=inside" in env and any(line.startswith("PATH=") for line in env)
    assert "HOME=/root" in env
    assert running("exec", "-w", "/tmp", "c", "pwd").stdout == "/tmp\n"
    unknown = running("exec", "-u", "nosuchuser", "c", "id", check=False)
    assert unknown.returncode == 126 and "unable to find user nosuchuser" in unknown.stderr


def test_capabilities_are_not_inheritable(running):
    # TESTPLAN 30, for root and for another user
    for user in ("0", "33"):
        status = running("exec", "-u", user, "c", "cat", "/proc/self/status").stdout
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        assert int(fields["CapInh"].strip(), 16) == 0
        assert int(fields["CapAmb"].strip(), 16) == 0
    pid1 = running("exec", "c", "cat", "/proc/1/status").stdout
    mine = running("exec", "c", "cat", "/proc/self/status").stdout
    bound = [line for line in pid1.splitlines() if line.startswith("CapBnd")]
    assert bound and bound == [line for line in mine.splitlines() if line.startswith("CapBnd")]


def test_detached_exec(running):
    started = running("exec", "-d", "c", "sh", "-c", "sleep 1; echo done > /tmp/flag")
    assert started.returncode == 0 and started.stdout == ""
    result = running("exec", "c", "sh", "-c", "for i in $(seq 50); do [ -f /tmp/flag ] && break; sleep 0.1; done; "
                     "cat /tmp/flag")
    assert result.stdout == "done\n"
    missing = running("exec", "-d", "c", "no-such-program", check=False)
    assert missing.returncode == 127


def test_exec_into_a_stopped_container(sbx):
    sbx("pull", "-q", "busybox")
    sbx("run", "-d", "--name", "done", "busybox", "true")
    for _ in range(100):
        if json.loads(sbx("inspect", "done").stdout)[0]["State"]["Status"] == "exited":
            break
        time.sleep(0.1)
    result = sbx("exec", "done", "echo", "hi", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["sbx: container done is not running"]
    missing = sbx("exec", "nosuch", "echo", "hi", check=False)
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1
    sbx("rm", "-f", "done")


def test_interactive_terminal(running):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(
        sys.executable, ["-m", "sandbox", "exec", "-it", "c", "sh"],
        env=running.environ(), cwd=str(running.root), timeout=30, encoding="utf-8",
    )
    child.setwinsize(30, 90)
    child.expect(r"[#$] ")
    child.sendline("echo $((2+3)); stty size")
    child.expect("5")
    child.expect("30 90")
    child.sendline("exit 3")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3


def test_container_group_exec(running):
    assert running("container", "exec", "-i", "c", "cat", input="piped\n").stdout == "piped\n"
    assert running("exec", "c", "cat", input="ignored\n").stdout == ""


def test_exec_with_the_host_network(sbx):
    # the container shares the host's network namespace: exec joins the others and leaves that one alone
    sbx("pull", "-q", "busybox")
    sbx("run", "-d", "--name", "hostnet", "--network", "host", "busybox", "sleep", "60")
    try:
        assert sbx("exec", "hostnet", "cat", "/proc/1/cmdline").stdout == "sleep\x0060\x00"
    finally:
        sbx("rm", "-f", "hostnet")
