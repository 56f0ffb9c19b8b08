"""sandbox.runtime.sync: every message kind, every way a step can go wrong, the one error encoding, fds, the
map-then-go handshake; the other end is hostile (a child runs in namespaces a container controls)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading

import pytest

from sandbox import errors
from sandbox.errors import ContainerStartError, NamespaceError, SbxError, SyncError, UnsafeLayer
from sandbox.runtime import sync
from sandbox.runtime.sync import Channel, Kind


@pytest.fixture
def pair():
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    parent, child = Channel(left, "the child"), Channel(right, "the parent")
    yield parent, child
    parent.close()
    child.close()


def _raw(channel: Channel, data: bytes) -> None:
    channel.sock.sendall(data)


@pytest.mark.parametrize("kind", [kind for kind in Kind if kind != Kind.ERROR])
def test_every_kind_round_trips_with_its_fields(pair, kind):
    parent, child = pair
    child.send(kind, pid=42, note="x")
    assert parent.expect(kind, 1) == {"type": kind.value, "pid": 42, "note": "x"}


def test_expect_takes_any_of_several_kinds(pair):
    parent, child = pair
    child.send(Kind.PTY)
    child.send(Kind.PID, pid=7)
    assert parent.expect((Kind.PID, Kind.PTY), 1)["type"] == Kind.PTY
    assert parent.expect((Kind.PID, Kind.PTY), 1)["pid"] == 7


def test_a_field_cannot_change_the_kind(pair):
    parent, child = pair
    child.send(Kind.READY, type="error")
    assert parent.expect(Kind.READY, 1) == {"type": "ready"}


def test_wrong_kind(pair):
    parent, child = pair
    child.send(Kind.PID, pid=1)
    with pytest.raises(SyncError, match="the child sent pid instead of ready") as caught:
        parent.expect(Kind.READY, 1, closed="unused")
    assert caught.value.reason == "unexpected" and caught.value.exit_code == 125


def test_eof(pair):
    parent, child = pair
    child.close()
    with pytest.raises(SyncError, match="the child exited before sending go") as caught:
        parent.expect(Kind.GO, 1)
    assert caught.value.reason == "closed"


def test_eof_with_the_step_s_own_words(pair):
    parent, child = pair
    child.close()
    with pytest.raises(SyncError, match="^the container process exited before starting$"):
        parent.expect(Kind.PID, 1, closed="the container process exited before starting")


def test_eof_in_the_middle_of_a_line(pair):
    parent, child = pair
    _raw(child, b'{"type": "rea')
    child.close()
    with pytest.raises(SyncError) as caught:
        parent.expect(Kind.READY, 1)
    assert caught.value.reason == "closed"


def test_timeout(pair):
    parent, _child = pair
    with pytest.raises(SyncError, match="the child did not answer within 0 seconds") as caught:
        parent.expect(Kind.READY, 0.05)
    assert caught.value.reason == "timeout"


def test_a_trickling_sender_cannot_stretch_the_timeout(pair):
    parent, child = pair
    stop = threading.Event()

    def trickle():
        with contextlib.suppress(OSError):
            for _ in range(100):  # one byte at a time, each well within the timeout, never a whole line
                if stop.wait(0.02):
                    return
                _raw(child, b" ")
            child.sock.shutdown(socket.SHUT_WR)  # then the end: a per-read timeout would only see this

    sender = threading.Thread(target=trickle)
    sender.start()
    try:
        with pytest.raises(SyncError) as caught:
            parent.expect(Kind.READY, 0.2)
        assert caught.value.reason == "timeout"
    finally:
        stop.set()
        sender.join()


@pytest.mark.parametrize("line", [
    b"not json\n",
    b"[1, 2]\n",
    b'"ready"\n',
    b'{"type": "launch-missiles"}\n',
    b'{"no": "type"}\n',
    b'{"type": ["ready"]}\n',
    b'{"type": {"ready": 1}}\n',
    b'{"type": "ready", "fds": 1}\n',  # announces an fd that never came
    b'{"type": "ready", "fds": "1"}\n',
    b"\xff\xfe\n",
])
def test_malformed_messages_are_refused(pair, line):
    parent, child = pair
    _raw(child, line)
    with pytest.raises(SyncError, match="the child sent a malformed message") as caught:
        parent.expect(Kind.READY, 1)
    assert caught.value.reason == "malformed"


def test_an_oversized_message_is_refused_without_reading_on(pair):
    parent, child = pair
    def flood():
        with contextlib.suppress(OSError):  # the reader gives up first
            _raw(child, b'{"type": "ready", "pad": "' + b"x" * (4 * sync.LINE_LIMIT))

    sender = threading.Thread(target=flood)
    sender.start()
    try:
        with pytest.raises(SyncError, match="malformed"):
            parent.expect(Kind.READY, 5)
        assert len(parent.buffer) <= sync.LINE_LIMIT + 4096  # it stopped reading at the limit
    finally:
        parent.sock.shutdown(socket.SHUT_RDWR)
        sender.join()


def test_an_oversized_line_arriving_whole_is_refused(pair):
    parent, _child = pair
    parent.buffer = b'{"type": "ready", "pad": "' + b"x" * sync.LINE_LIMIT + b'"}\n'
    with pytest.raises(SyncError, match="malformed"):
        parent.expect(Kind.READY, 1)


# -- fds --------------------------------------------------------------------------------------------------------------


# (an fd riding on its message, in order, close-on-exec: tests/unit/test_pty_passing.py)


def test_fds_of_a_message_of_the_wrong_kind_are_closed(pair):
    parent, child = pair
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)  # a write end left open fails the read instead of hanging it
    child.send(Kind.PTY, fds=[write_end])
    os.close(write_end)
    with pytest.raises(SyncError, match="instead of"):
        parent.expect(Kind.PID, 1)
    assert parent.fds == []
    assert os.read(read_end, 1) == b""  # no copy of the write end is left open
    os.close(read_end)


def test_fds_of_an_error_message_are_closed(pair):
    parent, child = pair
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    child.send(Kind.ERROR, fds=[write_end], message="boom")
    os.close(write_end)
    with pytest.raises(SbxError, match="boom"):
        parent.expect(Kind.PID, 1)
    assert os.read(read_end, 1) == b""
    os.close(read_end)


# -- the one error encoding ------------------------------------------------------------------------------------------


def test_an_error_crosses_with_message_hint_and_exit_code(pair):
    parent, child = pair
    code = child.send_error(ContainerStartError('exec: "x": executable file not found', exit_code=127, hint="look"))
    assert code == 127
    with pytest.raises(ContainerStartError) as caught:
        parent.expect(Kind.PID, 1)
    error = caught.value
    assert type(error) is ContainerStartError
    assert (error.message, error.hint, error.exit_code) == ('exec: "x": executable file not found', "look", 127)


def test_an_error_keeps_its_class_and_fields(pair):
    parent, child = pair
    child.send_error(NamespaceError("cannot create a user namespace: nope", hint="sysctl", op="unshare", errno=1))
    with pytest.raises(NamespaceError) as caught:
        parent.expect(Kind.READY, 1)
    error = caught.value
    assert (error.op, error.errno, error.hint, error.exit_code) == ("unshare", 1, "sysctl", 125)


def test_a_job_error_carries_no_exit_code():
    error = sync.rebuild_error(sync.error_message(UnsafeLayer("unsafe layer: x", uid=70000), None))
    assert type(error) is UnsafeLayer and error.uid == 70000 and error.exit_code is None


@pytest.mark.parametrize(("error", "message"), [
    (FileNotFoundError(2, "No such file or directory", "/x"), "No such file or directory: /x"),
    (ValueError("odd"), "ValueError: odd"),
])
def test_a_foreign_exception_crosses_as_a_start_error(error, message):
    rebuilt = sync.rebuild_error(sync.error_message(error, 126))
    assert type(rebuilt) is ContainerStartError and (rebuilt.message, rebuilt.exit_code) == (message, 126)


def test_start_failure_makes_any_reported_class_a_start_error():
    report = sync.error_message(NamespaceError("no namespace", hint="h"), 125)
    error = sync.start_failure(report)
    assert type(error) is ContainerStartError
    assert (error.message, error.hint, error.exit_code) == ("no namespace", "h", 125)


@pytest.mark.parametrize("name", ["ValueError", "Path", "__builtins__", "nonsense", None, 5])
def test_a_reported_class_must_be_one_of_sbx_errors(name):
    error = sync.rebuild_error({"type": "error", "class": name, "message": "boom"})
    assert type(error) is SbxError and error.message == "boom"


def test_a_class_in_the_errors_module_that_is_no_sbx_error_is_not_built(monkeypatch):
    loose = type("Loose", (Exception,), {"__init__": lambda self, *args, **kwargs: None})
    monkeypatch.setattr(errors, "Loose", loose, raising=False)  # as an import into sandbox.errors would be
    error = sync.rebuild_error({"class": "Loose", "message": "boom"})
    assert type(error) is SbxError and error.message == "boom"


@pytest.mark.parametrize("code", [300, -1, "127", 1.5, True, None])
def test_a_reported_exit_code_must_be_one(code):
    error = sync.rebuild_error({"class": "ContainerStartError", "message": "m", "exit_code": code}, 126)
    assert error.exit_code == 126


def test_reported_fields_cannot_shadow_attributes():
    fields = {"__class__": "x", "args": 5, "fields": "x", "message": "other", "hint": "other", "exit_code": 3,
              "with_traceback": 1, "not an identifier": 1, "nested": {"a": 1}, "path": "/kept"}
    error = sync.rebuild_error({"class": "StoreError", "message": "m", "hint": "h", "fields": fields})
    assert type(error) is errors.StoreError
    assert (error.message, error.hint, error.args, error.fields) == ("m", "h", ("m",), {"path": "/kept"})
    assert error.exit_code is None and not hasattr(error, "nested")


def test_reported_text_is_bounded_and_typed():
    error = sync.rebuild_error({"class": "SbxError", "message": "m" * 10000, "hint": ["not", "text"]})
    assert len(error.message) == 4096 and error.hint is None
    assert sync.rebuild_error({"message": 5}).message == "the other process failed"


# -- map, then go ----------------------------------------------------------------------------------------------------


def _in_thread(target):
    result = {}

    def run():
        try:
            result["value"] = target()
        except BaseException as error:  # noqa: BLE001 - handed to the test
            result["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_handshake_maps_between_ready_and_go(pair):
    parent, child = pair
    steps = []
    thread, result = _in_thread(lambda: sync.child_handshake(child, 5))

    def write_maps(meanwhile):
        steps.append(("maps", meanwhile))
        return {"uid": 1000, "gid": 1001}

    sync.parent_handshake(parent, write_maps, 5)
    thread.join()
    assert steps == [("maps", None)] and result == {"value": (1000, 1001)}


def test_a_born_childs_maps_start_before_its_ready_is_read(pair):
    """clone made pid 1 in its user namespace: the helpers start at once and READY is read while they run (READY
    is only sent once they have started: a parent that waited for it first would time out)."""
    parent, child = pair
    steps = []

    def write_maps(meanwhile):
        steps.append("helpers started")
        child.send(Kind.READY)
        meanwhile()  # the parent reads READY here, between the helpers' start and their end
        steps.append("helpers ended")
        return None

    sync.parent_handshake(parent, write_maps, 5, born=True)
    assert steps == ["helpers started", "helpers ended"]
    assert child.expect(Kind.GO, 1) == {"type": Kind.GO, "own_maps": None}


def test_a_born_childs_error_ends_the_handshake_while_the_helpers_run(pair):
    parent, child = pair
    child.send_error(NamespaceError("cannot create a user namespace: EPERM"))
    ended = []

    def write_maps(meanwhile):
        try:
            meanwhile()
        finally:
            ended.append("helpers stopped")

    with pytest.raises(NamespaceError, match="EPERM"):
        sync.parent_handshake(parent, write_maps, 1, born=True)
    assert ended == ["helpers stopped"]


def test_the_childs_meanwhile_runs_while_the_parent_writes_the_maps(pair):
    """pid 1 imports its plan between READY and GO (BENCHMARKS B1): the parent is writing the maps meanwhile, so
    here the maps wait for what the child does meanwhile; run after GO, it would never be seen by write_maps."""
    parent, child = pair
    done = threading.Event()
    thread, result = _in_thread(lambda: sync.child_handshake(child, 5, meanwhile=done.set))
    sync.parent_handshake(parent, lambda _: {"uid": 1000, "gid": 1001} if done.wait(5) else None, 5)
    thread.join()
    assert result == {"value": (1000, 1001)}


def test_handshake_without_own_maps(pair):
    parent, child = pair
    thread, result = _in_thread(lambda: sync.child_handshake(child, 5))
    sync.parent_handshake(parent, lambda _: None, 5)
    thread.join()
    assert result == {"value": None}


def test_no_maps_are_written_for_a_child_that_failed(pair):
    parent, child = pair
    child.send_error(NamespaceError("cannot create a user namespace: EPERM"))
    called = []
    with pytest.raises(NamespaceError, match="EPERM"):
        sync.parent_handshake(parent, lambda _: called.append(1), 1)
    assert called == []


@pytest.mark.parametrize("own", [{"uid": "0", "gid": 0}, {"uid": 0}, [0, 0], "0 0", {"uid": True, "gid": 0}])
def test_child_refuses_malformed_own_maps(pair, own):
    parent, child = pair
    parent.send(Kind.GO, own_maps=own)
    child.send = lambda *args, **kwargs: None  # READY already "sent"
    with pytest.raises(SyncError, match="malformed"):
        sync.child_handshake(child, 1)


def test_child_refuses_anything_but_go(pair):
    parent, child = pair
    parent.send(Kind.NETWORK)
    with pytest.raises(SyncError, match="instead of go"):
        sync.child_handshake(child, 1)
