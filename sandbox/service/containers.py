"""Building containers: from an image and Docker's run flags to a :class:`ContainerSpec` and the container's
directory (its writable layer, generated /etc files); removing that directory again. Starting, watching and
stopping them is the monitor's and :mod:`sandbox.service.lifecycle`'s work."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from sandbox.config import Settings
from sandbox.errors import InvalidRunOption, SbxError
from sandbox.valueclass import field, valueclass

_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"


@valueclass(frozen=False)
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
    network: str | None = None  # None: the config's (slirp4netns unless it says otherwise)
    console_size: tuple[int, int] | None = None  # with tty: (rows, columns) of the terminal sbx runs in
    limit_flags: dict = field(default_factory=dict)  # --memory, --cpus, ... --ulimit as given (sandbox.cgroups.limits)
    limits_mode: str | None = None  # --limits strict|best-effort (else the config's)
    notice: Callable[[str], None] | None = None  # where the warning about unenforced limits goes
    security_opts: list[str] = field(default_factory=list)
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False
    publish: list[str] = field(default_factory=list)  # -p
    publish_all: bool = False  # -P
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    add_hosts: list[str] = field(default_factory=list)


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
               record=None, *, durable: bool = True):
        """Build the spec and the container's directory (rootfs dirs, /etc files); returns (spec, directory).

        ``record`` is the image's record when the caller has already resolved ``image``; ``durable=False`` (a --rm
        container, gone after a reboot whatever happens) writes the /etc files without fsync."""
        from sandbox.oci.imageconfig import ImageConfig
        from sandbox.oci.manifest import Descriptor
        from sandbox.runtime.command import build_args, merge_env, parse_env_file, parse_hostname
        from sandbox.runtime.identity import parse_user
        from sandbox.runtime.idmap import default_idmap
        from sandbox.runtime.rootfs import create_dirs, plan_rootfs
        from sandbox.runtime.spec import ContainerSpec, Process

        if options.init:
            from sandbox.runtime.mounts import find_init

            find_init()  # no init on this host: say so before anything is written
        network = self._network_mode(options.network or self.settings.network)
        security = self.security(options)
        record = record or self.images.resolve(image)
        store = self.images.store
        config = ImageConfig.parse(store.read_blob(record.id))
        ports = published_ports(options, network, config.exposed_ports, self.settings.port_bind_address)
        user = options.user if options.user is not None else config.user
        parse_user(user)  # bad ids are refused before anything is written (TESTPLAN 32)
        limits = self.limits(options)  # so are limits nothing here can enforce
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
                mounts=tuple(parse_mounts(options, volume_source=self.volume_source)),
                read_only=options.read_only,
                network=network,
                init=options.init,
                stop_signal=self._stop_signal(config.stop_signal),
                etc_files=etc_files(hostname, network, options, self._joined_etc_files(network)),
                limits=limits,
                security=security,
                ports=ports,
            )
            from sandbox.network.etcfiles import write_etc_files

            write_etc_files(spec.etc_files, str(container_dir), durable=durable)
        except BaseException:
            self.remove_dir(container_dir)
            raise
        return spec, container_dir

    def limits(self, options: RunOptions):
        """The resource limits asked for, and what enforces each here (LimitUnavailable when nothing can); the
        warning for what is not a cgroup limit goes to ``options.notice``."""
        from sandbox.cgroups.limits import Limits, decide, parse_resources

        resources = parse_resources(options.limit_flags, frozenset(os.sched_getaffinity(0)))
        mode = options.limits_mode or self.settings.limits
        if not resources.requested() and not resources.ulimits:
            return Limits(resources=resources, mode=mode, cgroup_parent=self.settings.cgroup_parent)
        from sandbox.cgroups.delegation import discover

        limits = decide(resources, discover(override=self.settings.cgroup_parent), mode=mode,
                        cgroup_parent=self.settings.cgroup_parent)
        if limits.note and options.notice is not None:
            options.notice(limits.note)
        return limits

    def security(self, options: RunOptions):
        """The container's SecurityOptions, its seccomp profile compiled once (so a bad profile fails the create,
        never a later start, and the start finds the filter in the cache)."""
        from sandbox.runtime import privileges
        from sandbox.security import options as security_options

        security = security_options.parse(options.security_opts, options.cap_add, options.cap_drop,
                                          options.privileged, self.settings.seccomp_profile)
        privileges.prepare(security, privileges.cache_dir(self.settings.data_root))
        return security

    def _network_mode(self, text: str) -> str:
        """The mode, with ``container:NAME`` resolved to the container's full id (as Docker keeps it)."""
        from sandbox.network.modes import CONTAINER_PREFIX, joined_container, parse_mode
        from sandbox.store.containers import ContainerStore

        mode = parse_mode(text)
        target = joined_container(mode)
        if target is None:
            return mode
        return CONTAINER_PREFIX + ContainerStore(self.containers_root).resolve(target).id

    def _joined_etc_files(self, network: str) -> dict[str, str]:
        """The other container's hosts and resolv.conf, for ``container:ID`` (its network, its names)."""
        from sandbox.network.modes import joined_container
        from sandbox.store.containers import ContainerStore

        target = joined_container(network)
        if target is None:
            return {}
        try:
            other = ContainerStore(self.containers_root).get(target)
        except SbxError:
            return {}
        files = ((other.spec or {}).get("spec") or {}).get("etc_files") or {}
        return {key: value for key, value in files.items()
                if key in ("hosts", "resolv.conf") and isinstance(value, str)}
    def volume_source(self, name: str) -> str:
        """The directory of the named volume ``name`` (made on first use)."""
        from sandbox.service.volumes import Volumes

        return Volumes(self.settings, containers=self).source(name)


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
        from sandbox.cgroups.tree import release
        from sandbox.store.trees import remove_tree

        with contextlib.suppress(SbxError, OSError):
            release(container_dir)  # a monitor killed with SIGKILL left the container's cgroup behind
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


