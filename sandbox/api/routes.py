"""The endpoints of sbx's Docker Engine API, each a thin use of :mod:`sandbox.service` in Docker's JSON shapes."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import threading
import time

from sandbox import __version__
from sandbox.api import streams
from sandbox.api.broker import Broker
from sandbox.api.errors import ApiError, unsupported
from sandbox.api.server import API_VERSION, MIN_API_VERSION, Request, Routes
from sandbox.config import Settings
from sandbox.errors import ContainerNotRunning, ContainerStartError, ImageNotFound, SbxError
from sandbox.exitcodes import NOT_EXECUTABLE, NOT_FOUND, UNKNOWN
from sandbox.network.ports import PortMapping, port_bindings, summary_ports
from sandbox.service.lifecycle import published_ports

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}
_MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
_RAW = "application/vnd.docker.raw-stream"


class Api:
    """The service's state: the use cases, the broker of starts and exits, the execs made and not yet gone."""

    def __init__(self, settings: Settings) -> None:
        from sandbox.service.lifecycle import Lifecycle

        self.settings = settings
        self.lifecycle = Lifecycle(settings)
        self.broker = Broker(self.lifecycle)
        self.execs: dict[str, Exec] = {}
        self.execs_lock = threading.Lock()

    @property
    def images(self):
        return self.lifecycle.containers.images

    def routes(self) -> Routes:
        routes = Routes()
        for method, pattern, function in (
            ("GET", "/_ping", self.ping),
            ("GET", "/version", self.version),
            ("GET", "/info", self.info),
            ("GET", "/events", self.events),
            ("POST", "/images/create", self.image_pull),
            ("GET", "/images/json", self.image_list),
            ("POST", "/images/(.+)/tag", self.image_tag),
            ("POST", "/images/(.+)/push", self.image_push),
            ("GET", "/images/(.+)/json", self.image_inspect),
            ("DELETE", "/images/(.+)", self.image_remove),
            ("POST", "/containers/create", self.container_create),
            ("GET", "/containers/json", self.container_list),
            ("POST", "/containers/prune", self.container_prune),
            ("GET", "/containers/([^/]+)/json", self.container_inspect),
            ("POST", "/containers/([^/]+)/start", self.container_start),
            ("POST", "/containers/([^/]+)/attach", self.container_attach),
            ("POST", "/containers/([^/]+)/wait", self.container_wait),
            ("GET", "/containers/([^/]+)/logs", self.container_logs),
            ("POST", "/containers/([^/]+)/stop", self.container_stop),
            ("POST", "/containers/([^/]+)/kill", self.container_kill),
            ("POST", "/containers/([^/]+)/restart", self.container_restart),
            ("POST", "/containers/([^/]+)/resize", self.container_resize),
            ("GET", "/containers/([^/]+)/top", self.container_top),
            ("POST", "/containers/([^/]+)/rename", self.container_rename),
            ("DELETE", "/containers/([^/]+)", self.container_remove),
            ("POST", "/containers/([^/]+)/exec", self.exec_create),
            ("POST", "/exec/([^/]+)/start", self.exec_start),
            ("POST", "/exec/([^/]+)/resize", self.exec_resize),
            ("GET", "/exec/([^/]+)/json", self.exec_inspect),
            ("GET", "/volumes", self.volume_list),
            ("POST", "/volumes/create", self.volume_create),
            ("POST", "/volumes/prune", self.volume_prune),
            ("GET", "/volumes/([^/]+)", self.volume_inspect),
            ("DELETE", "/volumes/([^/]+)", self.volume_remove),
        ):
            routes.add(method, pattern, function)
        return routes

    # -- system ---------------------------------------------------------------------------------------------------

    def ping(self, request: Request) -> None:
        handler = request.handler
        handler.send_response(200)
        handler.common_headers()
        for name, value in (("Cache-Control", "no-cache, no-store, must-revalidate"), ("Pragma", "no-cache"),
                            ("Builder-Version", "1"), ("Swarm", "inactive"),
                            ("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "2")):
            handler.send_header(name, value)
        handler.end_headers()
        if request.method != "HEAD":
            handler.wfile.write(b"OK")

    def version(self, request: Request) -> None:
        details = {
            "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": _arch(),
            "KernelVersion": platform.release(), "GitCommit": "", "GoVersion": f"python{platform.python_version()}",
            "BuildTime": "", "Experimental": "false",
        }
        request.send_json(200, {
            "Platform": {"Name": f"sbx {__version__}"},
            "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
            "Version": __version__,
            **{key: value for key, value in details.items() if key != "Experimental"},
        })

    def info(self, request: Request) -> None:
        records = self.lifecycle.list(all_containers=True)
        running = sum(record.state.value == "running" for record in records)
        images = self.images
        request.send_json(200, {
            "ID": "", "Name": platform.node(), "ServerVersion": __version__,
            "Containers": len(records), "ContainersRunning": running, "ContainersPaused": 0,
            "ContainersStopped": len(records) - running, "Images": len(images.store.images()),
            "Driver": images.unpacker().storage_driver(self.settings.storage_driver), "DriverStatus": [],
            "DockerRootDir": str(self.settings.data_root), "OperatingSystem": _os_name(), "OSType": "linux",
            "OSVersion": "", "Architecture": platform.machine(), "KernelVersion": platform.release(),
            "NCPU": os.cpu_count() or 1, "MemTotal": _mem_total(), "LoggingDriver": "json-file",
            "CgroupDriver": "none", "CgroupVersion": "2", "DefaultRuntime": "sbx", "Runtimes": {"sbx": {"path": "sbx"}},
            "SecurityOptions": ["name=rootless", "name=seccomp,profile=builtin"],
            "Swarm": {"LocalNodeState": "inactive"},
            "IndexServerAddress": "https://index.docker.io/v1/", "Labels": [], "Warnings": [],
            "MemoryLimit": False, "SwapLimit": False, "Debug": False, "ExperimentalBuild": False,
            "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8"], "Mirrors": []},
        })

    def events(self, request: Request) -> None:
        """No events are published yet: the stream stays open (and empty) until the client leaves or `until`."""
        stream = request.stream()
        until = request.query.get("until")
        deadline = float(until) if until else None
        conn = request.handler.connection
        conn.settimeout(0.5)
        while deadline is None or time.time() < deadline:
            try:
                if not conn.recv(1024):
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        stream.close()

    # -- images ---------------------------------------------------------------------------------------------------

    def image_pull(self, request: Request) -> None:
        from sandbox.api.progress import PullProgress

        if request.query.get("fromSrc"):
            raise unsupported("importing an image (fromSrc)", "is not supported by the API: use sbx import")
        name, tag = request.query.get("fromImage") or "", request.query.get("tag") or ""
        if not name:
            raise ApiError(400, "fromImage is required")
        if tag:
            name = f"{name}@{tag}" if tag.startswith("sha256:") else f"{name}:{tag}"
        stream = request.stream()
        progress = PullProgress(stream)
        try:
            result = self.images.pull(name, platform=request.query.get("platform") or None, events=progress)
        except SbxError as error:
            stream.json({"errorDetail": {"message": error.message}, "error": error.message})
        else:
            progress.done(result)
        stream.close()

    def image_list(self, request: Request) -> None:
        filters = _filters(request, {"reference", "dangling"})
        patterns = [f"reference={value}" for value in filters.get("reference", [])]
        dangling = filters.get("dangling")
        seen: dict[str, dict] = {}
        for row in self.images.rows(filters=patterns):
            record = row.record
            entry = seen.get(str(record.id))
            if entry is None:
                entry = seen[str(record.id)] = {
                    "Id": str(record.id), "ParentId": "", "RepoTags": [], "RepoDigests": [],
                    "Created": int(_epoch(record.created)), "Size": record.size, "VirtualSize": record.size,
                    "SharedSize": -1, "Labels": {}, "Containers": -1,
                }
            if row.tag != "<none>":
                entry["RepoTags"].append(f"{row.repository}:{row.tag}")
            if row.digest != "<none>":
                digest = f"{row.repository}@{row.digest}"
                if digest not in entry["RepoDigests"]:
                    entry["RepoDigests"].append(digest)
        result = list(seen.values())
        if dangling:
            want = dangling[0].lower() in ("1", "true")
            result = [entry for entry in result if (not entry["RepoTags"]) == want]
        request.send_json(200, result)

    def image_inspect(self, request: Request, name: str) -> None:
        info = self.images.inspect(name)
        info.setdefault("ContainerConfig", info.get("Config") or {})
        info["VirtualSize"] = info.get("Size", 0)
        info["GraphDriver"] = {"Name": "sbx", "Data": {}}
        request.send_json(200, info)

    def image_tag(self, request: Request, name: str) -> None:
        repo = request.query.get("repo") or ""
        if not repo:
            raise ApiError(400, "repo is required")
        self.images.tag(name, f"{repo}:{request.query.get('tag') or 'latest'}")
        request.send(201)

    def image_remove(self, request: Request, name: str) -> None:
        removal = self.images.remove(name, force=request.flag("force"))
        request.send_json(200, [{"Untagged": item} for item in removal.untagged]
                          + [{"Deleted": item} for item in removal.deleted])

    def image_push(self, request: Request, name: str) -> None:
        tag = request.query.get("tag")
        target = f"{name}:{tag}" if tag else name
        stream = request.stream()
        stream.json({"status": f"The push refers to repository [{name}]"})
        try:
            result = self.images.push(target, on_layer=lambda digest, state: stream.json(
                {"status": "Layer already exists" if state == "exists" else "Pushed", "progressDetail": {},
                 "id": digest.hex[:12]}))
        except SbxError as error:
            stream.json({"errorDetail": {"message": error.message}, "error": error.message})
        else:
            label = tag or result.reference.tag or "latest"
            stream.json({"status": f"{label}: digest: {result.digest} size: {result.size}"})
            stream.json({"progressDetail": {}, "aux": {"Tag": label, "Digest": str(result.digest),
                                                        "Size": result.size}})
        stream.close()

    # -- containers: create, look -----------------------------------------------------------------------------------

    def container_create(self, request: Request) -> None:
        from sandbox.api.translate import create_request

        platform_wanted = request.query.get("platform")
        if platform_wanted:
            raise unsupported("platform", "is not supported when creating a container: pull that platform first")
        wanted = create_request(request.json(), request.query.get("name"))
        try:
            self.images.resolve(wanted.image)
        except ImageNotFound:
            raise ApiError(404, f"No such image: {wanted.image}") from None
        container_id = self.lifecycle.create(wanted.image, wanted.args, wanted.options,
                                             auto_remove=wanted.auto_remove)
        if wanted.labels:
            record = self.lifecycle.store.get(container_id)
            self.lifecycle.store.update(container_id, spec={**(record.spec or {}), "labels": wanted.labels})
        request.send_json(201, {"Id": container_id, "Warnings": wanted.warnings})

    def container_list(self, request: Request) -> None:
        filters = _filters(request, {"id", "name", "label", "status"})
        records = self.lifecycle.list(all_containers=request.flag("all") or "status" in filters)
        now = time.time()
        result = [_summary(record, now) for record in records if _matches(record, filters)]
        limit = int(request.query.get("limit") or 0)
        request.send_json(200, result[:limit] if limit > 0 else result)

    def container_inspect(self, request: Request, name: str) -> None:
        request.send_json(200, self._inspect(name))

    def _inspect(self, name: str) -> dict:
        """``sbx inspect``'s object, with the fields the docker CLI and docker-py read that it does not carry; what it
        carries (State.Paused and OOMKilled, Mounts, HostConfig.Binds, LogPath, Driver, ...) is kept as it is."""
        info = self.lifecycle.inspect(name)
        record = self.lifecycle.get(name)
        spec = record.spec or {}
        asked = _asked_ports(record)
        _missing(info["State"], {"Paused": False, "Restarting": False, "OOMKilled": False, "Dead": False})
        _missing(info["Config"], {
            "Labels": spec.get("labels") or {}, "OpenStdin": bool(spec.get("stdin")), "AttachStdin": False,
            "AttachStdout": False, "AttachStderr": False, "StdinOnce": False, "Entrypoint": None, "Volumes": None,
        })
        info["Config"]["ExposedPorts"] = {mapping.key: {} for mapping in asked}
        _missing(info["HostConfig"], {
            "Binds": None, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
            "LogConfig": {"Type": "json-file", "Config": {}},
        })
        info["HostConfig"]["PortBindings"] = port_bindings(asked)
        _missing(info, {
            "RestartCount": 0, "Driver": info.get("GraphDriver", {}).get("Name", ""), "Platform": "linux",
            "Mounts": [], "LogPath": str(self.lifecycle.store.dir(record.id) / "ctr.log"),
        })
        info["NetworkSettings"] = {**info.get("NetworkSettings", {}), "Networks": {}}
        return info

    def container_top(self, request: Request, name: str) -> None:
        if request.query.get("ps_args"):
            raise unsupported("ps_args", "is not supported: sbx shows ps -ef's columns")
        titles, rows = self.lifecycle.top(name)
        request.send_json(200, {"Titles": titles, "Processes": rows})

    # -- containers: run ------------------------------------------------------------------------------------------

    def container_start(self, request: Request, name: str) -> None:
        record = self.lifecycle.get(name)
        if record.state.value == "running":
            request.send(304)
            return
        try:
            self.broker.start(record.id)
        except ContainerStartError as error:
            raise ApiError(400 if error.exit_code in (NOT_EXECUTABLE, NOT_FOUND) else 500, error.message) from None
        request.send(204)

    def container_attach(self, request: Request, name: str) -> None:
        from sandbox.monitor import attach as protocol

        record = self.lifecycle.get(name)
        tty = bool((record.spec or {}).get("tty"))
        stdin = request.flag("stdin")
        output_wanted = dict(stdout=request.flag("stdout"), stderr=request.flag("stderr"))
        slot = self.broker.slot(record.id) if record.state.value != "running" and request.flag("stream") else None
        conn = request.hijack(_stream_type(request, tty))
        request.answered = True
        output = streams.Output(conn, tty=tty, **output_wanted)
        if request.flag("logs"):
            for entry in self.lifecycle.logs(record.id):
                output.write(streams.STDOUT if entry.stream == "stdout" else streams.STDERR, entry.text.encode())
        if not request.flag("stream"):
            return
        if slot is not None:
            monitor = self.broker.await_slot(slot, gone=lambda: not stdin and _client_left(conn))
        else:
            try:
                monitor = protocol.connect(protocol.socket_path(self.settings.runtime_root, record.id))
            except protocol.AttachError:
                monitor = None
        if monitor is None:
            return
        try:
            streams.bridge(conn, monitor, output, stdin=stdin)
        finally:
            monitor.close()

    def container_wait(self, request: Request, name: str) -> None:
        condition = request.query.get("condition") or "not-running"
        if condition not in ("not-running", "next-exit", "removed"):
            raise ApiError(400, f"invalid condition {condition!r}: use not-running, next-exit or removed")
        record = self.lifecycle.get(name)
        stream = request.stream()  # the headers go now: the docker CLI starts the container once it has them
        request.answered = True
        code = self.broker.wait(record.id, condition, gone=lambda: _client_left(request.handler.connection))
        if code is not None:
            stream.json({"StatusCode": code, "Error": None})
            stream.close()

    def container_logs(self, request: Request, name: str) -> None:
        from sandbox.monitor.logs import format_time

        record = self.lifecycle.get(name)
        if request.query.get("until") not in (None, "", "0"):
            raise unsupported("until", "is not supported for logs")
        tail_text = request.query.get("tail") or "all"
        tail = None if tail_text == "all" else _int("tail", tail_text)
        since_text = request.query.get("since") or "0"
        try:
            since = float(since_text) or None
        except ValueError:
            raise ApiError(400, f"invalid since value {since_text!r}") from None
        tty = bool((record.spec or {}).get("tty"))
        wanted = {"stdout": request.flag("stdout"), "stderr": request.flag("stderr")}
        stream = request.stream(_RAW if tty else _MULTIPLEXED)
        request.answered = True
        timestamps = request.flag("timestamps")
        for entry in self.lifecycle.logs(record.id, tail=tail, since=since, follow=request.flag("follow")):
            if not wanted.get(entry.stream):
                continue
            data = ((format_time(entry.time) + " ") if timestamps else "") + entry.text
            number = streams.STDOUT if entry.stream == "stdout" else streams.STDERR
            stream.write(data.encode() if tty else streams.frame(number, data.encode()))
        stream.close()

    def container_stop(self, request: Request, name: str) -> None:
        record = self.lifecycle.get(name)
        if record.state.value != "running":
            request.send(304)
            return
        self.lifecycle.stop(record.id, timeout=_timeout(request), signal_name=request.query.get("signal") or None)
        request.send(204)

    def container_kill(self, request: Request, name: str) -> None:
        self.lifecycle.kill(name, request.query.get("signal") or "KILL")
        request.send(204)

    def container_restart(self, request: Request, name: str) -> None:
        record = self.lifecycle.get(name)
        self.lifecycle.stop(record.id, timeout=_timeout(request), signal_name=request.query.get("signal") or None)
        self.broker.start(record.id)
        request.send(204)

    def container_resize(self, request: Request, name: str) -> None:
        from sandbox.monitor import attach as protocol

        rows, cols = _int("h", request.query.get("h") or "0"), _int("w", request.query.get("w") or "0")
        record = self.lifecycle.get(name)
        if record.state.value != "running":
            raise ContainerNotRunning(f"container {name} is not running")
        sock = protocol.connect(protocol.socket_path(self.settings.runtime_root, record.id))
        try:
            streams.resize_once(sock, rows, cols)
        finally:
            sock.close()
        request.send(200)

    def container_rename(self, request: Request, name: str) -> None:
        new_name = request.query.get("name") or ""
        self.lifecycle.rename(name, new_name)
        request.send(204)

    def container_remove(self, request: Request, name: str) -> None:
        if request.flag("link"):
            raise unsupported("link", "is not supported: sbx has no container links")
        # v (remove its anonymous volumes) asks for nothing more: sbx makes none, and named ones stay, as with Docker
        self.lifecycle.remove(name, force=request.flag("force"))
        request.send(204)

    def container_prune(self, request: Request) -> None:
        if _filters(request, set()):
            raise unsupported("filters", "are not supported for prune")
        removed, reclaimed = self.lifecycle.prune()
        request.send_json(200, {"ContainersDeleted": removed, "SpaceReclaimed": reclaimed})

    # -- exec -----------------------------------------------------------------------------------------------------

    def exec_create(self, request: Request, name: str) -> None:
        body = request.json()
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        record = self.lifecycle.get(name)
        if record.state.value != "running":
            raise ApiError(409, f"container {record.id} is not running")
        for field in ("Privileged",):
            if body.get(field):
                raise unsupported(field)
        cmd = body.get("Cmd")
        if not isinstance(cmd, list) or not cmd or not all(isinstance(word, str) for word in cmd):
            raise ApiError(400, "no exec command specified")
        env = body.get("Env") or []
        if not isinstance(env, list) or not all(isinstance(item, str) for item in env):
            raise ApiError(400, "Env must be a list of strings")
        exec_ = Exec(
            id=os.urandom(32).hex(), container_id=record.id, args=list(cmd), env=list(env),
            user=body.get("User") or None, workdir=body.get("WorkingDir") or None, tty=bool(body.get("Tty")),
            stdin=bool(body.get("AttachStdin")), stdout=bool(body.get("AttachStdout")),
            stderr=bool(body.get("AttachStderr")), console_size=_size(body.get("ConsoleSize")),
        )
        with self.execs_lock:
            self.execs[exec_.id] = exec_
        request.send_json(201, {"Id": exec_.id})

    def _exec(self, exec_id: str) -> Exec:
        with self.execs_lock:
            exec_ = self.execs.get(exec_id)
        if exec_ is None:
            raise ApiError(404, f"No such exec instance: {exec_id}")
        return exec_

    def exec_start(self, request: Request, exec_id: str) -> None:
        from sandbox.api.execs import run_exec

        exec_ = self._exec(exec_id)
        body = request.json()
        body = body if isinstance(body, dict) else {}
        with exec_.lock:
            if exec_.started:
                raise ApiError(409, f"exec {exec_id} has already been started")
            exec_.started = True
        exec_.console_size = _size(body.get("ConsoleSize")) or exec_.console_size
        if body.get("Detach"):
            run_exec(self, exec_, None)
            request.send(200, b"", "application/json")
            return
        conn = request.hijack(_stream_type(request, exec_.tty))
        request.answered = True
        run_exec(self, exec_, conn)

    def exec_resize(self, request: Request, exec_id: str) -> None:
        exec_ = self._exec(exec_id)
        rows, cols = _int("h", request.query.get("h") or "0"), _int("w", request.query.get("w") or "0")
        if exec_.sock is None:
            exec_.console_size = (rows, cols)  # before its start: the size it starts with
        else:
            streams.send_resize(exec_.sock, rows, cols, exec_.lock)
        request.send(200)

    def exec_inspect(self, request: Request, exec_id: str) -> None:
        exec_ = self._exec(exec_id)
        request.send_json(200, {
            "ID": exec_.id, "ContainerID": exec_.container_id, "Running": exec_.running,
            "ExitCode": exec_.exit_code, "Pid": exec_.pid or 0, "OpenStdin": exec_.stdin,
            "OpenStdout": exec_.stdout, "OpenStderr": exec_.stderr, "CanRemove": False, "DetachKeys": "",
            "ProcessConfig": {"entrypoint": exec_.args[0], "arguments": exec_.args[1:], "tty": exec_.tty,
                              "privileged": False, "user": exec_.user or ""},
        })

    # -- volumes --------------------------------------------------------------------------------------------------

    def _volumes(self):
        from sandbox.service.volumes import Volumes

        return Volumes(self.settings)

    def volume_list(self, request: Request) -> None:
        filters = _filters(request, {"name", "dangling"})
        volumes = [_volume(volume) for volume in self._volumes().list()]
        for pattern in filters.get("name", []):
            volumes = [volume for volume in volumes if pattern in volume["Name"]]
        request.send_json(200, {"Volumes": volumes, "Warnings": []})

    def volume_create(self, request: Request) -> None:
        body = request.json()
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        if body.get("Driver") not in (None, "", "local") or body.get("DriverOpts"):
            raise unsupported("a volume driver or its options", "are not supported: sbx has local volumes only")
        labels = body.get("Labels") or {}
        request.send_json(201, _volume(self._volumes().create(body.get("Name") or None, labels=labels)))

    def volume_inspect(self, request: Request, name: str) -> None:
        request.send_json(200, _volume(self._volumes().get(name)))

    def volume_remove(self, request: Request, name: str) -> None:
        self._volumes().remove(name, force=request.flag("force"))
        request.send(204)

    def volume_prune(self, request: Request) -> None:
        removed, reclaimed = self._volumes().prune()
        request.send_json(200, {"VolumesDeleted": removed, "SpaceReclaimed": reclaimed})


