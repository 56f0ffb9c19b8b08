"""`sbx run` as the unprivileged user, checked from inside the container (TESTPLAN part C)."""

from __future__ import annotations

import os
import sys

import pytest

from sandbox.runtime.idmap import default_idmap
from tests.integration.helpers import terminal_report, wait_for


def run(sbx, *args, check=True, **kw):
    return sbx("run", "--rm", *args, check=check, **kw)


def test_run_prints_and_exits_with_the_containers_code(busybox):
    assert run(busybox, "busybox", "echo", "hello").stdout == "hello\n"
    assert run(busybox, "busybox", "sh", "-c", "exit 3", check=False).returncode == 3
    # pid 1 of a pid namespace ignores signals it has no handler for, even SIGKILL from inside (as in Docker)
    immune = run(busybox, "busybox", "sh", "-c", "kill -9 $$; exit 4", check=False)
    assert immune.returncode == 4


def test_exit_codes_for_missing_and_non_executable_commands(busybox):
    missing = run(busybox, "busybox", "no-such-command", check=False)
    assert missing.returncode == 127
    assert "executable file not found" in missing.stderr and "Traceback" not in missing.stderr
    not_executable = run(busybox, "busybox", "/etc/passwd", check=False)
    assert not_executable.returncode == 126
    no_image = busybox("run", "--pull", "never", "nothing-here", check=False)
    assert no_image.returncode == 125 and len(no_image.stderr.strip().splitlines()) == 1


