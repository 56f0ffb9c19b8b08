"""Containers that outlive the command that started them: run -d, ps, logs, stop, kill, rm, wait, inspect.

Each detached container is owned by a monitor process (``sandbox.monitor``), which records its state in the
container store. What `ps` shows is the store's record passed through :meth:`ContainerStore.observe`, so a monitor
killed with SIGKILL, a recycled pid or a reboot never makes it lie, and `stop`/`kill` check the same truth before
they signal anything, so they never signal a stranger.
"""

from __future__ import annotations

import contextlib
import os
import time

from sandbox.config import Settings
from sandbox.errors import (
    ContainerNotFound,
    ContainerNotRunning,
    ContainerRunning,
    ContainerStartError,
    InvalidRunOption,
    NameInUse,
)
from sandbox.exitcodes import UNKNOWN

TYPE_CHECKING = False  # not typing's: importing typing costs every start ~3 ms (BENCHMARKS B1)
if TYPE_CHECKING:
    from sandbox.service.containers import RunOptions

_ADJECTIVES = ("brave", "calm", "eager", "fond", "jolly", "keen", "lucid", "merry", "proud", "quiet", "sharp", "vivid")
_NAMES = ("curie", "darwin", "euler", "gauss", "hopper", "knuth", "lovelace", "noether", "pascal", "shannon", "turing")
_POLL = 0.05
_START_LOCK = "start.lock"


