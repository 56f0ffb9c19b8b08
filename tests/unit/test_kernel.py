"""sandbox.kernel: the recording fake, the real kernel's error shape, and the constants' Linux values."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

from sandbox import kernel
from sandbox.kernel import FakeKernel, Kernel, KernelAPI
from sandbox.kernel import constants as k
from sandbox.kernel.fake import Call

# --- the fake ------------------------------------------------------------------------------------------------


def test_fake_records_calls_with_defaults_filled_in() -> None:
    fake = FakeKernel()
    fake.unshare(k.CLONE_NEWUSER | k.CLONE_NEWNS)
    fake.mount("tmpfs", "/mnt", "tmpfs")
    fake.mount(None, "/", None, k.MS_REC | k.MS_PRIVATE)
    fake.umount2("/old", k.MNT_DETACH)
    fake.pivot_root("/new", "/new/old")
    fake.sethostname("box")
    fake.setdomainname("example")
    fake.setns(7)
    assert fake.prctl(k.PR_SET_NO_NEW_PRIVS, 1) == 0

    assert fake.calls == [
        Call("unshare", (k.CLONE_NEWUSER | k.CLONE_NEWNS,)),
        Call("mount", ("tmpfs", "/mnt", "tmpfs", 0, None)),
        Call("mount", (None, "/", None, k.MS_REC | k.MS_PRIVATE, None)),
        Call("umount2", ("/old", k.MNT_DETACH)),
        Call("pivot_root", ("/new", "/new/old")),
        Call("sethostname", ("box",)),
        Call("setdomainname", ("example",)),
        Call("setns", (7, 0)),
        Call("prctl", (k.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)),
    ]
    assert fake.ops()[:2] == ["unshare", "mount"]


def test_fake_fails_the_nth_call_of_an_op_with_the_real_error_shape() -> None:
    fake = FakeKernel().fail("mount", errno.EPERM, nth=2)
    fake.mount("proc", "/proc", "proc")
    fake.umount2("/x")  # other ops do not count towards mount's N
    with pytest.raises(PermissionError) as raised:
        fake.mount("sysfs", "/sys", "sysfs", k.MS_RDONLY)
    error = raised.value
    assert error.errno == errno.EPERM
    assert error.strerror == "mount: Operation not permitted"
    assert error.filename == "/sys"
    # the failed call is recorded too, and only the Nth fails
    assert fake.calls[-1] == Call("mount", ("sysfs", "/sys", "sysfs", k.MS_RDONLY, None))
    fake.mount("sysfs", "/sys", "sysfs")
    assert fake.ops() == ["mount", "umount2", "mount", "mount"]


def test_fake_failures_map_to_oserror_subclasses_and_carry_both_paths() -> None:
    fake = FakeKernel().fail("pivot_root", errno.ENOENT).fail("unshare", errno.EINVAL)
    with pytest.raises(FileNotFoundError) as raised:
        fake.pivot_root("/new", "/new/old")
    assert (raised.value.filename, raised.value.filename2) == ("/new", "/new/old")
    assert str(raised.value).startswith("[Errno 2] pivot_root: No such file or directory")
    with pytest.raises(OSError) as unshare_error:
        fake.unshare(k.CLONE_NEWUSER)
    assert unshare_error.value.errno == errno.EINVAL
    assert unshare_error.value.filename is None


def test_fake_can_fail_several_calls_and_rejects_unknown_ops() -> None:
    fake = FakeKernel().fail("sethostname", errno.EPERM, nth=1).fail("sethostname", errno.EINVAL, nth=3)
    with pytest.raises(PermissionError):
        fake.sethostname("a")
    fake.sethostname("b")
    with pytest.raises(OSError, match="sethostname: Invalid argument"):
        fake.sethostname("c")
    fake.sethostname("d")
    with pytest.raises(ValueError):
        fake.fail("reboot", errno.EPERM)
    with pytest.raises(ValueError):
        fake.fail("mount", errno.EPERM, nth=0)


def test_fake_prctl_answers_what_the_test_scripts() -> None:
    fake = FakeKernel()
    fake.prctl_results[k.PR_GET_NO_NEW_PRIVS] = 1
    assert fake.prctl(k.PR_GET_NO_NEW_PRIVS) == 1


def test_both_kernels_satisfy_the_protocol() -> None:
    def use(api: KernelAPI) -> KernelAPI:
        return api

    for implementation in (Kernel(), FakeKernel()):
        assert use(implementation) is implementation
        for name in ("unshare", "setns", "mount", "umount2", "pivot_root", "sethostname", "setdomainname", "prctl"):
            assert callable(getattr(implementation, name))


def test_importing_the_package_loads_neither_ctypes_nor_libc() -> None:
    code = "import sys, sandbox.kernel; assert 'ctypes' not in sys.modules, 'ctypes'; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.stdout.strip() == "ok", result.stderr
    with pytest.raises(AttributeError):
        _ = kernel.NoSuchThing  # type: ignore[attr-defined]


# --- the real kernel's error shape (calls that cannot succeed) -----------------------------------------------


def test_real_umount2_of_a_missing_path_raises_oserror_with_op_and_path() -> None:
    with pytest.raises(OSError) as raised:
        Kernel().umount2("/nonexistent-sbx-path")
    error = raised.value
    assert error.errno in (errno.EINVAL, errno.ENOENT, errno.EPERM)
    assert error.strerror.startswith("umount2:")
    assert error.filename == "/nonexistent-sbx-path"


def test_real_mount_of_a_bogus_fstype_raises(tmp_path) -> None:
    with pytest.raises(OSError) as raised:
        Kernel().mount("none", str(tmp_path), "sbx-no-such-fs", k.MS_NOSUID)
    error = raised.value
    assert error.errno in (errno.ENODEV, errno.EPERM)
    assert error.strerror.startswith("mount:")
    assert error.filename == str(tmp_path)


def test_real_setns_on_a_bad_fd_raises_ebadf() -> None:
    with pytest.raises(OSError) as raised:
        Kernel().setns(-1, k.CLONE_NEWUTS)
    assert raised.value.errno == errno.EBADF
    assert raised.value.strerror == "setns: Bad file descriptor"


def test_real_pivot_root_of_missing_paths_raises_with_both_paths() -> None:
    with pytest.raises(OSError) as raised:
        Kernel().pivot_root("/nonexistent-sbx-new", "/nonexistent-sbx-new/old")
    error = raised.value
    assert error.errno in (errno.ENOENT, errno.EPERM, errno.EINVAL)
    assert error.strerror.startswith("pivot_root:")
    assert (error.filename, error.filename2) == ("/nonexistent-sbx-new", "/nonexistent-sbx-new/old")


def test_real_prctl_returns_the_kernels_answer_and_raises_on_a_bad_option() -> None:
    assert Kernel().prctl(k.PR_GET_NO_NEW_PRIVS) in (0, 1)
    with pytest.raises(OSError) as raised:
        Kernel().prctl(-1)
    assert raised.value.errno == errno.EINVAL
    assert raised.value.strerror.startswith("prctl:")


# --- constants -----------------------------------------------------------------------------------------------


def test_constants_have_linux_values() -> None:
    assert k.CLONE_NEWUSER == 0x10000000
    assert k.CLONE_NEWNS == 0x00020000
    assert k.CLONE_NEWPID == 0x20000000
    assert k.CLONE_NEWUTS == 0x04000000
    assert k.CLONE_NEWIPC == 0x08000000
    assert k.CLONE_NEWNET == 0x40000000
    assert k.CLONE_NEWCGROUP == 0x02000000
    assert k.MS_RDONLY == 1
    assert k.MS_NOSUID == 2
    assert k.MS_NODEV == 4
    assert k.MS_NOEXEC == 8
    assert k.MS_REMOUNT == 32
    assert k.MS_BIND == 4096
    assert k.MS_REC == 16384
    assert k.MS_PRIVATE == 262144
    assert k.MS_SLAVE == 524288
    assert k.MS_SHARED == 1048576
    assert k.MS_RELATIME == 2097152
    assert k.MS_STRICTATIME == 16777216
    assert k.MNT_DETACH == 2
    assert k.PR_SET_PDEATHSIG == 1
    assert k.PR_SET_NAME == 15
    assert k.PR_SET_CHILD_SUBREAPER == 36
    assert k.PR_SET_NO_NEW_PRIVS == 38
    assert k.SYS_PIVOT_ROOT["x86_64"] == 155
    assert k.SYS_PIVOT_ROOT["aarch64"] == 41


def test_fake_tracks_the_fds_it_hands_out_until_they_are_closed() -> None:
    fake = FakeKernel()
    first, second, third = (fake.open("/dev/null", 0) for _ in range(3))
    fake.close(first)
    fake.close_range(third, third + 10)
    assert fake.open_fds == {second}
    fake.chdir("/work")
    assert fake.getcwd() == "/work" and fake.device_of("/proc") != fake.device_of(".")


def test_real_tiocsctty_on_a_file_that_is_no_terminal_raises_enotty(tmp_path) -> None:
    with open(tmp_path / "file", "w") as file, pytest.raises(OSError) as raised:
        Kernel().set_controlling_terminal(file.fileno())
    assert raised.value.errno == errno.ENOTTY and "TIOCSCTTY" in raised.value.strerror


def test_real_clone_without_flags_is_a_fork_whose_child_runs_python_and_is_reaped_by_its_parent() -> None:
    read_fd, write_fd = os.pipe()
    pid = Kernel().clone(0)
    if pid == 0:  # the child: never return into pytest
        try:
            os.write(write_fd, json.dumps({"pid": os.getpid(), "parent": os.getppid()}).encode())
        finally:
            os._exit(7)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        seen = json.loads(pipe.read())
    _, status = os.waitpid(pid, 0)  # our child, as after fork
    assert os.waitstatus_to_exitcode(status) == 7
    assert seen == {"pid": pid, "parent": os.getpid()}
