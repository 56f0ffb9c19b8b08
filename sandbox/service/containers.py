"""Building containers: from an image and Docker's run flags to a :class:`ContainerSpec` and the container's
directory (its writable layer, generated /etc files); removing that directory again. Starting, watching and
stopping them is the monitor's and :mod:`sandbox.service.lifecycle`'s work."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.config import Settings
from sandbox.errors import InvalidRunOption, SbxError

_RESOLV_LIMIT = 64 * 1024
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"


@dataclass
class RunOptions:
    env: list[str] = field(default_factory=list)
    env_files: list[str] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    entrypoint: str | None = None
    volumes: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    tmpfs: list[str] = field(default_factory=list)
    read_only: bool = False
    hostname: str | None = None
    name: str | None = None
    init: bool = False
    interactive: bool = False
    tty: bool = False
    network: str = "none"
    console_size: tuple[int, int] | None = None  # with tty: (rows, columns) of the terminal sbx runs in


class ContainerService:
    def __init__(self, settings: Settings, images=None) -> None:
        self.settings = settings
        self._images = images
        self.warnings: list[str] = []  # what create had to work around, for the CLI to print ("WARNING: ...")

    @property
    def images(self):
        """The image service, made when first needed: `ps`, `rm` and `stop` never need it (nor its imports)."""
        if self._images is None:
            from sandbox.service.images import ImageService

            self._images = ImageService(self.settings)
        return self._images

    @property
    def containers_root(self) -> Path:
        from sandbox.store.containers import containers_root

        return containers_root(self.settings.data_root)

    def create(self, image: str, args: list[str], options: RunOptions, container_id: str | None = None,
               record=None):
        """Build the spec and the container's directory (rootfs dirs, /etc files); returns (spec, directory).

        ``record`` is the image's record when the caller has already resolved ``image``."""
        from sandbox.oci.imageconfig import ImageConfig
        from sandbox.oci.manifest import Descriptor
        from sandbox.runtime.command import build_args, merge_env, parse_env_file, parse_hostname
        from sandbox.runtime.identity import parse_user
        from sandbox.runtime.idmap import default_idmap
        from sandbox.runtime.rootfs import create_dirs, plan_rootfs
        from sandbox.runtime.spec import NETWORKS, ContainerSpec, Process

        if options.init:
            from sandbox.runtime.mounts import find_init

            find_init()  # no init on this host: say so before anything is written
        if options.network not in NETWORKS:
            raise InvalidRunOption(
                f"network {options.network!r} is not supported yet", hint="use --network none or --network host"
            )
        record = record or self.images.resolve(image)
        store = self.images.store
        config = ImageConfig.parse(store.read_blob(record.id))
        user = options.user if options.user is not None else config.user
        parse_user(user)  # bad ids are refused before anything is written (TESTPLAN 32)
        unpacker = self.images.unpacker()
        layers = [Descriptor(layer.media_type, layer.digest, layer.size) for layer in record.layers]
        with unpacker.unpacked(layers, [layer.diff_id for layer in record.layers]) as chains:
            pass
        driver = unpacker.storage_driver(self.settings.storage_driver)
        container_id = container_id or os.urandom(32).hex()
        hostname = parse_hostname(options.hostname) if options.hostname else container_id[:12]
        env_files = [parse_env_file(_read_text(path), path) for path in options.env_files]
        image_env = (*config.env, "TERM=xterm") if options.tty else config.env  # as Docker sets it for -t
        # HOME comes from the user's passwd entry, read inside the root: the launcher adds it when unset
        env = merge_env(
            image_env,
            list(options.env),
            [item for lines in env_files for item in lines],
            os.environ,
            hostname=hostname,
            home="",
        )
        process = Process(
            args=build_args(config.entrypoint, config.cmd, options.entrypoint, tuple(args)),
            env=tuple(env),
            cwd=options.workdir or config.working_dir or "/",
            user=user,
            tty=options.tty,
            stdin=options.interactive,
            console_size=options.console_size if options.tty else None,
        )
        self.containers_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        container_dir = self.containers_root / container_id
        container_dir.mkdir(mode=0o700, exist_ok=True)  # a detached container's record is already there
        try:
            (container_dir / "mnt").mkdir()
            plan = plan_rootfs(driver, container_dir, unpacker.layers.root, [chain.hex for chain in chains])
            create_dirs(plan)
            if driver == "copy":
                unpacker.flatten(record.layers, plan.copy)
            spec = ContainerSpec(
                id=container_id,
                rootfs=plan,
                process=process,
                idmap=default_idmap(),
                hostname=hostname,
                mounts=tuple(parse_mounts(options)),
                read_only=options.read_only,
                network=options.network,
                init=options.init,
                stop_signal=self._stop_signal(config.stop_signal),
                etc_files=etc_files(hostname, options.network),
            )
            from sandbox.runtime.mounts import write_etc_files

            write_etc_files(spec, str(container_dir))
        except BaseException:
            self.remove_dir(container_dir)
            raise
        return spec, container_dir

    def _stop_signal(self, name: str | None) -> str | None:
        """The image's StopSignal when it names a signal; an unknown one is dropped with a warning (stop then sends
        SIGTERM), as a `stop` that fails on it would leave the container unstoppable but for kill."""
        from sandbox.service.lifecycle import parse_signal

        if name is None:
            return None
        try:
            parse_signal(name)
        except InvalidRunOption:
            self.warnings.append(f"image StopSignal {name[:40]!r} names no signal: sbx stop will send SIGTERM")
            return None
        return name

    def remove_dir(self, container_dir: Path) -> None:
        """Remove a container's directory: directly when everything in it is the user's own (the usual case, and
        ~100 ms cheaper), else from inside the user namespace, where files of subordinate owners are removable."""
        from sandbox.store.trees import remove_tree

        try:
            remove_tree(container_dir)
        except (OSError, SbxError):
            self.images.unpacker().in_namespace({"op": "remove", "paths": [str(container_dir)]})