class Lifecycle:
    def __init__(self, settings: Settings, containers=None) -> None:
        self.settings = settings
        self._containers = containers

    @property
    def containers(self):
        """The container service (building, removing directories), made when first needed: `ps` needs only the
        store, and importing the service and its option classes is a good part of a `ps`."""
        if self._containers is None:
            from sandbox.service.containers import ContainerService

            self._containers = ContainerService(self.settings)
        return self._containers

    @property
    def store(self):
        from sandbox.store.containers import ContainerStore, containers_root

        return ContainerStore(containers_root(self.settings.data_root))

    # -- create and start ---------------------------------------------------------------------------------------

    def run_detached(
        self, image: str, args: list[str], options: RunOptions, *, auto_remove: bool = False, on_listening=None,
        prepared=None, meanwhile=None,
    ) -> str:
        """Record the container (its name is taken first, atomically), build its root, hand it to a monitor.

        ``on_listening(socket_path)``: a foreground `run` connects there before the monitor starts the container.
        ``prepared``: a monitor forked ahead (:func:`sandbox.service.monitoring.prepare`), started or closed here;
        ``meanwhile()`` runs while it gets the container going.
        """
        from sandbox.service.monitoring import spawn

        try:
            container_id, spec, built_dir = self._record_and_build(image, args, options, auto_remove=auto_remove)
        except BaseException:
            if prepared is not None:
                prepared.close()
            raise
        try:
            spawn(
                self.settings,
                container_id,
                build_spec=lambda _record: (spec, built_dir),
                remove_dir=self.containers.remove_dir,
                network=spec.network,
                on_listening=on_listening,
                prepared=prepared,
                console_size=spec.process.console_size,
                meanwhile=meanwhile,
            )
        except ContainerStartError:
            raise  # the monitor recorded why (and removed an --rm container): Docker keeps the failed container
        except BaseException:
            self.containers.remove_dir(built_dir)
            raise
        return container_id

    def create(self, image: str, args: list[str], options: RunOptions, *, auto_remove: bool = False) -> str:
        """`sbx create`: the record and the root as `run -d` makes them, but no monitor (the state stays created)."""
        return self._record_and_build(image, args, options, auto_remove=auto_remove)[0]

    def _record_and_build(self, image: str, args: list[str], options: RunOptions, *, auto_remove: bool):
        """Take the name with a record, build the container's directory, keep the full spec in the record.

        The record comes first, so `rmi` sees the image in use while the container is built. A ``--rm``
        container's /etc files and spec update are written without fsync (the container store's Durability): a
        reboot removes it anyway (BENCHMARKS B1)."""
        from sandbox.service.containers import validate_name
        from sandbox.store.containers import ContainerRecord

        validate_name(options.name)
        record = self.containers.images.resolve(image)
        store = self.store
        container_id = os.urandom(32).hex()  # secrets.token_hex, without importing hashlib and OpenSSL
        stored = None
        for attempt in range(20):
            name = options.name or _random_name(attempt)
            candidate = ContainerRecord(
                id=container_id, name=name, image=image, image_id=str(record.id), command=tuple(args),
                created=time.time(), spec={}, auto_remove=auto_remove,
            )
            try:
                stored = store.create(candidate)
                break
            except NameInUse:
                if options.name:
                    raise
        if stored is None:
            raise NameInUse("could not find a free container name", hint="choose one with --name")
        container_dir = store.dir(container_id)
        try:
            spec, built_dir = self.containers.create(image, args, options, container_id=container_id, record=record,
                                                     durable=not auto_remove)
            store.update(container_id, command=spec.process.args, spec=_record_spec(spec))
        except BaseException:
            self.containers.remove_dir(container_dir)
            raise
        return container_id, spec, built_dir

    def start(self, text: str, *, on_listening=None) -> None:
        """Start a created or exited container from the spec in its record, with the same writable layer.

        ``on_listening(socket_path)``: the API's attach connects there before the monitor starts the container."""
        from sandbox.runtime.spec import stored_spec
        from sandbox.service.monitoring import spawn
        from sandbox.store.locks import FileLock

        record = self.get(text)
        store = self.store
        with FileLock(store.dir(record.id) / _START_LOCK, timeout=30.0):  # one start at a time per container
            record = self.get(record.id)
            if record.state.value == "running":
                return  # Docker: starting a running container does nothing
            stored_spec(record)  # a damaged spec is refused here, before a monitor is forked
            _wait_monitor_gone(record)
            spawn(
                self.settings,
                record.id,
                build_spec=lambda current: (stored_spec(current), store.dir(current.id)),
                remove_dir=self.containers.remove_dir,
                network=(record.spec or {}).get("network"),
                on_listening=on_listening,
            )

    def restart(self, text: str, *, timeout: float = 10.0, signal_name: str | None = None) -> None:
        self.stop(text, timeout=timeout, signal_name=signal_name)
        self.start(text)

    def rename(self, text: str, new_name: str) -> None:
        record = self.get(text)
        from sandbox.service.containers import validate_name

        validate_name(new_name)
        if new_name == record.name:
            raise InvalidRunOption(
                f'renaming a container with the same name as its current name: "{new_name}"', hint="choose another"
            )
        self.store.update(record.id, name=new_name)

    def prune(self) -> tuple[list[str], int]:
        """Remove every exited container; (their ids, the bytes their directories held)."""
        removed, reclaimed = [], 0
        for record in self.list(all_containers=True):
            if record.state.value != "exited":
                continue
            directory = self.store.dir(record.id)
            size = _tree_size(directory)
            try:
                self.containers.remove_dir(directory)
            except ContainerNotFound:
                continue
            removed.append(record.id)
            reclaimed += size
        return removed, reclaimed

    def top(self, text: str) -> tuple[list[str], list[list[str]]]:
        """`ps -ef` columns for every host process in the container's pid namespace."""
        record = self.get(text)
        if record.state.value != "running" or not self.store.alive(record):
            raise ContainerNotRunning(f"container {text} is not running")
        return process_table(record.pid)

    # -- look ---------------------------------------------------------------------------------------------------

    def list(self, *, all_containers: bool = False):
        """The containers newest first (running ones only unless ``all_containers``); --rm containers of a previous
        boot are removed on the way (their monitor died with the boot: nothing else would)."""
        store = self.store
        records = store.list()
        stale = {record.id for record in store.previous_boot_auto_remove(records)}
        for container_id in stale:
            self.containers.remove_dir(store.dir(container_id))
        records = [record for record in records if record.id not in stale]
        return records if all_containers else [r for r in records if r.state.value == "running"]

    def get(self, text: str):
        return self.store.observe(self.store.resolve(text))

    def inspect(self, text: str) -> dict:
        from sandbox.cgroups.limits import host_config
        from sandbox.cgroups.tree import OOM_MARKER, is_frozen, recorded

        record = self.get(text)
        spec = record.spec or {}
        directory = self.store.dir(record.id)
        cgroup = recorded(directory) if record.state.value == "running" else None
        paused = cgroup is not None and is_frozen(cgroup)
        return {
            "Id": record.id,
            "Created": _rfc3339(record.created),
            "Path": record.command[0] if record.command else "",
            "Args": list(record.command[1:]),
            "State": {
                "Status": "paused" if paused else record.state.value,
                "Running": record.state.value == "running",
                "Paused": paused,
                "Restarting": False,
                "OOMKilled": (directory / OOM_MARKER).exists(),
                "Dead": False,
                "Pid": record.pid or 0,
                "ExitCode": record.exit_code if record.exit_code is not None else 0,
                "Error": record.error or "",
                "StartedAt": _rfc3339(record.started_at),
                "FinishedAt": _rfc3339(record.finished_at),
            },
            "Image": record.image_id,
            "Name": f"/{record.name}",
            "LogPath": str(self.store.dir(record.id) / "ctr.log"),
            "RestartCount": 0,
            "Driver": spec.get("driver", ""),
            "Platform": "linux",
            "HostConfig": {"AutoRemove": record.auto_remove, "NetworkMode": spec.get("network", "none"),
                           **_docker_host_config(spec.get("spec") or {}), **_security_host_config(spec),
                           **host_config(self.resources(record))},
            "Mounts": _docker_mounts(spec.get("spec") or {}),
            "Config": {
                "Hostname": spec.get("hostname", ""),
                "User": spec.get("user", ""),
                "Env": spec.get("env", []),
                "Cmd": list(record.command),
                "Image": record.image,
                "WorkingDir": spec.get("cwd", ""),
                "Tty": spec.get("tty", False),
                "AttachStdin": spec.get("stdin", False),
                "OpenStdin": spec.get("stdin", False),
                "Labels": {},
                "StopSignal": spec.get("stop_signal") or "SIGTERM",
            },
            "GraphDriver": {"Name": spec.get("driver", "")},
            "NetworkSettings": network_settings(record),
        }

    def logs(self, text: str, *, tail: int | None = None, since: float | None = None, follow: bool = False):
        from sandbox.monitor.logs import follow as follow_log
        from sandbox.monitor.logs import read_logs, snapshot

        record = self.get(text)
        path = self.store.dir(record.id) / "ctr.log"
        if not follow:
            yield from read_logs(path, tail=tail, since=since)
            return
        entries, lines = snapshot(path, tail=tail, since=since)  # following on from there loses no line
        yield from entries
        yield from follow_log(path, stop=lambda: self.get(record.id).state.value != "running", skip_lines=lines)

    # -- act ----------------------------------------------------------------------------------------------------

    def kill(self, text: str, signal_name: str = "KILL") -> None:
        record = self.get(text)
        if record.state.value != "running" or not self.store.alive(record):
            raise ContainerNotRunning(f"container {text} is not running")
        _signal(record.pid, parse_signal(signal_name))

    def stop(self, text: str, *, timeout: float = 10.0, signal_name: str | None = None) -> None:
        """The stop signal (the image's STOPSIGNAL unless given), then SIGKILL after ``timeout`` seconds."""
        import signal

        record = self.get(text)
        if record.state.value != "running":
            return
        if signal_name:
            number = parse_signal(signal_name)
        else:  # a record from before StopSignal was checked at create may hold a bad one: SIGTERM, as create does
            try:
                number = parse_signal((record.spec or {}).get("stop_signal") or "TERM")
            except InvalidRunOption:
                number = signal.SIGTERM
        if self.store.alive(record):
            _signal(record.pid, number)
            self._thaw(record.id)  # a paused container gets the signal once thawed
        if not self._wait_exited(record.id, timeout):
            record = self.get(record.id)
            if record.state.value == "running" and self.store.alive(record):
                _signal(record.pid, signal.SIGKILL)
            self._wait_exited(record.id, 10.0)

    def wait(self, text: str) -> int:
        """Until the container is not running; its exit code (255 when it died unwatched)."""
        record = self.settled(text)
        while record.state.value == "running":
            time.sleep(_POLL)
            record = self.settled(record.id)
        return record.exit_code if record.exit_code is not None else UNKNOWN

    def settled(self, text: str):
        """The record as its monitor wrote it, for whoever waits for the exit (`wait`, the API's wait).

        Not the observed record: a process that has just ended reads as exited with the unknown code 255 until its
        monitor has recorded the real code (after its output is in the log), so a wait that looked at the observed
        record answered 255, and a log read after it could be empty, while the monitor was still recording the
        exit. Only a container whose monitor is gone too is taken as observed."""
        store = self.store
        record = store.resolve(text)
        if record.state.value == "running" and self._unwatched(record):
            return store.observe(store.get(record.id))  # the monitor may have recorded the exit as it left
        return record

    def _unwatched(self, record) -> bool:
        """The process and its monitor are both gone: nobody will record the real exit code."""
        return not self.store.alive(record) and not _monitor_alive(record, self.store.proc)

    def remove(self, text: str, *, force: bool = False) -> None:
        import signal

        record = self.get(text)
        if record.state.value == "running":
            if not force:
                raise ContainerRunning(
                    f'cannot remove container "/{record.name}": container is running',
                    hint="stop the container before removing or force remove",
                )
            if self.store.alive(record):
                _signal(record.pid, signal.SIGKILL)
            self._wait_exited(record.id, 10.0)
        self.containers.remove_dir(self.store.dir(record.id))

    def _wait_exited(self, container_id: str, timeout: float) -> bool:
        """Until the monitor recorded the exit (or the process and its monitor are gone); False on timeout.

        The stored record, not the observed one: a process that is gone reads as exited (code unknown) before
        its monitor has recorded the real code, and `stop` followed by `inspect` must show that code."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                record = self.store.get(container_id)
            except ContainerNotFound:
                return True  # --rm: the monitor removed it
            if record.state.value != "running":
                return True
            if self._unwatched(record):
                return True  # the monitor died without a word: the observed record is all there is
            time.sleep(_POLL)
        return False

    # -- resources (sandbox.cgroups) ----------------------------------------------------------------------------

    def pause(self, text: str, frozen: bool = True) -> None:
        """`sbx pause` / `unpause`: cgroup.freeze of the container's own cgroup (CgroupError where it has none)."""
        from sandbox.cgroups.tree import freeze, is_frozen, recorded
        from sandbox.errors import CgroupError

        record = self.get(text)
        if record.state.value != "running" or not self.store.alive(record):
            raise ContainerNotRunning(f"container {text} is not running")
        path = recorded(self.store.dir(record.id))
        if path is None:
            from sandbox.cgroups.delegation import discover

            delegation = discover(override=self.settings.cgroup_parent)
            raise CgroupError(
                f"cannot {'' if frozen else 'un'}pause container {text}: it has no cgroup of its own, so there is no "
                f"cgroup.freeze to write ({delegation.reason or 'it was started without a delegated cgroup'})",
                hint=delegation.fix or "start it again from a shell inside the delegated cgroup",
            )
        if is_frozen(path) == frozen:
            raise CgroupError(f"container {record.id} is {'already' if frozen else 'not'} paused")
        freeze(path, frozen)

    def _thaw(self, container_id: str) -> None:
        from sandbox.cgroups.tree import freeze, is_frozen, recorded
        from sandbox.errors import SbxError

        path = recorded(self.store.dir(container_id))
        if path is not None and is_frozen(path):
            with contextlib.suppress(SbxError):
                freeze(path, False)

    def stats(self, names: list[str], *, all_containers: bool = False):
        """(record, cgroup) of each container asked for (the running ones when none is named)."""
        from sandbox.cgroups.tree import recorded

        records = [self.get(name) for name in names] if names else self.list(all_containers=all_containers)
        return [(record, recorded(self.store.dir(record.id)) if record.state.value == "running" else None)
                for record in records]

    def resources(self, record) -> dict:
        """The record's resource request as Resources JSON (empty when none)."""
        return (((record.spec or {}).get("spec") or {}).get("limits") or {}).get("resources") or {}


