"""Resource commands: `stats` (Docker's columns, from the container's cgroup or /proc), `pause` and `unpause`
(cgroup.freeze)."""

from __future__ import annotations

import sys
import time

from sandbox.cli.params import Argument, Option
from sandbox.cli.render import escape, human_size, json_line, listing_template_given, out, table

HEADERS = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"]
TEMPLATE_HEADERS = {"Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
                    "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O",
                    "PIDs": "PIDS"}
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_INTERVAL = 1.0  # seconds between the two readings a CPU % needs, and between refreshes


def stats(
    names: list[str] = Argument(None, metavar="[CONTAINER...]"),
    all_containers: bool = Option(False, "--all", "-a", help="Show all containers (default shows just running)."),
    no_stream: bool = Option(False, "--no-stream", help="Disable streaming stats and only pull the first result."),
    no_trunc: bool = Option(False, "--no-trunc", help="Do not truncate output."),
    output_format: str = Option(
        "table", "--format", help="table, json, or a Go template (e.g. 'table {{.Name}}\\t{{.CPUPerc}}')."
    ),
) -> None:
    """Display a live stream of container(s) resource usage statistics."""
    from sandbox.cli.containers import _lifecycle

    template = listing_template_given(output_format)
    lifecycle = _lifecycle()
    before = _readings(lifecycle, list(names or []), all_containers)
    try:
        while True:
            time.sleep(_INTERVAL)
            after = _readings(lifecycle, list(names or []), all_containers)
            rows = [stats_row(record, before.get(record.id, (None, None))[1], sample, no_trunc)
                    for record, sample in after.values()]
            if not no_stream:
                sys.stdout.write("\033[2J\033[H")  # Docker redraws the screen each time
            if template:
                from sandbox.cli.formatting import write_listing

                write_listing(output_format, rows, TEMPLATE_HEADERS)
            elif output_format == "json":
                for row in rows:
                    out(json_line(row))
            else:
                out(table(HEADERS, [[row["ID"], row["Name"], row["CPUPerc"], row["MemUsage"], row["MemPerc"],
                                     row["NetIO"], row["BlockIO"], row["PIDs"]] for row in rows]))
            sys.stdout.flush()
            if no_stream:
                return
            before = after
    except KeyboardInterrupt:
        return


def _readings(lifecycle, names: list[str], all_containers: bool) -> dict:
    """{id: (record, Sample or None)}: None for a container that does not run."""
    from sandbox.cgroups.limits import Resources
    from sandbox.cgroups.stats import sample

    found = {}
    for record, cgroup in lifecycle.stats(names, all_containers=all_containers):
        reading = None
        if record.state.value == "running" and record.pid:
            limit = Resources.from_json(lifecycle.resources(record)).memory if lifecycle.resources(record) else 0
            reading = sample(cgroup, record.pid, time.monotonic(), memory_limit=limit)
        found[record.id] = (record, reading)
    return found


def stats_row(record, before, after, no_trunc: bool = False) -> dict:
    """Docker's `stats --format json` object; "--" where a container does not run."""
    from sandbox.cgroups.stats import cpu_percent

    row = {"BlockIO": "--", "CPUPerc": "--", "Container": record.id if no_trunc else record.id[:12],
           "ID": record.id if no_trunc else record.id[:12], "MemPerc": "--", "MemUsage": "-- / --",
           "Name": escape(record.name), "NetIO": "--", "PIDs": "--"}
    if after is None:
        return row
    percent = cpu_percent(before, after) if before is not None else 0.0
    memory_percent = after.memory / after.memory_limit * 100 if after.memory_limit else 0.0
    row.update({
        "BlockIO": f"{human_size(after.block_read)} / {human_size(after.block_write)}",
        "CPUPerc": f"{percent:.2f}%",
        "MemPerc": f"{memory_percent:.2f}%",
        "MemUsage": f"{binary_size(after.memory)} / {binary_size(after.memory_limit)}",
        "NetIO": f"{human_size(after.net_rx)} / {human_size(after.net_tx)}",
        "PIDs": str(after.pids),
    })
    return row


def binary_size(size: float) -> str:
    """go-units BytesSize: powers of 1024, four significant digits (1.5MiB, 7.657GiB, 0B)."""
    index = 0
    while size >= 1024 and index < len(_BINARY) - 1:
        size /= 1024.0
        index += 1
    return f"{size:.4g}{_BINARY[index]}"


def pause(names: list[str] = Argument(..., metavar="CONTAINER [CONTAINER...]")) -> None:
    """Pause all processes within one or more containers."""
    from sandbox.cli.containers import _each, _lifecycle

    lifecycle = _lifecycle()
    _each(names, lambda name: lifecycle.pause(name, True))


def unpause(names: list[str] = Argument(..., metavar="CONTAINER [CONTAINER...]")) -> None:
    """Unpause all processes within one or more containers."""
    from sandbox.cli.containers import _each, _lifecycle

    lifecycle = _lifecycle()
    _each(names, lambda name: lifecycle.pause(name, False))
