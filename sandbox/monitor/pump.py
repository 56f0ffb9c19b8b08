"""The pump every supervisor runs: a process's outputs to its log and to attach clients, clients' input back in.

One loop serves the attached monitor, the fresh monitor of ``--network container:``, the exec holder and a detached
monitor before its exec (:class:`sandbox.monitor.session.Supervisor`), and the detached monitor's steady state after
it (:class:`sandbox.monitor.steady.Loop`). Both inherit :class:`Pump` rather than hold one: the pump's state (the
clients, the listener, the pty master, the input waiting) is theirs too (the supervisor's end sends EXIT to the same
clients, the hand-off to the steady state passes the same fds on), and each adds to the loop through plain
methods and :attr:`Pump.watch` rather than through a second object.

The loop is single-threaded over ``select.poll`` and never blocks on a client:

- every read of an output goes to :attr:`Pump.log` (``write(stream, data)``; None: nowhere, as for an exec) and
  to every client; with no client the output is still read (and dropped), so the process never blocks on a full
  pipe or pty;
- a client whose unsent output passes :data:`~sandbox.monitor.frames.CLIENT_BUFFER_LIMIT` is dropped, and with
  :data:`~sandbox.monitor.frames.INPUT_LIMIT` of input waiting for the process no client is read;
- a connection is accepted only from a peer of our own uid (SO_PEERCRED) and while fewer than
  :data:`~sandbox.monitor.frames.CLIENT_LIMIT` are attached;
- STDIN goes to the pty master or the stdin pipe (an empty STDIN on a pipe: close it once written), RESIZE sets
  the pty's size (TIOCSWINSZ: the kernel sends SIGWINCH to its foreground process group), DETACH or a closed
  connection drops that client and nothing else; a client whose output cannot be written is gone, but what it sent
  before it went is applied first (the API's resize connects, sends RESIZE and closes at once).

It imports only what the steady state may hold for a container's whole life (BENCHMARKS B10): ``posix``, ``select``,
``_socket``, ``sys`` and the frame (:mod:`sandbox.monitor.frames`); ``fcntl`` and ``termios`` at the first resize.
"""

import _socket
import posix
import select
import sys

from sandbox.monitor import frames

_READ_SIZE = 64 * 1024
_IN = select.POLLIN | select.POLLHUP | select.POLLERR
_OUT = select.POLLOUT


class Pump:
    """The loop's state and its steps; :meth:`pump` runs it until every output has ended."""

    def __init__(self):
        self.outputs = {}  # fd -> "stdout" | "stderr": what is pumped until it ends
        self.log = None  # where every output is recorded: write(stream, data); None: nowhere
        self.listener = None  # the attach socket (a listening, non-blocking _socket.socket), if any
        self.clients = {}  # fd -> frames.Client
        self.master_fd = None  # the pty master
        self.input_fd = None  # the pty master, or the write end of the process's stdin pipe
        self.to_input = bytearray()
        self.input_ended = False  # a client sent the end of its input: close the stdin pipe once it is written
        self.target = None  # where SIGTERM is forwarded (_forward)
        self.watch = {}  # fd -> call(): woken once when fd turns readable, then no longer watched
        self.uid = posix.getuid()  # the only peer uid served
        self._poll = None
        self._registered = {}

    def _forward(self, number, _frame):
        """A signal handler: pass ``number`` on to :attr:`target`."""
        if self.target is not None:
            try:  # noqa: SIM105 - contextlib is an import this lean module does not make
                posix.kill(self.target, number)
            except ProcessLookupError:
                pass

    # -- the loop -------------------------------------------------------------------------------------------------

    def pump(self):
        """Copy the outputs to the log and the clients until they all end, and the clients' input to the process;
        then close a stdin pipe (the process sees EOF: its outputs ended anyway)."""
        for fd in self.outputs:
            posix.set_blocking(fd, False)
        if self.input_fd is not None:
            posix.set_blocking(self.input_fd, False)
        self._poll = select.poll()
        self._registered = {}
        while self.outputs:
            wanted = {fd: _IN for fd in self.outputs}
            for fd in self.watch:
                wanted[fd] = _IN
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
            for fd, mask in self._poll.poll():
                if fd in self.watch:
                    self._forget(fd)
                    self.watch.pop(fd)()
                elif fd in self.outputs:
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
            self._close_fd(self.input_fd)

    def _reconcile(self, wanted):
        for fd in [fd for fd in self._registered if fd not in wanted]:
            self._forget(fd)
        for fd, events in wanted.items():
            current = self._registered.get(fd)
            if current is None:
                self._poll.register(fd, events)
            elif current != events:
                self._poll.modify(fd, events)
            self._registered[fd] = events

    def _forget(self, fd):
        if self._registered.pop(fd, None) is not None:
            try:  # noqa: SIM105 - contextlib is an import this lean module does not make
                self._poll.unregister(fd)
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
        """One read of an output into the log (if any) and every client; False at its end."""
        try:
            data = posix.read(fd, _READ_SIZE)
        except BlockingIOError:
            return True
        except OSError:  # EIO: a pty whose every slave end is closed
            data = b""
        if not data:
            return False
        stream = self.outputs[fd]
        if self.log is not None:
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
        """Act on a client's frames (``[(type, payload)]``): input to the process, a new terminal size, a detach."""
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
