"""The Docker Engine API (`sbx system service`) driven by the real docker CLI, as the unprivileged user.

One service per test module (on a socket in the test's tmp dir, stopped after), one image pull; each test checks a
flow the docker CLI really takes (create, attach hijacked, wait, start for `run`; exec create/start/inspect; ...).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.integration.helpers import wait_for
from tests.integration.test_network import HTTPD, free_port, http_get

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI is not installed")


class Docker:
    """Runs the docker CLI against the service."""

    def __init__(self, sbx, socket_path: Path, config_dir: Path) -> None:
        self.sbx = sbx
        self.socket_path = socket_path
        self.env = sbx.environ({"DOCKER_HOST": f"unix://{socket_path}", "DOCKER_CONFIG": str(config_dir)})

    def __call__(self, *args: str, check: bool = True, input: str | None = None,  # noqa: A002
                 timeout: float = 90) -> subprocess.CompletedProcess:
        result = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                                input=input, stdin=None if input is not None else subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}\n{result.stdout}\n"
                                 f"{result.stderr}\n--- service log ---\n{self.log()}")
        return result

    def log(self) -> str:
        path = self.sbx.root / "service.log"
        return path.read_text()[-6000:] if path.exists() else ""


def start_service(sbx, socket_path: Path, *args: str) -> subprocess.Popen:
    log = open(sbx.root / "service.log", "ab")  # noqa: SIM115 - the child keeps it
    process = sbx.popen("system", "service", "--log-requests", *args, f"unix://{socket_path}",
                        stdout=log, stderr=log)
    log.close()
    assert wait_for(lambda: socket_path.exists() or process.poll() is not None, timeout=30)
    assert process.poll() is None, (sbx.root / "service.log").read_text()
    return process


@pytest.fixture
def docker(busybox, tmp_path):
    directory = Path(tempfile.mkdtemp(prefix="api-", dir="/tmp"))  # a socket path must stay under 108 bytes
    socket_path = directory / "docker.sock"
    process = start_service(busybox, socket_path, "--time", "0")
    try:
        yield Docker(busybox, socket_path, tmp_path / "docker-config")
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


def test_version_negotiates_the_api(docker):
    result = docker("version", "--format", "{{json .}}")
    info = json.loads(result.stdout)
    assert info["Server"]["ApiVersion"] == "1.44"
    assert info["Client"]["ApiVersion"] == "1.44"  # negotiated down from the client's own


def test_run_keeps_stdout_stderr_and_the_exit_code(docker):
    result = docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n"), result.stderr + docker.log()
    assert docker.sbx("ps", "-aq").stdout == ""  # --rm removed it


def test_run_of_a_missing_command_gives_127(docker):
    result = docker("run", "--rm", "busybox", "no-such-command", check=False)
    assert result.returncode == 127 and "executable file not found" in result.stderr, result.stderr + docker.log()


def test_run_interactive_reads_stdin_to_its_end(docker):
    result = docker("run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z; echo done", input="hello\n")
    assert result.stdout == "HELLO\ndone\n"


def test_detached_container_lifecycle(docker):
    container_id = docker("run", "-d", "--name", "web", "busybox", "sh", "-c",
                          "echo started; trap 'exit 0' TERM; while :; do sleep 0.1; done").stdout.strip()
    assert len(container_id) == 64
    assert docker("inspect", "-f", "{{.State.Status}}", "web").stdout.strip() == "running"
    assert "web" in docker("ps").stdout
    assert "web" in docker.sbx("ps").stdout  # the same containers for sbx and the API
    assert wait_for(lambda: docker("logs", "web").stdout == "started\n", timeout=20)
    exec_result = docker("exec", "web", "sh", "-c", "echo in; echo oops >&2; exit 4", check=False)
    assert (exec_result.returncode, exec_result.stdout, exec_result.stderr) == (4, "in\n", "oops\n")
    assert "sleep" in docker("top", "web").stdout
    docker("stop", "web")
    assert docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "web").stdout.strip() == "exited 0"
    docker("rm", "web")
    assert docker.sbx("ps", "-aq").stdout == ""


def test_images_pull_tag_and_rmi(docker):
    result = docker("pull", "busybox")
    assert "Status:" in result.stdout
    docker("tag", "busybox", "mine/box:v1")
    listing = docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert "busybox:latest" in listing and "mine/box:v1" in listing
    assert docker("image", "inspect", "-f", "{{.Os}}", "mine/box:v1").stdout.strip() == "linux"
    pushed = f"{docker.sbx.registry.host}/api/box:v1"
    docker("tag", "busybox", pushed)
    assert "digest: sha256:" in docker("push", pushed).stdout
    docker("rmi", pushed)
    docker("rmi", "mine/box:v1")
    assert "mine/box:v1" not in docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    docker("rmi", "busybox")
    result = docker("run", "--rm", "busybox", "echo", "pulled")  # create answers 404, the CLI pulls and retries
    assert result.stdout == "pulled\n" and "Unable to find image" in result.stderr


def test_unsupported_fields_are_refused(docker):
    result = docker("run", "--rm", "--cpu-quota", "50000", "busybox", "true", check=False)
    assert result.returncode != 0 and "CpuQuota is not supported" in result.stderr
    result = docker("run", "--rm", "--network", "none", "-p", f"{free_port()}:80", "busybox", "true", check=False)
    assert result.returncode != 0 and "cannot publish ports with --network none" in result.stderr


def test_published_port_serves_http_and_shows_in_port_ps_and_inspect(docker):
    port = free_port()
    docker("run", "-d", "--name", "web", "--network", "slirp4netns", "-p", f"{port}:80", "busybox", "sh", "-c",
           HTTPD.format(port=80))  # the suite's config makes none the default network
    try:
        assert http_get(port).startswith("hello from ")
        assert docker("port", "web").stdout.splitlines()[0] == f"80/tcp -> 0.0.0.0:{port}"
        assert docker("port", "web", "80").stdout.splitlines()[0] == f"0.0.0.0:{port}"
        assert docker("ps", "--format", "{{.Names}} {{.Ports}}").stdout.strip() == f"web 0.0.0.0:{port}->80/tcp"
        bindings = json.loads(docker("inspect", "-f", "{{json .HostConfig.PortBindings}}", "web").stdout)
        assert bindings == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
    finally:
        docker("rm", "-f", "web")


def test_capabilities_security_options_and_ulimits_reach_the_container(docker):
    def status(*flags: str) -> str:
        return docker("run", "--rm", *flags, "busybox", "sh", "-c",
                      "grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status; ulimit -n").stdout

    assert status("--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--ulimit", "nofile=64:64").split() == [
        "CapEff:", "0000000000000000", "NoNewPrivs:", "1", "64"]
    default = status().split()
    assert default[1] != "0000000000000000" and default[3] == "0"
    net_admin = 1 << 12
    added = int(status("--cap-drop", "ALL", "--cap-add", "NET_ADMIN").split()[1], 16)
    assert added == net_admin


def test_resource_limits_reach_the_container(docker):
    from sandbox.cgroups.delegation import discover

    delegated = discover().controllers
    big = docker("run", "--rm", "--memory", "32m", "busybox", "sh", "-c",
                 "dd if=/dev/zero of=/dev/null bs=64M count=1 2>&1 && echo allocated", check=False)
    assert "allocated" not in big.stdout, big.stdout
    if "memory" not in delegated:  # the create response's Warnings, printed by the CLI
        assert "WARNING: " in big.stderr and "--memory as RLIMIT_DATA" in big.stderr
    docker("create", "--name", "limited", "--memory", "64m", "--pids-limit", "50", "--cpuset-cpus", "0", "busybox",
           "true")
    host = json.loads(docker("inspect", "-f", "{{json .HostConfig}}", "limited").stdout)
    assert (host["Memory"], host["MemorySwap"], host["PidsLimit"], host["CpusetCpus"]) == (64 << 20, 128 << 20, 50,
                                                                                           "0")
    docker("rm", "limited")
    if "cpu" not in delegated:
        refused = docker("run", "--rm", "--cpus", "0.5", "busybox", "true", check=False)
        assert refused.returncode != 0 and "cannot enforce --cpus" in refused.stderr


def test_named_volume_is_kept_across_containers(docker):
    docker("volume", "create", "data")
    docker("run", "--rm", "-v", "data:/data", "busybox", "sh", "-c", "echo kept > /data/file")
    result = docker("run", "--rm", "-v", "data:/data", "busybox", "cat", "/data/file")
    assert result.stdout == "kept\n"
    assert "data" in docker("volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert docker.sbx("volume", "ls", "-q").stdout.split() == ["data"]
    # inspect through the API shows the mount as sbx inspect does (the API once replaced it with an empty list)
    docker("create", "--name", "holder", "-v", "data:/data:ro", "busybox", "true")
    mounts = json.loads(docker("inspect", "-f", "{{json .Mounts}}", "holder").stdout)
    assert [(mount["Destination"], mount["RW"]) for mount in mounts] == [("/data", False)]
    assert docker("inspect", "-f", "{{json .HostConfig.Binds}}", "holder").stdout.strip().endswith(':/data:ro"]')
    docker("rm", "holder")
    docker("volume", "rm", "data")
    assert docker.sbx("volume", "ls", "-q").stdout == ""


def test_service_refuses_another_user_and_exits_when_idle(busybox, tmp_path):
    directory = Path(tempfile.mkdtemp(prefix="api-", dir="/tmp"))
    socket_path = directory / "docker.sock"
    process = start_service(busybox, socket_path, "--time", "1")
    try:
        assert oct(socket_path.stat().st_mode & 0o777) == "0o600"
        with socket.socket(socket.AF_UNIX) as client:  # our own uid: answered
            client.connect(str(socket_path))
            client.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
            assert client.recv(1024).startswith(b"HTTP/1.1 200")
        process.wait(timeout=30)  # idle for a second: it leaves, and takes its socket with it
        assert not socket_path.exists()
    finally:
        if process.poll() is None:
            process.kill()
        shutil.rmtree(directory, ignore_errors=True)
    assert os.getuid() != 0


def test_docker_py_runs_and_reads_logs(docker):
    import docker as docker_py

    client = docker_py.DockerClient(base_url=f"unix://{docker.socket_path}", version="auto")
    try:
        output = client.containers.run("busybox", ["sh", "-c", "echo from-docker-py"], remove=True)
        assert output == b"from-docker-py\n"
        container = client.containers.run("busybox", ["sh", "-c", "echo up; exec sleep 60"], detach=True,
                                          labels={"suite": "api"})
        assert [c.id for c in client.containers.list(filters={"label": "suite=api"})] == [container.id]
        code, out = container.exec_run(["sh", "-c", "echo $((6*7))"])
        assert (code, out) == (0, b"42\n")
        container.remove(force=True)
    finally:
        client.close()


def test_testcontainers_waits_for_a_log_line_and_execs(docker, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{docker.socket_path}")
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")  # its reaper image cannot be pulled offline
    monkeypatch.setenv("TESTCONTAINERS_CONNECTION_MODE", "docker_host")  # this machine has /.dockerenv
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    container = DockerContainer("busybox").with_command(["sh", "-c", "sleep 0.5; echo ready; exec sleep 300"])
    with container.waiting_for(LogMessageWaitStrategy("ready")) as running:
        result = running.exec(["sh", "-c", "echo hello from exec"])
        assert (result.exit_code, result.output) == (0, b"hello from exec\n")
    assert docker.sbx("ps", "-aq").stdout == ""


def test_testcontainers_maps_an_exposed_port(docker, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{docker.socket_path}")
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
    monkeypatch.setenv("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
    from testcontainers.core.container import DockerContainer

    container = (DockerContainer("busybox").with_command(["sh", "-c", HTTPD.format(port=80)])
                 .with_exposed_ports(80).with_kwargs(network_mode="slirp4netns"))  # the suite's default is none
    with container as running:
        port = int(running.get_exposed_port(80))
        assert http_get(port).startswith("hello from ")
    assert docker.sbx("ps", "-aq").stdout == ""


def test_logs_wait_kill_restart_rename(docker):
    docker("run", "-d", "--name", "talk", "busybox", "sh", "-c", "echo one; echo two >&2; sleep 0.5; echo three")
    assert docker("wait", "talk").stdout.strip() == "0"
    logs = docker("logs", "talk")
    assert (logs.stdout, logs.stderr) == ("one\nthree\n", "two\n")
    assert docker("logs", "--tail", "1", "talk").stdout == "three\n"
    stamped = docker("logs", "-t", "talk").stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["one", "three"] and stamped[0][4] == "-"
    assert docker("logs", "--since", "2999-01-01T00:00:00Z", "talk").stdout == ""
    docker("run", "-d", "--name", "later", "busybox", "sh", "-c", "echo a; sleep 1; echo b")
    assert docker("logs", "-f", "later").stdout == "a\nb\n"  # follows until the container exits
    docker("run", "-d", "--name", "k", "busybox", "sleep", "60")
    docker("rename", "k", "k2")
    docker("restart", "-t", "1", "k2")
    assert docker("inspect", "-f", "{{.State.Status}}", "k2").stdout.strip() == "running"
    docker("kill", "k2")
    assert docker("wait", "k2").stdout.strip() == "137"
    docker("rm", "talk", "later", "k2")


def test_run_and_exec_with_a_terminal(docker):
    pexpect = pytest.importorskip("pexpect")
    shell = pexpect.spawn("docker", ["run", "-it", "--name", "term", "busybox", "sh"], env=docker.env,
                          dimensions=(24, 80), timeout=30, encoding="utf-8")
    try:
        shell.expect("# ")
        shell.sendline("stty size")
        shell.expect("24 80")
        shell.setwinsize(30, 100)  # the CLI sends the new size to /containers/ID/resize
        assert wait_for(lambda: _size_in(shell, "30 100"), timeout=20), docker.log()
        inner = pexpect.spawn("docker", ["exec", "-it", "term", "sh"], env=docker.env, dimensions=(20, 70),
                              timeout=30, encoding="utf-8")
        inner.expect("# ")
        inner.sendline("stty size; tty")
        inner.expect("20 70")
        inner.expect("/dev/pts/")
        inner.sendline("exit 5")
        inner.expect(pexpect.EOF)
        inner.close()
        assert inner.exitstatus == 5
        shell.sendline("exit 7")
        shell.expect(pexpect.EOF)
        shell.close()
        assert shell.exitstatus == 7
    finally:
        shell.close(force=True)
    docker("rm", "term")


def _size_in(shell, text: str) -> bool:
    shell.sendline("stty size")
    try:
        shell.expect(text, timeout=1)
        return True
    except Exception:  # noqa: BLE001 - pexpect's TIMEOUT: not yet
        return False
