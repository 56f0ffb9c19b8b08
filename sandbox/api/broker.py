"""Starts that clients attached to before they happened, and the exit codes `wait` reports.

The docker CLI's `run` creates a container, attaches to it and asks to wait for it *before* it starts it. A monitor
gives a client only what the container writes after the client connected, so an attach that arrives for a created
container leaves a :class:`Slot` here, and the start connects every slot while the monitor holds the container
(its ``on_listening``), as a foreground `sbx run` does. The start also connects one watcher of the broker's own,
which reads the monitor's EXIT frame: that is how `wait` learns the exit code of an AutoRemove container whose
record the monitor removes as soon as it has exited. Containers started by someone else (`sbx start`) are waited
for by their record alone.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from sandbox.errors import ContainerStartError, SbxError
from sandbox.monitor import attach as protocol
from sandbox.valueclass import field, valueclass

_POLL = 0.1
SLOT_TIMEOUT = 3600.0  # how long an attach to a created container waits for its start


@valueclass(frozen=False)
class Slot:
    """An attach waiting for its container's start: ``sock`` is its monitor connection once it started."""

    container_id: str
    ready: threading.Event = field(default_factory=threading.Event)
    sock: socket.socket | None = None
    cancelled: bool = False


class Broker:
    def __init__(self, lifecycle) -> None:
        self.lifecycle = lifecycle
        self.changed = threading.Condition()
        self.slots: dict[str, list[Slot]] = {}
        self.exits: dict[str, int] = {}  # container id → exits seen by a watcher
        self.codes: dict[str, int | None] = {}  # container id → the last exit code a watcher saw
        self.watched: set[str] = set()

    # -- attaching before the start ---------------------------------------------------------------------------

    def slot(self, container_id: str) -> Slot:
        slot = Slot(container_id)
        with self.changed:
            self.slots.setdefault(container_id, []).append(slot)
        return slot

    def await_slot(self, slot: Slot, timeout: float = SLOT_TIMEOUT, gone=lambda: False) -> socket.socket | None:
        """The slot's monitor connection once the container started; None when it was removed or never started,
        or the client left (``gone()``)."""
        deadline = time.monotonic() + timeout
        while not slot.ready.wait(_POLL * 5):
            try:
                record = self.lifecycle.get(slot.container_id)
            except SbxError:
                record = None
            if record is None or time.monotonic() > deadline or record.state.value == "running" or gone():
                with self.changed:
                    if slot.ready.is_set():
                        break
                    slot.cancelled = True
                    pending = self.slots.get(slot.container_id, [])
                    if slot in pending:
                        pending.remove(slot)
                if record is not None and record.state.value == "running":  # started by someone else
                    with contextlib.suppress(protocol.AttachError):
                        return protocol.connect(protocol.socket_path(self.lifecycle.settings.runtime_root,
                                                                     record.id))
                return None
        return slot.sock

    def start(self, container_id: str) -> None:
        """Start the container with every waiting slot, and the broker's watcher, connected before it runs.

        Waiters wait for the start's outcome: a start that fails is an exit with its code (127 for a command not
        found), which is what `docker run` reports for it."""
        with self.changed:
            slots = self.slots.pop(container_id, [])
            self.watched.add(container_id)
        connected: list[socket.socket] = []

        def connect_all(path) -> None:
            for slot in slots:
                try:
                    slot.sock = protocol.connect(path)
                except protocol.AttachError:
                    continue
            watcher = protocol.connect(path)
            connected.append(watcher)

        try:
            self.lifecycle.start(container_id, on_listening=connect_all)
        except ContainerStartError as error:
            self._exited(container_id, error.exit_code)
            raise
        except BaseException:
            self._exited(container_id, None)
            raise
        finally:
            for slot in slots:
                slot.ready.set()
        if connected:
            self._watch(container_id, connected[0])
        else:  # it was running already: its record tells
            with self.changed:
                self.watched.discard(container_id)

    def _watch(self, container_id: str, sock: socket.socket) -> None:
        with self.changed:
            self.watched.add(container_id)
        threading.Thread(target=self._read_exit, args=(container_id, sock), daemon=True).start()

    def _exited(self, container_id: str, code: int | None) -> None:
        with self.changed:
            self.codes[container_id] = code
            self.exits[container_id] = self.exits.get(container_id, 0) + 1
            self.watched.discard(container_id)
            self.changed.notify_all()

    def _read_exit(self, container_id: str, sock: socket.socket) -> None:
        reader = protocol.FrameReader()
        code = None
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                exits = [item for item in reader.feed(data) if item.type == protocol.EXIT]
                if exits:
                    code = protocol.parse_exit(exits[0])
                    break
        except (OSError, protocol.AttachProtocolError):
            pass
        finally:
            sock.close()
        if code is None:  # the monitor went without a word: its record says what it recorded
            with contextlib.suppress(SbxError):
                code = self.lifecycle.get(container_id).exit_code
        self._exited(container_id, code)

    # -- waiting -----------------------------------------------------------------------------------------------

    def wait(self, container_id: str, condition: str, gone=lambda: False) -> int | None:
        """Docker's wait conditions: ``not-running`` (now, if it is not running), ``next-exit`` (the next exit,
        even of a container not yet started) and ``removed`` (its exit, then its removal). None as soon as
        ``gone()`` says the client left."""
        with self.changed:
            seen = self.exits.get(container_id, 0)
        was_running = False
        code: int | None = None
        exited = False
        while not gone():
            with self.changed:
                if self.exits.get(container_id, 0) > seen:
                    exited, code = True, self.codes.get(container_id)
                watched = container_id in self.watched
            try:
                record = self.lifecycle.settled(container_id)  # the code its monitor records, not 255 before it
            except SbxError:
                record = None
            if record is None:  # removed; a watcher that has not yet read the EXIT frame still has the code
                if watched and not exited:
                    with self.changed:
                        self.changed.wait(_POLL)
                    continue
                if code is None and not exited:
                    with self.changed:
                        code = self.codes.get(container_id)
                return code if code is not None else 0
            state = record.state.value
            was_running = was_running or state == "running"
            if not exited and not watched and state == "exited" and (was_running or condition == "not-running"):
                exited, code = True, record.exit_code
            if condition == "not-running" and state == "created":
                exited, code = True, 0
            if exited and condition != "removed":
                return code if code is not None else record.exit_code or 0
            with self.changed:
                self.changed.wait(_POLL)
        return None
