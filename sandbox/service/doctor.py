"""`sbx doctor`: is this machine set up for rootless containers, and if not, what exactly to do.

Each check inspects one thing a rootless run needs and answers ``ok``, ``warning`` (sbx runs, with less: a single
id owner, no published ports, no limits, slower storage) or ``missing`` (something is absent or refused), with the
exact command that fixes it. A check is *blocking* when sbx cannot start a container without it; the machine is
ready when no blocking check fails.

What the kernel and the distribution decide, and where it is read:

- newuidmap/newgidmap (Debian ``uidmap``) write a user namespace's maps with the ranges of /etc/subuid and
  /etc/subgid; they must be setuid root (or carry file capabilities, ``security.capability``) to do so. Without a
  range sbx maps only the user's own id (every file in a container then has one owner) and needs no helper.
- ``user.max_user_namespaces`` = 0, Debian's old ``kernel.unprivileged_userns_clone`` = 0 and Ubuntu's
  ``kernel.apparmor_restrict_unprivileged_userns`` = 1 each refuse unprivileged user namespaces; a real probe (one
  namespace job with the user's own map) says whether one can be made.
- Kernel overlayfs mounts in a user namespace since 5.11; else fuse-overlayfs needs its binary and /dev/fuse open to
  the user; else sbx copies the image per container (the storage probe of :mod:`sandbox.service.layers`).
- Published ports need slirp4netns or pasta, and /dev/net/tun open to the user; host ports below
  ``net.ipv4.ip_unprivileged_port_start`` need root.
- Limits need a cgroup v2 subtree delegated to the user (owned by the uid, systemd's ``Delegate=``), with the
  controllers it enables; elsewhere sbx falls back to rlimits.
- XDG_RUNTIME_DIR holds sbx's sockets: it must be the user's own and closed to others. A store on NFS loses
  xattrs and subordinate owners. systemd kills a user's processes at logout unless linger is enabled.

Every root (/etc, /proc/sys, /sys/fs/cgroup, /dev, mountinfo, the linger dir) is a field of :class:`Host`, and the
two probes that touch the kernel are callables, so tests run every check against a tmp dir.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from sandbox.runtime.idmap import MAX_CONTAINER_IDS, subordinate_ranges, suggested_start
from sandbox.valueclass import field, valueclass

OK = "ok"
WARNING = "warning"
MISSING = "missing"

NETWORK_TOOLS = ("slirp4netns", "pasta")
REMOTE_FILESYSTEMS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p", "ceph", "glusterfs", "lustre"}
WANTED_CONTROLLERS = ("cpu", "memory", "pids", "io")
DELEGATE_FIX = (
    "sudo mkdir -p /etc/systemd/system/user@.service.d && printf '[Service]\\nDelegate=cpu cpuset io memory pids\\n' "
    "| sudo tee /etc/systemd/system/user@.service.d/delegate.conf && sudo systemctl daemon-reload, then log in again"
)


@valueclass
class Check:
    """One answer: ``status`` is ok, warning or missing; ``fix`` the exact command; ``data`` facts for --format json."""

    name: str
    status: str
    detail: str
    fix: str | None = None
    blocking: bool = False
    data: dict = field(default_factory=dict)

    @property
    def fails(self) -> bool:
        """True when this check stops sbx from running containers (a warning never does)."""
        return self.blocking and self.status == MISSING


@valueclass
class Report:
    checks: tuple[Check, ...]

    @property
    def can_run(self) -> bool:
        return not any(check.fails for check in self.checks)

    def find(self, name: str) -> Check:
        return next(check for check in self.checks if check.name == name)

    def as_dict(self) -> dict:
        storage = self.find("storage driver").data.get("driver")
        network = self.find("network").data
        return {
            "can_run": self.can_run,
            "storage_driver": storage,
            "network_tools": network.get("tools", {}),
            "checks": [
                {"name": c.name, "status": c.status, "detail": c.detail, "fix": c.fix, "blocking": c.blocking,
                 **({"data": c.data} if c.data else {})}
                for c in self.checks
            ],
        }


@valueclass
class Host:
    """Where the facts live (every path a parameter) and who asks."""

    user: str
    uid: int
    gid: int
    etc: Path = Path("/etc")
    proc_sys: Path = Path("/proc/sys")
    cgroup_root: Path = Path("/sys/fs/cgroup")
    own_cgroup: Path = Path("/proc/self/cgroup")
    mountinfo: Path = Path("/proc/self/mountinfo")
    dev: Path = Path("/dev")
    linger_dir: Path = Path("/var/lib/systemd/linger")
    systemd_dir: Path = Path("/run/systemd/system")
    path: str = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
    runtime_dir: str | None = None
    data_root: Path = Path("/nonexistent")


def _which(program: str, search: str) -> Path | None:
    for directory in search.split(os.pathsep):
        candidate = Path(directory or ".") / program
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _sysctl(host: Host, name: str) -> int | None:
    """The integer value of sysctl ``name`` (dotted) under proc_sys, or None when the kernel has no such knob."""
    try:
        return int((host.proc_sys / name.replace(".", "/")).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _usable_by(host: Host, st: os.stat_result) -> bool:
    """Can the user read and write a device with this owner and mode (as open(2) decides, groups simplified)."""
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid == host.uid:
        return mode & 0o600 == 0o600
    if st.st_gid == host.gid:
        return mode & 0o060 == 0o060
    return mode & 0o006 == 0o006


# --- the checks ----------------------------------------------------------------------------------------------------


def check_subordinate_ids(host: Host) -> list[Check]:
    checks = []
    for kind in ("subuid", "subgid"):
        path = host.etc / kind
        ranges = subordinate_ranges(host.user, host.uid, path)
        count = ranges[0][1] if ranges else 0
        start = suggested_start(host.etc / "subuid", host.etc / "subgid")
        fix = f"sudo usermod --add-{kind}s {start}-{start + MAX_CONTAINER_IDS - 1} {host.user}"
        if not ranges:
            checks.append(Check(f"{kind} range", MISSING,
                                f'no range for "{host.user}" in {path}: every file in a container gets one owner', fix))
        elif count < MAX_CONTAINER_IDS:
            checks.append(Check(f"{kind} range", WARNING,
                                f"{count} ids from {ranges[0][0]} in {path}: images using higher ids fail to unpack",
                                fix, data={"start": ranges[0][0], "count": count}))
        else:
            checks.append(Check(f"{kind} range", OK, f"{count} ids from {ranges[0][0]} in {path}",
                                data={"start": ranges[0][0], "count": count}))
    return checks


def check_id_helpers(host: Host) -> list[Check]:
    """newuidmap/newgidmap: blocking only when a subordinate range exists (sbx then needs them to map it)."""
    checks = []
    for program, kind in (("newuidmap", "subuid"), ("newgidmap", "subgid")):
        needed = bool(subordinate_ranges(host.user, host.uid, host.etc / kind))
        found = _which(program, host.path)
        if found is None:
            checks.append(Check(program, MISSING, f"{program} not found in PATH",
                                "sudo apt-get install uidmap", blocking=needed))
            continue
        st = found.stat()
        setuid = st.st_uid == 0 and bool(st.st_mode & stat.S_ISUID)
        try:
            caps = bool(os.getxattr(found, "security.capability"))
        except OSError:
            caps = False
        if setuid or caps:
            how = "setuid root" if setuid else "file capabilities"
            checks.append(Check(program, OK, f"{found}, {how}", data={"path": str(found)}))
        else:
            checks.append(Check(program, MISSING, f"{found} is neither setuid root nor has file capabilities",
                                f"sudo chown root {found} && sudo chmod u+s {found}", blocking=needed,
                                data={"path": str(found)}))
    return checks


def check_user_namespaces(host: Host, probe: Callable[[], str | None]) -> Check:
    """The sysctls that refuse unprivileged user namespaces, and a real probe; blocking."""
    refusals = []
    if _sysctl(host, "user.max_user_namespaces") == 0:
        refusals.append(("user.max_user_namespaces is 0", "sudo sysctl -w user.max_user_namespaces=28633"))
    if _sysctl(host, "kernel.unprivileged_userns_clone") == 0:
        refusals.append(("kernel.unprivileged_userns_clone is 0", "sudo sysctl -w kernel.unprivileged_userns_clone=1"))
    if _sysctl(host, "kernel.apparmor_restrict_unprivileged_userns") == 1:
        refusals.append(("AppArmor restricts unprivileged user namespaces",
                         "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"))
    failure = probe()
    fix = " && ".join(f for _, f in refusals) or None
    if fix:
        fix += " (add the setting to /etc/sysctl.d/ to keep it after a reboot)"
    if failure is None and not refusals:
        return Check("user namespaces", OK, "an unprivileged user namespace can be created", blocking=True)
    reasons = [r for r, _ in refusals] + ([failure] if failure else [])
    status = MISSING if failure else WARNING
    return Check("user namespaces", status, "; ".join(reasons), fix, blocking=True)


def check_storage(host: Host, probe: Callable[[], str]) -> list[Check]:
    """The storage driver the probe chose, and what fuse-overlayfs would need when kernel overlay is refused."""
    checks = []
    fuse = _which("fuse-overlayfs", host.path)
    device = host.dev / "fuse"
    try:
        device_ok = _usable_by(host, device.stat())
    except OSError:
        device_ok = False
    try:
        driver = probe()
    except Exception as error:  # noqa: BLE001 - any failure of the probe is the answer
        message = getattr(error, "message", None) or str(error)
        checks.append(Check("storage driver", MISSING, f"the storage probe failed: {message}", blocking=True))
        return checks
    data = {"driver": driver, "fuse-overlayfs": str(fuse) if fuse else None, "dev_fuse": device_ok}
    if driver == "overlay":
        checks.append(Check("storage driver", OK, "kernel overlayfs in a user namespace", data=data))
    elif driver == "fuse-overlayfs":
        checks.append(Check("storage driver", OK, "fuse-overlayfs (the kernel refuses overlayfs in a user namespace)",
                            data=data))
    else:
        fixes = ([] if fuse else ["sudo apt-get install fuse-overlayfs"]) + (
            [] if device_ok else [f"sudo chmod 0666 {device}"])
        checks.append(Check("storage driver", WARNING,
                            f"{driver}: every container copies its image (no kernel overlayfs in a user namespace, "
                            "no usable fuse-overlayfs)", " && ".join(fixes) or None, data=data))
    return checks


def check_network(host: Host) -> list[Check]:
    """slirp4netns / pasta and /dev/net/tun: without them only --network none and host work."""
    tools = {name: (str(found) if (found := _which(name, host.path)) else None) for name in NETWORK_TOOLS}
    tun = host.dev / "net" / "tun"
    try:
        tun_ok = _usable_by(host, tun.stat())
        tun_detail = f"{tun} mode {stat.S_IMODE(tun.stat().st_mode):04o}"
    except OSError:
        tun_ok, tun_detail = False, f"{tun} absent"
    data = {"tools": tools, "dev_net_tun": tun_ok}
    present = [name for name, where in tools.items() if where]
    fixes = []
    if not present:
        fixes.append("sudo apt-get install slirp4netns passt")
    if not tun_ok:
        fixes.append(f"sudo chmod 0666 {tun}" if tun.exists() else "sudo modprobe tun")
    detail = f"{', '.join(present) or 'neither slirp4netns nor pasta'}; {tun_detail}"
    if fixes:
        return [Check("network", WARNING, f"{detail}: only --network none and host work", " && ".join(fixes),
                      data=data)]
    return [Check("network", OK, detail, data=data)]


def check_ports(host: Host) -> Check:
    start = _sysctl(host, "net.ipv4.ip_unprivileged_port_start")
    if start is None or start <= 80:
        return Check("unprivileged ports", OK, f"host ports from {start or 0} can be published",
                     data={"start": start})
    return Check("unprivileged ports", WARNING,
                 f"net.ipv4.ip_unprivileged_port_start is {start}: -p with a host port below {start} is refused",
                 "sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80", data={"start": start})


def _own_cgroup(host: Host) -> str | None:
    try:
        for line in host.own_cgroup.read_text().splitlines():
            if line.startswith("0::"):
                return line[3:].strip()
    except OSError:
        pass
    return None


def check_cgroups(host: Host) -> Check:
    """A cgroup v2 subtree owned by the user (delegated), and which controllers it has."""
    if not (host.cgroup_root / "cgroup.controllers").exists():
        layout = "hybrid (v1 controllers)" if (host.cgroup_root / "unified").is_dir() else "v1"
        return Check("cgroup delegation", WARNING,
                     f"cgroup {layout}: no v2 controllers, limits (--memory, --cpus, ...) fall back to rlimits",
                     "boot with systemd.unified_cgroup_hierarchy=1 (kernel command line)", data={"mode": layout})
    own = _own_cgroup(host)
    delegated = None
    if own is not None:
        current = host.cgroup_root / own.lstrip("/")
        while current != host.cgroup_root and current.is_relative_to(host.cgroup_root):
            try:
                if current.stat().st_uid != host.uid:
                    break
            except OSError:
                break
            delegated = current
            current = current.parent
    if delegated is None:
        return Check("cgroup delegation", WARNING,
                     f"no cgroup v2 subtree is delegated to {host.user} (own cgroup {own or 'unknown'}): limits fall "
                     "back to rlimits", DELEGATE_FIX, data={"mode": "v2", "delegated": None, "controllers": []})
    try:
        controllers = (delegated / "cgroup.controllers").read_text().split()
    except OSError:
        controllers = []
    where = "/" + str(delegated.relative_to(host.cgroup_root))
    data = {"mode": "v2", "delegated": where, "controllers": controllers}
    lacking = [name for name in WANTED_CONTROLLERS if name not in controllers]
    if lacking:
        return Check("cgroup delegation", WARNING, f"{where} lacks the {', '.join(lacking)} controller(s)",
                     DELEGATE_FIX, data=data)
    return Check("cgroup delegation", OK, f"{where}: {' '.join(controllers)}", data=data)


def check_runtime_dir(host: Host) -> Check:
    """XDG_RUNTIME_DIR must be the user's own and closed to others: sbx's attach sockets live there."""
    if not host.runtime_dir:
        return Check("XDG_RUNTIME_DIR", WARNING, f"not set: sbx keeps its sockets in /tmp/sbx-{host.uid}",
                     f"log in through a systemd session, or: sudo loginctl enable-linger {host.user} "
                     f"&& export XDG_RUNTIME_DIR=/run/user/{host.uid}")
    path = Path(host.runtime_dir)
    try:
        st = path.stat()
    except OSError:
        return Check("XDG_RUNTIME_DIR", MISSING, f"{path} does not exist",
                     f"sudo install -d -m 0700 -o {host.user} /run/user/{host.uid}", blocking=True)
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != host.uid or mode & 0o022:
        return Check("XDG_RUNTIME_DIR", MISSING,
                     f"{path} is owned by uid {st.st_uid} with mode {mode:04o}: another user could swap sbx's sockets",
                     f"sudo chown {host.user} {path} && chmod 0700 {path}", blocking=True)
    return Check("XDG_RUNTIME_DIR", OK, f"{path}, yours, mode {mode:04o}")


def _unescape(field_text: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes."""
    return (field_text.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))


