"""B6: image present -> root filesystem ready, per storage driver.

The bench image's two layers are unpacked once (untimed) into a layer store laid out as sbx's
(``layers/<chain-hex>/diff``, overlay format). Then, as the bench user, timed inside a worker run with sbx's venv
Python (``perf_counter`` around the step only; the worker's Python start is not counted):

* ``overlay`` / ``fuse-overlayfs``: in a fresh user + mount namespace mapping only the bench user (a single map is
  enough to read the layers), ``plan_rootfs`` + ``create_dirs`` (upper, work) + mkdir of the target +
  ``mount_rootfs``; unmounted untimed. The namespace set-up (unshare + maps) is reported beside it;
* ``copy``: the layers extracted in "copy" format (whiteouts applied) into a fresh directory with
  ``unpack_layer`` from the gzip blobs, in a single-map namespace, as sbx's copy driver does at create time;
* ``cp -a``: ``cp -a`` of the already flattened tree into a fresh directory, in the same kind of namespace;
* ``podman``: ``podman create --network none IMG true`` (rootless, runc, cgroupfs, overlay; wall time of the
  command through runuser); its container is removed untimed;
* ``job-rtt``: for context, one ``run_job`` round trip with the subordinate map and a mount namespace doing nothing,
  the cost sbx pays if it mounts through its namespace job.

Mount drivers and podman: 3 warm-ups + max(30, -n) iterations; copy and cp -a: --warmup + -n. Rotating order.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from bench.common import (
    BENCH_DIR,
    BenchError,
    Figure,
    Table,
    User,
    compare,
    drop_tree,
    exclusive,
    log,
    machine_facts,
    rotations,
    run,
    summary,
    sync,
    tail,
    timed,
    version_of,
)
from bench.images import OCI_DIR, TAG
from bench.unpack import fresh, local_blobs, sbx_python, worker, write_worker

TITLE = "B6: image present -> root filesystem ready, per driver: overlay, fuse-overlayfs, copy vs cp -a, podman"
ORDER = 6  # place in `python -m bench` and its summary

WORK = BENCH_DIR / "work" / "rootfs"
MOUNT_MIN_ITERATIONS = 30
MOUNT_WARMUP = 3


def chain_hexes(layers: list[dict[str, Any]]) -> list[str]:
    """Chain ids (hex) from the image config's diff ids, bottom first, as sbx names its unpacked layers."""
    index = json.loads((OCI_DIR / "index.json").read_text())
    m = next(x for x in index["manifests"] if x.get("annotations", {}).get("org.opencontainers.image.ref.name") == TAG)
    manifest = json.loads((OCI_DIR / "blobs" / "sha256" / m["digest"].split(":", 1)[1]).read_text())
    config = json.loads((OCI_DIR / "blobs" / "sha256" / manifest["config"]["digest"].split(":", 1)[1]).read_text())
    chain: list[str] = []
    for diff_id in config["rootfs"]["diff_ids"][: len(layers)]:
        if chain:
            diff_id = "sha256:" + hashlib.sha256(f"{chain[-1]} {diff_id}".encode()).hexdigest()
        chain.append(diff_id)
    return [c.split(":", 1)[1] for c in chain]


class Podman:
    def __init__(self, user: User) -> None:
        self.user = user
        self.work = WORK / "podman"
        self.ref = "localhost/debian:bench"
        self.status = "ok"

    @property
    def env(self) -> dict[str, str]:
        return {"XDG_RUNTIME_DIR": str(self.work / "xdg-run"), "TMPDIR": str(self.work / "tmp")}

    def base(self) -> list[str]:
        return ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--storage-driver", "overlay",
                "--root", str(self.work / "storage"), "--runroot", str(self.work / "runroot")]

    def prepare(self) -> None:
        if shutil.which("podman") is None:
            raise BenchError("podman is not installed")
        self.user.mkdir(self.work)
        self.user.mkdir(self.work / "xdg-run", 0o700)
        self.user.mkdir(self.work / "tmp", 0o700)
        layout = self.work / "oci"
        drop_tree(layout)
        shutil.copytree(OCI_DIR, layout)
        run(["chown", "-R", f"{self.user.uid}:{self.user.gid}", str(layout)])
        run(self.user.wrap([*self.base(), "pull", "-q", f"oci:{layout}:{TAG}"], self.env), timeout=300,
            what="podman pull oci:")
        run(self.user.wrap([*self.base(), "tag", self._pulled_id(), self.ref], self.env), what="podman tag")

    def _pulled_id(self) -> str:
        cp = run(self.user.wrap([*self.base(), "images", "-q"], self.env), what="podman images")
        ids = cp.stdout.split()
        if not ids:
            raise BenchError("podman pull oci: left no image")
        return ids[0]

    def create(self, i: int) -> float:
        name = f"bench-{i}"
        secs = timed(self.user.wrap([*self.base(), "create", "-q", "--name", name, "--network", "none", self.ref,
                                     "true"], self.env), 120, what="podman create")
        run(self.user.wrap([*self.base(), "rm", "-f", name], self.env), check=False, timeout=120)
        return secs

    def cleanup(self) -> None:
        pid_file = self.work / "xdg-run" / "libpod" / "tmp" / "pause.pid"
        try:
            pid = int(pid_file.read_text().strip())
            if Path(f"/proc/{pid}/comm").read_text().strip().startswith("podman"):
                import os
                import signal

                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass
        drop_tree(self.work)


