"""A supervisor started as a fresh interpreter (B10): it carries nothing of the process that started it.

The entry is a module written to the test's tmp dir (on sys.path, so :func:`fresh.search_path` passes it on) that
reports what the fresh process holds: its modules, its command line, its open fds.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from sandbox.errors import ContainerStartError
from sandbox.monitor import fresh
from sandbox.monitor.session import Names

NAMES = Names("the test supervisor", "the thing")

ENTRY_MODULE = '''
import json, os, sys


def report(report_fd, params):
    fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
    with open("/proc/self/cmdline", "rb") as handle:
        cmdline = handle.read()
    seen = {"modules": sorted(sys.modules), "cmdline": cmdline.decode(errors="replace"), "fds": fds,
            "report_fd": report_fd, "params": params}
    with open(params["seen"], "w") as handle:
        json.dump(seen, handle)
    os.write(report_fd, json.dumps({"type": "running", "pid": os.getpid(), "monitor": os.getpid()}).encode()
             + b"\\n")


def fail(report_fd, params):
    raise RuntimeError("the entry failed")
'''


@pytest.fixture
def entry_module(tmp_path, monkeypatch):
    name = f"fresh_entry_{os.getpid()}"
    (tmp_path / f"{name}.py").write_text(ENTRY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_the_supervisor_is_a_fresh_interpreter_holding_only_the_report_pipe(entry_module, tmp_path):
    import pytest as already_imported  # noqa: F401 - what a forked child would still hold

    inherited = os.open(str(tmp_path), os.O_RDONLY)  # an inheritable fd of the caller's: it must not get through
    os.set_inheritable(inherited, True)
    try:
        params = {"title": "sbx (the test supervisor)", "id": "x", "seen": str(tmp_path / "seen.json")}
        answer = fresh.spawn(f"{entry_module}:report", params, NAMES, timeout=30)
    finally:
        os.close(inherited)
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert "pytest" in sys.modules and "pytest" not in seen["modules"]  # not a fork of this process
    assert "site" not in seen["modules"]  # -S: nothing but what the entry imports
    assert "sandbox.cli.main" not in seen["modules"]
    assert seen["params"] == params
    assert seen["cmdline"].rstrip("\0") == "sbx (the test supervisor)"  # the parameters are not shown to ps
    assert seen["fds"][:3] == [0, 1, 2]
    assert len(set(seen["fds"]) - {0, 1, 2, seen["report_fd"]}) == 1  # the listing's own fd, and nothing else
    assert answer["pid"] != os.getpid()


def test_an_entry_that_fails_is_a_start_error(entry_module):
    with pytest.raises(ContainerStartError, match="exited before the thing started"):
        fresh.spawn(f"{entry_module}:fail", {}, NAMES, timeout=30)


def test_the_search_path_starts_with_the_package_and_keeps_only_absolute_entries(monkeypatch):
    import sandbox

    monkeypatch.setattr(sys, "path", ["", "relative/dir", "/abs/one", "/abs/one", *sys.path])
    path = fresh.search_path()
    assert path[0] == os.path.dirname(os.path.dirname(os.path.abspath(sandbox.__file__)))
    assert "" not in path and "relative/dir" not in path
    assert path.count("/abs/one") == 1
