"""Masked and read-only paths, as data (Docker's lists, moby ``oci/defaults.go``).

A masked file gets /dev/null bound over it, a masked directory an empty read-only tmpfs; a read-only path is bound
onto itself read-only. Without CAP_SYS_ADMIN (Docker's default set) and with the default seccomp profile the
container can neither unmount nor remount them. ``--security-opt unmask=PATH[:PATH...]`` (or ``unmask=ALL``, as
Podman spells it; ``--privileged`` implies it) leaves the named ones visible.
"""

from __future__ import annotations

MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


def masked(unmask: tuple[str, ...] = ()) -> tuple[str, ...]:
    return tuple(path for path in MASKED_PATHS if not _unmasked(path, unmask))


def read_only(unmask: tuple[str, ...] = ()) -> tuple[str, ...]:
    return tuple(path for path in READONLY_PATHS if not _unmasked(path, unmask))


def _unmasked(path: str, unmask: tuple[str, ...]) -> bool:
    return "ALL" in unmask or path in unmask
