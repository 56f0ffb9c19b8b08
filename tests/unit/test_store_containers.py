"""Container records: JSON form, names, resolve, and the truth about running containers (TESTPLAN 32, 50, 51, 54)."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest

from sandbox import valueclass
from sandbox.errors import (
    AmbiguousContainer,
    ContainerNotFound,
    InvalidContainerName,
    NameInUse,
    StoreCorrupt,
)
from sandbox.store.containers import (
    ContainerRecord,
    ContainerState,
    ContainerStore,
    boot_id,
    process_start_time,
)

FORK = multiprocessing.get_context("fork")
BOOT = "0b0c0d0e-1111-2222-3333-444455556666"
OTHER_BOOT = "99999999-1111-2222-3333-444455556666"
IMAGE_ID = "sha256:" + "ab" * 32


def make_id(n: int) -> str:
    return f"{n:064x}"


def make_record(n: int = 1, name: str | None = None, **changes) -> ContainerRecord:
    record = ContainerRecord(
        id=make_id(n),
        name=f"box{n}" if name is None else name,
        image="busybox",
        image_id=IMAGE_ID,
        command=("sh", "-c", "echo hi"),
        created=1000.0 + n,
        spec={"process": {"args": ["sh"]}, "mounts": []},
    )
    return valueclass.replace(record, **changes)


def write_stat(proc: Path, pid: int, start: int, comm: str = "sh") -> None:
    """A /proc/PID/stat line as proc(5) draws it: start time is field 22."""
    fields = ["S"] + [str(n) for n in range(4, 22)] + [str(start)] + ["0"] * 30
    (proc / str(pid)).mkdir(parents=True, exist_ok=True)
    (proc / str(pid) / "stat").write_text(f"{pid} ({comm}) {' '.join(fields)}\n")


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    proc = tmp_path / "proc"
    (proc / "sys" / "kernel" / "random").mkdir(parents=True)
    (proc / "sys" / "kernel" / "random" / "boot_id").write_text(BOOT + "\n")
    return proc


@pytest.fixture
def store(tmp_path: Path, proc: Path) -> ContainerStore:
    return ContainerStore(tmp_path / "data" / "containers", proc=proc, lock_timeout=10)


def running(n: int = 1, *, pid: int = 4242, start: int = 777, boot: str = BOOT, **changes) -> ContainerRecord:
    return make_record(
        n, state=ContainerState.RUNNING, pid=pid, pid_start=start, boot_id=boot, started_at=2000.0, **changes
    )


# --- the lifecycle enum ------------------------------------------------------------------------------------------


def test_state_predicates():
    assert ContainerState.CREATED.can_start and ContainerState.EXITED.can_start
    assert not ContainerState.RUNNING.can_start
    assert ContainerState.RUNNING.can_stop
    assert not ContainerState.CREATED.can_stop and not ContainerState.EXITED.can_stop
    assert ContainerState("running") is ContainerState.RUNNING
    assert ContainerState.RUNNING == "running"


# --- records as JSON ---------------------------------------------------------------------------------------------


def test_record_round_trips():
    record = running(7, auto_remove=True, monitor_pid=99, monitor_start=5, exit_code=3, finished_at=3000.5, error="x")
    data = json.loads(json.dumps(record.to_json()))
    assert ContainerRecord.from_json(data, "f") == record
    assert ContainerRecord.from_bytes(record.to_bytes(), "f") == record
    plain = make_record(2)
    assert ContainerRecord.from_json(plain.to_json(), "f") == plain
    assert plain.state is ContainerState.CREATED and plain.pid is None


def test_record_coerces_command_and_state():
    record = make_record(1, command=["a", "b"], state="exited")
    assert record.command == ("a", "b")
    assert record.state is ContainerState.EXITED


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("id", 5),
        ("id", "ABC"),
        ("id", "a" * 63),
        ("name", None),
        ("name", "../x"),
        ("image", ["busybox"]),
        ("image_id", "sha256:short"),
        ("command", "sh -c x"),
        ("command", ["sh", 1]),
        ("created", "yesterday"),
        ("created", True),
        ("created", 10**400),
        ("spec", []),
        ("auto_remove", 0),
        ("state", "paused"),
        ("state", 1),
        ("pid", "12"),
        ("pid", 0),
        ("pid", True),
        ("pid_start", -1),
        ("pid_start", 1.5),
        ("boot_id", 12),
        ("monitor_pid", -3),
        ("exit_code", "0"),
        ("exit_code", False),
        ("started_at", "now"),
        ("finished_at", []),
        ("error", 1),
        ("schemaVersion", 2),
        ("schemaVersion", True),
    ],
)
def test_from_json_refuses_wrong_types(key, value):
    data = running(1).to_json()
    data[key] = value
    with pytest.raises(StoreCorrupt) as info:
        ContainerRecord.from_json(data, "/x/containers/abc/config.json")
    assert "/x/containers/abc/config.json" in str(info.value)
    assert info.value.path == "/x/containers/abc/config.json"
    assert key in str(info.value)


@pytest.mark.parametrize("key", ["id", "name", "spec", "state", "pid", "error", "schemaVersion"])
def test_from_json_refuses_missing_fields(key):
    data = running(1).to_json()
    del data[key]
    with pytest.raises(StoreCorrupt, match=key):
        ContainerRecord.from_json(data, "src")


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null", b"\xff\xfe", b'"text"'])
def test_from_bytes_refuses_garbage(raw):
    with pytest.raises(StoreCorrupt, match="damaged container record here"):
        ContainerRecord.from_bytes(raw, "here")


# --- create, get, update, remove ---------------------------------------------------------------------------------


def test_create_get_and_modes(store):
    old_umask = os.umask(0o022)
    try:
        record = store.create(make_record(1))
    finally:
        os.umask(old_umask)
    assert store.get(record.id) == record
    path = store.dir(record.id) / "config.json"
    assert store.dir(record.id) == store.root / record.id
    assert stat.S_IMODE(os.stat(store.root).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(store.dir(record.id)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_bytes())["name"] == "box1"
    assert [p.name for p in store.dir(record.id).iterdir()] == ["config.json"]  # no temp file left behind


def test_create_tightens_an_open_root(store):
    store.root.mkdir(parents=True, mode=0o755)
    os.chmod(store.root, 0o755)
    store.create(make_record(1))
    assert stat.S_IMODE(os.stat(store.root).st_mode) == 0o700


def test_create_refuses_a_used_name_and_a_used_id(store):
    first = store.create(make_record(1, name="web"))
    with pytest.raises(NameInUse) as info:
        store.create(make_record(2, name="web"))
    assert str(info.value) == f'conflict: the container name "web" is already in use by container "{first.id[:12]}"'
    assert info.value.hint and "rename" in info.value.hint
    assert info.value.container_id == first.id
    assert not (store.root / make_id(2)).exists()
    with pytest.raises(Exception, match="already exists"):
        store.create(make_record(1, name="other"))
    assert store.get(first.id).name == "web"


def test_name_is_free_again_after_remove(store):
    store.create(make_record(1, name="web"))
    store.remove(make_id(1))
    store.create(make_record(2, name="web"))
    assert store.resolve("web").id == make_id(2)


@pytest.mark.parametrize("name", ["../x", ".", "..", "a/b", "a" * 300, "", "-x", "_x", "a b", "é", "x\n", "a\x00"])
def test_invalid_names_are_refused_before_anything_is_written(store, name):
    with pytest.raises(InvalidContainerName):
        store.create(make_record(1, name=name))
    assert not store.root.exists()
    store.root.mkdir(parents=True)
    with pytest.raises(InvalidContainerName):
        store.create(make_record(1, name=name))
    assert list(store.root.iterdir()) == []


def test_name_limits():
    ContainerRecord.from_json(make_record(1, name="a" * 253).to_json(), "f")
    with pytest.raises(StoreCorrupt):
        ContainerRecord.from_json(make_record(1, name="a" * 254).to_json(), "f")


def test_valid_odd_names_are_accepted(store):
    for n, name in enumerate(["a", "A.b_c-d", "9", "x" * 253], 1):
        assert store.create(make_record(n, name=name)).name == name


def _create_same_name(root: str, n: int) -> None:
    store = ContainerStore(Path(root), lock_timeout=30)
    try:
        store.create(make_record(n, name="same"))
    except NameInUse:
        os._exit(3)
    except BaseException:
        os._exit(1)
    os._exit(0)


def test_twenty_parallel_creates_of_one_name_one_wins(store):
    processes = [FORK.Process(target=_create_same_name, args=(str(store.root), n)) for n in range(1, 21)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    codes = sorted(process.exitcode for process in processes)
    assert codes == [0] + [3] * 19
    records = store.list()
    assert len(records) == 1 and records[0].name == "same"


def test_update_changes_and_persists(store):
    store.create(make_record(1))
    updated = store.update(make_id(1), state=ContainerState.RUNNING, pid=10, pid_start=20, boot_id=BOOT)
    assert updated.state is ContainerState.RUNNING and updated.pid == 10
    assert store.get(make_id(1)) == updated
    again = store.update(make_id(1), state="exited", exit_code=0)
    assert again.state is ContainerState.EXITED and again.pid == 10
    assert stat.S_IMODE(os.stat(store.dir(make_id(1)) / "config.json").st_mode) == 0o600


def test_update_errors(store):
    with pytest.raises(ContainerNotFound):
        store.update(make_id(1), exit_code=1)
    store.create(make_record(1))
    store.create(make_record(2, name="taken"))
    with pytest.raises(TypeError):
        store.update(make_id(1), colour="red")
    with pytest.raises(ValueError):
        store.update(make_id(1), id=make_id(3))
    with pytest.raises(NameInUse):
        store.update(make_id(1), name="taken")
    with pytest.raises(InvalidContainerName):
        store.update(make_id(1), name="a/b")
    with pytest.raises(ContainerNotFound):
        store.update(make_id(9), exit_code=1)
    assert store.update(make_id(1), name="renamed").name == "renamed"
    store.remove(make_id(1))
    with pytest.raises(ContainerNotFound):
        store.update(make_id(1), exit_code=1)


def test_remove_only_removes_the_record(store):
    record = store.create(make_record(1))
    (store.dir(record.id) / "log.json").write_text("{}")
    store.remove(record.id)
    assert sorted(p.name for p in store.dir(record.id).iterdir()) == ["log.json"]
    assert store.list() == []
    with pytest.raises(ContainerNotFound):
        store.get(record.id)
    with pytest.raises(ContainerNotFound):
        store.remove(record.id)
    with pytest.raises(ContainerNotFound):
        store.remove("../x")


def test_get_of_bad_ids(store):
    store.create(make_record(0xABC, name="box1"))
    for text in ["../x", "", "box1", make_id(0xABC)[:12], make_id(0xABC).upper(), make_id(0xABC) + "/"]:
        with pytest.raises(ContainerNotFound):
            store.get(text)


def test_damaged_record_is_named_and_removable(store):
    store.create(make_record(1, name="good"))
    bad = store.create(make_record(2, name="bad"))
    path = store.dir(bad.id) / "config.json"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(StoreCorrupt) as info:
        store.list()
    assert str(path) in str(info.value) and info.value.container_id == bad.id
    with pytest.raises(StoreCorrupt):
        store.resolve(bad.id)
    assert store.resolve("good").id == make_id(1)  # other records still work
    store.create(make_record(3, name="third"))  # a damaged record does not block creates
    store.remove(bad.id)
    assert [r.name for r in store.list()] == ["third", "good"]


def test_record_whose_content_names_another_id_is_damaged(store):
    store.create(make_record(1))
    other = store.root / make_id(2)
    other.mkdir()
    (other / "config.json").write_bytes((store.dir(make_id(1)) / "config.json").read_bytes())
    with pytest.raises(StoreCorrupt, match=make_id(1)):
        store.get(make_id(2))


def test_list_is_newest_first_and_skips_non_records(store):
    for n in (3, 1, 2):
        store.create(make_record(n))
    (store.root / make_id(9)).mkdir()  # a create that died before writing
    (store.root / "junk").mkdir()
    (store.root / "README").write_text("x")
    assert [r.id for r in store.list()] == [make_id(3), make_id(2), make_id(1)]
    assert ContainerStore(store.root.parent / "nothing-here").list() == []


# --- resolve -----------------------------------------------------------------------------------------------------


def test_resolve(store):
    a = store.create(make_record(0xABC1, name="web"))
    b = store.create(make_record(0xABC2, name="db"))
    assert store.resolve("web") == a
    assert store.resolve("db") == b
    assert store.resolve(a.id) == a
    assert store.resolve("0" * 60 + "abc1") == a
    with pytest.raises(AmbiguousContainer) as info:
        store.resolve("0" * 60 + "abc")
    assert set(info.value.matches) == {a.id, b.id}
    with pytest.raises(ContainerNotFound, match="^no such container: nope$"):
        store.resolve("nope")
    with pytest.raises(ContainerNotFound):
        store.resolve("")
    with pytest.raises(ContainerNotFound):
        store.resolve("../x")


def test_resolve_prefers_id_then_name_then_prefix(store):
    first = store.create(make_record(1, name="0" * 10))  # a name that is also a prefix of both ids
    second = store.create(make_record(2, name=make_id(1)))  # a name equal to another container's full id
    assert store.resolve("0" * 10) == first
    assert store.resolve(make_id(1)) == first
    assert store.resolve(second.id) == second


def test_resolve_in_missing_root(tmp_path):
    with pytest.raises(ContainerNotFound):
        ContainerStore(tmp_path / "none").resolve("web")


# --- /proc -------------------------------------------------------------------------------------------------------


def test_process_start_time_of_this_process():
    start = process_start_time(os.getpid())
    assert isinstance(start, int) and start >= 0
    assert process_start_time(os.getpid()) == start
    assert isinstance(boot_id(), str) and len(boot_id()) >= 32


def test_process_start_time_parses_after_the_last_paren(proc):
    write_stat(proc, 10, 123456, comm="a) b")
    assert process_start_time(10, proc) == 123456
    write_stat(proc, 11, 42, comm="x) 1 2 3 (y")
    assert process_start_time(11, proc) == 42
    write_stat(proc, 12, 99, comm="plain name")
    assert process_start_time(12, proc) == 99


def test_process_start_time_of_missing_or_odd(proc):
    assert process_start_time(31337, proc) is None
    assert process_start_time(0, proc) is None
    assert process_start_time(-1, proc) is None
    (proc / "20").mkdir()
    (proc / "20" / "stat").write_text("20 (short) S 1 2\n")
    assert process_start_time(20, proc) is None
    (proc / "21").mkdir()
    (proc / "21" / "stat").write_text("garbage without parens")
    assert process_start_time(21, proc) is None


def test_boot_id_reads_the_fake(proc):
    assert boot_id(proc) == BOOT


# --- observe: the truth (TESTPLAN 50, 51) ------------------------------------------------------------------------


def test_observe_matching_process_is_running(store, proc):
    write_stat(proc, 4242, 777)
    record = running()
    assert store.alive(record)
    assert store.observe(record) == record


def test_observe_dead_pid_is_exited(store):
    record = running(exit_code=None)
    assert not store.alive(record)
    seen = store.observe(record)
    assert seen.state is ContainerState.EXITED and seen.exit_code == 255 and seen.finished_at is None
    assert seen.pid == record.pid


def test_observe_keeps_a_known_exit_code_and_finish_time(store):
    seen = store.observe(running(exit_code=7, finished_at=5000.0))
    assert seen.state is ContainerState.EXITED and seen.exit_code == 7 and seen.finished_at == 5000.0


def test_observe_recycled_pid_is_exited(store, proc):
    write_stat(proc, 4242, 999, comm="stranger")
    record = running(start=777)
    assert not store.alive(record)
    assert store.observe(record).state is ContainerState.EXITED


def test_observe_after_reboot_is_exited(store, proc):
    write_stat(proc, 4242, 777)  # even the same pid and start time
    record = running(boot=OTHER_BOOT)
    assert not store.alive(record)
    assert store.observe(record).state is ContainerState.EXITED


def test_observe_without_identity_is_exited(store, proc):
    write_stat(proc, 4242, 777)
    assert store.observe(running(start=None)).state is ContainerState.EXITED
    assert store.observe(running(boot=None)).state is ContainerState.EXITED
    assert store.observe(running(pid=None)).state is ContainerState.EXITED


def test_observe_leaves_other_states_alone(store):
    for state in (ContainerState.CREATED, ContainerState.EXITED):
        record = make_record(1, state=state)
        assert store.observe(record) is record


def test_observe_does_not_write(store, proc):
    store.create(running(1))
    path = store.dir(make_id(1)) / "config.json"
    before = path.read_bytes()
    [seen] = store.list()
    assert seen.state is ContainerState.EXITED
    assert path.read_bytes() == before
    assert store.get(make_id(1)).state is ContainerState.RUNNING


def test_list_observes_each_record(store, proc):
    write_stat(proc, 100, 1)
    store.create(running(1, pid=100, start=1))
    store.create(running(2, pid=200, start=2))
    states = {r.id: r.state for r in store.list()}
    assert states == {make_id(1): ContainerState.RUNNING, make_id(2): ContainerState.EXITED}


def test_observe_with_the_real_proc(tmp_path):
    real = ContainerStore(tmp_path / "c")
    me = running(pid=os.getpid(), start=process_start_time(os.getpid()), boot=boot_id())
    assert real.alive(me)
    assert real.observe(me).state is ContainerState.RUNNING
    assert not real.alive(valueclass.replace(me, pid_start=me.pid_start + 1))


def test_previous_boot_auto_remove(store, proc):
    store.create(running(1, boot=OTHER_BOOT, auto_remove=True))  # --rm, before the reboot: to remove
    store.create(running(2, boot=OTHER_BOOT))  # no --rm: kept (shows Exited)
    store.create(running(3, boot=BOOT, auto_remove=True))  # --rm, this boot: its monitor removes it
    store.create(make_record(4, auto_remove=True))  # --rm, never started (maybe starting now): left alone
    assert [r.id for r in store.previous_boot_auto_remove()] == [make_id(1)]
    assert [r.id for r in store.previous_boot_auto_remove(store.list())] == [make_id(1)]  # from records at hand
    assert store.get(make_id(2)).state is ContainerState.RUNNING
    assert {r.id: r.state for r in store.list()}[make_id(2)] is ContainerState.EXITED


def test_a_rm_record_whose_start_a_crash_lost_is_removed_after_the_reboot(store, proc):
    """A --rm record's updates are not durable (see the store's Durability): after a power cut the record may be
    the created one. Its creation's boot id is what lets the next boot's cleanup find it."""
    store.create(make_record(1, auto_remove=True))  # created in this boot; its running state never reached the disk
    store.create(make_record(2))  # no --rm: a created container stays
    assert store.previous_boot_auto_remove() == []  # this boot: maybe being started right now
    (proc / "sys" / "kernel" / "random" / "boot_id").write_text(OTHER_BOOT + "\n")  # the reboot
    assert [r.id for r in store.previous_boot_auto_remove()] == [make_id(1)]


def _record_writes(monkeypatch) -> list[str]:
    """The store's fsyncs and renames in order: 'file' (a temp file's fsync), 'rename', 'dir' (a directory's)."""
    import sandbox.store.atomic as atomic

    calls: list[str] = []
    real_fsync, real_rename = os.fsync, os.rename
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (calls.append("file"), real_fsync(fd))[1])
    monkeypatch.setattr(atomic.os, "rename", lambda a, b: (calls.append("rename"), real_rename(a, b))[1])
    monkeypatch.setattr(atomic, "fsync_dir", lambda d: calls.append("dir"))
    return calls