def filesystem_of(mountinfo: Path, path: Path) -> str | None:
    """The filesystem type of the mount holding ``path`` (the longest mount point above it), from mountinfo."""
    best, fstype = "", None
    target = str(path)
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        head, _, tail = line.partition(" - ")
        fields = head.split()
        if len(fields) < 5 or not tail:
            continue
        point = _unescape(fields[4])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, tail.split()[0]
    return fstype


def check_store_filesystem(host: Host) -> Check:
    existing = host.data_root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    fstype = filesystem_of(host.mountinfo, existing.resolve())
    data = {"path": str(host.data_root), "filesystem": fstype}
    if fstype in REMOTE_FILESYSTEMS:
        return Check("store filesystem", WARNING,
                     f"{host.data_root} is on {fstype}: subordinate owners and xattrs do not work there",
                     "export XDG_DATA_HOME=/var/tmp/$USER (or another local disk)", data=data)
    return Check("store filesystem", OK, f"{host.data_root} on {fstype or 'an unknown filesystem'}", data=data)


def check_linger(host: Host) -> Check:
    if not host.systemd_dir.is_dir():
        return Check("linger", OK, "no systemd login manager: detached containers outlive the session")
    if (host.linger_dir / host.user).exists():
        return Check("linger", OK, "enabled: detached containers survive logout")
    return Check("linger", WARNING, "not enabled: systemd may stop detached containers when you log out",
                 f"sudo loginctl enable-linger {host.user}")