def bench_rootfs(iterations: int = 5, warmup: int = 1, only: list[str] | None = None) -> dict[str, Any]:
    with exclusive():
        return _bench_rootfs(iterations, warmup, only)


def _entry(label: str, status: str, xs: list[float], extra: list[float] | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"label": label, "status": status}
    if xs:
        e.update(summary(xs))
        e["median_ms"] = round(e["median_s"] * 1000, 2)
        e["p90_ms"] = round(e["p90_s"] * 1000, 2)
        e["samples_s"] = [round(x, 5) for x in xs]
    if extra:
        e["ns_setup_median_ms"] = round(summary(extra)["median_s"] * 1000, 2)
    return e


def _bench_rootfs(iterations: int, warmup: int, only: list[str] | None) -> dict[str, Any]:
    t_start = time.monotonic()
    user = User.resolve()
    sbx_python()
    write_worker(user)
    fresh(user, WORK)
    blobs, layers = local_blobs(user, BENCH_DIR / "work" / "blobs")
    chains = chain_hexes(layers)
    layer_root = user.mkdir(WORK / "layers")
    log(f"B6: unpacking the {len(layers)} layers into {layer_root} (untimed)")
    for blob, chain in zip(blobs, chains, strict=True):
        user.mkdir(layer_root / chain)
        dest = user.mkdir(layer_root / chain / "diff")
        worker(user, "unpack-inproc", str(dest), "overlay", str(blob), what="unpack layer")
    flat = user.mkdir(WORK / "flat")
    worker(user, "unpack-inproc", str(flat), "copy", *map(str, blobs), what="flatten")

    want = lambda t: not only or t in only  # noqa: E731
    result: dict[str, Any] = {
        "benchmark": "B6",
        "what": "image present -> root filesystem ready, per driver",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_facts(),
        "user": user.name,
        "image": {"layers": len(layers), "compressed_bytes": sum(x["size"] for x in layers), "chains": chains},
        "protocol": {
            "mount_warmup": MOUNT_WARMUP,
            "mount_iterations": max(MOUNT_MIN_ITERATIONS, iterations),
            "copy_warmup": warmup,
            "copy_iterations": iterations,
            "order": "rotating",
            "timing": "perf_counter around the step inside a worker run as the bench user (no Python start counted); "
            "podman: wall time of `podman create` through runuser",
            "p90": "linear interpolation between closest ranks",
        },
        "network_backend": "none",
        "versions": {
            "sbx_python": sbx_python(),
            "fuse-overlayfs": version_of(["fuse-overlayfs", "--version"]),
            "podman": version_of(["podman", "--version"]),
            "cp": version_of(["cp", "--version"]),
        },
    }

    # -- mount drivers + podman create ----------------------------------------------------------------------------
    podman = Podman(user)
    mount_tools = [t for t in ("overlay", "fuse-overlayfs", "podman") if want(t)]
    status = {t: "ok" for t in mount_tools}
    if "podman" in mount_tools:
        try:
            podman.prepare()
        except BenchError as e:
            status["podman"] = f"unavailable: {e}"
            log(f"podman: unavailable: {e}")
    samples: dict[str, list[float]] = {t: [] for t in mount_tools}
    ns_setup: dict[str, list[float]] = {t: [] for t in mount_tools}
    n_mount = max(MOUNT_MIN_ITERATIONS, iterations)
    for it, order in enumerate(rotations(mount_tools, MOUNT_WARMUP + n_mount)):
        for t in order:
            if status[t] != "ok":
                continue
            try:
                if t == "podman":
                    secs = podman.create(it)
                else:
                    cdir = fresh(user, WORK / "containers" / t)
                    r = worker(user, "mount", t, str(layer_root), str(cdir), *chains, what=f"mount {t}")
                    if not r.get("ok"):
                        raise BenchError(f"{t}: the mounted tree lacks usr/bin/env or usr/bin/python3")
                    secs = r["secs"]
                    if it >= MOUNT_WARMUP:
                        ns_setup[t].append(r["ns_setup_s"])
            except BenchError as e:
                status[t] = f"failed: {e}"
                log(f"{t}: failed: {e}")
                continue
            if it >= MOUNT_WARMUP:
                samples[t].append(secs)
        if it % 10 == 0:
            log(f"mount iteration {it + 1}/{MOUNT_WARMUP + n_mount}")
    drop_tree(WORK / "containers")
    drivers: dict[str, Any] = {}
    labels = {
        "overlay": "kernel overlay: create_dirs + mount_rootfs (userxattr)",
        "fuse-overlayfs": "fuse-overlayfs: create_dirs + mount_rootfs",
        "podman": "podman create --network none (wall, via runuser)",
        "copy": "copy: unpack_layer of the gzip layers, copy format",
        "cp -a": "cp -a of the flattened tree",
        "job-rtt": "run_job round trip (subordinate map, mount ns, no-op)",
    }
    for t in mount_tools:
        drivers[t] = _entry(labels[t], status[t], samples[t], ns_setup[t])

    # -- copy vs cp -a ----------------------------------------------------------------------------------------------
    copy_tools = [t for t in ("copy", "cp -a") if want(t) or (only and "copy" in only)]
    status = {t: "ok" for t in copy_tools}
    samples = {t: [] for t in copy_tools}
    for it, order in enumerate(rotations(copy_tools, warmup + iterations)):
        line = []
        for t in order:
            if status[t] != "ok":
                continue
            dest = WORK / "copies" / t.replace(" ", "")
            drop_tree(dest)
            user.mkdir(dest.parent)
            sync()
            try:
                if t == "copy":
                    user.mkdir(dest)
                    r = worker(user, "unpack-inproc", str(dest), "copy", *map(str, blobs), what="copy")
                else:
                    r = worker(user, "cp-a", str(flat), str(dest), what="cp -a")
            except BenchError as e:
                status[t] = f"failed: {e}"
                log(f"{t}: failed: {e}")
                continue
            line.append(f"{t} {r['secs']:.2f}s")
            if it >= warmup:
                samples[t].append(r["secs"])
        log(f"copy {'warm-up' if it < warmup else f'iteration {it - warmup + 1}/{iterations}'}: " + ", ".join(line))
    drop_tree(WORK / "copies")
    for t in copy_tools:
        drivers[t] = _entry(labels[t], status[t], samples[t])

    # -- context: the namespace job's round trip ---------------------------------------------------------------------
    if want("job-rtt"):
        xs: list[float] = []
        st = "ok"
        try:
            for i in range(MOUNT_WARMUP + 10):
                r = worker(user, "job-rtt", what="job-rtt")
                if i >= MOUNT_WARMUP:
                    xs.append(r["secs"])
        except BenchError as e:
            st = f"failed: {e}"
        drivers["job-rtt"] = _entry(labels["job-rtt"], st, xs)

    podman.cleanup()
    drop_tree(WORK)
    result["drivers"] = drivers
    result["storage_driver"] = {t: t for t in drivers}
    ratios: dict[str, Any] = {}
    targets: dict[str, Any] = {"overlay <= 10 ms": None, "copy <= 1.1 x cp -a": None}
    ov, cp, pm = drivers.get("overlay", {}), drivers.get("copy", {}), drivers.get("podman", {})
    if "median_s" in ov:
        targets["overlay <= 10 ms"] = ov["median_s"] <= 0.010
        if "median_s" in pm:
            ratios["overlay/podman create"] = round(ov["median_s"] / pm["median_s"], 4)
    if "median_s" in drivers.get("fuse-overlayfs", {}) and "median_s" in pm:
        ratios["fuse-overlayfs/podman create"] = round(drivers["fuse-overlayfs"]["median_s"] / pm["median_s"], 4)
    if "median_s" in cp and "median_s" in drivers.get("cp -a", {}):
        ratios["copy/cp -a"] = round(cp["median_s"] / drivers["cp -a"]["median_s"], 3)
        targets["copy <= 1.1 x cp -a"] = ratios["copy/cp -a"] <= 1.1
    result["ratios"] = ratios
    result["targets"] = targets
    result["wall_s"] = round(time.monotonic() - t_start, 1)
    return result


