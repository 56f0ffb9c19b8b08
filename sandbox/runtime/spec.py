"""What a container is made of, as frozen data: built by the service from the image config and the run flags,
handed to the launcher, and (later) persisted by the monitor. Nothing here touches the system."""

from __future__ import annotations

from sandbox.cgroups.limits import Limits
from sandbox.errors import SbxError, StoreCorrupt
from sandbox.runtime.idmap import IdMap, IdRange
from sandbox.runtime.rootfs import RootfsPlan
from sandbox.security.options import SecurityOptions
from sandbox.valueclass import field, valueclass


@valueclass
class Mount:
    """A mount the user asked for: ``-v``, ``--mount``, ``--tmpfs``."""

    kind: str  # "bind" or "tmpfs"
    target: str  # absolute path inside the container
    source: str | None = None  # host path for binds
    read_only: bool = False
    options: tuple[str, ...] = ()  # tmpfs: ("size=64m", "mode=1777")
    # binds: (st_dev, st_ino) of the source when the container was created; every start checks it (TESTPLAN 57)
    pin: tuple[int, int] | None = None


@valueclass
class Process:
    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str = "/"
    user: str = ""  # as given: "", "name", "1000", "1000:1000", "name:group"; resolved inside the root
    tty: bool = False
    stdin: bool = False
    # with tty: (rows, columns) of the terminal the starting sbx runs in. Not stored with the spec: it belongs to one
    # start, and a later `start` takes the size its attached client sends.
    console_size: tuple[int, int] | None = None


@valueclass
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
    limits: Limits = Limits()  # resource limits: the request and what enforces it (sandbox.cgroups)
    security: SecurityOptions = field(default_factory=SecurityOptions)  # caps, seccomp, no_new_privs, unmask
    ports: tuple = ()  # sandbox.network.ports.PortMapping: -p and -P (host port 0: any free one, chosen at start)

    def to_json(self) -> dict:
        """Plain JSON data; :meth:`from_json` gives back an equal spec."""
        return {
            "version": SPEC_VERSION,
            "id": self.id,
            "rootfs": rootfs_to_json(self.rootfs),
            "process": process_to_json(self.process),
            "idmap": idmap_to_json(self.idmap),
            "hostname": self.hostname,
            "mounts": [mount_to_json(mount) for mount in self.mounts],
            "read_only": self.read_only,
            "network": self.network,
            "init": self.init,
            "stop_signal": self.stop_signal,
            "etc_files": dict(self.etc_files),
            "limits": self.limits.to_json(),
            "security": self.security.to_json(),
            "ports": [mapping.to_json() for mapping in self.ports],
        }

    @classmethod
    def from_json(cls, data: object) -> ContainerSpec:
        """The spec :meth:`to_json` described; StoreCorrupt names the first thing that is missing or wrong."""
        keys = ("version", "id", "rootfs", "process", "idmap", "hostname", "mounts", "read_only", "network", "init",
                "stop_signal", "etc_files")
        reader = _Reader(data, "spec", keys, optional=("limits", "security", "ports"))
        version = reader.integer("version")
        if version != SPEC_VERSION:
            raise reader.damaged(f"has unsupported version {version}")
        network = reader.string("network")
        from sandbox.network.modes import valid_stored

        if not valid_stored(network):
            raise reader.damaged(f"field 'network' is not supported: {network[:40]!r}")
        return cls(
            id=reader.string("id"),
            rootfs=rootfs_from_json(reader.data["rootfs"]),
            process=process_from_json(reader.data["process"]),
            idmap=idmap_from_json(reader.data["idmap"]),
            hostname=reader.string("hostname"),
            mounts=tuple(mount_from_json(item, f"mounts[{index}]")
                         for index, item in enumerate(reader.objects("mounts"))),
            read_only=reader.boolean("read_only"),
            network=network,
            init=reader.boolean("init"),
            stop_signal=reader.optional_string("stop_signal"),
            etc_files=reader.string_map("etc_files"),
            limits=reader.limits("limits"),
            security=_security_from_json(reader),
            ports=ports_from_json(reader, reader.data.get("ports", [])),
        )


# -- JSON: the spec as the container record keeps it (`sbx start` rebuilds the container from it) ------------------

SPEC_VERSION = 1


