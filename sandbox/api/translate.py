"""Docker's `POST /containers/create` body into sbx's run options.

Every field the body carries is either translated or, when it asks for something sbx does not do, refused with a
400 that names it: a client that set ``CpuQuota`` or ``Devices`` must not get a container without them. The
docker CLI and docker-py send every field with its zero value (``"Memory": 0``, ``"CapAdd": null``,
``"RestartPolicy": {"Name": "no"}``), so a field counts as asked for only when it differs from its zero value.

Published ports, capabilities, security options and resource limits become the texts of the matching `sbx run`
flags (``-p 8080:80/tcp``, ``--memory 8388608``, ``--ulimit nofile=64:64``), so the API and the command line are
checked by the same parsers and refused with the same messages.
"""

from __future__ import annotations

from sandbox.api.errors import ApiError, unsupported
from sandbox.valueclass import field, valueclass

# Config fields read below, and those that only describe how a client attaches (the attach request says that)
_CONFIG_READ = {
    "Hostname", "User", "Tty", "OpenStdin", "Env", "Cmd", "Image", "WorkingDir", "Entrypoint", "Labels",
    "ExposedPorts",
}
_CONFIG_IGNORED = {"Volumes", "AttachStdin", "AttachStdout", "AttachStderr", "StdinOnce", "ArgsEscaped", "Domainname"}
# HostConfig's resource fields → the name of the `sbx run` flag (sandbox.cli.run.LIMIT_FLAGS) that takes them
_LIMITS = {
    "Memory": "memory", "MemorySwap": "memory_swap", "MemoryReservation": "memory_reservation", "NanoCpus": "cpus",
    "CpuShares": "cpu_shares", "CpusetCpus": "cpuset_cpus", "PidsLimit": "pids_limit", "BlkioWeight": "blkio_weight",
    "Ulimits": "ulimit",
}
_HOST_READ = set(_LIMITS) | {
    "Binds", "Mounts", "Tmpfs", "AutoRemove", "NetworkMode", "Init", "ReadonlyRootfs", "PortBindings",
    "PublishAllPorts", "ConsoleSize", "RestartPolicy", "LogConfig", "CapAdd", "CapDrop", "SecurityOpt", "Privileged",
    "Dns", "DnsSearch", "ExtraHosts",
}
_HOST_DEFAULTS = {"MemorySwappiness": -1}  # what the docker CLI sends when the flag is not given
# Docker's names for the default network, and the modes sbx has (``container:NAME`` too); None: the config's
_NETWORKS = {"": None, "default": None, "bridge": None, "none": "none", "host": "host",
             "slirp4netns": "slirp4netns", "pasta": "pasta"}
_CONTAINER_NETWORK = "container:"
_MOUNT_TYPES = ("bind", "volume", "tmpfs")


@valueclass(frozen=False)
class CreateRequest:
    image: str
    args: list[str]
    options: object  # sandbox.service.containers.RunOptions
    auto_remove: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # what create could not enforce (the response's Warnings)


