"""Root filesystem plans as data, and the executor against the recording fake kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.errors import RootfsError
from sandbox.kernel.constants import MS_BIND, MS_REC
from sandbox.kernel.fake import FakeKernel
from sandbox.runtime.rootfs import RootfsPlan, create_dirs, mount_rootfs, plan_rootfs

CHAINS = ["a" * 64, "b" * 64, "c" * 64]  # bottom-most first


def test_overlay_plan_lists_layers_top_most_first(tmp_path):
    plan = plan_rootfs("overlay", tmp_path / "ctr", tmp_path / "layers", CHAINS)
    assert plan.lower == (f"{'c' * 64}/diff", f"{'b' * 64}/diff", f"{'a' * 64}/diff")
    assert plan.upper == str(tmp_path / "ctr" / "upper") and plan.work == str(tmp_path / "ctr" / "work")
    assert plan.overlay_options() == (
        f"lowerdir={':'.join(plan.lower)},upperdir={plan.upper},workdir={plan.work},userxattr"
    )


def test_fuse_plan_has_no_userxattr_and_copy_plan_has_a_private_tree(tmp_path):
    fuse = plan_rootfs("fuse-overlayfs", tmp_path / "ctr", tmp_path / "layers", CHAINS)
    assert "userxattr" not in fuse.overlay_options()
    copy = plan_rootfs("copy", tmp_path / "ctr", tmp_path / "layers", CHAINS)
    assert copy.copy == str(tmp_path / "ctr" / "rootfs") and copy.upper is None
    create_dirs(copy)
    assert Path(copy.copy).is_dir()


def test_unknown_driver_and_too_many_layers_are_clean_errors(tmp_path):
    with pytest.raises(RootfsError, match="unknown storage driver"):
        plan_rootfs("aufs", tmp_path, tmp_path, CHAINS)
    plan = plan_rootfs("overlay", tmp_path / "ctr", tmp_path / "layers", [f"{i:064x}" for i in range(80)])
    with pytest.raises(RootfsError, match="too many layers") as caught:
        plan.overlay_options()
    assert "copy" in caught.value.hint


def test_overlay_mount_runs_in_the_layer_store(tmp_path):
    kernel = FakeKernel()
    (tmp_path / "layers").mkdir()
    plan = plan_rootfs("overlay", tmp_path / "ctr", tmp_path / "layers", CHAINS)
    mount_rootfs(kernel, plan, "/target")
    [call] = kernel.calls
    assert call.op == "mount"
    assert call.args[:3] == ("overlay", "/target", "overlay")
    assert call.args[4] == plan.overlay_options()


def test_copy_mount_is_a_recursive_bind(tmp_path):
    kernel = FakeKernel()
    plan = RootfsPlan("copy", str(tmp_path), (), copy=str(tmp_path / "rootfs"))
    mount_rootfs(kernel, plan, "/target")
    assert kernel.calls[0].args[:4] == (str(tmp_path / "rootfs"), "/target", None, MS_BIND | MS_REC)


def test_a_failed_mount_keeps_the_errno(tmp_path):
    import errno

    kernel = FakeKernel().fail("mount", errno.EPERM)
    (tmp_path / "layers").mkdir()
    plan = plan_rootfs("overlay", tmp_path / "ctr", tmp_path / "layers", CHAINS)
    with pytest.raises(PermissionError):
        mount_rootfs(kernel, plan, "/target")
