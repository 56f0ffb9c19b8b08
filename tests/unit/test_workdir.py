"""The working dir check (TESTPLAN 25, 62): the name first, then where chdir actually led."""

from __future__ import annotations

import os

import pytest

from sandbox.errors import ContainerStartError
from sandbox.kernel import Kernel
from sandbox.runtime import workdir


@pytest.fixture
def restore_cwd():
    before = os.getcwd()
    yield
    os.chdir(before)


@pytest.mark.parametrize("path", ["/proc", "//proc/1", "///proc/1", "/./proc", "/x/../proc/self/fd/3",
                                  "/proc/self/fd/5", "//proc/self/cwd", "proc", "relative/dir"])
def test_names_under_proc_or_relative_are_refused(path):
    with pytest.raises(ContainerStartError, match="refusing working directory") as caught:
        workdir.checked_path(path)
    assert caught.value.exit_code == 125
    with pytest.raises(ContainerStartError) as caught:
        workdir.checked_path(path, exit_code=126)  # exec's code
    assert caught.value.exit_code == 126


@pytest.mark.parametrize(("path", "expected"), [(None, "/"), ("", "/"), ("//srv//app/", "/srv/app"),
                                                ("/procfs", "/procfs"), ("/data/proc", "/data/proc")])
def test_other_names_are_normalised(path, expected):
    assert workdir.checked_path(path) == expected


def test_a_plain_directory_is_entered(tmp_path, restore_cwd):
    workdir.enter(Kernel(), str(tmp_path))
    assert os.getcwd() == str(tmp_path)


def test_a_symlink_that_leads_into_proc_is_refused_after_chdir(tmp_path, restore_cwd):
    (tmp_path / "work").symlink_to("/proc/self")
    with pytest.raises(ContainerStartError, match="under /proc") as caught:
        workdir.enter(Kernel(), str(tmp_path / "work"))
    assert caught.value.exit_code == 125  # run's code (exec passes 126)


def test_a_directory_on_the_proc_device_is_refused_whatever_its_name(tmp_path, monkeypatch, restore_cwd):
    # what a bind of /proc elsewhere would look like: a path not under /proc, on proc's device
    (tmp_path / "fakeproc").mkdir()
    (tmp_path / "work").mkdir()
    monkeypatch.setattr(workdir, "PROC", str(tmp_path / "fakeproc"))
    with pytest.raises(ContainerStartError, match="on the proc filesystem") as caught:
        workdir.enter(Kernel(), str(tmp_path / "work"), exit_code=126)
    assert caught.value.exit_code == 126


def test_a_missing_directory_is_a_clear_error(tmp_path, restore_cwd):
    with pytest.raises(ContainerStartError, match="cannot enter working directory") as caught:
        workdir.enter(Kernel(), str(tmp_path / "missing"), exit_code=126)
    assert caught.value.exit_code == 126
