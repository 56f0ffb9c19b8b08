"""What a container can see and touch, probed from inside a real container as the unprivileged user (TESTPLAN
25, 26, 29, 30, 31, 33, 34). Each test names the protection it proves; each fails when that protection is removed.

The expected paths and values are written out here, never read from sbx's own modules.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.imagebuild import Dir, File, Symlink, busybox_entries, layer_tar
from tests.integration.helpers import wait_for


def run(sbx, *args, check=True, **kw):
    return sbx("run", "--rm", *args, check=check, **kw)


def import_image(sbx, tmp_path: Path, name: str, extra=(), changes=()) -> str:
    """A busybox userland plus ``extra`` entries, imported as ``name`` with Dockerfile-style ``changes``."""
    rootfs = tmp_path / f"{name.replace('/', '-').replace(':', '-')}.tar"
    rootfs.write_bytes(layer_tar(busybox_entries() + list(extra), add_parents=True))
    arguments = []
    for change in changes:
        arguments += ["--change", change]
    sbx("import", *arguments, rootfs, name)
    return name


def container_record(sbx, name: str):
    from sandbox.store.containers import ContainerStore

    return ContainerStore(sbx.data_home / "sbx" / "containers").resolve(name)


# -- 29: masked and read-only paths ----------------------------------------------------------------------------------

MASKED_FILES = ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug")
MASKED_DIRS = ("/proc/acpi", "/proc/scsi", "/sys/firmware")
READ_ONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus")

# one line per path: "PATH exists kind size-or-entries writable" (kind: f file, d dir, - missing)
_PROBE = r"""
for p in "$@"; do
  if [ -d "$p" ]; then k=d; n=$(ls -A "$p" | wc -l); t="$p/.sbx-probe"
  elif [ -e "$p" ]; then k=f; n=$(head -c 65536 "$p" 2>/dev/null | wc -c); t="$p"
  else echo "$p - 0 -"; continue; fi
  if [ "$k" = d ]; then (: > "$t") 2>/dev/null && w=writable || w=ro
  else (printf '' >> "$t") 2>/dev/null && w=writable || w=ro; fi
  echo "$p $k $n $w"
done
"""


def _probe(sbx, paths, *args):
    output = run(sbx, *args, "busybox", "sh", "-c", _PROBE, "probe", *paths).stdout
    return {line.split()[0]: line.split()[1:] for line in output.splitlines()}


def test_every_masked_path_is_empty_and_every_read_only_path_refuses_writes(busybox):
    """TESTPLAN 29: each path of the plan that the host kernel has is masked (a file reads nothing, a directory
    lists nothing) or read-only inside; a path the host lacks must not appear either."""
    found = _probe(busybox, MASKED_FILES + MASKED_DIRS + READ_ONLY)
    for path in MASKED_FILES:
        kind, size, _ = found[path]
        if os.path.exists(path):
            assert (kind, size) == ("f", "0"), f"{path} is not masked: {found[path]}"
        else:
            assert kind == "-", path
    for path in MASKED_DIRS:
        kind, entries, writable = found[path]
        if os.path.exists(path):
            assert (kind, entries, writable) == ("d", "0", "ro"), f"{path} is not masked: {found[path]}"
        else:
            assert kind == "-", path
    for path in READ_ONLY:
        if os.path.exists(path):
            assert found[path][0] != "-" and found[path][2] == "ro", f"{path} is writable: {found[path]}"


def test_every_cgroup_mount_is_read_only(busybox):
    """TESTPLAN 29: /sys/fs/cgroup and everything mounted below it is read-only, with its own sysfs and with the
    host's /sys alike."""
    script = "awk '$5 ~ \"^/sys/fs/cgroup\" {print $5, $6}' /proc/self/mountinfo"
    for network in ("none", "host"):
        lines = run(busybox, "--network", network, "busybox", "sh", "-c", script).stdout.splitlines()
        assert lines, f"--network {network}: nothing is mounted at /sys/fs/cgroup"
        for line in lines:
            target, options = line.split()
            assert "ro" in options.split(","), f"--network {network}: {target} is mounted {options}"
        writes = run(busybox, "--network", network, "busybox", "sh", "-c",
                     "(: > /sys/fs/cgroup/cgroup.procs) 2>/dev/null && echo wrote || echo refused; "
                     "mkdir /sys/fs/cgroup/sbx-probe 2>/dev/null && echo made || echo refused").stdout.split()
        assert writes == ["refused", "refused"], network


# -- 30: capabilities of pid 1 ---------------------------------------------------------------------------------------


def _capabilities(status: str) -> dict[str, int]:
    fields = dict(line.split(":", 1) for line in status.splitlines() if line.startswith("Cap"))
    return {name: int(value.strip(), 16) for name, value in fields.items()}


