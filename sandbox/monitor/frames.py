"""The attach frame, defined once: a type byte, a 4-byte big-endian length, the payload.

Imports only the built-in ``_socket``, so that both :mod:`sandbox.monitor.attach` (the client, the full monitor)
and the detached monitor's lean loop (:mod:`sandbox.monitor.steady`) use this one definition, and the one
:class:`Client` a monitor keeps per attached client. Protocol errors are ``ValueError``; :mod:`sandbox.monitor.attach`
turns them into its ``AttachProtocolError``.
"""

import _socket

STDIN = 1
RESIZE = 2
DETACH = 3
STDOUT = 4
STDERR = 5
EXIT = 6
TYPES = frozenset({STDIN, RESIZE, DETACH, STDOUT, STDERR, EXIT})

HEADER_SIZE = 5
MAX_PAYLOAD = 1024 * 1024
CLIENT_BUFFER_LIMIT = 4 * 1024 * 1024  # a client whose unsent output passes this is dropped
_CHUNK = 64 * 1024
CLIENT_LIMIT = 256  # attached clients at once
INPUT_LIMIT = 256 * 1024  # attached input waiting for the process: clients are not read beyond this


def encode(frame_type, payload=b""):
    """One frame; ValueError for an unknown type or a payload over :data:`MAX_PAYLOAD`."""
    if frame_type not in TYPES:
        raise ValueError(f"unknown attach frame type {frame_type}")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"attach frame of {len(payload)} bytes is over the limit of {MAX_PAYLOAD}")
    return bytes((frame_type,)) + len(payload).to_bytes(4, "big") + bytes(payload)


def encode_data(frame_type, data):
    """Data of any length, as as many frames as it takes."""
    return b"".join(encode(frame_type, data[i : i + MAX_PAYLOAD]) for i in range(0, len(data), MAX_PAYLOAD))


def split(buffer, limit=MAX_PAYLOAD):
    """Take the complete frames off the front of ``buffer`` (a bytearray): ``[(type, payload), ...]``. ValueError
    for an unknown type or a length over ``limit`` (the connection is then to be ended)."""
    frames = []
    while len(buffer) >= HEADER_SIZE:
        frame_type = buffer[0]
        length = int.from_bytes(buffer[1:HEADER_SIZE], "big")
        if frame_type not in TYPES:
            raise ValueError(f"unknown attach frame type {frame_type}")
        if length > limit:
            raise ValueError(f"attach frame of {length} bytes is over the limit of {limit}")
        end = HEADER_SIZE + length
        if len(buffer) < end:
            break
        frames.append((frame_type, bytes(buffer[HEADER_SIZE:end])))
        del buffer[:end]
    return frames


def parse_resize(payload):
    """``(rows, cols)`` of a RESIZE payload (JSON ``{"rows": R, "cols": C}``), read without the json module: the
    lean loop has none. ValueError when it is not exactly such an object of two integers in 0..65535."""
    text = payload.decode("ascii").strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise ValueError("malformed resize message")
    found = {}
    for item in text[1:-1].split(","):
        key, sep, value = item.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not (key.startswith('"') and key.endswith('"')) or not value.isdigit() or len(value) > 5:
            raise ValueError("malformed resize message")
        found[key[1:-1]] = int(value)
    rows, cols = found.get("rows"), found.get("cols")
    if rows is None or cols is None or len(found) != 2 or rows > 0xFFFF or cols > 0xFFFF:
        raise ValueError("malformed resize message")
    return rows, cols


def exit_payload(code):
    """EXIT's payload, ``{"code": N}`` (``null`` when unknown), as ``json.dumps`` writes it."""
    return b'{"code": ' + (b"null" if code is None else str(int(code)).encode()) + b"}"


class Client:
    """One attached client, seen from a monitor: frames in, bytes waiting to go out. Never blocks."""

    def __init__(self, sock):
        self.sock = sock
        self.sock.setblocking(False)
        self.incoming = bytearray()
        self.outgoing = bytearray()

    def fileno(self):
        return self.sock.fileno()

    def queue(self, data):
        """Queue bytes; False when the client is too far behind (:data:`CLIENT_BUFFER_LIMIT`) and must be dropped."""
        self.outgoing += data
        return len(self.outgoing) <= CLIENT_BUFFER_LIMIT

    def receive(self):
        """Frames that arrived (``[(type, payload)]``); None when the client closed or broke the protocol."""
        try:
            data = self.sock.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:
            return None
        if not data:
            return None
        self.incoming += data
        try:
            return split(self.incoming)
        except ValueError:
            return None

    def flush(self):
        """Send what the socket takes now; False when the client is gone."""
        if not self.outgoing:
            return True
        try:
            sent = self.sock.send(self.outgoing, _socket.MSG_NOSIGNAL)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        del self.outgoing[:sent]
        return True

    def send_all(self, data=b"", timeout=1.0):
        """Send what is queued plus ``data``, waiting at most ``timeout``; OSError when it could not."""
        self.outgoing += data
        self.sock.settimeout(timeout)
        self.sock.sendall(self.outgoing, _socket.MSG_NOSIGNAL)
        self.outgoing.clear()

    def finish(self, data, timeout=1.0):
        """Send what is queued plus ``data`` (waiting at most ``timeout``), then close."""
        try:
            self.send_all(data, timeout)
        except OSError:
            self.outgoing.clear()
        self.close()

    def close(self):
        try:  # noqa: SIM105 - contextlib is an import this lean module does not make
            self.sock.close()
        except OSError:
            pass
