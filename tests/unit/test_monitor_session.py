"""The supervisor engine (report socket, error mapping) and the exec holder, on a plain /bin/sh: no namespaces.

The holder tests spawn a real detached holder whose ``start()`` forks a shell on a new pty the way
``enter.start`` does (session leader, controlling terminal, a close-on-exec sync socket), so they exercise the
double fork, the held start, the attach socket, detaching and the EXIT frame without entering a container.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import stat
import termios
import time
from pathlib import Path

import pytest

from sandbox.errors import ContainerNotRunning, ContainerStartError, SbxError
from sandbox.monitor import attach, exec_holder
from sandbox.monitor.session import Names, read_answer
from sandbox.runtime import console
from sandbox.runtime.sync import Channel, Kind, Started, as_start_error, start_failure

NAMES = Names("the test supervisor", "the thing")
CONTAINER_ID = "ab" * 32


# -- the report socket ------------------------------------------------------------------------------------------


def report_with(data: bytes, *, keep_open: bool = False):
    """The reading end of a report socket holding ``data`` (the writing end closed unless ``keep_open``)."""
    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    writer.sendall(data)
    if not keep_open:
        writer.close()
    return Channel(reader, NAMES.supervisor, start_failure), writer


def test_read_answer_after_listening_calls_on_listening():
    called = []
    channel, _ = report_with(b'{"type": "listening"}\n{"type": "running", "pid": 5, "monitor": 6}\n')
    try:
        assert read_answer(channel, 1, NAMES, lambda: called.append(True)) == {"pid": 5, "monitor": 6}
        assert called == [True]
    finally:
        channel.close()


def test_a_start_that_failed_while_sbx_connected_is_told_rather_than_the_missing_socket():
    """The supervisor starts while sbx connects; one whose start failed meanwhile has removed its socket, and its
    ERROR, not the connection's failure, is what sbx tells."""
    error = b'{"type": "error", "class": "NamespaceError", "message": "newuidmap failed (exit 1)", "exit_code": 125}\n'
    channel, _ = report_with(b'{"type": "listening"}\n' + error)

    def connect() -> None:
        raise attach.AttachError("cannot reach the container's attach socket /run/x: No such file or directory")

    try:
        with pytest.raises(ContainerStartError, match="newuidmap failed"):
            read_answer(channel, 1, NAMES, connect)
    finally:
        channel.close()


def test_a_connection_refused_by_a_supervisor_that_goes_on_is_told_as_such():
    channel, _ = report_with(b'{"type": "listening"}\n')

    def connect() -> None:
        raise attach.AttachError("refusing the attach socket /run/x: it is served by uid 0, not 1000")

    try:
        with pytest.raises(attach.AttachError, match="refusing"):
            read_answer(channel, 1, NAMES, connect)
    finally:
        channel.close()


def test_read_answer_closed_without_a_line():
    channel, _ = report_with(b"")
    try:
        with pytest.raises(ContainerStartError, match="the test supervisor exited before the thing started") as gone:
            read_answer(channel, 1, NAMES)
        assert gone.value.exit_code == 125
    finally:
        channel.close()


@pytest.mark.parametrize("data", [
    b"[1, 2]\n", b"not json\n", b"x" * (70 * 1024), b'{"type": "nonsense"}\n',
    b'{"type": "running", "pid": "5", "monitor": 6}\n', b'{"type": "running", "pid": -1, "monitor": 6}\n',
])
def test_read_answer_refuses_malformed(data):
    channel, _ = report_with(data)
    try:
        with pytest.raises(ContainerStartError, match="the test supervisor sent a malformed message"):
            read_answer(channel, 1, NAMES)
    finally:
        channel.close()


def test_read_answer_refuses_listening_nobody_asked_for():
    channel, _ = report_with(b'{"type": "listening"}\n')
    try:
        with pytest.raises(ContainerStartError, match="the test supervisor sent listening instead of running"):
            read_answer(channel, 1, NAMES)
    finally:
        channel.close()


def test_read_answer_times_out():
    channel, writer = report_with(b"", keep_open=True)
    try:
        with pytest.raises(ContainerStartError, match="the test supervisor did not answer within 0 seconds"):
            read_answer(channel, 0.1, NAMES)
    finally:
        channel.close()
        writer.close()


