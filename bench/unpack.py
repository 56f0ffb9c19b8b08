"""B5: unpack only. The bench image's two gzip layers (local blobs, no registry), and a generated layer of 20,000
small files, extracted into a fresh directory by:

* ``sbx``: ``run_job({"op": "unpack", ...}, default_idmap())``, what ``sbx pull`` runs per image: a namespace job
  (``python -m sandbox.runtime.nsjob``) in a user namespace with the subordinate id map, owners kept as container
  ids, whiteouts in overlay format;
* ``sbx-inproc``: ``sandbox.store.unpack.unpack_layer`` called directly (the same gzip reader as the job) in a user
  namespace that maps only the bench user (owners all 0): the extraction cost alone, without the job's start-up;
* ``tar``: ``tar --no-same-owner -xzf BLOB`` per layer (gzip runs as its own process, so on two cores).

Each is timed inside a small worker script run as the bench user with sbx's venv Python (``time.perf_counter``
around exactly the step, so the worker's own Python start is not counted for any of them). The destination is
deleted and ``sync`` runs before every run (untimed). 1 warm-up + 5 iterations, rotating order.

The harness never imports sandbox: the worker is written to ``$SBX_BENCH_DIR/work/worker.py`` and run as a file.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import tarfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    BENCH_DIR,
    DEFAULT_SBX_VENV_PY,
    INSTALL_HINT,
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
    tree_bytes,
    version_of,
)
from bench.images import OCI_DIR, TAG

TITLE = "B5: unpack the image's layers (and 20,000 small files) from local blobs: sbx vs tar -xzf"
ORDER = 5  # place in `python -m bench` and its summary

WORK = BENCH_DIR / "work" / "unpack"
WORKER = BENCH_DIR / "work" / "worker.py"
SMALL_FILES = 20_000
STEP_TIMEOUT = 300

# The worker: run as the bench user with sbx's venv Python. Prints one JSON line: {"secs": ..., ...}.
WORKER_SOURCE = r'''
import json, os, subprocess, sys, time
from pathlib import Path


def single_map_namespace(mount=False):
    """Become root of a new user (and mount) namespace that maps only ourselves (0 -> our uid/gid)."""
    from sandbox.kernel import Kernel
    from sandbox.kernel.constants import CLONE_NEWNS, CLONE_NEWUSER
    uid, gid = os.getuid(), os.getgid()
    t0 = time.perf_counter()
    kernel = Kernel()
    kernel.unshare(CLONE_NEWUSER | (CLONE_NEWNS if mount else 0))
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
    Path("/proc/self/gid_map").write_text(f"0 {gid} 1")
    return kernel, time.perf_counter() - t0


def unpack_inproc(dest, fmt, blobs):
    from sandbox.oci.decompress import open_layer
    from sandbox.runtime.nsjob import owner_map
    from sandbox.store.unpack import unpack_layer
    files = 0
    for blob in blobs:
        with open_layer(Path(blob), "gzip") as stream:
            stats = unpack_layer(stream, Path(dest), whiteout_format=fmt, max_bytes=1 << 40, owner_map=owner_map(1, 1))
            files += stats.files
    return files


def main():
    op, args = sys.argv[1], sys.argv[2:]
    out = {}
    if op == "unpack-job":  # DEST FORMAT BLOB...: what sbx pull runs
        from sandbox.runtime.idmap import default_idmap
        from sandbox.runtime.userns import run_job
        dest, fmt, blobs = args[0], args[1], args[2:]
        idmap = default_idmap()
        layers = [{"blob": b, "compression": "gzip", "dest": dest, "whiteout_format": fmt} for b in blobs]
        t0 = time.perf_counter()
        res = run_job({"op": "unpack", "max_bytes": 1 << 40, "layers": layers}, idmap)
        out["secs"] = time.perf_counter() - t0
        out["files"] = sum(x["files"] for x in res["layers"])
        out["idmap_single"] = idmap.single
    elif op == "unpack-inproc":  # DEST FORMAT BLOB...: unpack_layer in a single-map namespace
        import sandbox.runtime.nsjob, sandbox.store.unpack  # noqa: F401 - imports are not what is timed
        dest, fmt, blobs = args[0], args[1], args[2:]
        _, out["ns_setup_s"] = single_map_namespace()
        t0 = time.perf_counter()
        out["files"] = unpack_inproc(dest, fmt, blobs)
        out["secs"] = time.perf_counter() - t0
    elif op == "tar":  # DEST BLOB...
        dest, blobs = args[0], args[1:]
        t0 = time.perf_counter()
        for blob in blobs:
            subprocess.run(["tar", "--no-same-owner", "-C", dest, "-xzf", blob], check=True)
        out["secs"] = time.perf_counter() - t0
    elif op == "cp-a":  # SRC DST: cp -a of a flattened tree, in a single-map namespace (owners are ours there)
        src, dst = args
        _, out["ns_setup_s"] = single_map_namespace()
        t0 = time.perf_counter()
        subprocess.run(["cp", "-a", src, dst], check=True)
        out["secs"] = time.perf_counter() - t0
    elif op == "mount":  # DRIVER LAYER_ROOT CONTAINER_DIR CHAIN...: create dirs + mount, in a single-map namespace
        from sandbox.runtime.rootfs import create_dirs, mount_rootfs, plan_rootfs, unmount_rootfs
        driver, layer_root, cdir, chains = args[0], Path(args[1]), Path(args[2]), args[3:]
        kernel, out["ns_setup_s"] = single_map_namespace(mount=True)
        target = cdir / "merged"
        t0 = time.perf_counter()
        plan = plan_rootfs(driver, cdir, layer_root, chains)
        create_dirs(plan)
        target.mkdir()
        mount_rootfs(kernel, plan, str(target))
        out["secs"] = time.perf_counter() - t0
        out["ok"] = os.path.exists(target / "usr/bin/env") and os.path.exists(target / "usr/bin/python3")
        unmount_rootfs(kernel, plan, str(target))
    elif op == "job-rtt":  # run_job round trip with the subordinate map and a mount namespace, doing nothing
        from sandbox.runtime.idmap import default_idmap
        from sandbox.runtime.userns import run_job
        idmap = default_idmap()
        t0 = time.perf_counter()
        run_job({"op": "remove", "paths": []}, idmap, mount_namespace=True)
        out["secs"] = time.perf_counter() - t0
    else:
        raise SystemExit(f"unknown op {op}")
    print(json.dumps(out))


main()
'''


def sbx_python() -> str:
    cmd = os.environ.get("SBX_BENCH_PY", DEFAULT_SBX_VENV_PY)
    if not Path(cmd).exists():
        raise BenchError(
            f"sbx's installed Python not found ({cmd}); {INSTALL_HINT}, or set SBX_BENCH_PY"
        )
    return cmd


def write_worker(user: User) -> Path:
    user.mkdir(WORKER.parent)
    WORKER.write_text(WORKER_SOURCE)
    os.chmod(WORKER, 0o644)
    return WORKER


def worker(user: User, *args: str, what: str | None = None) -> dict[str, Any]:
    """Run the worker as the bench user; its JSON result (raises BenchError when it fails)."""
    argv = user.wrap([sbx_python(), "-P", str(WORKER), *args], {"TMPDIR": "/var/tmp"})
    cp = run(argv, check=False, timeout=STEP_TIMEOUT)
    if cp.returncode != 0:
        raise BenchError(f"{what or args[0]} exited {cp.returncode}: {tail(cp.stderr or cp.stdout, 4)}")
    try:
        return json.loads(cp.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as e:
        raise BenchError(f"{what or args[0]}: no result: {tail(cp.stdout + cp.stderr, 4)}") from e


def image_layers() -> list[dict[str, Any]]:
    """The bench image's layer descriptors from the cached OCI layout (bottom first)."""
    try:
        index = json.loads((OCI_DIR / "index.json").read_text())
    except (OSError, ValueError) as e:
        raise BenchError(f"no bench image in {OCI_DIR}: run `sudo python3 -m bench pull` once to build it") from e
    for m in index["manifests"]:
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == TAG:
            manifest = json.loads((OCI_DIR / "blobs" / "sha256" / m["digest"].split(":", 1)[1]).read_text())
            return manifest["layers"]
    raise BenchError(f"{OCI_DIR} has no tag {TAG}")


