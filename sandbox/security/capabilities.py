"""Linux capabilities by name (<linux/capability.h>) and the sets a container's root gets.

A container's root holds every capability *of its user namespace* unless they are dropped: enough to remount a
read-only volume read-write, unmount the masks on /proc or mount a fresh proc (issue 10, findings 1 and 7). So the
container gets Docker's default set, the one Docker documents for ``docker run``, minus ``--cap-drop``, plus
``--cap-add``. The set is a bit mask (bit N = capability N), the form capset(2) and /proc/PID/status use.
"""

from __future__ import annotations

from sandbox.errors import InvalidRunOption

NAMES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
)
"""Index = the capability's number (CAP_CHOWN = 0 ... CAP_CHECKPOINT_RESTORE = 40, Linux 5.9)."""

NUMBERS = {name: number for number, name in enumerate(NAMES)}
ALL = (1 << len(NAMES)) - 1

# Docker's (moby's oci/caps/defaults.go) default set for a container's root
DOCKER_DEFAULT = (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP", "SETPCAP",
    "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
)

CAP_SYS_ADMIN = NUMBERS["SYS_ADMIN"]


def parse_name(text: str) -> str:
    """``sys_admin``, ``SYS_ADMIN`` or ``CAP_SYS_ADMIN`` → ``SYS_ADMIN``; ``ALL`` stays ``ALL``."""
    name = text.strip().upper()
    if name.startswith("CAP_"):
        name = name[4:]
    if name != "ALL" and name not in NUMBERS:
        raise InvalidRunOption(
            f"unknown capability {text[:60]!r}", hint="use a name like NET_ADMIN or CAP_NET_ADMIN, or ALL"
        )
    return name


def mask(names) -> int:
    """The bit mask of capability names (``ALL`` = every capability sbx knows)."""
    bits = 0
    for name in names:
        bits |= ALL if name == "ALL" else 1 << NUMBERS[name]
    return bits


def names(bits: int) -> tuple[str, ...]:
    """The names of the capabilities in ``bits``, in number order."""
    return tuple(name for number, name in enumerate(NAMES) if bits >> number & 1)


def container_set(add: tuple[str, ...] = (), drop: tuple[str, ...] = (), privileged: bool = False) -> int:
    """Docker's rule: start from the default set (every capability with ``privileged``), drop, then add; ``ALL``
    in ``drop`` empties the set first, ``ALL`` in ``add`` fills it (so ``--cap-drop ALL --cap-add NET_RAW`` is
    NET_RAW alone)."""
    add = tuple(parse_name(name) for name in add)
    drop = tuple(parse_name(name) for name in drop)
    bits = ALL if privileged else mask(DOCKER_DEFAULT)
    bits &= ~mask(drop)
    bits |= mask(add)
    return bits
