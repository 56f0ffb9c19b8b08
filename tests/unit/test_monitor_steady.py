"""The detached monitor's steady state (monitor/steady.py), the pump it shares with every supervisor (monitor/pump.py),
its frame and log writer, and the hand-offs around it.

The loop tests fork a process that starts a plain /bin/sh "container" on pipes and runs the steady loop over them;
its finish is a probe interpreter that writes the words the loop handed on (and which of the passed fds are open),
so the whole life runs: pump, attach clients, input, SIGTERM, wait, the exec back. No namespaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from sandbox.monitor import attach, frames, logs, steady
from sandbox.monitor.handoff import conclude, handed
from sandbox.monitor.logwriter import LogWriter, encode_lines
from sandbox.runtime import console
from sandbox.store.containers import ContainerRecord, ContainerState, ContainerStore

PROBE = ("import sys,posix\n"
         "words=sys.argv[2:]\n"
         "fds=[int(x) for w in words if w.startswith(('clients=','listener='))\n"
         "     for x in w.split('=')[1].split(',') if x]\n"
         "def alive(fd):\n"
         "    try:\n        posix.fstat(fd)\n        return '1'\n    except OSError:\n        return '0'\n"
         "open(sys.argv[1],'w').write('\\n'.join(words+['open='+','.join(alive(fd) for fd in fds)]))\n")


# -- what the loop holds -----------------------------------------------------------------------------------------


def test_the_loop_imports_only_builtin_and_c_modules_beside_its_own_three():
    """B10: the loop runs for the container's whole life, so each module it imports is paid per container."""
    import subprocess

    parent = str(Path(steady.__file__).resolve().parents[2])
    program = "import sys;sys.path.append(sys.argv[1]);import sandbox.monitor.steady;print(' '.join(sys.modules))"
    bare = subprocess.run([sys.executable, "-I", "-S", "-c", "import sys;print(' '.join(sys.modules))"],
                          capture_output=True, text=True, check=True).stdout.split()
    loaded = subprocess.run([sys.executable, "-I", "-S", "-c", program, parent],
                            capture_output=True, text=True, check=True).stdout.split()
    added = set(loaded) - set(bare)
    assert added == {"sandbox", "sandbox.monitor", "sandbox.monitor.steady", "sandbox.monitor.pump",
                     "sandbox.monitor.frames", "sandbox.monitor.logwriter", "_json", "_socket", "select"}


def test_the_state_crosses_the_exec_as_words_and_comes_back_whole():
    state = {"pid": 12, "target": 13, "out": ["7:stdout", "9:stderr"], "master": None, "input": 5,
             "listener": 3, "clients": [], "log": "/data/with=equals, comma/ctr.log"}
    finish = ["/usr/bin/python3", "-I", "-S", "-c", "code", '{"id": "x"}', "--", "-1"]
    path, argv = steady.argv("/usr/bin/python3", "sbx (the container monitor)", "/site", state, finish)
    assert path == "/usr/bin/python3" and argv[:6] == ["sbx (the container monitor)", "-I", "-S", "-c", steady.BOOT,
                                                       "/site"]
    parsed, back = steady.parse(argv[6:])
    assert back == finish
    assert parsed == {"pid": "12", "target": "13", "out": "7:stdout,9:stderr", "master": "", "input": "5",
                      "listener": "3", "clients": "", "log": "/data/with=equals, comma/ctr.log"}
    assert handed(["exit=137", "clients=4,6", "listener=3"]) == {"exit": "137", "clients": "4,6", "listener": "3"}


# -- the frame and the log line: one definition, the same bytes as before ------------------------------------------


def test_the_attach_module_speaks_the_frames_module():
    data = b"x" * (frames.MAX_PAYLOAD + 10)
    assert attach.encode_data(attach.STDOUT, data) == frames.encode_data(frames.STDOUT, data)
    assert attach.encode(attach.EXIT, b"{}") == b"\x06\x00\x00\x00\x02{}"
    buffer = bytearray(frames.encode(frames.STDIN, b"abc") + frames.encode(frames.DETACH)[:3])
    assert frames.split(buffer) == [(frames.STDIN, b"abc")] and bytes(buffer) == b"\x03\x00\x00"
    with pytest.raises(ValueError):
        frames.split(bytearray(b"\x7f\x00\x00\x00\x00"))
    with pytest.raises(ValueError):
        frames.split(bytearray(b"\x01\xff\xff\xff\xff"))