@pytest.mark.parametrize("options", [(), ("-u", "33:33"), ("--init",)])
def test_pid_1_has_no_inheritable_or_ambient_capabilities(busybox, options):
    """TESTPLAN 30 for `run` (exec is in test_exec.py): pid 1's CapInh and CapAmb are 0, so nothing it executes
    can regain a capability it dropped."""
    # `; true` keeps sh from exec'ing cat, so /proc/1 is the container's first process (or the init)
    status = run(busybox, *options, "busybox", "sh", "-c", "cat /proc/1/status; true").stdout
    caps = _capabilities(status)
    assert caps["CapInh"] == 0 and caps["CapAmb"] == 0, caps


# -- 31: devices and the file systems of a container -----------------------------------------------------------------


def test_devices_links_and_file_systems(busybox):
    """TESTPLAN 31: every device is a character device (not a file or a link to the host), the std* links point at
    the process's own fds, and /sys is a sysfs of its own."""
    devices = ("null", "zero", "full", "random", "urandom", "tty", "pts/ptmx")
    script = (
        "for d in " + " ".join(devices) + "; do stat -L -c '%n %F' /dev/$d; done; "
        "for l in ptmx fd stdin stdout stderr; do echo link /dev/$l $(readlink /dev/$l); done; "
        "awk '{print \"mount\", $5, $9}' /proc/self/mountinfo; "
        "echo null-reads $(head -c 10 /dev/null | wc -c); echo zero-reads $(head -c 10 /dev/zero | wc -c); "
        "(echo x > /dev/full) 2>/dev/null && echo full-accepts || echo full-refuses; "
        "echo stdout-works > /dev/stdout; echo stderr-works > /dev/stderr"
    )
    result = run(busybox, "busybox", "sh", "-c", script)
    lines = result.stdout.splitlines()
    for device in devices:
        assert f"/dev/{device} character special file" in lines, (device, lines)
    links = {parts[1]: parts[2] for parts in (line.split() for line in lines if line.startswith("link "))}
    assert links == {"/dev/ptmx": "pts/ptmx", "/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0",
                     "/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2"}
    mounts = {parts[1]: parts[2] for parts in (line.split() for line in lines if line.startswith("mount "))}
    assert mounts.get("/sys") == "sysfs" and mounts.get("/proc") == "proc"
    assert mounts.get("/dev") == "tmpfs" and mounts.get("/dev/pts") == "devpts" and mounts.get("/dev/shm") == "tmpfs"
    assert {"null-reads 0", "zero-reads 10", "full-refuses", "stdout-works"} <= set(lines)
    assert "stderr-works" in result.stderr


# -- 25: working directories that lead back out ----------------------------------------------------------------------

_FD_WORKDIRS = [f"/proc/self/fd/{n}" for n in (3, 4, 5, 6, 7, 8)] + ["//proc/self/fd/3", "/proc/self/cwd",
                                                                     "/proc/1/root/proc/self/fd/4"]


