"""The detached monitor's steady state: a lean loop that runs while the container does, then hands its end back.

A detached container's monitor does its setup with the full code (:mod:`sandbox.monitor.monitor`: the record, the
spec, the cgroup, cloning pid 1, RUNNING to sbx). Then, for as long as the container runs, all it does is copy
output into the log and to attach clients, take clients' input and resizes, forward SIGTERM and wait for pid 1.
That needs no sbx module but the pump (:mod:`sandbox.monitor.pump`), the frame (:mod:`sandbox.monitor.frames`)
and the log writer (:mod:`sandbox.monitor.logwriter`), so the monitor ``execve``\\ s itself into this loop::

    python -I -S -c BOOT PACKAGE_PARENT KEY=VALUE... -- FINISH_ARGV...

as ``argv[0]`` the title ``sbx (the container monitor)``. ``execve`` keeps the pid (pid 1 stays its child, its
PDEATHSIG still aimed at us), the session, the subreaper flag, ignored signals, the signal mask and every fd not
marked close-on-exec: the outputs, the input, the pty master, the attach listener and its clients are passed by
number (:func:`argv`); so is a network helper's exit fd, which the loop only holds (the helper stays a child). What
it imports is ``posix``, ``select``, ``_socket``, ``_signal``, ``time``, ``_json`` (and ``fcntl``, ``termios`` at a
client's first RESIZE): no ``os``, ``json``, ``selectors``, no store, no dataclasses.

The loop is the pump :class:`sandbox.monitor.session.Supervisor` runs too (:class:`sandbox.monitor.pump.Pump`, its
rules written once): output goes to the log and to every client; a client is never waited for; DETACH or a closed
connection drops only that client. Once every output has ended it waits for pid 1, flushes what clients are owed
(bounded), and execs ``FINISH_ARGV`` with ``exit=CODE``, ``listener=FD`` and ``clients=FD,...`` appended: the
full monitor again (:func:`sandbox.service.monitoring.finish`), which records the exit, releases the cgroup, runs
--rm and sends EXIT to the clients, as a monitor does after the exit. SIGTERM arrives blocked across each exec (the
monitor blocks it before its own), so none is lost to a default action in between; here it is forwarded to the
container's command, in the finish it is ignored.
"""

import _signal
import _socket
import posix
import sys

from sandbox.monitor import frames
from sandbox.monitor.logwriter import LogWriter
from sandbox.monitor.pump import Pump

BOOT = "import sys;sys.path.append(sys.argv[1]);from sandbox.monitor.steady import main;main()"
_FLUSH_TIMEOUT = 1.0


def argv(interpreter, title, package_parent, state, finish):
    """The exec's argv: ``state`` (``{key: int | str | list[int] | None}``) as ``key=value`` words after BOOT;
    ``finish`` (the full monitor's argv) after ``--``."""
    words = []
    for key, value in state.items():
        if isinstance(value, (list, tuple)):
            value = ",".join(str(item) for item in value)
        words.append(f"{key}={'' if value is None else value}")
    return interpreter, [title, "-I", "-S", "-c", BOOT, package_parent, *words, "--", *finish]


def parse(words):
    """``(state, finish)`` from the words after PACKAGE_PARENT."""
    split = words.index("--")
    state = dict(word.partition("=")[::2] for word in words[:split])
    return state, words[split + 1:]


def _fd(text):
    return int(text) if text else None


def _fds(text):
    return [int(item) for item in text.split(",") if item]


def main():
    """The loop's start: never returns (it execs the finish, or ``_exit``\\ s)."""
    try:
        _retitle()
        state, finish = parse(sys.argv[2:])
        loop = Loop(state)
    except BaseException:  # nothing to supervise with: the container dies with us (PDEATHSIG)
        posix._exit(1)
    try:
        loop.run()
    finally:
        posix._exit(1)  # the exec of the finish failed