def published_ports(record) -> tuple:
    """The ports a running container publishes, as its monitor forwarded them (host ports chosen)."""
    from sandbox.network.ports import PortMapping

    if record.state.value != "running":
        return ()
    settings = (record.spec or {}).get("network_settings") or {}
    mappings = []
    for item in settings.get("ports") or []:
        with contextlib.suppress(ValueError):
            mappings.append(PortMapping.from_json(item))
    return tuple(mappings)


def network_settings(record) -> dict:
    """Docker's NetworkSettings: Ports, IPAddress, Gateway, MacAddress (empty while the container is not running)."""
    from sandbox.network.ports import inspect_ports

    running = record.state.value == "running"
    settings = ((record.spec or {}).get("network_settings") or {}) if running else {}
    return {
        "Ports": inspect_ports(published_ports(record)),
        "IPAddress": settings.get("IPAddress", ""),
        "IPPrefixLen": settings.get("IPPrefixLen", 0),
        "Gateway": settings.get("Gateway", ""),
        "MacAddress": settings.get("MacAddress", ""),
        "SandboxKey": f"/proc/{record.pid}/ns/net" if running and record.pid else "",
    }


def _wait_monitor_gone(record, timeout: float = 10.0) -> None:
    """Until the previous monitor of a restarted container has left: it records the exit first and removes the
    attach socket after, so a new monitor started in between would have its socket removed under it."""
    deadline = time.monotonic() + timeout
    while _monitor_alive(record) and time.monotonic() < deadline:
        time.sleep(_POLL)


