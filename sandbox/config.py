"""Settings: where state lives and what the config file says (layer L1).

Roots follow XDG: images and records under ``$XDG_DATA_HOME/sbx`` (default ``~/.local/share/sbx``), sockets and pids
under ``$XDG_RUNTIME_DIR/sbx`` or ``/tmp/sbx-$UID``. The config file is ``$SBX_CONFIG`` or
``$XDG_CONFIG_HOME/sbx/config.toml``::

    default_platform = "linux/amd64"          # optional
    insecure_registries = ["myhost:5000"]     # plain http allowed (localhost/127.0.0.0/8 always are)
    storage_driver = "overlay"                # optional: overlay, fuse-overlayfs, copy (SBX_STORAGE_DRIVER wins)
    limits = "best-effort"                    # optional: go on when a resource limit cannot be enforced (warned)
    cgroup_parent = "/user.slice/mine"        # optional: the delegated cgroup v2 directory (inside its mount)
    layer_size_limit = 68719476736            # bytes one layer may unpack to (default 64 GiB)
    detach_keys = "ctrl-p,ctrl-q"             # run, start and attach; --detach-keys wins
    network = "slirp4netns"                   # run/create without --network: slirp4netns, pasta, none, host
    port_bind_address = "0.0.0.0"             # -p without an address binds here; "127.0.0.1": loopback only

    [registries."docker.io"]
    mirrors = ["127.0.0.1:5000"]              # tried in order before the registry itself

Every root is a field so tests can point them at a tmp dir.
"""

from __future__ import annotations

import os
from pathlib import Path

from sandbox.errors import ConfigError, UnsafeRuntimeDir
from sandbox.valueclass import field, replace, valueclass

_STORAGE_DRIVERS = ("overlay", "fuse-overlayfs", "copy")


@valueclass
class RegistryConfig:
    mirrors: tuple[str, ...] = ()
    insecure: bool = False


@valueclass
class Settings:
    data_root: Path
    runtime_root: Path
    config_root: Path
    config_file: Path | None = None
    registries: dict[str, RegistryConfig] = field(default_factory=dict)
    insecure_registries: frozenset[str] = frozenset()
    default_platform: str | None = None
    storage_driver: str | None = None
    layer_size_limit: int = 64 * 1024**3
    seccomp_profile: str | None = None  # --security-opt seccomp= when none is given: a shipped name, a path, unconfined
    detach_keys: str | None = None
    docker_config: Path | None = None
    limits: str = "strict"  # resource limits nothing can enforce: refused (strict) or warned about (best-effort)
    cgroup_parent: str | None = None  # the delegated cgroup v2 directory, when sbx cannot find it from its own
    network: str = "slirp4netns"
    port_bind_address: str = "0.0.0.0"

    @property
    def store_root(self) -> Path:
        return self.data_root

    @property
    def auth_file(self) -> Path:
        """sbx's own credentials (mode 0600), written by `sbx login`."""
        return self.config_root / "auth.json"

    def registry(self, host: str) -> RegistryConfig:
        return self.registries.get(host, RegistryConfig())

    def is_insecure(self, host: str) -> bool:
        """Plain http is used for loopback registries (as Docker does) and those the config names."""
        if host in self.insecure_registries or self.registry(host).insecure:
            return True
        return is_loopback(host)


