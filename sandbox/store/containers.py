"""Container records: one JSON file per container, and the truth about whether it still runs.

Layout under the root (``<data>/containers``, every directory 0700, every record 0600)::

    store.lock              taken to create, change or remove records (names stay unique under it)
    <id>/config.json        the record of container <id> (64 lower-case hex); written temp file → fsync → rename
    <id>/state.json         a --rm container's record since its creation, written without fsync (see Durability)
    <id>/...                the container's other files (logs, hosts, ...); owned by the caller, not by this module

A directory without ``config.json`` is not a container (a create that died before its write, or a removal that
has not yet deleted the directory), so every listing skips it.

Lifecycle: :class:`ContainerState` is created → running → exited (→ running again on start). A record says
``running`` from the moment the monitor writes the init's pid; it cannot say when the init or the monitor dies
unwatched (SIGKILL of the monitor, a reboot). So beside the pid the record keeps the pid's start time (field 22 of
``/proc/PID/stat``, in clock ticks since boot) and the boot id: a pid number is recycled by the kernel, and after a
reboot start times count from zero again, but the pair (boot id, start time) names one process for ever.
:meth:`ContainerStore.observe` reads the record through that lens, so ``ps`` never shows a dead container running and
``stop`` never signals a stranger that happens to hold the old pid (TESTPLAN 50, 51).

Reading is strict: a truncated or hand-edited record is a :class:`StoreCorrupt` naming the file (with ``path`` and
``container_id`` fields), never a ``KeyError`` or a half-filled record. ``get``, ``resolve`` and ``list`` raise it;
name checks on create and :meth:`ContainerStore.previous_boot_auto_remove` skip damaged records, so one damaged
record never blocks every other command; ``remove`` drops a damaged record by id.

Durability (what a power cut or kernel crash may take; a crashed process loses nothing, the page cache outlives it).
Every write is atomic while the machine runs: a reader sees the old record or the new one, never a mix. Creating a
record is durable (temp file fsynced, renamed, directory fsynced), so a container directory that reached the disk
has a record that names it (else its layer would be an unseen leak); so is every update of a record, except for an
``auto_remove`` (``--rm``) container. After a reboot Docker and podman remove such a container whatever state it was
in, and so does sbx (:meth:`ContainerStore.previous_boot_auto_remove`), which needs only the durable created record:
its ``boot_id`` is set when it is created. So a ``--rm`` container's updates (its spec, running, exited, then removed
a few ms later) go to ``state.json`` beside it with no fsync at all, three journal commits fewer per ``run --rm``
(BENCHMARKS B1: each is milliseconds on a busy disk). Its record is ``state.json`` when there is one; after a power
cut that file may be missing, empty or garbage, and a damaged one whose created record is of an earlier boot is
passed over for ``config.json`` (whose boot id then has it removed). One damaged in the current boot, where no power
cut can explain it, is a :class:`StoreCorrupt` like any damaged record.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
from enum import StrEnum
from pathlib import Path

from sandbox.errors import (
    AmbiguousContainer,
    ContainerNotFound,
    InvalidContainerName,
    InvalidDigest,
    NameInUse,
    StoreCorrupt,
    StoreError,
)
from sandbox.exitcodes import UNKNOWN
from sandbox.oci.digest import Digest
from sandbox.store.atomic import ensure_private_dir, fsync_dir, listdir, store_error, write_atomic
from sandbox.store.fields import JsonFields
from sandbox.store.locks import FileLock
from sandbox.valueclass import field, fields, replace, valueclass

SCHEMA_VERSION = 1
NAME_PATTERN = r"[a-zA-Z0-9][a-zA-Z0-9_.-]*"
NAME_MAX = 253
RECORD_NAME = "config.json"
STATE_NAME = "state.json"  # a --rm container's record after its creation (see Durability)
LOCK_NAME = "store.lock"

_NAME = re.compile(NAME_PATTERN)
_ID = re.compile(r"[0-9a-f]{64}")
_HEX = re.compile(r"[0-9a-f]+")
_RECORD_MODE = 0o600
_STAT_START_TIME = 22  # field number in proc(5), counting from 1: pid (1), comm (2), state (3), ...


class ContainerState(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"

    @property
    def can_start(self) -> bool:
        return self in (ContainerState.CREATED, ContainerState.EXITED)

    @property
    def can_stop(self) -> bool:
        return self is ContainerState.RUNNING


@valueclass
class ContainerRecord:
    id: str  # 64 lower-case hex
    name: str
    image: str  # as the user gave it
    image_id: str  # "sha256:..."
    command: tuple[str, ...]
    created: float
    spec: dict = field(hash=False)  # JSON-able description the monitor needs (opaque here)
    auto_remove: bool = False
    state: ContainerState = ContainerState.CREATED
    pid: int | None = None  # host pid of the container's pid 1
    pid_start: int | None = None  # its start time in clock ticks (/proc/PID/stat field 22)
    boot_id: str | None = None  # /proc/sys/kernel/random/boot_id when it started (with --rm: since its creation)
    monitor_pid: int | None = None
    monitor_start: int | None = None
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None  # why it failed to start, if it did

    def __post_init__(self) -> None:
        # Callers pass lists and plain strings (update(state="exited")); keep the record's own types exact.
        object.__setattr__(self, "command", tuple(self.command))
        object.__setattr__(self, "state", ContainerState(self.state))

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def to_json(self) -> dict:
        return {
            "schemaVersion": SCHEMA_VERSION,
            "id": self.id,
            "name": self.name,
            "image": self.image,
            "image_id": self.image_id,
            "command": list(self.command),
            "created": self.created,
            "spec": self.spec,
            "auto_remove": self.auto_remove,
            "state": self.state.value,
            "pid": self.pid,
            "pid_start": self.pid_start,
            "boot_id": self.boot_id,
            "monitor_pid": self.monitor_pid,
            "monitor_start": self.monitor_start,
            "exit_code": self.exit_code,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error,
        }

    def to_bytes(self) -> bytes:
        return (json.dumps(self.to_json(), sort_keys=True, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: object, source: str = "container record") -> ContainerRecord:
        fields_ = _Fields(data, source)
        version = fields_.raw("schemaVersion")
        if version != SCHEMA_VERSION or isinstance(version, bool):
            raise fields_.damaged(f"unsupported schemaVersion {version!r}")
        container_id = fields_.string("id")
        if not _ID.fullmatch(container_id):
            raise fields_.damaged("field 'id' must be 64 lower-case hex digits")
        fields_.container_id = container_id
        name = fields_.string("name")
        if not valid_name(name):
            raise fields_.damaged(f"field 'name' is not a valid container name: {name[:80]!r}")
        image_id = fields_.string("image_id")
        try:
            Digest.parse(image_id)
        except InvalidDigest:
            raise fields_.damaged("field 'image_id' is not a valid digest") from None
        state = fields_.string("state")
        try:
            state_value = ContainerState(state)
        except ValueError:
            raise fields_.damaged(f"field 'state' is not a known state: {state[:80]!r}") from None
        spec = fields_.raw("spec")
        if not isinstance(spec, dict):
            raise fields_.damaged("field 'spec' must be a JSON object")
        return cls(
            id=container_id,
            name=name,
            image=fields_.string("image"),
            image_id=image_id,
            command=fields_.strings("command"),
            created=fields_.number("created"),
            spec=spec,
            auto_remove=fields_.boolean("auto_remove"),
            state=state_value,
            pid=fields_.optional_int("pid", minimum=1),
            pid_start=fields_.optional_int("pid_start", minimum=0),
            boot_id=fields_.optional_string("boot_id"),
            monitor_pid=fields_.optional_int("monitor_pid", minimum=1),
            monitor_start=fields_.optional_int("monitor_start", minimum=0),
            exit_code=fields_.optional_int("exit_code"),
            started_at=fields_.optional_number("started_at"),
            finished_at=fields_.optional_number("finished_at"),
            error=fields_.optional_string("error"),
        )

    @classmethod
    def from_bytes(cls, raw: bytes, source: str = "container record") -> ContainerRecord:
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise _damaged(source, f"not valid JSON ({exc})") from None
        return cls.from_json(data, source)


_FIELD_NAMES = frozenset(f.name for f in fields(ContainerRecord))


class ContainerStore:
    """Container records under ``root`` (``<data>/containers``); ``proc`` is where procfs is (a fake in tests)."""

    def __init__(self, root: Path, *, proc: Path = Path("/proc"), lock_timeout: float = 30.0) -> None:
        self.root = Path(root)
        self.proc = Path(proc)
        self.lock_timeout = lock_timeout

    def __repr__(self) -> str:
        return f"ContainerStore({str(self.root)!r})"

    def dir(self, container_id: str) -> Path:
        if not isinstance(container_id, str) or not _ID.fullmatch(container_id):
            raise ValueError(f"invalid container id {container_id!r}: expected 64 lower-case hex digits")
        return self.root / container_id

    def _record_path(self, container_id: str) -> Path:
        return self.dir(container_id) / RECORD_NAME

    # --- writing ---------------------------------------------------------------------------------------------------

    def create(self, record: ContainerRecord) -> ContainerRecord:
        """Store a new record; the name must be valid and unused (checked and written under the store lock)."""
        check_name(record.name)
        directory = self.dir(record.id)
        data = record.to_bytes()  # a spec that is not JSON-able fails here, before anything is written
        ensure_private_dir(self.root, parents=True)
        if record.auto_remove and record.boot_id is None:  # the boot it belongs to, for the cleanup after a reboot
            record = replace(record, boot_id=self._boot_id_or_none())
            data = record.to_bytes()
        with self._lock():
            if _exists(directory / RECORD_NAME):
                raise StoreError(f"container {record.id} already exists", path=str(directory / RECORD_NAME))
            self._check_name_free(record.name, record.id)
            ensure_private_dir(directory)
            write_atomic(directory / RECORD_NAME, data, _RECORD_MODE)
        return record

    def update(self, container_id: str, **changes: object) -> ContainerRecord:
        """Read, change and write one record under the store lock (ContainerNotFound if it is gone)."""
        unknown = set(changes) - _FIELD_NAMES
        if unknown:
            raise TypeError(f"unknown container record fields: {', '.join(sorted(unknown))}")
        if "id" in changes and changes["id"] != container_id:
            raise ValueError("a container's id cannot change")
        if "name" in changes:
            check_name(changes["name"])  # type: ignore[arg-type]
        if not _exists(self.root):
            raise _not_found(container_id)
        with self._lock():
            record = self.get(container_id)
            updated = replace(record, **changes)  # type: ignore[arg-type]
            if updated.name != record.name:
                self._check_name_free(updated.name, container_id)
            if record.auto_remove:  # see the module's docstring: Durability
                write_atomic(self.dir(container_id) / STATE_NAME, updated.to_bytes(), _RECORD_MODE, durable=False)
            else:
                write_atomic(self._record_path(container_id), updated.to_bytes(), _RECORD_MODE)
        return updated

    def remove(self, container_id: str) -> None:
        """Remove the record file only: the caller removes the directory's other files (some may be owned by
        subordinate ids, so only the caller's user namespace can delete them)."""
        if not _is_id(container_id) or not _exists(self.root):
            raise _not_found(container_id)
        path = self._record_path(container_id)
        with self._lock():
            try:
                os.unlink(path)
            except (FileNotFoundError, NotADirectoryError):
                raise _not_found(container_id) from None
            except OSError as exc:
                raise store_error(exc, "remove", path) from exc
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path.parent / STATE_NAME)
            fsync_dir(path.parent)

    # --- reading ---------------------------------------------------------------------------------------------------

    def get(self, container_id: str) -> ContainerRecord:
        """The record as stored (not observed); StoreCorrupt if damaged."""
        if not _is_id(container_id):
            raise _not_found(container_id)
        created = self._read(self._record_path(container_id), container_id)
        if created is None:
            raise _not_found(container_id)
        if not created.auto_remove:
            return created
        try:
            return self._read(self.dir(container_id) / STATE_NAME, container_id) or created
        except StoreCorrupt:
            current_boot = self._boot_id_or_none()
            if created.boot_id is not None and current_boot is not None and created.boot_id != current_boot:
                return created  # a power cut took its unsynced state: the reboot's cleanup removes it
            raise

    def _read(self, path: Path, container_id: str) -> ContainerRecord | None:
        """The record in ``path`` (None when there is no such file); StoreCorrupt if damaged."""
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise store_error(exc, "read", path) from exc
        try:
            record = ContainerRecord.from_bytes(raw, str(path))
        except StoreCorrupt as exc:
            exc.container_id = container_id  # the directory names it even when the record cannot
            exc.fields["container_id"] = container_id
            raise
        if record.id != container_id:
            raise _damaged(str(path), f"it names container {record.id}", container_id)
        return record

    def ids(self) -> list[str]:
        """Ids of the directories that hold a record, sorted."""
        return [name for name in listdir(self.root) if _ID.fullmatch(name) and _exists(self.root / name / RECORD_NAME)]

    def list(self) -> list[ContainerRecord]:
        """Every record, newest first, each passed through :meth:`observe`; StoreCorrupt names a damaged one."""
        current_boot = self._boot_id_or_none()
        records = []
        for container_id in listdir(self.root):  # not ids(): reading the record tells the same as a stat of it
            if not _ID.fullmatch(container_id):
                continue
            try:
                records.append(self._observe(self.get(container_id), current_boot))
            except ContainerNotFound:
                continue  # no record (being made or removed), or removed while we looked
        records.sort(key=lambda record: (-record.created, record.id))
        return records

    def resolve(self, text: str) -> ContainerRecord:
        """Docker's order: full id, then exact name, then unique id prefix (the record as stored, not observed)."""
        if not isinstance(text, str) or not text:
            raise _not_found(text)
        if _ID.fullmatch(text):
            try:
                return self.get(text)
            except ContainerNotFound:
                pass
        for container_id in self.ids():
            record = self._get_quietly(container_id)
            if record is not None and record.name == text:
                return record
        if _HEX.fullmatch(text):
            matches = [container_id for container_id in self.ids() if container_id.startswith(text)]
            if len(matches) == 1:
                return self.get(matches[0])
            if len(matches) > 1:
                raise AmbiguousContainer(
                    f"multiple containers match the id prefix {text}: {', '.join(m[:12] for m in matches)}",
                    reference=text,
                    matches=tuple(matches),
                )
        raise _not_found(text)

    # --- the truth about running containers --------------------------------------------------------------------

    def observe(self, record: ContainerRecord) -> ContainerRecord:
        """The record as it really is: RUNNING only while its process lives; nothing is written."""
        if record.state is not ContainerState.RUNNING:
            return record
        return self._observe(record, self._boot_id_or_none())

    def alive(self, record: ContainerRecord) -> bool:
        """Whether the record's pid still names the process it started (same boot, same start time)."""
        return self._alive(record, self._boot_id_or_none())

    def previous_boot_auto_remove(self, records: list[ContainerRecord] | None = None) -> list[ContainerRecord]:
        """``--rm`` containers started before the last reboot: nothing is left to remove them but the next command.

        A ``--rm`` record has the boot id of its creation until it starts (then of its start), so one that never
        started, or whose start was lost in a crash, is found too; a record with no boot id at all (one the boot id
        could not be read for) is left alone: it may be a ``run --rm`` being started right now.
        ``records`` (from :meth:`list`, which already read them all) saves reading every record again.
        """
        current_boot = self._boot_id_or_none()
        if current_boot is None:
            return []
        if records is None:
            records = [self._get_quietly(container_id) for container_id in self.ids()]
        found = []
        for record in records:
            if record is not None and record.auto_remove and record.boot_id not in (None, current_boot):
                found.append(record)
        found.sort(key=lambda record: (-record.created, record.id))
        return found

    # --- helpers -----------------------------------------------------------------------------------------------

    def _observe(self, record: ContainerRecord, current_boot: str | None) -> ContainerRecord:
        if record.state is not ContainerState.RUNNING or self._alive(record, current_boot):
            return record
        exit_code = record.exit_code if record.exit_code is not None else UNKNOWN
        return replace(record, state=ContainerState.EXITED, exit_code=exit_code)

    def _alive(self, record: ContainerRecord, current_boot: str | None) -> bool:
        # Without every piece of the identity we cannot tell the container's init from a stranger: say dead, so
        # nothing ever signals a process on a guess.
        if record.pid is None or record.pid_start is None or record.boot_id is None or current_boot is None:
            return False
        if record.boot_id != current_boot:
            return False  # start times restart from zero at boot, so only the boot id tells a reboot apart
        return process_start_time(record.pid, self.proc) == record.pid_start

    def _boot_id_or_none(self) -> str | None:
        try:
            return boot_id(self.proc)
        except StoreError:
            return None

    def _get_quietly(self, container_id: str) -> ContainerRecord | None:
        try:
            return self.get(container_id)
        except (ContainerNotFound, StoreCorrupt):
            return None

    def _check_name_free(self, name: str, own_id: str) -> None:
        for container_id in self.ids():
            if container_id == own_id:
                continue
            other = self._get_quietly(container_id)
            if other is not None and other.name == name:
                raise NameInUse(
                    f'conflict: the container name "{name}" is already in use by container "{container_id[:12]}"',
                    hint=f"remove that container (sbx rm {name}) or rename it, or choose another name",
                    name=name,
                    container_id=container_id,
                )

    def _lock(self) -> FileLock:
        return FileLock(self.root / LOCK_NAME, self.lock_timeout)


