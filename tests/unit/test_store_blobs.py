"""Blobs: content addressing, verified ingest, crash leftovers, parallel writers, a full disk (TESTPLAN 15, 52-54)."""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import stat
import time

import pytest

from sandbox.errors import DigestMismatch, LockTimeout, NoSpace, SizeMismatch, StoreCorrupt, StoreError
from sandbox.oci.digest import Digest
from sandbox.store.store import Store

FORK = multiprocessing.get_context("fork")
DATA = b"layer bytes " * 1000
DIGEST = Digest.of(DATA)


@pytest.fixture
def store(tmp_path):
    return Store.open(tmp_path / "store", lock_timeout=10)


def leftovers(store: Store) -> list[str]:
    return sorted(os.listdir(store.ingest_dir))


def blob_files(store: Store) -> list[str]:
    return sorted(p.name for p in (store.blobs_dir / "sha256").iterdir())


# --- layout ----------------------------------------------------------------------------------------------------------


def test_open_creates_private_dirs_and_tightens_an_existing_root(tmp_path):
    root = tmp_path / "store"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    store = Store.open(root)
    for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert {p.name for p in root.iterdir()} >= {"blobs", "ingest", "images", "locks"}
    assert store.root == root


def test_open_survives_a_hostile_umask(tmp_path):
    old = os.umask(0o777)
    try:
        Store.open(tmp_path / "store")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "store" / "blobs").stat().st_mode) == 0o700


# --- put / read / has ------------------------------------------------------------------------------------------------


def test_put_read_has_blob(store):
    assert not store.has_blob(DIGEST)
    assert store.put_blob(DATA) == DIGEST
    assert store.has_blob(DIGEST)
    assert store.read_blob(DIGEST) == DATA
    assert store.blob_path(DIGEST) == store.root / "blobs" / "sha256" / DIGEST.hex
    assert stat.S_IMODE(store.blob_path(DIGEST).stat().st_mode) == 0o444
    assert store.put_blob(DATA, DIGEST) == DIGEST  # idempotent
    assert blob_files(store) == [DIGEST.hex]
    assert leftovers(store) == []


def test_put_blob_with_wrong_digest_stores_nothing(store):
    wrong = Digest.of(b"other")
    with pytest.raises(DigestMismatch) as info:
        store.put_blob(DATA, wrong)
    assert str(info.value) == f"digest mismatch: expected {wrong}, got {DIGEST}"
    assert blob_files(store) == []
    assert leftovers(store) == []


def test_put_blob_sha512(store):
    digest = store.put_blob(b"x", Digest.of(b"x", "sha512"))
    assert digest.algorithm == "sha512"
    assert store.read_blob(digest) == b"x"


def test_read_blob_missing_damaged_or_too_big(store):
    with pytest.raises(StoreCorrupt, match="missing"):
        store.read_blob(DIGEST)
    store.put_blob(DATA)
    with pytest.raises(StoreCorrupt, match="more than the 10 allowed"):
        store.read_blob(DIGEST, limit=10)
    path = store.blob_path(DIGEST)
    os.chmod(path, 0o644)
    raw = bytearray(path.read_bytes())
    raw[5] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreCorrupt, match="damaged") as info:
        store.read_blob(DIGEST)
    assert info.value.digest == DIGEST


# --- ingest --------------------------------------------------------------------------------------------------------


def test_ingest_writes_in_chunks_and_commits(store):
    with store.ingest(DIGEST, len(DATA)) as writer:
        assert writer is not None
        for start in range(0, len(DATA), 1000):
            writer.write(DATA[start : start + 1000])
        assert writer.written == len(DATA)
        assert blob_files(store) == []  # nothing visible before commit
        assert len(leftovers(store)) == 1 and leftovers(store)[0].endswith(".partial")
        writer.commit()
    assert store.read_blob(DIGEST) == DATA
    assert leftovers(store) == []
    with store.ingest(DIGEST, len(DATA)) as again:
        assert again is None


def test_ingest_wrong_digest_fails_and_leaves_nothing(store):
    bad = DATA[:-1] + b"X"
    with pytest.raises(DigestMismatch) as info, store.ingest(DIGEST, len(DATA)) as writer:
        writer.write(bad)
        writer.commit()
    assert str(info.value) == f"digest mismatch: expected {DIGEST}, got {Digest.of(bad)}"
    assert blob_files(store) == []
    assert leftovers(store) == []


@pytest.mark.parametrize("length", [len(DATA) - 1, 0])
def test_ingest_short_body_is_a_size_mismatch(store, length):
    with pytest.raises(SizeMismatch) as info, store.ingest(DIGEST, len(DATA)) as writer:
        writer.write(DATA[:length])
        writer.commit()
    assert str(info.value) == f"size mismatch for {DIGEST}: expected {len(DATA)} bytes, got {length}"
    assert blob_files(store) == []
    assert leftovers(store) == []


def test_ingest_refuses_bytes_beyond_the_size_at_once(store):
    with pytest.raises(SizeMismatch, match="size mismatch"), store.ingest(DIGEST, 10) as writer:
        writer.write(b"x" * 10)
        writer.write(b"y")
    assert blob_files(store) == []
    assert leftovers(store) == []


def test_ingest_reset_restarts_the_hash(store):
    with store.ingest(DIGEST, len(DATA)) as writer:
        writer.write(b"garbage from a dropped connection")
        writer.reset()
        assert writer.written == 0
        writer.write(DATA)
        writer.commit()
    assert store.read_blob(DIGEST) == DATA