def diagnose(host: Host, userns_probe: Callable[[], str | None], storage_probe: Callable[[], str]) -> Report:
    """Every check, in the order a newcomer fixes them.

    ``userns_probe`` makes one user namespace and returns None, or why it could not; ``storage_probe`` returns the
    storage driver sbx would use (it raises when it cannot probe).
    """
    checks: list[Check] = []
    checks += check_id_helpers(host)
    checks += check_subordinate_ids(host)
    checks.append(check_user_namespaces(host, userns_probe))
    userns_ok = checks[-1].status != MISSING
    if userns_ok:
        checks += check_storage(host, storage_probe)
    else:
        checks.append(Check("storage driver", MISSING, "not probed: no user namespace", blocking=True))
    checks += check_network(host)
    checks.append(check_ports(host))
    checks.append(check_cgroups(host))
    checks.append(check_runtime_dir(host))
    checks.append(check_store_filesystem(host))
    checks.append(check_linger(host))
    return Report(tuple(checks))


def local_report(settings) -> Report:
    """The report for the user running sbx, with the real probes (a namespace job, the cached storage probe)."""
    import pwd

    from sandbox.errors import SbxError
    from sandbox.runtime.idmap import default_idmap
    from sandbox.runtime.userns import run_job

    uid, gid = os.getuid(), os.getgid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    host = Host(user=user, uid=uid, gid=gid, path=os.environ.get("PATH", Host.path),
                runtime_dir=os.environ.get("XDG_RUNTIME_DIR"), data_root=settings.data_root)

    def userns_probe() -> str | None:
        try:
            run_job({"op": "remove", "paths": []}, default_idmap(), timeout=30)
        except SbxError as error:
            return error.message
        return None

    def storage_probe() -> str:
        from sandbox.service.images import ImageService

        return ImageService(settings).unpacker().storage_driver(settings.storage_driver)

    return diagnose(host, userns_probe, storage_probe)