def _monitors() -> set[int]:
    """This user's sbx container monitors (by title), waiting or running."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    title = handle.read().split(b"\0")[0]
                if title == b"sbx (the container monitor)" and os.stat(f"/proc/{entry}").st_uid == os.getuid():
                    found.add(int(entry))
            except OSError:
                continue
    return found


def test_a_run_that_fails_before_its_container_exists_leaves_no_monitor(busybox):
    """run forks its monitor first (it imports while sbx works): a run that fails before the container is made
    (no image, an env file that cannot be read) closes it, and it exits without a trace."""
    before = _monitors()
    for argv in (["run", "--rm", "--pull", "never", "nothing-here"], ["run", "-d", "--pull", "never", "nothing-here"],
                 ["run", "--rm", "--env-file", "/nonexistent", "busybox", "true"]):
        assert busybox(*argv, check=False).returncode == 125
    assert wait_for(lambda: _monitors() <= before), _monitors() - before
    assert "nothing-here" not in busybox("ps", "-a").stdout


def test_global_options_are_read_before_the_command_name_only(busybox):
    """`--debug` after the image is the container's argument, not sbx's traceback switch."""
    assert run(busybox, "busybox", "echo", "--debug", "-D").stdout == "--debug -D\n"
    missing = run(busybox, "busybox", "no-such-command", "--debug", check=False)
    assert missing.returncode == 127 and "Traceback" not in missing.stderr, missing.stderr
    debugged = busybox("--debug", "run", "--rm", "--pull", "never", "nothing-here", check=False)
    assert debugged.returncode == 125 and "Traceback" in debugged.stderr, debugged.stderr


def test_run_pulls_a_missing_image(sbx):
    result = sbx("run", "--rm", "busybox", "true")
    assert result.returncode == 0
    assert "Unable to find image 'busybox:latest' locally" in result.stderr
    assert result.stdout == ""


def test_user_namespace_maps_root_to_the_user(busybox):
    uid_map = run(busybox, "busybox", "cat", "/proc/self/uid_map").stdout.split()
    assert uid_map[:3] == ["0", str(os.getuid()), "1"]
    idmap = default_idmap()
    if not idmap.single:
        assert uid_map[3:6] == ["1", str(idmap.host_uid(1)), str(len(uid_map) and idmap.uids[1].size)]
    assert run(busybox, "busybox", "id", "-u").stdout.strip() == "0"


def test_user_flag(busybox):
    assert run(busybox, "-u", "33:33", "busybox", "id", "-u").stdout.strip() == "33"
    for bad in ("2147483648", "-1"):
        result = run(busybox, "-u", bad, "busybox", "id", check=False)
        assert result.returncode == 125 and "Traceback" not in result.stderr, result.stderr


def test_hostname_env_workdir_entrypoint(busybox):
    assert run(busybox, "--hostname", "web", "busybox", "hostname").stdout.strip() == "web"
    default = run(busybox, "busybox", "hostname").stdout.strip()
    assert len(default) == 12 and all(c in "0123456789abcdef" for c in default)
    env = run(busybox, "-e", "ANSWER=42", "busybox", "env").stdout.splitlines()
    assert "ANSWER=42" in env and any(line.startswith("PATH=") for line in env)
    assert run(busybox, "-w", "/tmp", "busybox", "pwd").stdout.strip() == "/tmp"
    assert run(busybox, "--entrypoint", "echo", "busybox", "from", "entrypoint").stdout == "from entrypoint\n"


def test_pid_1_holds_only_the_standard_fds(busybox):
    # `; true` keeps sh as pid 1 (busybox sh execs the last command of -c in place)
    fds = run(busybox, "busybox", "sh", "-c", "ls /proc/1/fd; true").stdout.split()
    assert sorted(fds) == ["0", "1", "2"]


def test_proc_dev_sys_and_masked_paths(busybox):
    script = (
        "cat /proc/kcore | wc -c; "
        "echo x > /proc/sysrq-trigger 2>/dev/null && echo writable || echo readonly; "
        "ls /dev; "
        "readlink /dev/ptmx; readlink /dev/fd; readlink /dev/stdin; "
        "grep -E ' /(proc|dev/pts|dev/shm|sys) ' /proc/self/mountinfo | awk '{print $5, $9}'"
    )
    lines = run(busybox, "busybox", "sh", "-c", script).stdout.splitlines()
    assert lines[0] == "0"
    assert lines[1] == "readonly"
    for device in ("null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue"):
        assert device in lines, device
    assert {"pts/ptmx", "/proc/self/fd", "/proc/self/fd/0"} <= set(lines)
    mounts = dict(line.split() for line in lines if line.startswith("/") and len(line.split()) == 2)
    assert mounts.get("/proc") == "proc" and mounts.get("/dev/pts") == "devpts" and mounts.get("/dev/shm") == "tmpfs"


def test_network_none_has_only_loopback(busybox):
    interfaces = run(busybox, "--network", "none", "busybox", "ls", "/sys/class/net").stdout.split()
    assert interfaces == ["lo"]


def test_volumes_and_read_only(busybox, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "in.txt").write_text("from host\n")
    assert run(busybox, "-v", f"{shared}:/data", "busybox", "cat", "/data/in.txt").stdout == "from host\n"
    run(busybox, "-v", f"{shared}:/data", "busybox", "sh", "-c", "echo back > /data/out.txt")
    assert (shared / "out.txt").read_text() == "back\n"
    refused = run(busybox, "-v", f"{shared}:/data:ro", "busybox", "touch", "/data/x", check=False)
    assert refused.returncode != 0
    assert run(busybox, "--read-only", "busybox", "touch", "/x", check=False).returncode != 0
    assert run(busybox, "--read-only", "--tmpfs", "/tmp", "busybox", "touch", "/tmp/x").returncode == 0


def test_writes_do_not_reach_the_image(busybox):
    run(busybox, "busybox", "sh", "-c", "echo changed > /etc/hostname-copy; rm /bin/ls")
    assert run(busybox, "busybox", "ls", "/etc/hostname-copy", check=False).returncode != 0


@pytest.mark.parametrize("driver", ["overlay", "fuse-overlayfs", "copy"])
def test_every_storage_driver_runs(busybox, driver):
    result = busybox("--storage-driver", driver, "run", "--rm", "busybox", "sh", "-c", "echo ok > /tmp/f; cat /tmp/f")
    assert result.stdout == "ok\n"


def test_interactive_terminal(busybox):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(
        sys.executable, ["-m", "sandbox", "run", "--rm", "-i", "-t", "busybox", "sh"],
        env=busybox.environ(), cwd=str(busybox.root), timeout=30, encoding="utf-8",
    )
    child.setwinsize(40, 100)
    child.expect(r"[#$] ")
    child.sendline("echo $((6*7)); stty size")
    child.expect("42")
    child.expect("40 100")
    child.sendline("exit 5")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 5


def test_the_terminal_is_named_inside_the_container(busybox):
    pexpect = pytest.importorskip("pexpect")
    mapped = not default_idmap().single  # a single-id map names neither another user nor the tty group
    for user in ("", "33:33") if mapped else ("",):
        child = pexpect.spawn(
            sys.executable, ["-m", "sandbox", "run", "--rm", "-it", *(["-u", user] if user else []), "busybox", "sh"],
            env=busybox.environ(), cwd=str(busybox.root), timeout=30, encoding="utf-8",
        )
        child.expect(r"[#$] ")
        report = terminal_report(child)
        # the first pty of the container's fresh devpts instance, there under its name, and fd 0 is it
        assert report["tty"] == "/dev/pts/0" and report["exists"] == "0" and report["fd0"] == "/dev/pts/0"
        assert report["pts"].split() == ["0", "ptmx"]
        # owned by the command's user and the tty group, as with Docker
        expected = f"{user.split(':')[0] if user else 0} {5 if mapped else 0} 620"
        assert report["owner"] == expected
        child.sendline("exit 7")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 7


def test_a_terminal_without_stdin_gets_the_window_size_and_its_changes(busybox):
    """`run -t` without -i: sbx's own terminal size is the container's from its first instruction (it is set on the
    pty before the exec, as Docker's ConsoleSize), then a resize reaches it too."""
    pexpect = pytest.importorskip("pexpect")
    script = (
        'trap \'w=$(stty size); echo "winch $w"; [ "$w" = "40 120" ] && exit 0\' WINCH; '
        + 'echo "start $(stty size)"; i=0; while [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done; exit 9'
    )
    child = pexpect.spawn(
        sys.executable, ["-m", "sandbox", "run", "--rm", "-t", "busybox", "sh", "-c", script],
        env=busybox.environ(), cwd=str(busybox.root), timeout=30, encoding="utf-8", dimensions=(30, 90),
    )
    child.expect(r"start (\d+ \d+)")
    assert child.match.group(1) == "30 90"
    child.setwinsize(40, 120)  # SIGWINCH to sbx, RESIZE to the monitor, TIOCSWINSZ: SIGWINCH to the shell
    child.expect("winch 40 120")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_init_is_pid_1_and_forwards_the_exit_code(busybox):
    # that the init reaps orphans is test_lifecycle_hostile.py's test_init_reaps_an_orphan_and_no_zombie_remains
    result = run(busybox, "--init", "busybox", "sh", "-c", "ps -o pid,comm | awk '$1 == 1'; exit 7", check=False)
    assert result.returncode == 7
    assert "sh" not in result.stdout.split()  # pid 1 is the init, not the shell
    assert run(busybox, "--init", "busybox", "no-such-command", check=False).returncode == 127


def test_files_of_other_users_are_removed_with_the_container(busybox):
    run(busybox, "-u", "33:33", "busybox", "sh", "-c", "echo x > /tmp/owned-by-33")
    containers = busybox.data_home / "sbx" / "containers"
    assert [p for p in containers.iterdir() if p.is_dir()] == []



def test_host_files_are_out_of_reach(busybox):
    """TESTPLAN 26 and 34: neither sbx's files nor the host's Python are visible; pid 1 is the image's program."""
    import sandbox

    package = os.path.dirname(sandbox.__file__)
    script = (
        f"ls {package} 2>/dev/null && echo visible; ls {sys.executable} 2>/dev/null && echo python; "
        "readlink /proc/1/exe"
    )
    lines = run(busybox, "busybox", "sh", "-c", script + "; true").stdout.split()
    assert "visible" not in lines and "python" not in lines
    assert lines[-1] == "/bin/busybox"


def test_an_image_whose_proc_is_a_symlink_is_refused(sbx, tmp_path):
    """TESTPLAN 27: /proc -> /etc in the image would mount proc over the image's /etc; sbx refuses the image."""
    import tarfile

    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as archive:
        archive.add("/bin/busybox", "bin/busybox")
        link = tarfile.TarInfo("proc")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        archive.addfile(link)
        etc = tarfile.TarInfo("etc")
        etc.type = tarfile.DIRTYPE
        archive.addfile(etc)
    sbx("import", rootfs, "evil/proc:latest")
    result = sbx("run", "--rm", "evil/proc", "/bin/busybox", "true", check=False)
    assert result.returncode == 125
    assert "symlink" in result.stderr and "Traceback" not in result.stderr


def test_signals_reach_the_container(busybox):
    import signal

    process = busybox.popen("run", "--rm", "busybox", "sh", "-c", "trap 'exit 9' TERM; echo ready; sleep 30 & wait")
    assert process.stdout.readline() == b"ready\n"  # the trap is set, and sbx is relaying the container
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 9


def test_env_file_and_tmpfs_mount(busybox, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=yes\n")
    env_file.chmod(0o644)
    output = run(busybox, "--env-file", env_file, "--mount", "type=tmpfs,target=/scratch,tmpfs-size=1m",
                 "busybox", "sh", "-c", "echo $FROM_FILE; grep ' /scratch ' /proc/self/mountinfo | wc -l").stdout
    assert output.split() == ["yes", "1"]


def test_sigpipe_has_its_default_action_inside(busybox):
    # `yes` must die of SIGPIPE when head exits, not loop on EPIPE errors (Python ignores SIGPIPE; exec keeps that)
    result = run(busybox, "busybox", "sh", "-c", "yes | head -n 1; grep SigIgn /proc/self/status")
    assert result.stdout.splitlines()[0] == "y"
    assert "write error" not in result.stderr


def test_foreground_run_keeps_the_container_without_rm(busybox):
    """Docker's run is create + start + attach: without --rm the exited container stays for ps -a and logs."""
    assert busybox("run", "--name", "kept", "busybox", "echo", "kept output").stdout == "kept output\n"
    assert "Exited (0)" in busybox("ps", "-a").stdout
    assert busybox("logs", "kept").stdout == "kept output\n"
    busybox("rm", "kept")


def test_ctrl_p_ctrl_q_detaches_a_foreground_run(busybox):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(
        sys.executable, ["-m", "sandbox", "run", "-i", "-t", "--name", "fg", "busybox", "sh"],
        env=busybox.environ(), cwd=str(busybox.root), timeout=30, encoding="utf-8",
    )
    child.expect(r"[#$] ")
    child.send("\x10\x11")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert " Up " in busybox("ps").stdout
    busybox("rm", "-f", "fg")



def test_run_interactive_ends_the_containers_input_with_its_own(busybox):
    """`run -i` is Docker's stdin once: the end of sbx's stdin is the end of the container's, so `cat` ends."""
    result = busybox("run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo end", input="piped\n", timeout=60)
    assert result.stdout == "piped\nend\n"
