"""What the container monitor does once its container has ended (:meth:`sandbox.monitor.monitor.Monitor._finish`):
the end recorded, or with --rm the container removed, before any client hears of the exit."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.errors import ContainerNotFound
from sandbox.monitor.monitor import Monitor
from sandbox.store.containers import ContainerRecord, ContainerStore

ID = "ab" * 32


@pytest.fixture
def store(tmp_path: Path) -> ContainerStore:
    return ContainerStore(tmp_path / "containers")


def _created(store: ContainerStore, *, auto_remove: bool):
    return store.create(ContainerRecord(id=ID, name="box", image="busybox", image_id="sha256:" + "0" * 64,
                                        command=("true",), created=1000.0, spec={}, auto_remove=auto_remove))


def _monitor(store: ContainerStore, remove_dir) -> Monitor:
    monitor = Monitor(store.root, ID, None, remove_dir, None)
    monitor.ended = []
    monitor._conclude = lambda error, code: monitor.ended.append(code)  # what the clients would hear
    return monitor


def test_a_kept_container_has_its_end_recorded_before_anyone_hears_of_it(store):
    record = _created(store, auto_remove=False)
    seen = []
    monitor = _monitor(store, lambda path: seen.append(path))
    monitor._conclude = lambda error, code: seen.append(("told", store.get(ID).state.value, store.get(ID).exit_code))
    monitor._finish(None, 3, store.dir(ID), record)
    assert seen == [("told", "exited", 3)]


def test_an_rm_container_is_removed_without_its_end_being_written_first(store):
    """--rm: the record goes with the container; writing EXITED into it first cost every `run --rm` a write."""
    record = _created(store, auto_remove=True)
    written = []

    def remove(path: Path) -> None:
        assert path == store.dir(ID)
        for child in path.iterdir():
            child.unlink()
        path.rmdir()

    monitor = _monitor(store, remove)
    monitor.store.update = lambda *args, **changes: written.append(changes)
    monitor._finish(None, 0, store.dir(ID), record)
    assert written == [] and monitor.ended == [0]
    with pytest.raises(ContainerNotFound):
        ContainerStore(store.root).get(ID)


def test_an_rm_container_that_could_not_be_removed_has_its_end_recorded(store):
    record = _created(store, auto_remove=True)

    def remove(path: Path) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monitor = _monitor(store, remove)
    monitor._finish(None, 5, store.dir(ID), record)
    kept = store.get(ID)
    assert (kept.state.value, kept.exit_code, monitor.ended) == ("exited", 5, [5])


def test_pid_1_is_made_while_sbx_connects_and_its_output_is_pumped_once_sbx_is_in(store, monkeypatch):
    """A held start (a foreground run) tells sbx its socket is there and makes pid 1 meanwhile (the connection is
    accepted after, before any output is read, so nothing is missed): the round trip was on every start's way.
    The monitor's ``meanwhile`` runs then too, while pid 1 makes its mounts."""
    _created(store, auto_remove=True)
    steps = []
    monitor = _monitor(store, lambda path: None)
    monitor.build_spec = lambda record: ("spec", store.dir(ID))
    monitor.meanwhile = lambda: steps.append("meanwhile")
    monkeypatch.setattr("sandbox.monitor.network.attach", lambda *args: None)
    monkeypatch.setattr("sandbox.monitor.network.with_settings", lambda spec, network: spec)
    monkeypatch.setattr("sandbox.monitor.network.stop", lambda network: None)
    monitor._listen = lambda: steps.append("listening")
    monitor._first_client = lambda: steps.append("accepted")
    monitor._start = lambda *args: steps.append("started") or ("started", {})
    monitor._supervise = lambda *args: steps.append("supervised") or (None, 0)
    monitor._finish = lambda *args, **kwargs: steps.append("finished")
    monitor.run()
    assert steps == ["listening", "started", "accepted", "meanwhile", "supervised", "finished"]