def _monitor_alive(record, proc="/proc") -> bool:
    from sandbox.store.containers import process_start_time

    if not record.monitor_pid or record.monitor_start is None:
        return False
    return process_start_time(record.monitor_pid, proc) == record.monitor_start


def parse_signal(text: str) -> int:
    import signal  # here: its enums cost `ps` and every other command that signals nothing ~1 ms

    name = text.upper().removeprefix("SIG")
    if name.isdigit():
        number = int(name)
        if 0 < number < signal.NSIG:
            return number
    elif hasattr(signal, f"SIG{name}") and isinstance(getattr(signal, f"SIG{name}"), signal.Signals):
        return int(getattr(signal, f"SIG{name}"))
    raise InvalidRunOption(f"invalid signal: {text}", hint="use a name like TERM or KILL, or a number")


def _signal(pid: int | None, number: int) -> None:
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, number)


def _random_name(attempt: int) -> str:
    first, second = os.urandom(2)  # a name, not a secret: the slight modulo bias does not matter
    name = f"{_ADJECTIVES[first % len(_ADJECTIVES)]}_{_NAMES[second % len(_NAMES)]}"
    return name if attempt < 10 else f"{name}{attempt}"


def _security_host_config(spec: dict) -> dict:
    """Docker's HostConfig fields for the security options kept in the record's full spec."""
    security = (spec.get("spec") or {}).get("security") if isinstance(spec.get("spec"), dict) else None
    if not isinstance(security, dict):
        return {}
    options = [f"seccomp={security.get('seccomp')}"] if security.get("seccomp") != "default" else []
    options += ["no-new-privileges"] if security.get("no_new_privileges") else []
    options += [f"unmask={path}" for path in security.get("unmask") or []]
    return {"Privileged": bool(security.get("privileged")), "CapAdd": security.get("cap_add") or None,
            "CapDrop": security.get("cap_drop") or None, "SecurityOpt": options or None}


