"""Networking as the unprivileged user (TESTPLAN part F): published ports through slirp4netns and pasta, reached
with a real HTTP client on 127.0.0.1; clashes, the host's loopback out of reach, container:NAME, and the helper
gone after every way a container ends. Traffic stays on loopback and inside the namespaces the tests make."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures import imagebuild
from tests.integration.helpers import wait_for

BACKENDS = ("slirp4netns", "pasta")
# busybox httpd serving one page; `exec` so that httpd is pid 1 and the container ends with it
HTTPD = "mkdir -p /www && echo hello from $(hostname) > /www/index.html && exec httpd -f -p {port} -h /www"


UDP_ECHO = ("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', 9000))\n"
            "while True:\n    data, peer = s.recvfrom(64)\n    print('got', data.decode(), flush=True)\n"
            "    s.sendto(data.upper(), peer)\n")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(port: int, timeout: float = 20.0) -> str:
    """The page at 127.0.0.1:PORT, retried until the server answers (the helper and httpd start concurrently)."""
    answer: list[str] = []

    def fetch() -> bool:
        with contextlib.suppress(OSError), urllib.request.urlopen(  # noqa: S310 - a loopback URL the test made
                f"http://127.0.0.1:{port}/", timeout=2) as response:
            answer.append(response.read().decode())
            return True
        return False

    assert wait_for(fetch, timeout=timeout, interval=0.1), f"nothing answered on 127.0.0.1:{port}"
    return answer[0]


def serve(sbx, name: str, *flags: str, port: int = 80):
    return sbx("run", "-d", "--name", name, *flags, "busybox", "sh", "-c", HTTPD.format(port=port))


def helpers_of(container_id: str) -> list[int]:
    """Pids of the network helpers of one container: its runtime dir (in the helper's argv) is named by its id."""
    container_id = container_id[:16]
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) in (b"slirp4netns", b"pasta") and any(
                container_id.encode() in arg for arg in argv):
            found.append(int(entry))
    return found