class Loop(Pump):
    """The steady state of one container's monitor (its state as :func:`argv` wrote it): the pump
    (:class:`sandbox.monitor.pump.Pump`) over the fds the exec passed, then the wait and the exec of the finish."""

    def __init__(self, state):
        super().__init__()
        self.child = int(state["pid"])  # the process to wait for: pid 1
        self.target = int(state["target"])  # where SIGTERM goes: the command's pid
        for item in state["out"].split(","):
            fd, _, stream = item.partition(":")
            self.outputs[int(fd)] = stream
        self.master_fd = _fd(state.get("master", ""))
        self.input_fd = _fd(state.get("input", ""))
        listener = _fd(state.get("listener", ""))
        if listener is not None:
            self.listener = _socket.socket(fileno=listener)
            self.listener.setblocking(False)
        for fd in _fds(state.get("clients", "")):
            self.clients[fd] = frames.Client(_socket.socket(fileno=fd))
        self.log = LogWriter(state["log"])

    def run(self, finish=None):
        """Pump until the outputs end, wait for pid 1, exec ``finish`` (or the argv's) with the exit."""
        _signal.signal(_signal.SIGTERM, self._forward)
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, {_signal.SIGTERM})
        error = ""
        try:
            self.pump()
        except BaseException:  # the log cannot be written: nobody would drain the outputs, so the container goes
            error = "log"
            try:  # noqa: SIM105 - contextlib is an import this lean module does not make
                posix.kill(self.child, _signal.SIGKILL)
            except ProcessLookupError:
                pass
        code = self.wait()
        self.hand_off(code, error, finish if finish is not None else parse(sys.argv[2:])[1])

    # -- the end --------------------------------------------------------------------------------------------------

    def wait(self):
        """pid 1's exit code as Docker gives it: its status, or 128+N when signal N killed it."""
        while True:
            try:
                _, status = posix.waitpid(self.child, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                return 255
        code = posix.waitstatus_to_exitcode(status)
        return 128 - code if code < 0 else code

    def hand_off(self, code, error, finish):
        """Flush the clients (bounded), then exec the full monitor's finish with the exit and the fds it needs."""
        self.log.close()
        _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGTERM})
        _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)  # the container is gone: a late stop has nothing to do
        kept = []
        for fd, client in list(self.clients.items()):
            try:
                client.send_all(timeout=_FLUSH_TIMEOUT)
                posix.set_inheritable(fd, True)
                kept.append(fd)
            except OSError:
                client.close()
        words = [f"exit={code}", f"clients={','.join(str(fd) for fd in kept)}"]
        if self.listener is not None:
            posix.set_inheritable(self.listener.fileno(), True)
            words.append(f"listener={self.listener.fileno()}")
        if error:
            words.append(f"error={error}")
        try:
            posix.execv(finish[0], [*finish, *words])
        except OSError:
            posix._exit(1)


def _retitle():
    """Show only the title (``argv[0]``) in ``ps``: the rest of the command line (BOOT, fds, paths) is overwritten
    with NULs in place, as :func:`sandbox.kernel.cmdline.blank_command_line` does (which this loop cannot import:
    its package brings ``typing``). Best effort: a refusal leaves the command line, which holds nothing of the
    user's, as it is."""
    try:
        fd = posix.open("/proc/self/stat", posix.O_RDONLY | posix.O_CLOEXEC)
        try:
            fields = posix.read(fd, 4096).rpartition(b")")[2].split()
        finally:
            posix.close(fd)
        start, end = int(fields[48 - 3]), int(fields[49 - 3])  # arg_start, arg_end (proc(5); field 3 follows ")")
        title = sys.orig_argv[0].encode()[: max(end - start - 1, 0)]
        fd = posix.open("/proc/self/mem", posix.O_RDWR | posix.O_CLOEXEC)
        try:
            posix.pwrite(fd, title + b"\0" * (end - start - len(title)), start)
        finally:
            posix.close(fd)
    except (OSError, ValueError, IndexError):
        pass