def _describe(spec) -> dict:
    """What `inspect` and `stop` need from the spec, kept in the record."""
    return {
        "hostname": spec.hostname,
        "env": list(spec.process.env),
        "cwd": spec.process.cwd,
        "user": spec.process.user,
        "tty": spec.process.tty,
        "network": spec.network,
        "stop_signal": spec.stop_signal,
        "driver": spec.rootfs.driver,
        "stdin": spec.process.stdin,
        "layers": [lower.split("/", 1)[0] for lower in spec.rootfs.lower],  # chain ids it mounts: kept from rmi
    }


def _record_spec(spec) -> dict:
    """The record's spec: the summary beside the full spec (under "spec") that `start` rebuilds the container from."""
    return {**_describe(spec), "spec": spec.to_json()}


def _tree_size(path) -> int:
    """Bytes of the regular files under ``path``, as far as the user can see (subordinate-owned dirs may hide some)."""
    total = 0
    for root, _dirs, files in os.walk(path, onerror=lambda _error: None):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


TOP_TITLES = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]


def process_table(pid: int, proc: str = "/proc", now: float | None = None) -> tuple[list[str], list[list[str]]]:
    """`ps -ef` for the processes that share the pid namespace of host process ``pid``: (titles, rows by pid).

    UID is the host uid as a number (the container's users are subordinate ids the host has no names for).
    """
    try:
        namespace = os.readlink(f"{proc}/{pid}/ns/pid")
    except OSError as error:
        raise ContainerNotRunning(f"cannot read the pid namespace of process {pid}: {error.strerror}") from None
    now = time.time() if now is None else now
    ticks = os.sysconf("SC_CLK_TCK")
    boot = _boot_time(proc)
    rows = []
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            if os.readlink(f"{proc}/{name}/ns/pid") != namespace:
                continue
            row = _ps_row(f"{proc}/{name}", int(name), ticks, boot, now)
        except (OSError, ValueError, IndexError):
            continue  # gone while we looked, or not ours to see
        rows.append(row)
    rows.sort(key=lambda row: int(row[1]))
    return list(TOP_TITLES), rows