def test_ingest_without_commit_or_with_an_exception_removes_the_partial(store):
    with store.ingest(DIGEST, len(DATA)) as writer:
        writer.write(DATA)
    assert blob_files(store) == [] and leftovers(store) == []
    with pytest.raises(RuntimeError), store.ingest(DIGEST, len(DATA)) as writer:
        writer.write(DATA[:100])
        raise RuntimeError("connection dropped")
    assert blob_files(store) == [] and leftovers(store) == []
    assert [n for n in os.listdir(store.locks_dir) if n.startswith("blob-")] == []  # the per-blob lock goes too


def test_ingest_lock_timeout(tmp_path):
    first = Store.open(tmp_path / "s", lock_timeout=5)
    second = Store(tmp_path / "s", lock_timeout=0.2)
    with first.ingest(DIGEST, len(DATA)) as writer:
        assert writer is not None
        with pytest.raises(LockTimeout, match="blob-sha256-"), second.ingest(DIGEST, len(DATA)):
            pass


# --- crash leftovers (TESTPLAN 52) ---------------------------------------------------------------------------------


def _ingest_and_wait(root, ready, finish_path):
    store = Store(root, lock_timeout=10)
    with store.ingest(DIGEST, len(DATA)) as writer:
        writer.write(DATA[:500])
        ready.set()
        deadline = time.monotonic() + 20
        while not os.path.exists(finish_path) and time.monotonic() < deadline:
            time.sleep(0.01)
        writer.write(DATA[500:])
        writer.commit()


def test_partial_of_a_killed_ingest_is_collected_at_open(store):
    ready = FORK.Event()
    child = FORK.Process(target=_ingest_and_wait, args=(store.root, ready, store.root / "never"))
    child.start()
    assert ready.wait(10)
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    assert len(leftovers(store)) == 1
    Store.open(store.root)
    assert leftovers(store) == []
    assert blob_files(store) == []
    assert store.put_blob(DATA) == DIGEST  # the pull then succeeds


def test_unlocked_partial_file_is_collected(store):
    (store.ingest_dir / "0123abcd.partial").write_bytes(b"half a layer")
    assert store.collect_garbage_temp() == 1
    assert leftovers(store) == []


def test_partial_of_a_live_ingest_is_kept(store):
    ready = FORK.Event()
    finish = store.root / "finish"
    child = FORK.Process(target=_ingest_and_wait, args=(store.root, ready, finish))
    child.start()
    try:
        assert ready.wait(10)
        Store.open(store.root)
        assert store.collect_garbage_temp() == 0
        assert len(leftovers(store)) == 1
        finish.touch()
        child.join(10)
        assert child.exitcode == 0
    finally:
        child.kill()
        child.join(5)
    assert store.read_blob(DIGEST) == DATA
    assert leftovers(store) == []


# --- parallel pulls of one blob (TESTPLAN 54) --------------------------------------------------------------------


def _parallel_ingest(root, barrier, results):
    store = Store(root, lock_timeout=20)
    barrier.wait(10)
    with store.ingest(DIGEST, len(DATA)) as writer:
        if writer is None:
            results.put("present")
            return
        for start in range(0, len(DATA), 3000):
            writer.write(DATA[start : start + 3000])
            time.sleep(0.005)  # a slow download: the others must wait, not write too
        writer.commit()
        results.put("wrote")


def test_sixteen_parallel_ingests_write_the_blob_once(store):
    barrier, results = FORK.Barrier(16), FORK.Queue()
    children = [FORK.Process(target=_parallel_ingest, args=(store.root, barrier, results)) for _ in range(16)]
    for child in children:
        child.start()
    outcomes = sorted(results.get(timeout=30) for _ in children)
    for child in children:
        child.join(10)
        assert child.exitcode == 0
    assert outcomes == ["present"] * 15 + ["wrote"]
    assert store.read_blob(DIGEST) == DATA
    assert blob_files(store) == [DIGEST.hex]
    assert leftovers(store) == []


# --- a full disk (TESTPLAN 53) -------------------------------------------------------------------------------------


def _fail_under(root, real, code=errno.ENOSPC):
    def failing(fd, *args):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(root)):
            raise OSError(code, os.strerror(code))
        return real(fd, *args)

    return failing


def test_enospc_during_ingest_write(store, monkeypatch):
    monkeypatch.setattr(os, "write", _fail_under(store.root, os.write))
    with pytest.raises(NoSpace, match="ENOSPC") as info, store.ingest(DIGEST, len(DATA)) as writer:
        writer.write(DATA)
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert blob_files(store) == [] and leftovers(store) == []
    assert store.put_blob(DATA) == DIGEST  # after space is freed the same pull works


def test_enospc_during_commit_fsync(store, monkeypatch):
    monkeypatch.setattr(os, "fsync", _fail_under(store.ingest_dir, os.fsync))
    with pytest.raises(NoSpace, match="ENOSPC"):
        store.put_blob(DATA)
    monkeypatch.undo()
    assert blob_files(store) == [] and leftovers(store) == []


def test_other_write_errors_are_store_errors_naming_the_path(store, monkeypatch):
    monkeypatch.setattr(os, "write", _fail_under(store.root, os.write, errno.EIO))
    with pytest.raises(StoreError) as info:
        store.put_blob(DATA)
    assert not isinstance(info.value, NoSpace)
    assert str(store.ingest_dir) in str(info.value)
    monkeypatch.undo()
    assert blob_files(store) == [] and leftovers(store) == []