class Exec:
    """An exec instance: made by `create`, run once by `start`, inspected for its exit code."""

    def __init__(self, **fields) -> None:
        self.id: str = fields["id"]
        self.container_id: str = fields["container_id"]
        self.args: list[str] = fields["args"]
        self.env: list[str] = fields["env"]
        self.user: str | None = fields["user"]
        self.workdir: str | None = fields["workdir"]
        self.tty: bool = fields["tty"]
        self.stdin: bool = fields["stdin"]
        self.stdout: bool = fields["stdout"]
        self.stderr: bool = fields["stderr"]
        self.console_size: tuple[int, int] | None = fields["console_size"]
        self.lock = threading.Lock()
        self.started = False
        self.running = False
        self.exit_code: int | None = None
        self.pid: int | None = None
        self.sock = None  # the exec holder's socket, with a tty


# -- shapes and parameters ----------------------------------------------------------------------------------------


def _summary(record, now: float) -> dict:
    spec = record.spec or {}
    return {
        "Id": record.id, "Names": [f"/{record.name}"], "Image": record.image, "ImageID": record.image_id,
        "Command": " ".join(record.command), "Created": int(record.created),
        "Ports": summary_ports(published_ports(record)),
        "Labels": spec.get("labels") or {}, "State": record.state.value, "Status": _status(record, now),
        "HostConfig": {"NetworkMode": spec.get("network", "none")}, "NetworkSettings": {"Networks": {}},
        "Mounts": [],
    }