def _boot_time(proc: str) -> float:
    with open(f"{proc}/stat", "rb") as handle:
        for line in handle.read().decode("ascii", "replace").splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def _ps_row(path: str, pid: int, ticks: int, boot: float, now: float) -> list[str]:
    with open(f"{path}/stat", "rb") as handle:
        raw = handle.read().decode("utf-8", "replace")
    head, _, rest = raw.rpartition(")")
    comm = head.partition("(")[2]
    fields = rest.split()  # fields[0] is field 3 (state)
    ppid, tty_nr = int(fields[1]), int(fields[4])
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    started = boot + int(fields[19]) / ticks
    with open(f"{path}/cmdline", "rb") as handle:
        argv = [part.decode("utf-8", "replace") for part in handle.read().split(b"\0") if part]
    uid = os.stat(path).st_uid
    elapsed = max(now - started, 0.0)
    percent = min(int(cpu * 100 / elapsed), 99) if elapsed > 0 else 0
    return [str(uid), str(pid), str(ppid), str(percent), _stime(started, now), _tty(tty_nr), _cpu_time(cpu),
            " ".join(argv) if argv else f"[{comm}]"]


def _stime(started: float, now: float) -> str:
    """ps's STIME: HH:MM today, MonDD this year, else the year."""
    start, today = time.localtime(started), time.localtime(now)
    if start[:3] == today[:3]:
        return time.strftime("%H:%M", start)
    if start.tm_year == today.tm_year:
        return time.strftime("%b%d", start)
    return time.strftime("%Y", start)


def _tty(tty_nr: int) -> str:
    if tty_nr == 0:
        return "?"
    major, minor = (tty_nr >> 8) & 0xFFF, (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00)
    if 136 <= major <= 143:
        return f"pts/{(major - 136) * 256 + minor}"
    if major == 4:
        return f"tty{minor}" if minor < 64 else f"ttyS{minor - 64}"
    return "?"


def _cpu_time(seconds: float) -> str:
    """ps's TIME: [DD-]HH:MM:SS of cpu."""
    whole = int(seconds)
    days, whole = divmod(whole, 86400)
    text = f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
    return f"{days}-{text}" if days else text


def _rfc3339(timestamp: float | None) -> str:
    if timestamp is None:
        return "0001-01-01T00:00:00Z"
    whole = int(timestamp)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((timestamp - whole) * 1e9):09d}Z"


def since_timestamp(text: str, now: float | None = None) -> float:
    """Docker's --since: a duration like 10m, 1h30m, 45s before now, or an RFC 3339 / Unix timestamp."""
    import re

    now = time.time() if now is None else now
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if text and match and any(match.groups()):
        hours, minutes, seconds = (int(part or 0) for part in match.groups())
        return now - (hours * 3600 + minutes * 60 + seconds)
    try:
        return float(text)
    except ValueError:
        pass
    from datetime import datetime

    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidRunOption(f"invalid --since value {text!r}", hint="use 10m, 1h or an RFC 3339 time") from None


def _docker_mounts(spec: dict) -> list[dict]:
    """The binds of a stored spec as Docker's inspect lists them under Mounts."""
    return [{"Type": "bind", "Source": mount.get("source") or "", "Destination": mount.get("target", ""),
             "Mode": "ro" if mount.get("read_only") else "", "RW": not mount.get("read_only"),
             "Propagation": "rprivate"}
            for mount in spec.get("mounts", []) if mount.get("kind") == "bind"]


def _docker_host_config(spec: dict) -> dict:
    """What a stored spec says of Docker's HostConfig: binds, tmpfs, read-only root, --init."""
    mounts = spec.get("mounts", [])
    return {
        "Binds": [f"{m.get('source')}:{m.get('target')}" + (":ro" if m.get("read_only") else "")
                  for m in mounts if m.get("kind") == "bind"],
        "Tmpfs": {m.get("target"): ",".join(m.get("options") or []) for m in mounts if m.get("kind") == "tmpfs"},
        "ReadonlyRootfs": bool(spec.get("read_only")),
        "Init": bool(spec.get("init")),
        "Privileged": False,
    }
