"""What a container is made of, as frozen data: built by the service from the image config and the run flags,
handed to the launcher, and (later) persisted by the monitor. Nothing here touches the system."""

from __future__ import annotations

from dataclasses import dataclass, field

from sandbox.runtime.idmap import IdMap
from sandbox.runtime.rootfs import RootfsPlan

NETWORKS = ("none", "host")


@dataclass(frozen=True)
class Mount:
    """A mount the user asked for: ``-v``, ``--mount``, ``--tmpfs``."""

    kind: str  # "bind" or "tmpfs"
    target: str  # absolute path inside the container
    source: str | None = None  # host path for binds
    read_only: bool = False
    options: tuple[str, ...] = ()  # tmpfs: ("size=64m", "mode=1777")


@dataclass(frozen=True)
class Process:
    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str = "/"
    user: str = ""  # as given: "", "name", "1000", "1000:1000", "name:group"; resolved inside the root
    tty: bool = False
    stdin: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    id: str
    rootfs: RootfsPlan
    process: Process
    idmap: IdMap
    hostname: str
    mounts: tuple[Mount, ...] = ()
    read_only: bool = False
    network: str = "none"
    init: bool = False
    stop_signal: str | None = None
    etc_files: dict[str, str] = field(default_factory=dict)  # /etc/hostname, /etc/hosts, /etc/resolv.conf content
