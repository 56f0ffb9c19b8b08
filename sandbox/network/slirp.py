"""The slirp4netns backend: user-mode TCP/IP for the container's namespace, ports forwarded over its API socket.

slirp4netns is started by the monitor with the pid of a process already in the container's user and network
namespaces (pid 1); it joins the user namespace (``--userns-path``) so it may open the network namespace and
create ``tap0`` there, configures it (``--configure``: 10.0.2.100/24, gateway 10.0.2.2, DNS 10.0.2.3), writes a byte
on ``--ready-fd`` when done, and exits when ``--exit-fd`` reaches EOF. ``--disable-host-loopback`` keeps the
container from reaching services bound to the host's 127.0.0.1 through 10.0.2.2; ``--enable-sandbox`` (a mount
namespace with nothing in it, capabilities dropped) and ``--enable-seccomp`` confine the helper itself. Which of
these the installed version knows is read from its ``--help`` (:func:`supported_flags`).

Ports: one ``add_hostfwd`` request per mapping on the API socket (JSON in, JSON out, one request per connection).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import socket
import time
from pathlib import Path

from sandbox.errors import NetworkError
from sandbox.network.backend import READY_TIMEOUT, Backend, install_hint
from sandbox.network.etcfiles import SLIRP_ADDRESS, SLIRP_DNS, SLIRP_GATEWAY

MTU = 65520
WANTED = ("--configure", "--mtu", "--disable-host-loopback", "--enable-sandbox", "--enable-seccomp", "--ready-fd",
          "--exit-fd", "--api-socket", "--userns-path", "--macaddress")
REQUIRED = ("--configure", "--ready-fd", "--exit-fd")
API_TIMEOUT = 5.0
SOCKET_NAME = "slirp4netns.sock"
PROBE_NAME = "slirp4netns.flags"
LOG_NAME = "slirp4netns.log"


def supported_flags(help_text: str) -> frozenset[str]:
    """The flags of :data:`WANTED` that ``slirp4netns --help`` lists."""
    found = set()
    for line in help_text.splitlines():
        for word in line.replace(",", " ").split():
            name = word.split("=", 1)[0]
            if name in WANTED:
                found.add(name)
    return frozenset(found)


def probe(program: str, cache: Path) -> frozenset[str]:
    """The flags this slirp4netns supports: its ``--help``, read once per binary (size and mtime) and kept in
    ``cache`` (in the 0700 runtime root), since a start should not pay for a second exec of it."""
    import subprocess

    info = os.stat(program)
    key = [program, info.st_size, info.st_mtime_ns]
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(cache.read_text())
        if data.get("key") == key and isinstance(data.get("flags"), list):
            return frozenset(str(flag) for flag in data["flags"]) & frozenset(WANTED)
    try:
        help_text = subprocess.run([program, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as error:
        raise NetworkError(f"cannot run {program}: {error}", hint=install_hint("slirp4netns")) from None
    flags = supported_flags(help_text)
    with contextlib.suppress(OSError):
        temporary = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"key": key, "flags": sorted(flags)}))
        temporary.replace(cache)
    return flags


def command(program: str, flags: frozenset[str], pid: int, ready_fd: int, exit_fd: int, api_socket: Path | None,
            mac: str | None) -> list[str]:
    """The argv, using only what this version supports (:data:`REQUIRED` must be there)."""
    missing = [flag for flag in REQUIRED if flag not in flags]
    if missing:
        raise NetworkError(f"this slirp4netns does not support {missing[0]}", hint="install slirp4netns 1.1 or later")
    argv = [program, "--configure", f"--ready-fd={ready_fd}", f"--exit-fd={exit_fd}"]
    if "--mtu" in flags:
        argv.append(f"--mtu={MTU}")
    for flag in ("--disable-host-loopback", "--enable-sandbox", "--enable-seccomp"):
        if flag in flags:
            argv.append(flag)
    if api_socket is not None:
        if "--api-socket" not in flags:
            raise NetworkError("this slirp4netns has no API socket, so it cannot publish ports",
                               hint="install slirp4netns 0.3 or later, or run without -p")
        argv.append(f"--api-socket={api_socket}")
    if "--userns-path" in flags:
        argv.append(f"--userns-path=/proc/{pid}/ns/user")
    if mac and "--macaddress" in flags:
        argv.append(f"--macaddress={mac}")
    argv += [str(pid), "tap0"]
    return argv


def hostfwd_request(mapping) -> dict:
    return {"execute": "add_hostfwd", "arguments": {
        "proto": mapping.proto, "host_addr": mapping.host_ip, "host_port": mapping.host_port,
        "guest_addr": SLIRP_ADDRESS, "guest_port": mapping.container_port}}


class Slirp4netns(Backend):
    name = "slirp4netns"
    address = SLIRP_ADDRESS
    gateway = SLIRP_GATEWAY
    dns = SLIRP_DNS

    def __init__(self, runtime_dir: Path, ports, kernel, program: str | None = None) -> None:
        super().__init__(runtime_dir, ports, kernel, program)
        self.exit_w: int | None = None
        self.api_socket = self.runtime_dir / SOCKET_NAME
        self.log = self.runtime_dir / LOG_NAME

    def start(self, pid: int) -> None:
        for mapping in self.ports:
            if mapping.family != socket.AF_INET:
                raise NetworkError(f"slirp4netns cannot publish on {mapping.host_ip}",
                                   hint="publish on an IPv4 address, or use --network pasta")
        program = self.program or shutil.which("slirp4netns")
        if program is None:
            raise NetworkError("slirp4netns is not installed", hint=install_hint(self.name))
        flags = probe(program, self.runtime_dir.parent / PROBE_NAME)
        with contextlib.suppress(FileNotFoundError):
            self.api_socket.unlink()
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        exit_r, exit_w = os.pipe2(os.O_CLOEXEC)
        self.exit_w = exit_w  # the only write end: closing it (or dying) tells slirp4netns to exit
        try:
            argv = command(program, flags, pid, ready_w, exit_r,
                           self.api_socket if self.ports else None, self.mac_address)
            self._spawn(argv, (ready_w, exit_r), self.log)
            os.close(ready_w)
            ready_w = -1
            self._wait_ready(ready_r)
            for mapping in self.ports:
                self._forward(mapping)
        except BaseException:
            self.stop()
            raise
        finally:
            for fd in (ready_r, ready_w, exit_r):
                if fd >= 0:
                    os.close(fd)

    def _wait_ready(self, ready_r: int) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NetworkError("slirp4netns did not become ready", hint="see its log: " + str(self.log))
            if select.select([ready_r], [], [], min(left, 0.1))[0]:
                if os.read(ready_r, 16):
                    return
                raise self._failed(self.log, "failed to start")
            if self.process.poll() is not None:
                raise self._failed(self.log, "failed to start")

    def _forward(self, mapping) -> None:
        from sandbox.network.ports import check_free

        answer = self.call(hostfwd_request(mapping))
        if "error" in answer:
            check_free([mapping])  # the usual cause is a port taken since the check: say which, and by whom
            desc = answer["error"].get("desc") if isinstance(answer["error"], dict) else answer["error"]
            raise NetworkError(f"slirp4netns cannot publish {mapping.host_ip}:{mapping.host_port}: {desc}")

    def call(self, request: dict) -> dict:
        """One request on the API socket."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(API_TIMEOUT)
                sock.connect(str(self.api_socket))
                sock.sendall(json.dumps(request).encode())
                sock.shutdown(socket.SHUT_WR)
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
        except OSError as error:
            raise NetworkError(f"slirp4netns API socket: {error.strerror or error}") from None
        try:
            answer = json.loads(data or b"{}")
        except ValueError:
            raise NetworkError("slirp4netns answered its API socket with something that is not JSON") from None
        return answer if isinstance(answer, dict) else {"error": "not an object"}

    def stop(self) -> None:
        def close_exit_fd(_process) -> None:
            if self.exit_w is not None:
                with contextlib.suppress(OSError):
                    os.close(self.exit_w)
                self.exit_w = None

        if self.process is None:
            close_exit_fd(None)
        self._terminate(close_exit_fd)
        for path in (self.api_socket, self.log):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
