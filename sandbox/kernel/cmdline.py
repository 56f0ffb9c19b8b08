"""Blank this process's command line, as /proc/PID/cmdline shows it to every local user.

A helper forked from sbx (the container monitor, an exec holder) inherits sbx's argv, and with it every ``-e
SECRET=...`` and the container's command; ``ps`` shows any process's command line to every user (TESTPLAN 63).
The kernel reads /proc/PID/cmdline from the process's own memory, between ``arg_start`` and ``arg_end`` (fields 48
and 49 of /proc/PID/stat), so overwriting that memory changes what it shows. A process may always write its own
memory through /proc/self/mem (the ptrace access check passes for oneself). The area is filled with the title and
NULs to its last byte: the kernel treats a non-NUL last byte as "the process rewrote its title past argv" and would
go on reading into the environment.

Python's ``sys.argv`` is a copy made at start-up and is not changed; nothing in Python reads the original again.
"""

from __future__ import annotations

import os

_ARG_START = 48  # field numbers of /proc/PID/stat, counting from 1 (proc(5))
_ARG_END = 49


def argument_area(stat_text: str) -> tuple[int, int]:
    """``(arg_start, arg_end)`` from the text of /proc/PID/stat (the command name may hold spaces and ')')."""
    fields = stat_text.rpartition(")")[2].split()
    first = 3  # the field after ")" is field 3 (state)
    return int(fields[_ARG_START - first]), int(fields[_ARG_END - first])


def blank_command_line(title: str, proc: str = "/proc/self") -> None:
    """Replace this process's command line with ``title`` (cut to fit); raises OSError when /proc refuses."""
    with open(f"{proc}/stat") as file:
        start, end = argument_area(file.read())
    size = end - start
    if size <= 0:
        return
    raw = os.fsencode(title)[: size - 1]
    fd = os.open(f"{proc}/mem", os.O_RDWR | os.O_CLOEXEC)
    try:
        os.pwrite(fd, raw + b"\0" * (size - len(raw)), start)
    finally:
        os.close(fd)
