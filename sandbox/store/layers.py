"""Unpacked layers, keyed by chain id and shared between images.

Layout under ``<store>/layers`` (0700)::

    <chain-hex>/diff/        the layer's own tree, in kernel overlay's format (0:0 whiteouts, user.overlay.opaque)
    <chain-hex>/layer.json   {"chain_id", "diff_id", "parent"}: written before the rename, so a directory with this
                             name is always complete
    .tmp-<chain-hex>-<rand>/ an unpack in progress, made while the chain's lock is held

The chain id of a layer names it *with everything below it* (OCI image spec): ``chain(1) = diff_id(1)``,
``chain(n) = sha256(chain(n-1) + " " + diff_id(n))``, so two images share an unpacked layer only when they share the
whole stack under it. A killed unpack leaves only a ``.tmp-`` directory whose chain lock nobody holds; it is never
used and is collected later. Files in these trees belong to subordinate ids, so creating and removing them happens
inside the user namespace (``runtime``); this module only names paths, takes locks and commits renames.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from sandbox.errors import StoreCorrupt
from sandbox.oci.digest import Digest, sha256_hex
from sandbox.store.atomic import fsync_dir, store_error, write_atomic
from sandbox.store.locks import FileLock
from sandbox.valueclass import valueclass

_TMP_PREFIX = ".tmp-"


def chain_ids(diff_ids: Sequence[Digest]) -> list[Digest]:
    chain: list[Digest] = []
    for diff_id in diff_ids:
        if not chain:
            chain.append(diff_id)
        else:
            text = f"{chain[-1]} {diff_id}".encode()
            chain.append(Digest("sha256", sha256_hex(text)))
    return chain


@valueclass
class PendingLayer:
    """A layer being unpacked: extract into ``diff``, then :meth:`LayerStore.commit`."""

    chain_id: Digest
    diff_id: Digest
    parent: Digest | None
    tmp: Path

    @property
    def diff(self) -> Path:
        return self.tmp / "diff"


class LayerStore:
    def __init__(self, root: Path, *, lock_timeout: float = 600.0) -> None:
        self.root = root
        self.locks_dir = root.parent / "locks"
        self.lock_timeout = lock_timeout

    def ensure(self) -> None:
        try:
            self.root.mkdir(mode=0o700, exist_ok=True)
            self.locks_dir.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise store_error(exc, "create layer directory", self.root) from exc

    def path(self, chain_id: Digest) -> Path:
        return self.root / chain_id.hex

    def diff(self, chain_id: Digest) -> Path:
        return self.path(chain_id) / "diff"

    def has(self, chain_id: Digest) -> bool:
        return (self.path(chain_id) / "layer.json").is_file()

    def lock(self, chain_id: Digest) -> FileLock:
        return FileLock(self.locks_dir / f"layer-{chain_id.hex}.lock", self.lock_timeout, remove=True)

    def begin(self, chain_id: Digest, diff_id: Digest, parent: Digest | None) -> PendingLayer:
        """A fresh temp dir for this chain; call with the chain's lock held."""
        self.ensure()
        tmp = self.root / f"{_TMP_PREFIX}{chain_id.hex}-{os.urandom(4).hex()}"
        try:
            tmp.mkdir(mode=0o700)
            (tmp / "diff").mkdir(mode=0o755)
        except OSError as exc:
            raise store_error(exc, "create layer directory", tmp) from exc
        return PendingLayer(chain_id, diff_id, parent, tmp)

    def commit(self, pending: PendingLayer) -> None:
        """Record the layer's metadata and rename the temp dir into place (atomic: complete or absent)."""
        meta = {
            "chain_id": str(pending.chain_id),
            "diff_id": str(pending.diff_id),
            "parent": str(pending.parent) if pending.parent else None,
        }
        write_atomic(pending.tmp / "layer.json", json.dumps(meta, sort_keys=True).encode(), mode=0o600)
        try:
            os.rename(pending.tmp, self.path(pending.chain_id))
            fsync_dir(self.root)
        except OSError as exc:
            raise store_error(exc, "commit layer", self.path(pending.chain_id)) from exc

    def present(self) -> list[Digest]:
        """Chain ids of the complete layers on disk."""
        found = []
        for name in self._names():
            if not name.startswith(_TMP_PREFIX) and len(name) == 64 and (self.root / name / "layer.json").is_file():
                found.append(Digest("sha256", name))
        return found

    def read_meta(self, chain_id: Digest) -> dict:
        path = self.path(chain_id) / "layer.json"
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise StoreCorrupt(f"damaged layer record {path}: {exc}", path=str(path)) from None
        if not isinstance(data, dict) or data.get("chain_id") != str(chain_id):
            raise StoreCorrupt(f"damaged layer record {path}", path=str(path))
        return data

    def retire_unreferenced(self, referenced: Iterable[Digest]) -> list[Path]:
        """Take out of use the layers no image needs; returns the directories to remove (inside the user namespace).

        A complete layer is renamed to a temp name while its chain lock is held, so a pull that takes the lock
        afterwards finds it absent and unpacks again, and one that holds the lock (it is using the layer until its
        image record is written) keeps it. Temp dirs of unpacks that died (their chain lock is free) are returned too.
        """
        keep = {digest.hex for digest in referenced}
        garbage: list[Path] = []
        for name in self._names():
            path = self.root / name
            if name.startswith(_TMP_PREFIX):
                chain_hex = name[len(_TMP_PREFIX) :].split("-", 1)[0]
                lock = FileLock(self.locks_dir / f"layer-{chain_hex}.lock", 0, remove=True)
                if lock.acquire(blocking=False):
                    lock.release()
                    garbage.append(path)
            elif name not in keep and len(name) == 64:
                lock = FileLock(self.locks_dir / f"layer-{name}.lock", 0, remove=True)
                if not lock.acquire(blocking=False):
                    continue
                try:
                    retired = self.root / f"{_TMP_PREFIX}{name}-retired{os.urandom(4).hex()}"
                    os.rename(path, retired)
                    garbage.append(retired)
                except OSError as exc:
                    raise store_error(exc, "retire layer", path) from exc
                finally:
                    lock.release()
        return garbage

    def _names(self) -> list[str]:
        try:
            return sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise store_error(exc, "list layers", self.root) from exc
