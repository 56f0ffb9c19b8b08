"""Start a container process from a :class:`ContainerSpec` and wait for it.

Two processes, speaking :mod:`sandbox.runtime.sync` (the sequence, every message, is drawn there): the parent (the
monitor) and the container's pid 1, which the parent makes with ``clone(CLONE_NEWUSER | CLONE_NEWPID)`` (see
:func:`_create`), so that it is born pid 1 of a new pid namespace in a new user namespace, and the parent is its
real parent: it waits for pid 1 itself, and pid 1's PDEATHSIG kills the container when the parent dies. pid 1
says READY and unshares the mount, UTS, IPC (and network) namespaces while the parent writes its id maps and
places it in its cgroup (GO), becomes root there, unshares the cgroup namespace, has the network helper started
(NETNS, NETWORK), then
goes on as stage 2: mounts, pivot_root, sethostname, lo up, the pty, the user, then the process plan of
:mod:`sandbox.runtime.plan` (session, tty, ids, privileges, fds, chdir, rlimits, execvpe). The parent knows pid
1's host pid from clone; no PID message.

With ``--network container:ID`` the child must join that container's user namespace (and then its network
namespace) instead of making one, and no maps are written (see :mod:`sandbox.network.modes`); a cloned child cannot
(:func:`_create`), so that mode keeps a stage 1: forked, it joins, unshares the rest with a new pid namespace, forks
pid 1, sends its PID, and waits for it, exiting with its code.

Namespace work happens in children of a single-threaded process: ``clone``/``unshare(CLONE_NEWUSER)`` refuse a
threaded one. The socket is close-on-exec, so a successful exec closes pid 1's end without a word; an error report
names what failed and sets the exit code (125 for sbx's own failures, 126 not executable, 127 not found, as Docker).

With a tty the pty comes from the container's own devpts instance, never the host's: a pty's slave has a name
(/dev/pts/N) only where its instance is mounted, and the container mounts a new instance at /dev/pts (see
:func:`console.open_pty`). So pid 1 opens it after pivot_root, makes the slave its controlling terminal and stdio,
and passes the master to the parent over the sync socket; ``Started.master_fd`` is that master. With a stage 1, its
PID and pid 1's PTY may arrive in either order: two processes write to one socket.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from pathlib import Path

from sandbox.errors import NamespaceError, SyncError
from sandbox.exitcodes import CANNOT_RUN
from sandbox.runtime import reap
from sandbox.runtime.spec import ContainerSpec
from sandbox.runtime.sync import (
    Channel,
    Kind,
    Started,
    child_handshake,
    parent_handshake,
    received_master,
    start_failure,
)

_PASSWD_LIMIT = 4 * 1024 * 1024


def start(
    spec: ContainerSpec, container_dir: Path, kernel, *, stdio: tuple[int, int, int] | None = None,
    network=None, close_in_child: tuple[int, ...] = (),
) -> Started:
    """Make the container's pid 1; returns once it exists (it may still fail before exec: see :func:`wait`).

    ``kernel`` (a :class:`sandbox.kernel.KernelAPI`) makes every kernel call of pid 1 (and of stage 1), and of its
    plan; its ``clone`` makes pid 1, so the caller must be single-threaded.

    ``stdio`` (ignored with a tty): three fds that become the container's 0, 1 and 2 instead of the caller's own;
    the caller keeps and closes them. ``close_in_child``: fds of the caller that the child must not hold (the write
    end of the container's stdin pipe: while the child held it, closing it would never give the container EOF).

    ``network`` (:class:`sandbox.network.attach.Attachment`, or None for none and host): the namespaces to join
    (``container:ID``), or the helper to start once pid 1 has made the network namespace (the "netns" step);
    the caller stops that helper when the container ends or fails to start.
    """
    from sandbox.runtime.usermaps import helpers_for, map_ids

    helpers = helpers_for(spec.idmap)
    from sandbox.runtime import privileges

    # compiled here, while libseccomp and the policy files are in reach (pid 1 loads it after pivot_root)
    plan = privileges.prepare(spec.security, privileges.cache_dir(container_dir.parent.parent))
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    master_fd = None
    if spec.process.tty:
        stdio = None
    joining = bool(getattr(network, "join", None))
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = _create(kernel, joining)
    except BaseException:
        parent_sock.close()
        child_sock.close()
        raise
    if pid == 0:  # pid 1 (or, joining, stage 1)
        parent_sock.close()
        for fd in close_in_child:
            os.close(fd)
        code = CANNOT_RUN
        channel = _channel(child_sock, "sbx")
        try:
            if joining:
                code = _stage1(spec, container_dir, kernel, channel, stdio, plan, network)
            else:
                _init(spec, container_dir, kernel, channel, stdio, plan, network)  # execs, or raises
        except BaseException as error:  # report and leave: never return into the parent's code
            reported = channel.send_error(error)
            code = code if joining else reported
        finally:
            os._exit(code)
    child_sock.close()
    channel = _channel(parent_sock, "the container process")

    def write_maps(ready) -> dict[str, int] | None:
        # its cgroup and limits, before pid 1 makes its cgroup namespace (or stage 1 forks pid 1) after GO: placed
        # (imports too) while the id-map helpers run, as pid 1's READY is awaited; container:ID: stage 1 joined a
        # user namespace whose maps are written already
        def meanwhile() -> None:
            from sandbox.cgroups.tree import place

            if ready is not None:
                ready()
            place(spec.limits, spec.id, container_dir, pid)

        if joining:
            meanwhile()
            return None
        return map_ids(pid, spec.idmap, helpers, meanwhile=meanwhile)

    try:
        parent_handshake(channel, write_maps, 30, born=not joining,
                         closed="the container process exited before creating its namespaces")
        container_pid = pid if not joining else None  # stage 1 sends pid 1's (PID)
        network_pending = bool(getattr(network, "needs_setup", False))
        while container_pid is None or network_pending or (spec.process.tty and master_fd is None):
            kinds = (Kind.PID,) if container_pid is None else ()
            kinds += (Kind.NETNS,) if network_pending else ()
            kinds += (Kind.PTY,) if spec.process.tty and master_fd is None else ()
            message = channel.expect(kinds, 60, closed="the container process exited before starting")
            if message["type"] == Kind.PID:
                container_pid = _pid(message)
            elif message["type"] == Kind.PTY:
                master_fd = received_master(message)
            else:  # NETNS: the helper joins pid 1's namespaces (its user and network ones), before anything runs
                network.setup(pid)
                network_pending = False
                channel.send(Kind.NETWORK)
    except BaseException:
        reap.kill(pid)
        channel.close()  # with any fd that came and was never claimed
        if master_fd is not None:
            os.close(master_fd)
        raise
    return Started(pid, container_pid, channel, master_fd)


def wait(started: Started) -> int:
    """Wait for the container to exit; its exit code, or ContainerStartError if it failed before exec."""
    code = reap.exit_code(started.stage1)
    try:
        report = started.channel.recv(1)  # nothing but an ERROR: an exec closes the socket without a word
    except (TimeoutError, OSError, ValueError):
        report = None
    finally:
        started.channel.close()
    if report is not None and report.get("type") == Kind.ERROR:
        raise start_failure(report)
    return code


def _channel(sock: socket.socket, peer: str, exit_code: int = CANNOT_RUN) -> Channel:
    """A sync channel whose reported errors come back as :class:`ContainerStartError` with ``exit_code`` unless
    they carry their own."""
    return Channel(sock, peer, lambda message: start_failure(message, exit_code))


def _pid(message: dict) -> int:
    pid = message.get("pid")
    if type(pid) is not int or pid <= 0:
        raise SyncError("the container process sent a malformed message", reason="malformed")
    return pid


# -- making the child: pid 1 by clone, or (joining another container's user namespace) stage 1 by fork ----------------


def _create(kernel, joining: bool) -> int:
    """The container's first process; its pid in the parent, 0 in the child.

    Made by ``clone(CLONE_NEWUSER | CLONE_NEWPID)`` (:meth:`sandbox.kernel.KernelAPI.clone`, whose contract the
    single-threaded monitor meets): the child is already pid 1 of its pid namespace, in its own user namespace, and
    the monitor is its real parent, so pid 1's PDEATHSIG fires when the monitor dies and the monitor waits for pid 1
    itself. No process of sbx stays beside the container but the monitor.

    ``joining`` (``--network container:ID``): the child must enter that container's user namespace, which a child
    born in a new one cannot (setns into a sibling user namespace needs CAP_SYS_ADMIN there), and an unprivileged
    caller cannot make a pid namespace outside a new user namespace. So that mode keeps the two processes: stage 1,
    forked, joins the namespaces, unshares the rest (a new pid namespace among them) and forks pid 1, then waits for
    it for the container's whole life, exiting with its code.
    """
    if joining:
        return os.fork()
    from sandbox.kernel import constants as k
    from sandbox.runtime.usermaps import USERNS_HINT

    try:
        return kernel.clone(k.CLONE_NEWUSER | k.CLONE_NEWPID)
    except OSError as error:
        raise NamespaceError(f"cannot create a user namespace: {error.strerror}", hint=USERNS_HINT) from None


def _init(spec: ContainerSpec, container_dir: Path, kernel, channel, stdio: tuple[int, int, int] | None,
          plan, network=None) -> None:
    """pid 1, cloned in its new user and pid namespaces: its maps, then the other namespaces, then stage 2."""
    from sandbox.kernel import constants as k
    from sandbox.runtime.usermaps import become_root

    # until GO the parent's death shows as the channel closing; stage 2 sets it again once the ids are root's
    # (a change of the effective uid clears it)
    kernel.prctl(k.PR_SET_PDEATHSIG, signal.SIGKILL)
    failed: list[BaseException] = []

    def meanwhile() -> None:
        _stage2_imports()
        # born in its user namespace, pid 1 holds every capability there already: these namespaces need no map,
        # so they are made while the parent writes them (a network namespace costs the kernel ~0.5 ms). The cgroup
        # namespace waits for GO: its root is the cgroup the parent is placing pid 1 in meanwhile.
        try:
            kernel.unshare(_own_namespaces(spec))
        except BaseException as error:  # told after GO, where the parent listens for pid 1's failures
            failed.append(error)

    become_root(kernel, child_handshake(channel, 60, meanwhile=meanwhile))
    if failed:
        raise failed[0]
    _namespaces(kernel, channel, network, k.CLONE_NEWCGROUP)
    _stage2(spec, container_dir, kernel, channel, stdio, plan)  # execs, or raises


def _stage2_imports() -> None:
    """What stage 2 imports (the mounts, the user, the terminal, the process plan), imported while the parent writes
    the id maps rather than after GO, where it would delay every start (BENCHMARKS B1). The monitor leaves to this
    whatever it had not imported when GO came (:data:`sandbox.service.monitoring.WARM`)."""
    import fcntl  # noqa: F401 - used by _loopback_up after pivot_root
    import struct  # noqa: F401 - used by _loopback_up after pivot_root

    from sandbox.runtime import console, identity, mounts, plan, rootfs  # noqa: F401


def _own_namespaces(spec: ContainerSpec) -> int:
    """The namespaces a container makes for itself besides its user, pid and cgroup ones: mount, UTS, IPC and,
    unless joined or host, network."""
    from sandbox.kernel import constants as k
    from sandbox.network.modes import new_netns

    return k.CLONE_NEWNS | k.CLONE_NEWUTS | k.CLONE_NEWIPC | (k.CLONE_NEWNET if new_netns(spec.network) else 0)


def _namespaces(kernel, channel, network, flags: int) -> None:
    """As root in the user namespace: unshare ``flags`` (the cgroup namespace among them, whose root is the cgroup
    the parent placed this process in before GO); then, when a helper must join the container's new network
    namespace, NETNS and wait for it."""
    kernel.unshare(flags)
    if getattr(network, "needs_setup", False):
        channel.send(Kind.NETNS)
        channel.expect(Kind.NETWORK, 60)


def _stage1(spec: ContainerSpec, container_dir: Path, kernel, channel, stdio: tuple[int, int, int] | None,
            plan, network=None) -> int:
    """``--network container:ID`` only (see :func:`_create`): join, unshare the rest, fork pid 1, wait for it."""
    from sandbox.kernel import constants as k
    from sandbox.runtime.usermaps import become_root

    kernel.prctl(k.PR_SET_PDEATHSIG, signal.SIGKILL)
    network.enter(kernel)  # its user namespace, then its network namespace
    become_root(kernel, child_handshake(channel, 60, meanwhile=_stage2_imports))
    _namespaces(kernel, channel, network, _own_namespaces(spec) | k.CLONE_NEWCGROUP | k.CLONE_NEWPID)
    pid = os.fork()
    if pid == 0:  # stage 2: pid 1
        code = CANNOT_RUN
        try:
            _stage2(spec, container_dir, kernel, channel, stdio, plan)  # execs, or raises
        except BaseException as error:
            code = channel.send_error(error)
        finally:
            os._exit(code)
    # stage 1 must not hold the caller's pipes open: their reader waits for EOF
    for fd in {fd for fd in stdio or () if fd > 2}:
        with contextlib.suppress(OSError):
            os.close(fd)
    channel.send(Kind.PID, pid=pid)
    channel.close()
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(number, signal.SIG_IGN)  # the parent signals pid 1 directly
    return reap.exit_code(pid)


# -- stage 2: the container's pid 1 -------------------------------------------------------------------------------


def _stage2(spec: ContainerSpec, container_dir: Path, kernel, channel, stdio: tuple[int, int, int] | None,
            plan) -> None:
    # Everything stage 2 imports must be imported before pivot_root: afterwards the host's Python library is
    # out of reach, as it should be (TESTPLAN 26): _stage2_imports ran while the maps were written.
    from sandbox.kernel import constants as k
    from sandbox.network.modes import new_netns
    from sandbox.runtime import plan as process_plan
    from sandbox.runtime.console import open_pty
    from sandbox.runtime.identity import resolve_identity
    from sandbox.runtime.mounts import apply_mounts, init_args, plan_mounts
    from sandbox.runtime.rootfs import mount_rootfs
    from sandbox.runtime.sync import send_pty

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
        spare=(channel.sock.fileno(),), limits=spec.limits, exit_code=CANNOT_RUN,
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