class _Reader:
    """Strict access to one JSON object of the spec: exactly the expected keys, each of its exact type."""

    def __init__(self, data: object, where: str, keys: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
        self.where = where
        if not isinstance(data, dict):
            raise self.damaged("must be a JSON object")
        missing = [key for key in keys if key not in data]
        if missing:
            raise self.damaged(f"missing field {missing[0]!r}")
        unknown = sorted(str(key) for key in data if key not in keys and key not in optional)
        if unknown:
            raise self.damaged(f"unknown field {unknown[0][:80]!r}")
        self.data = data

    def damaged(self, reason: str) -> StoreCorrupt:
        return StoreCorrupt(
            f"damaged container spec: {self.where} {reason}",
            hint="remove the container with sbx rm -f and create it again",
        )

    def string(self, key: str) -> str:
        value = self.data[key]
        if not isinstance(value, str):
            raise self.damaged(f"field {key!r} must be a string")
        return value

    def optional_string(self, key: str) -> str | None:
        return None if self.data.get(key) is None else self.string(key)

    def boolean(self, key: str) -> bool:
        value = self.data[key]
        if not isinstance(value, bool):
            raise self.damaged(f"field {key!r} must be true or false")
        return value

    def integer(self, key: str) -> int:
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.damaged(f"field {key!r} must be an integer")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.data[key]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.damaged(f"field {key!r} must be a list of strings")
        return tuple(value)

    def string_map(self, key: str) -> dict[str, str]:
        value = self.data[key]
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self.damaged(f"field {key!r} must be an object of strings")
        return dict(value)

    def limits(self, key: str) -> Limits:
        if key not in self.data:
            return Limits()
        try:
            return Limits.from_json(self.data[key])
        except ValueError as error:
            raise self.damaged(f"field {key!r}: {error}") from None

    def objects(self, key: str) -> list:
        value = self.data[key]
        if not isinstance(value, list):
            raise self.damaged(f"field {key!r} must be a list")
        return value


def _security_from_json(reader: _Reader) -> SecurityOptions:
    """A spec written before sbx kept security options gets the defaults: confined, never less."""
    if "security" not in reader.data:
        return SecurityOptions()
    try:
        return SecurityOptions.from_json(reader.data["security"])
    except ValueError as error:
        raise reader.damaged(f"field 'security' {error}") from None


def ports_from_json(reader: _Reader, data: object) -> tuple:
    if not isinstance(data, list):
        raise reader.damaged("field 'ports' must be a list")
    if not data:  # nothing published: the port parser (and ipaddress) stay off the start path
        return ()
    from sandbox.network.ports import PortMapping

    try:
        return tuple(PortMapping.from_json(item) for item in data)
    except (ValueError, SbxError) as error:
        raise reader.damaged(f"field 'ports': {getattr(error, 'message', error)}") from None


def mount_to_json(mount: Mount) -> dict:
    data = {"kind": mount.kind, "target": mount.target, "source": mount.source, "read_only": mount.read_only,
            "options": list(mount.options)}
    if mount.pin is not None:
        data["pin"] = list(mount.pin)
    return data


def mount_from_json(data: object, where: str = "mount") -> Mount:
    reader = _Reader(data, where, ("kind", "target", "source", "read_only", "options"), optional=("pin",))
    kind = reader.string("kind")
    if kind not in ("bind", "tmpfs"):
        raise reader.damaged(f"field 'kind' must be bind or tmpfs, not {kind[:40]!r}")
    target = reader.string("target")
    if not target.startswith("/"):
        raise reader.damaged("field 'target' must be an absolute path")
    source = reader.optional_string("source")
    if kind == "bind" and source is None:
        raise reader.damaged("a bind needs a 'source'")
    pin = reader.data.get("pin")
    if pin is not None and not (isinstance(pin, list) and len(pin) == 2
                                and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in pin)):
        raise reader.damaged("field 'pin' must be [device, inode]")
    return Mount(kind, target, source, reader.boolean("read_only"), reader.strings("options"),
                 tuple(pin) if pin is not None else None)


def process_to_json(process: Process) -> dict:
    return {"args": list(process.args), "env": list(process.env), "cwd": process.cwd, "user": process.user,
            "tty": process.tty, "stdin": process.stdin}


def process_from_json(data: object, where: str = "process") -> Process:
    reader = _Reader(data, where, ("args", "env", "cwd", "user", "tty", "stdin"))
    args = reader.strings("args")
    if not args:
        raise reader.damaged("field 'args' must not be empty")
    return Process(args, reader.strings("env"), reader.string("cwd"), reader.string("user"), reader.boolean("tty"),
                   reader.boolean("stdin"))


def rootfs_to_json(plan: RootfsPlan) -> dict:
    return {"driver": plan.driver, "layer_root": plan.layer_root, "lower": list(plan.lower), "upper": plan.upper,
            "work": plan.work, "copy": plan.copy}


def rootfs_from_json(data: object, where: str = "rootfs") -> RootfsPlan:
    from sandbox.runtime.rootfs import DRIVERS

    reader = _Reader(data, where, ("driver", "layer_root", "lower", "upper", "work", "copy"))
    driver = reader.string("driver")
    if driver not in DRIVERS:
        raise reader.damaged(f"field 'driver' is not a storage driver: {driver[:40]!r}")
    plan = RootfsPlan(driver, reader.string("layer_root"), reader.strings("lower"), reader.optional_string("upper"),
                      reader.optional_string("work"), reader.optional_string("copy"))
    if (plan.copy is None) == (plan.upper is None or plan.work is None):
        raise reader.damaged("needs either 'copy' or both 'upper' and 'work'")
    return plan


def idmap_to_json(idmap: IdMap) -> dict:
    def ranges(items: tuple[IdRange, ...]) -> list:
        return [[item.container_id, item.host_id, item.size] for item in items]

    return {"uids": ranges(idmap.uids), "gids": ranges(idmap.gids), "note": idmap.note}


def idmap_from_json(data: object, where: str = "idmap") -> IdMap:
    reader = _Reader(data, where, ("uids", "gids", "note"))

    def ranges(key: str) -> tuple[IdRange, ...]:
        found = []
        for item in reader.objects(key):
            if not (isinstance(item, list) and len(item) == 3
                    and all(isinstance(n, int) and not isinstance(n, bool) for n in item)):
                raise reader.damaged(f"field {key!r} must hold [container_id, host_id, size] triples")
            try:
                found.append(IdRange(*item))
            except ValueError as error:
                raise reader.damaged(f"field {key!r}: {error}") from None
        if not found:
            raise reader.damaged(f"field {key!r} must not be empty")
        return tuple(found)

    return IdMap(ranges("uids"), ranges("gids"), reader.optional_string("note"))


def stored_spec(record) -> ContainerSpec:
    """The ContainerSpec kept in a container's record (StoreCorrupt when it is missing or damaged): what `start`,
    `exec` and a monitor that was given only the container's id run from."""
    data = (record.spec or {}).get("spec")
    if data is None:
        raise StoreCorrupt(
            f"container {record.name} has no stored spec (it was made by an older sbx, or its create failed)",
            hint=f"remove it with sbx rm {record.name} and create it again",
        )
    return ContainerSpec.from_json(data)
