"""Terminal plumbing: detach keys, raw mode, window sizes, the pty copy loop and signal forwarding."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import termios
import threading
import time
import tty

import pytest

from sandbox.errors import InvalidDetachKeys, SbxError
from sandbox.runtime import console
from sandbox.runtime.console import (
    forward_signals,
    get_window_size,
    proxy,
    raw_mode,
    resize_on_sigwinch,
    set_window_size,
)
from sandbox.runtime.detachkeys import DEFAULT_DETACH_KEYS, DetachMatcher, parse_detach_keys


@pytest.fixture
def pty_pair():
    master, slave = os.openpty()
    fds = {"master": master, "slave": slave}
    yield fds
    for fd in fds.values():
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
def pipes():
    made: list[int] = []

    def make() -> tuple[int, int]:
        r, w = os.pipe()
        made.extend((r, w))
        return r, w

    yield make
    for fd in made:
        with contextlib.suppress(OSError):
            os.close(fd)


def _deadline(seconds: float):
    end = time.monotonic() + seconds
    return lambda: time.monotonic() > end


def _read_available(fd: int, timeout: float = 0.5) -> bytes:
    data = b""
    while select.select([fd], [], [], timeout)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
        timeout = 0.05
    return data


def _reap(pid: int) -> int:
    for _ in range(200):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


# --- detach keys ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ctrl-p,ctrl-q", b"\x10\x11"),
        (DEFAULT_DETACH_KEYS, b"\x10\x11"),
        ("ctrl-a", b"\x01"),
        ("ctrl-z", b"\x1a"),
        ("CTRL-X,Ctrl-Y", b"\x18\x19"),
        ("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_", b"\x00\x1b\x1c\x1d\x1e\x1f"),
        ("a,b,ctrl-c", b"ab\x03"),
        ("~,.", b"~."),
        ("", b""),
    ],
)
def test_parse_detach_keys(text, expected):
    assert parse_detach_keys(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "ctrl-",
        "ctrl-1",
        "ctrl-pq",
        "ctrlp",
        "ab",
        "ctrl-p,",
        ",ctrl-q",
        "ctrl-p,,ctrl-q",
        "\x10",
        "é",
        "ctrl-é",
        "alt-p",
    ],
)
def test_parse_detach_keys_invalid(text):
    with pytest.raises(InvalidDetachKeys) as info:
        parse_detach_keys(text)
    assert isinstance(info.value, SbxError)
    assert "detach keys" in str(info.value)
    assert info.value.hint


# --- DetachMatcher --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "chunks", "passed", "detached"),
    [
        (b"\x10\x11", [b"\x10\x11"], b"", True),  # the exact sequence is swallowed
        (b"\x10\x11", [b"abc\x10\x11"], b"abc", True),  # what precedes it passes
        (b"\x10\x11", [b"ab\x10\x11cd"], b"ab", True),  # what follows it is dropped
        (b"\x10\x11", [b"\x10x"], b"\x10x", False),  # Ctrl-p then another key passes both
        (b"\x10\x11", [b"\x10", b"x"], b"\x10x", False),  # ... across feeds too
        (b"\x10\x11", [b"\x10", b"\x11"], b"", True),  # split across feeds
        (b"\x10\x11", [b"a\x10", b"", b"\x11b"], b"a", True),
        (b"\x10\x11", [b"\x10\x10\x11"], b"\x10", True),  # a repeated prefix: the first Ctrl-p passes
        (b"\x10\x11", [b"\x10", b"\x10", b"\x11"], b"\x10", True),
        (b"\x10\x11", [b"\x11\x10"], b"\x11", False),  # the held Ctrl-p is still pending
        (b"\x10\x11", [b"plain text"], b"plain text", False),
        (b"aab", [b"aaab"], b"a", True),
        (b"abac", [b"ababac"], b"ab", True),
        (b"abc", [b"abxabc"], b"abx", True),
        (b"q", [b"xyq"], b"xy", True),
        (b"", [b"\x10\x11\x10\x11"], b"\x10\x11\x10\x11", False),  # empty keys never detach
    ],
)
def test_detach_matcher_table(keys, chunks, passed, detached):
    matcher = DetachMatcher(keys)
    out = b""
    done = False
    for chunk in chunks:
        got, done = matcher.feed(chunk)
        out += got
        if done:
            break
    assert (out, done) == (passed, detached)


def test_detach_matcher_holds_prefix_until_flush():
    matcher = DetachMatcher(b"\x10\x11")
    assert matcher.feed(b"ab\x10") == (b"ab", False)
    assert matcher.pending == b"\x10"
    assert matcher.flush() == b"\x10"
    assert matcher.pending == b""
    assert matcher.feed(b"\x11") == (b"\x11", False)


def test_detach_matcher_resets_after_detach():
    matcher = DetachMatcher(b"\x10\x11")
    assert matcher.feed(b"\x10\x11") == (b"", True)
    assert matcher.pending == b""
    assert matcher.feed(b"x\x10\x11") == (b"x", True)


# --- raw mode and window sizes --------------------------------------------------------------------------------------


def test_raw_mode_sets_and_restores(pty_pair):
    slave = pty_pair["slave"]
    before = termios.tcgetattr(slave)
    assert before[3] & termios.ICANON
    with raw_mode(slave) as saved:
        assert saved == before
        lflag = termios.tcgetattr(slave)[3]
        assert not lflag & termios.ICANON
        assert not lflag & termios.ECHO
    assert termios.tcgetattr(slave) == before


def test_raw_mode_restores_after_exception(pty_pair):
    slave = pty_pair["slave"]
    before = termios.tcgetattr(slave)
    with pytest.raises(RuntimeError, match="boom"), raw_mode(slave):
        assert termios.tcgetattr(slave) != before
        raise RuntimeError("boom")
    assert termios.tcgetattr(slave) == before


def test_saved_attributes_and_restore(pty_pair, pipes):
    slave = pty_pair["slave"]
    attrs = console.saved_attributes(slave)
    assert attrs is not None
    tty.setraw(slave)
    assert console.restore(slave, attrs) is True
    assert termios.tcgetattr(slave) == attrs
    r, _ = pipes()
    assert console.saved_attributes(r) is None
    assert console.restore(r, None) is False
    assert console.restore(r, attrs) is False  # never raises
    with raw_mode(r) as saved:  # not a terminal: nothing to do
        assert saved is None


def test_window_size_round_trip(pty_pair, pipes):
    master, slave = pty_pair["master"], pty_pair["slave"]
    set_window_size(master, 40, 120)
    assert get_window_size(slave) == (40, 120)
    assert get_window_size(master) == (40, 120)
    set_window_size(slave, 25, 80)
    assert get_window_size(master) == (25, 80)
    r, _ = pipes()
    assert get_window_size(r) is None
    with pytest.raises(OSError):
        set_window_size(r, 1, 1)
    with pytest.raises(ValueError):
        set_window_size(master, -1, 80)


def test_resize_on_sigwinch(pty_pair):
    source_master, source_slave = pty_pair["master"], pty_pair["slave"]
    target_master, target_slave = os.openpty()
    pty_pair["t_master"], pty_pair["t_slave"] = target_master, target_slave
    calls = []
    previous = signal.signal(signal.SIGWINCH, lambda signum, frame: calls.append(signum))
    try:
        set_window_size(source_master, 30, 100)
        restore_handlers = resize_on_sigwinch(source_slave, target_master)
        assert get_window_size(target_slave) == (30, 100)
        set_window_size(source_master, 50, 132)
        os.kill(os.getpid(), signal.SIGWINCH)
        for _ in range(100):
            if get_window_size(target_slave) == (50, 132):
                break
            time.sleep(0.01)
        assert get_window_size(target_slave) == (50, 132)
        assert calls == [signal.SIGWINCH]  # the earlier handler still runs
        restore_handlers()
        restore_handlers()  # idempotent
        set_window_size(source_master, 10, 10)
        os.kill(os.getpid(), signal.SIGWINCH)
        time.sleep(0.05)
        assert get_window_size(target_slave) == (50, 132)
        assert len(calls) == 2
    finally:
        signal.signal(signal.SIGWINCH, previous)


# --- proxy ----------------------------------------------------------------------------------------------------------


def test_proxy_copies_both_ways_until_the_child_exits(pty_pair, pipes):
    master, slave = pty_pair["master"], pty_pair["slave"]
    tty.setraw(slave)
    stdin_r, stdin_w = pipes()
    out_r, out_w = pipes()
    pid = os.fork()
    if pid == 0:  # the "container": talks on the slave, then exits
        try:
            os.close(master)
            os.write(slave, b"hello\n")
            got = b""
            while len(got) < 4:
                got += os.read(slave, 100)
            os.write(slave, b"got:" + got + b"\n")
        finally:
            os._exit(0)
    os.close(slave)
    pty_pair["slave"] = None
    os.write(stdin_w, b"ping")
    os.close(stdin_w)  # EOF on stdin: forwarding stops, output keeps being copied
    result = proxy(master, stdin_r, out_w, stop=_deadline(5))
    assert result == "exited"
    assert _reap(pid) == 0
    assert _read_available(out_r) == b"hello\ngot:ping\n"
    assert os.get_blocking(master)  # the master's flags are restored


def test_proxy_large_output_without_stdin(pty_pair, pipes):
    master, slave = pty_pair["master"], pty_pair["slave"]
    tty.setraw(slave)
    out_r, out_w = pipes()
    payload = bytes(range(256)) * 2048  # 512 KiB: more than any pipe or pty buffer
    pid = os.fork()
    if pid == 0:
        try:
            os.close(master)
            view = memoryview(payload)
            while view:
                view = view[os.write(slave, view) :]
        finally:
            os._exit(0)
    os.close(slave)
    pty_pair["slave"] = None
    received = bytearray()

    def reader():
        while True:
            chunk = os.read(out_r, 65536)
            if not chunk:
                return
            received.extend(chunk)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    result = proxy(master, None, out_w, stop=_deadline(5))
    os.close(out_w)
    thread.join(5)
    assert result == "exited"
    assert _reap(pid) == 0
    assert bytes(received) == payload


def test_proxy_detaches_without_forwarding_the_keys(pty_pair, pipes):
    master, slave = pty_pair["master"], pty_pair["slave"]
    tty.setraw(slave)
    stdin_r, stdin_w = pipes()
    out_r, out_w = pipes()
    os.write(slave, b"prompt$ ")
    os.write(stdin_w, b"ab\x10\x11cd")
    result = proxy(master, stdin_r, out_w, stop=_deadline(5))
    assert result == "detached"
    assert _read_available(slave, 0.2) == b"ab"
    assert _read_available(out_r, 0.2) == b"prompt$ "


def test_proxy_passes_interrupted_prefix_and_custom_keys(pty_pair, pipes):
    master, slave = pty_pair["master"], pty_pair["slave"]
    tty.setraw(slave)
    stdin_r, stdin_w = pipes()
    out_r, out_w = pipes()
    os.write(stdin_w, b"\x10x")
    os.close(stdin_w)
    result = proxy(master, stdin_r, out_w, stop=_deadline(0.3))
    assert result == "stopped"
    assert _read_available(slave, 0.2) == b"\x10x"

    stdin_r, stdin_w = pipes()
    os.write(stdin_w, b"\x10\x11 still typing ~.")
    result = proxy(master, stdin_r, out_w, detach_keys=parse_detach_keys("~,."), stop=_deadline(5))
    assert result == "detached"
    assert _read_available(slave, 0.2) == b"\x10\x11 still typing "

    stdin_r, stdin_w = pipes()
    os.write(stdin_w, b"\x10\x11")
    os.close(stdin_w)
    result = proxy(master, stdin_r, out_w, detach_keys=b"", stop=_deadline(0.3))
    assert result == "stopped"  # detaching disabled: the keys go to the container
    assert _read_available(slave, 0.2) == b"\x10\x11"


def test_proxy_stdin_eof_releases_held_prefix(pty_pair, pipes):
    master, slave = pty_pair["master"], pty_pair["slave"]
    tty.setraw(slave)
    stdin_r, stdin_w = pipes()
    _, out_w = pipes()
    os.write(stdin_w, b"a\x10")
    os.close(stdin_w)
    assert proxy(master, stdin_r, out_w, stop=_deadline(0.3)) == "stopped"
    assert _read_available(slave, 0.2) == b"a\x10"


def test_proxy_to_a_regular_file(pty_pair, tmp_path):
    master, slave = pty_pair["master"], pty_pair["slave"]
    tty.setraw(slave)
    path = tmp_path / "out"
    with open(path, "wb") as out, open(os.devnull, "rb") as devnull:
        os.write(slave, b"to a file")
        os.close(slave)
        pty_pair["slave"] = None
        assert proxy(master, devnull.fileno(), out.fileno(), stop=_deadline(5)) == "exited"
    assert path.read_bytes() == b"to a file"


def test_proxy_client_gone_counts_as_detached(pty_pair, pipes):
    master, slave = pty_pair["master"], pty_pair["slave"]
    tty.setraw(slave)
    out_r, out_w = pipes()
    os.close(out_r)
    os.write(slave, b"nobody reads this")
    assert proxy(master, None, out_w, stop=_deadline(5)) == "detached"


# --- signal forwarding ----------------------------------------------------------------------------------------------


def test_forward_signals_delivers_to_child(pipes):
    report_r, report_w = pipes()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(report_r)
            signal.signal(signal.SIGUSR1, lambda signum, frame: os.write(report_w, b"U"))
            signal.signal(signal.SIGUSR2, lambda signum, frame: os.write(report_w, b"V"))
            os.write(report_w, b"R")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            os._exit(0)
    try:
        assert _read_available(report_r, 5)[:1] == b"R"
        before = signal.getsignal(signal.SIGUSR1)
        restore_handlers = forward_signals(pid, (signal.SIGUSR1, signal.SIGUSR2))
        assert signal.getsignal(signal.SIGUSR1) is not before
        os.kill(os.getpid(), signal.SIGUSR1)
        assert _read_available(report_r, 5)[:1] == b"U"
        os.kill(os.getpid(), signal.SIGUSR2)
        assert _read_available(report_r, 5)[:1] == b"V"
        restore_handlers()
        assert signal.getsignal(signal.SIGUSR1) == before
        assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL
        restore_handlers()  # idempotent
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_forward_signals_ignores_a_vanished_pid():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    previous = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        restore_handlers = forward_signals(pid, (signal.SIGUSR2,))
        os.kill(os.getpid(), signal.SIGUSR2)  # ProcessLookupError is swallowed
        time.sleep(0.01)
        restore_handlers()
        assert signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGUSR2, previous)