def test_rm_records_are_created_durably_and_updated_without_fsync(store, monkeypatch):
    """A --rm record's creation is durable (the reboot's cleanup finds it by it); its updates go to state.json with
    no fsync (BENCHMARKS B1); any other record's updates stay durable."""
    calls = _record_writes(monkeypatch)
    store.create(make_record(1, auto_remove=True))
    assert calls == ["file", "rename", "dir"]
    created = (store.dir(make_id(1)) / "config.json").read_bytes()
    calls.clear()
    store.update(make_id(1), state=ContainerState.EXITED, exit_code=0)
    assert calls == ["rename"]
    assert (store.dir(make_id(1)) / "config.json").read_bytes() == created
    assert store.get(make_id(1)).exit_code == 0 and store.list()[0].exit_code == 0
    store.create(make_record(2))
    calls.clear()
    store.update(make_id(2), state=ContainerState.EXITED, exit_code=0)
    assert calls == ["file", "rename", "dir"]
    assert not (store.dir(make_id(2)) / "state.json").exists()
    store.remove(make_id(1))
    assert sorted(p.name for p in store.dir(make_id(1)).iterdir()) == []


@pytest.mark.parametrize("damage", [b"", b"\0" * 300, b'{"id": "x"'])
def test_a_state_file_a_power_cut_damaged_is_passed_over_only_after_the_reboot(store, proc, damage):
    """After a power cut the unsynced state.json may be empty or garbage: then (an earlier boot's record) the created
    record stands, and the cleanup removes it. In the current boot no power cut explains it: StoreCorrupt."""
    store.create(make_record(1, auto_remove=True))
    store.update(make_id(1), state=ContainerState.RUNNING, pid=4242, pid_start=777, boot_id=BOOT)
    (store.dir(make_id(1)) / "state.json").write_bytes(damage)
    with pytest.raises(StoreCorrupt) as info:
        store.get(make_id(1))
    assert info.value.container_id == make_id(1) and "state.json" in str(info.value)
    (proc / "sys" / "kernel" / "random" / "boot_id").write_text(OTHER_BOOT + "\n")  # the reboot
    assert store.get(make_id(1)).state is ContainerState.CREATED
    assert [r.id for r in store.previous_boot_auto_remove()] == [make_id(1)]


