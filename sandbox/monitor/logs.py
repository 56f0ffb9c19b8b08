"""The container log: JSON lines in Docker's json-file format, rotated by size.

Each line is ``{"log": "text chunk", "stream": "stdout"|"stderr", "time": "2026-11-28T21:10:48.123456789Z"}``;
a chunk ends with its newline, except a partial last line, which is written as it came. ``ctr.log`` is the
current file, ``ctr.log.1`` the one before it, and so on up to ``max_files`` files in all. The writer is
:mod:`sandbox.monitor.logwriter`'s (the detached monitor's lean loop writes with it too).
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from sandbox.monitor.logwriter import DEFAULT_MAX_BYTES, DEFAULT_MAX_FILES, STREAMS, LogWriter, format_time  # noqa: F401
from sandbox.valueclass import valueclass

POLL_INTERVAL = 0.1


@valueclass
class LogEntry:
    stream: str
    time: float  # seconds since the epoch
    text: str


def parse_time(text: str) -> float:
    """The inverse of :func:`format_time`; accepts any number of fraction digits. Raises ValueError."""
    if not text.endswith("Z"):
        raise ValueError(f"not a UTC time: {text!r}")
    import calendar  # here: the monitor only writes times, and this import is ~0.3 MB it would hold for nothing

    main, _, fraction = text[:-1].partition(".")
    whole = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
    if fraction and not fraction.isdigit():
        raise ValueError(f"bad fraction in {text!r}")
    return whole + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


def log_files(path: Path) -> list[Path]:
    """The log's files, oldest first: ``ctr.log.N`` ... ``ctr.log.1``, ``ctr.log``."""
    path = Path(path)
    rotated = []
    for candidate in path.parent.glob(f"{path.name}.*"):
        suffix = candidate.name[len(path.name) + 1:]
        if suffix.isdigit():
            rotated.append((int(suffix), candidate))
    files = [candidate for _, candidate in sorted(rotated, reverse=True)]
    if path.exists():
        files.append(path)
    return files


def parse_line(line: bytes | str) -> LogEntry | None:
    """One log line as an entry, or None when it is malformed."""
    try:
        record = json.loads(line)
        if not isinstance(record, dict):
            return None
        text, stream, stamp = record.get("log"), record.get("stream"), record.get("time")
        if not isinstance(text, str) or stream not in STREAMS or not isinstance(stamp, str):
            return None
        return LogEntry(stream, parse_time(stamp), text)
    except (ValueError, TypeError):
        return None


def _entries(file_path: Path) -> Iterator[LogEntry]:
    try:
        with open(file_path, "rb") as file:
            for line in file:
                if not line.endswith(b"\n"):
                    break  # a line still being written
                entry = parse_line(line)
                if entry is not None:
                    yield entry
    except FileNotFoundError:
        return


def read_logs(path: Path, *, tail: int | None = None, since: float | None = None) -> Iterator[LogEntry]:
    """The log's entries, oldest first; ``since`` keeps those at or after that time, ``tail`` the last N."""
    entries: Iterator[LogEntry] = (entry for file in log_files(path) for entry in _entries(file))
    if since is not None:
        entries = (entry for entry in entries if entry.time >= since)
    if tail is not None:
        if tail <= 0:
            return iter(())
        return iter(deque(entries, maxlen=tail))
    return entries


def snapshot(path: Path, *, tail: int | None = None, since: float | None = None) -> tuple[list[LogEntry], int]:
    """:func:`read_logs` now, and how many complete lines the current file had: where a :func:`follow` that must
    lose nothing written meanwhile starts (``skip_lines``)."""
    path = Path(path)
    older = [entry for file in log_files(path) if file != path for entry in _entries(file)]
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        data = b""
    complete = data[: data.rfind(b"\n") + 1]
    current = [entry for entry in map(parse_line, complete.splitlines()) if entry is not None]
    entries: Iterator[LogEntry] = iter(older + current)
    if since is not None:
        entries = (entry for entry in entries if entry.time >= since)
    if tail is not None:
        entries = iter(deque(entries, maxlen=tail)) if tail > 0 else iter(())
    return list(entries), complete.count(b"\n")


def follow(path: Path, stop: Callable[[], bool], *, interval: float = POLL_INTERVAL,
           sleep: Callable[[float], None] = time.sleep, skip_lines: int | None = None) -> Iterator[LogEntry]:
    """Yield entries appended to the log from now on until ``stop()`` is true and the end is reached; with
    ``skip_lines``, those after the first ``skip_lines`` lines of the current file (see :func:`snapshot`).

    A rotation (the file replaced by a new one) is noticed by its inode: the rest of the old file is read first.
    """
    path = Path(path)
    file = None
    inode = None
    buffer = b""

    def reopen():
        nonlocal file, inode, buffer
        try:
            new = open(path, "rb")  # noqa: SIM115 - kept open across yields
        except FileNotFoundError:
            return False
        if file is not None:
            file.close()
        file, inode, buffer = new, os.fstat(new.fileno()).st_ino, b""
        return True

    if reopen():
        if skip_lines is None:
            file.seek(0, os.SEEK_END)
        else:
            for _ in range(skip_lines):
                file.readline()
    try:
        while True:
            stopping = stop()  # checked before reading, so what was written before stop() is still read
            progressed = False
            if file is not None:
                chunk = file.read()
                if chunk:
                    progressed = True
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        entry = parse_line(line)
                        if entry is not None:
                            yield entry
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            # rotated: the old file's rest is read (this round) before the new one is opened (a later round)
            if current is not None and current != inode and (file is None or not progressed):
                progressed = reopen()
            if stopping and not progressed:
                return
            if not progressed:
                sleep(interval)
    finally:
        if file is not None:
            file.close()