def _asked_ports(record) -> tuple:
    """The ports the container's spec asks to publish (a host port 0 is chosen at start)."""
    mappings = []
    for item in ((record.spec or {}).get("spec") or {}).get("ports") or []:
        with contextlib.suppress(ValueError):
            mappings.append(PortMapping.from_json(item))
    return tuple(mappings)


def _status(record, now: float) -> str:
    state = record.state.value
    if state == "running":
        return f"Up {_duration(now - (record.started_at or now))}"
    if state == "exited":
        code = record.exit_code if record.exit_code is not None else UNKNOWN
        if record.finished_at:
            return f"Exited ({code}) {_duration(now - record.finished_at)} ago"
        return f"Exited ({code})"
    return "Created"


def _duration(seconds: float) -> str:
    """go-units HumanDuration, coarsely."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole < 60:
        return "1 second" if whole == 1 else f"{whole} seconds"
    if whole < 3600:
        return "About a minute" if whole < 120 else f"{whole // 60} minutes"
    hours = int(seconds / 3600 + 0.5)
    return "About an hour" if hours == 1 else f"{hours} hours" if hours < 48 else f"{hours // 24} days"


def _matches(record, filters: dict[str, list[str]]) -> bool:
    labels = (record.spec or {}).get("labels") or {}
    for value in filters.get("id", []):
        if not record.id.startswith(value):
            return False
    for value in filters.get("name", []):
        if value.lstrip("/") not in record.name:
            return False
    for value in filters.get("status", []):
        if record.state.value != value:
            return False
    for value in filters.get("label", []):
        key, sep, wanted = value.partition("=")
        if key not in labels or (sep and labels[key] != wanted):
            return False
    return True


def _filters(request: Request, known: set[str]) -> dict[str, list[str]]:
    """Docker's ``filters`` query: JSON of name → [values] (or, from old clients, name → {value: true})."""
    text = request.query.get("filters")
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError:
        raise ApiError(400, "invalid filters: not JSON") from None
    if not isinstance(raw, dict):
        raise ApiError(400, "invalid filters: not a JSON object")
    result = {}
    for key, values in raw.items():
        if key not in known:
            raise unsupported(f"the filter {key!r}", f"is not supported here (supported: {', '.join(sorted(known))})")
        result[key] = [str(value) for value in (values if isinstance(values, list) else list(values or {}))]
    return result


