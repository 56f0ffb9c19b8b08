"""Who the container's process runs as: ``--user`` (or the image's USER) resolved against the image's own files.

Docker's rules (moby/sys/user ``GetExecUser``), as pure functions over TEXT: the caller reads ``/etc/passwd`` and
``/etc/group`` inside the container's root (never the host's NSS) and caps their size. Nothing here does I/O.

- ``""`` means root: uid 0, with the gid, home and name of the passwd entry for uid 0 when there is one
  (else gid 0, home ``/``, no name).
- ``NAME`` must have a passwd entry; ``UID`` need not (then gid 0, home ``/``, no name). A number matches an entry
  by name or by uid, the first in the file wins (as Docker).
- ``:GROUP`` names a group of the group file or a number; then, as Docker, no supplementary groups are set.
  Without it the supplementary groups are every group that lists the user's name as a member, in file order,
  without duplicates and without the primary gid.
- Ids are 0..2147483647. Malformed, commented, NIS (``+``/``-``) and out-of-range lines of either file are skipped,
  so hostile text can only make *its own* user unresolvable: the only error raised is :class:`InvalidUser`.
"""

from __future__ import annotations

import re

from sandbox.errors import InvalidUser
from sandbox.valueclass import valueclass

MAX_ID = 2**31 - 1
MAX_NAME = 32
MAX_GROUPS = 65536  # the kernel's NGROUPS_MAX: setgroups refuses more
NAME_PATTERN = r"[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?"
_NUMBER = r"[0-9]+"  # patterns, compiled on first use (re's cache): a run without --user never needs them (B1)
_NEGATIVE = r"-[0-9]+"
_USAGE = "use --user NAME|UID[:GROUP|GID], ids between 0 and 2147483647"


@valueclass
class Identity:
    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary gids, without the primary one
    home: str
    name: str | None  # the passwd entry's name; None for a uid without entry


def shown(text: str, limit: int = 64) -> str:
    """``text`` double-quoted for a one-line message: control and non-printable characters escaped, long text cut."""
    cut = len(text) > limit
    out = ['"']
    for char in text[:limit]:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    if cut:
        out.append("…")
    return "".join(out)


def _as_id(part: str) -> int | None:
    """The id a decimal string in range stands for, else None (never int() on an unbounded string)."""
    if not re.fullmatch(_NUMBER, part):
        return None
    digits = part.lstrip("0") or "0"
    if len(digits) > len(str(MAX_ID)):
        return None
    value = int(digits)
    return value if value <= MAX_ID else None


def _check_part(part: str, text: str) -> None:
    if part == "":
        raise InvalidUser(f"invalid user {shown(text)}: user and group must not be empty", hint=_USAGE)
    if re.fullmatch(_NUMBER, part) or re.fullmatch(_NEGATIVE, part):
        if _as_id(part) is None:
            raise InvalidUser(f"invalid user {shown(text)}: ids must be between 0 and {MAX_ID}", hint=_USAGE)
        return
    if len(part) > MAX_NAME or not re.fullmatch(NAME_PATTERN, part):
        raise InvalidUser(
            f"invalid user {shown(text)}: a name must match {NAME_PATTERN} and have at most {MAX_NAME} characters",
            hint=_USAGE,
        )


def parse_user(text: str) -> tuple[str, str | None]:
    """Split ``user[:group]`` and validate both parts; ``""`` (no user given) is ``("", None)``.

    Raises :class:`InvalidUser` (and nothing else) for empty parts, a second colon, negative or out-of-range
    numbers, and names outside ``[A-Za-z0-9_.][A-Za-z0-9_.-]*$?`` or longer than 32 characters.
    """
    if not isinstance(text, str):
        raise InvalidUser("invalid user: not a string", hint=_USAGE)
    if text == "":
        return "", None
    if text.count(":") > 1:
        raise InvalidUser(f"invalid user {shown(text)}: expected USER[:GROUP]", hint=_USAGE)
    user, sep, group = text.partition(":")
    _check_part(user, text)
    if not sep:
        return user, None
    _check_part(group, text)
    return user, group


@valueclass
class _Passwd:
    name: str
    uid: int
    gid: int
    home: str


@valueclass
class _Group:
    name: str
    gid: int
    members: tuple[str, ...]


def _lines(text: str | None):
    """The meaningful lines of a passwd/group file: split on \\n only, trimmed, no blank/comment/NIS/NUL lines."""
    if not text:
        return
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or line[0] in "#+-" or "\x00" in line:
            continue
        yield line.split(":")


def _passwd_entries(text: str | None):
    for fields in _lines(text):
        if len(fields) < 4 or not fields[0]:
            continue
        uid, gid = _as_id(fields[2]), _as_id(fields[3])
        if uid is None or gid is None:
            continue
        home = fields[5] if len(fields) > 5 and fields[5] else "/"
        yield _Passwd(fields[0], uid, gid, home)


def _group_entries(text: str | None):
    for fields in _lines(text):
        if len(fields) < 3 or not fields[0]:
            continue
        gid = _as_id(fields[2])
        if gid is None:
            continue
        members = tuple(m.strip() for m in fields[3].split(",")) if len(fields) > 3 else ()
        yield _Group(fields[0], gid, tuple(m for m in members if m))


def _is_user(entry: _Passwd, name: str, number: int | None) -> bool:
    """Docker's match: ``""`` is uid 0; otherwise the name, or the uid when the user was given as a number."""
    if name == "":
        return entry.uid == 0
    return entry.name == name or (number is not None and entry.uid == number)


def resolve_identity(user: str, passwd_text: str | None, group_text: str | None) -> Identity:
    """The uid, gid, supplementary groups, home and name ``user`` stands for in an image with these files.

    ``passwd_text`` / ``group_text`` are the image's ``/etc/passwd`` and ``/etc/group`` (None when absent).
    Raises :class:`InvalidUser` when ``user`` does not parse, names no passwd entry, its group names no group
    entry, or it is a member of more groups than the kernel allows.
    """
    user_part, group_part = parse_user(user)
    number = 0 if user_part == "" else _as_id(user_part)
    entry = next((e for e in _passwd_entries(passwd_text) if _is_user(e, user_part, number)), None)
    if entry is not None:
        uid, gid, home, name = entry.uid, entry.gid, entry.home, entry.name
    elif number is not None:
        uid, gid, home, name = number, 0, "/", None
    else:
        raise InvalidUser(f"unable to find user {user_part}: no matching entries in passwd file")

    groups: tuple[int, ...] = ()
    if group_part is not None:
        number = _as_id(group_part)
        match = next(
            (g for g in _group_entries(group_text) if g.name == group_part or (number is not None and g.gid == number)),
            None,
        )
        if match is not None:
            gid = match.gid
        elif number is not None:
            gid = number
        else:
            raise InvalidUser(f"unable to find group {group_part}: no matching entries in group file")
    elif name is not None:
        seen: dict[int, None] = {}
        for group in _group_entries(group_text):
            if name in group.members and group.gid != gid:
                seen[group.gid] = None
        if len(seen) > MAX_GROUPS:
            raise InvalidUser(f"user {name} is a member of more than {MAX_GROUPS} groups in the image's group file")
        groups = tuple(seen)
    return Identity(uid=uid, gid=gid, groups=groups, home=home, name=name)