@pytest.mark.parametrize("code", [0, 137, None])
def test_exit_payload_is_what_json_writes(code):
    assert frames.exit_payload(code) == json.dumps({"code": code}).encode()


def test_resize_parsing_needs_no_json_module_and_refuses_what_json_refused():
    assert frames.parse_resize(json.dumps({"rows": 24, "cols": 80}).encode()) == (24, 80)
    assert frames.parse_resize(b'{"cols":80,"rows":24}') == (24, 80)
    for bad in (b"[]", b'{"rows": 24}', b'{"rows": -1, "cols": 80}', b'{"rows": 70000, "cols": 80}',
                b'{"rows": "24", "cols": 80}', b'{"rows": 1.5, "cols": 80}', b"\xff"):
        with pytest.raises(ValueError):
            frames.parse_resize(bad)


HOSTILE = [b"plain\n", b'quote " back \\ slash\n', b"tab\tnul\x00bell\x07\n", b"\xff\xfe invalid\n",
           "line sep \u2028 emoji \U0001f600\n".encode(), b"cr\r\nlf\n", b"partial"]


def test_log_lines_are_what_json_dumps_wrote():
    """The lean writer's bytes are exactly those of the json.dumps it replaced (`sbx logs`, Docker's readers)."""
    stamp = logs.format_time(1795900248.5)
    for data in HOSTILE:
        expected = b"".join(json.dumps({"log": line.decode("utf-8", "replace"), "stream": "stderr", "time": stamp},
                                       ensure_ascii=False).encode() + b"\n" for line in data.splitlines(keepends=True))
        assert encode_lines("stderr", data, stamp) == expected
    assert logs.LogWriter is LogWriter


# -- the loop, in-process: never blocked by a client -----------------------------------------------------------------


def _loop(tmp_path, out_fd, **state):
    return steady.Loop({"pid": "1", "target": "1", "out": f"{out_fd}:stdout", "log": str(tmp_path / "ctr.log"),
                        **state})


def test_a_client_that_stops_reading_is_dropped_and_the_log_still_gets_everything(tmp_path):
    out_r, out_w = os.pipe()
    loop = _loop(tmp_path, out_r)
    ours, theirs = socket.socketpair()  # theirs never reads
    loop.clients[ours.fileno()] = frames.Client(ours)
    chunk = b"y" * 60000 + b"\n"
    written = 0
    while ours.fileno() in loop.clients and written < 4 * frames.CLIENT_BUFFER_LIMIT:
        os.write(out_w, chunk)
        assert loop._read_output(out_r)
        written += len(chunk)
    assert ours.fileno() not in loop.clients
    assert written <= frames.CLIENT_BUFFER_LIMIT + 4 * 1024 * 1024  # dropped near the limit, not at the end
    loop.log.close()
    assert sum(1 for _ in logs.read_logs(tmp_path / "ctr.log")) == written // len(chunk)
    theirs.close()
    os.close(out_w)


def test_a_client_of_another_uid_or_over_the_limit_is_refused(tmp_path, monkeypatch):
    out_r, out_w = os.pipe()
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "a.sock"))
    server.listen(8)
    loop = _loop(tmp_path, out_r, listener=str(server.detach()))
    first = socket.socket(socket.AF_UNIX)
    first.connect(str(tmp_path / "a.sock"))
    loop.uid = os.getuid() + 1  # as if every peer were another user
    loop._accept()
    assert loop.clients == {}
    loop.uid = os.getuid()
    monkeypatch.setattr(frames, "CLIENT_LIMIT", 1)
    second, third = socket.socket(socket.AF_UNIX), socket.socket(socket.AF_UNIX)
    second.connect(str(tmp_path / "a.sock"))
    third.connect(str(tmp_path / "a.sock"))
    loop._accept()
    assert len(loop.clients) == 1
    for sock in (first, second, third):
        sock.close()
    os.close(out_w)


def test_resize_sets_the_pty_size(tmp_path):
    master, slave = os.openpty()
    loop = _loop(tmp_path, master, master=str(master))
    loop._apply(-1, [(frames.RESIZE, b'{"rows": 33, "cols": 101}')])
    assert console.get_window_size(slave) == (33, 101)
    loop._apply(-1, [(frames.RESIZE, b'{"rows": "x"}')])  # nonsense changes nothing and breaks nothing
    assert console.get_window_size(slave) == (33, 101)
    os.close(slave)
    os.close(master)


