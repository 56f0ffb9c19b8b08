"""The unpacked-layer store: chain ids, atomic commit, and retiring layers no image needs."""

from __future__ import annotations

import hashlib
import multiprocessing

from sandbox.oci.digest import Digest
from sandbox.store.layers import LayerStore, chain_ids

A = Digest("sha256", "a" * 64)
B = Digest("sha256", "b" * 64)
C = Digest("sha256", "c" * 64)


def test_chain_ids_follow_the_oci_spec():
    chain = chain_ids([A, B, C])
    second = hashlib.sha256(f"{A} {B}".encode()).hexdigest()
    third = hashlib.sha256(f"sha256:{second} {C}".encode()).hexdigest()
    assert chain == [A, Digest("sha256", second), Digest("sha256", third)]
    assert chain_ids([]) == []
    assert chain_ids([B, A])[1] != chain[1]  # order matters: a stack, not a set


def test_a_layer_is_present_only_after_commit(tmp_path):
    layers = LayerStore(tmp_path / "layers")
    pending = layers.begin(A, A, None)
    (pending.diff / "file").write_text("x")
    assert not layers.has(A)
    assert layers.present() == []
    layers.commit(pending)
    assert layers.has(A)
    assert (layers.diff(A) / "file").read_text() == "x"
    assert layers.read_meta(A) == {"chain_id": str(A), "diff_id": str(A), "parent": None}
    assert layers.present() == [A]


def test_retire_keeps_referenced_layers_and_renames_the_rest(tmp_path):
    layers = LayerStore(tmp_path / "layers")
    for digest in (A, B):
        layers.commit(layers.begin(digest, digest, None))
    garbage = layers.retire_unreferenced([A])
    assert layers.has(A) and not layers.has(B)
    assert len(garbage) == 1 and garbage[0].name.startswith(".tmp-" + B.hex)
    assert garbage[0].exists()  # removal itself happens inside the user namespace


def _hold(path, ready, done):
    from sandbox.store.layers import LayerStore

    layers = LayerStore(path)
    with layers.lock(Digest("sha256", "b" * 64)):
        ready.set()
        done.wait(10)


def test_retire_spares_a_layer_whose_lock_is_held(tmp_path):
    layers = LayerStore(tmp_path / "layers")
    layers.commit(layers.begin(B, B, None))
    stale = layers.begin(C, C, None)  # an unpack that died: its lock is free
    context = multiprocessing.get_context("fork")
    ready, done = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(tmp_path / "layers", ready, done))
    holder.start()
    try:
        assert ready.wait(10)
        garbage = layers.retire_unreferenced([])
        assert layers.has(B)  # a pull holding B's lock is about to reference it
        assert garbage == [stale.tmp]
    finally:
        done.set()
        holder.join(10)
    again = layers.retire_unreferenced([])  # the lock is free now: B goes, and C's temp dir is still there
    assert not layers.has(B)
    assert sorted(p.name[5:69] for p in again) == sorted([B.hex, C.hex])
