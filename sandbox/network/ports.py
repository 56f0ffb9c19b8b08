"""Published ports: Docker's ``-p [ip:][hostport:]containerport[/tcp|udp]`` (with ranges) and ``-P``, the checks
made before a helper binds anything, and the ways Docker shows them (``ps``, ``port``, ``inspect``).

A host port of 0 means "any free port", chosen when the container starts (:func:`assign`), as Docker does for
``-P`` and ``-p 80``. Rootless helpers bind on the host as the user, so a host port below the kernel's
``net.ipv4.ip_unprivileged_port_start`` cannot be published: :func:`check_unprivileged` says so before anything
starts.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from sandbox.errors import InvalidPort, PortInUse
from sandbox.valueclass import valueclass

PROTOCOLS = ("tcp", "udp")
ALL_INTERFACES = "0.0.0.0"
LOOPBACK = "127.0.0.1"
UNPRIVILEGED_PORT_START = "/proc/sys/net/ipv4/ip_unprivileged_port_start"
_HINT = "use -p [ip:][hostport:]containerport[/tcp|udp], e.g. -p 8080:80 or -p 127.0.0.1:8080-8081:80-81/udp"


@valueclass(order=True)
class PortMapping:
    container_port: int
    proto: str = "tcp"
    host_ip: str = ALL_INTERFACES
    host_port: int = 0  # 0: any free port, chosen at start

    def to_json(self) -> list:
        return [self.host_ip, self.host_port, self.container_port, self.proto]

    @classmethod
    def from_json(cls, data: object) -> PortMapping:
        if not (isinstance(data, list) and len(data) == 4 and isinstance(data[0], str) and data[3] in PROTOCOLS
                and all(isinstance(n, int) and not isinstance(n, bool) for n in data[1:3])
                and 0 <= data[1] <= 65535 and 0 < data[2] <= 65535):
            raise ValueError("a port mapping is [host_ip, host_port, container_port, tcp|udp]")
        _address(data[0], data[0])
        return cls(data[2], data[3], data[0], data[1])

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.host_ip else socket.AF_INET

    @property
    def key(self) -> str:
        return f"{self.container_port}/{self.proto}"


def parse_publish(text: str, default_ip: str = ALL_INTERFACES) -> list[PortMapping]:
    """The mappings one ``-p`` value asks for (several with a range)."""
    spec, _, proto = text.partition("/")
    proto = proto or "tcp"
    if proto not in PROTOCOLS:
        raise InvalidPort(f"invalid protocol {proto[:20]!r} in -p {text[:80]!r}", hint="use tcp or udp")
    host_ip = ""
    if spec.startswith("["):  # [::1]:8080:80
        inside, bracket, rest = spec[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise InvalidPort(f"invalid -p value {text[:80]!r}", hint=_HINT)
        host_ip, spec = inside, rest[1:]
        parts = spec.split(":")
        if len(parts) != 2:
            raise InvalidPort(f"invalid -p value {text[:80]!r}", hint=_HINT)
        host_text, container_text = parts
    else:
        parts = spec.split(":")
        if len(parts) == 1:
            host_text, container_text = "", parts[0]
        elif len(parts) == 2:
            host_text, container_text = parts
        elif len(parts) == 3:
            host_ip, host_text, container_text = parts
        else:
            raise InvalidPort(f"invalid -p value {text[:80]!r}", hint=_HINT)
    host_ip = _address(host_ip, text) if host_ip else default_ip
    container = _range(container_text, text)
    host = _range(host_text, text) if host_text else None
    if host is not None and len(host) != len(container):
        raise InvalidPort(
            f"invalid -p value {text[:80]!r}: the host and container port ranges differ in length",
            hint="give ranges of the same length, e.g. -p 8080-8081:80-81",
        )
    return [PortMapping(port, proto, host_ip, host[index] if host else 0) for index, port in enumerate(container)]


def expose_all(exposed: tuple[str, ...] | list[str], default_ip: str = ALL_INTERFACES) -> list[PortMapping]:
    """``-P``: every port the image exposes (``80/tcp``, ``53/udp``, ``8000-8001``) to any free host port."""
    found = []
    for item in exposed:
        number, _, proto = str(item).partition("/")
        proto = (proto or "tcp").lower()
        if proto not in PROTOCOLS:
            continue  # sctp and the like: no rootless helper forwards them
        found.extend(PortMapping(port, proto, default_ip, 0) for port in _range(number, str(item)))
    return found


def merge(mappings: list[PortMapping]) -> tuple[PortMapping, ...]:
    """Sorted, without repeats; one host port cannot be published twice."""
    unique = sorted(set(mappings))
    taken: dict[tuple, PortMapping] = {}
    for mapping in unique:
        if mapping.host_port == 0:
            continue
        where = (mapping.host_ip, mapping.host_port, mapping.proto)
        if where in taken:
            raise InvalidPort(
                f"host port {mapping.host_port}/{mapping.proto} is published twice",
                hint="publish each host port once",
            )
        taken[where] = mapping
    return tuple(unique)


def _range(text: str, whole: str) -> list[int]:
    first, dash, last = text.partition("-")
    try:
        low = int(first, 10)
        high = int(last, 10) if dash else low
    except ValueError:
        raise InvalidPort(f"invalid port {text[:20]!r} in {whole[:80]!r}", hint=_HINT) from None
    if not (0 < low <= high <= 65535) or not first.isdigit() or (dash and not last.isdigit()):
        raise InvalidPort(f"invalid port range {text[:20]!r} in {whole[:80]!r}", hint="ports are 1-65535, low-high")
    return list(range(low, high + 1))


def _address(text: str, whole: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise InvalidPort(f"invalid IP address {text[:60]!r} in {whole[:80]!r}", hint=_HINT) from None


# -- before anything binds ------------------------------------------------------------------------------------------


def unprivileged_port_start(path: str = UNPRIVILEGED_PORT_START) -> int:
    try:
        with open(path, "rb") as handle:
            return int(handle.read(32).strip() or b"1024")
    except (OSError, ValueError):
        return 1024


def check_unprivileged(mappings, start: int) -> None:
    """A rootless helper binds as the user: a port below ``start`` would fail later, with less to go on."""
    for mapping in mappings:
        if 0 < mapping.host_port < start:
            raise InvalidPort(
                f"cannot publish host port {mapping.host_port}: ports below {start} are privileged "
                f"(net.ipv4.ip_unprivileged_port_start)",
                hint=f"publish a host port of {start} or more, or ask an administrator to lower "
                f"the sysctl net.ipv4.ip_unprivileged_port_start",
            )


def assign(mappings, pick=None) -> tuple[PortMapping, ...]:
    """The mappings with every host port 0 replaced by a free port (``pick(mapping) -> port``)."""
    pick = pick or free_port
    return tuple(mapping if mapping.host_port else
                 PortMapping(mapping.container_port, mapping.proto, mapping.host_ip, pick(mapping))
                 for mapping in mappings)


def free_port(mapping: PortMapping) -> int:
    """A port the kernel calls free on the mapping's address and protocol (bound and released at once)."""
    kind = socket.SOCK_STREAM if mapping.proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(mapping.family, kind) as sock:
        sock.bind((mapping.host_ip, 0))
        return sock.getsockname()[1]