def test_read_answer_raises_the_reported_error():
    channel, _ = report_with(b'{"type": "error", "message": "nope", "exit_code": 127, "hint": "look"}\n')
    try:
        with pytest.raises(ContainerStartError, match="nope") as failed:
            read_answer(channel, 1, NAMES)
        assert failed.value.exit_code == 127 and failed.value.hint == "look"
    finally:
        channel.close()


def test_start_error_keeps_codes():
    exec_failure = ContainerStartError("exec failed", exit_code=126)
    assert as_start_error(exec_failure) is exec_failure
    stopped = as_start_error(ContainerNotRunning("the container is no longer running", exit_code=1))
    assert (stopped.message, stopped.exit_code) == ("the container is no longer running", 1)
    plain = as_start_error(SbxError("bad spec", hint="fix it"))
    assert (plain.exit_code, plain.hint) == (125, "fix it")
    missing = as_start_error(FileNotFoundError(2, "No such file or directory", "/x"))
    assert (missing.message, missing.exit_code) == ("No such file or directory: /x", 125)
    assert as_start_error(ValueError("odd")).message == "ValueError: odd"


# -- the exec holder --------------------------------------------------------------------------------------------


def test_socket_path_is_random_and_beside_the_attach_socket(tmp_path):
    first = exec_holder.socket_path(tmp_path, CONTAINER_ID)
    second = exec_holder.socket_path(tmp_path, CONTAINER_ID)
    assert first != second
    assert first.parent == attach.socket_path(tmp_path, CONTAINER_ID).parent
    assert first.name.startswith("exec-") and first.name.endswith(".sock")
    assert len(first.name) - len(attach.SOCKET_NAME) <= 9


def shell(script: str, *, fail: dict | None = None):
    """A ``start()`` like ``enter.start``'s: ``sh -c script`` on a new pty, or a child that reports ``fail``."""

    def start() -> Started:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        master, slave = os.openpty()
        os.set_inheritable(master, False)
        pid = os.fork()
        if pid == 0:
            try:
                parent.close()
                os.close(master)
                os.setsid()
                fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
                for target in (0, 1, 2):
                    os.dup2(slave, target)
                if fail is not None:
                    Channel(child).send(Kind.ERROR, **fail)
                    os._exit(fail["exit_code"])
                os.execv("/bin/sh", ["sh", "-c", script])  # the sync socket is close-on-exec: EOF tells "exec'ed"
            finally:
                os._exit(127)
        child.close()
        os.close(slave)
        return Started(pid, pid, Channel(parent), master)

    return start


@pytest.fixture
def holders(tmp_path):
    """spawn(start) → ExecSession; every command still running at the end is killed."""
    sessions: list[exec_holder.ExecSession] = []
    runtime_root = tmp_path / "run"

    def spawn(start):
        session = exec_holder.spawn(runtime_root, CONTAINER_ID, start, timeout=20)
        sessions.append(session)
        return session

    spawn.directory = attach.socket_path(runtime_root, CONTAINER_ID).parent
    yield spawn
    for session in sessions:
        session.sock.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(session.pid, signal.SIGKILL)


def collect(sock: socket.socket, send: bytes = b"", timeout: float = 20) -> tuple[bytes, int | None]:
    """Send ``send``, then read frames until EXIT: (the output, the exit code)."""
    sock.settimeout(timeout)
    if send:
        sock.sendall(send)
    reader = attach.FrameReader()
    output = b""
    while True:
        data = sock.recv(65536)
        if not data:
            return output, None
        for frame in reader.feed(data):
            if frame.type == attach.STDOUT:
                output += frame.payload
            elif frame.type == attach.EXIT:
                return output, attach.parse_exit(frame)


def sockets(directory: Path) -> list[Path]:
    try:
        return sorted(directory.glob("exec-*.sock"))
    except FileNotFoundError:  # the last holder removes the directory, maybe while it is being listed
        return []