def test_listing_removes_the_rm_containers_of_a_previous_boot(config, monkeypatch, proc):
    """ps (Lifecycle.list) is where a --rm container whose monitor died with the last boot goes."""
    from sandbox.service.lifecycle import Lifecycle

    lifecycle = Lifecycle(config)
    store = ContainerStore(lifecycle.containers.containers_root, proc=proc)
    monkeypatch.setattr(Lifecycle, "store", property(lambda self: store))
    store.create(running(1, boot=OTHER_BOOT, auto_remove=True))
    store.create(running(2, boot=OTHER_BOOT))
    assert [(r.id, r.state) for r in lifecycle.list(all_containers=True)] == [(make_id(2), ContainerState.EXITED)]
    assert not store.dir(make_id(1)).exists()
    assert store.ids() == [make_id(2)]


def test_missing_boot_id_means_nothing_is_alive(tmp_path, proc):
    (proc / "sys" / "kernel" / "random" / "boot_id").unlink()
    write_stat(proc, 4242, 777)
    store = ContainerStore(tmp_path / "c", proc=proc)
    assert not store.alive(running())
    assert store.previous_boot_auto_remove() == []


def test_records_written_at_different_times_sort_by_created(store):
    now = time.time()
    store.create(make_record(1, created=now))
    store.create(make_record(2, created=now - 10))
    assert [r.id for r in store.list()] == [make_id(1), make_id(2)]