def local_blobs(user: User, into: Path) -> tuple[list[Path], list[dict[str, Any]]]:
    """The image's layer blobs copied where the bench user can read them (the OCI layout is root's, 0600)."""
    user.mkdir(into)
    layers = image_layers()
    paths = []
    for layer in layers:
        hexd = layer["digest"].split(":", 1)[1]
        dst = into / hexd
        if not dst.exists() or dst.stat().st_size != layer["size"]:
            src = OCI_DIR / "blobs" / "sha256" / hexd
            tmp = dst.with_suffix(".tmp")
            tmp.write_bytes(src.read_bytes())
            tmp.replace(dst)
        os.chmod(dst, 0o644)
        paths.append(dst)
    return paths, layers


def small_files_layer(user: User, into: Path, count: int = SMALL_FILES) -> Path:
    """A gzip tar layer of `count` small files (100 dirs; 64 B - 4 KiB of pseudo-random text each), made once."""
    path = into / f"small-{count}.tar.gz"
    if path.exists():
        return path
    user.mkdir(into)
    rng = random.Random(20_000)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as gz, tarfile.open(
        fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT
    ) as tar:
        per_dir = max(1, count // 100)
        words = [f"w{i:04d}".encode() for i in range(4096)]
        for i in range(count):
            d = f"data/d{i // per_dir:03d}"
            if i % per_dir == 0:
                info = tarfile.TarInfo(d)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
                tar.addfile(info)
            size = rng.randint(64, 4096)
            data = b" ".join(rng.choice(words) for _ in range(size // 6 + 1))[:size]
            info = tarfile.TarInfo(f"{d}/f{i:05d}.txt")
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buf.getvalue())
    os.chmod(tmp, 0o644)
    tmp.replace(path)
    return path


def fresh(user: User, path: Path) -> Path:
    drop_tree(path)
    return user.mkdir(path)


# tool name -> (worker op, whiteout format or None)
TOOLS = {"sbx": "unpack-job", "sbx-inproc": "unpack-inproc", "tar": "tar"}
LABELS = {
    "sbx": "sbx run_job unpack (subordinate map)",
    "sbx-inproc": "unpack_layer in-process (single map)",
    "tar": "tar --no-same-owner -xzf",
}


def _bench_case(user: User, case: str, blobs: list[Path], iterations: int, warmup: int, only: list[str] | None):
    tools = [t for t in TOOLS if not only or t in only]
    samples: dict[str, list[float]] = {t: [] for t in tools}
    extra: dict[str, list[float]] = {t: [] for t in tools}
    status: dict[str, str] = {t: "ok" for t in tools}
    files: dict[str, int] = {}
    left: dict[str, dict[str, int]] = {}
    for it, order in enumerate(rotations(tools, warmup + iterations)):
        line = []
        for t in order:
            if status[t] != "ok":
                continue
            dest = fresh(user, WORK / case / t)
            sync()
            args = [str(dest)] + ([] if t == "tar" else ["overlay"]) + [str(b) for b in blobs]
            try:
                r = worker(user, TOOLS[t], *args, what=f"{case}: {t}")
            except BenchError as e:
                status[t] = f"failed: {e}"
                log(f"{case}: {t} failed: {e}")
                continue
            line.append(f"{t} {r['secs']:.2f}s")
            if it >= warmup:
                samples[t].append(r["secs"])
                if "ns_setup_s" in r:
                    extra[t].append(r["ns_setup_s"])
            if "files" in r:
                files[t] = r["files"]
            if it == warmup + iterations - 1:
                b, n = tree_bytes(dest)
                left[t] = {"bytes": b, "entries": n}
        log(f"{case} {'warm-up' if it < warmup else f'iteration {it - warmup + 1}/{iterations}'}: " + ", ".join(line))
    out: dict[str, Any] = {}
    for t in tools:
        e: dict[str, Any] = {"label": LABELS[t], "status": status[t]}
        if samples[t]:
            e.update(summary(samples[t]))
            e["samples_s"] = [round(x, 4) for x in samples[t]]
        if extra[t]:
            e["ns_setup_median_s"] = summary(extra[t])["median_s"]
        if t in files:
            e["entries_extracted"] = files[t]
        if t in left:
            e["tree"] = left[t]
        out[t] = e
    drop_tree(WORK / case)
    return out


def bench_unpack(iterations: int = 5, warmup: int = 1, only: list[str] | None = None) -> dict[str, Any]:
    with exclusive():
        return _bench_unpack(iterations, warmup, only)


def _bench_unpack(iterations: int, warmup: int, only: list[str] | None) -> dict[str, Any]:
    t_start = time.monotonic()
    user = User.resolve()
    sbx_python()
    write_worker(user)
    user.mkdir(WORK)
    blobs, layers = local_blobs(user, BENCH_DIR / "work" / "blobs")
    small = small_files_layer(user, BENCH_DIR / "work" / "blobs")
    result: dict[str, Any] = {
        "benchmark": "B5",
        "what": "unpack only: the same gzip layers from local blobs into a fresh directory",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_facts(),
        "user": user.name,
        "protocol": {
            "warmup": warmup,
            "iterations": iterations,
            "order": "rotating",
            "between_runs": "destination deleted, sync (untimed)",
            "timing": "perf_counter around the step inside a worker run as the bench user (no Python start counted)",
            "p90": "linear interpolation between closest ranks",
        },
        "storage_driver": "n/a (overlay-format diff dirs, as sbx pull stores layers)",
        "network_backend": "none",
        "versions": {
            "sbx_python": sbx_python(),
            "tar": version_of(["tar", "--version"]),
            "gzip": version_of(["gzip", "--version"]),
        },
        "cases": {},
    }
    cases = {
        "image": {
            "blobs": blobs,
            "about": f"the bench image's {len(layers)} gzip layers ({sum(x['size'] for x in layers) / 1e6:.1f} MB)",
            "compressed_bytes": sum(x["size"] for x in layers),
            "target": 1.2,
        },
        "small-files": {
            "blobs": [small],
            "about": f"one generated gzip layer of {SMALL_FILES} files of 64 B-4 KiB in 100 dirs",
            "compressed_bytes": small.stat().st_size,
            "target": 2.0,
        },
    }
    for case, c in cases.items():
        log(f"B5 {case}: {c['about']}")
        tools = _bench_case(user, case, c["blobs"], iterations, warmup, only)
        entry: dict[str, Any] = {
            "about": c["about"],
            "compressed_bytes": c["compressed_bytes"],
            "tools": tools,
            "ratios": {},
        }
        tar = tools.get("tar", {})
        for t in ("sbx", "sbx-inproc"):
            if "median_s" in tools.get(t, {}) and "median_s" in tar:
                entry["ratios"][f"{t}/tar median time"] = round(tools[t]["median_s"] / tar["median_s"], 3)
        r = entry["ratios"].get("sbx/tar median time")
        entry["target"] = f"sbx <= {c['target']} x tar"
        entry["target_met"] = None if r is None else r <= c["target"]
        result["cases"][case] = entry
    drop_tree(WORK)
    result["wall_s"] = round(time.monotonic() - t_start, 1)
    return result


def render(result: dict[str, Any]) -> str:
    p = result["protocol"]
    lines = [f"B5 unpack: {p['warmup']} warm-up + {p['iterations']} iterations, rotating order"]
    table = Table(["case", "tool", "median s", "p90 s", "entries", "status"])
    for case, c in result["cases"].items():
        for name, e in c["tools"].items():
            table.add(case, name, e.get("median_s"), e.get("p90_s"), e.get("entries_extracted"), e["status"][:100])
    lines.append(table.render())
    for case, c in result["cases"].items():
        ratios = ", ".join(f"{k} = {v}" for k, v in c["ratios"].items()) or "none"
        lines.append(f"{case}: {ratios}; target {c['target']}: {c['target_met']}")
    lines.append(f"wall time {result.get('wall_s')} s")
    return "\n".join(lines)


measure = bench_unpack


def figures(result: dict[str, Any]) -> list[Figure]:
    """sbx beside its baselines, for the summary of `make bench`."""
    found = []
    for case, entry in result["cases"].items():
        found += compare(f"B5 unpack {case}", entry["tools"], "sbx", ["tar"])
    return found
