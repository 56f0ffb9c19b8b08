"""Image records, tags, resolve, removal and garbage collection, damage and recovery (TESTPLAN 52-55)."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import valueclass
from sandbox.errors import AmbiguousImage, ImageNotFound, InvalidReference, NoSpace, StoreCorrupt
from sandbox.oci import mediatypes as mt
from sandbox.oci.digest import Digest
from sandbox.oci.reference import Reference
from sandbox.store.images import ImageRecord, LayerRecord
from sandbox.store.store import Store

FORK = multiprocessing.get_context("fork")
BUSYBOX = "docker.io/library/busybox:latest"


@pytest.fixture
def store(tmp_path):
    return Store.open(tmp_path / "store", lock_timeout=10)


def build_image(
    store: Store, seed: str, layers: list[bytes], tags: tuple[str, ...] = (), *, added: float | None = None
) -> ImageRecord:
    """Store blobs for a small image and return its (not yet added) record."""
    layer_records = []
    for data in layers:
        digest = store.put_blob(data)
        layer_records.append(LayerRecord(digest, mt.OCI_LAYER_GZIP, len(data), Digest.of(b"diff:" + data)))
    config = json.dumps({"seed": seed, "rootfs": {"diff_ids": [str(lr.diff_id) for lr in layer_records]}}).encode()
    config_digest = store.put_blob(config)
    manifest = json.dumps(
        {"config": {"digest": str(config_digest)}, "layers": [{"digest": str(lr.digest)} for lr in layer_records]}
    ).encode()
    manifest_digest = store.put_blob(manifest)
    return ImageRecord(
        id=config_digest,
        manifest_digest=manifest_digest,
        manifest_media_type=mt.OCI_MANIFEST,
        config_media_type=mt.OCI_CONFIG,
        layers=tuple(layer_records),
        repo_tags=tags,
        repo_digests=tuple(f"{Reference.parse(t).name}@{manifest_digest}" for t in tags),
        created="2024-01-02T03:04:05Z",
        added=time.time() if added is None else added,
        platform="linux/amd64",
        size=sum(len(d) for d in layers) + len(config),
    )


def add(store: Store, seed: str, layers: list[bytes], *tags: str, added: float | None = None) -> ImageRecord:
    return store.add_image(build_image(store, seed, layers, tuple(tags), added=added))


def blob_set(store: Store) -> set[str]:
    return {p.name for p in (store.blobs_dir / "sha256").iterdir()}


def record_file(store: Store, image_id: Digest) -> Path:
    return store.images_dir / "sha256" / f"{image_id.hex}.json"


# --- records as JSON ---------------------------------------------------------------------------------------------


def test_record_round_trips(store):
    record = build_image(store, "a", [b"l1", b"l2"], (BUSYBOX,))
    record = valueclass.replace(record, index_digest=Digest.of(b"index"))
    assert ImageRecord.from_json(record.to_json()) == record
    assert ImageRecord.from_bytes(record.to_bytes()) == record
    assert set(record.blob_digests()) == {record.id, record.manifest_digest, Digest.of(b"index")} | {
        layer.digest for layer in record.layers
    }


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"layers": None}, "'layers' must be a list"),
        ({"size": "12"}, "'size'"),
        ({"size": True}, "'size'"),
        ({"id": "sha256:../../x"}, "'id' is not a valid digest"),
        ({"repo_tags": [1]}, "'repo_tags'"),
        ({"schemaVersion": 99}, "schemaVersion"),
        ({"added": float("nan")}, "'added'"),
    ],
)
def test_record_from_json_is_strict(store, change, reason):
    data = build_image(store, "a", [b"l1"], (BUSYBOX,)).to_json() | change
    with pytest.raises(StoreCorrupt, match=reason) as info:
        ImageRecord.from_json(data, source="images/x.json")
    assert "images/x.json" in str(info.value)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
SAMPLE = ImageRecord(
    id=Digest.of(b"config"),
    manifest_digest=Digest.of(b"manifest"),
    manifest_media_type=mt.OCI_MANIFEST,
    config_media_type=mt.OCI_CONFIG,
    layers=(LayerRecord(Digest.of(b"layer"), mt.OCI_LAYER_GZIP, 5, Digest.of(b"diff")),),
    repo_tags=(BUSYBOX,),
    repo_digests=(),
    created=None,
    added=1.0,
    platform="linux/amd64",
    size=11,
)


def _parse_or_corrupt(data: object) -> None:
    try:
        record = ImageRecord.from_json(data, source="f")
    except StoreCorrupt as exc:
        assert "damaged image record f" in str(exc)
        return
    assert isinstance(record, ImageRecord)
    assert ImageRecord.from_json(record.to_json()) == record


@settings(max_examples=150, deadline=None)
@given(JSON_VALUES)
def test_record_from_arbitrary_json_is_a_record_or_store_corrupt(data):
    _parse_or_corrupt(data)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(SAMPLE.to_json())), JSON_VALUES, st.booleans())
def test_record_with_one_field_damaged_is_a_record_or_store_corrupt(key, value, in_layer):
    data = SAMPLE.to_json()
    if in_layer:
        data["layers"] = [data["layers"][0] | {key: value}]
    else:
        data[key] = value
    _parse_or_corrupt(data)


def test_truncated_record_bytes_name_the_file(store):
    raw = build_image(store, "a", [b"l1"], (BUSYBOX,)).to_bytes()
    for cut in (0, 1, len(raw) // 2, len(raw) - 3):
        with pytest.raises(StoreCorrupt, match="images/sha256/abc.json"):
            ImageRecord.from_bytes(raw[:cut], source="images/sha256/abc.json")
    with pytest.raises(StoreCorrupt):
        ImageRecord.from_bytes(b"\xff\xfe", source="f")


# --- add, list, tags ---------------------------------------------------------------------------------------------


def test_add_and_list_newest_first(store):
    old = add(store, "old", [b"a"], "docker.io/library/alpine:3", added=100.0)
    new = add(store, "new", [b"b"], BUSYBOX, added=200.0)
    assert [r.id for r in store.images()] == [new.id, old.id]
    assert store.get_image(old.id) == old
    assert stat_mode(record_file(store, old.id)) == 0o600
    with pytest.raises(ImageNotFound, match="no such image"):
        store.get_image(Digest.of(b"nothing"))


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_add_normalises_names_and_merges_same_id(store):
    record = build_image(store, "a", [b"l"], ("busybox",), added=50.0)
    stored = store.add_image(record)
    assert stored.repo_tags == (BUSYBOX,)
    assert stored.repo_digests == (f"docker.io/library/busybox@{record.manifest_digest}",)
    again = store.add_image(valueclass.replace(record, repo_tags=("busybox:1.36",), added=99.0))
    assert again.repo_tags == (BUSYBOX, "docker.io/library/busybox:1.36")
    assert again.added == 50.0
    assert [r.id for r in store.images()] == [record.id]
    with pytest.raises(InvalidReference):
        store.add_image(valueclass.replace(record, repo_tags=("Bad Name",)))


def test_moving_a_tag_leaves_the_old_image_with_its_other_tags_then_dangling(store):
    first = add(store, "v1", [b"base", b"v1"], BUSYBOX, "docker.io/library/busybox:1")
    second = add(store, "v2", [b"base", b"v2"], BUSYBOX)
    assert store.get_image(first.id).repo_tags == ("docker.io/library/busybox:1",)
    assert store.get_image(second.id).repo_tags == (BUSYBOX,)
    store.tag(second.id, "busybox:1")
    old = store.get_image(first.id)
    assert old.repo_tags == () and old.dangling
    assert old.repo_digests  # as Docker: the old image keeps its digest, shown as <none>
    assert store.get_image(second.id).repo_tags == (BUSYBOX, "docker.io/library/busybox:1")
    assert store.resolve(BUSYBOX).id == second.id


def test_untag(store):
    image = add(store, "a", [b"x"], BUSYBOX, "localhost:5000/me/app:v1")
    updated = store.untag("localhost:5000/me/app:v1")
    assert updated.repo_tags == (BUSYBOX,)
    assert store.untag(BUSYBOX).repo_tags == ()
    assert store.get_image(image.id).dangling
    with pytest.raises(ImageNotFound):
        store.untag(BUSYBOX)
    digest_ref = image.repo_digests[0]
    assert store.untag(digest_ref).repo_digests == image.repo_digests[1:]


def _parallel_add(root, record_json, barrier, results):
    store = Store(root, lock_timeout=20)
    barrier.wait(10)
    stored = store.add_image(ImageRecord.from_json(record_json))
    results.put(str(stored.id))


def test_sixteen_parallel_adds_of_one_record_make_one_record(store):
    record = build_image(store, "a", [b"one", b"two"], (BUSYBOX,))
    barrier, results = FORK.Barrier(16), FORK.Queue()
    children = [
        FORK.Process(target=_parallel_add, args=(store.root, record.to_json(), barrier, results)) for _ in range(16)
    ]
    for child in children:
        child.start()
    ids = {results.get(timeout=30) for _ in children}
    for child in children:
        child.join(10)
        assert child.exitcode == 0
    assert ids == {str(record.id)}
    images = store.images()
    assert [r.id for r in images] == [record.id]
    assert images[0].repo_tags == (BUSYBOX,)
    assert os.listdir(store.images_dir / "sha256") == [f"{record.id.hex}.json"]


# --- resolve -------------------------------------------------------------------------------------------------------


def two_images_sharing_a_first_hex_digit(store):
    seen: dict[str, ImageRecord] = {}
    for n in range(100):
        record = build_image(store, f"seed{n}", [b"shared"])
        first = record.id.hex[0]
        if first in seen:
            return store.add_image(seen[first]), store.add_image(record)
        seen[first] = record
    raise AssertionError("unreachable: 17 ids always share a first digit")


def test_resolve(store):
    one, two = two_images_sharing_a_first_hex_digit(store)
    store.tag(one.id, BUSYBOX)
    for text in (str(one.id), one.id.hex, one.id.hex[:12], f"sha256:{one.id.hex[:12]}", BUSYBOX, "busybox"):
        assert store.resolve(text).id == one.id, text
    by_digest = f"docker.io/library/busybox@{one.manifest_digest}"
    assert store.resolve(by_digest).id == one.id
    assert store.resolve(f"busybox@{one.manifest_digest}").id == one.id
    common = os.path.commonprefix([one.id.hex, two.id.hex])
    with pytest.raises(AmbiguousImage):
        store.resolve(common)
    unique = two.id.hex[: len(common) + 1]
    assert store.resolve(unique).id == two.id
    unused_digit = next(c for c in "0123456789abcdef" if c != one.id.hex[0])
    for unknown in ("docker.io/library/nope:latest", "nope", unused_digit * 12, "sha256:" + unused_digit):
        with pytest.raises(ImageNotFound, match="no such image: "):
            store.resolve(unknown)
    with pytest.raises(ImageNotFound):
        store.resolve("")


# --- remove, collect, prune ----------------------------------------------------------------------------------------


def test_remove_image_deletes_only_blobs_no_other_image_uses(store):
    one = add(store, "one", [b"shared base", b"only one"], "docker.io/library/one:latest")
    two = add(store, "two", [b"shared base", b"only two"], "docker.io/library/two:latest")
    shared = Digest.of(b"shared base")
    deleted = store.remove_image(one.id)
    assert set(deleted) == {one.id, one.manifest_digest, Digest.of(b"only one")}
    assert store.has_blob(shared)
    assert store.read_blob(two.id)
    assert [r.id for r in store.images()] == [two.id]
    assert set(store.remove_image(two.id)) == {two.id, two.manifest_digest, shared, Digest.of(b"only two")}
    assert blob_set(store) == set()
    with pytest.raises(ImageNotFound):
        store.remove_image(two.id)


def test_prune_removes_dangling_images_and_reports_bytes(store):
    kept = add(store, "kept", [b"base", b"k"], BUSYBOX)
    old = add(store, "old", [b"base", b"o"], "docker.io/library/x:1")
    store.tag(kept.id, "docker.io/library/x:1")
    in_use = add(store, "used", [b"u"], "docker.io/library/u:1")
    store.untag("docker.io/library/u:1")
    before = store.disk_usage()
    unique_to_old = [old.id, old.manifest_digest, Digest.of(b"o")]
    expected = sum(store.blob_path(d).stat().st_size for d in unique_to_old)
    removed, freed = store.prune(keep=[in_use.id])
    assert removed == [old.id]
    assert freed == expected
    assert {r.id for r in store.images()} == {kept.id, in_use.id}
    assert store.has_blob(Digest.of(b"base"))
    assert not store.has_blob(Digest.of(b"o"))
    after = store.disk_usage()
    assert after.total_bytes == before.total_bytes - freed
    removed_all, _ = store.prune(dangling_only=False)
    assert set(removed_all) == {kept.id, in_use.id}
    assert blob_set(store) == set()


def test_disk_usage_counts_unreferenced_bytes(store):
    add(store, "a", [b"1234"], BUSYBOX)
    orphan = Digest.of(b"orphan!")
    other = Store(store.root)  # another process's store object: its lease is separate
    other.put_blob(b"orphan!")
    other.close()  # that process ends without adding a record
    usage = store.disk_usage()
    assert usage.images == 1
    assert usage.reclaimable_bytes == len(b"orphan!")
    assert usage.total_bytes == sum(p.stat().st_size for p in (store.blobs_dir / "sha256").iterdir())
    assert store.collect_blobs() == [orphan]
    assert store.disk_usage().reclaimable_bytes == 0


def test_collect_keeps_blobs_a_running_pull_wrote_before_it_adds_the_record(store):
    pull = Store(store.root)  # a parallel `sbx pull` in flight
    record = build_image(pull, "pulled", [b"fresh layer"], (BUSYBOX,))
    add(store, "victim", [b"v"], "docker.io/library/v:1")
    store.remove_image(store.resolve("docker.io/library/v:1").id)  # a parallel `sbx rmi` collects
    assert store.has_blob(Digest.of(b"fresh layer"))
    assert store.has_blob(record.id)
    pull.add_image(record)
    assert store.collect_blobs() == []
    assert store.read_blob(record.id)


def _write_blob_and_die(root):
    store = Store(root)
    store.put_blob(b"written by a pull that was killed")
    os._exit(0)  # no close(): the lease file stays, its lock dies with us


def test_lease_of_a_dead_pull_is_ignored_and_removed(store):
    child = FORK.Process(target=_write_blob_and_die, args=(store.root,))
    child.start()
    child.join(10)
    assert len(os.listdir(store.leases_dir)) == 1
    assert store.collect_blobs() == [Digest.of(b"written by a pull that was killed")]
    assert os.listdir(store.leases_dir) == []


def test_collect_skips_a_blob_whose_lock_is_held(store):
    orphan = Store(store.root)
    digest = orphan.put_blob(b"orphan")
    orphan.close()
    with store._blob_lock(digest):  # a pull waiting to check or write this blob
        assert store.collect_blobs() == []
    assert store.collect_blobs() == [digest]


# --- damage and recovery (TESTPLAN 55) -----------------------------------------------------------------------------


def test_truncated_record_is_named_by_images_and_check_and_recoverable(store):
    good = add(store, "good", [b"g"], BUSYBOX)
    bad = add(store, "bad", [b"b"], "docker.io/library/bad:1")
    path = record_file(store, bad.id)
    os.truncate(path, path.stat().st_size // 2)
    with pytest.raises(StoreCorrupt) as info:
        store.images()
    assert str(path) in str(info.value)
    assert info.value.image_id == bad.id
    assert info.value.hint
    assert [p.item for p in store.check()] == [str(path)]
    # names still resolve for the intact image; the damaged one is found by id for `rmi -f`
    assert store.resolve(BUSYBOX).id == good.id
    with pytest.raises(StoreCorrupt) as by_id:
        store.resolve(bad.id.short)
    assert by_id.value.image_id == bad.id
    # while a damaged record exists (its blobs unknown) nothing is collected, not even an unrelated orphan
    orphan = Store(store.root)
    orphan.put_blob(b"orphan")
    orphan.close()
    assert store.collect_blobs() == []
    assert store.has_blob(Digest.of(b"b"))
    deleted = store.remove_image(bad.id)
    assert set(deleted) == {bad.id, bad.manifest_digest, Digest.of(b"b"), Digest.of(b"orphan")}
    assert [r.id for r in store.images()] == [good.id]
    assert store.check() == []


def test_prune_removes_damaged_records(store):
    bad = add(store, "bad", [b"b"], BUSYBOX)
    record_file(store, bad.id).write_text('{"schemaVersion": 1, "id": 42}')
    stray = store.images_dir / "sha256" / "notanid.json"
    stray.write_text("{}")
    removed, freed = store.prune()
    assert removed == [bad.id]
    assert freed > 0
    assert store.images() == []
    assert not stray.exists()


def test_check_finds_a_flipped_byte_and_a_deleted_blob(store):
    image = add(store, "a", [b"layer one", b"layer two"], BUSYBOX)
    flipped = store.blob_path(Digest.of(b"layer one"))
    os.chmod(flipped, 0o644)
    flipped.write_bytes(b"layer onf")
    os.unlink(store.blob_path(Digest.of(b"layer two")))
    problems = store.check()
    items = {p.item: p.message for p in problems}
    assert f"blob {Digest.of(b'layer one')}" in items
    assert "damaged" in items[f"blob {Digest.of(b'layer one')}"]
    assert image.id.short in items[f"blob {Digest.of(b'layer one')}"]
    missing = [p for p in problems if p.item.startswith(f"image {image.id.short}")]
    assert len(missing) == 1 and str(Digest.of(b"layer two")) in missing[0].message
    assert len(problems) == 2
    # rmi -f recovers
    store.remove_image(image.id)
    assert store.check() == []
    assert blob_set(store) == set()


def _flip(path: Path) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))


def test_damage_names_missing_resized_and_flipped_blobs_without_hashing(store, monkeypatch):
    """TESTPLAN 55 for the listing: a stat per blob, and the notes that check() and read_blob() leave."""
    image = add(store, "a", [b"layer one", b"layer two", b"layer three"], BUSYBOX)
    assert store.damage(image) == []
    one, two, three = (Digest.of(data) for data in (b"layer one", b"layer two", b"layer three"))
    os.unlink(store.blob_path(one))
    store.blob_path(two).chmod(0o644)
    store.blob_path(two).write_bytes(b"layer tw")
    _flip(store.blob_path(three))  # same size: only a hash can tell
    import sandbox.store.blobs as blobs_module

    real_hash = blobs_module.hash_file
    monkeypatch.setattr(blobs_module, "hash_file", lambda *args: pytest.fail("the listing hashed a blob"))
    assert store.damage(image) == [f"layer 1 blob {one} is missing", f"layer 2 blob {two} is 8 bytes, not 9"]
    monkeypatch.setattr(blobs_module, "hash_file", real_hash)
    store.check()  # hashes everything, and leaves a note for the listing
    flipped = Digest.of(bytes([ord("l") ^ 0xFF]) + b"ayer three")
    assert store.damage(image)[2:] == [f"layer 3 blob {three}: content is damaged: it hashes to {flipped}"]


def test_a_damaged_config_is_noted_on_use_and_a_new_blob_clears_a_note(store):
    image = add(store, "a", [b"layer one"], BUSYBOX)
    _flip(store.blob_path(image.id))
    with pytest.raises(StoreCorrupt):
        store.read_blob(image.id)  # what run, create and inspect do with the config
    assert [p.split(":")[0] for p in store.damage(image)] == [f"config blob {image.id.algorithm}"]
    _flip(store.blob_path(Digest.of(b"layer one")))
    assert len(store.check()) == 2
    store.remove_image(image.id)
    again = add(store, "a", [b"layer one"], BUSYBOX)  # pulled again: new files, the old notes speak of nothing
    assert again.id == image.id
    assert store.damage(again) == []


def test_record_naming_another_id_is_damaged(store):
    one = add(store, "one", [b"1"], BUSYBOX)
    two = build_image(store, "two", [b"2"])
    record_file(store, two.id).write_bytes(record_file(store, one.id).read_bytes())
    with pytest.raises(StoreCorrupt, match="describes image"):
        store.images()


def test_stale_record_temp_file_is_collected_at_open(store):
    add(store, "a", [b"1"], BUSYBOX)
    temp = store.images_dir / "sha256" / ".abc.json.0123.tmp"
    temp.write_text("{")
    Store.open(store.root)
    assert not temp.exists()
    assert len(store.images()) == 1


def test_enospc_while_adding_a_record_leaves_nothing(store, monkeypatch):
    record = build_image(store, "a", [b"1"], (BUSYBOX,))
    real = os.fsync

    def full(fd):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(store.images_dir)):
            raise OSError(28, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(NoSpace, match="ENOSPC"):
        store.add_image(record)
    monkeypatch.undo()
    assert os.listdir(store.images_dir / "sha256") == []
    assert store.images() == []
    assert store.add_image(record).id == record.id


def test_discard_unreferenced_undoes_a_failed_pull_but_keeps_shared_blobs(store):
    kept = add(store, "kept", [b"shared"], BUSYBOX)
    fresh = store.put_blob(b"only this pull")
    shared = Digest.of(b"shared")
    with store.ingest(shared, len(b"shared")) as writer:
        assert writer is None  # present: leased, not rewritten
    assert store.collect_blobs() == []  # leased by this (still running) pull
    assert store.discard_unreferenced([fresh, shared]) == [fresh]
    assert store.has_blob(shared) and store.read_blob(kept.id)
    assert not store.has_blob(fresh)


def test_add_image_refuses_a_record_whose_blobs_are_missing(store):
    record = build_image(store, "a", [b"layer"], (BUSYBOX,))
    os.unlink(store.blob_path(Digest.of(b"layer")))
    with pytest.raises(StoreCorrupt, match="missing") as info:
        store.add_image(record)
    assert info.value.hint == "pull the image again"
    assert store.images() == []


def test_images_not_strict_skips_damaged_records_and_usage_counts_active(store):
    good = add(store, "good", [b"g"], BUSYBOX)
    bad = add(store, "bad", [b"b"])
    record_file(store, bad.id).write_text("{")
    assert [r.id for r in store.images(strict=False)] == [good.id]
    usage = store.disk_usage(in_use=[good.id])
    assert (usage.images, usage.active_images, usage.reclaimable_bytes) == (2, 1, 0)