def _lifecycle_on(store, config, monkeypatch):
    from sandbox.service.lifecycle import Lifecycle

    monkeypatch.setattr(Lifecycle, "store", property(lambda self: store))
    return Lifecycle(config)


def test_wait_answers_the_code_the_monitor_records_not_the_unknown_one(store, config, monkeypatch, proc):
    """The process has ended (its pid is gone) but its monitor lives and is still recording the exit: the observed
    record already reads exited with 255 (unknown), and `sbx wait` answered that at once. It waits for the code."""
    import sandbox.service.lifecycle as lifecycle_module

    write_stat(proc, 5151, 888)  # the monitor, alive
    store.create(running(monitor_pid=5151, monitor_start=888))  # pid 4242 has no /proc entry: ended
    lifecycle = _lifecycle_on(store, config, monkeypatch)
    # the monitor writes the code while wait polls
    monkeypatch.setattr(lifecycle_module.time, "sleep",
                        lambda _seconds: store.update(make_id(1), state=ContainerState.EXITED, exit_code=3))
    assert lifecycle.wait("box1") == 3


def test_wait_of_a_container_that_died_with_its_monitor_is_255(store, config, monkeypatch, proc):
    write_stat(proc, 5151, 999)  # that pid is a stranger now: the monitor is gone
    store.create(running(monitor_pid=5151, monitor_start=888))
    assert _lifecycle_on(store, config, monkeypatch).wait("box1") == 255