def render(result: dict[str, Any]) -> str:
    p = result["protocol"]
    lines = [
        f"B6 rootfs: mounts {p['mount_warmup']} warm-up + {p['mount_iterations']} iterations; copy "
        f"{p['copy_warmup']} warm-up + {p['copy_iterations']} iterations; rotating order"
    ]
    table = Table(["driver", "median ms", "p90 ms", "ns setup ms", "status"])
    for name, e in result["drivers"].items():
        table.add(name, e.get("median_ms"), e.get("p90_ms"), e.get("ns_setup_median_ms"), tail(e["status"], 1)[:100])
    lines.append(table.render())
    lines.append("ratios: " + (", ".join(f"{k} = {v}" for k, v in result["ratios"].items()) or "none"))
    lines.append("targets: " + ", ".join(f"{k}: {v}" for k, v in result["targets"].items()))
    lines.append(f"wall time {result.get('wall_s')} s")
    return "\n".join(lines)


measure = bench_rootfs


def figures(result: dict[str, Any]) -> list[Figure]:
    """sbx beside its baselines, for the summary of `make bench`."""
    drivers = result["drivers"]
    return (compare("B6 rootfs ready (overlay mount)", drivers, "overlay", ["podman"])
            + compare("B6 rootfs copy", drivers, "copy", ["cp -a"]))