# --- names -----------------------------------------------------------------------------------------------------------


def valid_name(name: object) -> bool:
    return isinstance(name, str) and len(name) <= NAME_MAX and _NAME.fullmatch(name) is not None


def check_name(name: object) -> str:
    """``name`` if it is a valid container name, else InvalidContainerName (it becomes part of no path, but of
    /etc/hosts and of the user's commands, so Docker's rule applies)."""
    if not valid_name(name):
        shown = name[:80] + "..." if isinstance(name, str) and len(name) > 80 else name
        raise InvalidContainerName(
            f"invalid container name {shown!r}: only {NAME_PATTERN} of at most {NAME_MAX} characters is allowed",
            name=name,
        )
    return name  # type: ignore[return-value]


# --- procfs ----------------------------------------------------------------------------------------------------------


def process_start_time(pid: int, proc: Path = Path("/proc")) -> int | None:
    """Field 22 of ``/proc/PID/stat`` (start time in clock ticks after boot), or None if there is no such process.

    The second field is the command name in parentheses, and a process may name itself ``a) b (c``, so the fields
    are counted after the *last* ``)``.
    """
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return None
    try:
        with open(Path(proc) / str(pid) / "stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        # ENOENT: gone; ESRCH: died while we read; EACCES: hidden from us (hidepid). Either way not one we may signal.
        return None
    _, paren, rest = raw.rpartition(b")")
    if not paren:
        return None
    after = rest.split()  # field 3 (state) onward
    index = _STAT_START_TIME - 3
    try:
        value = int(after[index])
    except (IndexError, ValueError):
        return None
    return value if value >= 0 else None


def containers_root(data_root: Path) -> Path:
    """Where the container records and directories live under sbx's data root."""
    return Path(data_root) / "containers"


def boot_id(proc: Path = Path("/proc")) -> str:
    """The kernel's random id of the current boot (a new one at every boot)."""
    path = Path(proc) / "sys" / "kernel" / "random" / "boot_id"
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("ascii", "replace").strip()
    except OSError as exc:
        raise store_error(exc, "read", path) from exc
    if not text:
        raise StoreError(f"cannot read the boot id from {path}: it is empty", path=str(path))
    return text


# --- small helpers ---------------------------------------------------------------------------------------------------


class _Fields(JsonFields):
    """Container record fields: every key is required (optional values are null, not absent)."""

    def __init__(self, data: object, source: str) -> None:
        self.container_id: str | None = None
        super().__init__(data, source, "record")

    def damaged(self, reason: str) -> StoreCorrupt:
        return _damaged(self.source, reason, self.container_id)

    def optional_string(self, key: str) -> str | None:
        value = self.raw(key)
        if value is not None and not isinstance(value, str):
            raise self.damaged(f"field {key!r} must be a string or null")
        return value

    def boolean(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, bool):
            raise self.damaged(f"field {key!r} must be true or false")
        return value

    def number(self, key: str) -> float:
        value = self.raw(key)
        try:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise OverflowError
            return float(value)
        except OverflowError:  # math.isfinite of a huge int
            raise self.damaged(f"field {key!r} must be a finite number") from None

    def optional_number(self, key: str) -> float | None:
        return None if self.raw(key) is None else self.number(key)

    def optional_int(self, key: str, minimum: int | None = None) -> int | None:
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
            bound = "" if minimum is None else f" >= {minimum}"
            raise self.damaged(f"field {key!r} must be an integer{bound} or null")
        return value


def _damaged(source: str, reason: str, container_id: str | None = None) -> StoreCorrupt:
    return StoreCorrupt(
        f"damaged container record {source}: {reason}",
        hint="remove the container with sbx rm -f ID (its id is the record's directory name)",
        path=source,
        container_id=container_id,
    )


def _not_found(text: object) -> ContainerNotFound:
    return ContainerNotFound(f"no such container: {text}", reference=text)


def _is_id(text: object) -> bool:
    return isinstance(text, str) and _ID.fullmatch(text) is not None


def _exists(path: Path) -> bool:
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return False
        raise store_error(exc, "stat", path) from exc
    return True