# -- the loop's whole life, forked -------------------------------------------------------------------------------


@pytest.fixture
def groups():
    """Process groups of forked loops (each with its container): killed whatever the test did."""
    started: list[int] = []
    yield started
    for group in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(group, 0)


def _start(tmp_path: Path, groups: list[int], script: str, *, stdin: bool = False):
    """Fork the steady loop over a /bin/sh ``script`` that starts once the gate is written; (loop pid, gate fd)."""
    sock_path = tmp_path / "attach.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    server.listen(8)
    gate_r, gate_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe() if stdin else (os.open(os.devnull, os.O_RDONLY), None)
    loop_pid = os.fork()
    if loop_pid == 0:
        try:
            os.setpgid(0, 0)
            os.close(gate_w)
            child = os.fork()
            if child == 0:
                os.dup2(in_r, 0)
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                os.read(gate_r, 1)
                os.execv("/bin/sh", ["sh", "-c", script])
            for fd in (gate_r, out_w, err_w, in_r):
                os.close(fd)
            state = {"pid": str(child), "target": str(child), "out": f"{out_r}:stdout,{err_r}:stderr",
                     "input": str(in_w) if in_w is not None else "", "master": "",
                     "listener": str(server.fileno()), "clients": "", "log": str(tmp_path / "ctr.log")}
            steady.Loop(state).run(finish=[sys.executable, "-I", "-S", "-c", PROBE, str(tmp_path / "finish")])
        finally:
            os._exit(1)
    groups.append(loop_pid)
    server.close()
    for fd in (gate_r, out_r, out_w, err_r, err_w, in_r, in_w):
        if fd is not None:
            os.close(fd)
    return loop_pid, gate_w, sock_path