def wait_until(predicate, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_a_quick_command_loses_no_output_and_gives_its_code(holders):
    session = holders(shell("echo early; exit 3"))
    assert session.holder_pid != os.getpid() and session.pid > 0
    output, code = collect(session.sock)
    assert output.replace(b"\r\n", b"\n") == b"early\n" and code == 3
    assert wait_until(lambda: not holders.directory.exists())  # socket and emptied directory removed


def test_the_socket_is_private_while_the_command_runs(holders):
    session = holders(shell("read line; exit 0"))
    (path,) = sockets(holders.directory)
    assert stat.S_IMODE(path.lstat().st_mode) == 0o600
    assert stat.S_IMODE(holders.directory.stat().st_mode) == 0o700
    output, code = collect(session.sock, attach.encode(attach.STDIN, b"\n"))
    assert code == 0


def test_detach_leaves_the_command_running_and_unblocked(holders, tmp_path):
    done = tmp_path / "done"
    # 2 MB through the pty while nobody is attached: the holder drops it, so the command is never blocked
    session = holders(shell(f"stty -echo; read line; head -c 2000000 /dev/zero; touch {done}; read line; exit 7"))
    session.sock.sendall(attach.encode(attach.STDIN, b"go\n") + attach.encode(attach.DETACH))
    assert wait_until(lambda: session.sock.recv(65536) == b"")  # the holder let this client go
    assert wait_until(done.exists, timeout=20)
    os.kill(session.pid, 0)  # detaching hung nothing up
    (path,) = sockets(holders.directory)
    again = attach.connect(path)  # the holder still serves: attach again and finish the command
    try:
        _, code = collect(again, attach.encode_json(attach.RESIZE, {"rows": 7, "cols": 9})
                               + attach.encode(attach.STDIN, b"\n"))
    finally:
        again.close()
    assert code == 7
    assert wait_until(lambda: not sockets(holders.directory))


def test_resize_reaches_the_pty(holders):
    session = holders(shell("read line; stty size"))
    output, code = collect(session.sock, attach.encode_json(attach.RESIZE, {"rows": 33, "cols": 101})
                           + attach.encode(attach.STDIN, b"\n"))
    assert b"33 101" in output and code == 0


def test_a_resize_sent_just_before_closing_is_applied_while_output_flows(holders):
    """The API's resize connects, sends RESIZE and closes: output written to it meanwhile fails (EPIPE), and the
    frame it left must still be applied before the client is dropped."""
    session = holders(shell("while :; do echo tick; done"))
    (path,) = sockets(holders.directory)
    terminal = os.open(f"/proc/{session.pid}/fd/1", os.O_RDWR | os.O_NOCTTY)  # the pty's slave end
    try:
        for rows in range(10, 60):
            once = attach.connect(path)
            once.sendall(attach.encode_json(attach.RESIZE, {"rows": rows, "cols": 77}))
            once.close()
            assert wait_until(lambda size=(rows, 77): console.get_window_size(terminal) == size, timeout=5), rows
    finally:
        os.close(terminal)


def test_an_exec_failure_is_the_spawn_error(holders):
    failure = {"message": 'exec: "nope": executable file not found in $PATH', "exit_code": 127, "hint": None}
    with pytest.raises(ContainerStartError, match="executable file not found") as raised:
        holders(shell("", fail=failure))
    assert raised.value.exit_code == 127
    assert wait_until(lambda: not holders.directory.exists())


def test_a_start_that_raises_reaches_sbx_with_its_code(holders):
    def stopped():
        raise ContainerNotRunning("the container is no longer running", exit_code=1)

    with pytest.raises(ContainerNotRunning, match="no longer running") as raised:
        holders(stopped)
    assert raised.value.exit_code == 1

    def not_executable():
        raise ContainerStartError("cannot enter working directory /x: No such file or directory", exit_code=126)

    with pytest.raises(ContainerStartError) as refused:
        holders(not_executable)
    assert refused.value.exit_code == 126
    assert wait_until(lambda: not holders.directory.exists())


def test_a_neighbour_socket_keeps_the_directory(holders):
    holders.directory.parent.mkdir(mode=0o700)  # the runtime root must be private (test_runtime_dir.py)
    holders.directory.mkdir(mode=0o700)
    neighbour = attach.listen(holders.directory / attach.SOCKET_NAME)  # the container's own attach.sock
    try:
        session = holders(shell("exit 0"))
        assert collect(session.sock)[1] == 0
        assert wait_until(lambda: not sockets(holders.directory))
        assert (holders.directory / attach.SOCKET_NAME).exists()
    finally:
        neighbour.close()
