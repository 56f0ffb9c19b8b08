"""The namespace job: the child's side of :mod:`sandbox.runtime.userns` (the protocol is drawn in
:mod:`sandbox.runtime.sync`), and the ops.

Run as ``python -m sandbox.runtime.nsjob --sync-fd N [--user-namespace] [--mount-namespace]``. It prints nothing
but one sync message on stdout: RESULT ``{"result": ...}`` or ERROR. Ops (``job["op"]``):

- ``unpack``: ``{"layers": [{"blob", "compression": "gzip"|"zstd"|"none", "dest", "whiteout_format"}],
  "max_bytes", "container_uids", "container_gids"}``; each layer's blob is decompressed as a stream and extracted
  into ``dest`` with tar owners kept as container ids, which the namespace's map turns into host ids. An owner the
  map does not cover is refused (:class:`UnsafeLayer`), except with a single map, where every owner becomes 0.
  ``container_uids``/``container_gids`` of None (sbx already root) keep owners as they are. Returns
  ``{"layers": [{"files", "bytes", "skipped_devices"}], "warnings": [...]}``.
- ``remove``: ``{"paths": [...]}``; removes each tree from inside the namespace, where subordinate-owned files and
  mode-000 directories are the namespace root's own. Returns ``{"removed": count}``.
- ``probe_rootfs``: ``{"driver", "dir"}`` (with a mount namespace); can that driver mount layers in the stored
  format here (:func:`sandbox.runtime.rootfs.probe`)? Returns ``{"reason": None}`` when it can, else why not.
- ``inventory``: ``{"plan", "target"}`` (with a mount namespace); mounts a :class:`RootfsPlan` at ``target`` and
  returns ``{"tree": ...}`` (:func:`sandbox.runtime.rootfs.inventory`), the driver-equivalence check's view.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from sandbox.errors import SbxError, StoreError, UnsafeLayer
from sandbox.kernel import constants as k

TYPE_CHECKING = False  # not typing's: the monitor imports this module, and typing costs its start ~3 ms (B1)
if TYPE_CHECKING:
    from typing import Any

_MAX_WARNINGS = 100


# --- ops ---------------------------------------------------------------------------------------------------------


def owner_map(uids: int | None, gids: int | None) -> Callable[[int, int], tuple[int, int]]:
    """Container owners as they are when mapped; refused outside the map; all 0 on a side that maps one id."""

    def one(value: int, count: int | None, kind: str, source: str) -> int:
        if count is None:
            return value
        if count <= 1:
            return 0
        if 0 <= value < count:
            return value
        raise UnsafeLayer(
            f"unsafe layer: owner {kind} {value} is outside the {count} ids mapped from {source}",
            hint=f"images may use {kind}s 0-{count - 1}; a larger range in {source} (usermod) would map more",
            **{kind: value},
        )

    def mapped(uid: int, gid: int) -> tuple[int, int]:
        return one(uid, uids, "uid", "/etc/subuid"), one(gid, gids, "gid", "/etc/subgid")

    return mapped


def _unpack(job: dict[str, Any], kernel) -> dict[str, Any]:
    from sandbox.oci.decompress import open_layer
    from sandbox.store.unpack import DEFAULT_MAX_BYTES, unpack_layer

    warnings: list[str] = []

    def warn(message: str) -> None:
        if message not in warnings and len(warnings) < _MAX_WARNINGS:
            warnings.append(message)

    mapping = owner_map(job.get("container_uids"), job.get("container_gids"))
    max_bytes = int(job.get("max_bytes") or DEFAULT_MAX_BYTES)
    stats = []
    for layer in job["layers"]:
        blob = Path(layer["blob"])
        try:
            stream = open_layer(blob, layer.get("compression", "gzip"))
        except OSError as error:
            message = f"cannot open layer {blob}: {(error.strerror or str(error)).lower()}"
            raise StoreError(message, path=str(blob)) from error
        with stream:
            result = unpack_layer(
                stream,
                Path(layer["dest"]),
                whiteout_format=layer.get("whiteout_format", "overlay"),
                max_bytes=max_bytes,
                owner_map=mapping,
                warn=warn,
                lowers=layer.get("lowers") or (),
            )
        stats.append({"files": result.files, "bytes": result.bytes, "skipped_devices": result.skipped_devices})
    return {"layers": stats, "warnings": warnings}


def _remove(job: dict[str, Any], kernel) -> dict[str, Any]:
    from sandbox.store.trees import remove_tree

    for path in job["paths"]:
        remove_tree(Path(path))
    return {"removed": len(job["paths"])}


def _probe_rootfs(job: dict[str, Any], kernel) -> dict[str, Any]:
    from sandbox.runtime.rootfs import probe

    return {"reason": probe(kernel, job["driver"], Path(job["dir"]))}


def _inventory(job: dict[str, Any], kernel) -> dict[str, Any]:
    from sandbox.runtime.rootfs import RootfsPlan, inventory, mount_rootfs, unmount_rootfs

    plan = RootfsPlan(**{key: tuple(v) if key == "lower" else v for key, v in job["plan"].items()})
    mount_rootfs(kernel, plan, job["target"])
    try:
        return {"tree": inventory(job["target"])}
    finally:
        unmount_rootfs(kernel, plan, job["target"])


OPS: dict[str, Callable[[dict[str, Any], Any], dict[str, Any]]] = {
    "unpack": _unpack,
    "remove": _remove,
    "probe_rootfs": _probe_rootfs,
    "inventory": _inventory,
}


def execute(job: dict[str, Any], kernel) -> dict[str, Any]:
    """Run one job in this process (as the namespace's root, or as real root) with ``kernel`` (a KernelAPI);
    raises what the op raises."""
    op = OPS.get(job.get("op"))  # type: ignore[arg-type]
    if op is None:
        raise SbxError(f"unknown namespace job {job.get('op')!r}")
    return op(job, kernel)


# --- the child process -------------------------------------------------------------------------------------------


def job_error(error: BaseException) -> SbxError:
    """A failure of an op as the error sbx is told: an OSError is a :class:`StoreError` (the ops write the store)."""
    if isinstance(error, SbxError):
        return error
    if isinstance(error, OSError):
        return StoreError(
            f"{(error.strerror or str(error)).lower()}" + (f": {error.filename}" if error.filename else ""),
            **({"errno": error.errno} if error.errno is not None else {}),
        )
    return SbxError(f"namespace job failed: {type(error).__name__}: {error}")


def main(argv: list[str]) -> int:
    import signal

    from sandbox.errors import NamespaceError
    from sandbox.kernel import Kernel
    from sandbox.runtime.sync import Channel, Kind, child_handshake, error_message
    from sandbox.runtime.usermaps import USERNS_HINT, become_root

    sync_fd = int(argv[argv.index("--sync-fd") + 1])
    user_namespace = "--user-namespace" in argv
    mount_namespace = "--mount-namespace" in argv
    channel = Channel.of_fd(sync_fd, "sbx")
    kernel = Kernel()
    flags = (k.CLONE_NEWUSER if user_namespace else 0) | (k.CLONE_NEWNS if mount_namespace else 0)
    try:
        kernel.prctl(k.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:
            return 1  # the parent is already gone
        if flags:
            kernel.unshare(flags)
    except OSError as error:
        channel.send_error(NamespaceError(f"cannot create a user namespace: {error.strerror or error}",
                                          hint=USERNS_HINT, op="unshare", errno=error.errno), None)
        return 1
    try:
        own = child_handshake(channel)
    except SbxError:
        return 1
    finally:
        channel.close()
    try:
        if user_namespace:
            become_root(kernel, own)
        if mount_namespace:
            # Mounts made here must not propagate back to the host's namespace.
            kernel.mount(None, "/", None, k.MS_REC | k.MS_PRIVATE)
        job = json.load(sys.stdin)
        message: dict[str, Any] = {"type": Kind.RESULT.value, "result": execute(job, kernel)}
    except Exception as error:  # every failure goes back to the parent as one typed message
        if not isinstance(error, SbxError):
            import traceback

            traceback.print_exc(file=sys.stderr)
        message = {"type": Kind.ERROR.value, **error_message(job_error(error), None)}
    sys.stdout.write(json.dumps(message))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