def create_request(body: object, name: str | None) -> CreateRequest:
    """The image, command and RunOptions a create body asks for; ApiError(400) for what sbx cannot honour."""
    from sandbox.service.containers import RunOptions

    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    config = {key: value for key, value in body.items() if key not in ("HostConfig", "NetworkingConfig")}
    host = body.get("HostConfig") or {}
    if not isinstance(host, dict):
        raise ApiError(400, "HostConfig must be a JSON object")
    _refuse_unknown("", config, _CONFIG_READ | _CONFIG_IGNORED)
    _refuse_unknown("HostConfig.", host, _HOST_READ)
    _check_networking(body.get("NetworkingConfig"))
    if config.get("Volumes"):  # a map of paths to {}: each key asks for an anonymous volume
        raise unsupported("Volumes (anonymous volumes)", "are not supported by sbx: name the volume (-v NAME:/path)")
    image = config.get("Image")
    if not isinstance(image, str) or not image:
        raise ApiError(400, "config has no Image")
    options = RunOptions(name=name or None)
    options.env = _strings("Env", config.get("Env"))
    options.user = _text("User", config.get("User")) or None
    options.workdir = _text("WorkingDir", config.get("WorkingDir")) or None
    options.hostname = _text("Hostname", config.get("Hostname")) or None
    options.tty = bool(config.get("Tty"))
    options.interactive = bool(config.get("OpenStdin"))
    cmd = _strings("Cmd", config.get("Cmd"))
    entrypoint = config.get("Entrypoint")
    args = list(cmd)
    if entrypoint is not None:
        words = _strings("Entrypoint", entrypoint)
        if words:  # [] keeps the image's; [""] clears it
            options.entrypoint = words[0]
            args = words[1:] + cmd
    options.volumes = _strings("HostConfig.Binds", host.get("Binds"))
    options.mounts = [_mount_text(mount) for mount in host.get("Mounts") or []]
    tmpfs = host.get("Tmpfs") or {}
    if not isinstance(tmpfs, dict):
        raise ApiError(400, "HostConfig.Tmpfs must be an object of paths and options")
    options.tmpfs = [f"{path}:{opts}" if opts else str(path) for path, opts in tmpfs.items()]
    options.read_only = bool(host.get("ReadonlyRootfs"))
    options.init = bool(host.get("Init"))
    options.network = _network(host.get("NetworkMode"))
    console = host.get("ConsoleSize")
    if options.tty and isinstance(console, list) and len(console) == 2 and all(
        isinstance(n, int) and n > 0 for n in console
    ):
        options.console_size = (console[0], console[1])
    restart = host.get("RestartPolicy") or {}
    if isinstance(restart, dict) and restart.get("Name") not in (None, "", "no"):
        raise unsupported(f"HostConfig.RestartPolicy {restart.get('Name')!r}")
    log = host.get("LogConfig") or {}
    if isinstance(log, dict) and (log.get("Type") not in (None, "", "json-file") or not _is_zero(log.get("Config"))):
        raise unsupported("HostConfig.LogConfig", "is not supported: sbx keeps Docker's json-file log")
    options.publish_all = bool(host.get("PublishAllPorts"))  # the image's exposed ports; the body's are below
    options.publish = publish_args(config.get("ExposedPorts"), host.get("PortBindings"), options.publish_all)
    options.dns = _strings("HostConfig.Dns", host.get("Dns"))
    options.dns_search = _strings("HostConfig.DnsSearch", host.get("DnsSearch"))
    options.add_hosts = _strings("HostConfig.ExtraHosts", host.get("ExtraHosts"))
    options.cap_add = _strings("HostConfig.CapAdd", host.get("CapAdd"))
    options.cap_drop = _strings("HostConfig.CapDrop", host.get("CapDrop"))
    options.security_opts = _strings("HostConfig.SecurityOpt", host.get("SecurityOpt"))
    options.privileged = _bool("HostConfig.Privileged", host.get("Privileged"))
    options.limit_flags = limit_flags(host)
    labels = config.get("Labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise ApiError(400, "Labels must be an object of strings")
    wanted = CreateRequest(image, args, options, auto_remove=bool(host.get("AutoRemove")), labels=labels)
    options.notice = wanted.warnings.append  # best-effort limits: what stands in for a missing controller
    return wanted


def limit_flags(host: dict) -> dict:
    """HostConfig's resource fields as the values of `sbx run`'s limit flags (``None`` where a field is zero).

    ``Memory: 8388608`` → ``memory="8388608"`` (bytes), ``NanoCpus: 1500000000`` → ``cpus="1.5"``,
    ``Ulimits: [{"Name": "nofile", "Soft": 64, "Hard": 128}]`` → ``ulimit=["nofile=64:128"]``. ``PidsLimit`` and
    ``MemorySwap`` keep -1 (no limit)."""
    flags: dict = {}
    for key, flag in _LIMITS.items():
        value = host.get(key)
        if key == "Ulimits":
            flags[flag] = [_ulimit(item) for item in value or []]
        elif key == "CpusetCpus":
            flags[flag] = _text(f"HostConfig.{key}", value) or None
        elif value is None or value == 0:
            flags[flag] = None
        elif not isinstance(value, int) or isinstance(value, bool):
            raise ApiError(400, f"HostConfig.{key} must be an integer")
        elif key == "NanoCpus":
            flags[flag] = str(value / 1e9)
        else:
            flags[flag] = str(value)
    return flags


def _ulimit(item: object) -> str:
    if not (isinstance(item, dict) and isinstance(item.get("Name"), str)
            and all(isinstance(item.get(key), int) and not isinstance(item.get(key), bool)
                    for key in ("Soft", "Hard"))):
        raise ApiError(400, "HostConfig.Ulimits entries must be {Name, Soft, Hard}")
    return f"{item['Name']}={item['Soft']}:{item['Hard']}"


def _network(mode: object) -> str | None:
    """HostConfig.NetworkMode as sbx's mode; None for Docker's default network (sbx's configured one)."""
    mode = _text("HostConfig.NetworkMode", mode)
    if mode in _NETWORKS:
        return _NETWORKS[mode]
    if mode.startswith(_CONTAINER_NETWORK) and mode[len(_CONTAINER_NETWORK):]:
        return mode
    raise unsupported(f"HostConfig.NetworkMode {mode[:80]!r}",
                      "is not supported: use slirp4netns, pasta, none, host or container:NAME (or the default)")


def publish_args(exposed: object, bindings: object, publish_all: bool) -> list[str]:
    """PortBindings (and, with PublishAllPorts, every ExposedPort without one) as the docker CLI's ``-p`` texts.

    ``{"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}`` → ``127.0.0.1:8080:80/tcp``; an empty HostPort
    → ``80/tcp`` (a free port); an exposed port under PublishAllPorts → ``80/tcp``.
    """
    result = []
    if bindings and not isinstance(bindings, dict):
        raise ApiError(400, "HostConfig.PortBindings must be an object")
    for port, entries in (bindings or {}).items():
        container_port = _port_key(port)
        for entry in entries or [{}]:
            entry = entry or {}
            host_ip, host_port = str(entry.get("HostIp") or ""), str(entry.get("HostPort") or "")
            if host_ip and ":" in host_ip:
                host_ip = f"[{host_ip}]"
            if host_ip:
                result.append(f"{host_ip}:{host_port}:{container_port}")
            elif host_port:
                result.append(f"{host_port}:{container_port}")
            else:
                result.append(container_port)
    if publish_all:
        if exposed and not isinstance(exposed, dict):
            raise ApiError(400, "ExposedPorts must be an object")
        bound = {_port_key(port) for port in bindings or {}}
        result.extend(key for key in (_port_key(port) for port in exposed or {}) if key not in bound)
    return result


def _port_key(text: object) -> str:
    port, _, protocol = str(text).partition("/")
    if not port.isdigit() or not 0 < int(port) < 65536 or protocol not in ("", "tcp", "udp", "sctp"):
        raise ApiError(400, f"invalid port {str(text)[:40]!r}")
    return f"{int(port)}/{protocol or 'tcp'}"


def _mount_text(mount: object) -> str:
    """One HostConfig.Mounts entry as the text of `sbx run --mount`."""
    if not isinstance(mount, dict):
        raise ApiError(400, "HostConfig.Mounts entries must be objects")
    kind = mount.get("Type") or "volume"
    if kind not in _MOUNT_TYPES:
        raise unsupported(f"mount type {kind!r}")
    target, source = mount.get("Target"), mount.get("Source") or ""
    if not isinstance(target, str) or not target or not isinstance(source, str) or "," in source + target:
        raise ApiError(400, "a mount needs a Target (and no comma in its paths)")
    for key in ("BindOptions", "VolumeOptions"):
        if not _is_zero(mount.get(key)):
            raise unsupported(f"HostConfig.Mounts {key}")
    parts = [f"type={kind}", f"target={target}"]
    if source:
        parts.append(f"source={source}")
    if mount.get("ReadOnly"):
        parts.append("readonly=true")
    tmpfs = mount.get("TmpfsOptions") or {}
    if tmpfs.get("SizeBytes"):
        parts.append(f"tmpfs-size={int(tmpfs['SizeBytes'])}")
    if tmpfs.get("Mode"):
        parts.append(f"tmpfs-mode={int(tmpfs['Mode']):o}")
    return ",".join(parts)


def _check_networking(networking: object) -> None:
    """NetworkingConfig may name the default network only, with nothing set for it."""
    if networking is None:
        return
    endpoints = networking.get("EndpointsConfig") if isinstance(networking, dict) else None
    if endpoints is None and isinstance(networking, dict) and _is_zero(networking):
        return
    if not isinstance(endpoints, dict):
        raise ApiError(400, "NetworkingConfig must be an object")
    for name, endpoint in endpoints.items():
        if (name not in _NETWORKS and not name.startswith(_CONTAINER_NETWORK)) or not _is_zero(endpoint):
            raise unsupported(f"NetworkingConfig for network {name!r}", "is not supported: sbx has no user networks")


def _refuse_unknown(prefix: str, values: dict, known: set[str]) -> None:
    for key, value in values.items():
        if key not in known and not _is_zero(value) and not (prefix and _HOST_DEFAULTS.get(key, 0) == value):
            raise unsupported(f"{prefix}{key}", "is not supported by sbx; leave it unset")


def _is_zero(value: object) -> bool:
    if value is None or value is False or value == "" or value == 0:
        return True
    if isinstance(value, dict):
        return all(_is_zero(item) for item in value.values())
    if isinstance(value, list):
        return all(_is_zero(item) for item in value)
    return False


def _strings(name: str, value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ApiError(400, f"{name} must be a list of strings")
    return list(value)


def _bool(name: str, value: object) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(400, f"{name} must be true or false")
    return value


def _text(name: str, value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ApiError(400, f"{name} must be a string")
    return value
