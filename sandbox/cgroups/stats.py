"""`sbx stats`: one sample of a container's usage, from its cgroup's files or, without one, from /proc.

With a cgroup (cgroup v2 files, as Docker reads them): CPU from ``cpu.stat`` ``usage_usec``; memory is
``memory.current`` less ``inactive_file`` of ``memory.stat`` (Docker's "usage" on v2), the limit ``memory.max`` or
the machine's memory; block I/O the ``rbytes``/``wbytes`` sums of ``io.stat``; ``pids.current``. Without one the
same figures are summed over the processes of the container's pid namespace (``/proc/PID/stat``, ``statm``, ``io``):
ticks, resident pages, ``read_bytes``/``write_bytes``. Network I/O is ``/proc/<pid 1>/net/dev`` (all interfaces
but ``lo``) either way. CPU % needs two samples: :func:`cpu_percent`.
"""

from __future__ import annotations

import os
from pathlib import Path

from sandbox.cgroups.delegation import read_words
from sandbox.cgroups.tree import events
from sandbox.valueclass import valueclass


@valueclass
class Sample:
    at: float  # time.monotonic() of the reading
    cpu_usec: int
    memory: int  # bytes in use
    memory_limit: int
    block_read: int
    block_write: int
    net_rx: int
    net_tx: int
    pids: int


def sample(cgroup: Path | None, pid: int, at: float, *, proc: Path = Path("/proc"), memory_limit: int = 0) -> Sample:
    """One reading for the container whose pid 1 is ``pid`` (host pid); ``memory_limit`` is what to show as its
    limit where no cgroup gives one (0: the machine's memory)."""
    total = memory_total(proc / "meminfo")
    rx, tx = network(proc / str(pid) / "net" / "dev")
    if cgroup is not None and cgroup.is_dir():
        current = _number(cgroup / "memory.current")
        usage = max(0, current - events(cgroup / "memory.stat").get("inactive_file", 0))
        limit = _number(cgroup / "memory.max") or memory_limit or total
        read, write = block_io(cgroup / "io.stat")
        pids = _number(cgroup / "pids.current") if (cgroup / "pids.current").exists() else \
            len(read_words(cgroup / "cgroup.threads"))
        return Sample(at, events(cgroup / "cpu.stat").get("usage_usec", 0), usage, limit, read, write, rx, tx, pids)
    cpu, memory, read, write, count = _proc_usage(proc, pid)
    limit = memory_limit or total
    return Sample(at, cpu, memory, limit, read, write, rx, tx, count)


def cpu_percent(before: Sample, after: Sample) -> float:
    """CPU time over wall time, in percent of one CPU (200% is two CPUs busy), as Docker shows it."""
    wall = after.at - before.at
    if wall <= 0:
        return 0.0
    return max(0.0, (after.cpu_usec - before.cpu_usec) / 1e6 / wall * 100.0)


def memory_total(meminfo: Path) -> int:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def network(dev: Path) -> tuple[int, int]:
    """Received and sent bytes of every interface but lo (proc(5) net/dev: two header lines)."""
    rx = tx = 0
    try:
        lines = dev.read_text().splitlines()[2:]
    except OSError:
        return 0, 0
    for line in lines:
        name, _, counters = line.partition(":")
        fields = counters.split()
        if name.strip() == "lo" or len(fields) < 9:
            continue
        try:
            rx += int(fields[0])
            tx += int(fields[8])
        except ValueError:
            continue
    return rx, tx


def block_io(path: Path) -> tuple[int, int]:
    """io.stat: ``MAJ:MIN rbytes=N wbytes=N rios=N ...`` per device."""
    read = write = 0
    try:
        text = path.read_text()
    except OSError:
        return 0, 0
    for line in text.splitlines():
        for item in line.split()[1:]:
            key, _, value = item.partition("=")
            if key in ("rbytes", "wbytes") and value.isdigit():
                if key == "rbytes":
                    read += int(value)
                else:
                    write += int(value)
    return read, write


def _number(path: Path) -> int:
    """A single-value file; "max" (no limit) reads as 0."""
    try:
        text = path.read_text().strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0


def _proc_usage(proc: Path, pid: int) -> tuple[int, int, int, int, int]:
    """(cpu µs, resident bytes, read bytes, written bytes, processes) of pid ``pid``'s pid namespace."""
    try:
        namespace = os.readlink(proc / str(pid) / "ns" / "pid")
    except OSError:
        return 0, 0, 0, 0, 0
    ticks_per_second = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    cpu = memory = read = write = count = 0
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        base = proc / entry
        try:
            if os.readlink(base / "ns" / "pid") != namespace:
                continue
            stat = (base / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            cpu += (int(fields[11]) + int(fields[12])) * 1_000_000 // ticks_per_second  # utime, stime: 14, 15
            memory += int((base / "statm").read_text().split()[1]) * page
        except (OSError, ValueError, IndexError):
            continue
        count += 1
        try:
            io = {key: int(value) for key, _, value in
                  (line.partition(": ") for line in (base / "io").read_text().splitlines())}
            read += io.get("read_bytes", 0)
            write += io.get("write_bytes", 0)
        except (OSError, ValueError):
            pass
    return cpu, memory, read, write, count