def test_an_image_workdir_under_proc_is_refused(sbx, tmp_path):
    """TESTPLAN 25 (runc CVE-2024-21626): an image whose WORKDIR is /proc/self/fd/N (an fd of sbx's that might be a
    host directory) never starts; neither does `exec -w` with such a directory."""
    for index, workdir in enumerate(_FD_WORKDIRS):
        image = import_image(sbx, tmp_path, f"evil/workdir{index}", changes=[f"WORKDIR {workdir}"])
        result = run(sbx, image, "/bin/busybox", "sh", "-c", "pwd; ls", check=False)
        assert result.returncode == 125, (workdir, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        # refused for what it is, not merely failing because fd N happened not to be a directory this time
        assert "refusing working directory" in result.stderr, (workdir, result.stderr)
        assert result.stdout == "", workdir
    sbx("run", "-d", "--name", "wd", "busybox", "sleep", "60")
    for workdir in _FD_WORKDIRS:
        result = sbx("exec", "-w", workdir, "wd", "/bin/busybox", "sh", "-c", "pwd; ls", check=False)
        assert result.returncode != 0 and result.stdout == "", (workdir, result.stdout)
        assert "Traceback" not in result.stderr and "refusing working directory" in result.stderr, result.stderr
    sbx("rm", "-f", "wd")


def test_an_image_workdir_that_is_a_symlink_into_proc_does_not_leave_the_root(sbx, tmp_path):
    """TESTPLAN 25: WORKDIR /work where the image made /work -> /proc/self/fd/N: either refused, or the process
    ends up in a directory of the container (its root's own /work target is not followed to an fd of sbx's)."""
    for n in (3, 4, 5, 6, 7):
        image = import_image(sbx, tmp_path, f"evil/wdlink{n}", extra=[("work", Symlink(f"/proc/self/fd/{n}"))],
                             changes=["WORKDIR /work"])
        result = run(sbx, image, "/bin/busybox", "sh", "-c", "readlink /proc/self/cwd; ls -a", check=False)
        if result.returncode == 0:
            cwd = result.stdout.splitlines()[0]
            assert cwd.startswith("/") and not cwd.startswith("/proc"), (n, result.stdout)
        else:
            assert result.returncode in (125, 126, 127), (n, result.stdout, result.stderr)
            assert "Traceback" not in result.stderr and result.stdout == "", (n, result.stdout)


# -- 26: the host's files and processes, from inside, during exec ----------------------------------------------------

# pid 1 replaces /etc/passwd with a FIFO: `sbx exec` reads it to find the user, so sbx's own process (in the
# container's pid namespace, not yet exec'ed) blocks there while pid 1 looks at every /proc/*/exe it can see and
# tries to read and write through it; then pid 1 feeds the FIFO and the exec goes on.
_EXE_SCAN = r"""
mv /etc/passwd /etc/passwd.real; mkfifo /etc/passwd; echo armed
i=0; found=
while [ $i -lt 400 ] && [ -z "$found" ]; do
  for p in /proc/[0-9]*; do
    [ "$(readlink $p/exe 2>/dev/null)" = /bin/busybox ] && continue
    [ -e $p/stat ] && found="$found ${p#/proc/}"
  done
  [ -z "$found" ] && sleep 0.05; i=$((i+1))
done
echo "foreign:$found"
for p in /proc/[0-9]*; do
  n=${p#/proc/}
  t=$(readlink $p/exe 2>/dev/null) && [ "$t" != /bin/busybox ] && echo "LEAK readlink $n $t"
  [ "$t" = /bin/busybox ] && continue
  head -c 4 $p/exe > /dev/null 2>&1 && echo "LEAK read-exe $n"
  (printf '' >> $p/exe) 2>/dev/null && echo "LEAK write-exe $n"
  head -c 1 $p/environ > /dev/null 2>&1 && [ -s $p/environ ] && echo "LEAK environ $n"
  ls $p/fd/ > /dev/null 2>&1 && echo "LEAK fds $n"
done
echo scanned
cat /etc/passwd.real > /etc/passwd
echo fed
sleep 60
"""


def test_sbx_exec_process_is_out_of_reach_while_it_is_inside(busybox):
    """TESTPLAN 26 (runc CVE-2019-5736): while sbx's exec process sits in the container's pid namespace (held
    there by a FIFO), the container's root can neither read nor write the host binary behind its /proc/PID/exe,
    nor read its environment or fds."""
    busybox("run", "-d", "--name", "scan", "busybox", "sh", "-c", _EXE_SCAN)
    assert wait_for(lambda: "armed" in busybox("logs", "scan").stdout)
    exec_process = busybox.popen("exec", "scan", "true")
    try:
        assert wait_for(lambda: "fed" in busybox("logs", "scan").stdout, timeout=40), busybox("logs", "scan").stdout
        assert exec_process.wait(timeout=30) == 0
    finally:
        exec_process.kill()
        exec_process.wait()
    log = busybox("logs", "scan").stdout
    foreign = next(line for line in log.splitlines() if line.startswith("foreign:")).split(":", 1)[1].split()
    assert foreign, "the exec process was never seen inside: the probe proved nothing"
    assert "LEAK" not in log, log
    assert "scanned" in log
    busybox("rm", "-f", "scan")


def test_host_paths_are_absent_inside(busybox):
    """TESTPLAN 26: the host's Python, sbx's package and the test's own files are not in the container's tree."""
    import sandbox

    paths = [os.path.dirname(sandbox.__file__), sys.executable, os.path.realpath(sys.executable), str(Path.home())]
    script = "for p in \"$@\"; do [ -e \"$p\" ] && echo \"present $p\"; done; true"
    assert run(busybox, "busybox", "sh", "-c", script, "probe", *paths).stdout == ""


# -- 33: private dirs and path-based sockets -------------------------------------------------------------------------


def _unix_sockets(pid: int) -> dict[str, str]:
    """socket inode → path ('' for an unnamed one, '@…' for an abstract one), as /proc/PID/net/unix lists them."""
    table = {}
    for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        table[fields[6]] = fields[7] if len(fields) > 7 else ""
    return table


def _socket_inodes(pids) -> set[str]:
    inodes = set()
    for pid in pids:
        try:
            names = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for name in names:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{name}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                fields = Path(f"/proc/{name}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(name))
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


@pytest.mark.parametrize("xdg_runtime_dir", ["set", "unset"])
def test_runtime_dirs_are_private_and_sockets_are_never_abstract(busybox, xdg_runtime_dir):
    """TESTPLAN 33: every socket the monitor (and what it runs on the host) holds is unnamed or a path, never an
    abstract name any process of the host's network namespace could connect to; the named ones are 0600 in dirs
    that are ours and 0700 up to the first dir that is not ours."""
    env = {"XDG_RUNTIME_DIR": ""} if xdg_runtime_dir == "unset" else None
    busybox("run", "-d", "--name", "sock", "busybox", "sleep", "60", env=env)
    monitor = container_record(busybox, "sock").monitor_pid
    assert monitor
    busybox("exec", "-d", "sock", "sleep", "30", env=env)  # an exec holder's sockets count too
    sockets = _unix_sockets(monitor)
    held = _socket_inodes(_descendants(monitor))
    named = {inode: sockets[inode] for inode in held if inode in sockets}
    assert [path for path in named.values() if path.startswith("@")] == []
    paths = sorted({path for path in named.values() if path})
    assert paths, "the monitor holds no path-named socket: where is the attach socket?"
    for path in map(Path, paths):
        info = path.lstat()
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600, (path, oct(info.st_mode))
        directory = path.parent
        while directory != directory.parent and directory.lstat().st_uid == os.getuid():
            mode = stat.S_IMODE(directory.lstat().st_mode)
            assert not stat.S_ISLNK(directory.lstat().st_mode) and mode == 0o700, (directory, oct(mode))
            directory = directory.parent
    for directory in (busybox.data_home / "sbx", busybox.data_home / "sbx" / "containers"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    busybox("rm", "-f", "sock", env=env)


# -- 34: programs of the image never run on the host -----------------------------------------------------------------

HOST_HELPER_NAMES = ("newuidmap", "newgidmap", "fuse-overlayfs", "fusermount", "fusermount3", "slirp4netns",
                     "pasta", "python3", "python", "sh", "bash", "tini", "catatonit", "unshare", "nsenter",
                     "mount", "umount", "ps", "id", "getent", "tar", "gzip", "zstd", "ip")


def test_programs_named_like_host_helpers_in_the_image_never_run_on_the_host(sbx, tmp_path):
    """TESTPLAN 34 (podman CVE-2022-1227): an image whose PATH starts with a dir of programs named like the helpers
    sbx runs; each leaves a mark in a host dir if it ever runs on the host side. No sbx command runs one."""
    marks = tmp_path / "marks"
    marks.mkdir()
    marks.chmod(0o777)
    fake = f"#!/bin/sh\necho \"$0 $*\" >> {marks}/ran-on-host-$$ 2>/dev/null\nexit 0\n"
    extra = [("evil", Dir())] + [(f"evil/{name}", File(fake, mode=0o755)) for name in HOST_HELPER_NAMES]
    image = import_image(sbx, tmp_path, "evil/helpers", extra=extra,
                         changes=["ENV PATH=/evil:/usr/sbin:/usr/bin:/sbin:/bin", 'CMD ["/bin/busybox", "true"]'])
    # the image's PATH does work inside: its `id` is the fake one (and writes nothing: the host dir is not there)
    assert run(sbx, image, "id").stdout == ""
    for driver in ("overlay", "fuse-overlayfs", "copy"):
        sbx("--storage-driver", driver, "run", "--rm", image, "/bin/busybox", "true")
    run(sbx, "--init", image, "/bin/busybox", "true")
    run(sbx, "-u", "33:33", "-w", "/tmp", image, "/bin/busybox", "true")
    sbx("run", "-d", "--name", "helpers", image, "/bin/busybox", "sleep", "60")
    sbx("exec", "helpers", "/bin/busybox", "true")
    sbx("exec", "-u", "33", "helpers", "/bin/busybox", "true")
    sbx("top", "helpers")
    sbx("logs", "helpers")
    sbx("inspect", "helpers")
    sbx("stop", "-t", "1", "helpers")
    sbx("start", "helpers")
    sbx("kill", "helpers")
    sbx("rm", "-f", "helpers")
    sbx("save", "-o", tmp_path / "saved.tar", image)
    sbx("rmi", image)
    sbx("load", "-i", tmp_path / "saved.tar")
    sbx("system", "check")
    sbx("system", "prune", "-a", "-f")
    assert sorted(p.name for p in marks.iterdir()) == []


def test_the_fake_helpers_do_mark_when_run_on_the_host(tmp_path):
    """The marker of test 34 works: the same script, run on the host, leaves its mark (so an empty dir means
    none ran, not that none could write)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    script = tmp_path / "fuse-overlayfs"
    script.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {marks}/ran-on-host-$$ 2>/dev/null\nexit 0\n")
    script.chmod(0o755)
    subprocess.run([str(script), "x"], check=True)
    assert len(list(marks.iterdir())) == 1
