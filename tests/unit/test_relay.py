"""The pipes between sbx and a command without -t (TESTPLAN 58): the command never holds sbx's own fds."""

from __future__ import annotations

import os
import subprocess

from sandbox.runtime.relay import Relay


def run_relayed(script: str, interactive: bool, typed: bytes = b""):
    relay = Relay(interactive)
    child_in, child_out, child_err = relay.child_stdio()
    process = subprocess.Popen(["sh", "-c", script], stdin=child_in, stdout=child_out, stderr=child_err)
    stdin_r, stdin_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    os.write(stdin_w, typed)
    os.close(stdin_w)
    relay.run(process.pid, stdin_r, out_w, err_w)
    process.wait()
    for fd in (stdin_r, out_w, err_w):
        os.close(fd)
    with os.fdopen(out_r, "rb") as out, os.fdopen(err_r, "rb") as err:
        return out.read(), err.read()


def test_output_and_input_are_copied_through_pipes():
    script = 'cat; echo "err" >&2; for fd in 0 1 2; do test -p /proc/self/fd/$fd && echo pipe$fd; done'
    out, err = run_relayed(script, interactive=True, typed=b"typed\n")
    assert out == b"typed\npipe0\npipe1\npipe2\n" and err == b"err\n"


def test_without_interactive_the_command_reads_dev_null():
    out, _ = run_relayed("cat; readlink /proc/self/fd/0", interactive=False, typed=b"not for it\n")
    assert out == b"/dev/null\n"


def test_a_process_left_behind_is_not_waited_for_and_gets_no_more_input():
    script = "(sleep 3; cat; echo late) & echo early"
    out, _ = run_relayed(script, interactive=True, typed=b"")
    assert out == b"early\n"


def test_more_input_than_a_pipe_holds_reaches_the_command_whole():
    data = os.urandom(1024 * 1024).hex().encode()  # 2 MiB: many times a pipe's buffer and the relay's limit
    relay = Relay(True)
    child_in, child_out, child_err = relay.child_stdio()
    process = subprocess.Popen(["sh", "-c", "wc -c"], stdin=child_in, stdout=child_out, stderr=child_err)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the user typing (or piping) it all, then EOF
        os.close(reader)
        with os.fdopen(writer, "wb") as handle:
            handle.write(data)
        os._exit(0)
    os.close(writer)
    out_r, out_w = os.pipe()
    relay.run(process.pid, reader, out_w, out_w)
    process.wait()
    os.waitpid(pid, 0)
    os.close(out_w)
    os.close(reader)
    with os.fdopen(out_r, "rb") as out:
        assert out.read().strip() == str(len(data)).encode()