def inspect(sbx, name: str) -> dict:
    return json.loads(sbx("inspect", name).stdout)[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_published_port_serves_http(busybox, backend):
    port = free_port()
    serve(busybox, "web", "--network", backend, "-p", f"{port}:80", "--hostname", "web")
    assert http_get(port) == "hello from web\n"
    shown = f"0.0.0.0:{port}->80/tcp"
    assert shown in busybox("ps").stdout
    assert busybox("port", "web").stdout == f"80/tcp -> 0.0.0.0:{port}\n"
    assert busybox("port", "web", "80").stdout == f"0.0.0.0:{port}\n"
    settings = inspect(busybox, "web")["NetworkSettings"]
    assert settings["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
    assert settings["IPAddress"] and settings["MacAddress"].startswith("02:")


def test_default_network_is_slirp4netns_with_its_resolver(busybox, tmp_path):
    busybox.write_config(f'[registries."docker.io"]\nmirrors = ["{busybox.registry.host}"]\n')  # no network line
    result = busybox("run", "--rm", "--dns-search", "example.com", "--add-host", "db:192.0.2.10", "busybox", "sh",
                     "-c", "ls /sys/class/net; cat /etc/resolv.conf /etc/hosts")
    assert "tap0" in result.stdout.split()
    assert "nameserver 10.0.2.3" in result.stdout and "search example.com" in result.stdout
    assert "192.0.2.10\tdb" in result.stdout
    custom = busybox("run", "--rm", "--network", "slirp4netns", "--dns", "192.0.2.53", "busybox", "cat",
                     "/etc/resolv.conf")
    assert custom.stdout == "nameserver 192.0.2.53\n"


@pytest.mark.parametrize("backend", BACKENDS)
def test_udp(busybox, backend):
    udp = free_port(socket.SOCK_DGRAM)
    # busybox has no UDP server: the host's python3, bound in read-only, logs each datagram (and answers it)
    busybox("run", "-d", "--name", "udp", "--network", backend, "-p", f"127.0.0.1:{udp}:9000/udp",
            "-v", "/usr:/usr:ro", "-v", "/lib:/lib:ro", "-v", "/lib64:/lib64:ro", "busybox", "/usr/bin/python3",
            "-c", UDP_ECHO)

    def delivered() -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"datagram", ("127.0.0.1", udp))
        return "got datagram" in busybox("logs", "udp").stdout

    assert wait_for(delivered, timeout=20, interval=0.1)
    # Only the way in is checked: an answer to a client on the host's loopback is lost by both helpers as Debian 12
    # ships them (libslirp 4.7 addresses it to 10.0.2.2, which --disable-host-loopback blocks; pasta 2023-03 has
    # nothing bound where its loopback splice should take it back)
    assert f"127.0.0.1:{udp}->9000/udp" in busybox("ps").stdout


def test_port_ranges(busybox):
    low = free_port()
    while True:  # two consecutive free host ports
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", low + 1))
                break
            except OSError:
                low = free_port()
    script = "mkdir -p /www && echo ranged > /www/index.html && httpd -p 81 -h /www && exec httpd -f -p 80 -h /www"
    busybox("run", "-d", "--name", "ranged", "--network", "pasta", "-p", f"{low}-{low + 1}:80-81", "busybox", "sh",
            "-c", script)
    assert http_get(low) == "ranged\n" and http_get(low + 1) == "ranged\n"
    assert f"0.0.0.0:{low}-{low + 1}->80-81/tcp" in busybox("ps").stdout


@pytest.fixture
def exposing(busybox):
    """An image whose config exposes 80/tcp and 9000/udp (-P publishes both)."""
    base = imagebuild.build_layer(imagebuild.busybox_entries(), "gzip", "docker")
    image = imagebuild.build_image("webbox", [base], style="docker", cmd=["sh"], exposed_ports=["80/tcp", "9000/udp"])
    imagebuild.push_built(busybox.registry.session(None), "webbox", "latest", image)
    busybox("pull", "-q", f"{busybox.registry.host}/webbox")
    return f"{busybox.registry.host}/webbox"


def test_publish_all_exposed_ports(busybox, exposing):
    busybox("run", "-d", "--name", "all", "--network", "slirp4netns", "-P", exposing, "sh", "-c",
            HTTPD.format(port=80))
    lines = dict(line.split(" -> ") for line in busybox("port", "all").stdout.splitlines())
    assert set(lines) == {"80/tcp", "9000/udp"}
    host, _, port = lines["80/tcp"].rpartition(":")
    assert host == "0.0.0.0" and http_get(int(port)).startswith("hello from")


def test_port_in_use_stops_the_second_container_and_the_first_keeps_serving(busybox):
    port = free_port()
    serve(busybox, "first", "--network", "slirp4netns", "-p", f"{port}:80", "--hostname", "first")
    assert http_get(port) == "hello from first\n"
    clash = busybox("run", "-d", "--name", "second", "--network", "pasta", "-p", f"{port}:80", "busybox", "true",
                    check=False)
    assert clash.returncode == 125
    lines = clash.stderr.strip().splitlines()
    assert len(lines) == 1 and str(port) in lines[0] and "already in use" in lines[0] and "first" in lines[0]
    assert inspect(busybox, "second")["State"]["Status"] == "exited"
    assert http_get(port) == "hello from first\n"
    below = busybox("run", "--rm", "--network", "slirp4netns", "-p", "80:80", "busybox", "true", check=False)
    assert below.returncode == 125 and "net.ipv4.ip_unprivileged_port_start" in below.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_host_loopback_is_out_of_reach(busybox, backend):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.settimeout(0.5)
        port = server.getsockname()[1]
        # slirp4netns: 10.0.2.2 is the host's loopback unless disabled; pasta: the gateway and, with -T auto,
        # the container's own 127.0.0.1 would be
        script = (f"for a in 10.0.2.2 $(ip route | awk '/default/ {{print $3}}') 127.0.0.1; do "
                  f"timeout 3 nc -w 2 $a {port} </dev/null; done; echo done")
        result = busybox("run", "--rm", "--network", backend, "busybox", "sh", "-c", script)
        assert "done" in result.stdout
        with pytest.raises(TimeoutError):  # a connection that got through waits in the backlog
            server.accept()[0].close()


def test_container_network_shares_the_port_space(busybox):
    port = free_port()
    serve(busybox, "main", "--network", "slirp4netns", "-p", f"{port}:80", "--hostname", "main")
    assert http_get(port) == "hello from main\n"
    sidecar = busybox("run", "--rm", "--network", "container:main", "busybox", "wget", "-qO-", "http://127.0.0.1/")
    assert sidecar.stdout == "hello from main\n"
    # and the other way round: what the sidecar serves, the published port of the first reaches
    second = free_port()
    busybox("run", "-d", "--name", "side", "--network", "container:main", "busybox", "sh", "-c",
            "mkdir -p /s && echo side > /s/index.html && exec httpd -f -p 8081 -h /s")
    assert wait_for(lambda: busybox("exec", "main", "wget", "-qO-", "http://127.0.0.1:8081/",
                                    check=False).stdout == "side\n", timeout=20, interval=0.2)
    assert second  # the sidecar publishes nothing of its own
    assert busybox("run", "--rm", "--network", "container:main", "-p", f"{second}:80", "busybox", "true",
                   check=False).returncode == 125


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as handle:
        return int(handle.read().rpartition(")")[2].split()[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_helper_goes_with_the_container(busybox, backend):
    ways = {
        "stop": lambda name, record: busybox("stop", "-t", "1", name),
        "rm": lambda name, record: busybox("rm", "-f", name),
        "kill-pid1": lambda name, record: os.kill(record["State"]["Pid"], signal.SIGKILL),
        # the monitor is pid 1's parent (it clones pid 1)
        "kill-monitor": lambda name, record: os.kill(_parent(record["State"]["Pid"]), signal.SIGKILL),
    }
    for way, end in ways.items():
        name = f"gone-{way}"
        container_id = busybox("run", "-d", "--name", name, "--network", backend, "-p", f"{free_port()}:80",
                               "busybox", "sleep", "300").stdout.strip()
        assert wait_for(lambda: len(helpers_of(container_id)) == 1, timeout=10), way  # noqa: B023
        if way == "stop" and backend == "slirp4netns":  # TESTPLAN 48: confined, its API socket in a 0700 dir
            argv = Path(f"/proc/{helpers_of(container_id)[0]}/cmdline").read_bytes().decode().split("\0")
            assert {"--enable-sandbox", "--enable-seccomp", "--disable-host-loopback"} <= set(argv)
            api = Path(next(arg for arg in argv if arg.startswith("--api-socket=")).partition("=")[2])
            assert api.is_socket() and (api.parent.stat().st_mode & 0o777) == 0o700
        end(name, inspect(busybox, name))
        assert wait_for(lambda: not helpers_of(container_id), timeout=10), f"{backend} left running after {way}"  # noqa: B023


def test_network_host_sees_the_hosts_interfaces(busybox):
    seen = busybox("run", "--rm", "--network", "host", "busybox", "ls", "/sys/class/net").stdout.split()
    assert sorted(seen) == sorted(os.listdir("/sys/class/net")) and len(seen) > 1


def listening_on(port: int) -> set[str]:
    """The addresses the host's TCP listeners on ``port`` are bound to (from /proc/net/tcp, no traffic needed)."""
    found = set()
    with open("/proc/net/tcp") as handle:
        for line in handle.read().splitlines()[1:]:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.add(socket.inet_ntoa(int(address, 16).to_bytes(4, "little")))
    return found


def test_loopback_only_bind_address_from_the_config(busybox):
    busybox.write_config(f'port_bind_address = "127.0.0.1"\n[registries."docker.io"]\n'
                         f'mirrors = ["{busybox.registry.host}"]\n')
    port, everywhere = free_port(), free_port()
    serve(busybox, "local", "-p", f"{port}:80", "-p", f"0.0.0.0:{everywhere}:80", "--hostname", "local")
    assert http_get(port) == "hello from local\n"
    assert listening_on(port) == {"127.0.0.1"} and listening_on(everywhere) == {"0.0.0.0"}
    assert f"127.0.0.1:{port}->80/tcp" in busybox("ps").stdout
