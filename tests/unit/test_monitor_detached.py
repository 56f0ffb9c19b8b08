"""The monitor `sbx run` forks before its container exists (sandbox.monitor.detached.prepare): it imports ahead, runs
its entry only after GO and with GO's parameters, and a closed channel ends it having done nothing.

The entry and the warm module are modules written to the test's tmp dir: the warm one notes that it was imported
(and by which pid), the entry notes its parameters and answers RUNNING as a monitor does.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from sandbox.errors import ContainerStartError
from sandbox.monitor import detached
from tests.integration.helpers import wait_for

WARM_MODULE = '''
import os
with open({marker!r}, "w") as handle:
    handle.write(str(os.getpid()))
'''

ENTRY_MODULE = '''
import json, os


def report(report_fd, params):
    with open({seen!r}, "w") as handle:
        json.dump({{"params": params, "pid": os.getpid()}}, handle)
    os.write(report_fd, json.dumps({{"type": "running", "pid": os.getpid(), "monitor": os.getpid()}}).encode()
             + b"\\n")


def fail(report_fd, params):
    with open({seen!r}, "w") as handle:
        json.dump({{"params": params}}, handle)
    raise RuntimeError("the entry failed")
'''


@pytest.fixture
def modules(tmp_path, monkeypatch):
    """(entry module name, warm module name, the warm marker, the entry's note)."""
    suffix = f"{os.getpid()}_{time.monotonic_ns()}"
    marker, seen = tmp_path / "warm", tmp_path / "seen.json"
    (tmp_path / f"prep_warm_{suffix}.py").write_text(WARM_MODULE.format(marker=str(marker)))
    (tmp_path / f"prep_entry_{suffix}.py").write_text(ENTRY_MODULE.format(seen=str(seen)))
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"prep_entry_{suffix}", f"prep_warm_{suffix}", marker, seen


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state == "Z"


def test_the_entry_runs_after_go_with_its_parameters_and_the_warm_modules_before(modules):
    entry, warm, marker, seen = modules
    prepared = detached.prepare(f"{entry}:report", "the test monitor", (warm,))
    try:
        assert wait_for(marker.exists)  # imported ahead, while nothing was asked of it
        time.sleep(0.1)
        assert not seen.exists()  # the entry waits for GO
        pid = prepared.start({"id": "x", "data_root": "/nowhere"}, "x")
    finally:
        prepared.close()
    note = json.loads(seen.read_text())
    assert note["params"] == {"id": "x", "data_root": "/nowhere", "hold": False}
    assert pid == note["pid"] == int(marker.read_text()) != os.getpid()


def test_closing_it_ends_it_without_running_the_entry(modules):
    entry, warm, marker, seen = modules
    prepared = detached.prepare(f"{entry}:report", "the test monitor", (warm,))
    assert wait_for(marker.exists)
    pid = int(marker.read_text())
    prepared.close()
    assert wait_for(lambda: gone(pid))
    assert not seen.exists()
    with pytest.raises(ValueError):
        prepared.start({}, "x")  # closed: there is no monitor to start


def test_an_entry_that_fails_after_go_is_a_start_error(modules):
    entry, warm, _marker, seen = modules
    prepared = detached.prepare(f"{entry}:fail", "the test monitor", (warm,))
    with pytest.raises(ContainerStartError, match="exited before the container started"):
        prepared.start({"id": "y"}, "y", timeout=30)
    assert json.loads(seen.read_text())["params"]["id"] == "y"


def test_go_during_the_warm_imports_stops_them_the_rest_import_on_use(modules, tmp_path, monkeypatch):
    entry, _warm, _marker, seen = modules
    gate, later = tmp_path / "gate", tmp_path / "later"
    (tmp_path / "prep_slow.py").write_text(f"import os, time\nwhile not os.path.exists({str(gate)!r}):\n"
                                           "    time.sleep(0.01)\n")
    (tmp_path / "prep_later.py").write_text(f"open({str(later)!r}, 'w').close()\n")
    prepared = detached.prepare(f"{entry}:report", "the test monitor", ("prep_slow", "prep_later"))
    opener = threading.Timer(0.3, gate.touch)  # the slow import ends only once GO has been sent
    opener.start()
    try:
        prepared.start({"id": "z"}, "z")
    finally:
        opener.join()
    assert json.loads(seen.read_text())["params"]["id"] == "z"
    assert not later.exists()
