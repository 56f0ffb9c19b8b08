"""The detached monitor's steady state: a lean loop that runs while the container does, then hands its end back.

A detached container's monitor does its setup with the full code (:mod:`sandbox.monitor.monitor`: the record, the
spec, the cgroup, cloning pid 1, RUNNING to sbx). Then, for as long as the container runs, all it does is copy
output into the log and to attach clients, take clients' input and resizes, forward SIGTERM and wait for pid 1.
That needs no sbx module but the frame (:mod:`sandbox.monitor.frames`) and the log writer
(:mod:`sandbox.monitor.logwriter`), so the monitor ``execve``\\ s itself into this loop::

    python -I -S -c BOOT PACKAGE_PARENT KEY=VALUE... -- FINISH_ARGV...

as ``argv[0]`` the title ``sbx (the container monitor)``. ``execve`` keeps the pid (pid 1 stays its child, its
PDEATHSIG still aimed at us), the session, the subreaper flag, ignored signals, the signal mask and every fd not
marked close-on-exec: the outputs, the input, the pty master, the attach listener and its clients are passed by
number (:func:`argv`); so is a network helper's exit fd, which the loop only holds (the helper stays a child). What
it imports is ``posix``, ``select``, ``_socket``, ``_signal``, ``time``, ``_json`` (and ``fcntl``, ``termios`` at a
client's first RESIZE): no ``os``, ``json``, ``selectors``, no store, no dataclasses.

The loop is :class:`sandbox.monitor.session.Supervisor`'s pump with the same rules: output goes to the log and to
every client; a client is never waited for (one whose unsent output passes
:data:`~sandbox.monitor.frames.CLIENT_BUFFER_LIMIT` is dropped, and with :data:`~sandbox.monitor.frames.INPUT_LIMIT`
of input waiting no client is read); DETACH or a closed connection drops only that client. Once every output has
ended it waits for pid 1, flushes what clients are owed (bounded), and execs ``FINISH_ARGV`` with ``exit=CODE``,
``listener=FD`` and ``clients=FD,...`` appended: the full monitor again (:func:`sandbox.service.monitoring.finish`),
which records the exit, releases the cgroup, runs --rm and sends EXIT to the clients, as a monitor does after the
exit. SIGTERM arrives blocked across each exec (the monitor blocks it before its own), so none is lost to a default
action in between; here it is forwarded to the container's command, in the finish it is ignored.
"""

import _signal
import _socket
import posix
import select
import sys

from sandbox.monitor import frames
from sandbox.monitor.logwriter import LogWriter

BOOT = "import sys;sys.path.append(sys.argv[1]);from sandbox.monitor.steady import main;main()"
_READ_SIZE = 64 * 1024
_FLUSH_TIMEOUT = 1.0
_IN = select.POLLIN | select.POLLHUP | select.POLLERR
_OUT = select.POLLOUT


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