def validate_name(name: str | None) -> None:
    """Docker's container name rule, checked before anything is written (TESTPLAN 32)."""
    if name is None:
        return
    if not name or len(name) > 253 or not name[0].isalnum() or any(c not in _NAME_CHARS for c in name):
        raise InvalidRunOption(
            f"invalid container name {name[:80]!r}", hint="only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )


def etc_files(hostname: str, network: str) -> dict[str, str]:
    hosts = (
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        f"127.0.1.1\t{hostname}\n"
    )
    resolv = ""
    if network == "host":
        try:
            with open("/etc/resolv.conf", "rb") as handle:
                resolv = handle.read(_RESOLV_LIMIT).decode("utf-8", "replace")
        except OSError:
            resolv = ""
    return {"hostname": f"{hostname}\n", "hosts": hosts, "resolv.conf": resolv}


def parse_mounts(options: RunOptions):
    from sandbox.runtime.spec import Mount

    for text in options.volumes:
        parts = text.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise InvalidRunOption(
                f"invalid volume specification {text!r}", hint="use -v /host/path:/container/path[:ro]"
            )
        source, target = parts[0], parts[1]
        mode = parts[2] if len(parts) == 3 else "rw"
        if not os.path.isabs(source):
            raise InvalidRunOption(
                f"invalid volume source {source!r}: named volumes are not supported yet",
                hint="use an absolute host path",
            )
        if mode not in ("ro", "rw"):
            raise InvalidRunOption(f"invalid volume mode {mode!r}", hint="use ro or rw")
        yield _pinned_bind(target, source, read_only=mode == "ro")
    for text in options.mounts:
        fields = {}
        for item in text.split(","):
            key, _, value = item.partition("=")
            fields[key.strip()] = value.strip() if value else "true"
        kind = fields.pop("type", "volume")
        target = fields.pop("target", None) or fields.pop("destination", None) or fields.pop("dst", None)
        read_only = fields.pop("readonly", fields.pop("ro", "false")) in ("true", "1")
        if target is None:
            raise InvalidRunOption(f"invalid --mount {text!r}: no target")
        if kind == "bind":
            source = fields.pop("source", None) or fields.pop("src", None)
            if not source or not os.path.isabs(source):
                raise InvalidRunOption(f"invalid --mount {text!r}: a bind needs an absolute source")
            yield _pinned_bind(target, source, read_only=read_only)
        elif kind == "tmpfs":
            extra = []
            if "tmpfs-size" in fields:
                extra.append(f"size={fields.pop('tmpfs-size')}")
            if "tmpfs-mode" in fields:
                extra.append(f"mode={fields.pop('tmpfs-mode')}")
            yield Mount("tmpfs", _container_path(target), read_only=read_only, options=tuple(extra))
        else:
            raise InvalidRunOption(f"unsupported mount type {kind!r}", hint="use type=bind or type=tmpfs")
    for text in options.tmpfs:
        target, _, opts = text.partition(":")
        yield Mount("tmpfs", _container_path(target), options=tuple(o for o in opts.split(",") if o))


def _pinned_bind(target: str, source: str, *, read_only: bool):
    """A bind whose source is resolved once, now, and pinned by device and inode: every start opens that path
    without following symlinks and refuses anything else there (a source swapped for a symlink to the user's home
    by a container that shares its parent directory, TESTPLAN 57). A source missing now is reported at start."""
    from sandbox.runtime.spec import Mount

    resolved = os.path.realpath(source)
    try:
        info = os.stat(resolved)
        pin = (info.st_dev, info.st_ino)
    except OSError:
        pin = None
    return Mount("bind", _container_path(target), resolved, read_only=read_only, pin=pin)


def _container_path(path: str) -> str:
    if not path.startswith("/"):
        raise InvalidRunOption(f"invalid mount target {path!r}: it must be an absolute path")
    return os.path.normpath(path)


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            return handle.read(1 << 20).decode("utf-8", "replace")
    except OSError as error:
        raise InvalidRunOption(f"cannot read env file {path}: {error.strerror}") from None
