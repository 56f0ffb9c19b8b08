"""The per-container monitor, driven in-process: spawn, log, exit code, and what a killed monitor leaves."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from sandbox.errors import ContainerStartError
from sandbox.monitor.monitor import LOG_NAME, spawn
from sandbox.store.containers import ContainerRecord, ContainerState, ContainerStore

FAKE_IMAGE_ID = "sha256:" + "0" * 64


@pytest.fixture
def setup(sbx, monkeypatch):
    """A pulled busybox, os.environ pointed at the test's store, and a maker of (store, record, spec, dir)."""
    from sandbox.config import load_settings
    from sandbox.service.containers import ContainerService, RunOptions

    sbx("pull", "-q", "busybox")
    for name, value in sbx.env.items():
        monkeypatch.setenv(name, value)
    service = ContainerService(load_settings())
    store = ContainerStore(service.containers_root)
    made = []

    def make(args, *, auto_remove=False, tty=False):
        spec, container_dir = service.create("busybox", list(args), RunOptions(tty=tty))
        made.append(container_dir)
        record = ContainerRecord(
            id=spec.id, name=f"mon-{spec.id[:12]}", image="busybox", image_id=FAKE_IMAGE_ID, command=tuple(args),
            created=time.time(), spec={}, auto_remove=auto_remove,
        )
        store.create(record)
        return store, record, spec, container_dir

    make.service = service
    yield make
    for container_dir in made:
        if container_dir.exists():
            service.remove_dir(container_dir)


def start(make, args, **kw):
    store, record, spec, container_dir = make(args, **kw)
    monitor = spawn(store.root, record.id, lambda _record: (spec, container_dir), make.service.remove_dir)
    return store, record.id, container_dir, monitor


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def gone(pid: int) -> bool:
    """No such process, or a zombie nobody reaped yet (the test's init may not reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True
    return stat.rpartition(b")")[2].split()[0] in (b"Z", b"X")


def test_exit_code_and_log(setup):
    store, container_id, container_dir, monitor = start(setup, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert monitor > 0 and monitor != os.getpid()
    record = wait_for(lambda: (r := store.get(container_id)).state is ContainerState.EXITED and r)
    assert record.exit_code == 3 and record.error is None
    assert record.monitor_pid == monitor and record.pid and record.boot_id  # pid_start: None if it was that quick
    assert record.started_at <= record.finished_at
    entries = [json.loads(line) for line in (container_dir / LOG_NAME).read_text().splitlines()]
    assert [(e["log"], e["stream"]) for e in entries] == [("out\n", "stdout"), ("err\n", "stderr")]
    assert all(e["time"].endswith("Z") for e in entries)
    wait_for(lambda: gone(monitor))


def test_tty_output_is_logged_as_stdout(setup):
    store, container_id, container_dir, _ = start(setup, ["sh", "-c", "echo out; echo err >&2; exit 2"], tty=True)
    record = wait_for(lambda: (r := store.get(container_id)).state is ContainerState.EXITED and r)
    assert record.exit_code == 2
    entries = [json.loads(line) for line in (container_dir / LOG_NAME).read_text().splitlines()]
    assert {e["stream"] for e in entries} == {"stdout"}
    assert "".join(e["log"] for e in entries) == "out\r\nerr\r\n"  # the pty's onlcr


def test_auto_remove_removes_the_directory_and_record(setup):
    store, container_id, container_dir, monitor = start(setup, ["true"], auto_remove=True)
    wait_for(lambda: not container_dir.exists())
    assert container_id not in store.ids()


def test_sigterm_to_the_monitor_reaches_the_container(setup):
    script = "trap 'exit 7' TERM; echo trap-set; while :; do sleep 0.1; done"
    store, container_id, container_dir, monitor = start(setup, ["sh", "-c", script])
    log = container_dir / LOG_NAME
    wait_for(lambda: log.exists() and "trap-set" in log.read_text())  # the trap is set before the signal comes
    os.kill(monitor, signal.SIGTERM)
    record = wait_for(lambda: (r := store.get(container_id)).state is ContainerState.EXITED and r)
    assert record.exit_code == 7


def test_killed_monitor_takes_the_container_down(setup):
    """Observed: SIGKILL of the monitor kills the container too (pid 1, its child, carries PDEATHSIG=SIGKILL), and the
    record, written by nobody, still says running; ContainerStore.observe tells the truth (exited, code 255)."""
    store, container_id, _, monitor = start(setup, ["sleep", "30"])
    record = store.get(container_id)
    assert record.state is ContainerState.RUNNING and record.pid_start is not None
    assert record.monitor_pid == monitor and record.monitor_start is not None
    os.kill(record.pid, 0)
    assert store.observe(record).state is ContainerState.RUNNING
    # pid 1's parent is the monitor itself (it clones pid 1): no process of sbx's stands between them
    assert int(Path(f"/proc/{record.pid}/stat").read_text().rpartition(")")[2].split()[1]) == monitor
    os.kill(monitor, signal.SIGKILL)
    wait_for(lambda: gone(record.pid), timeout=10)
    stored = store.get(container_id)
    assert stored.state is ContainerState.RUNNING  # nobody was left to write the exit
    observed = wait_for(lambda: (r := store.observe(stored)).state is ContainerState.EXITED and r, timeout=10)
    assert observed.exit_code == 255


def test_missing_command_raises_127(setup):
    store, record, spec, container_dir = setup(["no-such-command"])
    with pytest.raises(ContainerStartError) as caught:
        spawn(store.root, record.id, lambda _record: (spec, container_dir), setup.service.remove_dir)
    assert caught.value.exit_code == 127
    assert "executable file not found" in caught.value.message
    stored = wait_for(lambda: (r := store.get(record.id)).state is ContainerState.EXITED and r)
    assert stored.exit_code == 127 and "no-such-command" in stored.error


def test_unknown_container_is_an_error(setup, tmp_path):
    with pytest.raises(ContainerStartError) as caught:
        spawn(tmp_path, "f" * 64, lambda _record: None, lambda _path: None)
    assert caught.value.exit_code == 125 and "no such container" in caught.value.message
