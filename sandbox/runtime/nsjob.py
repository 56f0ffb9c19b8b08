"""The namespace job: the child's side of :mod:`sandbox.runtime.userns` (the protocol is drawn there), and the ops.

Run as ``python -m sandbox.runtime.nsjob --sync-fd N [--user-namespace] [--mount-namespace]``. It prints nothing
but the one JSON result on stdout. Ops (``job["op"]``):

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

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox.errors import SbxError, StoreError, UnsafeLayer
from sandbox.kernel import constants as k

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


def _error_report(error: BaseException) -> dict[str, Any]:
    if isinstance(error, SbxError):
        fields = {key: value for key, value in error.fields.items() if isinstance(value, str | int | float | bool)}
        return {"type": type(error).__name__, "message": error.message, "hint": error.hint, "fields": fields}
    if isinstance(error, OSError):
        return {
            "type": "StoreError",
            "message": f"{(error.strerror or str(error)).lower()}" + (f": {error.filename}" if error.filename else ""),
            "hint": None,
            "fields": {"errno": error.errno} if error.errno is not None else {},
        }
    return {"type": "SbxError", "message": f"namespace job failed: {type(error).__name__}: {error}", "hint": None}


def write_own_maps(uid: int, gid: int) -> None:
    # An unprivileged process may map only its own ids, and its gid only once setgroups is denied (else it could
    # drop a supplementary group that denies it access somewhere).
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1\n"), ("gid_map", f"0 {gid} 1\n")):
        with open(f"/proc/self/{name}", "w") as file:
            file.write(text)


def become_root() -> None:
    os.setresgid(0, 0, 0)
    # setgroups is denied with a single map, or when newgidmap found no subgid range: then there is nothing to drop.
    with contextlib.suppress(PermissionError):
        os.setgroups([])
    os.setresuid(0, 0, 0)


def main(argv: list[str]) -> int:
    import signal
    import socket

    from sandbox.kernel import Kernel
    from sandbox.runtime.userns import Channel

    sync_fd = int(argv[argv.index("--sync-fd") + 1])
    user_namespace = "--user-namespace" in argv
    mount_namespace = "--mount-namespace" in argv
    channel = Channel(socket.socket(fileno=sync_fd))
    kernel = Kernel()
    flags = (k.CLONE_NEWUSER if user_namespace else 0) | (k.CLONE_NEWNS if mount_namespace else 0)
    try:
        kernel.prctl(k.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:
            return 1  # the parent is already gone
        if flags:
            kernel.unshare(flags)
    except OSError as error:
        channel.send({"type": "error", "op": "unshare", "errno": error.errno, "message": error.strerror or str(error)})
        return 1
    channel.send({"type": "ready"})
    go = channel.recv()
    channel.close()
    if go is None or go.get("type") != "go":
        return 1
    try:
        if user_namespace:
            own = go.get("own_maps")
            if own:
                write_own_maps(int(own["uid"]), int(own["gid"]))
            become_root()
        if mount_namespace:
            # Mounts made here must not propagate back to the host's namespace.
            kernel.mount(None, "/", None, k.MS_REC | k.MS_PRIVATE)
        job = json.load(sys.stdin)
        message: dict[str, Any] = {"ok": execute(job, kernel)}
    except Exception as error:  # every failure goes back to the parent as one typed message
        if not isinstance(error, SbxError):
            traceback.print_exc(file=sys.stderr)
        message = {"error": _error_report(error)}
    sys.stdout.write(json.dumps(message))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