def is_loopback(host: str) -> bool:
    name = host
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost":
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _is_ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def load_settings(env: os._Environ[str] | dict[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    data_home = Path(env.get("XDG_DATA_HOME") or home / ".local" / "share")
    config_home = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    runtime_root = choose_runtime_root(env.get("XDG_RUNTIME_DIR"))
    config_file = Path(env["SBX_CONFIG"]) if env.get("SBX_CONFIG") else config_home / "sbx" / "config.toml"
    docker_config_dir = env.get("DOCKER_CONFIG")
    docker_config = Path(docker_config_dir) / "config.json" if docker_config_dir else home / ".docker" / "config.json"
    settings = Settings(
        data_root=Path(env.get("SBX_ROOT") or data_home / "sbx"),
        runtime_root=runtime_root,
        config_root=config_home / "sbx",
        docker_config=docker_config,
    )
    if config_file.exists():
        settings = _apply_file(settings, config_file)
    elif env.get("SBX_CONFIG"):
        raise ConfigError(f"config file {config_file} does not exist", hint="unset SBX_CONFIG or create the file")
    forced = env.get("SBX_STORAGE_DRIVER")
    if forced:
        if forced not in _STORAGE_DRIVERS:
            raise ConfigError(
                f"unknown storage driver {forced!r}", hint=f"choose one of {', '.join(_STORAGE_DRIVERS)}"
            )
        settings = replace(settings, storage_driver=forced)
    return settings


def _apply_file(settings: Settings, path: Path) -> Settings:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    if not text.strip():
        return settings
    import tomllib  # here: every command reads the settings, few have a config file with something in it

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    known = {
        "registries", "insecure_registries", "default_platform", "storage_driver", "layer_size_limit", "detach_keys",
        "limits", "cgroup_parent",
        "seccomp_profile",
        "network", "port_bind_address",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting {unknown[0]!r}")
    registries: dict[str, RegistryConfig] = {}
    raw_registries = data.get("registries", {})
    if not isinstance(raw_registries, dict):
        raise ConfigError(f"config file {path}: [registries] must be a table")
    for host, entry in raw_registries.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"config file {path}: [registries.{host!r}] must be a table")
        unknown = sorted(set(entry) - {"mirrors", "insecure"})
        if unknown:
            raise ConfigError(f"config file {path}: unknown setting {unknown[0]!r} in [registries.{host!r}]")
        mirrors = entry.get("mirrors", [])
        insecure = entry.get("insecure", False)
        if not isinstance(mirrors, list) or not all(isinstance(m, str) and m for m in mirrors):
            raise ConfigError(f"config file {path}: registries.{host}.mirrors must be a list of hosts")
        if not isinstance(insecure, bool):
            raise ConfigError(f"config file {path}: registries.{host}.insecure must be true or false")
        registries[host] = RegistryConfig(tuple(m.rstrip("/") for m in mirrors), insecure)
    insecure_list = data.get("insecure_registries", [])
    if not isinstance(insecure_list, list) or not all(isinstance(h, str) for h in insecure_list):
        raise ConfigError(f"config file {path}: insecure_registries must be a list of hosts")
    platform = data.get("default_platform")
    if platform is not None and not isinstance(platform, str):
        raise ConfigError(f"config file {path}: default_platform must be a string like linux/amd64")
    driver = data.get("storage_driver")
    if driver is not None and driver not in _STORAGE_DRIVERS:
        raise ConfigError(f"config file {path}: storage_driver must be one of {', '.join(_STORAGE_DRIVERS)}")
    limit = data.get("layer_size_limit", settings.layer_size_limit)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
        raise ConfigError(f"config file {path}: layer_size_limit must be a positive number of bytes")
    detach_keys = data.get("detach_keys")
    if detach_keys is not None and not isinstance(detach_keys, str):
        raise ConfigError(f"config file {path}: detach_keys must be a string like \"ctrl-p,ctrl-q\"")
    limits = data.get("limits", "strict")
    if limits not in ("strict", "best-effort"):
        raise ConfigError(f"config file {path}: limits must be \"strict\" or \"best-effort\"")
    cgroup_parent = data.get("cgroup_parent")
    if cgroup_parent is not None and (not isinstance(cgroup_parent, str) or ".." in cgroup_parent.split("/")):
        raise ConfigError(f"config file {path}: cgroup_parent must be a path inside the cgroup v2 mount")
    seccomp_profile = data.get("seccomp_profile")
    if seccomp_profile is not None and (not isinstance(seccomp_profile, str) or not seccomp_profile):
        raise ConfigError(f"config file {path}: seccomp_profile must be a profile name, a path or \"unconfined\"")
    network = data.get("network", settings.network)
    if not isinstance(network, str) or network not in ("slirp4netns", "pasta", "none", "host"):
        raise ConfigError(f"config file {path}: network must be one of slirp4netns, pasta, none, host")
    bind_address = data.get("port_bind_address", settings.port_bind_address)
    if not isinstance(bind_address, str) or not _is_ip(bind_address):
        raise ConfigError(f"config file {path}: port_bind_address must be an IP address like 127.0.0.1")
    return replace(
        settings,
        limits=limits,
        cgroup_parent=cgroup_parent,
        seccomp_profile=seccomp_profile,
        network=network,
        port_bind_address=bind_address,
        detach_keys=detach_keys,
        config_file=path,
        registries=registries,
        insecure_registries=frozenset(insecure_list),
        default_platform=platform,
        storage_driver=driver,
        layer_size_limit=limit,
    )


# -- the runtime dir (sockets): another local user must not be able to make it or swap what is in it ---------------


def private_dir_problem(path: str | Path, uid: int | None = None) -> str | None:
    """Why ``path`` is not a private directory of ``uid`` (default: ours), or None when it is one.

    Private means: a directory itself (lstat: a symlink does not count), owned by ``uid``, mode 0700. In a sticky
    /tmp nobody else can rename or remove such a directory, so what it holds stays ours.
    """
    import stat

    uid = os.getuid() if uid is None else uid
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        return "it is a symlink"
    if not stat.S_ISDIR(info.st_mode):
        return "it is not a directory"
    if info.st_uid != uid:
        return f"it is owned by uid {info.st_uid}, not {uid}"
    if stat.S_IMODE(info.st_mode) != 0o700:
        return f"its mode is {stat.S_IMODE(info.st_mode):04o}, not 0700"
    return None


def choose_runtime_root(xdg_runtime_dir: str | None, uid: int | None = None, fallback_parent: str = "/tmp") -> Path:
    """``$XDG_RUNTIME_DIR/sbx`` when XDG_RUNTIME_DIR is set and sane (an absolute path to a private directory of
    ours, as the XDG spec demands), else ``/tmp/sbx-$UID``, which :func:`ensure_runtime_root` checks before use."""
    uid = os.getuid() if uid is None else uid
    if xdg_runtime_dir and os.path.isabs(xdg_runtime_dir):
        try:
            sane = private_dir_problem(xdg_runtime_dir, uid) is None
        except OSError:
            sane = False
        if sane:
            return Path(xdg_runtime_dir) / "sbx"
    return Path(fallback_parent) / f"sbx-{uid}"


def ensure_runtime_root(path: str | Path, uid: int | None = None) -> Path:
    """Make the runtime root 0700 if it is missing; refuse it (one line naming the fix) when it exists as anything
    but a private directory of ours: a /tmp/sbx-$UID made by another user could be swapped under us."""
    path = Path(path)
    try:
        os.mkdir(path, 0o700)
        os.chmod(path, 0o700)  # whatever the umask
    except FileExistsError:
        pass
    try:
        problem = private_dir_problem(path, uid)
    except OSError as error:
        problem = error.strerror or str(error)
    if problem is not None:
        raise UnsafeRuntimeDir(
            f"refusing runtime dir {path}: {problem}",
            hint=f"remove {path} (another user may have made it) or set XDG_RUNTIME_DIR to a private 0700 directory",
        )
    return path
