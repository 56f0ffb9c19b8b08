"""Start a container process from a :class:`ContainerSpec` and wait for it.

The process tree and the sync protocol (one JSON object per line over a socketpair, :class:`userns.Channel`)::

    sbx (parent)                      stage 1 (forked)                     stage 2 = pid 1 of the container
    ------------                      ----------------                     --------------------------------
    socketpair, fork ─────────────►   unshare(CLONE_NEWUSER)
                                ◄───  {"type": "ready"}
    newuidmap/newgidmap PID ...
    (single map: stage 1 writes
     its own); its cgroup, limits,
     PID into cgroup.procs      ───►  {"type": "go", "own_maps": ...}
                                      become root of the namespace
                                      unshare(NS|PID|UTS|IPC|CGROUP[|NET])
    slirp4netns, pasta: start   ◄───  {"type": "netns"}
    the helper (network.setup)  ───►  {"type": "network"}
                                      fork ───────────────────────────►    make / private, mount the rootfs,
                                ◄───  {"type": "pid", "pid": HOSTPID}      /proc /dev /sys, volumes, masks;
                                      waitpid(stage 2), exit with its      sethostname; pivot_root; lo up;
                                      status (128+N for a signal)          [-t: a pty from /dev/pts/ptmx,
                                ◄─────────────────────────────────────     {"type": "pty"} + the master (SCM_RIGHTS)]
                                                                           user from the image's /etc/passwd;
                                                                           the process plan (runtime/plan.py:
                                                                           session, tty, ids, privileges, fds,
                                                                           chdir, rlimits, execvpe)
                                ◄─────────────────────────────────────    on failure: {"type": "error", ...}
    forward signals (or proxy a pty) to HOSTPID, waitpid(stage 1)

With ``--network container:ID`` stage 1 joins that container's user namespace (and then its network namespace)
instead of making one, and no maps are written (see :mod:`sandbox.network.modes`).

Namespace work happens in forked children of a single-threaded process: ``unshare(CLONE_NEWUSER)`` refuses a
threaded one, and a new pid namespace only applies to children, which is why stage 2 exists. The socket is
close-on-exec, so a successful exec closes stage 2's end without a word; an error report names what failed and
sets the exit code (125 for sbx's own failures, 126 not executable, 127 not found, as Docker does).

With a tty the pty comes from the container's own devpts instance, never the host's: a pty's slave has a name
(/dev/pts/N) only where its instance is mounted, and the container mounts a new instance at /dev/pts (see
:func:`console.open_pty`). So pid 1 opens it after pivot_root, makes the slave its controlling terminal and stdio,
and passes the master to sbx over the sync socket; ``Started.master_fd`` is that master. "pid" (from stage 1) and
"pty" (from stage 2) may arrive in either order: two processes write to one socket.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from sandbox.errors import ContainerStartError, NamespaceError, SbxError
from sandbox.exitcodes import CANNOT_RUN as EXIT_SBX
from sandbox.runtime.spec import ContainerSpec

_PASSWD_LIMIT = 4 * 1024 * 1024


@dataclass
class Started:
    stage1: int
    container_pid: int
    channel: object
    master_fd: int | None


def start(
    spec: ContainerSpec, container_dir: Path, kernel, *, stdio: tuple[int, int, int] | None = None,
    network=None, close_in_child: tuple[int, ...] = (),
) -> Started:
    """Fork the container; returns once its pid 1 exists (it may still fail before exec: see :func:`wait`).

    ``kernel`` (a :class:`sandbox.kernel.KernelAPI`) makes every kernel call of both stages, and of pid 1's plan.

    ``stdio`` (ignored with a tty): three fds that become the container's 0, 1 and 2 instead of the caller's own;
    the caller keeps and closes them. ``close_in_child``: fds of the caller that stage 1 must not hold (the write
    end of the container's stdin pipe: while stage 1 held it, closing it would never give the container EOF).

    ``network`` (:class:`sandbox.network.attach.Attachment`, or None for none and host): the namespaces to join
    (``container:ID``), or the helper to start once stage 1 has made the network namespace (the "netns" step);
    the caller stops that helper when the container ends or fails to start.
    """
    from sandbox.runtime.userns import Channel, find_helper, write_maps

    helpers = {} if spec.idmap.single else {name: find_helper(name) for name in ("newuidmap", "newgidmap")}
    from sandbox.runtime import privileges

    # compiled here, while libseccomp and the policy files are in reach (pid 1 loads it after pivot_root)
    plan = privileges.prepare(spec.security, privileges.cache_dir(container_dir.parent.parent))
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    master_fd = None
    if spec.process.tty:
        stdio = None
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # stage 1
        parent_sock.close()
        for fd in close_in_child:
            os.close(fd)
        code = EXIT_SBX
        try:
            code = _stage1(spec, container_dir, kernel, Channel(child_sock), stdio, plan, network)
        except BaseException as error:  # report and leave: never return into the parent's code
            report_error(Channel(child_sock), error)
        finally:
            os._exit(code)
    child_sock.close()
    channel = Channel(parent_sock)
    try:
        message = channel.recv(30)
        if message is None or message.get("type") != "ready":
            raise start_failure(message, "the container process exited before creating its namespaces")
        own_maps = None
        if getattr(network, "join", None):
            pass  # stage 1 joined a user namespace whose maps are written already
        elif spec.idmap.single:
            own_maps = {"uid": spec.idmap.uids[0].host_id, "gid": spec.idmap.gids[0].host_id}
        else:
            write_maps(pid, spec.idmap, helpers, None)
        from sandbox.cgroups.tree import place

        place(spec.limits, spec.id, container_dir, pid)  # its cgroup and limits: pid 1, forked after "go", inherits
        channel.send({"type": "go", "own_maps": own_maps})
        container_pid = None
        while container_pid is None or (spec.process.tty and master_fd is None):
            message = channel.recv(60)
            kind = message.get("type") if message is not None else None
            if kind == "pid" and container_pid is None:
                container_pid = int(message["pid"])
            elif kind == "pty" and spec.process.tty and master_fd is None:
                master_fd = received_master(message)
            elif kind == "netns" and network is not None and container_pid is None:
                network.setup(pid)  # the helper joins stage 1's namespaces; pid 1 is forked only after this
                channel.send({"type": "network"})
            else:
                raise start_failure(message, "the container process exited before starting")
    except BaseException:
        _reap(pid)
        parent_sock.close()
        if master_fd is not None:
            os.close(master_fd)
        raise
    return Started(pid, container_pid, channel, master_fd)


def wait(started: Started) -> int:
    """Wait for the container to exit; its exit code, or ContainerStartError if it failed before exec."""
    code = exit_code_of(started.stage1)
    report = None
    try:
        report = started.channel.recv(1)
    except (TimeoutError, OSError, ValueError):
        report = None
    finally:
        started.channel.close()
    if report is not None and report.get("type") == "error":
        raise start_failure(report, "the container failed to start")
    return code


def start_failure(report, fallback: str, default_code: int = EXIT_SBX) -> SbxError:
    """The error a child reported over the sync socket (or ``fallback`` when it died without a word)."""
    if not report or report.get("type") != "error":
        return ContainerStartError(fallback, exit_code=default_code)
    return ContainerStartError(
        str(report.get("message") or fallback), exit_code=int(report.get("exit_code") or default_code),
        hint=report.get("hint") if isinstance(report.get("hint"), str) else None,
    )


def report_error(channel, error: BaseException, default_code: int = EXIT_SBX) -> int:
    """Send an error to sbx over the sync socket; returns the exit code the child should leave with."""
    exit_code = getattr(error, "exit_code", None) or default_code
    if isinstance(error, SbxError):
        message, hint = error.message, error.hint
    elif isinstance(error, OSError):
        message, hint = f"{error.strerror or error}" + (f": {error.filename}" if error.filename else ""), None
    else:
        message, hint = f"{type(error).__name__}: {error}", None
    with contextlib.suppress(OSError):
        channel.send({"type": "error", "message": message, "hint": hint, "exit_code": exit_code})
    return exit_code


def send_pty(channel, open_pty, devpts: str = "/dev/pts", exit_code: int = EXIT_SBX,
             size: tuple[int, int] | None = None) -> int:
    """Make a pty of the devpts at ``devpts`` (``open_pty`` is :func:`console.open_pty`, imported by the caller
    while the host's library is still in reach), send its master over ``channel`` as ``{"type": "pty"}``, and
    return the slave, of ``size`` (rows, columns) when known; the master is closed here once the other end holds its
    copy."""
    try:
        master, slave = open_pty(devpts, size)
    except (OSError, ValueError) as error:
        raise ContainerStartError(
            f"cannot open a terminal in the container's {devpts}: {getattr(error, 'strerror', None) or error}",
            exit_code=exit_code,
            hint="the container's /dev/pts must be its own devpts mount (run without -t to do without a terminal)",
        ) from None
    try:
        channel.send({"type": "pty"}, fds=[master])
    except BaseException:
        os.close(slave)
        raise
    finally:
        os.close(master)
    return slave


def received_master(message: dict) -> int:
    """The pty master a ``{"type": "pty"}`` message carried; the caller owns it. Anything else it carried is closed."""
    fds = message.get("fds") if isinstance(message.get("fds"), list) else []
    master = fds[0] if len(fds) == 1 and os.isatty(fds[0]) else None
    for fd in fds:
        if fd != master:
            os.close(fd)
    if master is None:
        raise ContainerStartError("the container's terminal did not arrive over the sync socket")
    return master


def _reap(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


# -- stage 1: the user namespace, then the others, then pid 1 --------------------------------------------------------


def _stage1(spec: ContainerSpec, container_dir: Path, kernel, channel, stdio: tuple[int, int, int] | None,
            plan, network=None) -> int:
    from sandbox.kernel import constants as k
    from sandbox.network.modes import new_netns
    from sandbox.runtime.nsjob import become_root, write_own_maps

    kernel.prctl(k.PR_SET_PDEATHSIG, signal.SIGKILL)
    try:
        if getattr(network, "join", None):
            network.enter(kernel)  # container:ID: its user namespace, then its network namespace
        else:
            kernel.unshare(k.CLONE_NEWUSER)
    except OSError as error:
        from sandbox.runtime.userns import USERNS_HINT

        raise NamespaceError(f"cannot create a user namespace: {error.strerror}", hint=USERNS_HINT) from None
    channel.send({"type": "ready"})
    go = channel.recv(60)
    if go is None or go.get("type") != "go":
        return EXIT_SBX
    if go.get("own_maps"):
        write_own_maps(int(go["own_maps"]["uid"]), int(go["own_maps"]["gid"]))
    become_root()
    flags = k.CLONE_NEWNS | k.CLONE_NEWPID | k.CLONE_NEWUTS | k.CLONE_NEWIPC | k.CLONE_NEWCGROUP
    if new_netns(spec.network):
        flags |= k.CLONE_NEWNET
    kernel.unshare(flags)
    if getattr(network, "needs_setup", False):
        channel.send({"type": "netns"})
        answer = channel.recv(60)
        if answer is None or answer.get("type") != "network":
            return EXIT_SBX
    pid = os.fork()
    if pid == 0:  # stage 2: pid 1
        code = EXIT_SBX
        try:
            _stage2(spec, container_dir, kernel, channel, stdio, plan)  # execs, or raises
        except BaseException as error:
            code = getattr(error, "exit_code", None) or EXIT_SBX
            report_error(channel, error)
        finally:
            os._exit(code)
    # stage 1 must not hold the caller's pipes open: their reader waits for EOF
    for fd in {fd for fd in stdio or () if fd > 2}:
        with contextlib.suppress(OSError):
            os.close(fd)
    channel.send({"type": "pid", "pid": pid})
    channel.close()
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(number, signal.SIG_IGN)  # the parent signals pid 1 directly
    return exit_code_of(pid)


# -- stage 2: the container's pid 1 -------------------------------------------------------------------------------


def _stage2(spec: ContainerSpec, container_dir: Path, kernel, channel, stdio: tuple[int, int, int] | None,
            plan) -> None:
    # Everything stage 2 imports must be imported before pivot_root: afterwards the host's Python library is
    # out of reach, as it should be (TESTPLAN 26).
    import fcntl  # noqa: F401 - used by _loopback_up after pivot_root
    import struct  # noqa: F401 - used by _loopback_up after pivot_root

    from sandbox.kernel import constants as k
    from sandbox.network.modes import new_netns
    from sandbox.runtime import plan as process_plan
    from sandbox.runtime.console import open_pty
    from sandbox.runtime.identity import resolve_identity
    from sandbox.runtime.mounts import apply_mounts, init_args, plan_mounts
    from sandbox.runtime.rootfs import mount_rootfs

    kernel.prctl(k.PR_SET_PDEATHSIG, signal.SIGKILL)
    if stdio is not None:
        _install_stdio(stdio)
    kernel.mount(None, "/", None, k.MS_REC | k.MS_PRIVATE)
    root = str(container_dir / "mnt")
    mount_rootfs(kernel, spec.rootfs, root)
    apply_mounts(kernel, plan_mounts(spec, root, str(container_dir)), root)
    kernel.sethostname(spec.hostname)
    kernel.chdir(root)
    kernel.pivot_root(".", ".")  # the old root ends up stacked on top of the new one; detach it
    kernel.umount2(".", k.MNT_DETACH)
    kernel.chdir("/")
    if new_netns(spec.network):
        _loopback_up()
    # the container's own devpts is at /dev/pts now: its ptmx makes a pty whose slave is named there
    slave_fd = send_pty(channel, open_pty, size=spec.process.console_size) if spec.process.tty else None
    identity = resolve_identity(spec.process.user, read_small("/etc/passwd"), read_small("/etc/group"))
    process = process_plan.Process(
        # --init: pid 1 is the init bound at /dev/init, never this host process (its memory, environment, exe)
        args=tuple(init_args(spec.process.args)) if spec.init else tuple(spec.process.args),
        env=spec.process.env, identity=identity, privileges=plan, cwd=spec.process.cwd,
        set_groups=not spec.idmap.single, terminal=slave_fd,
        # without -i the container gets no stdin, as with Docker
        stdin="/dev/null" if not spec.process.stdin and stdio is None else None,
        spare=(channel.sock.fileno(),), limits=spec.limits, exit_code=EXIT_SBX,
    )
    process_plan.execute(kernel, process_plan.build(process))  # execs, or raises


def _install_stdio(stdio: tuple[int, int, int]) -> None:
    """Make the given fds 0, 1 and 2 (through copies above 2, so that one landing on another's slot is safe)."""
    import fcntl

    copies = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) for fd in stdio]
    for target, copy in enumerate(copies):
        os.dup2(copy, target)  # inheritable: exec keeps them
    for copy in copies:
        os.close(copy)


def exit_code_of(pid: int) -> int:
    """Wait for the child ``pid`` and give its exit code as a shell would: its status, or 128+N for signal N."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def read_small(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, _PASSWD_LIMIT).decode("utf-8", "replace")
    finally:
        os.close(fd)


def _loopback_up() -> None:
    """Bring up `lo` in the new network namespace (SIOCGIFFLAGS / SIOCSIFFLAGS on a datagram socket)."""
    import fcntl
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))
