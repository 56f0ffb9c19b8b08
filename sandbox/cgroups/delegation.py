"""Find the cgroup v2 subtree delegated to this user, without writing anything.

sbx's own cgroup is the ``0::`` line of ``/proc/self/cgroup``. Delegated means writable: the directory, its
``cgroup.procs`` and its ``cgroup.subtree_control``. From the own cgroup sbx walks up while the parent is writable
too; the topmost writable ancestor is the delegation point (``user@UID.service`` under systemd's ``Delegate=``,
or the directory an administrator chowned). Containers go under ``<delegation point>/sbx/<id>``: the common
ancestor of sbx's cgroup and theirs is then inside the delegation, as moving a process requires. A configured
``cgroup_parent`` (a path inside the cgroup v2 mount) replaces the walk.

The controllers sbx can give containers are those in the delegation point's ``cgroup.controllers``, provided it can
enable them in its ``cgroup.subtree_control``: a non-root cgroup holding processes cannot (no-internal-process
rule), unless they are enabled already. Every path is a parameter, so the tests use a tmp-dir tree.
"""

from __future__ import annotations

import os
from pathlib import Path

from sandbox.cgroups.limits import CONTROLLERS
from sandbox.valueclass import valueclass

DELEGATE_FIX = ("have an administrator delegate cgroups: a systemd drop-in "
                "/etc/systemd/system/user@.service.d/delegate.conf with \"[Service]\\nDelegate=cpu cpuset io memory "
                "pids\" (then run sbx inside your user manager, e.g. systemd-run --user --scope), or chown {user} "
                "{path} and its cgroup.procs, cgroup.subtree_control and cgroup.threads")
UNIFIED_FIX = ("boot with systemd.unified_cgroup_hierarchy=1 (cgroup v2 only), then have an administrator delegate "
               "a subtree (systemd Delegate= for user@.service, or chown of a cgroup directory)")


@valueclass
class Delegation:
    """Where container cgroups go (``parent``, None when nowhere) and which controllers they can have."""

    root: Path | None  # the cgroup v2 mount
    parent: Path | None  # the delegation point
    controllers: frozenset[str] = frozenset()
    reason: str = ""  # why a controller is missing, for the warning
    fix: str = ""  # what an administrator can do about it

    @property
    def usable(self) -> bool:
        return self.parent is not None


def discover(*, cgroup_root: Path | None = None, proc_self: Path = Path("/proc/self"),
             override: str | None = None, access=os.access, user: str | None = None) -> Delegation:
    """The delegation this process has (see the module docstring). ``cgroup_root`` is the cgroup v2 mount (found
    in ``proc_self/mountinfo`` when not given); ``access`` is :func:`os.access` (tests pass their own)."""
    root = cgroup_root or cgroup2_mount(proc_self / "mountinfo")
    if root is None:
        return Delegation(None, None, reason="no cgroup v2 hierarchy is mounted", fix=UNIFIED_FIX)
    root = Path(root)
    own = own_cgroup(proc_self / "cgroup")
    if override:
        parent = root / override.strip("/")
        if not _writable(parent, access):
            return Delegation(root, None, reason=f"the configured cgroup_parent {parent} is not writable by you",
                              fix=DELEGATE_FIX.format(user=user or _user_name(), path=parent))
    else:
        if own is None:
            return Delegation(root, None, reason="this process is in no cgroup v2 group", fix=UNIFIED_FIX)
        parent = root / own.strip("/") if own.strip("/") else root
        if not _writable(parent, access):
            fix = _fix(root, user or _user_name(), parent)
            return Delegation(root, None, reason=_not_delegated(root, own), fix=fix)
        while parent != root and _writable(parent.parent, access):
            parent = parent.parent
    available = set(read_words(parent / "cgroup.controllers")) & set(CONTROLLERS)
    enabled = set(read_words(parent / "cgroup.subtree_control"))
    missing = sorted(set(CONTROLLERS) - available)
    if parent != root and _has_processes(parent):
        usable = available & enabled
        if usable != available:
            return Delegation(
                root, parent if usable else None, frozenset(usable),
                reason=f"{parent} holds processes, so controllers cannot be enabled below it (no-internal-process "
                       "rule)",
                fix=f"move the processes of {parent} into a child cgroup (e.g. {parent}/shell) and run sbx there",
            )
        available = usable
    reason, fix = "", ""
    if missing:
        reason = f"{parent} offers no {', '.join(missing)} controller"
        if _hybrid(root):
            reason += f" (a hybrid layout: cgroup v2 at {root} carries only what cgroup v1 does not)"
            fix = UNIFIED_FIX
        else:
            fix = (f"enable {' '.join('+' + name for name in missing)} in {parent.parent}/cgroup.subtree_control "
                   "(systemd: Delegate=cpu cpuset io memory pids)")
    return Delegation(root, parent, frozenset(available), reason=reason, fix=fix)


def cgroup2_mount(mountinfo: Path) -> Path | None:
    """The mount point of the cgroup v2 hierarchy in ``mountinfo`` (proc(5): fstype after the `` - ``)."""
    try:
        text = mountinfo.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        before, _, after = line.partition(" - ")
        if after.split(" ", 1)[0] == "cgroup2":
            fields = before.split(" ")
            if len(fields) > 4:
                return Path(fields[4].replace("\\040", " "))
    return None


def own_cgroup(path: Path) -> str | None:
    """The cgroup v2 path (``0::/...``) of the process whose ``/proc/PID/cgroup`` is ``path``."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    return parse_own_cgroup(text)


def parse_own_cgroup(text: str) -> str | None:
    """The ``0::`` path of a ``/proc/PID/cgroup`` text (None when absent, deleted or odd)."""
    for line in text.splitlines():
        if line.startswith("0::"):
            value = line[3:]
            if value.endswith(" (deleted)"):
                return None
            return value if value.startswith("/") and "/../" not in value + "/" else None
    return None


def read_words(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError:
        return []


def _writable(path: Path, access) -> bool:
    return all(access(str(item), os.W_OK) for item in (path, path / "cgroup.procs", path / "cgroup.subtree_control"))


def _has_processes(path: Path) -> bool:
    try:
        return bool((path / "cgroup.procs").read_text().strip())
    except OSError:
        return True


def _hybrid(root: Path) -> bool:
    """cgroup v2 mounted beside v1 hierarchies (systemd's hybrid layout puts it at /sys/fs/cgroup/unified)."""
    return root.name == "unified"


def _not_delegated(root: Path, own: str) -> str:
    if _hybrid(root):
        return f"a hybrid layout: cgroup v2 at {root} carries only what cgroup v1 does not, and {own} is not yours"
    return f"your cgroup {root / own.strip('/')} is not delegated to you"


def _fix(root: Path, user: str, path: Path) -> str:
    return UNIFIED_FIX if _hybrid(root) else DELEGATE_FIX.format(user=user, path=path)


def _user_name() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())
