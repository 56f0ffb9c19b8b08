"""The pasta backend (Debian's ``passt``): the container's namespace gets a copy of the host's addresses and
routes, and published ports are forwarded by pasta's own ``-t``/``-u`` options, with splice(2) for TCP — several
times faster than slirp4netns's forwarder.

pasta is given pid 1's pid (before it execs) and joins its user and network namespaces itself. It runs in the
foreground (``-f``) as the monitor's child, with the parent-death signal set, and writes its pid file (``-P``) once the
namespace is configured (``--config-net``), which is the readiness signal waited for. ``-t none -u none`` when
nothing is published (its default, ``auto``, would forward every port the container binds), ``-T none -U none``
(its default would let the container reach every port bound on the host's loopback) and ``--no-map-gw`` (the
gateway address would be the host) keep the host's loopback out of reach, like slirp4netns's
``--disable-host-loopback``. DNS sent to 169.254.1.1 goes to the host's resolver (``--dns-forward``).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import time
from pathlib import Path

from sandbox.errors import NetworkError
from sandbox.network.backend import READY_TIMEOUT, Backend, install_hint
from sandbox.network.etcfiles import PASTA_DNS

PID_NAME = "pasta.pid"
LOG_NAME = "pasta.log"


def port_options(ports) -> list[str]:
    """``-t``/``-u`` specs: ``[ADDR/]HOSTPORT:CONTAINERPORT``, one per mapping, or ``none``."""
    options = []
    for proto, flag in (("tcp", "-t"), ("udp", "-u")):
        specs = []
        for mapping in ports:
            if mapping.proto != proto:
                continue
            where = "" if mapping.host_ip in ("0.0.0.0", "::") else f"{mapping.host_ip}/"
            specs.append(f"{where}{mapping.host_port}:{mapping.container_port}")
        options += [flag, ",".join(specs) if specs else "none"]
    return options


def command(program: str, pid: int, ports, pid_file: Path, mac: str | None) -> list[str]:
    argv = [program, "--config-net", "-f", "-q", *port_options(ports), "-T", "none", "-U", "none", "--no-map-gw",
            "--dns-forward", PASTA_DNS, "-P", str(pid_file)]
    if mac:
        argv += ["--ns-mac-addr", mac]
    return [*argv, str(pid)]


class Pasta(Backend):
    name = "pasta"
    dns = PASTA_DNS

    def __init__(self, runtime_dir: Path, ports, kernel, program: str | None = None) -> None:
        super().__init__(runtime_dir, ports, kernel, program)
        self.pid_file = self.runtime_dir / PID_NAME
        self.log = self.runtime_dir / LOG_NAME

    def start(self, pid: int) -> None:
        program = self.program or shutil.which("pasta")
        if program is None:
            raise NetworkError("pasta is not installed", hint=install_hint(self.name))
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
        try:
            self._spawn(command(program, pid, self.ports, self.pid_file, self.mac_address), (), self.log)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def settings(self) -> dict:
        if self.address is None:
            self.address, self.gateway = host_route()
        return super().settings()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        delay = 0.001
        while not self.pid_file.exists():
            if self.process.poll() is not None:
                raise self._failed(self.log, "failed to start")
            if time.monotonic() > deadline:
                raise NetworkError("pasta did not become ready", hint="see its log: " + str(self.log))
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    def stop(self) -> None:
        self._terminate(lambda process: process.send_signal(signal.SIGTERM))
        for path in (self.pid_file, self.log):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def host_route(route_table: str = "/proc/net/route") -> tuple[str | None, str | None]:
    """The IPv4 address and gateway pasta copied into the namespace: those of the host's default route.

    Read from /proc/net/route and one SIOCGIFADDR ioctl rather than with pyroute2's netlink: importing pyroute2
    takes 0.5-1 s here, more than the whole start it would describe."""
    import fcntl
    import struct

    try:
        with open(route_table) as handle:
            rows = [line.split() for line in handle.read().splitlines()[1:]]
    except OSError:
        return None, None
    for row in rows:
        if len(row) >= 8 and row[1] == "00000000" and row[7] == "00000000":  # destination 0/0: the default route
            gateway = socket.inet_ntoa(struct.pack("<I", int(row[2], 16)))
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    answer = fcntl.ioctl(sock, 0x8915, struct.pack("256s", row[0].encode()[:15]))  # SIOCGIFADDR
                return socket.inet_ntoa(answer[20:24]), gateway
            except OSError:
                return None, gateway
    return None, None
