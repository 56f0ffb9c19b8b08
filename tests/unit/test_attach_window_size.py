"""The attach client sends the user's terminal size with a tty even when stdin is not attached (`run -t`, no -i)."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from sandbox.monitor import attach
from sandbox.runtime import console


def _frames_until_detach_or_close(sock: socket.socket, *, then_exit: int) -> list[attach.Frame]:
    """Play the monitor: collect the client's frames for a moment, then say the container exited."""
    reader = attach.FrameReader()
    frames: list[attach.Frame] = []
    sock.settimeout(0.5)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            frames += reader.feed(data)
            if any(frame.type == attach.RESIZE for frame in frames):
                break
    except TimeoutError:
        pass
    sock.sendall(attach.encode_json(attach.EXIT, {"code": then_exit}))
    return frames


@pytest.mark.parametrize(("tty", "sized"), [(True, True), (False, False)])
def test_size_of_stdout_without_stdin(tty, sized):
    master, slave = os.openpty()  # the user's terminal: sbx's stdout
    console.set_window_size(slave, 30, 90)
    client, monitor = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    result = {}

    def run_client() -> None:  # not the main thread: no SIGWINCH handler, the first size is still sent
        result["outcome"] = attach.attach(None, stdin_fd=None, stdout_fd=slave, stderr_fd=slave, tty=tty,
                                          detach_keys=b"\x10\x11", sock=client)

    thread = threading.Thread(target=run_client)
    thread.start()
    try:
        frames = _frames_until_detach_or_close(monitor, then_exit=4)
        thread.join(5)
        assert result["outcome"] == ("exited", 4)
        resizes = [attach.parse_resize(frame) for frame in frames if frame.type == attach.RESIZE]
        assert resizes == ([(30, 90)] if sized else [])
        assert not [frame for frame in frames if frame.type == attach.STDIN]  # no stdin attached, none sent
    finally:
        monitor.close()
        os.close(master)
        os.close(slave)


def test_no_size_when_stdout_is_no_terminal():
    read_end, write_end = os.pipe()
    client, monitor = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    result = {}
    thread = threading.Thread(target=lambda: result.update(outcome=attach.attach(
        None, stdin_fd=None, stdout_fd=write_end, stderr_fd=write_end, tty=True, detach_keys=b"", sock=client)))
    thread.start()
    try:
        frames = _frames_until_detach_or_close(monitor, then_exit=0)
        thread.join(5)
        assert result["outcome"] == ("exited", 0)
        assert not [frame for frame in frames if frame.type == attach.RESIZE]
    finally:
        monitor.close()
        os.close(read_end)
        os.close(write_end)


def test_what_a_monitor_said_before_leaving_is_read_though_the_first_resize_cannot_go_out():
    """A command that ends at once: its monitor sent the output and EXIT and closed before the client's first
    RESIZE went out. Sending fails (EPIPE); the output and the exit code must still reach the user."""
    master, slave = os.openpty()
    console.set_window_size(slave, 30, 90)  # so a RESIZE is queued before the first send
    client, monitor = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    monitor.sendall(attach.encode_data(attach.STDOUT, b"size 30 90\n") + attach.encode_json(attach.EXIT, {"code": 3}))
    monitor.close()
    try:
        outcome = attach.attach(None, stdin_fd=None, stdout_fd=slave, stderr_fd=slave, tty=True, detach_keys=b"",
                                sock=client)
        assert outcome == ("exited", 3)
        assert os.read(master, 100) == b"size 30 90\r\n"  # the pty (onlcr) turns LF into CR LF
    finally:
        os.close(master)
        os.close(slave)
