"""Unpacking layers at pull time, and removing them when no image needs them.

A pull unpacks each layer it lacks once, keyed by chain id, so `run` only mounts. The work runs as root of a user
namespace with the containers' id map (``runtime.userns``), so a file owned by uid 33 in the image is owned by the
mapped subordinate uid on disk. The chain locks are held from before the check until the image record is written,
so a parallel `rmi` never takes away a layer a pull is about to reference.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from sandbox.errors import StoreCorrupt
from sandbox.oci import mediatypes as mt
from sandbox.oci.digest import Digest
from sandbox.oci.manifest import Descriptor
from sandbox.store.layers import LayerStore, PendingLayer, chain_ids

TYPE_CHECKING = False  # not typing's: importing typing costs every start ~3 ms (BENCHMARKS B1)
if TYPE_CHECKING:
    from sandbox.runtime.idmap import IdMap
    from sandbox.store.store import Store

DEFAULT_MAX_LAYER_BYTES = 64 * 1024**3
_SINGLE_MAP_NOTICE = ".notice-single-idmap"
_DRIVER_CACHE = "driver.json"


class LayerUnpacker:
    def __init__(
        self,
        store: Store,
        *,
        idmap: IdMap | None = None,
        max_bytes: int = DEFAULT_MAX_LAYER_BYTES,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.layers = LayerStore(store.root / "layers")
        self._idmap = idmap
        self.max_bytes = max_bytes
        self.notice = notice or (lambda _text: None)

    @property
    def idmap(self) -> IdMap:
        if self._idmap is None:
            from sandbox.runtime.idmap import default_idmap

            self._idmap = default_idmap()
            marker = self.store.root / _SINGLE_MAP_NOTICE
            if self._idmap.single and not marker.exists():
                self.notice(self._idmap.notice())
                with contextlib.suppress(OSError):
                    marker.touch(mode=0o600)
        return self._idmap

    def in_namespace(self, job: dict) -> dict:
        """Run a job (unpack, remove) as root of a user namespace with the containers' id map."""
        from sandbox.runtime.userns import run_job

        return run_job(job, self.idmap)

    @contextlib.contextmanager
    def unpacked(
        self,
        layers: Sequence[Descriptor],
        diff_ids: Sequence[Digest],
        on_layer: Callable[[Descriptor, str], None] | None = None,
    ) -> Iterator[list[Digest]]:
        """Make sure every layer is unpacked; holds their chain locks while the caller records the image."""
        on_layer = on_layer or (lambda _layer, _state: None)
        chains = chain_ids(diff_ids)
        held = []
        pending: list[tuple[Descriptor, PendingLayer, list[str]]] = []
        diffs: list[str] = []  # every layer's tree so far: a layer is unpacked seeing the ones below it
        try:
            for index, (layer, diff_id, chain) in enumerate(zip(layers, diff_ids, chains, strict=True)):
                lock = self.layers.lock(chain)
                lock.acquire()
                held.append(lock)
                if not self.layers.has(chain):
                    parent = chains[index - 1] if index else None
                    target = self.layers.begin(chain, diff_id, parent)
                    pending.append((layer, target, list(reversed(diffs))))
                    diffs.append(str(target.diff))
                else:
                    diffs.append(str(self.layers.diff(chain)))
            if pending:
                self._unpack(pending, on_layer)
            yield chains
        finally:
            for lock in reversed(held):
                lock.release()

    def _unpack(self, pending: list[tuple[Descriptor, PendingLayer, list[str]]], on_layer) -> None:
        for layer, _, _ in pending:
            on_layer(layer, "extracting")
        job = {
            "op": "unpack",
            "max_bytes": self.max_bytes,
            "layers": [
                {
                    "blob": str(self.store.blob_path(layer.digest)),
                    "compression": mt.LAYER_COMPRESSION[layer.media_type],
                    "dest": str(target.diff),
                    "whiteout_format": "overlay",
                    # the layers below, top first: a path through a symlink of theirs is followed (containerd's
                    # semantics, and what the copy driver does), not shadowed by a new directory
                    "lowers": lowers,
                }
                for layer, target, lowers in pending
            ],
        }
        try:
            result = self.in_namespace(job)
        except BaseException:
            with contextlib.suppress(Exception):
                self.in_namespace({"op": "remove", "paths": [str(target.tmp) for _, target, _ in pending]})
            raise
        for warning in result.get("warnings", []):
            self.notice(str(warning))
        for layer, target, _ in pending:
            self.layers.commit(target)
            on_layer(layer, "extracted")

    def flatten(self, layers, dest: str) -> None:
        """The copy driver's private tree: every layer extracted in order onto ``dest``, whiteouts applied."""
        self.in_namespace(
            {
                "op": "unpack",
                "max_bytes": self.max_bytes,
                "layers": [
                    {
                        "blob": str(self.store.blob_path(layer.digest)),
                        "compression": mt.LAYER_COMPRESSION[layer.media_type],
                        "dest": dest,
                        "whiteout_format": "copy",
                    }
                    for layer in layers
                ],
            }
        )

    def collect(self) -> list[Path]:
        """Remove unpacked layers no image uses and leftovers of killed unpacks; nothing while a record is damaged."""
        if not self.layers.root.exists():
            return []
        try:
            records = self.store.images()
        except StoreCorrupt:
            return []
        referenced = [chain for record in records for chain in chain_ids([layer.diff_id for layer in record.layers])]
        referenced += self._used_by_containers()
        garbage = self.layers.retire_unreferenced(referenced)
        if garbage:
            self.in_namespace({"op": "remove", "paths": [str(path) for path in garbage]})
        return garbage

    def _used_by_containers(self) -> list[Digest]:
        """Chain ids mounted by existing containers: `rmi -f` of their image must not pull layers from under them."""
        from sandbox.store.containers import ContainerStore

        root = self.store.root / "containers"
        if not root.exists():
            return []
        used = []
        for record in ContainerStore(root).list():
            for chain in (record.spec or {}).get("layers", []):
                with contextlib.suppress(Exception):
                    used.append(Digest("sha256", str(chain)))
        return used

    def storage_driver(self, forced: str | None = None) -> str:
        """The root filesystem driver: the one asked for, else the first that works here (probed once per kernel).

        The probe mounts two tiny layers in the stored format inside a user and mount namespace and checks that a
        whiteout and an opaque directory hide what they should; the answer is cached in the store.
        """
        from sandbox.runtime.rootfs import DRIVERS

        if forced:
            if forced not in DRIVERS:
                from sandbox.errors import RootfsError

                raise RootfsError(f"unknown storage driver {forced!r}", hint=f"choose one of {', '.join(DRIVERS)}")
            return forced
        cache = self.store.root / _DRIVER_CACHE
        kernel = os.uname().release
        with contextlib.suppress(OSError, ValueError):
            cached = json.loads(cache.read_bytes())
            if cached.get("kernel") == kernel and cached.get("driver") in DRIVERS:
                return cached["driver"]
        chosen, reasons = "copy", {}
        for driver in ("overlay", "fuse-overlayfs"):
            workdir = self.store.root / f".probe-{os.urandom(4).hex()}"
            workdir.mkdir(mode=0o700)
            try:
                reason = self._run_mounting({"op": "probe_rootfs", "driver": driver, "dir": str(workdir)})["reason"]
            finally:
                self.in_namespace({"op": "remove", "paths": [str(workdir)]})
            if reason is None:
                chosen = driver
                break
            reasons[driver] = reason
        from sandbox.store.atomic import write_atomic

        record = {"driver": chosen, "kernel": kernel, "refused": reasons}
        write_atomic(cache, json.dumps(record, sort_keys=True).encode(), mode=0o600)
        return chosen

    def _run_mounting(self, job: dict) -> dict:
        from sandbox.runtime.userns import run_job

        return run_job(job, self.idmap, mount_namespace=True)