def check_free(mappings, holder=None) -> None:
    """Bind each host port once and let go, so a clash stops the container before it starts.

    TCP binds with SO_REUSEADDR: only a listener blocks it, never a connection lingering in TIME_WAIT. ``holder(
    mapping)`` names the user's container that publishes the port, if one does (for the message)."""
    for mapping in mappings:
        kind = socket.SOCK_STREAM if mapping.proto == "tcp" else socket.SOCK_DGRAM
        with socket.socket(mapping.family, kind) as sock:
            if mapping.proto == "tcp":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((mapping.host_ip, mapping.host_port))
            except OSError as error:
                raise port_error(mapping, error, holder) from None


def port_error(mapping: PortMapping, error: OSError, holder=None):
    where = f"{_host(mapping.host_ip)}:{mapping.host_port}/{mapping.proto}"
    if error.errno == errno.EADDRINUSE:
        owner = holder(mapping) if holder else None
        by = f" by container {owner}" if owner else ""
        return PortInUse(
            f"cannot publish {where}: address already in use{by}",
            hint=f"stop {owner} or publish another host port" if owner else "publish another host port",
        )
    if error.errno == errno.EACCES:
        return InvalidPort(f"cannot publish {where}: permission denied (net.ipv4.ip_unprivileged_port_start)",
                           hint="publish a higher host port")
    return PortInUse(f"cannot publish {where}: {error.strerror}", hint="publish another host address or port")


