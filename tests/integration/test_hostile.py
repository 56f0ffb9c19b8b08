"""A hostile container and a hostile local user get nothing (TESTPLAN part I), each finding replayed as the
unprivileged user.

The other local user: the suite runs as one unprivileged user, which cannot act as another. So the root-run harness
(scripts/test-integration.sh) plays the other user's part before the suite starts: as ``sbxtest2`` it makes what
that user would plant (a world-writable dir, a private one of its own, a symlink) under ``$SBX_TEST_FOREIGN``. The
tests that need it are skipped when the suite is run without that harness.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from tests.integration.helpers import state, wait_for


def _cmdlines() -> dict[int, bytes]:
    """Every readable /proc/PID/cmdline of this user's processes (what `ps` shows any local user)."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != os.getuid():
                continue
            with open(f"/proc/{name}/cmdline", "rb") as file:
                found[int(name)] = file.read()
        except OSError:
            continue
    return found


def test_no_helper_shows_the_users_environment_or_command_in_ps(busybox, tmp_path):
    """Finding 9: the monitor was forked from `sbx run -e SECRET=...` and kept its argv for all to read."""
    env_file = tmp_path / "env"
    env_file.write_text("FILE_SECRET=from-the-env-file-7d1\n")
    busybox("run", "-d", "--name", "quiet", "-e", "ARG_SECRET=from-the-flag-5c2", "--env-file", env_file,
            "busybox", "sleep", "60")
    assert state(busybox, "quiet")["Running"]
    seen = _cmdlines()
    leaking = {pid: line for pid, line in seen.items() if b"from-the-" in line}
    assert leaking == {}
    assert any(line.startswith(b"sbx (the container monitor)") for line in seen.values())


