"""Root filesystem drivers: kernel overlay, fuse-overlayfs, and a private copy.

Plan, then apply. :func:`plan_rootfs` turns a driver, a container directory and the image's unpacked layers into
a frozen :class:`RootfsPlan` (pure data, tested as data); :func:`mount_rootfs` applies it *inside* the container's
user and mount namespace, where the user is root and may mount:

- ``overlay``: kernel overlayfs with ``userxattr`` (Linux ≥ 5.11 lets an unprivileged user namespace mount it; the
  opaque marker is then ``user.overlay.opaque`` and whiteouts are 0:0 character devices, the format layers are
  stored in). ``lowerdir`` lists the layers top-most first. The mount options must fit in one page, so lower dirs
  are named relative to the layer store (the mount runs with that as its working directory).
- ``fuse-overlayfs``: the same layers and format through FUSE, for kernels that refuse the former.
- ``copy``: the image flattened into the container's own directory at create time (whiteouts applied while
  extracting), then bind-mounted. Slowest to create, works everywhere.

The three must give the container the same tree; ``tests/integration/test_rootfs.py`` proves it on one hostile
multi-layer image.
"""

from __future__ import annotations

import os
from pathlib import Path

from sandbox.errors import RootfsError
from sandbox.valueclass import valueclass

DRIVERS = ("overlay", "fuse-overlayfs", "copy")
_PAGE = 4096


@valueclass
class RootfsPlan:
    driver: str
    layer_root: str  # the store's layers/ directory: the working directory of the mount
    lower: tuple[str, ...]  # relative to layer_root, top-most first
    upper: str | None = None
    work: str | None = None
    copy: str | None = None  # the flattened private tree (copy driver)

    def overlay_options(self) -> str:
        options = f"lowerdir={':'.join(self.lower)},upperdir={self.upper},workdir={self.work}"
        if self.driver == "overlay":
            options += ",userxattr"
        if len(options) >= _PAGE:
            raise RootfsError(
                f"the image has too many layers ({len(self.lower)}) for one {self.driver} mount",
                hint="use the copy storage driver: --storage-driver copy",
            )
        return options


def plan_rootfs(driver: str, container_dir: Path, layer_root: Path, chain_hexes: list[str]) -> RootfsPlan:
    """The mount plan for a container whose image has these unpacked layers (bottom-most first)."""
    if driver not in DRIVERS:
        raise RootfsError(f"unknown storage driver {driver!r}", hint=f"choose one of {', '.join(DRIVERS)}")
    lower = tuple(f"{chain}/diff" for chain in reversed(chain_hexes))
    if driver == "copy":
        return RootfsPlan(driver, str(layer_root), lower, copy=str(container_dir / "rootfs"))
    return RootfsPlan(
        driver, str(layer_root), lower, upper=str(container_dir / "upper"), work=str(container_dir / "work")
    )


def create_dirs(plan: RootfsPlan) -> None:
    """Create the container's writable directories (as the user, outside the namespace: it owns them)."""
    for path in (plan.upper, plan.work, plan.copy):
        if path:
            Path(path).mkdir(mode=0o755, parents=True, exist_ok=True)


def mount_rootfs(kernel, plan: RootfsPlan, target: str) -> None:
    """Mount the plan at ``target``; call inside the container's user and mount namespace."""
    from sandbox.kernel.constants import MS_BIND, MS_REC

    if plan.driver == "copy":
        assert plan.copy is not None
        kernel.mount(plan.copy, target, None, MS_BIND | MS_REC)
        return
    if not plan.lower:
        raise RootfsError("the image has no layers to mount")
    previous = os.getcwd()
    os.chdir(plan.layer_root)
    try:
        if plan.driver == "overlay":
            kernel.mount("overlay", target, "overlay", 0, plan.overlay_options())
        else:
            _fuse_overlayfs(plan, target)
    finally:
        os.chdir(previous)


def _fuse_overlayfs(plan: RootfsPlan, target: str) -> None:
    # imported here (before pivot_root, the host's library is still in reach): the overlay driver, sbx exec and
    # everything that only plans a root filesystem need neither module
    import shutil
    import subprocess

    binary = shutil.which("fuse-overlayfs")
    if binary is None:
        raise RootfsError("fuse-overlayfs is not installed", hint="install the Debian package fuse-overlayfs")
    try:
        result = subprocess.run(
            [binary, "-o", plan.overlay_options(), target],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.SubprocessError as exc:
        raise RootfsError(f"fuse-overlayfs failed: {exc}") from None
    if result.returncode != 0:
        raise RootfsError(f"fuse-overlayfs failed: {result.stderr.strip()[:300]}")


def probe(kernel, driver: str, workdir: Path) -> str | None:
    """Can ``driver`` serve layers in the stored format here? None if so, else the reason (inside the namespace).

    Two lower layers: the lower one holds ``gone`` and ``dir/hidden``; the upper one whites out ``gone`` (a 0:0
    character device) and marks ``dir`` opaque. The mount must hide both and accept a write.
    """
    import stat

    if driver == "copy":
        return None
    try:
        bottom, top = workdir / "bottom" / "diff", workdir / "top" / "diff"
        for path in (bottom / "dir", top / "dir", workdir / "upper", workdir / "work", workdir / "merged"):
            path.mkdir(parents=True, exist_ok=True)
        (bottom / "gone").write_text("x")
        (bottom / "dir" / "hidden").write_text("x")
        os.mknod(top / "gone", stat.S_IFCHR | 0o000, os.makedev(0, 0))
        os.setxattr(top / "dir", "user.overlay.opaque", b"y")
        plan = RootfsPlan(driver, str(workdir), ("top/diff", "bottom/diff"), str(workdir / "upper"),
                          str(workdir / "work"))
        merged = str(workdir / "merged")
        mount_rootfs(kernel, plan, merged)
        try:
            if os.path.lexists(f"{merged}/gone") or os.path.lexists(f"{merged}/dir/hidden"):
                return "whiteouts and opaque directories are not honoured"
            Path(merged, "written").write_text("x")
        finally:
            unmount_rootfs(kernel, plan, merged)
    except (OSError, RootfsError) as exc:
        return str(exc)
    return None


def unmount_rootfs(kernel, plan: RootfsPlan, target: str) -> None:
    from sandbox.kernel.constants import MNT_DETACH

    if plan.driver == "fuse-overlayfs":
        import shutil
        import subprocess

        if shutil.which("fusermount3"):
            subprocess.run(["fusermount3", "-u", "-z", target], capture_output=True, timeout=30)
            return
    kernel.umount2(target, MNT_DETACH)


def inventory(root: str) -> dict[str, list]:
    """Every entry under ``root`` as [type, mode, uid, gid, link target or content sha256]; never follows links.

    The driver-equivalence check compares these between drivers: the same image must give the same tree.
    """
    import hashlib
    import stat

    tree: dict[str, list] = {}
    pending = [""]
    while pending:
        relative = pending.pop()
        directory = os.path.join(root, relative) if relative else root
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            path = f"{relative}/{entry.name}" if relative else entry.name
            info = entry.stat(follow_symlinks=False)
            kind = stat.S_IFMT(info.st_mode)
            detail = ""
            if stat.S_ISLNK(info.st_mode):
                detail = os.readlink(entry.path)
            elif stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256()
                with open(entry.path, "rb") as handle:
                    while chunk := handle.read(1 << 20):
                        digest.update(chunk)
                detail = digest.hexdigest()
            elif stat.S_ISDIR(info.st_mode):
                pending.append(path)
            tree[path] = [kind, stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, detail]
    return tree