# -- showing them ---------------------------------------------------------------------------------------------------


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def ps_text(mappings, exposed: tuple[str, ...] = ()) -> str:
    """Docker's PORTS column: ``0.0.0.0:8080->80/tcp``, consecutive ports as ranges, exposed-only as ``80/tcp``."""
    items = sorted(mappings, key=lambda m: (m.host_ip, m.proto, m.container_port, m.host_port))
    groups: list[list[PortMapping]] = []
    for mapping in items:
        last = groups[-1][-1] if groups else None
        if (last is not None and last.host_ip == mapping.host_ip and last.proto == mapping.proto
                and mapping.container_port == last.container_port + 1 and mapping.host_port == last.host_port + 1):
            groups[-1].append(mapping)
        else:
            groups.append([mapping])
    texts = []
    for group in groups:
        first, last = group[0], group[-1]
        host = f"{first.host_port}" if len(group) == 1 else f"{first.host_port}-{last.host_port}"
        inner = f"{first.container_port}" if len(group) == 1 else f"{first.container_port}-{last.container_port}"
        texts.append(f"{_host(first.host_ip)}:{host}->{inner}/{first.proto}")
    published = {mapping.key for mapping in mappings}
    texts.extend(key for key in _exposed_keys(exposed) if key not in published)
    return ", ".join(texts)


def _exposed_keys(exposed) -> list[str]:
    keys = []
    for item in exposed:
        number, _, proto = str(item).partition("/")
        try:
            ports = _range(number, str(item))
        except InvalidPort:
            continue
        keys.extend(f"{port}/{(proto or 'tcp').lower()}" for port in ports)
    return keys


def port_lines(mappings, private: str | None = None) -> list[str]:
    """`docker port`: ``80/tcp -> 0.0.0.0:8080`` lines, or only ``0.0.0.0:8080`` for one private port."""
    lines = []
    for mapping in sorted(mappings):
        if private is not None:
            if mapping.key == private:
                lines.append(f"{_host(mapping.host_ip)}:{mapping.host_port}")
        else:
            lines.append(f"{mapping.key} -> {_host(mapping.host_ip)}:{mapping.host_port}")
    return lines


def inspect_ports(mappings, exposed: tuple[str, ...] = ()) -> dict:
    """``NetworkSettings.Ports``: ``{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "53/udp": null}``."""
    ports: dict = {key: None for key in _exposed_keys(exposed)}
    for mapping in sorted(mappings):
        ports.setdefault(mapping.key, None)
        if ports[mapping.key] is None:
            ports[mapping.key] = []
        ports[mapping.key].append({"HostIp": mapping.host_ip, "HostPort": str(mapping.host_port)})
    return ports


def port_bindings(mappings) -> dict:
    """``HostConfig.PortBindings``: what was asked for, ``{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}``,
    with ``""`` for a host port chosen at start."""
    bindings: dict = {}
    for mapping in sorted(mappings):
        bindings.setdefault(mapping.key, []).append(
            {"HostIp": mapping.host_ip, "HostPort": str(mapping.host_port) if mapping.host_port else ""})
    return bindings


def summary_ports(mappings) -> list[dict]:
    """The container list's ``Ports``: ``[{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}]``."""
    return [{"IP": mapping.host_ip, "PrivatePort": mapping.container_port, "PublicPort": mapping.host_port,
             "Type": mapping.proto} for mapping in sorted(mappings)]
