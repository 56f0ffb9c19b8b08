"""The container log's writer, lean enough for the detached monitor's steady loop (:mod:`sandbox.monitor.steady`).

It imports only modules built into the interpreter (``posix``, ``time``, ``_json``): the loop that runs for the
container's whole life holds nothing else. :mod:`sandbox.monitor.logs` (the format, reading, following) takes its
writer from here, so there is one writer. Each line is what ``json.dumps({"log": ..., "stream": ..., "time": ...},
ensure_ascii=False)`` writes: ``_json.encode_basestring`` is the very function json uses for a string then.
"""

import posix
import time
from _json import encode_basestring

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_FILES = 2
STREAMS = ("stdout", "stderr")


def format_time(seconds):
    """RFC 3339 in UTC with nanoseconds, as Docker writes it."""
    whole = int(seconds)
    nanos = int(round((seconds - whole) * 1e9))
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{nanos:09d}Z"


def encode_lines(stream, data, stamp):
    """``data`` as log lines: one per line of output (a partial last line as it came), each ending in a newline."""
    head = '{"log": '
    tail = ', "stream": ' + encode_basestring(stream) + ', "time": ' + encode_basestring(stamp) + "}\n"
    return "".join(head + encode_basestring(line.decode("utf-8", "replace")) + tail
                   for line in data.splitlines(keepends=True)).encode()


class LogWriter:
    """Appends output chunks to a JSON-lines log, one line per line of output, rotating by size: ``ctr.log`` is the
    current file, ``ctr.log.1`` the one before it, and so on up to ``max_files`` files in all."""

    def __init__(self, path, max_bytes=DEFAULT_MAX_BYTES, max_files=DEFAULT_MAX_FILES, clock=time.time):
        self.path = posix.fspath(path)
        self.max_bytes = max_bytes
        self.max_files = max(1, max_files)
        self.clock = clock
        self._fd = None
        self._size = 0

    def _open(self):
        if self._fd is None:
            self._fd = posix.open(self.path, posix.O_WRONLY | posix.O_APPEND | posix.O_CREAT | posix.O_CLOEXEC, 0o600)
            self._size = posix.fstat(self._fd).st_size
        return self._fd

    def write(self, stream, data):
        if stream not in STREAMS:
            raise ValueError(f"unknown stream {stream!r}")
        if not data:
            return
        out = encode_lines(stream, data, format_time(self.clock()))
        if self._size and self._size + len(out) > self.max_bytes:
            self._rotate()
        fd = self._open()
        view = memoryview(out)
        while view:
            view = view[posix.write(fd, view):]
        self._size += len(out)

    def _rotate(self):
        self.close()
        if self.max_files <= 1:
            try:  # noqa: SIM105 - contextlib is an import this lean module does not make
                posix.unlink(self.path)
            except FileNotFoundError:
                pass
            return
        for index in range(self.max_files - 1, 0, -1):
            source = self.path if index == 1 else f"{self.path}.{index - 1}"
            try:  # noqa: SIM105 - contextlib is an import this lean module does not make
                posix.replace(source, f"{self.path}.{index}")
            except FileNotFoundError:
                pass

    def close(self):
        if self._fd is not None:
            posix.close(self._fd)
            self._fd = None
            self._size = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