def _volume(volume) -> dict:
    return {
        "Name": volume.name, "Driver": "local", "Mountpoint": str(volume.path), "Labels": volume.labels,
        "Scope": "local", "Options": {}, "CreatedAt": volume.created_text,
    }


def _client_left(conn) -> bool:
    """Whether the client closed its side (a client that waits sends nothing more, so readable means gone)."""
    import select

    readable, _, _ = select.select([conn], [], [], 0)
    if not readable:
        return False
    try:
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _stream_type(request: Request, tty: bool) -> str:
    if tty or tuple(int(part) for part in request.version.split(".")) < (1, 42):
        return _RAW
    return _MULTIPLEXED


def _timeout(request: Request) -> float:
    text = request.query.get("t") or request.query.get("timeout")
    return float(_int("t", text)) if text else 10.0


def _int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ApiError(400, f"invalid value for {name}: {text!r}") from None


def _size(value: object) -> tuple[int, int] | None:
    if isinstance(value, list) and len(value) == 2 and all(isinstance(n, int) and n > 0 for n in value):
        return value[0], value[1]
    return None


def _epoch(created: str | None) -> float:
    from datetime import datetime

    if not created:
        return 0.0
    text = created.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # Python's fromisoformat takes at most microseconds
        digits = "".join(c for c in rest if c.isdigit())
        text = f"{head}.{digits[:6]}{rest[len(digits):]}"
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


def _arch() -> str:
    return _ARCH.get(platform.machine(), platform.machine())


def _os_name() -> str:
    try:
        with open("/etc/os-release", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _mem_total() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            return int(handle.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0


def _missing(target: dict, defaults: dict) -> None:
    """Add the ``defaults`` whose keys ``target`` lacks; what it has stays."""
    for key, value in defaults.items():
        target.setdefault(key, value)
