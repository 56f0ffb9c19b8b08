"""`sbx exec` into a running container, as the unprivileged user (TESTPLAN 26, 30)."""

from __future__ import annotations

import json
import stat
import sys
import time

import pytest

from tests.integration.helpers import terminal_report, wait_for


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


def exec_sockets(sbx, name="c"):
    """The exec holders' sockets in the container's runtime directory."""
    container_id = json.loads(sbx("inspect", name).stdout)[0]["Id"]
    return sorted((sbx.runtime_dir / "sbx" / container_id[:16]).glob("exec-*.sock"))


def exec_tty(sbx, *args):
    pexpect = pytest.importorskip("pexpect")
    return pexpect.spawn(sys.executable, ["-m", "sandbox", "exec", *args], env=sbx.environ(), cwd=str(sbx.root),
                         timeout=30, encoding="utf-8")


def test_interactive_terminal(running):
    import pexpect

    child = exec_tty(running, "-it", "c", "sh")
    child.setwinsize(30, 90)
    child.expect(r"[#$] ")
    (path,) = exec_sockets(running)  # the holder's, private like the container's own attach socket
    assert stat.S_IMODE(path.lstat().st_mode) == 0o600
    child.sendline("echo $((2+3)); stty size")
    child.expect("5")
    child.expect("30 90")
    child.sendline("exit 3")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3
    assert "read escape sequence" not in child.before
    assert wait_for(lambda: not exec_sockets(running), timeout=5)  # the holder left with the shell


@pytest.fixture
def with_terminal(sbx):
    """A running container whose pid 1 has a terminal of its own (its /dev/pts/0)."""
    sbx("pull", "-q", "busybox")
    sbx("run", "-d", "-it", "--name", "tc", "busybox", "sh")
    yield sbx
    sbx("rm", "-f", "tc", check=False)


def test_the_exec_terminal_is_named_inside_the_container(with_terminal):
    import pexpect

    child = exec_tty(with_terminal, "-it", "tc", "sh")
    child.expect(r"[#$] ")
    report = terminal_report(child)
    # a pty of the container's own devpts: the next one after pid 1's, under its name there, and fd 0 is it
    assert report["tty"] == "/dev/pts/1" and report["exists"] == "0" and report["fd0"] == "/dev/pts/1"
    assert report["pts"].split() == ["0", "1", "ptmx"]
    child.sendline("printf 'pid1=[%s]\\n' \"$(readlink /proc/1/fd/0)\"")
    child.expect(r"pid1=\[([^]%\r\n]*)\]")
    assert child.match.group(1) == "/dev/pts/0"  # the container's own terminal, a sibling in the same instance
    child.sendline("exit 6")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 6
    assert with_terminal("exec", "tc", "ls", "/dev/pts").stdout.split() == ["0", "ptmx"]  # freed with the exec


def test_exec_t_without_i_gets_the_window_size(running):
    import pexpect

    script = 'echo "size $(stty size)"'  # at once: the size is the pty's before the command runs
    child = pexpect.spawn(sys.executable, ["-m", "sandbox", "exec", "-t", "c", "sh", "-c", script],
                          env=running.environ(), cwd=str(running.root), timeout=30, encoding="utf-8",
                          dimensions=(25, 70))
    child.expect(r"size (\d+ \d+)")
    assert child.match.group(1) == "25 70"
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_detach_leaves_the_command_running(running):
    import pexpect

    child = exec_tty(running, "-it", "c", "/bin/sh")
    child.expect(r"[#$] ")
    child.sendline("echo $$ > /tmp/pid; echo marker-$((40+2))")
    child.expect("marker-42")
    # output that nobody reads once sbx has gone: the holder drops it, so the writer never blocks on the pty
    child.sendline("sh -c 'i=0; while [ ! -f /tmp/stop ]; do i=$((i+1)); echo $i > /tmp/count; echo line $i; done' &")
    child.send("\x10\x11")  # Ctrl-p Ctrl-q
    child.expect("read escape sequence")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0

    pid = running("exec", "c", "cat", "/tmp/pid").stdout.strip()
    assert pid.isdigit()
    time.sleep(1)  # a hung-up terminal would have sent SIGHUP by now
    assert running("exec", "c", "kill", "-0", pid, check=False).returncode == 0
    assert running("exec", "c", "cat", f"/proc/{pid}/cmdline").stdout == "/bin/sh\x00"
    assert running("exec", "c", "sh", "-c", f"grep -q '^State:.*[RS]' /proc/{pid}/status").returncode == 0

    def count():
        return int(running("exec", "c", "cat", "/tmp/count").stdout.strip() or 0)

    first = count()
    # 10,000 lines of ~11 bytes: past what a pty holds (64 KiB of tty buffer + 4 KiB of line discipline), so the
    # writer would be blocked before this if the holder stopped reading; a loaded machine gets a minute
    assert wait_for(lambda: count() > first + 10000, timeout=60)
    assert len(exec_sockets(running)) == 1  # the holder still serves the shell

    running("exec", "c", "touch", "/tmp/stop")
    running("exec", "c", "kill", "-9", pid)
    assert wait_for(lambda: not exec_sockets(running), timeout=10)
    assert running("exec", "c", "kill", "-0", pid, check=False).returncode != 0
    assert " Up " in running("ps").stdout


def test_detach_keys_option(running):
    import pexpect

    child = exec_tty(running, "-it", "--detach-keys", "", "c", "sh")
    child.expect(r"[#$] ")
    child.send("\x10\x11")  # no detaching: both bytes go to the shell
    child.sendline("echo still-$((1+1))")
    child.expect("still-2")
    child.sendline("exit 4")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 4
    assert "read escape sequence" not in child.before

    child = exec_tty(running, "-it", "--detach-keys", "ctrl-x,x", "c", "sh")
    child.expect(r"[#$] ")
    child.sendline("echo $$ > /tmp/keys-pid")
    child.expect(r"[#$] ")
    child.send("\x18x")
    child.expect("read escape sequence")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert len(exec_sockets(running)) == 1
    running("exec", "c", "sh", "-c", "kill -9 $(cat /tmp/keys-pid)")
    assert wait_for(lambda: not exec_sockets(running), timeout=10)

    bad = running("exec", "-it", "--detach-keys", "ctrl-", "c", "sh", check=False)
    assert bad.returncode != 0 and bad.stderr.startswith("sbx: ")


def test_tty_exec_failures(running):
    missing = running("exec", "-it", "c", "no-such-program", check=False)
    assert missing.returncode == 127
    assert missing.stderr.strip().splitlines() == [
        'sbx: exec: "no-such-program": executable file not found in $PATH'
    ]
    assert missing.stdout == ""
    assert running("exec", "-t", "c", "/etc/passwd", check=False).returncode == 126
    assert not exec_sockets(running)
    # a tty without a terminal on sbx's side: the command still gets the holder's pty, and its output comes
    terminal = running("exec", "-t", "c", "sh", "-c", "test -t 0 && test -t 1 && echo terminal")
    assert terminal.returncode == 0 and terminal.stdout.strip() == "terminal"


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