def etc_files(hostname: str, network: str, options: RunOptions | None = None,
              joined: dict[str, str] | None = None) -> dict[str, str]:
    """/etc/hostname, /etc/hosts and /etc/resolv.conf for the container (see :mod:`sandbox.network.etcfiles`)."""
    from sandbox.network import etcfiles

    options = options or RunOptions()
    add_hosts = [etcfiles.parse_add_host(item) for item in options.add_hosts]
    dns = [etcfiles.parse_dns(item) for item in options.dns]
    search = [etcfiles.parse_search(item) for item in options.dns_search]
    host_text = etcfiles.host_resolv_conf() if network == "host" else None
    files = {
        "hostname": f"{hostname}\n",
        "hosts": etcfiles.hosts(hostname, network, add_hosts),
        "resolv.conf": etcfiles.resolv_conf(network, dns, search, host_text),
    }
    if joined and not (dns or search):
        files["resolv.conf"] = joined.get("resolv.conf", files["resolv.conf"])
    return files


def published_ports(options: RunOptions, network: str, exposed: tuple[str, ...], bind_address: str) -> tuple:
    """-p and -P as PortMappings, refused early when the mode cannot publish or a host port is privileged."""
    if not options.publish and not options.publish_all:  # the common run: no port parser, no sysctl read
        return ()
    from sandbox.network.modes import publishes
    from sandbox.network.ports import (
        check_unprivileged,
        expose_all,
        merge,
        parse_publish,
        unprivileged_port_start,
    )

    mappings = [mapping for text in options.publish for mapping in parse_publish(text, bind_address)]
    if options.publish_all:
        mappings += expose_all(exposed, bind_address)
    if mappings and not publishes(network):
        raise InvalidRunOption(
            f"cannot publish ports with --network {network.split(':', 1)[0]}",
            hint="publish ports with --network slirp4netns or pasta (the container's ports are the host's with host)",
        )
    ports = merge(mappings)
    check_unprivileged(ports, unprivileged_port_start())
    return ports


def parse_mounts(options: RunOptions, volume_source=None):
    """The mounts of -v, --mount and --tmpfs; ``volume_source(name)`` gives a named volume's directory."""
    from sandbox.runtime.spec import Mount

    for text in options.volumes:
        from sandbox.service.volumes import is_volume_name  # here: a run without -v needs no volume service

        parts = text.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise InvalidRunOption(
                f"invalid volume specification {text!r}", hint="use -v /host/path:/container/path[:ro]"
            )
        source, target = parts[0], parts[1]
        mode = parts[2] if len(parts) == 3 else "rw"
        if not os.path.isabs(source) and not (volume_source and is_volume_name(source)):
            raise InvalidRunOption(
                f"invalid volume source {source!r}: neither an absolute path nor a volume name",
                hint="use -v /host/path:/container/path or -v NAME:/container/path",
            )
        if mode not in ("ro", "rw"):
            raise InvalidRunOption(f"invalid volume mode {mode!r}", hint="use ro or rw")
        if not os.path.isabs(source):
            source = volume_source(source)
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
        elif kind == "volume" and volume_source is not None:
            name = fields.pop("source", None) or fields.pop("src", None)
            if not name or not is_volume_name(name):
                raise InvalidRunOption(f"invalid --mount {text!r}: a volume needs a name as its source")
            yield _pinned_bind(target, volume_source(name), read_only=read_only)
        elif kind == "tmpfs":
            extra = []
            if "tmpfs-size" in fields:
                extra.append(f"size={fields.pop('tmpfs-size')}")
            if "tmpfs-mode" in fields:
                extra.append(f"mode={fields.pop('tmpfs-mode')}")
            yield Mount("tmpfs", _container_path(target), read_only=read_only, options=tuple(extra))
        else:
            raise InvalidRunOption(f"unsupported mount type {kind!r}", hint="use type=bind, volume or tmpfs")
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
