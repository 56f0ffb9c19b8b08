"""The container's terminal: a pty master handed over the sync socket (SCM_RIGHTS), and the checks on both ends."""

from __future__ import annotations

import os
import socket
import termios

import pytest

from sandbox.errors import ContainerStartError
from sandbox.runtime import console, sync
from sandbox.runtime.sync import Kind


@pytest.fixture
def channels():
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    sender, receiver = sync.Channel(left), sync.Channel(right)
    yield sender, receiver
    sender.close()
    receiver.close()


def _same_file(a: int, b: int) -> bool:
    first, second = os.fstat(a), os.fstat(b)
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def test_an_fd_rides_on_its_message_and_is_the_same_open_file(channels):
    sender, receiver = channels
    read_end, write_end = os.pipe()
    try:
        sender.send(Kind.PTY, fds=[write_end])
        message = receiver.recv(1)
        assert message["type"] == "pty"
        (received,) = message["fds"]
        assert received not in (read_end, write_end) and _same_file(received, write_end)
        assert not os.get_inheritable(received)  # MSG_CMSG_CLOEXEC: an exec in the receiver does not leak it
        os.write(received, b"through the copy")
        os.close(received)
        assert os.read(read_end, 100) == b"through the copy"
    finally:
        os.close(read_end)
        os.close(write_end)


def test_fds_go_with_their_own_message_in_order(channels):
    sender, receiver = channels
    pipes = [os.pipe() for _ in range(2)]
    try:
        sender.send(Kind.PID, pid=7)
        sender.send(Kind.PTY, fds=[pipes[0][1]])
        sender.send(Kind.NETNS)
        sender.send(Kind.PTY, fds=[pipes[1][1]])
        assert receiver.recv(1) == {"type": "pid", "pid": 7}
        first = receiver.recv(1)
        assert receiver.recv(1) == {"type": "netns"}
        second = receiver.recv(1)
        assert _same_file(first["fds"][0], pipes[0][1]) and _same_file(second["fds"][0], pipes[1][1])
        assert receiver.fds == []
        for fd in first["fds"] + second["fds"]:
            os.close(fd)
    finally:
        for pair in pipes:
            for fd in pair:
                os.close(fd)


def test_a_message_announcing_fds_it_did_not_bring_is_refused(channels):
    sender, receiver = channels
    sender.sock.sendall(b'{"type": "pty", "fds": 1}\n')
    with pytest.raises(ValueError, match="fds"):
        receiver.recv(1)


def test_unclaimed_fds_are_closed_with_the_channel():
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    sender, receiver = sync.Channel(left), sync.Channel(right)
    read_end, write_end = os.pipe()
    sender.send(Kind.PTY, fds=[write_end])
    os.close(write_end)
    sender.sock.shutdown(socket.SHUT_WR)
    # read the line's bytes but never hand out the message: the fd waits in the channel
    receiver.sock.settimeout(1)
    chunk, fds = receiver._receive()
    receiver.fds += fds
    assert chunk and len(receiver.fds) == 1
    receiver.close()
    sender.close()
    assert os.read(read_end, 1) == b""  # the last write end is gone
    os.close(read_end)


def test_received_master_takes_one_terminal_and_closes_the_rest():
    master, slave = os.openpty()
    read_end, write_end = os.pipe()
    try:
        taken = sync.received_master({"type": "pty", "fds": [os.dup(master)]})
        assert os.isatty(taken)
        os.close(taken)
        extra = os.dup(write_end)
        with pytest.raises(ContainerStartError, match="terminal"):
            sync.received_master({"type": "pty", "fds": [extra]})  # a pipe is no terminal
        with pytest.raises(OSError):
            os.fstat(extra)  # closed, not leaked
        with pytest.raises(ContainerStartError):
            sync.received_master({"type": "pty"})
    finally:
        for fd in (master, slave, read_end, write_end):
            os.close(fd)


def test_send_pty_sends_the_master_and_keeps_the_slave(channels):
    sender, receiver = channels
    made = {}

    def fake_open_pty(devpts, size):
        made["devpts"], made["size"] = devpts, size
        made["pair"] = os.openpty()
        return made["pair"]

    slave = sync.send_pty(sender, fake_open_pty, size=(24, 80))
    try:
        assert made["devpts"] == "/dev/pts" and made["size"] == (24, 80) and slave == made["pair"][1]
        with pytest.raises(OSError):
            os.fstat(made["pair"][0])  # the sender's own copy of the master is closed (its copy is in flight)
        master = sync.received_master(receiver.recv(1))
        os.write(master, b"typed\n")
        assert os.read(slave, 100) == b"typed\n"  # the master that arrived drives the slave that stayed
        os.close(master)
    finally:
        os.close(slave)


