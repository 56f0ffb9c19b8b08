"""The Docker API's pieces that need no kernel: the create body's translation, the server's addresses, version
negotiation, the peer check, stream frames."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import pytest

from sandbox.api import server, streams
from sandbox.api.errors import ApiError
from sandbox.api.server import Routes, parse_uri
from sandbox.api.translate import create_request, publish_args

CLI_BODY = Path(__file__).resolve().parents[1] / "fixtures" / "docker_cli_create.json"


def cli_body(**changes) -> dict:
    """What docker CLI 28.2 sends for `docker run --rm -i busybox sh -c x` (every field at its zero value)."""
    body = json.loads(CLI_BODY.read_text())
    for key, value in changes.items():
        if key.startswith("HostConfig_"):
            body["HostConfig"][key.removeprefix("HostConfig_")] = value
        else:
            body[key] = value
    return body


# -- translate ------------------------------------------------------------------------------------------------------


def test_the_docker_clis_zero_values_are_accepted():
    wanted = create_request(cli_body(), "web")
    assert (wanted.image, wanted.args, wanted.auto_remove) == ("busybox", ["sh", "-c", "x"], True)
    assert wanted.options.name == "web" and wanted.options.interactive and not wanted.options.tty


def test_fields_become_run_options():
    body = cli_body(
        Env=["A=1"], User="33:33", WorkingDir="/tmp", Hostname="box", Tty=True, Entrypoint=["/bin/sh", "-e"],
        Cmd=["-c", "true"], Labels={"k": "v"}, HostConfig_Binds=["data:/data:ro"], HostConfig_NetworkMode="host",
        HostConfig_Mounts=[{"Type": "tmpfs", "Target": "/scratch", "TmpfsOptions": {"SizeBytes": 1024}}],
        HostConfig_Tmpfs={"/run": "size=1m"}, HostConfig_Init=True, HostConfig_ReadonlyRootfs=True,
        HostConfig_ConsoleSize=[30, 100],
    )
    wanted = create_request(body, None)
    options = wanted.options
    assert (options.entrypoint, wanted.args) == ("/bin/sh", ["-e", "-c", "true"])
    assert (options.env, options.user, options.workdir, options.hostname) == (["A=1"], "33:33", "/tmp", "box")
    assert (options.volumes, options.mounts, options.tmpfs) == (
        ["data:/data:ro"], ["type=tmpfs,target=/scratch,tmpfs-size=1024"], ["/run:size=1m"])
    assert (options.network, options.init, options.read_only, options.console_size) == ("host", True, True, (30, 100))
    assert wanted.labels == {"k": "v"}


def test_an_empty_entrypoint_list_keeps_the_images_and_one_empty_word_clears_it():
    assert create_request(cli_body(Entrypoint=[]), None).options.entrypoint is None
    assert create_request(cli_body(Entrypoint=[""]), None).options.entrypoint == ""


@pytest.mark.parametrize(("changes", "field"), [
    ({"HostConfig_CpuQuota": 50000}, "HostConfig.CpuQuota"),
    ({"HostConfig_Devices": [{"PathOnHost": "/dev/kvm"}]}, "HostConfig.Devices"),
    ({"HostConfig_DnsOptions": ["ndots:1"]}, "HostConfig.DnsOptions"),
    ({"HostConfig_Memory": True}, "HostConfig.Memory"),
    ({"HostConfig_Privileged": "yes"}, "HostConfig.Privileged"),
    ({"HostConfig_Ulimits": [{"Name": "nofile"}]}, "HostConfig.Ulimits"),
    ({"HostConfig_MemorySwappiness": 10}, "HostConfig.MemorySwappiness"),
    ({"HostConfig_RestartPolicy": {"Name": "always"}}, "HostConfig.RestartPolicy"),
    ({"HostConfig_LogConfig": {"Type": "syslog"}}, "HostConfig.LogConfig"),
    ({"HostConfig_NetworkMode": "mynet"}, "HostConfig.NetworkMode"),
    ({"Healthcheck": {"Test": ["CMD", "true"]}}, "Healthcheck"),
    ({"Volumes": {"/anon": {}}}, "Volumes"),
    ({"NetworkingConfig": {"EndpointsConfig": {"mynet": {}}}}, "NetworkingConfig"),
])
def test_what_sbx_cannot_honour_is_refused_by_name(changes, field):
    with pytest.raises(ApiError) as caught:
        create_request(cli_body(**changes), None)
    assert caught.value.status == 400 and field in caught.value.message


def test_published_ports_become_publish_options():
    body = cli_body(ExposedPorts={"80/tcp": {}, "443/tcp": {}},
                    HostConfig_PortBindings={"80/tcp": [{"HostIp": "", "HostPort": "18080"}]})
    options = create_request(body, None).options
    assert (options.publish, options.publish_all) == (["18080:80/tcp"], False)
    options = create_request({**body, "HostConfig": {**body["HostConfig"], "PublishAllPorts": True}}, None).options
    assert (options.publish, options.publish_all) == (["18080:80/tcp", "443/tcp"], True)


@pytest.mark.parametrize(("mode", "network"), [
    ("default", None), ("bridge", None), ("", None), ("none", "none"), ("host", "host"),
    ("slirp4netns", "slirp4netns"), ("pasta", "pasta"), ("container:web", "container:web"),
])
def test_network_modes(mode, network):
    assert create_request(cli_body(HostConfig_NetworkMode=mode), None).options.network == network
    endpoints = {"NetworkingConfig": {"EndpointsConfig": {mode or "default": {"Aliases": None}}}}
    assert create_request(cli_body(HostConfig_NetworkMode=mode, **endpoints), None).options.network == network


def test_security_and_limits_become_the_clis_flags():
    body = cli_body(
        HostConfig_CapAdd=["CAP_NET_ADMIN"], HostConfig_CapDrop=["ALL"], HostConfig_Privileged=True,
        HostConfig_SecurityOpt=["no-new-privileges", "seccomp=unconfined"], HostConfig_Memory=64 << 20,
        HostConfig_MemorySwap=-1, HostConfig_MemoryReservation=32 << 20, HostConfig_NanoCpus=1_500_000_000,
        HostConfig_CpuShares=512, HostConfig_CpusetCpus="0", HostConfig_PidsLimit=-1, HostConfig_BlkioWeight=300,
        HostConfig_Ulimits=[{"Name": "nofile", "Soft": 64, "Hard": 128}], HostConfig_Dns=["10.0.0.1"],
        HostConfig_DnsSearch=["example.org"], HostConfig_ExtraHosts=["db:10.0.0.2"],
    )
    options = create_request(body, None).options
    assert (options.cap_add, options.cap_drop, options.privileged) == (["CAP_NET_ADMIN"], ["ALL"], True)
    assert options.security_opts == ["no-new-privileges", "seccomp=unconfined"]
    assert options.limit_flags == {
        "memory": str(64 << 20), "memory_swap": "-1", "memory_reservation": str(32 << 20), "cpus": "1.5",
        "cpu_shares": "512", "cpuset_cpus": "0", "pids_limit": "-1", "blkio_weight": "300",
        "ulimit": ["nofile=64:128"],
    }
    assert (options.dns, options.dns_search, options.add_hosts) == (["10.0.0.1"], ["example.org"], ["db:10.0.0.2"])


def test_the_clis_zero_limits_ask_for_nothing():
    from sandbox.cgroups.limits import parse_resources

    options = create_request(cli_body(), None).options
    resources = parse_resources(options.limit_flags, frozenset({0}))
    assert not resources.requested() and not resources.ulimits
    assert (options.cap_add, options.cap_drop, options.security_opts, options.privileged) == ([], [], [], False)


def test_limits_are_checked_by_the_clis_parser():
    from sandbox.cgroups.limits import parse_resources
    from sandbox.errors import InvalidRunOption

    options = create_request(cli_body(HostConfig_Memory=1 << 20), None).options
    with pytest.raises(InvalidRunOption, match="minimum memory limit allowed is 6MB"):
        parse_resources(options.limit_flags, frozenset({0}))
    resources = parse_resources(create_request(cli_body(HostConfig_NanoCpus=500_000_000), None).options.limit_flags,
                                frozenset({0}))
    assert resources.nano_cpus == 500_000_000


def test_an_inline_seccomp_profile_is_what_the_docker_cli_sends():
    from sandbox.errors import InvalidSecurityProfile
    from sandbox.security.options import parse

    inline = json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []})
    security = parse([f"seccomp={inline}"])
    assert (security.seccomp, security.seccomp_profile) == ("file", inline)
    with pytest.raises(InvalidSecurityProfile, match="given inline"):
        parse(['seccomp={"defaultAction": "SCMP_ACT_NOPE"}'])


def test_ports_in_dockers_shapes():
    from sandbox.network.ports import PortMapping, port_bindings, summary_ports

    mappings = (PortMapping(80, "tcp", "0.0.0.0", 8080), PortMapping(53, "udp", "127.0.0.1", 0))
    assert port_bindings(mappings) == {"53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
                                       "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}
    assert summary_ports(mappings[:1]) == [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}]


def test_port_bindings_become_the_clis_publish_texts():
    bindings = {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}, {"HostIp": "", "HostPort": ""}],
        "53/udp": [{"HostIp": "::1", "HostPort": "5353"}],
        "9000": None,
    }
    assert publish_args({}, bindings, False) == ["127.0.0.1:8080:80/tcp", "80/tcp", "[::1]:5353:53/udp", "9000/tcp"]
    assert publish_args({"80/tcp": {}, "443/tcp": {}}, {"80/tcp": [{"HostPort": "1"}]}, True) == ["1:80/tcp",
                                                                                              "443/tcp"]
    assert publish_args({"80/tcp": {}}, {}, False) == []  # exposed only: nothing is published
    with pytest.raises(ApiError):
        publish_args({}, {"99999/tcp": []}, False)


# -- the server ---------------------------------------------------------------------------------------------------


def test_only_unix_addresses_are_served(tmp_path):
    assert parse_uri(None, tmp_path) == tmp_path / "docker.sock"
    assert parse_uri("unix:///run/x.sock", tmp_path) == Path("/run/x.sock")
    assert parse_uri("unix:/run/x.sock", tmp_path) == Path("/run/x.sock")
    for bad in ("tcp://0.0.0.0:2375", "unix://relative.sock", "http://x"):
        with pytest.raises(server.ServiceError):
            parse_uri(bad, tmp_path)


def test_a_live_socket_is_not_taken_over_and_a_stale_one_is(tmp_path):
    tmp_path.chmod(0o700)
    path = tmp_path / "docker.sock"
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(path))
    live.listen()
    with pytest.raises(server.ServiceError, match="already listens"):
        server.prepare_socket_dir(path, tmp_path / "elsewhere")
    live.close()
    server.prepare_socket_dir(path, tmp_path / "elsewhere")  # nobody listens: removed
    assert not path.exists()
    path.write_text("")
    with pytest.raises(server.ServiceError, match="not a socket"):
        server.prepare_socket_dir(path, tmp_path / "elsewhere")
    tmp_path.chmod(0o777)
    with pytest.raises(server.ServiceError, match="others may write"):
        server.prepare_socket_dir(path, tmp_path / "elsewhere")
    tmp_path.chmod(0o700)


@pytest.fixture
def running(tmp_path):
    """A server with one route (GET /hello) on a socket in tmp_path, served from a thread."""
    routes = Routes()
    routes.add("GET", "/hello", lambda request: request.send_json(200, {"version": request.version}))
    instance = server.Server(tmp_path / "api.sock", routes, idle=0)
    instance.server_bind()
    instance.server_activate()
    thread = threading.Thread(target=instance.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield instance
    instance.shutdown()
    instance.server_close()


def ask(path: Path, target: str) -> tuple[bytes, dict]:
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(str(path))
        client.sendall(f"GET {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := client.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, json.loads(body) if body else {}


def test_versions_are_negotiated_and_errors_are_dockers_json(running):
    head, body = ask(running.path, "/v1.41/hello")
    assert head.startswith(b"HTTP/1.1 200") and b"Api-Version: 1.44" in head and body == {"version": "1.41"}
    assert ask(running.path, "/hello")[1] == {"version": "1.44"}
    head, body = ask(running.path, "/v1.99/hello")
    assert head.startswith(b"HTTP/1.1 400") and "Maximum supported API version is 1.44" in body["message"]
    head, body = ask(running.path, "/v1.12/hello")
    assert head.startswith(b"HTTP/1.1 400") and "too old" in body["message"]
    head, body = ask(running.path, "/nothing")
    assert head.startswith(b"HTTP/1.1 404") and "message" in body
    assert os.stat(running.path).st_mode & 0o777 == 0o600


def test_a_peer_of_another_uid_is_refused(running, monkeypatch):
    other = os.getuid() + 1
    monkeypatch.setattr(server.os, "getuid", lambda: other)
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(str(running.path))
        try:
            client.sendall(b"GET /hello HTTP/1.1\r\nHost: docker\r\n\r\n")
            answer = client.recv(1024)
        except (BrokenPipeError, ConnectionResetError):
            answer = b""
        assert answer == b""  # closed without an answer


def test_stream_frames_carry_the_stream_and_length():
    assert streams.frame(streams.STDERR, b"oops\n") == b"\x02\x00\x00\x00\x00\x00\x00\x05oops\n"
    assert streams.frame(streams.STDOUT, b"") == b""


def test_the_socket_systemd_passes_is_taken_only_when_meant_for_us(tmp_path):
    import subprocess
    import sys

    assert server.inherited_socket({"LISTEN_PID": "1", "LISTEN_FDS": "1"}) is None  # another process's
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "activated.sock"))
    listener.listen()
    code = "from sandbox.api.server import inherited_socket; print(inherited_socket().getsockname())"
    result = subprocess.run(
        ["sh", "-c", f'LISTEN_PID=$$ LISTEN_FDS=1 exec "{sys.executable}" -c "$0"', code],
        preexec_fn=lambda: os.dup2(listener.fileno(), 3), close_fds=False, capture_output=True, text=True,
        cwd=Path(__file__).resolve().parents[2], timeout=60,
    )
    listener.close()
    assert result.stdout.strip() == str(tmp_path / "activated.sock"), result.stderr


def test_no_other_command_imports_the_api():
    """Building the whole typer application (every command registered) must not import sandbox.api: only
    `sbx system service` does, when it runs."""
    import subprocess
    import sys

    code = ("import sys; from sandbox.cli.app import app; import typer.main; typer.main.get_command(app); "
            "print(sorted(m for m in sys.modules if m.startswith('sandbox.api')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "[]", result.stderr


class FakeLifecycle:
    """Records by id; a removed one raises ContainerNotFound, as the store does."""

    def __init__(self) -> None:
        self.records: dict[str, object] = {}

    def get(self, container_id: str):
        from sandbox.errors import ContainerNotFound

        if container_id not in self.records:
            raise ContainerNotFound(f"no such container: {container_id}")
        return self.records[container_id]

    settled = get  # what a waiter reads: here, the records as they are


def record(state: str, exit_code: int | None = None):
    from types import SimpleNamespace

    return SimpleNamespace(id="c", state=SimpleNamespace(value=state), exit_code=exit_code)


def test_wait_removed_reports_the_exit_code_of_an_auto_removed_container():
    """The monitor removes an AutoRemove container's record at once: the code comes from the broker's watcher,
    even when the removal is seen before the watcher has read the EXIT frame."""
    from sandbox.api.broker import Broker
    from sandbox.monitor import attach as protocol

    lifecycle = FakeLifecycle()
    lifecycle.records["c"] = record("running")
    broker = Broker(lifecycle)
    monitor_end, watcher_end = socket.socketpair()
    result: dict[str, int] = {}
    waiter = threading.Thread(target=lambda: result.update(code=broker.wait("c", "removed")))
    with broker.changed:
        broker.watched.add("c")  # as broker.start leaves it
    waiter.start()
    del lifecycle.records["c"]  # removed before the watcher said anything
    waiter.join(0.5)
    assert waiter.is_alive()  # not answered 0 for a container whose code is still on its way
    broker._watch("c", watcher_end)
    monitor_end.sendall(protocol.encode_json(protocol.EXIT, {"code": 3}))
    monitor_end.close()
    waiter.join(10)
    assert result == {"code": 3}


def test_wait_not_running_answers_at_once_for_an_exited_container():
    from sandbox.api.broker import Broker

    lifecycle = FakeLifecycle()
    lifecycle.records["c"] = record("exited", 7)
    assert Broker(lifecycle).wait("c", "not-running") == 7


def test_a_wait_whose_client_left_ends():
    """Else its thread, and the connection that keeps the service from its idle exit, would last until the exit."""
    from sandbox.api.broker import Broker

    lifecycle = FakeLifecycle()
    lifecycle.records["c"] = record("running")
    assert Broker(lifecycle).wait("c", "next-exit", gone=lambda: True) is None


def test_a_client_that_closed_is_seen_as_gone():
    from sandbox.api.routes import _client_left

    server_end, client_end = socket.socketpair()
    assert not _client_left(server_end)
    client_end.close()
    assert _client_left(server_end)
    server_end.close()
