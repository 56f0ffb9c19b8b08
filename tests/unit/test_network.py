"""The network package as data: -p parsing, Docker's ways of showing ports, /etc files, modes, helper argv."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from sandbox.errors import InvalidPort, InvalidRunOption, NetworkError, PortInUse
from sandbox.network import etcfiles, modes, pasta, slirp
from sandbox.network.ports import (
    PortMapping,
    check_free,
    check_unprivileged,
    expose_all,
    inspect_ports,
    merge,
    parse_publish,
    port_lines,
    ps_text,
)


@pytest.mark.parametrize(("text", "expected"), [
    ("80", [PortMapping(80, "tcp", "0.0.0.0", 0)]),
    ("8080:80", [PortMapping(80, "tcp", "0.0.0.0", 8080)]),
    ("127.0.0.1:8080:80/udp", [PortMapping(80, "udp", "127.0.0.1", 8080)]),
    ("127.0.0.1::80", [PortMapping(80, "tcp", "127.0.0.1", 0)]),
    ("[::1]:8080:80", [PortMapping(80, "tcp", "::1", 8080)]),
    ("8080-8081:80-81", [PortMapping(80, "tcp", "0.0.0.0", 8080), PortMapping(81, "tcp", "0.0.0.0", 8081)]),
    ("80-81", [PortMapping(80, "tcp", "0.0.0.0", 0), PortMapping(81, "tcp", "0.0.0.0", 0)]),
])
def test_parse_publish(text, expected):
    assert parse_publish(text) == expected


def test_parse_publish_uses_the_default_bind_address():
    assert parse_publish("8080:80", "127.0.0.1") == [PortMapping(80, "tcp", "127.0.0.1", 8080)]
    assert parse_publish("0.0.0.0:8080:80", "127.0.0.1")[0].host_ip == "0.0.0.0"


@pytest.mark.parametrize("text", ["", "x", "80/sctp", "0:80", "65536", "8080:80:90:1", "999.1.1.1:80:80",
                                  "8080-8082:80-81", "81-80", "1:2:3/", "[::1]80", "-1", "+80", " 80"])
def test_parse_publish_refuses(text):
    with pytest.raises(InvalidPort):
        parse_publish(text)


def test_merge_refuses_a_host_port_twice_and_drops_repeats():
    assert merge(parse_publish("8080:80") * 2) == (PortMapping(80, "tcp", "0.0.0.0", 8080),)
    with pytest.raises(InvalidPort, match="published twice"):
        merge(parse_publish("8080:80") + parse_publish("8080:81"))
    assert len(merge(parse_publish("8080:80") + parse_publish("8080:80/udp"))) == 2


def test_expose_all():
    assert expose_all(("80/tcp", "53/udp", "9000", "5000/sctp", "7000-7001/tcp")) == [
        PortMapping(80), PortMapping(53, "udp"), PortMapping(9000), PortMapping(7000), PortMapping(7001)]


def test_privileged_host_ports_name_the_sysctl():
    check_unprivileged(parse_publish("1024:80") + parse_publish("80"), 1024)
    with pytest.raises(InvalidPort, match=r"net\.ipv4\.ip_unprivileged_port_start") as caught:
        check_unprivileged(parse_publish("80:80"), 1024)
    assert "sysctl" in caught.value.hint


def test_ps_text_is_dockers():
    mappings = parse_publish("8080-8081:80-81") + parse_publish("127.0.0.1:5353:53/udp") + parse_publish("9000:90")
    assert ps_text(mappings) == "0.0.0.0:8080-8081->80-81/tcp, 0.0.0.0:9000->90/tcp, 127.0.0.1:5353->53/udp"
    assert ps_text(parse_publish("[::1]:8080:80")) == "[::1]:8080->80/tcp"
    assert ps_text([], ("80/tcp",)) == "80/tcp"


def test_port_lines_and_inspect():
    mappings = parse_publish("8080:80") + parse_publish("127.0.0.1:5353:53/udp")
    assert port_lines(mappings) == ["53/udp -> 127.0.0.1:5353", "80/tcp -> 0.0.0.0:8080"]
    assert port_lines(mappings, "80/tcp") == ["0.0.0.0:8080"]
    assert inspect_ports(mappings, ("443/tcp",)) == {
        "443/tcp": None, "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}],
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}


def test_mapping_json_round_trip_and_refusals():
    mapping = PortMapping(80, "udp", "127.0.0.1", 8080)
    assert PortMapping.from_json(mapping.to_json()) == mapping
    for bad in (None, [], ["0.0.0.0", 8080, 0, "tcp"], ["0.0.0.0", 8080, 80, "sctp"], ["x", 8080, 80, "tcp"],
                ["0.0.0.0", True, 80, "tcp"], ["0.0.0.0", 70000, 80, "tcp"]):
        with pytest.raises((ValueError, InvalidPort)):
            PortMapping.from_json(bad)


def test_check_free_names_the_port_and_its_holder():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with pytest.raises(PortInUse, match=f"127.0.0.1:{port}/tcp: address already in use by container web"):
            check_free(parse_publish(f"127.0.0.1:{port}:80"), holder=lambda mapping: "web")
    check_free(parse_publish(f"127.0.0.1:{port}:80"))  # released: free again


def test_modes():
    assert modes.parse_mode("slirp4netns") == "slirp4netns"
    assert modes.parse_mode("container:web") == "container:web"
    for bad in ("bridge", "container:", "", "host "):
        with pytest.raises(InvalidRunOption):
            modes.parse_mode(bad)
    assert modes.valid_stored("container:" + "a" * 64) and not modes.valid_stored("container:web")
    assert [m for m in ("none", "host", "slirp4netns", "pasta", "container:x") if modes.new_netns(m)] == [
        "none", "slirp4netns", "pasta"]
    assert modes.joined_container("container:abc") == "abc" and modes.joined_container("host") is None


def test_etc_files():
    hosts = etcfiles.hosts("web", "slirp4netns", [("db", "192.0.2.10")])
    assert "127.0.0.1\tlocalhost" in hosts and "10.0.2.100\tweb" in hosts and hosts.endswith("192.0.2.10\tdb\n")
    assert etcfiles.resolv_conf("slirp4netns") == "nameserver 10.0.2.3\n"
    assert etcfiles.resolv_conf("pasta") == "nameserver 169.254.1.1\n"
    assert etcfiles.resolv_conf("none") == ""
    assert etcfiles.resolv_conf("host", host_text="nameserver 192.0.2.1\n") == "nameserver 192.0.2.1\n"
    assert etcfiles.resolv_conf("slirp4netns", ["192.0.2.53"], ["a.example"]) == (
        "search a.example\nnameserver 192.0.2.53\n")
    assert etcfiles.resolv_conf("host", [], ["a.example"], "nameserver 192.0.2.1\n") == (
        "search a.example\nnameserver 192.0.2.1\n")
    assert etcfiles.parse_add_host("db:192.0.2.10") == ("db", "192.0.2.10")
    assert etcfiles.parse_add_host("v6=::1") == ("v6", "::1")
    for bad in ("db", "db:nope", ":192.0.2.1", "a b:192.0.2.1", "x\n127.0.0.1 evil:192.0.2.1"):
        with pytest.raises(InvalidRunOption):
            etcfiles.parse_add_host(bad)
    with pytest.raises(InvalidRunOption):
        etcfiles.parse_dns("8.8.8.8\nnameserver 1.2.3.4")
    with pytest.raises(InvalidRunOption):
        etcfiles.parse_search("a.example\nnameserver 1.2.3.4")


HELP_1_2 = """-c, --configure          bring up the interface
-e, --exit-fd=FD         specify the FD for terminating slirp4netns
-r, --ready-fd=FD        specify the FD to write to when the network is configured
-m, --mtu=MTU            specify MTU (default=1500, max=65521)
-a, --api-socket=PATH    specify API socket path
--disable-host-loopback  prohibit connecting to 127.0.0.1:* on the host namespace
--userns-path=PATH\t specify user namespace path
--enable-sandbox         create a new mount namespace
--enable-seccomp         enable seccomp to limit syscalls (experimental)
--macaddress=MAC         specify the MAC address of the TAP (only valid with -c)
"""


def test_slirp_command_uses_what_the_version_supports():
    flags = slirp.supported_flags(HELP_1_2)
    assert flags == frozenset(slirp.WANTED)
    argv = slirp.command("slirp4netns", flags, 42, 5, 6, Path("/run/x/slirp.sock"), "02:00:00:00:00:01")
    assert argv[:4] == ["slirp4netns", "--configure", "--ready-fd=5", "--exit-fd=6"]
    for flag in ("--mtu=65520", "--disable-host-loopback", "--enable-sandbox", "--enable-seccomp",
                 "--api-socket=/run/x/slirp.sock", "--userns-path=/proc/42/ns/user"):
        assert flag in argv
    assert argv[-2:] == ["42", "tap0"]
    old = slirp.supported_flags("\n".join(line for line in HELP_1_2.splitlines() if "seccomp" not in line
                                          and "sandbox" not in line))
    assert "--enable-seccomp" not in slirp.command("slirp4netns", old, 42, 5, 6, None, None)
    with pytest.raises(NetworkError, match="--exit-fd"):
        slirp.command("slirp4netns", frozenset({"--configure", "--ready-fd"}), 42, 5, 6, None, None)


def test_slirp_hostfwd_request():
    request = slirp.hostfwd_request(PortMapping(80, "udp", "127.0.0.1", 8080))
    assert request == {"execute": "add_hostfwd", "arguments": {
        "proto": "udp", "host_addr": "127.0.0.1", "host_port": 8080, "guest_addr": "10.0.2.100", "guest_port": 80}}


def test_pasta_command_keeps_the_host_loopback_out_and_forwards_only_what_is_published():
    argv = pasta.command("pasta", 42, parse_publish("8080:80") + parse_publish("127.0.0.1:5353:53/udp"),
                         Path("/run/x/pasta.pid"), None)
    assert argv[argv.index("-t") + 1] == "8080:80" and argv[argv.index("-u") + 1] == "127.0.0.1/5353:53"
    assert argv[argv.index("-T") + 1] == "none" and argv[argv.index("-U") + 1] == "none"
    assert "--no-map-gw" in argv and "-f" in argv and argv[-1] == "42"
    bare = pasta.command("pasta", 42, (), Path("/run/x/pasta.pid"), None)
    assert bare[bare.index("-t") + 1] == "none" and bare[bare.index("-u") + 1] == "none"


def test_pasta_reads_the_default_route_without_pyroute2(tmp_path):
    table = tmp_path / "route"
    table.write_text("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
                     "lo\t0000FEA9\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
                     "lo\t00000000\t0102000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n")
    assert pasta.host_route(str(table)) == ("127.0.0.1", "10.0.2.1")
    assert pasta.host_route(str(tmp_path / "missing")) == (None, None)


def test_slirp_probe_is_cached_per_binary(tmp_path):
    program = tmp_path / "slirp4netns"
    program.write_text("#!/bin/sh\necho '--configure --ready-fd=FD --exit-fd=FD --enable-seccomp'\n")
    program.chmod(0o755)
    cache = tmp_path / "flags"
    assert slirp.probe(str(program), cache) == {"--configure", "--ready-fd", "--exit-fd", "--enable-seccomp"}
    program.chmod(0o644)  # the same binary, no longer executable: only the cache can answer
    assert slirp.probe(str(program), cache) == {"--configure", "--ready-fd", "--exit-fd", "--enable-seccomp"}
    program.write_text("#!/bin/sh\nexit 1\n")  # another binary is probed again
    program.chmod(0o755)
    assert slirp.probe(str(program), cache) == frozenset()


def test_spec_keeps_ports_and_refuses_damaged_ones():
    import json

    from sandbox.errors import StoreCorrupt
    from sandbox.runtime.spec import ContainerSpec
    from tests.unit.test_spec_json import overlay_spec

    spec = overlay_spec(network="container:" + "c" * 64, ports=tuple(parse_publish("127.0.0.1:8080-8081:80-81/udp")))
    data = json.loads(json.dumps(spec.to_json()))
    assert ContainerSpec.from_json(data) == spec
    older = dict(data)
    del older["ports"]  # a spec written before -p existed
    assert ContainerSpec.from_json(older).ports == ()
    for bad in ([["0.0.0.0", 8080, 80, "sctp"]], "8080:80", [["x", 1, 2, "tcp"]]):
        with pytest.raises(StoreCorrupt, match="ports"):
            ContainerSpec.from_json({**data, "ports": bad})
    for network in ("container:web", "bridge"):
        with pytest.raises(StoreCorrupt, match="network"):
            ContainerSpec.from_json({**data, "network": network})


def test_holder_names_the_running_container_publishing_the_port():
    from types import SimpleNamespace

    from sandbox.monitor.network import SETTINGS_KEY, holder

    def record(name, state, ports):
        return SimpleNamespace(id=name * 4, name=name, state=SimpleNamespace(value=state),
                               spec={SETTINGS_KEY: {"ports": [m.to_json() for m in ports]}})

    store = SimpleNamespace(list=lambda: [
        record("old", "exited", parse_publish("8080:80")),
        record("web", "running", parse_publish("127.0.0.1:8080:80")),
        record("dns", "running", parse_publish("5353:53/udp")),
        SimpleNamespace(id="x", name="damaged", state=SimpleNamespace(value="running"),
                        spec={SETTINGS_KEY: {"ports": [["nope"]]}}),
    ])
    assert holder(store, parse_publish("8080:80")[0], "me") == "web"  # 0.0.0.0 overlaps 127.0.0.1
    assert holder(store, parse_publish("127.0.0.2:8080:80")[0], "me") is None
    assert holder(store, parse_publish("5353:53")[0], "me") is None  # tcp, not udp
    assert holder(store, parse_publish("5353:53/udp")[0], "me") == "dns"
    assert holder(store, parse_publish("8080:80")[0], "web" * 4) is None  # never itself


def test_the_none_start_path_imports_no_network_helper_code():
    import subprocess
    import sys

    code = ("import sys\nfrom sandbox.runtime import launcher\nfrom sandbox.monitor import monitor, network\n"
            "from sandbox.network import modes\n"
            "print(sorted(m for m in sys.modules if m.startswith(('pyroute2', 'sandbox.network.'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "['sandbox.network.modes']"