def _rootfs(tmp_path: Path) -> Path:
    path = tmp_path / "rootfs.tar"
    with tarfile.open(path, "w") as archive:
        archive.add("/bin/busybox", "bin/busybox")
        for name in ("sh", "sleep", "true", "cat", "ls", "readlink", "test", "echo"):
            link = tarfile.TarInfo(f"bin/{name}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            archive.addfile(link)
        work = tarfile.TarInfo("work")  # a WorkingDir that reaches /proc by way of the image
        work.type, work.linkname = tarfile.SYMTYPE, "/proc/1"
        archive.addfile(work)
        for name in ("etc", "tmp", "proc", "dev", "sys"):
            directory = tarfile.TarInfo(name)
            directory.type, directory.mode = tarfile.DIRTYPE, 0o755
            archive.addfile(directory)
    return path


def test_an_unknown_stop_signal_warns_and_stop_still_stops(sbx, tmp_path):
    """Finding 10: an image StopSignal of SIGFOO made `sbx stop` fail."""
    sbx("import", _rootfs(tmp_path), "hostile/stopsignal:1", "--change", "STOPSIGNAL SIGFOO",
        "--change", 'CMD ["/bin/sh", "-c", "trap \'exit 7\' TERM; echo ready; sleep 60 & wait"]')
    created = sbx("run", "-d", "--name", "foo", "hostile/stopsignal:1")
    assert "WARNING: image StopSignal 'SIGFOO' names no signal" in created.stderr
    assert wait_for(lambda: "ready" in sbx("logs", "foo").stdout)
    assert sbx("stop", "-t", "30", "foo").returncode == 0
    assert state(sbx, "foo")["ExitCode"] == 7  # SIGTERM's trap ran: not the SIGKILL after the timeout


FOREIGN = os.environ.get("SBX_TEST_FOREIGN")
needs_foreign = pytest.mark.skipif(not FOREIGN, reason="the other local user's files are made by the root harness")


@needs_foreign
@pytest.mark.parametrize("planted", ["open", "private", "link"])
def test_a_runtime_dir_another_user_made_is_never_used(busybox, planted):
    """Finding 4: XDG_RUNTIME_DIR (or the /tmp fallback) made by another user, 0777, 0700 or a symlink: sbx puts no
    socket there, and the container still runs with a private runtime dir of its own."""
    hostile = Path(FOREIGN) / planted
    env = {"XDG_RUNTIME_DIR": str(hostile)}
    root = next(line.split(":", 1)[1].strip() for line in busybox("info", env=env).stdout.splitlines()
                if line.startswith("Runtime root:"))
    assert not root.startswith(str(hostile)) and not root.startswith(FOREIGN)
    busybox("run", "-d", "--name", f"rt-{planted}", "busybox", "sleep", "30", env=env)
    assert busybox("exec", f"rt-{planted}", "echo", "reached", env=env).stdout == "reached\n"
    if planted == "open":
        assert list(hostile.iterdir()) == []


PROC_SPELLINGS = ["//proc/1", "/./proc", "/proc/self/fd/3", "//proc/self/fd/3", "/work"]


@pytest.mark.parametrize("path", PROC_SPELLINGS)
def test_working_dirs_that_reach_proc_are_refused_for_run_and_exec(sbx, tmp_path, path):
    """Finding 8: `-w //proc/1` passed the /proc check; `/work -> /proc/1` in the image is caught after chdir."""
    sbx("import", _rootfs(tmp_path), "hostile/workdir:1", "--change", 'CMD ["/bin/sleep", "60"]')
    result = sbx("run", "--rm", "-w", path, "hostile/workdir:1", "/bin/true", check=False)
    assert result.returncode == 125, result.stderr
    assert "refusing working directory" in result.stderr and "Traceback" not in result.stderr
    sbx("run", "-d", "--name", "wd", "hostile/workdir:1")
    result = sbx("exec", "-w", path, "wd", "/bin/true", check=False)
    assert result.returncode == 126, result.stderr
    assert "refusing working directory" in result.stderr


@pytest.mark.parametrize("path", ["//proc/1", "/work"])
def test_an_image_working_dir_that_reaches_proc_is_refused(sbx, tmp_path, path):
    sbx("import", _rootfs(tmp_path), "hostile/imagewd:1", "--change", f"WORKDIR {path}")
    result = sbx("run", "--rm", "hostile/imagewd:1", "/bin/true", check=False)
    assert result.returncode == 125 and "refusing working directory" in result.stderr


def test_init_is_no_host_process(busybox):
    """Finding 5: with --init, pid 1 was the forked host sbx process: its environment, argv, memory and exe."""
    script = ("tr '\\0' ' ' < /proc/1/cmdline; echo; readlink /proc/1/exe; tr '\\0' '\\n' < /proc/1/environ; "
              "grep -c python /proc/1/maps; echo end")
    lines = busybox("run", "--rm", "--init", "-e", "MINE=1", "busybox", "sh", "-c", script,
                    env={"HOST_ONLY_SECRET": "host-value-93f"}).stdout.splitlines()
    assert lines[0].startswith("/dev/init -- sh -c")
    assert lines[1] == "/dev/init"
    assert "MINE=1" in lines and not any("host-value-93f" in line for line in lines)
    assert lines[-2:] == ["0", "end"]  # nothing of the host's interpreter is mapped in pid 1


TTY_PROBE = "for fd in 0 1 2; do test -t $fd && echo fd$fd=terminal || echo fd$fd=not; done"


def _from_a_terminal(sbx, *args, meanwhile=None):
    """Run `sbx ARGS` with a terminal as its stdin, stdout and stderr (as a user's shell would); its output."""
    import sys

    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(sys.executable, ["-m", "sandbox", *args], env=sbx.environ(), cwd=str(sbx.root),
                          timeout=60, encoding="utf-8")
    if meanwhile is not None:
        meanwhile(child.pid)
    child.expect(pexpect.EOF)
    child.close()
    return child.before.replace("\r\n", "\n")


def test_without_t_the_container_never_holds_the_users_terminal(busybox):
    """Finding 3: `sbx exec` without -t gave the user's own terminal to the command as fds 0, 1 and 2."""
    busybox("run", "-d", "--name", "term", "busybox", "sleep", "60")
    for args in (("exec", "term", "sh", "-c", TTY_PROBE), ("exec", "-i", "term", "sh", "-c", TTY_PROBE),
                 ("run", "--rm", "busybox", "sh", "-c", TTY_PROBE),
                 ("run", "--rm", "-i", "busybox", "sh", "-c", TTY_PROBE)):
        output = _from_a_terminal(busybox, *args)
        assert [line for line in output.splitlines() if line.startswith("fd")] == ["fd0=not", "fd1=not", "fd2=not"]
    # start -a attaches once the container runs: it waits for /tmp/go, so no output comes before the attach
    busybox("create", "--name", "later", "busybox", "sh", "-c",
            f"while ! test -e /tmp/go; do sleep 0.05; done; {TTY_PROBE}")

    def go(pid: int) -> None:  # once `start -a` holds its connection: a held start runs only after its first client
        def running() -> bool:
            state = busybox("inspect", "-f", "{{.State.Status}}", "later", check=False).stdout.strip()
            return state == "running"

        assert wait_for(running, timeout=60)
        busybox("exec", "later", "touch", "/tmp/go")

    output = _from_a_terminal(busybox, "start", "-a", "later", meanwhile=go)
    assert [line for line in output.splitlines() if line.startswith("fd")] == ["fd0=not", "fd1=not", "fd2=not"]


def test_a_process_left_behind_by_exec_reads_nothing_typed_afterwards(busybox):
    """Finding 3: a process an exec leaves behind kept reading the user's terminal; now its stdin ends with sbx."""
    busybox("run", "-d", "--name", "left", "busybox", "sleep", "60")
    output = _from_a_terminal(busybox, "exec", "-i", "left", "sh", "-c",
                              # fd 3: sh gives a background list /dev/null as its stdin, but not its other fds
                              "exec 3<&0; (readlink /proc/self/fd/3 > /tmp/stdin; cat <&3 > /tmp/stolen; "
                              "echo eof >> /tmp/stolen) & echo started")
    assert "started" in output
    assert wait_for(lambda: busybox("exec", "left", "cat", "/tmp/stolen", check=False).stdout == "eof\n")
    assert busybox("exec", "left", "cat", "/tmp/stdin").stdout.startswith("pipe:")  # not the user's terminal


def test_a_bind_source_swapped_for_a_symlink_by_another_container_is_refused(busybox, tmp_path):
    """Finding 2: a container sharing the source's parent swapped it for a symlink to the user's home, and the next
    `start` mounted the home. The source is pinned at create and opened without following symlinks."""
    shared = tmp_path / "shared"
    (shared / "volume").mkdir(parents=True)
    (shared / "volume" / "ok").write_text("mine\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / "secret").write_text("the user's secret\n")
    assert busybox("run", "--name", "victim", "-v", f"{shared}/volume:/data", "busybox",
                   "sh", "-c", "cat /data/*").stdout == "mine\n"
    busybox("run", "--rm", "-v", f"{shared}:/shared", "busybox", "sh", "-c",
            f"rm -r /shared/volume && ln -s {home} /shared/volume")
    result = busybox("start", "-a", "victim", check=False)
    assert result.returncode != 0
    assert "bind mount source" in result.stderr and "since the container was created" in result.stderr
    assert "secret" not in result.stdout and "Traceback" not in result.stderr