class Loop:
    """The steady state of one container's monitor (its state as :func:`argv` wrote it)."""

    def __init__(self, state):
        self.child = int(state["pid"])  # the process to wait for: pid 1
        self.target = int(state["target"])  # where SIGTERM goes: the command's pid
        self.outputs = {}
        for item in state["out"].split(","):
            fd, _, stream = item.partition(":")
            self.outputs[int(fd)] = stream
        self.master_fd = _fd(state.get("master", ""))
        self.input_fd = _fd(state.get("input", ""))
        self.listener = None
        listener = _fd(state.get("listener", ""))
        if listener is not None:
            self.listener = _socket.socket(fileno=listener)
            self.listener.setblocking(False)
        self.clients = {}
        for fd in _fds(state.get("clients", "")):
            self.clients[fd] = frames.Client(_socket.socket(fileno=fd))
        self.log = LogWriter(state["log"])
        self.finish = None
        self.to_input = bytearray()
        self.input_ended = False
        self.uid = posix.getuid()
        self.poll = select.poll()
        self.registered = {}
        for fd in self.outputs:
            posix.set_blocking(fd, False)
        if self.input_fd is not None:
            posix.set_blocking(self.input_fd, False)

    def _forward(self, number, _frame):
        try:  # noqa: SIM105 - contextlib is an import this lean module does not make
            posix.kill(self.target, number)
        except ProcessLookupError:
            pass

    # -- the loop -------------------------------------------------------------------------------------------------

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

    def pump(self):
        while self.outputs:
            wanted = {fd: _IN for fd in self.outputs}
            if self.listener is not None:
                wanted[self.listener.fileno()] = _IN
            room = len(self.to_input) < frames.INPUT_LIMIT
            for fd, client in self.clients.items():
                events = (_IN if room else 0) | (_OUT if client.outgoing else 0)
                if events:
                    wanted[fd] = events
            if self.to_input and self.input_fd is not None:
                wanted[self.input_fd] = wanted.get(self.input_fd, 0) | _OUT
            self._reconcile(wanted)
            for fd, mask in self.poll.poll():
                if fd in self.outputs:
                    if mask & _OUT:
                        self._write_input()
                    if mask & _IN and not self._read_output(fd):
                        del self.outputs[fd]
                        self._close_fd(fd)
                elif self.listener is not None and fd == self.listener.fileno():
                    self._accept()
                elif fd in self.clients:
                    self._serve(fd, mask)
                elif fd == self.input_fd:
                    self._write_input()
        if self.input_fd is not None and self.input_fd != self.master_fd:
            self._close_fd(self.input_fd)  # the stdin pipe: the process sees EOF (its outputs ended anyway)

    def _reconcile(self, wanted):
        for fd in [fd for fd in self.registered if fd not in wanted]:
            self._forget(fd)
        for fd, events in wanted.items():
            current = self.registered.get(fd)
            if current is None:
                self.poll.register(fd, events)
            elif current != events:
                self.poll.modify(fd, events)
            self.registered[fd] = events

    def _forget(self, fd):
        if self.registered.pop(fd, None) is not None:
            try:  # noqa: SIM105 - contextlib is an import this lean module does not make
                self.poll.unregister(fd)
            except (KeyError, ValueError, OSError):
                pass

    def _close_fd(self, fd):
        self._forget(fd)
        if fd == self.input_fd:
            self.input_fd = None
            self.to_input.clear()
        if fd == self.master_fd:
            self.master_fd = None
        try:  # noqa: SIM105 - contextlib is an import this lean module does not make
            posix.close(fd)
        except OSError:
            pass

    def _read_output(self, fd):
        """One read of an output into the log and every client; False at its end."""
        try:
            data = posix.read(fd, _READ_SIZE)
        except BlockingIOError:
            return True
        except OSError:  # EIO: a pty whose every slave end is closed
            data = b""
        if not data:
            return False
        stream = self.outputs[fd]
        self.log.write(stream, data)
        if self.clients:
            encoded = frames.encode_data(frames.STDOUT if stream == "stdout" else frames.STDERR, data)
            for client_fd, client in list(self.clients.items()):
                if not client.queue(encoded):
                    self._drop(client_fd)  # too far behind to wait for
                elif not client.flush():
                    self._serve(client_fd, _OUT)  # gone: what it sent before it went still counts
        return True

    def _accept(self):
        while True:
            try:
                fd, _ = self.listener._accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # EMFILE and the like: the client sees its connection reset
                return
            sock = _socket.socket(fileno=fd)
            if _peer_uid(sock) != self.uid or len(self.clients) >= frames.CLIENT_LIMIT:
                sock.close()
                continue
            self.clients[fd] = frames.Client(sock)

    def _serve(self, fd, mask):
        """Flush a client's output and act on what it sent; a client that is gone has what it sent applied first."""
        client = self.clients.get(fd)
        if client is None:
            return
        gone = bool(mask & _OUT) and not client.flush()
        if not (gone or mask & _IN):
            return
        received = client.receive()
        if not gone:
            if received:
                self._apply(fd, received)
            if received is None:
                self._drop(fd)
            return
        while received and fd in self.clients:
            self._apply(fd, received)
            received = client.receive()
        self._drop(fd)

    def _apply(self, fd, received):
        for frame_type, payload in received:
            if frame_type == frames.STDIN:
                if self.input_fd is not None:
                    self.to_input += payload
                    self.input_ended = self.input_ended or (not payload and self.input_fd != self.master_fd)
            elif frame_type == frames.RESIZE and self.master_fd is not None:
                try:  # noqa: SIM105 - contextlib is an import this lean module does not make
                    _set_window_size(self.master_fd, *frames.parse_resize(payload))
                except (ValueError, OSError):
                    pass
            elif frame_type == frames.DETACH:
                self._drop(fd)
                break
        if self.to_input or self.input_ended:
            self._write_input()

    def _drop(self, fd):
        client = self.clients.pop(fd, None)
        self._forget(fd)
        if client is not None:
            client.close()

    def _write_input(self):
        if self.input_fd is not None and self.input_ended and not self.to_input:
            self._close_fd(self.input_fd)  # the process reads the end of its input
            return
        if self.input_fd is None or not self.to_input:
            return
        try:
            written = posix.write(self.input_fd, self.to_input)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EPIPE: the process closed its stdin; EIO: the pty's other side is gone
            self.to_input.clear()
            if self.input_fd != self.master_fd:
                self._close_fd(self.input_fd)
            return
        del self.to_input[:written]
        if self.input_ended and not self.to_input:
            self._close_fd(self.input_fd)

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


def _peer_uid(sock):
    try:
        raw = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
    except OSError:
        return None
    return int.from_bytes(raw[4:8], sys.byteorder, signed=True)


def _set_window_size(fd, rows, cols):
    """TIOCSWINSZ on the pty master (the kernel sends SIGWINCH to its foreground process group)."""
    import fcntl
    import termios

    order = sys.byteorder
    size = rows.to_bytes(2, order) + cols.to_bytes(2, order) + bytes(4)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, size)