def _finished(tmp_path: Path, loop_pid: int, timeout: float = 30.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while os.waitpid(loop_pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(loop_pid, signal.SIGKILL)
            os.waitpid(loop_pid, 0)
            pytest.fail("the steady loop did not finish")
        time.sleep(0.01)
    return handed((tmp_path / "finish").read_text().splitlines())


def _client(path: Path, loop_pid: int) -> socket.socket:
    """A client the loop has accepted (its socket is among the loop's fds), so it misses no output."""
    before = _sockets(loop_pid)
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(path))
    sock.settimeout(10)
    deadline = time.monotonic() + 10
    while _sockets(loop_pid) <= before:
        assert time.monotonic() < deadline, "the loop did not accept the client"
        time.sleep(0.01)
    return sock


def _sockets(pid: int) -> int:
    count = 0
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:")
    return count


def _frames_until(sock: socket.socket, wanted: bytes) -> list[tuple[int, bytes]]:
    buffer, seen = bytearray(), []
    while not any(wanted in payload for _, payload in seen):
        data = sock.recv(65536)
        assert data, f"closed before {wanted!r}: {seen}"
        buffer += data
        seen += frames.split(buffer)
    return seen


def test_the_loop_logs_serves_a_client_and_hands_the_exit_and_its_fds_on(tmp_path, groups):
    loop_pid, gate, path = _start(tmp_path, groups, "echo out; echo err >&2; read line; exit 3", stdin=True)
    client = _client(path, loop_pid)
    client.sendall(frames.encode(frames.STDIN, b"typed\n"))  # accepted before the gate opens: input is kept
    os.write(gate, b"g")
    seen = _frames_until(client, b"err")
    assert (frames.STDOUT, b"out\n") in seen and (frames.STDERR, b"err\n") in seen
    words = _finished(tmp_path, loop_pid)
    assert words["exit"] == "3"
    assert words["clients"] != ""
    assert words["open"] == "1,1"  # the client and the listener reached the finish open
    entries = [(entry.stream, entry.text) for entry in logs.read_logs(tmp_path / "ctr.log")]
    assert entries == [("stdout", "out\n"), ("stderr", "err\n")]
    client.close()
    os.close(gate)


def test_input_end_closes_the_stdin_pipe(tmp_path, groups):
    loop_pid, gate, path = _start(tmp_path, groups, "cat; echo done", stdin=True)
    client = _client(path, loop_pid)
    client.sendall(frames.encode(frames.STDIN, b"abc") + frames.encode(frames.STDIN))  # then the end of input
    os.write(gate, b"g")
    _frames_until(client, b"done")
    assert _finished(tmp_path, loop_pid)["exit"] == "0"
    assert "".join(entry.text for entry in logs.read_logs(tmp_path / "ctr.log")) == "abcdone\n"
    client.close()
    os.close(gate)


def test_sigterm_is_forwarded_to_the_command(tmp_path, groups):
    loop_pid, gate, path = _start(tmp_path, groups, "trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done")
    client = _client(path, loop_pid)
    os.write(gate, b"g")
    _frames_until(client, b"ready")
    os.kill(loop_pid, signal.SIGTERM)
    assert _finished(tmp_path, loop_pid)["exit"] == "7"
    client.close()
    os.close(gate)


def test_a_detach_drops_only_that_client(tmp_path, groups):
    loop_pid, gate, path = _start(tmp_path, groups, "echo one; read x; echo two", stdin=True)
    leaving = _client(path, loop_pid)
    staying = _client(path, loop_pid)
    os.write(gate, b"g")
    _frames_until(staying, b"one")
    leaving.sendall(frames.encode(frames.DETACH))
    while leaving.recv(65536):  # the loop closes it: EOF
        pass
    staying.sendall(frames.encode(frames.STDIN, b"go\n"))
    _frames_until(staying, b"two")
    words = _finished(tmp_path, loop_pid)
    assert words["exit"] == "0" and "," not in words["clients"]  # one client handed on, not two
    for sock in (leaving, staying):
        sock.close()
    os.close(gate)


# -- the finish: what the full code does with what the loop handed on -------------------------------------------


def test_conclude_records_the_exit_removes_the_socket_and_tells_the_clients(tmp_path):
    store_root = tmp_path / "containers"
    store = ContainerStore(store_root)
    container_id = "c" * 64
    store.create(ContainerRecord(id=container_id, name="c", image="busybox", image_id="sha256:" + "b" * 64,
                                 command=("true",), created=time.time(), spec={}))
    store.update(container_id, state=ContainerState.RUNNING, pid=os.getpid())
    sock_path = tmp_path / "run" / "attach.sock"
    sock_path.parent.mkdir()
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock_path))
    listener.listen(1)
    ours, theirs = socket.socketpair()
    removed = []
    conclude(store_root, container_id, store.dir(container_id), removed.append,
             {"exit": "42", "clients": str(ours.detach()), "listener": str(listener.detach())}, socket_path=sock_path)
    record = store.get(container_id)
    assert (record.state, record.exit_code) == (ContainerState.EXITED, 42)
    theirs.settimeout(5)
    reader = attach.FrameReader()
    got = reader.feed(theirs.recv(65536))
    assert [(frame.type, attach.parse_exit(frame)) for frame in got] == [(attach.EXIT, 42)]
    assert not sock_path.exists() and removed == []  # not --rm


def test_an_adopted_slirp4netns_is_stopped_at_the_end_of_its_exit_pipe_and_reaped(tmp_path):
    """The finish stops a helper it did not start (monitor/network.adopt): the exit pipe's write end closed, the
    child reaped, the helper's files removed."""
    import subprocess

    from sandbox.monitor import network

    exit_r, exit_w = os.pipe()
    helper = subprocess.Popen(["cat"], stdin=exit_r, stdout=subprocess.DEVNULL)  # exits at EOF, as slirp4netns
    os.close(exit_r)
    for name in ("slirp4netns.log", "slirp4netns.sock"):
        (tmp_path / name).write_text("")
    attachment = network.adopt({"mode": "slirp4netns", "runtime_dir": str(tmp_path), "pid": helper.pid,
                                "exit_fd": exit_w})
    child = attachment.backend.process
    network.stop(attachment)
    assert child.returncode == 0  # it read EOF: not killed after the bound
    with pytest.raises(ChildProcessError):
        os.waitpid(helper.pid, os.WNOHANG)  # reaped
    assert list(tmp_path.iterdir()) == []
    helper.returncode = 0  # Popen must not wait for it again


def test_nothing_handed_means_no_helper():
    from sandbox.monitor import network

    assert network.handed(None) is None and network.adopt(None) is None
