"""Id maps for user namespaces: which host uids/gids stand for the container's ids.

A rootless container (and a rootless unpack) runs as root of a user namespace whose map sends container id 0 to the
user's own id and container ids 1..N to the user's first subordinate range from /etc/subuid and /etc/subgid (N at
most 65536, the ids an image can reasonably use). So a file owned by uid 33 in an image is owned on disk by the
subordinate uid ``start + 32``. Without a subordinate range only the user's own id can be mapped (a "single" map):
every file then has one owner, and :meth:`IdMap.notice` says what an administrator can do about it.

Only :func:`default_idmap` and :func:`subordinate_ranges` read files, and every path is a parameter.
"""

from __future__ import annotations

import os
from pathlib import Path

from sandbox.valueclass import valueclass

MAX_CONTAINER_IDS = 65536  # container ids 1..65536 besides 0: what images use, and what usermod hands out
SUGGESTED_START = 100000  # where useradd starts subordinate ranges


@valueclass
class IdRange:
    """``size`` consecutive container ids from ``container_id`` stand for host ids from ``host_id``."""

    container_id: int
    host_id: int
    size: int

    def __post_init__(self) -> None:
        if self.container_id < 0 or self.host_id < 0 or self.size < 1:
            raise ValueError(f"invalid id range {self.container_id} {self.host_id} {self.size}")

    def contains(self, container_id: int) -> bool:
        return self.container_id <= container_id < self.container_id + self.size

    def to_host(self, container_id: int) -> int:
        return self.host_id + container_id - self.container_id

    def line(self) -> str:
        """The range as a line of /proc/PID/uid_map, and as newuidmap's arguments."""
        return f"{self.container_id} {self.host_id} {self.size}"


def _span(ranges: tuple[IdRange, ...]) -> int:
    """How many container ids from 0 on are mapped without a gap."""
    end = 0
    for item in sorted(ranges, key=lambda r: r.container_id):
        if item.container_id > end:
            break
        end = max(end, item.container_id + item.size)
    return end


@valueclass
class IdMap:
    """The uid and gid maps of a user namespace; ``note`` is the one-line notice for a reduced map, if any."""

    uids: tuple[IdRange, ...]
    gids: tuple[IdRange, ...]
    note: str | None = None

    @property
    def single(self) -> bool:
        """True when only the user's own uid and gid are mapped (no subordinate ranges): files keep one owner."""
        return _span(self.uids) <= 1 and _span(self.gids) <= 1

    @property
    def uid_span(self) -> int:
        """Container uids 0..uid_span-1 are mapped."""
        return _span(self.uids)

    @property
    def gid_span(self) -> int:
        """Container gids 0..gid_span-1 are mapped."""
        return _span(self.gids)

    @property
    def size(self) -> int:
        """How many container ids from 0 on are mapped as both uid and gid (65537 normally, 1 for a single map)."""
        return min(self.uid_span, self.gid_span)

    def contains_uid(self, container_id: int) -> bool:
        return any(item.contains(container_id) for item in self.uids)

    def contains_gid(self, container_id: int) -> bool:
        return any(item.contains(container_id) for item in self.gids)

    def host_uid(self, container_id: int) -> int | None:
        return next((item.to_host(container_id) for item in self.uids if item.contains(container_id)), None)

    def host_gid(self, container_id: int) -> int | None:
        return next((item.to_host(container_id) for item in self.gids if item.contains(container_id)), None)

    def notice(self) -> str | None:
        """The one-line notice the CLI prints once when the map lacks subordinate ids; None when it is complete."""
        return self.note


def subordinate_ranges(name: str, uid: int, path: Path) -> list[tuple[int, int]]:
    """The ``(start, count)`` ranges /etc/subuid-format ``path`` gives the user ``name`` (or numeric ``uid``).

    Lines are ``name_or_uid:start:count``; blank lines, ``#`` comments and malformed lines are ignored, as are
    ranges of zero ids. A missing or unreadable file gives no ranges.
    """
    return [(start, count) for owner, start, count in _ranges(path) if owner in (name, str(uid)) and count > 0]


def _ranges(path: Path) -> list[tuple[str, int, int]]:
    """Every well-formed ``(owner, start, count)`` line of an /etc/subuid-format file; none if it is unreadable."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    ranges = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) != 3:
            continue
        start, count = fields[1].strip(), fields[2].strip()
        if start.isdecimal() and count.isdecimal():
            ranges.append((fields[0], int(start), int(count)))
    return ranges


def _free_start(taken: list[tuple[int, int]], size: int) -> int:
    start = SUGGESTED_START
    for begin, count in sorted(taken):
        if begin < start + size and start < begin + count:
            start = max(start, begin + count)
            start = -(-start // MAX_CONTAINER_IDS) * MAX_CONTAINER_IDS  # round up to a 65536 boundary
    return start


def suggested_start(subuid_path: Path, subgid_path: Path) -> int:
    """Where a new 65536-id range fits in both files without overlapping anyone's (what the notices suggest)."""
    taken = [(start, count) for path in (subuid_path, subgid_path) for _, start, count in _ranges(path)]
    return _free_start(taken, MAX_CONTAINER_IDS)  # whoever owns them


def _notice(user: str, missing: list[Path], subuid_path: Path, subgid_path: Path) -> str:
    size = MAX_CONTAINER_IDS
    start = suggested_start(subuid_path, subgid_path)
    where = " and ".join(str(path) for path in missing)
    kinds = "uid and gid" if len(missing) == 2 else ("uid" if missing[0] == subuid_path else "gid")
    return (
        f'no subordinate {kinds} range for user "{user}" in {where}: files keep a single owner; '
        f"ask an administrator to run usermod --add-subuids {start}-{start + size - 1} "
        f"--add-subgids {start}-{start + size - 1} {user} (sbx doctor checks the rest)"
    )


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def default_idmap(
    *,
    uid: int | None = None,
    gid: int | None = None,
    user: str | None = None,
    subuid_path: Path = Path("/etc/subuid"),
    subgid_path: Path = Path("/etc/subgid"),
) -> IdMap:
    """Container 0 → the user's own id, container 1..N → the first subordinate range (N = min(count, 65536)).

    Without a range for uids (or gids) that side maps the user's own id only, and the map carries a notice.
    """
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    user = _user_name(uid) if user is None else user
    sides = []
    missing = []
    for own, path in ((uid, subuid_path), (gid, subgid_path)):
        ranges = subordinate_ranges(user, uid, path)
        side = [IdRange(0, own, 1)]
        if ranges:
            start, count = ranges[0]
            side.append(IdRange(1, start, min(count, MAX_CONTAINER_IDS)))
        else:
            missing.append(Path(path))
        sides.append(tuple(side))
    note = _notice(user, missing, Path(subuid_path), Path(subgid_path)) if missing else None
    return IdMap(uids=sides[0], gids=sides[1], note=note)