def test_send_pty_failure_is_a_start_error_with_the_given_code(channels):
    sender, _ = channels

    def no_devpts(devpts, size):
        raise FileNotFoundError(2, "No such file or directory")

    with pytest.raises(ContainerStartError, match="cannot open a terminal in the container's /dev/pts") as caught:
        sync.send_pty(sender, no_devpts, exit_code=126)
    assert caught.value.exit_code == 126


# --- console.open_pty against real files -----------------------------------------------------------------------------


def test_open_pty_refuses_what_is_not_a_pty_master(tmp_path):
    (tmp_path / "ptmx").write_text("")
    with pytest.raises(OSError) as caught:
        console.open_pty(str(tmp_path))
    assert caught.value.errno == 25  # ENOTTY: TIOCGPTN answers only on a pty master


def test_open_pty_does_not_hang_on_a_fifo(tmp_path):
    os.mkfifo(tmp_path / "ptmx")  # a blocking open of a fifo nobody writes would wait forever
    with pytest.raises(OSError):
        console.open_pty(str(tmp_path))


def test_open_pty_does_not_follow_a_symlink(tmp_path):
    (tmp_path / "ptmx").symlink_to("/dev/ptmx")
    with pytest.raises(OSError):
        console.open_pty(str(tmp_path))


@pytest.mark.skipif(not os.path.exists("/dev/pts/ptmx"), reason="no devpts at /dev/pts")
def test_open_pty_gives_a_named_pair_of_that_devpts():
    try:
        master, slave = console.open_pty("/dev/pts")
    except PermissionError:
        pytest.skip("/dev/pts/ptmx is not usable here (ptmxmode=000)")
    try:
        name = os.ttyname(slave)
        assert name.startswith("/dev/pts/") and os.path.exists(name)
        assert os.readlink(f"/proc/self/fd/{slave}") == name
        assert not os.get_inheritable(master) and not os.get_inheritable(slave)
        assert os.get_blocking(master)
        os.write(master, b"ping\n")
        assert os.read(slave, 100) == b"ping\n"  # unlocked, and the slave is the master's peer
        attrs = termios.tcgetattr(slave)
        assert attrs is not None
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.skipif(not os.path.exists("/dev/pts/ptmx"), reason="no devpts at /dev/pts")
def test_open_pty_sets_the_size_before_anyone_reads_it():
    try:
        master, slave = console.open_pty("/dev/pts", (31, 97))
    except PermissionError:
        pytest.skip("/dev/pts/ptmx is not usable here (ptmxmode=000)")
    try:
        assert os.get_terminal_size(slave) == os.terminal_size((97, 31))
    finally:
        os.close(master)
        os.close(slave)


# --- the devpts mount of the plan -------------------------------------------------------------------------------------


def _devpts_options(idmap) -> str:
    from sandbox.runtime.mounts import plan_mounts
    from sandbox.runtime.rootfs import RootfsPlan
    from sandbox.runtime.spec import ContainerSpec, Process

    spec = ContainerSpec(id="c" * 64, rootfs=RootfsPlan("copy", "/layers", ("a/diff",), copy="/ctr/rootfs"),
                         process=Process(args=("/bin/sh",), env=(), tty=True), idmap=idmap, hostname="web",
                         etc_files={"/etc/hostname": "web\n"})
    (devpts,) = [op for op in plan_mounts(spec, "/root", "/ctr") if op.target == "/dev/pts"]
    return devpts.data


def test_devpts_gets_the_tty_group_only_where_the_namespace_maps_it():
    from sandbox.runtime.idmap import IdMap, IdRange

    ranges = (IdRange(0, 1000, 1), IdRange(1, 100000, 65536))
    subordinate = IdMap(ranges, ranges)
    assert _devpts_options(subordinate) == "newinstance,ptmxmode=0666,mode=0620,gid=5"
    single = IdMap((IdRange(0, 1000, 1),), (IdRange(0, 1000, 1),))
    assert _devpts_options(single) == "newinstance,ptmxmode=0666,mode=0620"  # gid=5 would fail the mount
